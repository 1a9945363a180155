/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ZDTM-style test of shared memory across a checkpoint and restore: builds a
 * mapping of every shared kind with a pattern in it, says "ready", waits for
 * SIGUSR1 (the harness checkpoints and restores it meanwhile), then checks
 * that every pattern survived and that what was shared is still shared, and
 * prints "pass" or "fail: <what>" (exit 0 or 1).
 *
 *   ckpt_shm [--unmapped] DIR      DIR: an empty directory for its two files
 *
 * The mappings:
 *   - MAP_SHARED|MAP_ANONYMOUS, 16 pages, and a second mapping of its pages
 *     4..7 (mremap of old size 0): a write through one is seen through the
 *     other;
 *   - a memfd kept open at fd 10 (offset 5) and mapped MAP_SHARED, pages 0..3
 *     written through the mapping, 4..7 through the fd: each is read through
 *     the other, and new writes go both ways;
 *   - a memfd mapped MAP_SHARED whose fd was closed (the mapping is all that
 *     holds it);
 *   - DIR/shared mapped MAP_SHARED and written through the mapping (its fd
 *     closed): the restore maps the file again, so the content is the
 *     file's, and writes still reach the file both ways; after the checks it
 *     writes SHM_MARKER at SHM_MARKER_OFF through the mapping for the
 *     harness to find in the file;
 *   - three private anonymous pages, the middle one a PROT_NONE guard;
 *   - DIR/ro mapped read-only MAP_PRIVATE;
 *   - 64 MiB MAP_SHARED|MAP_ANONYMOUS with two pages written: the rest must
 *     stay holes (mincore), and read as zeros.
 *
 * --unmapped adds shared pages that exist but that no page table of the
 * process points at when it is dumped (a fork child sees its parent's
 * MAP_SHARED memory this way, and MADV_DONTNEED leaves shmem so): a memfd
 * written with pwrite, mapped, its fd closed, never touched through the
 * mapping; and a page of the 16-page region zapped with MADV_DONTNEED.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG 4096u /* x86-64, the only architecture sockmig checkpoints */

#define SHM_MARKER "written-after-restore"
#define SHM_MARKER_OFF (3 * PG + 64)

enum {
	ANON_PAGES = 16,
	ALIAS_FIRST = 4, /* the second mapping shows pages 4..7 of the region */
	ALIAS_PAGES = 4,
	ZAP_PAGE = 12, /* --unmapped: this page of the region is zapped */
	MEMFD_PAGES = 8,
	MEMFD_BY_MAP = 4, /* pages below written through the mapping, the rest with pwrite */
	FD_MEMFD = 10,
	MEMFD_POS = 5,
	LONE_PAGES = 2,
	UNMAPPED_PAGES = 3,
	FILE_PAGES = 4,
	RO_PAGES = 3,
	SPARSE_PAGES = (64u << 20) / PG,
	SPARSE_B = 10243, /* the other written page of the sparse region */
	SPARSE_MAX_RESIDENT = 16,
};

/* Seeds: one per mapping, so that no two hold the same bytes. */
enum { S_ANON = 1, S_MEMFD, S_LONE, S_FILE, S_GUARD, S_RO, S_SPARSE, S_UNMAPPED };

static struct {
	uint8_t *anon, *alias, *memfd_map, *lone, *unmapped, *file, *guard, *ro, *sparse;
	bool with_unmapped;
	char file_path[4096], ro_path[4096];
} st;

static char why[1024];

static bool fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool fail(const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (saved && strlen(why) + 3 < sizeof(why))
		snprintf(why + strlen(why), sizeof(why) - strlen(why), " (%s)", strerror(saved));
	return false;
}

#define CHECK(cond, ...)                    \
	do {                                \
		errno = 0;                  \
		if (!(cond))                \
			return fail(__VA_ARGS__); \
	} while (0)
/* a check that said why itself */
#define TRY(cond)                    \
	do {                         \
		if (!(cond))         \
			return false; \
	} while (0)

/* Byte i of the pattern `seed`; the page number is in it, so a page that
 * lands at another offset is caught too. */
static uint8_t pat(unsigned seed, size_t i)
{
	return (uint8_t)((i * 131u) ^ (i / PG * 29u) ^ (seed * 71u));
}

/* a byte that differs from v in every bit */
static uint8_t flip(uint8_t v)
{
	return (uint8_t)(v ^ 0xffu);
}

static void fill(uint8_t *p, size_t len, unsigned seed, size_t from)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pat(seed, from + i);
}

/* The first byte of [p, p + len) that is not pattern `seed` (counted from
 * `from`), or -1. */
static long mismatch(const uint8_t *p, size_t len, unsigned seed, size_t from)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != pat(seed, from + i))
			return (long)i;
	return -1;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static bool write_file(const char *path, size_t len, unsigned seed)
{
	uint8_t *buf = malloc(len);
	int fd;
	bool ok;

	if (!buf)
		return false;
	fill(buf, len, seed, 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ok = fd >= 0 && write(fd, buf, len) == (ssize_t)len;
	if (fd >= 0)
		close(fd);
	free(buf);
	return ok;
}

static bool build(const char *dir)
{
	uint8_t page[PG];
	int fd;

	st.anon = mmap(NULL, ANON_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(st.anon != MAP_FAILED, "mmap of the shared anonymous region");
	fill(st.anon, ANON_PAGES * PG, S_ANON, 0);
	st.alias = mremap(st.anon + ALIAS_FIRST * PG, 0, ALIAS_PAGES * PG, MREMAP_MAYMOVE);
	CHECK(st.alias != MAP_FAILED, "mremap of old size 0 (a second mapping of the shared region)");
	CHECK(mismatch(st.alias, ALIAS_PAGES * PG, S_ANON, ALIAS_FIRST * PG) < 0,
	      "the second mapping does not show the region's pages");

	fd = memfd_create("ckptshm", 0);
	CHECK(fd >= 0 && ftruncate(fd, MEMFD_PAGES * PG) == 0, "memfd");
	st.memfd_map = mmap(NULL, MEMFD_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(st.memfd_map != MAP_FAILED, "mmap of the memfd");
	fill(st.memfd_map, MEMFD_BY_MAP * PG, S_MEMFD, 0);
	for (size_t p = MEMFD_BY_MAP; p < MEMFD_PAGES; p++) {
		fill(page, PG, S_MEMFD, p * PG);
		CHECK(pwrite(fd, page, PG, (off_t)(p * PG)) == PG, "pwrite to the memfd");
	}
	CHECK(dup2(fd, FD_MEMFD) == FD_MEMFD && close(fd) == 0 && lseek(FD_MEMFD, MEMFD_POS, SEEK_SET) == MEMFD_POS,
	      "memfd to fd %d", FD_MEMFD);

	fd = memfd_create("ckptshm-lone", MFD_CLOEXEC);
	CHECK(fd >= 0 && ftruncate(fd, LONE_PAGES * PG) == 0, "second memfd");
	st.lone = mmap(NULL, LONE_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(st.lone != MAP_FAILED && close(fd) == 0, "mmap of the second memfd");
	fill(st.lone, LONE_PAGES * PG, S_LONE, 0);

	if (st.with_unmapped) {
		fd = memfd_create("ckptshm-unmapped", MFD_CLOEXEC);
		CHECK(fd >= 0 && ftruncate(fd, UNMAPPED_PAGES * PG) == 0, "third memfd");
		for (size_t p = 0; p < UNMAPPED_PAGES; p++) {
			fill(page, PG, S_UNMAPPED, p * PG);
			CHECK(pwrite(fd, page, PG, (off_t)(p * PG)) == PG, "pwrite to the third memfd");
		}
		st.unmapped = mmap(NULL, UNMAPPED_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(st.unmapped != MAP_FAILED && close(fd) == 0, "mmap of the third memfd");
		/* shmem keeps the page; only this process's page table forgets it */
		CHECK(madvise(st.anon + ZAP_PAGE * PG, PG, MADV_DONTNEED) == 0, "MADV_DONTNEED");
	}

	snprintf(st.file_path, sizeof(st.file_path), "%s/shared", dir);
	fd = open(st.file_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, FILE_PAGES * PG) == 0, "create %s", st.file_path);
	st.file = mmap(NULL, FILE_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(st.file != MAP_FAILED && close(fd) == 0, "mmap of %s", st.file_path);
	fill(st.file, FILE_PAGES * PG, S_FILE, 0);

	st.guard = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(st.guard != MAP_FAILED, "mmap of the guarded pages");
	fill(st.guard, PG, S_GUARD, 0);
	fill(st.guard + 2 * PG, PG, S_GUARD, 2 * PG);
	CHECK(mprotect(st.guard + PG, PG, PROT_NONE) == 0, "mprotect of the guard page");

	snprintf(st.ro_path, sizeof(st.ro_path), "%s/ro", dir);
	CHECK(write_file(st.ro_path, RO_PAGES * PG, S_RO), "write %s", st.ro_path);
	fd = open(st.ro_path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0, "open %s", st.ro_path);
	st.ro = mmap(NULL, RO_PAGES * PG, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(st.ro != MAP_FAILED && close(fd) == 0, "mmap of %s", st.ro_path);
	CHECK(mismatch(st.ro, RO_PAGES * PG, S_RO, 0) < 0, "%s reads wrong through its mapping", st.ro_path);

	st.sparse = mmap(NULL, (size_t)SPARSE_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(st.sparse != MAP_FAILED, "mmap of the sparse region");
	fill(st.sparse, PG, S_SPARSE, 0);
	fill(st.sparse + (size_t)SPARSE_B * PG, PG, S_SPARSE, (size_t)SPARSE_B * PG);
	return true;
}

/* The /proc/self/maps line of the mapping that holds addr. */
static bool maps_find(const void *addr, uintptr_t *ret_start, uintptr_t *ret_end, char ret_perms[5])
{
	char line[4096 + 128];
	FILE *f = fopen("/proc/self/maps", "re");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long long s, e;
		char perms[5];

		if (sscanf(line, "%llx-%llx %4s", &s, &e, perms) == 3 && s <= (uintptr_t)addr && (uintptr_t)addr < e) {
			*ret_start = (uintptr_t)s;
			*ret_end = (uintptr_t)e;
			memcpy(ret_perms, perms, 5);
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* The mapping holding [p, p + len) covers all of it with these permissions. */
static bool maps_is(const char *what, const uint8_t *p, size_t len, const char *want)
{
	uintptr_t s, e;
	char perms[5];

	CHECK(maps_find(p, &s, &e, perms), "%s: %p is not mapped", what, (const void *)p);
	CHECK(s <= (uintptr_t)p && (uintptr_t)p + len <= e, "%s: mapped %#lx-%#lx, not all of %p-%p", what,
	      (unsigned long)s, (unsigned long)e, (const void *)p, (const void *)(p + len));
	CHECK(!strcmp(perms, want), "%s: permissions %s, not %s", what, perms, want);
	return true;
}

/* Byte off written through `a` is read through `b`, then the other way;
 * the pattern byte is put back. */
static bool shares(const char *what, volatile uint8_t *a, volatile uint8_t *b, size_t off)
{
	uint8_t old = a[off];

	a[off] = flip(old);
	CHECK(b[off] == flip(old), "%s: a write through the first mapping is not seen through the second", what);
	b[off] = (uint8_t)(old ^ 0x5a);
	CHECK(a[off] == (uint8_t)(old ^ 0x5a), "%s: a write through the second mapping is not seen through the first", what);
	a[off] = old;
	return true;
}

static bool verify_anon(void)
{
	long at;

	TRY(maps_is("the shared anonymous region", st.anon, ANON_PAGES * PG, "rw-s"));
	TRY(maps_is("its second mapping", st.alias, ALIAS_PAGES * PG, "rw-s"));
	at = mismatch(st.anon, ANON_PAGES * PG, S_ANON, 0);
	CHECK(at < 0, "the shared anonymous region: byte %ld (page %ld) is %#x", at, at / PG, st.anon[at]);
	at = mismatch(st.alias, ALIAS_PAGES * PG, S_ANON, ALIAS_FIRST * PG);
	CHECK(at < 0, "its second mapping: byte %ld is %#x", at, st.alias[at]);
	for (size_t p = 0; p < ALIAS_PAGES; p++)
		TRY(shares("the shared anonymous region and its second mapping", st.anon + (ALIAS_FIRST + p) * PG,
			   st.alias + p * PG, 100 + p));
	return true;
}

static bool verify_memfd(void)
{
	char link[64], target[256];
	uint8_t page[PG], b;
	struct stat sb;
	ssize_t n;
	long at;

	TRY(maps_is("the memfd's mapping", st.memfd_map, MEMFD_PAGES * PG, "rw-s"));
	snprintf(link, sizeof(link), "/proc/self/fd/%d", FD_MEMFD);
	n = readlink(link, target, sizeof(target) - 1);
	CHECK(n > 0, "fd %d is gone", FD_MEMFD);
	target[n] = 0;
	CHECK(!strncmp(target, "/memfd:ckptshm", 14), "fd %d is %s, not the memfd", FD_MEMFD, target);
	CHECK(fstat(FD_MEMFD, &sb) == 0 && sb.st_size == MEMFD_PAGES * PG, "the memfd has %lld bytes",
	      (long long)sb.st_size);
	CHECK(lseek(FD_MEMFD, 0, SEEK_CUR) == MEMFD_POS, "the memfd's offset is not %d", MEMFD_POS);
	/* every page through both: pages 0..3 were written through the mapping
	 * only, 4..7 through the fd only */
	at = mismatch(st.memfd_map, MEMFD_PAGES * PG, S_MEMFD, 0);
	CHECK(at < 0, "the memfd's mapping: byte %ld (page %ld) is %#x", at, at / PG, st.memfd_map[at]);
	for (size_t p = 0; p < MEMFD_PAGES; p++) {
		CHECK(pread(FD_MEMFD, page, PG, (off_t)(p * PG)) == PG, "pread of the memfd");
		at = mismatch(page, PG, S_MEMFD, p * PG);
		CHECK(at < 0, "the memfd through its fd: page %zu byte %ld is %#x", p, at, page[at]);
	}
	/* new writes, both ways, on a page of each kind */
	for (size_t p = MEMFD_BY_MAP - 1; p <= MEMFD_BY_MAP; p++) {
		size_t off = p * PG + 33;

		st.memfd_map[off] = flip(pat(S_MEMFD, off));
		CHECK(pread(FD_MEMFD, &b, 1, (off_t)off) == 1 && b == flip(pat(S_MEMFD, off)),
		      "the memfd: a write through the mapping (page %zu) is not seen through fd %d", p, FD_MEMFD);
		b = (uint8_t)(pat(S_MEMFD, off) ^ 0x5a);
		CHECK(pwrite(FD_MEMFD, &b, 1, (off_t)off) == 1 && st.memfd_map[off] == b,
		      "the memfd: a write through fd %d (page %zu) is not seen through the mapping", FD_MEMFD, p);
		st.memfd_map[off] = pat(S_MEMFD, off);
	}
	TRY(maps_is("the closed memfd's mapping", st.lone, LONE_PAGES * PG, "rw-s"));
	at = mismatch(st.lone, LONE_PAGES * PG, S_LONE, 0);
	CHECK(at < 0, "the closed memfd's mapping: byte %ld is %#x", at, st.lone[at]);
	return true;
}

static bool verify_unmapped(void)
{
	long at;

	if (!st.with_unmapped)
		return true;
	at = mismatch(st.unmapped, UNMAPPED_PAGES * PG, S_UNMAPPED, 0);
	CHECK(at < 0, "the memfd written with pwrite and never touched through its mapping: byte %ld (page %ld) is %#x",
	      at, at / PG, st.unmapped[at]);
	at = mismatch(st.anon + ZAP_PAGE * PG, PG, S_ANON, ZAP_PAGE * PG);
	CHECK(at < 0, "page %d of the shared anonymous region, zapped with MADV_DONTNEED before the checkpoint: byte %ld is %#x",
	      ZAP_PAGE, at, st.anon[ZAP_PAGE * PG + at]);
	return true;
}

static bool verify_file(void)
{
	uint8_t page[PG], b;
	int fd;
	long at;
	bool ok = true;

	TRY(maps_is(st.file_path, st.file, FILE_PAGES * PG, "rw-s"));
	at = mismatch(st.file, FILE_PAGES * PG, S_FILE, 0);
	CHECK(at < 0, "%s through its mapping: byte %ld is %#x", st.file_path, at, st.file[at]);
	fd = open(st.file_path, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open %s", st.file_path);
	for (size_t p = 0; p < FILE_PAGES && ok; p++) {
		if (pread(fd, page, PG, (off_t)(p * PG)) != PG)
			ok = fail("pread of %s", st.file_path);
		else if ((at = mismatch(page, PG, S_FILE, p * PG)) >= 0)
			ok = fail("%s through a new fd: page %zu byte %ld is %#x", st.file_path, p, at, page[at]);
	}
	if (ok) {
		size_t off = 2 * PG + 77;

		st.file[off] = flip(pat(S_FILE, off));
		if (pread(fd, &b, 1, (off_t)off) != 1 || b != flip(pat(S_FILE, off)))
			ok = fail("%s: a write through the mapping does not reach the file", st.file_path);
	}
	if (ok) {
		size_t off = PG + 5;

		b = (uint8_t)(pat(S_FILE, off) ^ 0x5a);
		if (pwrite(fd, &b, 1, (off_t)off) != 1 || st.file[off] != b)
			ok = fail("%s: a pwrite to the file is not seen through the mapping", st.file_path);
	}
	close(fd);
	return ok;
}

static bool verify_private(void)
{
	uintptr_t s, e;
	char perms[5];
	long at;

	CHECK(maps_find(st.guard + PG, &s, &e, perms), "the guard page is not mapped");
	CHECK(s == (uintptr_t)(st.guard + PG) && e == s + PG && !strcmp(perms, "---p"),
	      "the guard page is %#lx-%#lx %s, not %p-%p ---p", (unsigned long)s, (unsigned long)e, perms,
	      (const void *)(st.guard + PG), (const void *)(st.guard + 2 * PG));
	TRY(maps_is("the page below the guard", st.guard, PG, "rw-p"));
	TRY(maps_is("the page above the guard", st.guard + 2 * PG, PG, "rw-p"));
	CHECK(mismatch(st.guard, PG, S_GUARD, 0) < 0 && mismatch(st.guard + 2 * PG, PG, S_GUARD, 2 * PG) < 0,
	      "the pages around the guard lost their pattern");
	TRY(maps_is(st.ro_path, st.ro, RO_PAGES * PG, "r--p"));
	at = mismatch(st.ro, RO_PAGES * PG, S_RO, 0);
	CHECK(at < 0, "%s through its read-only mapping: byte %ld is %#x", st.ro_path, at, st.ro[at]);
	return true;
}

static bool verify_sparse(void)
{
	static unsigned char vec[SPARSE_PAGES];
	size_t resident = 0;

	TRY(maps_is("the sparse region", st.sparse, (size_t)SPARSE_PAGES * PG, "rw-s"));
	/* before anything reads a hole: reading one allocates a shmem page */
	CHECK(mincore(st.sparse, (size_t)SPARSE_PAGES * PG, vec) == 0, "mincore");
	for (size_t i = 0; i < SPARSE_PAGES; i++)
		resident += vec[i] & 1;
	CHECK(resident <= SPARSE_MAX_RESIDENT, "the sparse region has %zu of its %u pages in memory, not 2", resident,
	      SPARSE_PAGES);
	CHECK(mismatch(st.sparse, PG, S_SPARSE, 0) < 0 &&
		      mismatch(st.sparse + (size_t)SPARSE_B * PG, PG, S_SPARSE, (size_t)SPARSE_B * PG) < 0,
	      "the sparse region's two written pages");
	CHECK(all_zero(st.sparse + PG, PG) && all_zero(st.sparse + (size_t)(SPARSE_B - 1) * PG, PG) &&
		      all_zero(st.sparse + (size_t)(SPARSE_PAGES - 1) * PG, PG),
	      "a hole of the sparse region does not read as zeros");
	return true;
}

int main(int argc, char *argv[])
{
	sigset_t ss;
	int sig, a = 1;

	if (argc > 1 && !strcmp(argv[1], "--unmapped")) {
		st.with_unmapped = true;
		a++;
	}
	if (argc != a + 1) {
		fprintf(stderr, "usage: %s [--unmapped] DIR\n", argv[0]);
		return 2;
	}
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR1);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	if (!build(argv[a])) {
		printf("fail: build: %s\n", why);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	do
		sig = sigwaitinfo(&ss, NULL);
	while (sig < 0 && errno == EINTR);
	if (!verify_sparse() || !verify_unmapped() || !verify_anon() || !verify_memfd() || !verify_file() ||
	    !verify_private()) {
		printf("fail: %s\n", why);
		return 1;
	}
	/* for the harness: the restored mapping writes to the file itself */
	memcpy(st.file + SHM_MARKER_OFF, SHM_MARKER, strlen(SHM_MARKER));
	if (msync(st.file, FILE_PAGES * PG, MS_SYNC) < 0) {
		printf("fail: msync of %s: %s\n", st.file_path, strerror(errno));
		return 1;
	}
	printf("pass\n");
	return 0;
}
