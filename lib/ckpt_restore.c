/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Restore: a forked child becomes the checkpointed process.
 *
 *   parent                              child (a copy of the parent)
 *   read + check the image; page data
 *   into a memfd; open the files the
 *   mappings need; build the op table
 *   in a "blob" mapping at an address
 *   free in both address spaces
 *   fork ------------------------------> PTRACE_TRACEME; fds 0..2; close the
 *                                        rest; default signal handlers; SIGSTOP
 *   read its rseq registration, patch
 *   op 0 to unregister it; PTRACE_CONT -> jump to the blob: munmap everything
 *                                        but blob + vdso, move the vdso, map
 *                                        every vma, pread its pages from the
 *                                        memfd, mprotect, PR_SET_MM_MAP,
 *                                        sigmask, close, rseq; int3
 *   have it munmap the blob (PTRACE_SYSCALL to the syscall's exit);
 *   PTRACE_SETREGS + SETREGSET xstate; PTRACE_DETACH: it runs on at the
 *   saved rip.
 *
 * Why ptrace for the registers rather than a sigreturn frame: the kernel
 * validates and installs all of them (fs_base included) from one call, the
 * xstate goes in with the same regset the dump read it with, and the parent
 * sees every failure of the blob as a stop with the failing op in registers.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "sockmig/ckpt.h"
#include "ckpt.h"
#include "util.h"

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PR_SET_MM_MAP
#define PR_SET_MM_MAP 14
#endif

/* The highest user address a mapping can have without an explicit hint
 * (47 bits, also with 5-level paging). */
#define TASK_END 0x7ffffffff000ull

struct mm_map { /* struct prctl_mm_map, linux/prctl.h */
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

struct run {
	uint64_t addr, len, off; /* off: in the memfd */
};

struct restore {
	struct ckpt_image im;
	int memfd;
	uint64_t memfd_len;
	struct run *runs;
	size_t n_runs, cap_runs;
	int *file_fds; /* per vma, -1 for anonymous */
	int exe_fd;
	int stdio[3];
	/* the blob */
	uint8_t *blob;
	uint64_t blob_len, code_len;
	struct ckpt_op *ops;
	const char **op_what; /* for the sentence when an op fails */
	uint64_t *op_addr;
	size_t n_ops, max_ops;
};

static int on_pages(uint64_t addr, const uint8_t *data, size_t len, void *userdata)
{
	struct restore *rs = userdata;
	size_t done = 0;

	if (rs->n_runs == rs->cap_runs) {
		size_t cap = rs->cap_runs ? rs->cap_runs * 2 : 64;
		struct run *n = realloc(rs->runs, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		rs->runs = n;
		rs->cap_runs = cap;
	}
	while (done < len) {
		ssize_t n = pwrite(rs->memfd, data + done, len - done, (off_t)(rs->memfd_len + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return sm_fail(n < 0 ? -errno : -EIO, "cannot stage the image's pages in memory: %s",
				       n < 0 ? strerror(errno) : "short write");
		done += (size_t)n;
	}
	rs->runs[rs->n_runs++] = (struct run){ addr, len, rs->memfd_len };
	rs->memfd_len += len;
	return 0;
}

/* The special mappings [vvar] [vvar_vclock] [vdso]: the image's and ours
 * must be the same set with the same sizes and our vdso the same bytes,
 * because the restored program keeps calling into the image's vdso layout. */
static int check_vdso(const struct ckpt_image *im, const struct ckpt_vma *ours, size_t n_ours,
		      uint64_t *ret_start, uint64_t *ret_end)
{
	static const uint32_t kinds[] = { CKPT_VMA_VVAR, CKPT_VMA_VVAR_VCLOCK, CKPT_VMA_VDSO };
	uint64_t s = UINT64_MAX, e = 0;

	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		const struct ckpt_vma *a = NULL, *b = NULL;

		for (size_t i = 0; i < im->n_vmas; i++)
			if (im->vmas[i].flags & kinds[k])
				a = &im->vmas[i];
		for (size_t i = 0; i < n_ours; i++)
			if (ours[i].flags & kinds[k])
				b = &ours[i];
		if (!a != !b || (a && a->end - a->start != b->end - b->start))
			return sm_fail(-EOPNOTSUPP, "the image's vdso layout differs from this node's (another kernel?)");
		if (b) {
			s = b->start < s ? b->start : s;
			e = b->end > e ? b->end : e;
		}
		if (kinds[k] == CKPT_VMA_VDSO && b &&
		    (im->vdso_len != b->end - b->start || memcmp(im->vdso, (const void *)b->start, im->vdso_len)))
			return sm_fail(-EOPNOTSUPP, "the image's vdso differs from this node's (another kernel?)");
	}
	if (e == 0)
		return sm_fail(-EOPNOTSUPP, "this process has no vdso to move");
	*ret_start = s;
	*ret_end = e;
	return 0;
}

static int overlaps(uint64_t s, uint64_t e, const struct ckpt_vma *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s < v[i].end && v[i].start < e)
			return 1;
	return 0;
}

static void op(struct restore *rs, const char *what, uint64_t addr, uint64_t nr, uint64_t a0, uint64_t a1,
	       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t check, uint64_t expect)
{
	/* max_ops is computed from the image before building; never exceeded */
	rs->ops[rs->n_ops] = (struct ckpt_op){ nr, { a0, a1, a2, a3, a4, a5 }, expect, check };
	rs->op_what[rs->n_ops] = what;
	rs->op_addr[rs->n_ops] = addr;
	rs->n_ops++;
}

/* munmap [s, e) unless empty */
static void op_unmap(struct restore *rs, uint64_t s, uint64_t e)
{
	if (e > s)
		op(rs, "munmap", s, SYS_munmap, s, e - s, 0, 0, 0, 0, CKPT_OP_EQ, 0);
}

/* Lay out the blob at `base`: code, ops, mm map, auxv, comm, sigmask, then
 * scratch room for the vdso on its way. Returns the total length. */
static int build_blob(struct restore *rs, uint64_t base, uint64_t vs, uint64_t ve, const struct ckpt_vma *ours,
		      size_t n_ours)
{
	const struct ckpt_image *im = &rs->im;
	uint64_t data = rs->code_len, scratch;
	struct mm_map *mm;
	uint64_t *sigmask;
	char *comm;
	uint8_t *auxv;

	rs->ops = (struct ckpt_op *)(rs->blob + data);
	data += rs->max_ops * sizeof(struct ckpt_op);
	mm = (struct mm_map *)(rs->blob + data);
	data += sizeof(*mm);
	auxv = rs->blob + data;
	data += CKPT_AUXV_MAX;
	comm = (char *)(rs->blob + data);
	data += 32;
	sigmask = (uint64_t *)(rs->blob + data);
	data += 8;
	scratch = (data + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1);

	/* op 0: unregister the child's rseq, patched once the child told us */
	op(rs, "rseq unregister", 0, SYS_getpid, 0, 0, 0, 0, 0, 0, CKPT_OP_ANY, 0);
	/* everything but the blob and the vdso, in address order */
	if (base < vs) {
		op_unmap(rs, 0, base);
		op_unmap(rs, base + rs->blob_len, vs);
		op_unmap(rs, ve, TASK_END);
	} else {
		op_unmap(rs, 0, vs);
		op_unmap(rs, ve, base);
		op_unmap(rs, base + rs->blob_len, TASK_END);
	}
	/* the vdso: every part by the same delta, through the scratch room so
	 * that the old and new places may overlap */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n_ours; i++) {
			const struct ckpt_vma *o = &ours[i], *t = NULL;
			uint64_t len = o->end - o->start, from, to;

			if (!(o->flags & (CKPT_VMA_VVAR | CKPT_VMA_VVAR_VCLOCK | CKPT_VMA_VDSO)))
				continue;
			for (size_t j = 0; j < im->n_vmas; j++)
				if (im->vmas[j].flags & o->flags & CKPT_VMA_SPECIAL)
					t = &im->vmas[j];
			from = pass == 0 ? o->start : base + scratch + (o->start - vs);
			to = pass == 0 ? base + scratch + (o->start - vs) : t->start;
			op(rs, "mremap of the vdso", to, SYS_mremap, from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to, 0,
			   CKPT_OP_EQ, to);
		}
	}
	/* the image's mappings; writable while their pages are read in */
	for (size_t i = 0; i < im->n_vmas; i++) {
		const struct ckpt_vma *v = &im->vmas[i];
		uint64_t len = v->end - v->start;
		uint64_t flags = MAP_PRIVATE | MAP_FIXED;

		if (v->flags & CKPT_VMA_SPECIAL)
			continue;
		if (v->flags & CKPT_VMA_ANON)
			flags |= MAP_ANONYMOUS;
		if (v->flags & CKPT_VMA_GROWSDOWN)
			flags |= MAP_GROWSDOWN;
		op(rs, "mmap", v->start, SYS_mmap, v->start, len, (uint64_t)(v->prot | PROT_READ | PROT_WRITE), flags,
		   (uint64_t)(int64_t)rs->file_fds[i], v->flags & CKPT_VMA_ANON ? 0 : v->pgoff, CKPT_OP_EQ, v->start);
		for (size_t k = 0; k < rs->n_runs; k++)
			if (rs->runs[k].addr >= v->start && rs->runs[k].addr < v->end)
				op(rs, "reading pages", rs->runs[k].addr, SYS_pread64, (uint64_t)rs->memfd,
				   rs->runs[k].addr, rs->runs[k].len, rs->runs[k].off, 0, 0, CKPT_OP_EQ, rs->runs[k].len);
		if (v->prot != (PROT_READ | PROT_WRITE))
			op(rs, "mprotect", v->start, SYS_mprotect, v->start, len, v->prot, 0, 0, 0, CKPT_OP_EQ, 0);
	}
	*mm = (struct mm_map){ im->mm.start_code, im->mm.end_code, im->mm.start_data, im->mm.end_data,
			       im->mm.start_brk,  im->mm.brk,      im->mm.start_stack, im->mm.arg_start,
			       im->mm.arg_end,    im->mm.env_start, im->mm.env_end,
			       base + (uint64_t)(auxv - rs->blob), im->mm.auxv_len, (uint32_t)rs->exe_fd };
	memcpy(auxv, im->mm.auxv, im->mm.auxv_len);
	op(rs, "PR_SET_MM_MAP", 0, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, base + (uint64_t)((uint8_t *)mm - rs->blob),
	   sizeof(*mm), 0, 0, CKPT_OP_EQ, 0);
	snprintf(comm, 32, "%s", im->info.comm);
	op(rs, "PR_SET_NAME", 0, SYS_prctl, PR_SET_NAME, base + (uint64_t)((uint8_t *)comm - rs->blob), 0, 0, 0, 0,
	   CKPT_OP_EQ, 0);
	*sigmask = im->thread.sigmask;
	op(rs, "rt_sigprocmask", 0, SYS_rt_sigprocmask, SIG_SETMASK, base + (uint64_t)((uint8_t *)sigmask - rs->blob), 0,
	   8, 0, 0, CKPT_OP_EQ, 0);
	op(rs, "close", 0, SYS_close, (uint64_t)rs->memfd, 0, 0, 0, 0, 0, CKPT_OP_EQ, 0);
	op(rs, "close", 0, SYS_close, (uint64_t)rs->exe_fd, 0, 0, 0, 0, 0, CKPT_OP_EQ, 0);
	for (size_t i = 0; i < im->n_vmas; i++)
		if (rs->file_fds[i] >= 0 && rs->file_fds[i] != rs->exe_fd)
			op(rs, "close", 0, SYS_close, (uint64_t)rs->file_fds[i], 0, 0, 0, 0, 0, CKPT_OP_ANY, 0);
	if (im->thread.rseq_ptr)
		op(rs, "rseq register", im->thread.rseq_ptr, SYS_rseq, im->thread.rseq_ptr, im->thread.rseq_len, 0,
		   im->thread.rseq_sig, 0, 0, CKPT_OP_EQ, 0);
	return 0;
}

/* An address for the blob: free in the image (vdso included) and in our own
 * address space, which the child starts with. Low addresses first: the image's
 * mappings and ours both cluster near the top (mmap base, stack). */
static int pick_blob_address(const struct ckpt_image *im, const struct ckpt_vma *ours, size_t n_ours, uint64_t len,
			     uint64_t *ret)
{
	for (uint64_t a = 0x10000000ull; a + len < TASK_END; a += 0x10000000ull) {
		if (!overlaps(a, a + len, im->vmas, im->n_vmas) && !overlaps(a, a + len, ours, n_ours)) {
			*ret = a;
			return 0;
		}
	}
	return sm_fail(-ENOMEM, "no free address range for the restorer");
}

/* Open what the child's mappings and PR_SET_MM_MAP need, before the fork, so
 * that a missing file is refused while nothing has happened yet. */
static int open_files(struct restore *rs)
{
	const struct ckpt_image *im = &rs->im;

	rs->file_fds = malloc((im->n_vmas ? im->n_vmas : 1) * sizeof(int));
	if (!rs->file_fds)
		return -ENOMEM;
	for (size_t i = 0; i < im->n_vmas; i++)
		rs->file_fds[i] = -1;
	rs->exe_fd = open(im->mm.exe, O_RDONLY | O_CLOEXEC);
	if (rs->exe_fd < 0)
		return sm_fail(-errno, "the image's executable %s: %s", im->mm.exe, strerror(errno));
	for (size_t i = 0; i < im->n_vmas; i++) {
		const struct ckpt_vma *v = &im->vmas[i];

		if ((v->flags & (CKPT_VMA_ANON | CKPT_VMA_SPECIAL)) || !v->path)
			continue;
		for (size_t j = 0; j < i; j++)
			if (rs->file_fds[j] >= 0 && !strcmp(im->vmas[j].path, v->path))
				rs->file_fds[i] = rs->file_fds[j];
		if (rs->file_fds[i] >= 0)
			continue;
		rs->file_fds[i] = open(v->path, O_RDONLY | O_CLOEXEC);
		if (rs->file_fds[i] < 0)
			return sm_fail(-errno, "mapping %#" PRIx64 "-%#" PRIx64 " of the image: %s: %s", v->start, v->end,
				       v->path, strerror(errno));
	}
	return 0;
}

static int open_stdio(struct restore *rs, const struct sockmig_restore_opts *opts)
{
	for (int i = 0; i < 3; i++) {
		const struct ckpt_stdio *s = &rs->im.stdio[i];
		int fd;

		if (opts && opts->stdio_fd[i] >= 0) {
			fd = fcntl(opts->stdio_fd[i], F_DUPFD_CLOEXEC, 3);
		} else if (s->kind == CKPT_STDIO_FILE) {
			int fl = (int)(s->flags & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC));

			fd = open(s->path, fl | O_CLOEXEC | O_NOCTTY);
			if (fd >= 0 && !(fl & O_APPEND) && lseek(fd, (off_t)s->pos, SEEK_SET) < 0) {
				close(fd);
				fd = -1;
			}
			if (fd < 0)
				return sm_fail(-errno, "fd %d of the image: cannot reopen %s: %s", i, s->path,
					       strerror(errno));
		} else {
			fd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
		}
		if (fd < 0)
			return sm_fail(-errno, "fd %d of the restored process: %s", i, strerror(errno));
		rs->stdio[i] = fd;
	}
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* In the child, before it jumps: only async-signal-safe calls (the caller may
 * have threads). Never returns. */
static void __attribute__((noreturn)) child_run(struct restore *rs, const int *keep, size_t n_keep, uint64_t base)
{
	struct sigaction sa = { .sa_handler = SIG_DFL };
	stack_t ss = { .ss_flags = SS_DISABLE };
	int lo = 3;

	if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
		_exit(127);
	for (int i = 0; i < 3; i++)
		if (dup2(rs->stdio[i], i) < 0)
			_exit(127);
	/* keep[] is sorted: close every gap between the fds the blob needs */
	for (size_t i = 0; i < n_keep; i++) {
		if (keep[i] > lo)
			syscall(SYS_close_range, lo, keep[i] - 1, 0);
		lo = keep[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0u, 0);
	/* our handlers live in code the blob unmaps */
	for (int sig = 1; sig < 65; sig++)
		sigaction(sig, &sa, NULL);
	sigaltstack(&ss, NULL);
	raise(SIGSTOP);
	__asm__ volatile("jmp *%2" : : "D"(base + rs->code_len), "S"(rs->n_ops), "r"(base) : "memory");
	__builtin_unreachable();
}

static int wait_trap(pid_t pid, int *ret_sig)
{
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, __WALL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		break;
	}
	if (!WIFSTOPPED(status))
		return WIFSIGNALED(status) ? -WTERMSIG(status) - 1000 : -ECHILD;
	*ret_sig = WSTOPSIG(status);
	return 0;
}

/* The general registers: the saved ones, with a syscall that the stop
 * interrupted made to start again (the kernel would have done it on resume;
 * -ERESTART_RESTARTBLOCK has no restart block in the new process, so the
 * original syscall is issued again with its arguments, which are still in
 * the registers: a nanosleep sleeps its whole interval again). */
static void final_regs(const struct ckpt_thread *t, struct user_regs_struct *regs)
{
	memcpy(regs, t->regs, sizeof(*regs));
	if ((int64_t)regs->orig_rax >= 0) {
		switch ((int64_t)regs->rax) {
		case -512: /* ERESTARTSYS */
		case -513: /* ERESTARTNOINTR */
		case -514: /* ERESTARTNOHAND */
		case -516: /* ERESTART_RESTARTBLOCK */
			regs->rax = regs->orig_rax;
			regs->rip -= 2;
			break;
		}
	}
	regs->orig_rax = (unsigned long long)-1;
}

static int drive_child(struct restore *rs, pid_t pid, uint64_t base)
{
	struct user_regs_struct regs;
	struct iovec iov;
	uint64_t rseq_cfg[3] = { 0 };
	int sig, r;

	r = wait_trap(pid, &sig);
	if (r < 0 || sig != SIGSTOP)
		return sm_fail(-ECHILD, "the restorer process %d did not start", (int)pid);
	/* op 0: the child inherited our rseq registration; it points into TLS
	 * that the blob unmaps, so it must go first */
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, (void *)sizeof(rseq_cfg), rseq_cfg) >= 0 && rseq_cfg[0]) {
		struct ckpt_op o = { SYS_rseq, { rseq_cfg[0], (uint32_t)rseq_cfg[1], 1 /* RSEQ_FLAG_UNREGISTER */,
						 rseq_cfg[1] >> 32, 0, 0 }, 0, CKPT_OP_EQ };
		uint64_t addr = base + rs->code_len;

		for (size_t i = 0; i < sizeof(o) / 8; i++)
			if (ptrace(PTRACE_POKEDATA, pid, (void *)(addr + i * 8), (void *)((uint64_t *)&o)[i]) < 0)
				return sm_fail(-errno, "restorer process %d: cannot patch it: %s", (int)pid, strerror(errno));
	}
	if (ptrace(PTRACE_CONT, pid, 0, 0) < 0)
		return sm_fail(-errno, "restorer process %d: cannot continue it: %s", (int)pid, strerror(errno));
	r = wait_trap(pid, &sig);
	if (r < 0)
		return sm_fail(-ECHILD, "the restorer process %d died (signal %d) while it rebuilt the memory",
			       (int)pid, r <= -1000 ? -r - 1000 : 0);
	if (sig != SIGTRAP || ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0)
		return sm_fail(-EIO, "the restorer process %d stopped with signal %d", (int)pid, sig);
	if (regs.r15 != 0) {
		size_t i = regs.r14 < rs->n_ops ? regs.r14 : 0;
		int64_t res = (int64_t)regs.rax;

		return sm_fail(res < 0 && res > -4096 ? (int)res : -EIO,
			       "restore failed at step %zu (%s at %#" PRIx64 "): %s", i, rs->op_what[i], rs->op_addr[i],
			       res < 0 && res > -4096 ? strerror((int)-res) : "unexpected result");
	}
	/* the blob unmaps itself: rip to its syscall instruction, stop at the exit */
	regs.rax = SYS_munmap;
	regs.rdi = base;
	regs.rsi = rs->blob_len;
	regs.orig_rax = (unsigned long long)-1;
	regs.rip = base + (uint64_t)(ckpt_blob_syscall - ckpt_blob_start);
	if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0 || ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0 ||
	    wait_trap(pid, &sig) < 0 || ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0 || wait_trap(pid, &sig) < 0 ||
	    ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0 || regs.rax != 0)
		return sm_fail(-EIO, "the restorer process %d could not drop the restorer", (int)pid);

	final_regs(&rs->im.thread, &regs);
	iov = (struct iovec){ rs->im.thread.xstate, rs->im.thread.xstate_len };
	if (ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
		return sm_fail(-errno, "restored process %d: cannot set its FPU/AVX state: %s", (int)pid, strerror(errno));
	if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0)
		return sm_fail(-errno, "restored process %d: cannot set its registers: %s", (int)pid, strerror(errno));
	if (ptrace(PTRACE_DETACH, pid, 0, 0) < 0)
		return sm_fail(-errno, "restored process %d: cannot let it run: %s", (int)pid, strerror(errno));
	return 0;
}

static void restore_free(struct restore *rs)
{
	if (rs->blob)
		munmap(rs->blob, rs->blob_len);
	if (rs->memfd >= 0)
		close(rs->memfd);
	if (rs->exe_fd >= 0)
		close(rs->exe_fd);
	for (size_t i = 0; rs->file_fds && i < rs->im.n_vmas; i++) {
		int dup = 0;

		for (size_t j = 0; j < i; j++)
			dup |= rs->file_fds[j] == rs->file_fds[i];
		if (rs->file_fds[i] >= 0 && !dup)
			close(rs->file_fds[i]);
	}
	for (int i = 0; i < 3; i++)
		if (rs->stdio[i] >= 0)
			close(rs->stdio[i]);
	free(rs->file_fds);
	free(rs->runs);
	free(rs->op_what);
	free(rs->op_addr);
	ckpt_image_free(&rs->im);
}

int sockmig_restore(int image_fd, const struct sockmig_restore_opts *opts, pid_t *ret_pid)
{
	struct restore rs = { .memfd = -1, .exe_fd = -1, .stdio = { -1, -1, -1 } };
	struct sm_image_reader *rd = NULL;
	struct ckpt_vma *ours = NULL;
	size_t n_ours = 0, n_keep = 0;
	uint64_t vs = 0, ve = 0, base = 0, xstate_bv;
	_cleanup_free_ int *keep = NULL;
	void *m;
	pid_t pid;
	int r;

	rs.memfd = (int)syscall(SYS_memfd_create, "sockmig-restore", MFD_CLOEXEC);
	if (rs.memfd < 0)
		return sm_fail(-errno, "cannot create a memfd for the image's pages: %s", strerror(errno));
	r = sm_image_reader_new_fd(image_fd, &rd);
	if (r < 0)
		goto out;
	r = ckpt_read_image(rd, &rs.im, on_pages, &rs);
	if (r < 0)
		goto out;

	/* refuse before touching anything: CPU state the CPU cannot hold */
	memcpy(&xstate_bv, rs.im.thread.xstate + 512, 8);
	if (rs.im.thread.xstate_len < 520 || (xstate_bv & ~ckpt_xcr0())) {
		r = sm_fail(-EOPNOTSUPP, "the image's FPU state uses CPU features %#" PRIx64 " that this CPU lacks",
			    xstate_bv & ~ckpt_xcr0());
		goto out;
	}
	r = ckpt_read_maps(0, &ours, &n_ours);
	if (r < 0)
		goto out;
	r = check_vdso(&rs.im, ours, n_ours, &vs, &ve);
	if (r < 0)
		goto out;
	r = open_files(&rs);
	if (r < 0)
		goto out;
	r = open_stdio(&rs, opts);
	if (r < 0)
		goto out;

	rs.max_ops = 24 + 3 * rs.im.n_vmas + rs.n_runs; /* op 0, 3 munmap, 6 mremap, 3 per vma, runs, 6 */
	rs.op_what = calloc(rs.max_ops, sizeof(*rs.op_what));
	rs.op_addr = calloc(rs.max_ops, sizeof(*rs.op_addr));
	if (!rs.op_what || !rs.op_addr) {
		r = -ENOMEM;
		goto out;
	}
	rs.code_len = ((uint64_t)(ckpt_blob_end - ckpt_blob_start) + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1);
	rs.blob_len = rs.code_len + rs.max_ops * sizeof(struct ckpt_op) + sizeof(struct mm_map) + CKPT_AUXV_MAX + 40;
	rs.blob_len = ((rs.blob_len + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1)) + (ve - vs);
	r = pick_blob_address(&rs.im, ours, n_ours, rs.blob_len, &base);
	if (r < 0)
		goto out;
	m = mmap((void *)base, rs.blob_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		 -1, 0);
	if (m == MAP_FAILED || m != (void *)base) {
		if (m != MAP_FAILED)
			munmap(m, rs.blob_len);
		r = sm_fail(-ENOMEM, "cannot map the restorer at %#" PRIx64, base);
		goto out;
	}
	rs.blob = m;
	memcpy(rs.blob, ckpt_blob_start, (size_t)(ckpt_blob_end - ckpt_blob_start));
	build_blob(&rs, base, vs, ve, ours, n_ours);
	if (mprotect(rs.blob, rs.code_len, PROT_READ | PROT_EXEC) < 0) {
		r = sm_fail(-errno, "cannot protect the restorer: %s", strerror(errno));
		goto out;
	}

	/* the fds the blob uses, sorted, for the child's close_range gaps */
	keep = malloc((rs.im.n_vmas + 2) * sizeof(int));
	if (!keep) {
		r = -ENOMEM;
		goto out;
	}
	keep[n_keep++] = rs.memfd;
	keep[n_keep++] = rs.exe_fd;
	for (size_t i = 0; i < rs.im.n_vmas; i++)
		if (rs.file_fds[i] >= 0)
			keep[n_keep++] = rs.file_fds[i];
	qsort(keep, n_keep, sizeof(int), cmp_int);

	pid = fork();
	if (pid < 0) {
		r = sm_fail(-errno, "cannot fork the restorer: %s", strerror(errno));
		goto out;
	}
	if (pid == 0)
		child_run(&rs, keep, n_keep, base);
	r = drive_child(&rs, pid, base);
	if (r < 0) {
		int status;

		kill(pid, SIGKILL);
		waitpid(pid, &status, __WALL);
		goto out;
	}
	*ret_pid = pid;
out:
	for (size_t i = 0; i < n_ours; i++)
		free(ours[i].path);
	free(ours);
	sm_image_reader_free(rd);
	restore_free(&rs);
	return r < 0 ? r : 0;
}
