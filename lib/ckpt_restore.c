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
 *   make every fd's object (ckpt_fd.c)
 *   [clone3 CLONE_NEWPID: an init that
 *    does the rest, see ckpt_spawn.c]
 *   fork (clone3 set_tid: its own pid) -> PTRACE_TRACEME; block every signal;
 *                                        handlers, altstack, timers, cwd, pending
 *                                        signals (ckpt_task.c); fds to their
 *                                        numbers, epoll interests; close the
 *                                        rest; SIGSTOP
 *   read its rseq registration, patch
 *   op 0 to unregister it; PTRACE_CONT -> jump to the blob: munmap everything
 *                                        but blob + vdso, move the vdso, map
 *                                        every vma, pread its pages from the
 *                                        memfd, mprotect, PR_SET_MM_MAP,
 *                                        credentials, close, rseq; int3
 *   have it munmap the blob (PTRACE_SYSCALL to the syscall's exit);
 *   rlimits; PTRACE_SETREGS + SETREGSET xstate + SETSIGMASK; PTRACE_DETACH:
 *   it runs on at the saved rip, and the signals that were pending arrive.
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
#include "ckpt_fd.h"
#include "ckpt_restore.h"
#include "ckpt_task.h"
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

/* Pages for the memfd, where the blob preads them from. */
static int stage_pages(struct sockmig_restore *rs, uint64_t addr, const uint8_t *data, size_t len)
{
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

static const struct ckpt_vma *vma_at(const struct ckpt_image *im, uint64_t a)
{
	size_t lo = 0, hi = im->n_vmas;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (im->vmas[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < im->n_vmas && a >= im->vmas[lo].start ? &im->vmas[lo] : NULL;
}

/* A private anonymous mapping's pages go into a region of its own (the
 * store's, for a pre-copied one), which the child takes with mremap; the
 * rest (file mappings' own pages, the stack, shared memory) to the memfd.
 * A mapping too big for a region of ours is staged too. */
static int on_pages(uint64_t addr, const uint8_t *data, size_t len, void *userdata)
{
	struct sockmig_restore *rs = userdata;
	const struct ckpt_vma *v = vma_at(&rs->im, addr);
	int r;

	if (v && ckpt_vma_precopyable(v->flags) && v->end - v->start <= CKPT_PC_VMA_MAX) {
		if (!ckpt_pcs_find(&rs->pcs, v->start, v->end - v->start) &&
		    (r = ckpt_pcs_add(&rs->pcs, v->start, v->end)) < 0 && r != -ENOMEM && r != -E2BIG)
			return r;
		if (ckpt_pcs_find(&rs->pcs, v->start, v->end - v->start))
			return ckpt_pcs_put(&rs->pcs, addr, data, len);
	}
	return stage_pages(rs, addr, data, len);
}

/* The image's PRECOPY section: the store that read the rounds gives its
 * pages for exactly these mappings, and forgets the rest. */
static int on_precopy(const struct ckpt_pc_ranges *pr, void *userdata)
{
	struct sockmig_restore *rs = userdata;
	struct sockmig_precopy_store *ps = rs->store;
	int r;

	if (!pr->round)
		return sm_fail(-EBADMSG, "the image names pre-copied mappings of no round");
	if (!ps)
		return sm_fail(-EINVAL, "the image needs the pages of its pre-copy (%zu mappings), and no pre-copy store was given",
			       pr->n);
	if (ps->failed)
		return sm_fail(-EIO, "the pre-copy store is unusable: round %u failed half-way", ps->failed);
	if (ps->taken)
		return sm_fail(-EINVAL, "the pre-copy store was handed to a restore already");
	if (ps->round != pr->round || memcmp(ps->id, pr->id, sizeof(ps->id)))
		return sm_fail(-EINVAL, "the pre-copy store holds round %u%s, the image needs round %u", ps->round,
			       ps->round && memcmp(ps->id, pr->id, sizeof(ps->id)) ? " of another pre-copy" : "",
			       pr->round);
	r = ckpt_pcs_layout(&ps->pcs, pr->r, pr->n);
	if (r < 0) {
		ps->failed = pr->round;
		return r;
	}
	ckpt_pcs_move(&rs->pcs, &ps->pcs);
	/* the image's own pages are not bounded by the store's limits */
	rs->pcs.max_held = UINT64_MAX / CKPT_PAGE;
	rs->pcs.max_va = UINT64_MAX;
	ps->taken = true;
	return 0;
}

static int on_drop(uint64_t addr, uint64_t len, void *userdata)
{
	struct sockmig_restore *rs = userdata;

	return ckpt_pcs_drop(&rs->pcs, addr, len);
}

void ckpt_restore_drop_regions(struct sockmig_restore *rs)
{
	for (size_t i = 0; i < rs->pcs.n; i++) {
		if (rs->pcs.r[i].base)
			syscall(SYS_munmap, rs->pcs.r[i].base, rs->pcs.r[i].end - rs->pcs.r[i].start);
		rs->pcs.r[i].base = NULL;
	}
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

static void op(struct sockmig_restore *rs, const char *what, uint64_t addr, uint64_t nr, uint64_t a0, uint64_t a1,
	       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t check, uint64_t expect)
{
	/* max_ops is computed from the image before building; never exceeded */
	rs->ops[rs->n_ops] = (struct ckpt_op){ nr, { a0, a1, a2, a3, a4, a5 }, expect, check };
	rs->op_what[rs->n_ops] = what;
	rs->op_addr[rs->n_ops] = addr;
	rs->n_ops++;
}

/* munmap [s, e) unless empty */
static void op_unmap(struct sockmig_restore *rs, uint64_t s, uint64_t e)
{
	if (e > s)
		op(rs, "munmap", s, SYS_munmap, s, e - s, 0, 0, 0, 0, CKPT_OP_EQ, 0);
}

/* Lay out the blob at `base`: code, ops, mm map, auxv, comm, sigmask, then
 * scratch room for the vdso on its way. Returns the total length. */
static int build_blob(struct sockmig_restore *rs, uint64_t base, uint64_t vs, uint64_t ve, const struct ckpt_vma *ours,
		      size_t n_ours)
{
	const struct ckpt_image *im = &rs->im;
	const struct ckpt_creds *cr = im->task ? ckpt_task_creds(im->task) : NULL;
	uint64_t data = rs->code_len, scratch;
	struct mm_map *mm;
	uint32_t *groups;
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
	groups = (uint32_t *)(rs->blob + data);
	data += CKPT_MAX_GROUPS * 4;
	scratch = (data + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1);

	/* op 0: unregister the child's rseq, patched once the child told us */
	op(rs, "rseq unregister", 0, SYS_getpid, 0, 0, 0, 0, 0, 0, CKPT_OP_ANY, 0);
	/* everything but the blob, the vdso and the regions (our copies of
	 * the pages, which the child has too), in address order */
	{
		uint64_t at = 0;
		size_t k = 0;

		for (;;) {
			uint64_t s0 = TASK_END, e0 = TASK_END;

			/* the lowest kept range at or above `at` */
			if (base >= at && base < s0)
				s0 = base, e0 = base + rs->blob_len;
			if (vs >= at && vs < s0)
				s0 = vs, e0 = ve;
			while (k < rs->n_keep_va && rs->keep_va[k].start < at)
				k++;
			if (k < rs->n_keep_va && rs->keep_va[k].start < s0)
				s0 = rs->keep_va[k].start, e0 = rs->keep_va[k].end;
			op_unmap(rs, at, s0);
			if (s0 >= TASK_END)
				break;
			at = e0;
		}
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
	for (size_t i = 0, k0 = 0; i < im->n_vmas; i++) {
		const struct ckpt_vma *v = &im->vmas[i];
		const struct ckpt_region *g = ckpt_pcs_find(&rs->pcs, v->start, v->end - v->start);
		uint64_t len = v->end - v->start;
		uint64_t flags = (v->flags & CKPT_VMA_SHARED ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED;
		uint32_t prot = v->prot;
		size_t k1;
		bool pages;

		if (v->flags & CKPT_VMA_SPECIAL)
			continue;
		if (g) {
			/* page tables move, no page is copied or zeroed: our
			 * region is exactly this private anonymous mapping */
			op(rs, "mremap of its pages", v->start, SYS_mremap, (uint64_t)(uintptr_t)g->base, len, len,
			   MREMAP_MAYMOVE | MREMAP_FIXED, v->start, 0, CKPT_OP_EQ, v->start);
			if (v->prot != (PROT_READ | PROT_WRITE))
				op(rs, "mprotect", v->start, SYS_mprotect, v->start, len, v->prot, 0, 0, 0, CKPT_OP_EQ, 0);
			continue;
		}
		/* the runs in v: with runs sorted (as a dump writes them) a walk,
		 * else all of them each time */
		if (!rs->runs_sorted)
			k0 = 0;
		while (rs->runs_sorted && k0 < rs->n_runs && rs->runs[k0].addr < v->start)
			k0++;
		for (k1 = k0; k1 < rs->n_runs && (!rs->runs_sorted || rs->runs[k1].addr < v->end); k1++)
			;
		pages = false;
		for (size_t k = k0; k < k1 && !pages; k++)
			pages = rs->runs[k].addr >= v->start && rs->runs[k].addr < v->end;
		/* writable while the pages are read in; a shared file mapping
		 * has none and may sit on a file open read-only */
		if (pages || !(v->flags & CKPT_VMA_SHARED))
			prot |= PROT_READ | PROT_WRITE;
		if (v->flags & CKPT_VMA_ANON)
			flags |= MAP_ANONYMOUS;
		if (v->flags & CKPT_VMA_GROWSDOWN)
			flags |= MAP_GROWSDOWN;
		op(rs, "mmap", v->start, SYS_mmap, v->start, len, prot, flags, (uint64_t)(int64_t)rs->file_fds[i],
		   v->flags & CKPT_VMA_ANON ? 0 : v->pgoff, CKPT_OP_EQ, v->start);
		for (size_t k = k0; k < k1; k++)
			if (rs->runs[k].addr >= v->start && rs->runs[k].addr < v->end)
				op(rs, "reading pages", rs->runs[k].addr, SYS_pread64, (uint64_t)rs->memfd,
				   rs->runs[k].addr, rs->runs[k].len, rs->runs[k].off, 0, 0, CKPT_OP_EQ, rs->runs[k].len);
		if (v->prot != prot)
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
	/* credentials last: PR_SET_MM_MAP needs CAP_SYS_RESOURCE, which a
	 * non-zero uid loses; then dumpable again, which a change of uid
	 * cleared (its owner could not ptrace or read /proc of it) */
	if (cr) {
		uint32_t ng = cr->n_groups < CKPT_MAX_GROUPS ? cr->n_groups : CKPT_MAX_GROUPS;

		memcpy(groups, cr->groups, ng * 4);
		op(rs, "setgroups", 0, SYS_setgroups, ng, base + (uint64_t)((uint8_t *)groups - rs->blob), 0, 0, 0, 0,
		   CKPT_OP_EQ, 0);
		op(rs, "setresgid", cr->gid[0], SYS_setresgid, cr->gid[0], cr->gid[1], cr->gid[2], 0, 0, 0, CKPT_OP_EQ, 0);
		op(rs, "setresuid", cr->uid[0], SYS_setresuid, cr->uid[0], cr->uid[1], cr->uid[2], 0, 0, 0, CKPT_OP_EQ, 0);
		op(rs, "setfsgid", cr->gid[3], SYS_setfsgid, cr->gid[3], 0, 0, 0, 0, 0, CKPT_OP_ANY, 0);
		op(rs, "setfsuid", cr->uid[3], SYS_setfsuid, cr->uid[3], 0, 0, 0, 0, 0, CKPT_OP_ANY, 0);
		op(rs, "PR_SET_DUMPABLE", 0, SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0, 0, CKPT_OP_EQ, 0);
	}
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

/* A new fd number >= floor for fd (closed), so that the fds the blob uses
 * never sit where the process's own fds go. */
static int lift_fd(int fd, int floor)
{
	int n;

	if (fd < 0 || fd >= floor)
		return fd;
	n = fcntl(fd, F_DUPFD_CLOEXEC, floor);
	close(fd);
	return n < 0 ? -errno : n;
}

/* Open what the child's mappings and PR_SET_MM_MAP need, before the fork, so
 * that a missing file is refused while nothing has happened yet. Shared
 * memory the image carries (CKPT_VMA_SHM) becomes one memfd per inode (the
 * fd plan's own if the process also has it open), so that its mappings and
 * its fd still share the pages. */
static int open_files(struct sockmig_restore *rs, int floor)
{
	const struct ckpt_image *im = &rs->im;
	size_t n = im->n_vmas ? im->n_vmas : 1;

	rs->file_fds = malloc(n * sizeof(int));
	rs->file_own = calloc(n, 1);
	if (!rs->file_fds || !rs->file_own)
		return -ENOMEM;
	for (size_t i = 0; i < im->n_vmas; i++)
		rs->file_fds[i] = -1;
	rs->exe_fd = lift_fd(open(im->mm.exe, O_RDONLY | O_CLOEXEC), floor);
	if (rs->exe_fd < 0)
		return sm_fail(-errno, "the image's executable %s: %s", im->mm.exe, strerror(errno));
	for (size_t i = 0; i < im->n_vmas; i++) {
		const struct ckpt_vma *v = &im->vmas[i];
		bool shared = v->flags & CKPT_VMA_SHARED, shm = v->flags & CKPT_VMA_SHM;
		int fd;

		if ((v->flags & (CKPT_VMA_ANON | CKPT_VMA_SPECIAL)) || !v->path)
			continue;
		for (size_t j = 0; j < i && rs->file_fds[i] < 0; j++) {
			const struct ckpt_vma *u = &im->vmas[j];

			if (rs->file_fds[j] < 0 || (u->flags & (CKPT_VMA_SHARED | CKPT_VMA_SHM)) != (v->flags & (CKPT_VMA_SHARED | CKPT_VMA_SHM)))
				continue;
			if (shm ? u->ino == v->ino : !strcmp(u->path, v->path))
				rs->file_fds[i] = rs->file_fds[j];
		}
		if (rs->file_fds[i] >= 0)
			continue;
		if (shm && (fd = ckpt_fd_plan_file_by_ino(rs->plan, v->ino)) >= 0) {
			rs->file_fds[i] = fd;
			continue;
		}
		if (shm) {
			uint64_t size = 0;

			for (size_t j = i; j < im->n_vmas; j++)
				if ((im->vmas[j].flags & CKPT_VMA_SHM) && im->vmas[j].ino == v->ino &&
				    im->vmas[j].pgoff + (im->vmas[j].end - im->vmas[j].start) > size)
					size = im->vmas[j].pgoff + (im->vmas[j].end - im->vmas[j].start);
			fd = (int)syscall(SYS_memfd_create, "sockmig-shm", MFD_CLOEXEC);
			if (fd >= 0 && ftruncate(fd, (off_t)size) < 0) {
				close(fd);
				fd = -1;
			}
		} else {
			/* a shared mapping may be made writable later only if the
			 * file is open for writing */
			fd = shared ? open(v->path, O_RDWR | O_CLOEXEC) : -1;
			if (fd < 0)
				fd = open(v->path, O_RDONLY | O_CLOEXEC);
		}
		fd = fd < 0 ? -errno : lift_fd(fd, floor);
		if (fd < 0)
			return sm_fail(fd, "mapping %#" PRIx64 "-%#" PRIx64 " of the image: %s: %s", v->start, v->end,
				       v->path, strerror(-fd));
		rs->file_fds[i] = fd;
		rs->file_own[i] = 1;
	}
	return 0;
}

/* ---- the regions in the child's way ---- */

struct ival {
	uint64_t start, end;
};

static int cmp_ival(const void *a, const void *b)
{
	const struct ival *x = a, *y = b;

	return (x->start > y->start) - (x->start < y->start);
}

/* An address for len bytes, congruent to `like` modulo 2 MiB, free in
 * both busy lists (sorted by start after the call). */
static int find_gap(struct ival *busy, size_t n, uint64_t len, uint64_t like, uint64_t *ret)
{
	const uint64_t align = 2ull << 20, lo = 0x10000000ull;
	uint64_t at = lo;

	qsort(busy, n, sizeof(*busy), cmp_ival);
	for (size_t i = 0; i <= n; i++) {
		uint64_t gap_end = i < n ? busy[i].start : TASK_END;
		uint64_t a = (at & ~(align - 1)) + like % align;

		if (a < at)
			a += align;
		if (gap_end > a && gap_end - a >= len) {
			*ret = a;
			return 0;
		}
		if (i < n && busy[i].end > at)
			at = busy[i].end;
	}
	return sm_fail(-ENOMEM, "no free address range of %" PRIu64 " MiB for the restore's pages", len >> 20);
}

/* A region of ours where the image puts a mapping would be unmapped by the
 * child before it could move it: move it out of the way first (mremap,
 * page tables only). Then the sorted list of what the child keeps. */
static int place_regions(struct sockmig_restore *rs)
{
	for (size_t i = 0; i < rs->pcs.n; i++) {
		struct ckpt_region *g = &rs->pcs.r[i];
		uint64_t b = (uint64_t)(uintptr_t)g->base, len = g->end - g->start, to = 0;
		struct ckpt_vma *ours = NULL;
		struct ival *busy;
		size_t n_ours = 0, n = 0;
		void *m;
		int r;

		if (!overlaps(b, b + len, rs->im.vmas, rs->im.n_vmas))
			continue;
		r = ckpt_read_maps(0, &ours, &n_ours);
		if (r < 0)
			return r;
		busy = calloc(n_ours + rs->im.n_vmas + 1, sizeof(*busy));
		for (size_t k = 0; busy && k < n_ours; k++)
			busy[n++] = (struct ival){ ours[k].start, ours[k].end };
		for (size_t k = 0; busy && k < rs->im.n_vmas; k++)
			busy[n++] = (struct ival){ rs->im.vmas[k].start, rs->im.vmas[k].end };
		for (size_t k = 0; k < n_ours; k++)
			free(ours[k].path);
		free(ours);
		if (!busy)
			return -ENOMEM;
		r = find_gap(busy, n, len, g->start, &to);
		free(busy);
		if (r < 0)
			return r;
		m = mremap(g->base, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)(uintptr_t)to);
		if (m == MAP_FAILED)
			return sm_fail(-errno, "cannot move the restore's pages out of the image's way: %s", strerror(errno));
		g->base = m;
	}
	free(rs->keep_va);
	rs->keep_va = calloc(rs->pcs.n ? rs->pcs.n : 1, sizeof(*rs->keep_va));
	if (!rs->keep_va)
		return -ENOMEM;
	for (size_t i = 0; i < rs->pcs.n; i++) {
		rs->keep_va[i].start = (uint64_t)(uintptr_t)rs->pcs.r[i].base;
		rs->keep_va[i].end = rs->keep_va[i].start + (rs->pcs.r[i].end - rs->pcs.r[i].start);
	}
	rs->n_keep_va = rs->pcs.n;
	qsort(rs->keep_va, rs->n_keep_va, sizeof(*rs->keep_va), cmp_ival);
	return 0;
}

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

void sockmig_restore_free(struct sockmig_restore *rs)
{
	if (!rs)
		return;
	ckpt_spawn_cleanup(rs);
	if (rs->blob)
		munmap(rs->blob, rs->blob_len);
	if (rs->child_err)
		munmap(rs->child_err, CKPT_CHILD_ERR);
	if (rs->memfd >= 0)
		close(rs->memfd);
	if (rs->exe_fd >= 0)
		close(rs->exe_fd);
	for (size_t i = 0; rs->file_fds && i < rs->im.n_vmas; i++) {
		bool dup = false;

		for (size_t j = 0; j < i; j++)
			dup |= rs->file_fds[j] == rs->file_fds[i];
		if (rs->file_fds[i] >= 0 && rs->file_own[i] && !dup)
			close(rs->file_fds[i]);
	}
	ckpt_fd_plan_free(rs->plan);
	ckpt_pcs_clear(&rs->pcs);
	free(rs->keep_va);
	free(rs->file_fds);
	free(rs->file_own);
	free(rs->runs);
	free(rs->op_what);
	free(rs->op_addr);
	free(rs->keep);
	ckpt_image_free(&rs->im);
	free(rs);
}

int sockmig_restore_prepare2(int image_fd, const struct sockmig_prepare_opts *o, struct sockmig_restore **ret)
{
	static const struct ckpt_read_ops ops = { .pages = on_pages, .precopy = on_precopy, .drop = on_drop };
	struct sockmig_restore *rs;
	struct sm_image_reader *rd = NULL;
	struct ckpt_vma *ours = NULL;
	size_t n_ours = 0;
	uint64_t xstate_bv;
	int r;

	rs = calloc(1, sizeof(*rs));
	if (!rs)
		return -ENOMEM;
	rs->exe_fd = rs->report_fd = rs->go_fd = -1;
	rs->store = o ? o->precopy : NULL;
	/* the image's own pages: as many as it carries */
	ckpt_pcs_init(&rs->pcs, UINT64_MAX, UINT64_MAX);
	rs->memfd = (int)syscall(SYS_memfd_create, "sockmig-restore", MFD_CLOEXEC);
	if (rs->memfd < 0) {
		r = sm_fail(-errno, "cannot create a memfd for the image's pages: %s", strerror(errno));
		goto out;
	}
	r = sm_image_reader_new_fd(image_fd, &rd);
	if (r < 0)
		goto out;
	r = ckpt_read_image_ops(rd, &rs->im, &ops, rs);
	if (r < 0)
		goto out;
	rs->runs_sorted = true;
	for (size_t k = 1; k < rs->n_runs; k++)
		if (rs->runs[k].addr < rs->runs[k - 1].addr + rs->runs[k - 1].len)
			rs->runs_sorted = false;

	/* refuse before touching anything: CPU state the CPU cannot hold */
	memcpy(&xstate_bv, rs->im.thread.xstate + 512, 8);
	if (rs->im.thread.xstate_len < 520 || (xstate_bv & ~ckpt_xcr0())) {
		r = sm_fail(-EOPNOTSUPP, "the image's FPU state uses CPU features %#" PRIx64 " that this CPU lacks",
			    xstate_bv & ~ckpt_xcr0());
		goto out;
	}
	r = ckpt_read_maps(0, &ours, &n_ours);
	if (r < 0)
		goto out;
	r = check_vdso(&rs->im, ours, n_ours, &rs->vdso_start, &rs->vdso_end);
	if (r < 0)
		goto out;
	if (rs->im.task) {
		r = ckpt_task_prepare(rs->im.task);
		if (r < 0)
			goto out;
	}
	*ret = rs;
	rs->store = NULL;
	rs = NULL;
out:
	for (size_t i = 0; i < n_ours; i++)
		free(ours[i].path);
	free(ours);
	sm_image_reader_free(rd);
	sockmig_restore_free(rs);
	return r < 0 ? r : 0;
}

int sockmig_restore_prepare(int image_fd, struct sockmig_restore **ret)
{
	return sockmig_restore_prepare2(image_fd, NULL, ret);
}

/* The fds the child keeps, sorted: the process's own (at their numbers once
 * the plan is applied) and the blob's. */
static int keep_list(struct sockmig_restore *rs)
{
	const int *targets;
	size_t nt = ckpt_fd_plan_targets(rs->plan, &targets);

	rs->keep = malloc((nt + rs->im.n_vmas + 2) * sizeof(int));
	if (!rs->keep)
		return -ENOMEM;
	for (size_t i = 0; i < nt; i++)
		rs->keep[rs->n_keep++] = targets[i];
	rs->keep[rs->n_keep++] = rs->memfd;
	rs->keep[rs->n_keep++] = rs->exe_fd;
	for (size_t i = 0; i < rs->im.n_vmas; i++)
		if (rs->file_fds[i] >= 0)
			rs->keep[rs->n_keep++] = rs->file_fds[i];
	qsort(rs->keep, rs->n_keep, sizeof(int), cmp_int);
	return 0;
}

int sockmig_restore_run(struct sockmig_restore *rs, const struct sockmig_restore_opts *opts,
			struct sockmig_restored_proc *ret)
{
	static const struct sockmig_restore_opts defaults = { .stdio_fd = { -1, -1, -1 } };
	struct ckpt_vma *ours = NULL;
	_cleanup_free_ struct ckpt_fd_extra *extra = NULL;
	size_t n_ours = 0;
	uint64_t base = 0;
	int floor = 2, r;
	void *m;

	if (!opts)
		opts = &defaults;
	if (rs->blob)
		return sm_fail(-EINVAL, "this restore has already run");
	/* every fd of ours that the child keeps must lie above the numbers the
	 * process's own fds take */
	if (ckpt_fds_max_target(rs->im.fds) > floor)
		floor = ckpt_fds_max_target(rs->im.fds);
	extra = calloc(opts->n_extra ? opts->n_extra : 1, sizeof(*extra));
	if (!extra)
		return -ENOMEM;
	for (size_t i = 0; i < opts->n_extra; i++) {
		extra[i] = (struct ckpt_fd_extra){ opts->extra[i].target, opts->extra[i].fd };
		if (opts->extra[i].target > floor)
			floor = opts->extra[i].target;
	}
	floor++;
	rs->memfd = lift_fd(rs->memfd, floor);
	if (rs->memfd < 0)
		return sm_fail(rs->memfd, "cannot move the memfd of the pages: %s", strerror(-rs->memfd));
	r = ckpt_fds_prepare(rs->im.fds, extra, opts->n_extra, opts->stdio_fd, floor, &rs->plan);
	if (r < 0)
		return r;
	r = open_files(rs, floor);
	if (r < 0)
		return r;

	r = place_regions(rs);
	if (r < 0)
		return r;
	/* op 0, 3 munmap + 1 per region, 6 mremap, 3 per vma, runs, 12 */
	rs->max_ops = 30 + 3 * rs->im.n_vmas + rs->n_runs + rs->pcs.n;
	rs->op_what = calloc(rs->max_ops, sizeof(*rs->op_what));
	rs->op_addr = calloc(rs->max_ops, sizeof(*rs->op_addr));
	if (!rs->op_what || !rs->op_addr)
		return -ENOMEM;
	rs->code_len = ((uint64_t)(ckpt_blob_end - ckpt_blob_start) + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1);
	rs->blob_len = rs->code_len + rs->max_ops * sizeof(struct ckpt_op) + sizeof(struct mm_map) + CKPT_AUXV_MAX +
		       32 + CKPT_MAX_GROUPS * 4;
	rs->blob_len = ((rs->blob_len + CKPT_PAGE - 1) & ~(CKPT_PAGE - 1)) + (rs->vdso_end - rs->vdso_start);
	r = ckpt_read_maps(0, &ours, &n_ours);
	if (r < 0)
		return r;
	r = pick_blob_address(&rs->im, ours, n_ours, rs->blob_len, &base);
	if (r < 0)
		goto out;
	m = mmap((void *)base, rs->blob_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
		 -1, 0);
	if (m == MAP_FAILED || m != (void *)base) {
		if (m != MAP_FAILED)
			munmap(m, rs->blob_len);
		r = sm_fail(-ENOMEM, "cannot map the restorer at %#" PRIx64, base);
		goto out;
	}
	rs->blob = m;
	rs->blob_base = base;
	memcpy(rs->blob, ckpt_blob_start, (size_t)(ckpt_blob_end - ckpt_blob_start));
	build_blob(rs, base, rs->vdso_start, rs->vdso_end, ours, n_ours);
	if (mprotect(rs->blob, rs->code_len, PROT_READ | PROT_EXEC) < 0) {
		r = sm_fail(-errno, "cannot protect the restorer: %s", strerror(errno));
		goto out;
	}
	rs->child_err = mmap(NULL, CKPT_CHILD_ERR, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rs->child_err == MAP_FAILED) {
		rs->child_err = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = keep_list(rs);
	if (r < 0)
		goto out;
	r = ckpt_spawn(rs, opts, ret);
out:
	for (size_t i = 0; i < n_ours; i++)
		free(ours[i].path);
	free(ours);
	return r < 0 ? r : 0;
}

int sockmig_restore(int image_fd, const struct sockmig_restore_opts *opts, pid_t *ret_pid)
{
	struct sockmig_restore *rs = NULL;
	struct sockmig_restored_proc p;
	int r;

	r = sockmig_restore_prepare(image_fd, &rs);
	if (r < 0)
		return r;
	r = sockmig_restore_run(rs, opts, &p);
	if (r >= 0)
		r = sockmig_restore_release(rs);
	sockmig_restore_free(rs);
	if (r < 0)
		return r;
	*ret_pid = p.pid;
	return 0;
}
