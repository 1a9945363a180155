/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * S's side of pre-copy: dirty-page tracking with a userfaultfd in
 * asynchronous write-protect mode, read with the PAGEMAP_SCAN ioctl
 * (Linux 6.7+), and the rounds that send what changed.
 *
 * A page's state under tracking (private anonymous memory, WP_ASYNC with
 * WP_UNPOPULATED; x86-64, 6.18):
 *
 *   present or swapped, protected   D holds its bytes (copied when it was
 *                                   protected), or nothing if they were zeros
 *   present or swapped, unprotected written since: PAGE_IS_WRITTEN, copy it
 *   marker (PAGE_IS_SWAPPED only)   protected while empty: D holds nothing
 *   none, or no page table at all   never touched, or given back
 *                                   (MADV_DONTNEED, MADV_FREE reclaimed):
 *                                   reads as zeros, D must forget it
 *
 * The kernel clears a page's protection on its first write, from user or
 * kernel mode, without waking us; PAGEMAP_SCAN with PM_SCAN_WP_MATCHING
 * reports the written pages and protects them again in one pass. Only our
 * scans protect, so a protected page was copied (or dropped) at the moment
 * it was protected, at that address: mremap clears the protection of what
 * it moves (the moved mapping is no longer registered), and a mapping's
 * registration only ever shrinks with it (munmap, mprotect splits), or
 * grows with it in place over pages that are new. Hence the rule for each
 * round and the freeze: a registered mapping keeps what D holds, plus the
 * written pages, minus the empty ones; a mapping that is not registered is
 * registered and copied whole (NEW).
 *
 * The userfaultfd must belong to the process's mm, so it is made inside
 * the process by an injected syscall; we take it with pidfd_getfd and close
 * the process's fd in the same stop. Every ioctl on it (API, REGISTER,
 * UNREGISTER) acts on the mm it was made for, from any process; our fd is
 * the file's only reference, so closing it (sockmig_precopy_free) makes the
 * kernel unregister every mapping and clear every protection.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>

#include "sockmig/ckpt.h"
#include "ckpt_inject.h"
#include "ckpt_pc.h"
#include "util.h"

/* linux/userfaultfd.h and linux/fs.h of 6.7+; the build host's may be older */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

struct pm_region {
	uint64_t start, end, categories;
};

struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};

#define PAGEMAP_SCAN_IOCTL _IOWR('f', 0x10, struct pm_scan_arg)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
/* Not PAGE_IS_FILE: asking for it makes the kernel look up every present
 * page's folio, and tracked memory is anonymous. */
#define PM_RET (PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO)

/* Regions of pages with the same categories over [start, end) that match
 * (categories ^ inv) & mask == mask and, if anyof, & anyof != 0. -EPERM
 * with PM_SCAN_CHECK_WPASYNC: a mapping in the range is not registered. */
typedef int (*pm_fn)(const struct pm_region *g, void *userdata);

static int pm_scan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags, uint64_t inv, uint64_t mask,
		   uint64_t anyof, pm_fn fn, void *userdata)
{
	struct pm_region vec[256];
	uint64_t at = start;

	while (at < end) {
		struct pm_scan_arg a = { sizeof(a), flags, at, end, 0, (uint64_t)(uintptr_t)vec, ARRAY_SIZE(vec), 0,
					 inv, mask, anyof, PM_RET };
		long n = ioctl(pagemap_fd, PAGEMAP_SCAN_IOCTL, &a);

		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++) {
			int r = fn(&vec[i], userdata);

			if (r < 0)
				return r;
		}
		/* the walk stops early only with the vector full */
		if (a.walk_end <= at || a.walk_end > end)
			return a.walk_end == end ? 0 : -EIO;
		at = a.walk_end;
	}
	return 0;
}

static int ignore_region(const struct pm_region *g, void *userdata)
{
	(void)g;
	(void)userdata;
	return 0;
}

/* ---- page runs into a pages or process image ---- */

static bool zero_page(const uint8_t *p)
{
	static const uint8_t zero[CKPT_PAGE];

	return !memcmp(p, zero, CKPT_PAGE);
}

/* a section's header and checksum around its payload (docs/image-format.md) */
#define SECTION_COST 32u

int ckpt_pc_drop_run(struct sm_image_writer *w, uint64_t addr, uint64_t npages, struct ckpt_pc_count *cnt)
{
	cnt->dropped += npages;
	cnt->bytes += SECTION_COST + 16;
	return ckpt_write_drop(w, addr, npages);
}

int ckpt_pc_copy_run(struct sm_image_writer *w, int mem_fd, uint64_t addr, uint64_t npages, uint8_t *buf,
		     bool drop_zeros, struct ckpt_pc_count *cnt)
{
	uint8_t *pages = buf + CKPT_PAGES_HDR;

	while (npages) {
		uint64_t n = npages < CKPT_RUN_MAX_PAGES ? npages : CKPT_RUN_MAX_PAGES;
		ssize_t got = pread(mem_fd, pages, n * CKPT_PAGE, (off_t)addr);

		if (got != (ssize_t)(n * CKPT_PAGE))
			return -EFAULT; /* unmapped meanwhile (the process runs) */
		for (uint64_t i = 0; i < n;) {
			bool zero = zero_page(pages + i * CKPT_PAGE);
			uint64_t j = i + 1;
			int r;

			while (j < n && zero_page(pages + j * CKPT_PAGE) == zero)
				j++;
			if (zero && drop_zeros) {
				r = ckpt_pc_drop_run(w, addr + i * CKPT_PAGE, j - i, cnt);
			} else if (!zero) {
				/* the header goes into the 16 bytes before the run:
				 * the header room, or the end of a page of zeros */
				uint8_t *h = pages + i * CKPT_PAGE - CKPT_PAGES_HDR;
				uint64_t a = addr + i * CKPT_PAGE;

				for (int k = 0; k < 8; k++)
					h[k] = (uint8_t)(a >> (8 * k));
				for (int k = 0; k < 4; k++) {
					h[8 + k] = (uint8_t)((j - i) >> (8 * k));
					h[12 + k] = 0;
				}
				r = sm_image_write_section(w, CKPT_SEC_PAGES, h, CKPT_PAGES_HDR + (j - i) * CKPT_PAGE);
				cnt->pages += j - i;
				cnt->bytes += SECTION_COST + CKPT_PAGES_HDR + (j - i) * CKPT_PAGE;
			} else {
				r = 0;
			}
			if (r < 0)
				return r;
			i = j;
		}
		addr += n * CKPT_PAGE;
		npages -= n;
	}
	return 0;
}

/* ---- the handle ---- */

struct vma_plan {
	uint64_t start, end;
	bool fresh;               /* NEW: registered now, copied whole */
	struct pm_region *written; /* KEPT: what the protecting scan reported */
	size_t n_written, cap_written;
};

struct sockmig_precopy {
	pid_t pid;
	int uffd;       /* ours, the only reference to the file */
	int pagemap_fd; /* the process's, opened once: it stays valid while it lives */
	int mem_fd;
	uint8_t id[CKPT_PC_ID_LEN];
	uint32_t round; /* rounds written whole */
	bool broken;
	uint8_t *buf; /* CKPT_PAGES_HDR + CKPT_RUN_MAX_PAGES pages */
};

static int open_proc(pid_t pid, const char *what, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
	return open(path, flags | O_CLOEXEC);
}

void sockmig_precopy_free(struct sockmig_precopy *pc)
{
	if (!pc)
		return;
	/* the last reference: the kernel unregisters the whole mm and
	 * clears the protections (userfaultfd_release) */
	if (pc->uffd >= 0)
		close(pc->uffd);
	if (pc->pagemap_fd >= 0)
		close(pc->pagemap_fd);
	if (pc->mem_fd >= 0)
		close(pc->mem_fd);
	free(pc->buf);
	free(pc);
}

/* The userfaultfd, made inside the stopped process (it must belong to its
 * mm), ours by pidfd_getfd, and gone from its fd table before it runs. */
static int take_uffd(struct sockmig_proc *p, int *ret_fd)
{
	pid_t pid = sockmig_proc_pid(p);
	struct ckpt_inject *in = NULL;
	const uint64_t mk[6] = { O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY };
	int64_t fd = -1, res;
	int r, q, ours = -1;

	r = ckpt_inject_begin(pid, pid, 0, &in);
	if (r < 0)
		return sm_fail(r, "pid %d: cannot run a syscall in it: %s", (int)pid, strerror(-r));
	/* USER_MODE_ONLY: allowed without privilege whatever
	 * vm.unprivileged_userfaultfd says; asynchronous write-protect
	 * never delivers a fault, so kernel-mode writes are tracked all the
	 * same */
	r = ckpt_inject_syscall(in, SYS_userfaultfd, mk, &fd);
	if (r == 0 && fd < 0)
		r = sm_fail((int)fd, "pid %d: it cannot make a userfaultfd: %s", (int)pid, strerror((int)-fd));
	else if (r < 0)
		r = sm_fail(r, "pid %d: the injected userfaultfd() failed: %s", (int)pid, strerror(-r));
	if (r == 0)
		r = sockmig_proc_fd_get(p, (int)fd, &ours);
	if (fd >= 0) {
		const uint64_t cl[6] = { (uint64_t)fd };

		q = ckpt_inject_syscall(in, SYS_close, cl, &res);
		if ((q < 0 || res != 0) && r == 0)
			r = sm_fail(q < 0 ? q : (int)res, "pid %d: cannot close the userfaultfd in it again", (int)pid);
	}
	q = ckpt_inject_end(in);
	if (q < 0 && r == 0)
		r = sm_fail(q, "pid %d: cannot put it back as it was after the injection: %s", (int)pid, strerror(-q));
	if (r < 0) {
		if (ours >= 0)
			close(ours);
		return r;
	}
	*ret_fd = ours;
	return 0;
}

int sockmig_precopy_start(struct sockmig_proc *p, struct sockmig_precopy **ret)
{
	pid_t pid = sockmig_proc_pid(p);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
	struct sockmig_precopy *pc;
	bool stopped = sockmig_proc_is_stopped(p);
	int r;

	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->pid = pid;
	pc->uffd = -1;
	pc->pagemap_fd = open_proc(pid, "pagemap", O_RDONLY);
	pc->mem_fd = open_proc(pid, "mem", O_RDONLY);
	pc->buf = malloc(CKPT_PAGES_HDR + CKPT_RUN_MAX_PAGES * CKPT_PAGE);
	if (pc->pagemap_fd < 0 || pc->mem_fd < 0) {
		r = sm_fail(errno == ENOENT ? -ESRCH : -errno, "pid %d: cannot open its memory: %s", (int)pid,
			    strerror(errno));
		goto fail;
	}
	if (!pc->buf || getrandom(pc->id, sizeof(pc->id), 0) != sizeof(pc->id)) {
		r = -ENOMEM;
		goto fail;
	}
	if (!stopped) {
		r = sockmig_proc_stop(p);
		if (r < 0)
			goto fail;
	}
	r = take_uffd(p, &pc->uffd);
	if (!stopped) {
		int q = sockmig_proc_resume(p);

		if (q < 0 && r == 0)
			r = q;
	}
	if (r < 0)
		goto fail;
	if (ioctl(pc->uffd, UFFDIO_API, &api) < 0) {
		r = sm_fail(-errno, "pid %d: userfaultfd API handshake: %s", (int)pid, strerror(errno));
		goto fail;
	}
	/* an empty walk: does this kernel have PAGEMAP_SCAN at all */
	r = pm_scan(pc->pagemap_fd, 0, CKPT_PAGE, 0, 0, PAGE_IS_WRITTEN, 0, ignore_region, NULL);
	if ((api.features & (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED)) !=
		    (UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED) ||
	    r < 0) {
		r = sm_fail(-EOPNOTSUPP, "this kernel lacks asynchronous userfaultfd write-protection or PAGEMAP_SCAN (Linux 6.7+), which pre-copy needs");
		goto fail;
	}
	*ret = pc;
	return 0;
fail:
	sockmig_precopy_free(pc);
	return r;
}

/* ---- one round ---- */

static int keep_written(const struct pm_region *g, void *userdata)
{
	struct vma_plan *v = userdata;

	if (v->n_written == v->cap_written) {
		size_t cap = v->cap_written ? v->cap_written * 2 : 16;
		struct pm_region *n = realloc(v->written, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		v->written = n;
		v->cap_written = cap;
	}
	v->written[v->n_written++] = *g;
	return 0;
}

struct copy_ctx {
	struct sockmig_precopy *pc;
	struct sm_image_writer *w;
	bool drop_zeros;
	bool gone; /* memory vanished under us: the mapping is re-copied next round */
	struct ckpt_pc_count cnt;
};

/* A written region: its bytes, or a DROP where it holds none. */
static int copy_region(const struct pm_region *g, void *userdata)
{
	struct copy_ctx *c = userdata;
	uint64_t n = (g->end - g->start) / CKPT_PAGE;
	int r;

	if (!(g->categories & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)) || (g->categories & PAGE_IS_PFNZERO))
		return c->drop_zeros ? ckpt_pc_drop_run(c->w, g->start, n, &c->cnt) : 0;
	r = ckpt_pc_copy_run(c->w, c->pc->mem_fd, g->start, n, c->pc->buf, c->drop_zeros, &c->cnt);
	if (r == -EFAULT) {
		/* gone while we read: forget it at D; the mapping is no longer
		 * trusted (unregistered by the caller, copied whole next time) */
		c->gone = true;
		return c->drop_zeros ? ckpt_pc_drop_run(c->w, g->start, n, &c->cnt) : 0;
	}
	return r;
}

static int drop_region(const struct pm_region *g, void *userdata)
{
	struct copy_ctx *c = userdata;

	return ckpt_pc_drop_run(c->w, g->start, (g->end - g->start) / CKPT_PAGE, &c->cnt);
}

/* A range that is not in the round must hold no protected page: D forgets
 * what it held there, and a protected page would later pass for one D
 * holds. UNREGISTER clears the protections; with no mapping left in the
 * range there is nothing to clear (EINVAL). */
static int unregister(struct sockmig_precopy *pc, uint64_t start, uint64_t end)
{
	struct uffdio_range rg = { start, end - start };

	if (ioctl(pc->uffd, UFFDIO_UNREGISTER, &rg) < 0 && errno != EINVAL && errno != ENOMEM)
		return sm_fail(-errno, "pid %d: cannot stop tracking its memory at %#" PRIx64 ": %s", (int)pc->pid, start,
			       strerror(errno));
	return 0;
}

/* Decide a mapping's fate: KEPT (registered: its written pages, protected
 * again, are in v->written) or NEW (registered now, protected, to be
 * copied whole). 1 if it goes in the round, 0 if not tracked. */
static int plan_vma(struct sockmig_precopy *pc, const struct ckpt_vma *vma, struct vma_plan *v)
{
	struct uffdio_register reg = { .range = { vma->start, vma->end - vma->start }, .mode = UFFDIO_REGISTER_MODE_WP };
	int r = -EPERM;

	*v = (struct vma_plan){ .start = vma->start, .end = vma->end };
	/* A scan passes over a mapping that is gone as well (nothing to
	 * walk): it is then listed as kept, which is harmless, as D holds
	 * nothing that matters there and the next round lists it no more.
	 * In round 1 nothing is registered yet: no scan. */
	if (pc->round)
		r = pm_scan(pc->pagemap_fd, v->start, v->end, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, 0,
			    PAGE_IS_WRITTEN, 0, keep_written, v);
	if (r == 0)
		return 1;
	if (r != -EPERM)
		return r;
	/* Not registered (new, moved, or it grew into new memory), or it
	 * changed under the scan, which may have protected part of it: copy
	 * it whole after protecting it, whatever was reported; or, if it is
	 * not tracked, no protection may stay in it. */
	v->n_written = 0;
	v->fresh = true;
	if (!(vma->prot) || vma->end - vma->start > CKPT_PC_VMA_MAX)
		return unregister(pc, v->start, v->end); /* reserved, or too big: dumped whole */
	if (ioctl(pc->uffd, UFFDIO_REGISTER, &reg) < 0)
		return unregister(pc, v->start, v->end); /* gone meanwhile, or not trackable */
	r = pm_scan(pc->pagemap_fd, v->start, v->end, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, 0, PAGE_IS_WRITTEN, 0,
		    ignore_region, NULL);
	if (r == -EPERM)
		return unregister(pc, v->start, v->end);
	return r < 0 ? r : 1;
}

static void plans_free(struct vma_plan *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].written);
	free(v);
}

int sockmig_precopy_round(struct sockmig_precopy *pc, int fd, struct sockmig_precopy_stats *ret)
{
	uint64_t t0 = sm_now_ns();
	struct sm_image_writer *w = NULL;
	struct ckpt_vma *vmas = NULL;
	struct vma_plan *plans = NULL;
	struct ckpt_pc_ranges pr = { 0 };
	struct copy_ctx c = { .pc = pc };
	size_t n_vmas = 0, n = 0;
	uint64_t tracked = 0;
	uint32_t fresh = 0;
	int r;

	if (pc->broken)
		return sm_fail(-EIO, "pid %d: this pre-copy failed before; it cannot go on", (int)pc->pid);
	r = ckpt_read_maps(pc->pid, &vmas, &n_vmas);
	if (r < 0)
		goto out;
	plans = calloc(n_vmas ? n_vmas : 1, sizeof(*plans));
	pr.r = calloc(n_vmas ? n_vmas : 1, sizeof(*pr.r));
	if (!plans || !pr.r) {
		r = -ENOMEM;
		goto out;
	}
	/* 1. decide, and protect again, before anything is written: the
	 * round's header lists its mappings */
	for (size_t i = 0; i < n_vmas; i++) {
		if (!ckpt_vma_precopyable(vmas[i].flags))
			continue;
		r = plan_vma(pc, &vmas[i], &plans[n]);
		if (r < 0) {
			r = sm_fail(r, "pid %d: cannot scan its memory at %#" PRIx64 ": %s", (int)pc->pid, vmas[i].start,
				    strerror(-r));
			n++;
			goto out;
		}
		if (r == 0) {
			free(plans[n].written);
			continue;
		}
		pr.r[n] = (struct ckpt_pc_range){ plans[n].start, plans[n].end, plans[n].fresh ? CKPT_PC_NEW : 0 };
		tracked += plans[n].end - plans[n].start;
		fresh += plans[n].fresh;
		n++;
	}
	pr.n = n;
	memcpy(pr.id, pc->id, sizeof(pr.id));
	pr.round = pc->round + 1;
	r = sm_image_writer_new(fd, CKPT_IMAGE_KIND_PAGES, &w);
	c.w = w;
	if (r >= 0)
		r = ckpt_write_ranges(w, CKPT_SEC_ROUND, &pr);
	/* 2. the bytes: what was written in a kept mapping (pages of zeros
	 * and pages gone become DROPs), everything in a new one */
	for (size_t i = 0; i < n && r >= 0; i++) {
		struct vma_plan *v = &plans[i];

		c.gone = false;
		if (v->fresh) {
			c.drop_zeros = false;
			r = pm_scan(pc->pagemap_fd, v->start, v->end, 0, 0, 0, PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
				    copy_region, &c);
		} else {
			c.drop_zeros = true;
			for (size_t k = 0; k < v->n_written && r >= 0; k++)
				r = copy_region(&v->written[k], &c);
			/* given back since (MADV_DONTNEED, reclaimed MADV_FREE):
			 * no page, or none in its page table; after the copy, so
			 * that a page dropped while we read it is dropped here */
			if (r >= 0)
				r = pm_scan(pc->pagemap_fd, v->start, v->end, 0, PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
					    PAGE_IS_PRESENT | PAGE_IS_SWAPPED, 0, drop_region, &c);
		}
		if (r >= 0 && c.gone) /* it changed under us: copied whole next round */
			r = unregister(pc, v->start, v->end);
	}
	if (r >= 0)
		r = sm_image_writer_finish(w);
	if (r < 0)
		goto out;
	pc->round++;
	if (ret) {
		/* header, ROUND, what we wrote, trailer */
		uint64_t bytes = 40 + SECTION_COST + CKPT_PC_ID_LEN + 8 + 24 * n + c.cnt.bytes + SECTION_COST + 16;

		*ret = (struct sockmig_precopy_stats){
			.pages = c.cnt.pages,
			.bytes = bytes,
			.ns = sm_now_ns() - t0,
			.dropped = c.cnt.dropped,
			.tracked = tracked,
			.round = pc->round,
			.ranges = (uint32_t)n,
			.fresh = fresh,
		};
	}
out:
	if (r < 0)
		pc->broken = true;
	sm_image_writer_free(w);
	plans_free(plans, n);
	ckpt_pc_ranges_free(&pr);
	for (size_t i = 0; i < n_vmas; i++)
		free(vmas[i].path);
	free(vmas);
	return r < 0 ? r : 0;
}

/* ---- the freeze ---- */

struct final_vma {
	bool tracked;
	struct vma_plan p; /* written: what to copy or drop */
};

struct ckpt_pc_final {
	struct sockmig_precopy *pc;
	struct final_vma *v;
	size_t n;
	struct ckpt_pc_ranges pr;
	struct ckpt_pc_count cnt;
	uint64_t t0;
};

/* What must go into the image: written pages, and pages that are not
 * there (none, or no page table); protected pages and markers are what D
 * holds already. */
static int keep_changed(const struct pm_region *g, void *userdata)
{
	uint64_t c = g->categories;

	if ((c & PAGE_IS_WRITTEN) || !(c & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)))
		return keep_written(g, userdata);
	return 0;
}

int ckpt_pc_final_scan(struct sockmig_precopy *pc, pid_t pid, const struct ckpt_vma *v, size_t n,
		       struct ckpt_pc_final **ret)
{
	struct ckpt_pc_final *f;
	int r = 0;

	if (pc->pid != pid)
		return sm_fail(-EINVAL, "the pre-copy given is of pid %d, not of pid %d", (int)pc->pid, (int)pid);
	if (pc->broken)
		return sm_fail(-EIO, "pid %d: its pre-copy failed before; it cannot be used", (int)pid);
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->pc = pc;
	f->t0 = sm_now_ns();
	f->v = calloc(n ? n : 1, sizeof(*f->v));
	f->pr.r = calloc(n ? n : 1, sizeof(*f->pr.r));
	if (!f->v || !f->pr.r) {
		ckpt_pc_final_free(f);
		return -ENOMEM;
	}
	f->n = n;
	memcpy(f->pr.id, pc->id, sizeof(f->pr.id));
	f->pr.round = pc->round;
	/* before the first round D holds nothing: everything goes whole */
	for (size_t i = 0; i < n && pc->round; i++) {
		struct final_vma *fv = &f->v[i];

		if (!ckpt_vma_precopyable(v[i].flags))
			continue;
		fv->p = (struct vma_plan){ .start = v[i].start, .end = v[i].end };
		/* one walk, nothing protected: the process is stopped and the
		 * tracking ends here. Pages written, or not present, or present
		 * in no other way than protected (a marker is "swapped") */
		r = pm_scan(pc->pagemap_fd, v[i].start, v[i].end, PM_SCAN_CHECK_WPASYNC, PAGE_IS_PRESENT, 0,
			    PAGE_IS_WRITTEN | PAGE_IS_PRESENT, keep_changed, &fv->p);
		if (r == -EPERM) {
			fv->p.n_written = 0;
			r = 0;
			continue;
		}
		if (r < 0) {
			r = sm_fail(r, "pid %d: cannot scan its memory at %#" PRIx64 ": %s", (int)pid, v[i].start,
				    strerror(-r));
			break;
		}
		fv->tracked = true;
		f->pr.r[f->pr.n++] = (struct ckpt_pc_range){ v[i].start, v[i].end, 0 };
	}
	if (r < 0) {
		ckpt_pc_final_free(f);
		return r;
	}
	*ret = f;
	return 0;
}

int ckpt_pc_final_write_ranges(const struct ckpt_pc_final *f, struct sm_image_writer *w)
{
	if (!f->pc->round)
		return 0;
	return ckpt_write_ranges(w, CKPT_SEC_PRECOPY, &f->pr);
}

int ckpt_pc_final_tracked(const struct ckpt_pc_final *f, size_t i)
{
	return i < f->n && f->v[i].tracked;
}

int ckpt_pc_final_write_delta(struct ckpt_pc_final *f, size_t i, struct sm_image_writer *w, int mem_fd,
			      uint8_t *buf)
{
	struct final_vma *fv = &f->v[i];

	for (size_t k = 0; k < fv->p.n_written; k++) {
		const struct pm_region *g = &fv->p.written[k];
		uint64_t n = (g->end - g->start) / CKPT_PAGE;
		int r;

		if (!(g->categories & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)) || (g->categories & PAGE_IS_PFNZERO)) {
			r = ckpt_pc_drop_run(w, g->start, n, &f->cnt);
		} else {
			r = ckpt_pc_copy_run(w, mem_fd, g->start, n, buf, true, &f->cnt);
			if (r == -EFAULT)
				r = sm_fail(-EIO, "pid %d: cannot read its memory at %#" PRIx64, (int)f->pc->pid, g->start);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

void ckpt_pc_final_stats(const struct ckpt_pc_final *f, struct sockmig_precopy_stats *ret)
{
	uint64_t tracked = 0;

	for (size_t i = 0; i < f->pr.n; i++)
		tracked += f->pr.r[i].end - f->pr.r[i].start;
	*ret = (struct sockmig_precopy_stats){
		.pages = f->cnt.pages,
		.bytes = f->cnt.bytes,
		.ns = sm_now_ns() - f->t0,
		.dropped = f->cnt.dropped,
		.tracked = tracked,
		.round = f->pc->round,
		.ranges = (uint32_t)f->pr.n,
	};
}

void ckpt_pc_final_free(struct ckpt_pc_final *f)
{
	if (!f)
		return;
	for (size_t i = 0; f->v && i < f->n; i++)
		free(f->v[i].p.written);
	free(f->v);
	ckpt_pc_ranges_free(&f->pr);
	free(f);
}
