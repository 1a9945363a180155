/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checkpoint: the pre-flight check and the dump of a stopped process.
 *
 * Everything is read from outside: /proc/PID/{maps,stat,status,auxv,fdinfo},
 * ptrace for the registers (the process is seized and stopped by proc.c),
 * /proc/PID/pagemap to find the pages that exist and /proc/PID/mem to read
 * them. What only the process can tell (signal handlers, timers) is read by
 * syscalls injected into it, which put back everything they touch
 * (ckpt_task.c, ckpt_inject.c), so a failed dump leaves it exactly as it
 * was. With pre-copy (ckpt_precopy.c) the tracked mappings carry only what
 * changed since the last round.
 */
#include <elf.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/user.h>

#include "sockmig/ckpt.h"
#include "ckpt.h"
#include "ckpt_fd.h"
#include "ckpt_pc.h"
#include "ckpt_task.h"
#include "util.h"

#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif
#ifndef PTRACE_GETSIGMASK
#define PTRACE_GETSIGMASK 0x420a
#endif

struct rseq_config { /* struct ptrace_rseq_configuration */
	uint64_t rseq_abi_pointer;
	uint32_t rseq_abi_size;
	uint32_t signature;
	uint32_t flags;
	uint32_t pad;
};

/* pagemap bits (Documentation/admin-guide/mm/pagemap.rst) */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61) /* a page-cache or shared-anon page: not ours to copy */

static void free_vmas(struct ckpt_vma *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

/* One line of /proc/PID/maps: "start-end perms offset dev inode   path". */
static int parse_maps_line(const char *line, struct ckpt_vma *v)
{
	unsigned long long start, end, off, ino;
	char perms[5];
	int pos = 0;
	const char *path;

	memset(v, 0, sizeof(*v));
	if (sscanf(line, "%llx-%llx %4s %llx %*x:%*x %llu %n", &start, &end, perms, &off, &ino, &pos) < 5 || !pos)
		return -EIO;
	v->ino = ino;
	v->start = start;
	v->end = end;
	v->pgoff = off;
	v->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
		  (perms[2] == 'x' ? PROT_EXEC : 0);
	if (perms[3] == 's')
		v->flags |= CKPT_VMA_SHARED;
	path = line + pos;
	if (path[0] == '/') {
		size_t len = strlen(path);

		v->path = strdup(path);
		if (!v->path)
			return -ENOMEM;
		/* shared memory no file on D can give back: MAP_SHARED|MAP_ANONYMOUS
		 * ("/dev/zero (deleted)"), a memfd, a deleted file */
		if ((v->flags & CKPT_VMA_SHARED) &&
		    (!strncmp(path, "/memfd:", 7) || (len > 10 && !strcmp(path + len - 10, " (deleted)"))))
			v->flags |= CKPT_VMA_SHM;
		return 0;
	}
	v->flags |= CKPT_VMA_ANON;
	if (!strcmp(path, "[stack]"))
		v->flags |= CKPT_VMA_GROWSDOWN;
	else if (!strcmp(path, "[heap]"))
		v->flags |= CKPT_VMA_HEAP;
	else if (!strcmp(path, "[vvar]"))
		v->flags |= CKPT_VMA_VVAR;
	else if (!strcmp(path, "[vvar_vclock]"))
		v->flags |= CKPT_VMA_VVAR_VCLOCK;
	else if (!strcmp(path, "[vdso]"))
		v->flags |= CKPT_VMA_VDSO;
	else if (!strcmp(path, "[vsyscall]"))
		v->flags |= CKPT_VMA_VSYSCALL;
	else if (path[0] && strncmp(path, "[anon:", 6) && strncmp(path, "[stack:", 7)) {
		/* e.g. "/memfd:x (deleted)" has a '/', so this is some other kernel-named mapping */
		v->path = strdup(path);
		if (!v->path)
			return -ENOMEM;
		v->flags &= ~CKPT_VMA_ANON;
	}
	return 0;
}

int ckpt_read_maps(pid_t pid, struct ckpt_vma **ret, size_t *ret_n)
{
	char path[64], line[4096 + 128];
	struct ckpt_vma *v = NULL;
	size_t n = 0, cap = 0;
	FILE *f;
	int r = 0;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	f = fopen(path, "re");
	if (!f)
		return sm_fail(errno == ENOENT ? -ESRCH : -errno, "pid %d: cannot read its mappings: %s", (int)pid,
			       strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (n == cap) {
			struct ckpt_vma *nv = realloc(v, (cap ? cap * 2 : 64) * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
			cap = cap ? cap * 2 : 64;
		}
		r = parse_maps_line(line, &v[n]);
		if (r < 0) {
			sm_fail(r, "pid %d: cannot parse the mapping \"%.80s\"", (int)pid, line);
			break;
		}
		n++;
	}
	fclose(f);
	if (r < 0) {
		free_vmas(v, n);
		return r;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* "Threads:\t3" and "SigBlk:\t0000000000010000" from /proc/PID/status */
static int read_status_field(pid_t pid, const char *key, char *val, size_t size)
{
	char path[64], buf[4096], *p;
	size_t klen = strlen(key);
	int r;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	r = sm_read_file(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (!strncmp(p, key, klen) && p[klen] == ':') {
			p += klen + 1;
			p += strspn(p, " \t");
			snprintf(val, size, "%.*s", (int)strcspn(p, "\n"), p);
			return 0;
		}
	}
	return -ENOENT;
}

/* A tracer that is one of our threads (a daemon's worker) is us. */
static bool tracer_is_us(int tid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d", tid);
	return access(path, F_OK) == 0;
}

/* What the process is and how many threads it has: a process may start a
 * thread, or rename itself, between the check and the stop, so the dump
 * asks again. */
static int check_status(pid_t pid, bool stopped)
{
	char val[64], comm[32];
	int r;

	r = read_status_field(pid, "Threads", val, sizeof(val));
	if (r < 0)
		return sm_fail(r == -ENOENT ? -ESRCH : r, "pid %d: cannot read its status", (int)pid);
	/* our own machinery: a daemon cannot move itself, and the init of a
	 * restored process's namespace is not the process */
	if (read_status_field(pid, "Name", comm, sizeof(comm)) == 0) {
		if (!strcmp(comm, "sockmigd"))
			return sm_fail(-EPERM, "pid %d is the sockmig daemon, which cannot be checkpointed", (int)pid);
		if (!strcmp(comm, "sockmig-init"))
			return sm_fail(-EPERM, "pid %d is the init of a restored process's pid namespace; move the process itself",
				       (int)pid);
	}
	if (atoi(val) != 1)
		return sm_fail(-EOPNOTSUPP, "pid %d has %d threads; only single-threaded processes can be checkpointed yet",
			       (int)pid, atoi(val));
	if (stopped)
		return 0; /* the tracer is us now */
	r = read_status_field(pid, "TracerPid", val, sizeof(val));
	if (r == 0 && atoi(val) != 0 && !tracer_is_us(atoi(val)))
		return sm_fail(-EBUSY, "pid %d is traced by pid %d, so it cannot be checkpointed", (int)pid, atoi(val));
	return 0;
}

static int check_vmas(pid_t pid, const struct ckpt_vma *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (v[i].path && !strncmp(v[i].path, "/SYSV", 5))
			return sm_fail(-EOPNOTSUPP, "pid %d: mapping %#" PRIx64 "-%#" PRIx64 " is System V shared memory, which is not migratable",
				       (int)pid, v[i].start, v[i].end);
		if (v[i].path && !(v[i].flags & CKPT_VMA_SHM) && (v[i].path[0] != '/' || strstr(v[i].path, " (deleted)")))
			return sm_fail(-EOPNOTSUPP, "pid %d: mapping %#" PRIx64 "-%#" PRIx64 " of %s is not migratable",
				       (int)pid, v[i].start, v[i].end, v[i].path);
	}
	return 0;
}

int sockmig_ckpt_check(struct sockmig_proc *p, const struct sockmig_ckpt_opts *o)
{
	pid_t pid = sockmig_proc_pid(p);
	struct ckpt_vma *v = NULL;
	size_t n = 0;
	int r;

	r = check_status(pid, false);
	if (r < 0)
		return r;
	r = ckpt_fds_check(pid, o ? o->skip_fds : NULL, o ? o->n_skip_fds : 0);
	if (r < 0)
		return r;
	r = ckpt_task_check(pid);
	if (r < 0)
		return r;
	r = ckpt_read_maps(pid, &v, &n);
	if (r < 0)
		return r;
	r = check_vmas(pid, v, n);
	free_vmas(v, n);
	return r;
}

/* The pid as the process sees it: the last field of NSpid (its own pid
 * namespace), which a restore in a pid namespace of its own gives back. */
static uint32_t own_pid(pid_t pid)
{
	char val[256], *last;

	if (read_status_field(pid, "NSpid", val, sizeof(val)) < 0)
		return (uint32_t)pid;
	last = strrchr(val, '\t');
	return (uint32_t)atoi(last ? last + 1 : val);
}

/* /proc/PID/stat fields 26.. (see proc(5)), counted after the last ')'. */
static int read_mm(pid_t pid, struct ckpt_mm *mm)
{
	char path[64], buf[4096], *p;
	unsigned long long f[52] = { 0 };
	int r, i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = sm_read_file(path, buf, sizeof(buf));
	if (r < 0)
		return sm_fail(r, "pid %d: cannot read its stat", (int)pid);
	p = strrchr(buf, ')');
	if (!p)
		return sm_fail(-EIO, "pid %d: unreadable stat", (int)pid);
	p += 2; /* field 3, the state */
	p = strchr(p, ' ');
	for (i = 4; i <= 51 && p; i++) {
		f[i] = strtoull(p + 1, &p, 10);
		if (*p != ' ' && *p != '\n')
			break;
	}
	if (i <= 51)
		return sm_fail(-EIO, "pid %d: stat has only %d fields", (int)pid, i);
	mm->start_code = f[26];
	mm->end_code = f[27];
	mm->start_stack = f[28];
	mm->start_data = f[45];
	mm->end_data = f[46];
	mm->start_brk = f[47];
	mm->arg_start = f[48];
	mm->arg_end = f[49];
	mm->env_start = f[50];
	mm->env_end = f[51];
	mm->brk = mm->start_brk; /* raised to the heap's end by the caller */

	snprintf(path, sizeof(path), "/proc/%d/auxv", (int)pid);
	{
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd < 0 ? -1 : read(fd, mm->auxv, sizeof(mm->auxv));

		if (n < 0 || n % 16)
			return sm_fail(-EIO, "pid %d: cannot read its auxv", (int)pid);
		mm->auxv_len = (uint32_t)n;
	}
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	r = (int)readlink(path, mm->exe, sizeof(mm->exe) - 1);
	if (r < 0)
		return sm_fail(-errno, "pid %d: cannot read its exe link: %s", (int)pid, strerror(errno));
	mm->exe[r] = 0;
	return 0;
}

static int read_thread(pid_t pid, struct ckpt_thread *t, struct ckpt_info *info)
{
	struct user_regs_struct regs;
	struct rseq_config rc = { 0 };
	struct iovec iov = { t->xstate, sizeof(t->xstate) };
	char val[64];

	_Static_assert(sizeof(regs) == CKPT_NREGS * 8, "user_regs_struct is 27 u64");
	t->tid = (uint32_t)pid;
	if (ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0)
		return sm_fail(-errno, "pid %d: cannot read its registers: %s", (int)pid, strerror(errno));
	if (regs.cs != 0x33)
		return sm_fail(-EOPNOTSUPP, "pid %d runs in 32-bit mode (cs %#llx); only x86-64 processes can be checkpointed",
			       (int)pid, (unsigned long long)regs.cs);
	memcpy(t->regs, &regs, sizeof(regs));
	if (ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
		return sm_fail(-errno, "pid %d: cannot read its FPU/AVX state: %s", (int)pid, strerror(errno));
	t->xstate_len = (uint32_t)iov.iov_len;
	if (t->xstate_len < 576)
		return sm_fail(-EIO, "pid %d: its xstate is only %u bytes", (int)pid, t->xstate_len);
	/* what this CPU's xsave handles; the state itself says in its header
	 * (xstate_bv, offset 512) which of them it uses, which restore checks */
	info->xfeatures = ckpt_xcr0();

	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, (void *)sizeof(rc), &rc) >= 0) {
		t->rseq_ptr = rc.rseq_abi_pointer;
		t->rseq_len = rc.rseq_abi_size;
		t->rseq_sig = rc.signature;
	}
	if (read_status_field(pid, "SigBlk", val, sizeof(val)) < 0)
		return sm_fail(-EIO, "pid %d: cannot read its blocked signals", (int)pid);
	t->sigmask = strtoull(val, NULL, 16);
	return 0;
}

static int sm_pread_full(int fd, uint8_t *p, size_t len, off_t off)
{
	while (len) {
		ssize_t n = pread(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) { /* past the end of the file: the mapping reads zeros */
			memset(p, 0, len);
			return 0;
		}
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static int is_zero_page(const uint8_t *p)
{
	static const uint8_t zero[CKPT_PAGE];

	return !memcmp(p, zero, CKPT_PAGE);
}

/* Write the npages read at buf + CKPT_PAGES_HDR as PAGES sections. In an
 * anonymous mapping an all-zero page is left out: a page that is not there
 * reads as zeros too (the shared zero page a read fault maps counts as
 * present in pagemap). Not so in a file mapping, where it would read the
 * file. Each section's header goes into the 16 bytes before its first page:
 * the header room, or the tail of a zero page already skipped. */
static int write_runs(struct sm_image_writer *w, const struct ckpt_vma *v, uint64_t addr, uint8_t *buf,
		      uint64_t npages)
{
	uint8_t *pages = buf + CKPT_PAGES_HDR;

	for (uint64_t i = 0; i < npages;) {
		uint64_t j;
		uint8_t *h;
		int r;

		if ((v->flags & (CKPT_VMA_ANON | CKPT_VMA_SHM)) && is_zero_page(pages + i * CKPT_PAGE)) {
			i++;
			continue;
		}
		for (j = i + 1;
		     j < npages && !((v->flags & (CKPT_VMA_ANON | CKPT_VMA_SHM)) && is_zero_page(pages + j * CKPT_PAGE));
		     j++)
			;
		h = pages + i * CKPT_PAGE - CKPT_PAGES_HDR;
		{
			struct sm_buf hdr;

			sm_buf_init(&hdr);
			sm_buf_put_u64(&hdr, addr + i * CKPT_PAGE);
			sm_buf_put_u32(&hdr, (uint32_t)(j - i));
			sm_buf_put_u32(&hdr, 0);
			if (hdr.err) {
				sm_buf_free(&hdr);
				return -ENOMEM;
			}
			memcpy(h, hdr.data, CKPT_PAGES_HDR);
			sm_buf_free(&hdr);
		}
		r = sm_image_write_section(w, CKPT_SEC_PAGES, h, CKPT_PAGES_HDR + (j - i) * CKPT_PAGE);
		if (r < 0)
			return r;
		i = j;
	}
	return 0;
}

/* Copy every page of v that exists and is the process's own: present or
 * swapped, and not a page-cache page of the file behind a private mapping
 * (the file provides those again on restore). In shared memory the image
 * carries (CKPT_VMA_SHM) every present page is wanted: they are all shmem
 * page-cache pages, which pagemap marks PM_FILE. */
/* Shared memory the image carries is read through its file, not through
 * the page table: shmem keeps pages no page-table entry points at (written
 * with pwrite, or before a fork, or zapped with MADV_DONTNEED), which
 * pagemap cannot see. /proc/PID/map_files opens the very file; SEEK_DATA
 * skips its holes. */
static int dump_shm_pages(struct sm_image_writer *w, pid_t pid, const struct ckpt_vma *v, uint8_t *buf)
{
	char path[96];
	_cleanup_close_ int fd = -1;
	uint64_t lo = v->pgoff, hi = v->pgoff + (v->end - v->start);
	off_t off = (off_t)lo;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, v->start, v->end);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return sm_fail(-errno, "pid %d: cannot open the shared memory at %#" PRIx64 ": %s", (int)pid, v->start,
			       strerror(errno));
	while ((uint64_t)off < hi) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;
		uint64_t end;

		if (data < 0 || (uint64_t)data >= hi)
			break; /* ENXIO: no data past off */
		hole = lseek(fd, data, SEEK_HOLE);
		end = hole < 0 || (uint64_t)hole > hi ? hi : (uint64_t)hole;
		data &= ~(off_t)(CKPT_PAGE - 1);
		end = (end + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1);
		if (end > hi)
			end = hi;
		for (uint64_t a = (uint64_t)data; a < end;) {
			uint64_t len = end - a > CKPT_RUN_MAX_PAGES * CKPT_PAGE ? CKPT_RUN_MAX_PAGES * CKPT_PAGE : end - a;
			int r;

			if (sm_pread_full(fd, buf + CKPT_PAGES_HDR, len, (off_t)a) < 0)
				return sm_fail(-EIO, "pid %d: cannot read the shared memory at %#" PRIx64, (int)pid,
					       v->start + (a - lo));
			r = write_runs(w, v, v->start + (a - lo), buf, len / CKPT_PAGE);
			if (r < 0)
				return r;
			a += len;
		}
		off = (off_t)end;
	}
	return 0;
}

static int dump_vma_pages(struct sm_image_writer *w, int pagemap_fd, int mem_fd, pid_t pid,
			  const struct ckpt_vma *v, uint8_t *buf, uint64_t *pm)
{
	uint64_t npages = (v->end - v->start) / CKPT_PAGE;
	bool shm = v->flags & CKPT_VMA_SHM;

	for (uint64_t base = 0; base < npages; base += CKPT_RUN_MAX_PAGES) {
		uint64_t chunk = npages - base < CKPT_RUN_MAX_PAGES ? npages - base : CKPT_RUN_MAX_PAGES;
		uint64_t addr0 = v->start + base * CKPT_PAGE;
		ssize_t n = pread(pagemap_fd, pm, chunk * 8, (off_t)(addr0 / CKPT_PAGE * 8));

		if (n != (ssize_t)(chunk * 8))
			return sm_fail(n < 0 ? -errno : -EIO, "pid %d: cannot read the page map of %#" PRIx64,
				       (int)pid, addr0);
		for (uint64_t i = 0; i < chunk;) {
			uint64_t j, addr, len;
			int r;

#define WANTED(e) ((((e) & PM_PRESENT) && (shm || !((e) & PM_FILE))) || ((e) & PM_SWAPPED))
			if (!WANTED(pm[i])) {
				i++;
				continue;
			}
			for (j = i; j < chunk && WANTED(pm[j]); j++)
				;
#undef WANTED
			addr = addr0 + i * CKPT_PAGE;
			len = (j - i) * CKPT_PAGE;
			n = pread(mem_fd, buf + CKPT_PAGES_HDR, len, (off_t)addr);
			if (n != (ssize_t)len)
				return sm_fail(n < 0 ? -errno : -EIO, "pid %d: cannot read its memory at %#" PRIx64 ": %s",
					       (int)pid, addr, n < 0 ? strerror(errno) : "short read");
			r = write_runs(w, v, addr, buf, j - i);
			if (r < 0)
				return r;
			i = j;
		}
	}
	return 0;
}

int sockmig_ckpt_dump(struct sockmig_proc *p, int image_fd, const struct sockmig_ckpt_opts *o)
{
	uint64_t t0 = sm_now_ns();
	pid_t pid = sockmig_proc_pid(p);
	struct sm_image_writer *w = NULL;
	struct ckpt_pc_final *fin = NULL;
	struct ckpt_image im;
	_cleanup_close_ int pagemap_fd = -1, mem_fd = -1;
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ uint64_t *pm = NULL;
	struct ckpt_thread *t;
	char path[64];
	int r;

	if (!sockmig_proc_is_stopped(p))
		return sm_fail(-EINVAL, "pid %d is not stopped; stop it before the checkpoint", (int)pid);
	t = calloc(1, sizeof(*t));
	memset(&im, 0, sizeof(im));
	if (!t)
		return -ENOMEM;
	/* Not the whole sockmig_ckpt_check() again: the fds are classified
	 * again by ckpt_fds_dump() and the task state by ckpt_task_dump(),
	 * which refuse what the check refuses; the mappings are checked
	 * below, on the list the dump uses. */
	r = check_status(pid, true);
	if (r < 0)
		goto out;
	r = read_mm(pid, &im.mm);
	if (r < 0)
		goto out;
	r = read_thread(pid, t, &im.info);
	if (r < 0)
		goto out;
	im.info.pid = own_pid(pid);
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	if (sm_read_file(path, im.info.comm, sizeof(im.info.comm)) >= 0)
		im.info.comm[strcspn(im.info.comm, "\n")] = 0;

	r = ckpt_read_maps(pid, &im.vmas, &im.n_vmas);
	if (r < 0)
		goto out;
	r = check_vmas(pid, im.vmas, im.n_vmas);
	if (r < 0)
		goto out;
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	mem_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (pagemap_fd < 0 || mem_fd < 0) {
		r = sm_fail(-errno, "pid %d: cannot open its memory: %s", (int)pid, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < im.n_vmas; i++) {
		const struct ckpt_vma *v = &im.vmas[i];

		if (v->flags & CKPT_VMA_HEAP)
			im.mm.brk = v->end;
		if (v->flags & CKPT_VMA_VDSO) {
			im.vdso_len = v->end - v->start;
			im.vdso = malloc(im.vdso_len);
			if (!im.vdso) {
				r = -ENOMEM;
				goto out;
			}
			if (pread(mem_fd, im.vdso, im.vdso_len, (off_t)v->start) != (ssize_t)im.vdso_len) {
				r = sm_fail(-EIO, "pid %d: cannot read its vdso", (int)pid);
				goto out;
			}
		}
	}
	if (!im.vdso) {
		r = sm_fail(-EOPNOTSUPP, "pid %d has no vdso mapped, which this sockmig cannot restore yet", (int)pid);
		goto out;
	}
	/* Pre-copy: what changed since the last round, read now, before the
	 * injections of ckpt_task_dump() (they put back what they touch) */
	if (o && o->precopy) {
		r = ckpt_pc_final_scan(o->precopy, pid, im.vmas, im.n_vmas, &fin);
		if (r < 0)
			goto out;
	}

	r = sm_image_writer_new(image_fd, SM_IMAGE_KIND_PROCESS, &w);
	if (r < 0)
		goto out;
	if ((r = ckpt_write_info(w, &im.info)) < 0 || (r = ckpt_write_mm(w, &im.mm)) < 0 ||
	    (r = ckpt_write_vdso(w, im.vdso, im.vdso_len)) < 0 || (r = ckpt_write_vmas(w, im.vmas, im.n_vmas)) < 0)
		goto out;
	if (fin && (r = ckpt_pc_final_write_ranges(fin, w)) < 0)
		goto out;
	/* handlers, timers, creds: may run syscalls inside the process, which
	 * leaves it exactly as it was (ckpt_inject.c) */
	r = ckpt_task_dump(p, w);
	if (r < 0)
		goto out;
	/* The blocked mask after that: a process stopped in sigsuspend, ppoll
	 * or pselect showed its temporary mask; the injection's return to user
	 * space put the real one back. */
	{
		uint64_t mask;

		if (ptrace(PTRACE_GETSIGMASK, pid, (void *)sizeof(mask), &mask) == 0)
			t->sigmask = mask;
	}
	r = ckpt_write_thread(w, t);
	if (r < 0)
		goto out;
	r = ckpt_fds_dump(p, o ? o->skip_fds : NULL, o ? o->n_skip_fds : 0, w);
	if (r < 0)
		goto out;

	buf = malloc(CKPT_PAGES_HDR + CKPT_RUN_MAX_PAGES * CKPT_PAGE);
	pm = malloc(CKPT_RUN_MAX_PAGES * sizeof(*pm));
	if (!buf || !pm) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < im.n_vmas; i++) {
		if ((im.vmas[i].flags & CKPT_VMA_SPECIAL) ||
		    ((im.vmas[i].flags & CKPT_VMA_SHARED) && !(im.vmas[i].flags & CKPT_VMA_SHM)))
			continue;
		if (fin && ckpt_pc_final_tracked(fin, i))
			r = ckpt_pc_final_write_delta(fin, i, w, mem_fd, buf);
		else if (im.vmas[i].flags & CKPT_VMA_SHM)
			r = dump_shm_pages(w, pid, &im.vmas[i], buf);
		else
			r = dump_vma_pages(w, pagemap_fd, mem_fd, pid, &im.vmas[i], buf, pm);
		if (r < 0)
			goto out;
	}
	r = sm_image_writer_finish(w);
	if (r >= 0 && fin && o->precopy_stats) {
		ckpt_pc_final_stats(fin, o->precopy_stats);
		o->precopy_stats->ns = sm_now_ns() - t0;
	}
out:
	ckpt_pc_final_free(fin);
	sm_image_writer_free(w);
	ckpt_image_free(&im);
	free(t);
	return r < 0 ? r : 0;
}
