/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The checkpoint side, read back: a child builds known state (a sparse
 * anonymous mapping with a pattern, a PROT_NONE guard, known registers in its
 * stopped frame); the dump goes to a memfd and is read back with the checked
 * reader; every section must say what the kernel says about the child. Also:
 * the pre-flight refusals, and damaged images refused before anything runs.
 * The restore itself is tests/integration/ckpt_counter.sh.
 *
 * Pre-copy: what the rounds and the freeze send equals the child's memory,
 * page for page, after writes, zeroed pages and a new mapping (the store
 * and the prepared restore are looked into); the store's layout keeps,
 * grows, joins and forgets regions as the ranges say; it refuses rounds out
 * of order, of another pre-copy, pages outside the ranges, more than its
 * bound. tests/integration/ckpt_precopy.sh moves a process with it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sockmig/ckpt.h"
#include "sockmig/proc.h"
#include "sockmig/sockmig.h"
#include "ckpt.h"
#include "ckpt_pc.h"
#include "ckpt_restore.h"
#include "image.h"

#define PAT_PAGES 64
static uint8_t *pattern; /* mapped before fork: the child has it at the same address */
static uint8_t *guard;

static uint8_t pat_byte(size_t page, size_t i)
{
	return (uint8_t)(page * 17 + i * 3 + 1);
}

static void setup_pattern(void)
{
	if (pattern)
		return;
	pattern = mmap(NULL, PAT_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(pattern != MAP_FAILED);
	guard = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(guard != MAP_FAILED);
}

/* Commands for modes 3 and 4, one byte each on fd 0 (a pipe from the
 * test), answered with one byte on fd 1: 'n' opens a netlink socket (as fd
 * 3), 'w' + page writes a pattern page anew, 'z' + page gives it back
 * (MADV_DONTNEED), 'm' maps 8 pages at a new place and fills them. */
static uint8_t *extra_map;

static void child_commands(int mode)
{
	uint8_t c[2];

	(void)mode;
	while (read(0, c, 1) == 1) {
		if (c[0] == 'n') {
			if (socket(AF_NETLINK, SOCK_RAW, 0) < 0)
				_exit(1);
		} else if (c[0] == 'w' && read(0, c + 1, 1) == 1) {
			for (size_t i = 0; i < 4096; i++)
				pattern[c[1] * 4096 + i] = (uint8_t)(pat_byte(c[1], i) ^ 0x5a);
		} else if (c[0] == 'z' && read(0, c + 1, 1) == 1) {
			madvise(pattern + c[1] * 4096, 4096, MADV_DONTNEED);
		} else if (c[0] == 'm') {
			extra_map = mmap(NULL, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			memset(extra_map, 0x77, 8 * 4096);
			if (write(1, &extra_map, sizeof(extra_map)) != sizeof(extra_map))
				_exit(1);
			continue;
		}
		if (write(1, "k", 1) != 1)
			_exit(1);
	}
	_exit(0);
}

static void *pause_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/* A child that writes every other page of the pattern and waits, with
 * only fds 0..2. It says "ready" on a pipe that it then closes. */
static int cmd_fd = -1, ack_fd = -1; /* modes 3 and 4: the child's fds 0 and 1 */

static pid_t spawn_child(int mode)
{
	int p[2], cmd[2] = { -1, -1 }, ack[2] = { -1, -1 };
	pid_t pid;
	char c;

	setup_pattern();
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	if (mode >= 3) {
		assert_int_equal(pipe2(cmd, O_CLOEXEC), 0);
		assert_int_equal(pipe2(ack, O_CLOEXEC), 0);
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_t t;
		int w;

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assert must not leak it */
		if (mode >= 3 && (dup2(cmd[0], 0) != 0 || dup2(ack[1], 1) != 1))
			_exit(1);
		for (size_t pg = 0; pg < PAT_PAGES; pg += 2)
			for (size_t i = 0; i < 4096; i++)
				pattern[pg * 4096 + i] = pat_byte(pg, i);
		if (mode == 1)
			pthread_create(&t, NULL, pause_thread, NULL);
		/* Only fds 0..2 (+ a netlink socket as 3 in mode 2) once the parent
		 * reads EOF: the ready pipe's write end goes last. */
		w = fcntl(p[1], F_DUPFD_CLOEXEC, 500);
		syscall(SYS_close_range, 3, 499, 0);
		syscall(SYS_close_range, 501, ~0u, 0);
		if (w != 500 || (mode == 2 && socket(AF_NETLINK, SOCK_RAW, 0) != 3) || write(w, "r", 1) != 1)
			_exit(1);
		close(w);
		if (mode >= 3)
			child_commands(mode);
		for (;;)
			pause();
	}
	close(p[1]);
	if (mode >= 3) {
		close(cmd[0]);
		close(ack[1]);
		cmd_fd = cmd[1];
		ack_fd = ack[0];
	}
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
	return pid;
}

/* A command to a mode 3 or 4 child, and its answer. */
static void child_do(char what, uint8_t page)
{
	uint8_t m[2] = { (uint8_t)what, page };
	char k;

	assert_int_equal(write(cmd_fd, m, what == 'n' || what == 'm' ? 1 : 2), what == 'n' || what == 'm' ? 1 : 2);
	if (what != 'm') {
		assert_int_equal(read(ack_fd, &k, 1), 1);
		assert_int_equal(k, 'k');
	}
}

static void end_child(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	if (cmd_fd >= 0)
		close(cmd_fd);
	if (ack_fd >= 0)
		close(ack_fd);
	cmd_fd = ack_fd = -1;
}

struct seen {
	size_t pages, pattern_pages, bad;
};

static int count_pages(uint64_t addr, const uint8_t *data, size_t len, void *userdata)
{
	struct seen *s = userdata;
	uint64_t base = (uint64_t)(uintptr_t)pattern;

	for (size_t off = 0; off < len; off += 4096) {
		uint64_t a = addr + off;

		s->pages++;
		if (a >= base && a < base + PAT_PAGES * 4096) {
			size_t pg = (a - base) / 4096;

			s->pattern_pages++;
			if (pg % 2)
				s->bad++; /* never written: must not be in the image */
			for (size_t i = 0; i < 4096; i++)
				if (data[off + i] != pat_byte(pg, i)) {
					s->bad++;
					break;
				}
		}
	}
	return 0;
}

static int dump_child(pid_t pid, int *ret_memfd)
{
	struct sockmig_proc *p;
	int fd, r;

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	r = sockmig_ckpt_check(p, NULL);
	if (r < 0) {
		sockmig_proc_free(p);
		return r;
	}
	assert_int_equal(sockmig_proc_stop(p), 0);
	fd = (int)syscall(SYS_memfd_create, "img", MFD_CLOEXEC);
	assert_true(fd >= 0);
	r = sockmig_ckpt_dump(p, fd, NULL);
	sockmig_proc_free(p);
	*ret_memfd = fd;
	return r;
}

static void test_dump_sections(void **state)
{
	pid_t pid = spawn_child(0);
	struct sm_image_reader *rd;
	struct ckpt_image im;
	struct seen seen = { 0 };
	int fd, found_pattern = 0, found_guard = 0, found_vdso = 0, found_stack = 0;
	(void)state;

	if (dump_child(pid, &fd) < 0)
		fail_msg("dump: %s", sockmig_error());
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sm_image_reader_new_fd(fd, &rd), 0);
	assert_int_equal(ckpt_read_image(rd, &im, count_pages, &seen), 0);

	assert_int_equal(im.info.pid, pid);
	assert_memory_equal(im.info.comm, "test_ckpt", 9);
	assert_true(im.info.xfeatures & 3); /* x87 + SSE at least */
	assert_true(im.mm.start_code < im.mm.end_code);
	assert_true(im.mm.start_brk <= im.mm.brk);
	assert_true(im.mm.arg_start < im.mm.arg_end);
	assert_true(im.mm.auxv_len >= 16 && im.mm.auxv_len % 16 == 0);
	assert_non_null(strstr(im.mm.exe, "test_ckpt"));
	/* rip inside executable memory of the child (libc's pause) */
	for (size_t i = 0; i < im.n_vmas; i++) {
		const struct ckpt_vma *v = &im.vmas[i];

		/* it may have merged with a neighbour of the same kind */
		if (v->start <= (uintptr_t)pattern && v->end >= (uintptr_t)pattern + PAT_PAGES * 4096)
			found_pattern = v->prot == (PROT_READ | PROT_WRITE) && (v->flags & CKPT_VMA_ANON);
		if (v->start == (uintptr_t)guard)
			found_guard = v->prot == 0;
		if (v->flags & CKPT_VMA_VDSO)
			found_vdso = v->prot == (PROT_READ | PROT_EXEC);
		if (v->flags & CKPT_VMA_GROWSDOWN)
			found_stack = im.thread.regs[19] >= v->start && im.thread.regs[19] < v->end; /* rsp */
	}
	assert_true(found_pattern);
	assert_true(found_guard);
	assert_true(found_vdso);
	assert_true(found_stack);
	assert_int_equal(im.thread.tid, pid);
	assert_int_equal(im.thread.regs[17], 0x33); /* cs */
	assert_true(im.thread.xstate_len >= 576);
	/* the child was forked from us: same vdso bytes */
	assert_true(im.vdso_len >= 4096);
	/* half the pattern pages were written, only those came, each exact */
	assert_int_equal(seen.pattern_pages, PAT_PAGES / 2);
	assert_int_equal(seen.bad, 0);
	assert_true(seen.pages > seen.pattern_pages);
	ckpt_image_free(&im);
	sm_image_reader_free(rd);

	/* damaged: one byte flipped in the middle: refused, by sentence */
	{
		off_t len = lseek(fd, 0, SEEK_END);
		uint8_t b;
		pid_t rpid = 0;

		assert_int_equal(pread(fd, &b, 1, len / 2), 1);
		b ^= 0x40;
		assert_int_equal(pwrite(fd, &b, 1, len / 2), 1);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		assert_int_equal(sockmig_restore(fd, NULL, &rpid), -EBADMSG);
		assert_int_equal(rpid, 0);
		assert_non_null(strstr(sockmig_error(), "checksum mismatch"));
		/* truncated */
		assert_int_equal(ftruncate(fd, len - 20), 0);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		assert_int_equal(sockmig_restore(fd, NULL, &rpid), -EBADMSG);
		assert_int_equal(rpid, 0);
	}
	close(fd);
	/* the dump resumed the child: it is still there and not a zombie */
	assert_int_equal(kill(pid, 0), 0);
	end_child(pid);
}

static void test_refuse_thread(void **state)
{
	pid_t pid = spawn_child(1);
	char want[128];
	int fd = -1;
	(void)state;

	assert_int_equal(dump_child(pid, &fd), -EOPNOTSUPP);
	snprintf(want, sizeof(want), "pid %d has 2 threads; only single-threaded processes can be checkpointed yet",
		 (int)pid);
	assert_string_equal(sockmig_error(), want);
	end_child(pid);
}

static void test_refuse_fd(void **state)
{
	pid_t pid = spawn_child(2);
	int fd = -1;
	(void)state;

	assert_int_equal(dump_child(pid, &fd), -EOPNOTSUPP);
	assert_non_null(strstr(sockmig_error(), "fd 3: a netlink socket is not migratable"));
	end_child(pid);
}

/* The image re-encoded with one thing changed, as a node with another kernel
 * or another CPU would have written it: the restore refuses it with its
 * sentence before anything is made. */
static void reencode_and_refuse(int (*change)(struct ckpt_image *), const char *want)
{
	pid_t pid = spawn_child(0), rpid = 0;
	struct sm_image_reader *rd;
	struct sm_image_writer *w;
	struct ckpt_image im;
	int fd, out;

	if (dump_child(pid, &fd) < 0)
		fail_msg("dump: %s", sockmig_error());
	end_child(pid);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sm_image_reader_new_fd(fd, &rd), 0);
	assert_int_equal(ckpt_read_image(rd, &im, NULL, NULL), 0);
	sm_image_reader_free(rd);
	close(fd);
	assert_int_equal(change(&im), 0);
	out = (int)syscall(SYS_memfd_create, "img2", MFD_CLOEXEC);
	assert_true(out >= 0);
	assert_int_equal(sm_image_writer_new(out, SM_IMAGE_KIND_PROCESS, &w), 0);
	assert_int_equal(ckpt_write_info(w, &im.info), 0);
	assert_int_equal(ckpt_write_mm(w, &im.mm), 0);
	assert_int_equal(ckpt_write_vdso(w, im.vdso, im.vdso_len), 0);
	assert_int_equal(ckpt_write_vmas(w, im.vmas, im.n_vmas), 0);
	assert_int_equal(ckpt_write_thread(w, &im.thread), 0);
	assert_int_equal(sm_image_writer_finish(w), 0);
	sm_image_writer_free(w);
	ckpt_image_free(&im);
	assert_int_equal(lseek(out, 0, SEEK_SET), 0);
	assert_int_equal(sockmig_restore(out, NULL, &rpid), -EOPNOTSUPP);
	assert_int_equal(rpid, 0);
	if (!strstr(sockmig_error(), want))
		fail_msg("refused with \"%s\", not \"%s\"", sockmig_error(), want);
	close(out);
}

static int other_kernel(struct ckpt_image *im)
{
	im->vdso[im->vdso_len / 2] ^= 0xff;
	return 0;
}

static int other_cpu(struct ckpt_image *im)
{
	uint64_t bv;

	/* a state component this CPU's XCR0 does not enable (bit 62 is
	 * reserved everywhere) marked in use in the xsave header */
	memcpy(&bv, im->thread.xstate + 512, 8);
	bv |= 1ull << 62;
	memcpy(im->thread.xstate + 512, &bv, 8);
	return 0;
}

static void test_refuse_other_kernel(void **state)
{
	(void)state;
	reencode_and_refuse(other_kernel, "the image's vdso differs from this node's (another kernel?)");
}

static void test_refuse_other_cpu(void **state)
{
	(void)state;
	reencode_and_refuse(other_cpu, "the image's FPU state uses CPU features 0x4000000000000000 that this CPU lacks");
}

static void test_not_stopped(void **state)
{
	pid_t pid = spawn_child(0);
	struct sockmig_proc *p;
	(void)state;

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_ckpt_dump(p, 1, NULL), -EINVAL);
	assert_non_null(strstr(sockmig_error(), "is not stopped"));
	sockmig_proc_free(p);
	end_child(pid);
}


/* ---- the dump refuses by itself what appeared after the check ---- */

static void test_refuse_fd_after_check(void **state)
{
	pid_t pid = spawn_child(3);
	struct sockmig_proc *p;
	int fd = (int)syscall(SYS_memfd_create, "img", MFD_CLOEXEC);
	(void)state;

	assert_true(fd >= 0);
	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_ckpt_check(p, NULL), 0);
	child_do('n', 0); /* a netlink socket as fd 3, the check passed */
	assert_int_equal(sockmig_proc_stop(p), 0);
	assert_int_equal(sockmig_ckpt_dump(p, fd, NULL), -EOPNOTSUPP);
	assert_non_null(strstr(sockmig_error(), "fd 3: a netlink socket is not migratable"));
	sockmig_proc_free(p); /* resumes it */
	child_do('w', 0);     /* and it goes on */
	close(fd);
	end_child(pid);
}

/* ---- pre-copy: what D holds is the child's memory, page for page ---- */

static bool bit(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

/* Every page of every region against the child's memory: a page held is
 * the same bytes, a page not held is zeros there. */
static void expect_regions_are_memory(const struct ckpt_pcs *s, pid_t pid)
{
	char path[64];
	static uint8_t page[4096], zero[4096];
	size_t bad = 0, checked = 0;
	int mem;

	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	mem = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(mem >= 0);
	assert_true(s->n > 0);
	for (size_t i = 0; i < s->n; i++) {
		const struct ckpt_region *g = &s->r[i];

		for (uint64_t a = g->start; a < g->end; a += 4096) {
			uint64_t k = (a - g->start) / 4096;

			assert_int_equal(pread(mem, page, 4096, (off_t)a), 4096);
			checked++;
			if (bit(g->bits, k) ? memcmp(g->base + (a - g->start), page, 4096) : memcmp(page, zero, 4096)) {
				if (!bad)
					print_error("page %#llx differs (held %d)\n", (unsigned long long)a, bit(g->bits, k));
				bad++;
			}
		}
	}
	close(mem);
	assert_true(checked > PAT_PAGES);
	assert_int_equal(bad, 0);
}

static const struct ckpt_region *region_of(const struct ckpt_pcs *s, const void *p)
{
	const struct ckpt_region *g = ckpt_pcs_find(s, (uint64_t)(uintptr_t)p, 4096);

	assert_non_null(g);
	return g;
}

static bool held(const struct ckpt_pcs *s, const void *p)
{
	const struct ckpt_region *g = region_of(s, p);

	return bit(g->bits, ((uint64_t)(uintptr_t)p - g->start) / 4096);
}

static void test_precopy_roundtrip(void **state)
{
	pid_t pid = spawn_child(4);
	struct sockmig_proc *p;
	struct sockmig_precopy *pc;
	struct sockmig_precopy_store *ps;
	struct sockmig_precopy_stats st;
	struct sockmig_ckpt_opts o = { .precopy_stats = &st };
	struct sockmig_prepare_opts po;
	struct sockmig_precopy_store_info in;
	struct sockmig_restore *rs;
	uint8_t *extra;
	char path[64], buf[256];
	int fd;
	(void)state;

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_ckpt_check(p, NULL), 0);
	assert_int_equal(sockmig_precopy_start(p, &pc), 0);
	assert_int_equal(sockmig_precopy_store_new(64 << 20, &ps), 0);

	/* round 1: everything; the odd pattern pages were never written */
	fd = (int)syscall(SYS_memfd_create, "r1", MFD_CLOEXEC);
	assert_int_equal(sockmig_precopy_round(pc, fd, &st), 0);
	assert_int_equal(st.round, 1);
	assert_int_equal(st.fresh, st.ranges);
	assert_true(st.pages >= PAT_PAGES / 2);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sockmig_precopy_store_read(ps, fd), 0);
	close(fd);
	expect_regions_are_memory(&ps->pcs, pid);
	assert_true(held(&ps->pcs, pattern) && !held(&ps->pcs, pattern + 4096));

	/* round 2: two pages written, one given back, a new mapping */
	child_do('w', 1);
	child_do('w', 2);
	child_do('z', 4);
	child_do('m', 0);
	assert_int_equal(read(ack_fd, &extra, sizeof(extra)), sizeof(extra));
	fd = (int)syscall(SYS_memfd_create, "r2", MFD_CLOEXEC);
	assert_int_equal(sockmig_precopy_round(pc, fd, &st), 0);
	assert_int_equal(st.round, 2);
	assert_true(st.fresh >= 1);
	assert_true(st.pages >= 2 + 8 && st.pages < PAT_PAGES / 2);
	assert_true(st.dropped >= 1);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sockmig_precopy_store_read(ps, fd), 0);
	close(fd);
	expect_regions_are_memory(&ps->pcs, pid);
	assert_true(held(&ps->pcs, pattern + 4096) && !held(&ps->pcs, pattern + 4 * 4096) && held(&ps->pcs, extra));

	/* the freeze: one more page written, one more given back */
	child_do('w', 3);
	child_do('z', 6);
	assert_int_equal(sockmig_proc_stop(p), 0);
	fd = (int)syscall(SYS_memfd_create, "final", MFD_CLOEXEC);
	o.precopy = pc;
	assert_int_equal(sockmig_ckpt_dump(p, fd, &o), 0);
	assert_true(st.pages >= 1 && st.pages < 64);
	assert_true(st.dropped >= 1);
	assert_int_equal(st.round, 2);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	po.precopy = ps;
	if (sockmig_restore_prepare2(fd, &po, &rs) < 0)
		fail_msg("prepare2: %s", sockmig_error());
	close(fd);
	/* the restore holds what the child holds, the store nothing */
	expect_regions_are_memory(&rs->pcs, pid);
	assert_true(held(&rs->pcs, pattern + 3 * 4096) && !held(&rs->pcs, pattern + 6 * 4096));
	sockmig_precopy_store_info(ps, &in);
	assert_int_equal(in.ranges, 0);
	assert_int_equal(sockmig_precopy_store_read(ps, 0), -EINVAL);
	sockmig_restore_free(rs);
	sockmig_precopy_store_free(ps);

	/* given up: the child as before (no registration left, fds 0..2) */
	sockmig_precopy_free(pc);
	sockmig_proc_free(p);
	child_do('w', 5);
	snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
	{
		FILE *f = fopen(path, "re");

		assert_non_null(f);
		while (fgets(buf, sizeof(buf), f))
			if (!strncmp(buf, "VmFlags:", 8))
				assert_null(strstr(buf, " uw"));
		fclose(f);
	}
	snprintf(path, sizeof(path), "/proc/%d/fd/3", (int)pid);
	assert_int_equal(access(path, F_OK), -1);
	end_child(pid);
}

/* ---- the store: rounds written by hand ---- */

static const uint8_t ID1[CKPT_PC_ID_LEN] = { 1 }, ID2[CKPT_PC_ID_LEN] = { 2 };

struct round_w {
	int fd;
	struct sm_image_writer *w;
};

static void round_begin(struct round_w *rw, const uint8_t *id, uint32_t round, const struct ckpt_pc_range *r, size_t n)
{
	struct ckpt_pc_ranges pr = { .round = round, .r = (struct ckpt_pc_range *)r, .n = n };

	memcpy(pr.id, id, sizeof(pr.id));
	rw->fd = (int)syscall(SYS_memfd_create, "round", MFD_CLOEXEC);
	assert_true(rw->fd >= 0);
	assert_int_equal(sm_image_writer_new(rw->fd, CKPT_IMAGE_KIND_PAGES, &rw->w), 0);
	assert_int_equal(ckpt_write_ranges(rw->w, CKPT_SEC_ROUND, &pr), 0);
}

static void round_page(struct round_w *rw, uint64_t addr, uint8_t fill)
{
	uint8_t b[CKPT_PAGES_HDR + 4096];

	memset(b, 0, CKPT_PAGES_HDR);
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(addr >> (8 * i));
	b[8] = 1;
	memset(b + CKPT_PAGES_HDR, fill, 4096);
	assert_int_equal(sm_image_write_section(rw->w, CKPT_SEC_PAGES, b, sizeof(b)), 0);
}

static int round_end(struct round_w *rw, struct sockmig_precopy_store *ps)
{
	int r;

	assert_int_equal(sm_image_writer_finish(rw->w), 0);
	sm_image_writer_free(rw->w);
	assert_int_equal(lseek(rw->fd, 0, SEEK_SET), 0);
	r = sockmig_precopy_store_read(ps, rw->fd);
	close(rw->fd);
	return r;
}

/* The store's page at addr: -1 not held, else its fill byte (checked whole). */
static int page_fill(const struct sockmig_precopy_store *ps, uint64_t addr)
{
	const struct ckpt_region *g = ckpt_pcs_find(&ps->pcs, addr, 4096);
	const uint8_t *b;

	assert_non_null(g);
	if (!bit(g->bits, (addr - g->start) / 4096))
		return -1;
	b = g->base + (addr - g->start);
	for (int i = 1; i < 4096; i++)
		assert_int_equal(b[i], b[0]);
	return b[0];
}

#define A 0x10000000ull
#define B 0x20000000ull
#define C (B + 0x100000ull)

static void test_store_layout(void **state)
{
	struct sockmig_precopy_store *ps;
	struct sockmig_precopy_store_info in;
	struct round_w rw;
	(void)state;

	assert_int_equal(sockmig_precopy_store_new(16 * 4096, &ps), 0);
	/* 1: two new mappings */
	{
		const struct ckpt_pc_range r[] = { { A, A + 8 * 4096, CKPT_PC_NEW }, { B, B + 4 * 4096, CKPT_PC_NEW } };

		round_begin(&rw, ID1, 1, r, 2);
		for (int i = 0; i < 4; i++)
			round_page(&rw, A + (uint64_t)i * 4096, (uint8_t)(0x10 + i));
		round_page(&rw, B + 4096, 0x21);
		assert_int_equal(round_end(&rw, ps), 0);
	}
	assert_int_equal(page_fill(ps, A + 2 * 4096), 0x12);
	assert_int_equal(page_fill(ps, A + 5 * 4096), -1);
	/* 2: A grew, page 1 given back; B shrank; C is new */
	{
		const struct ckpt_pc_range r[] = { { A, A + 12 * 4096, 0 }, { B, B + 2 * 4096, 0 }, { C, C + 4096, CKPT_PC_NEW } };

		round_begin(&rw, ID1, 2, r, 3);
		assert_int_equal(ckpt_write_drop(rw.w, A + 4096, 1), 0);
		round_page(&rw, A + 11 * 4096, 0x1b);
		round_page(&rw, C, 0x31);
		assert_int_equal(round_end(&rw, ps), 0);
	}
	assert_int_equal(page_fill(ps, A), 0x10);
	assert_int_equal(page_fill(ps, A + 4096), -1);
	assert_int_equal(page_fill(ps, A + 3 * 4096), 0x13);
	assert_int_equal(page_fill(ps, A + 11 * 4096), 0x1b);
	assert_int_equal(page_fill(ps, B + 4096), 0x21);
	assert_int_equal(page_fill(ps, C), 0x31);
	sockmig_precopy_store_info(ps, &in);
	assert_int_equal(in.round, 2);
	assert_int_equal(in.ranges, 3);
	assert_int_equal(in.bytes, 6 * 4096);
	/* 3: one mapping over B and C (what was between them never held) */
	{
		const struct ckpt_pc_range r[] = { { A, A + 12 * 4096, 0 }, { B, C + 4096, 0 } };

		round_begin(&rw, ID1, 3, r, 2);
		assert_int_equal(round_end(&rw, ps), 0);
	}
	assert_int_equal(page_fill(ps, B + 4096), 0x21);
	assert_int_equal(page_fill(ps, C), 0x31);
	assert_int_equal(page_fill(ps, B + 8 * 4096), -1);
	/* 4: A anew: it starts empty */
	{
		const struct ckpt_pc_range r[] = { { A, A + 4 * 4096, CKPT_PC_NEW } };

		round_begin(&rw, ID1, 4, r, 1);
		round_page(&rw, A + 4096, 0x41);
		assert_int_equal(round_end(&rw, ps), 0);
	}
	assert_int_equal(page_fill(ps, A), -1);
	assert_int_equal(page_fill(ps, A + 4096), 0x41);
	sockmig_precopy_store_info(ps, &in);
	assert_int_equal(in.ranges, 1);
	assert_int_equal(in.bytes, 4096);

	/* refused, the store untouched: another pre-copy, a round skipped */
	{
		const struct ckpt_pc_range r[] = { { A, A + 4 * 4096, 0 } };

		round_begin(&rw, ID2, 5, r, 1);
		assert_int_equal(round_end(&rw, ps), -EINVAL);
		assert_non_null(strstr(sockmig_error(), "of another pre-copy"));
		round_begin(&rw, ID1, 6, r, 1);
		assert_int_equal(round_end(&rw, ps), -EINVAL);
		assert_non_null(strstr(sockmig_error(), "pre-copy round 6 cannot follow round 4"));
		assert_int_equal(page_fill(ps, A + 4096), 0x41);
	}
	/* over the bound (16 pages): refused, and the store is done for */
	{
		const struct ckpt_pc_range r[] = { { A, A + 32 * 4096, 0 } };

		round_begin(&rw, ID1, 5, r, 1);
		for (int i = 0; i < 20; i++)
			round_page(&rw, A + (uint64_t)i * 4096, 0x50);
		assert_int_equal(round_end(&rw, ps), -ENOSPC);
		round_begin(&rw, ID1, 6, r, 1);
		assert_int_equal(round_end(&rw, ps), -EIO);
		assert_non_null(strstr(sockmig_error(), "round 5 failed half-way"));
	}
	sockmig_precopy_store_free(ps);

	/* pages outside the round's ranges */
	assert_int_equal(sockmig_precopy_store_new(16 * 4096, &ps), 0);
	{
		const struct ckpt_pc_range r[] = { { A, A + 4 * 4096, CKPT_PC_NEW } };

		round_begin(&rw, ID1, 1, r, 1);
		round_page(&rw, A + 4 * 4096, 0x60);
		assert_int_equal(round_end(&rw, ps), -EBADMSG);
		assert_non_null(strstr(sockmig_error(), "is invalid"));
	}
	sockmig_precopy_store_free(ps);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dump_sections),
		cmocka_unit_test(test_refuse_thread),
		cmocka_unit_test(test_refuse_fd),
		cmocka_unit_test(test_refuse_other_kernel),
		cmocka_unit_test(test_refuse_other_cpu),
		cmocka_unit_test(test_not_stopped),
		cmocka_unit_test(test_refuse_fd_after_check),
		cmocka_unit_test(test_precopy_roundtrip),
		cmocka_unit_test(test_store_layout),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
