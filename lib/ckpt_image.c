/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Process image sections: encoders and the checked reader. The byte layout
 * is docs/checkpoint.md; keep the two in step. Every value read from an
 * image is untrusted: lengths are bounded before use, addresses are checked
 * to be page-aligned and ordered, and a PAGES run must lie inside a mapping.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "ckpt.h"
#include "ckpt_fd.h"
#include "ckpt_task.h"
#include "util.h"

void ckpt_image_free(struct ckpt_image *im)
{
	if (!im)
		return;
	for (size_t i = 0; i < im->n_vmas; i++)
		free(im->vmas[i].path);
	free(im->vmas);
	free(im->vdso);
	ckpt_pc_ranges_free(&im->precopy);
	im->has_precopy = 0;
	ckpt_fds_free(im->fds);
	ckpt_task_free(im->task);
	im->fds = NULL;
	im->task = NULL;
	im->vmas = NULL;
	im->n_vmas = 0;
	im->vdso = NULL;
}

static void put_str(struct sm_buf *b, const char *s)
{
	sm_buf_put_blob(b, s, s ? strlen(s) : 0);
}

int ckpt_write_info(struct sm_image_writer *w, const struct ckpt_info *in)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_u32(&b, in->pid);
	put_str(&b, in->comm);
	sm_buf_put_u64(&b, in->xfeatures);
	r = sm_image_write_buf(w, CKPT_SEC_INFO, &b);
	sm_buf_free(&b);
	return r;
}

int ckpt_write_mm(struct sm_image_writer *w, const struct ckpt_mm *mm)
{
	const uint64_t f[] = { mm->start_code, mm->end_code, mm->start_data, mm->end_data,
			       mm->start_brk,  mm->brk,      mm->start_stack, mm->arg_start,
			       mm->arg_end,    mm->env_start, mm->env_end };
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	for (size_t i = 0; i < ARRAY_SIZE(f); i++)
		sm_buf_put_u64(&b, f[i]);
	sm_buf_put_blob(&b, mm->auxv, mm->auxv_len);
	put_str(&b, mm->exe);
	r = sm_image_write_buf(w, CKPT_SEC_MM, &b);
	sm_buf_free(&b);
	return r;
}

int ckpt_write_vmas(struct sm_image_writer *w, const struct ckpt_vma *v, size_t n)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_u32(&b, (uint32_t)n);
	for (size_t i = 0; i < n; i++) {
		sm_buf_put_u64(&b, v[i].start);
		sm_buf_put_u64(&b, v[i].end);
		sm_buf_put_u64(&b, v[i].pgoff);
		sm_buf_put_u64(&b, v[i].ino);
		sm_buf_put_u32(&b, v[i].prot);
		sm_buf_put_u32(&b, v[i].flags);
		put_str(&b, v[i].path);
	}
	r = sm_image_write_buf(w, CKPT_SEC_VMAS, &b);
	sm_buf_free(&b);
	return r;
}

int ckpt_write_thread(struct sm_image_writer *w, const struct ckpt_thread *t)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_u32(&b, t->tid);
	for (int i = 0; i < CKPT_NREGS; i++)
		sm_buf_put_u64(&b, t->regs[i]);
	sm_buf_put_u64(&b, t->sigmask);
	sm_buf_put_u64(&b, t->rseq_ptr);
	sm_buf_put_u32(&b, t->rseq_len);
	sm_buf_put_u32(&b, t->rseq_sig);
	sm_buf_put_blob(&b, t->xstate, t->xstate_len);
	r = sm_image_write_buf(w, CKPT_SEC_THREAD, &b);
	sm_buf_free(&b);
	return r;
}

int ckpt_write_vdso(struct sm_image_writer *w, const void *p, size_t len)
{
	return sm_image_write_section(w, CKPT_SEC_VDSO, p, len);
}

int ckpt_write_ranges(struct sm_image_writer *w, uint16_t type, const struct ckpt_pc_ranges *pr)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_bytes(&b, pr->id, sizeof(pr->id));
	sm_buf_put_u32(&b, pr->round);
	sm_buf_put_u32(&b, (uint32_t)pr->n);
	for (size_t i = 0; i < pr->n; i++) {
		sm_buf_put_u64(&b, pr->r[i].start);
		sm_buf_put_u64(&b, pr->r[i].end);
		sm_buf_put_u32(&b, pr->r[i].flags);
		sm_buf_put_u32(&b, 0);
	}
	r = sm_image_write_buf(w, type, &b);
	sm_buf_free(&b);
	return r;
}

int ckpt_write_drop(struct sm_image_writer *w, uint64_t addr, uint64_t npages)
{
	uint8_t p[16];

	/* a run longer than a u32 of pages is cut in several sections */
	while (npages) {
		uint32_t n = npages > UINT32_MAX ? UINT32_MAX : (uint32_t)npages;
		int r;

		for (int i = 0; i < 8; i++)
			p[i] = (uint8_t)(addr >> (8 * i));
		for (int i = 0; i < 4; i++) {
			p[8 + i] = (uint8_t)(n >> (8 * i));
			p[12 + i] = 0;
		}
		r = sm_image_write_section(w, CKPT_SEC_DROP, p, sizeof(p));
		if (r < 0)
			return r;
		addr += (uint64_t)n * CKPT_PAGE;
		npages -= n;
	}
	return 0;
}

void ckpt_pc_ranges_free(struct ckpt_pc_ranges *pr)
{
	if (!pr)
		return;
	free(pr->r);
	pr->r = NULL;
	pr->n = 0;
}

/* ---- reader ---- */

/* A string blob into a fixed buffer; refuses what does not fit or holds a NUL. */
static int cur_str(struct sm_cursor *c, const char *what, char *dst, size_t size)
{
	size_t n;
	const uint8_t *p = sm_cur_blob(c, &n);

	if (!p)
		return sm_cur_check(c, what, 0);
	if (n >= size || memchr(p, 0, n))
		return sm_cur_fail(c, what, "a %zu-byte string is invalid here", n);
	memcpy(dst, p, n);
	dst[n] = 0;
	return 0;
}

static int read_info(struct sm_cursor *c, struct ckpt_info *in)
{
	in->pid = sm_cur_u32(c);
	if (cur_str(c, "process info", in->comm, sizeof(in->comm)) < 0)
		return -EBADMSG;
	in->xfeatures = sm_cur_u64(c);
	return sm_cur_check(c, "process info", 0);
}

static int read_mm(struct sm_cursor *c, struct ckpt_mm *mm)
{
	uint64_t *f[] = { &mm->start_code, &mm->end_code, &mm->start_data, &mm->end_data,
			  &mm->start_brk,  &mm->brk,      &mm->start_stack, &mm->arg_start,
			  &mm->arg_end,    &mm->env_start, &mm->env_end };
	const uint8_t *p;
	size_t n;

	for (size_t i = 0; i < ARRAY_SIZE(f); i++)
		*f[i] = sm_cur_u64(c);
	p = sm_cur_blob(c, &n);
	if (!p)
		return sm_cur_check(c, "process mm", 0);
	if (n > sizeof(mm->auxv) || n % 16)
		return sm_cur_fail(c, "process mm", "auxv of %zu bytes is invalid", n);
	memcpy(mm->auxv, p, n);
	mm->auxv_len = (uint32_t)n;
	if (cur_str(c, "process mm", mm->exe, sizeof(mm->exe)) < 0)
		return -EBADMSG;
	return sm_cur_check(c, "process mm", 0);
}

static int read_vmas(struct sm_cursor *c, struct ckpt_image *im)
{
	uint32_t n = sm_cur_u32(c);
	uint64_t prev_end = 0;

	if (c->err)
		return sm_cur_check(c, "process mappings", 0);
	if (n > CKPT_MAX_VMAS || (size_t)n * 44 > sm_cur_remaining(c))
		return sm_cur_fail(c, "process mappings", "%u mappings cannot be right", n);
	im->vmas = calloc(n ? n : 1, sizeof(*im->vmas));
	if (!im->vmas)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct ckpt_vma *v = &im->vmas[i];
		const uint8_t *p;
		size_t len;

		v->start = sm_cur_u64(c);
		v->end = sm_cur_u64(c);
		v->pgoff = sm_cur_u64(c);
		v->ino = sm_cur_u64(c);
		v->prot = sm_cur_u32(c);
		v->flags = sm_cur_u32(c);
		p = sm_cur_blob(c, &len);
		if (!p)
			return sm_cur_check(c, "process mappings", 0);
		im->n_vmas = i + 1;
		if (v->start % CKPT_PAGE || v->end % CKPT_PAGE || v->start >= v->end || v->start < prev_end ||
		    v->pgoff % CKPT_PAGE || (v->prot & ~(uint32_t)(PROT_READ | PROT_WRITE | PROT_EXEC)))
			return sm_cur_fail(c, "process mappings", "mapping %u (%#llx-%#llx) is invalid", i,
					   (unsigned long long)v->start, (unsigned long long)v->end);
		prev_end = v->end;
		if (len) {
			if (len >= 4096 || memchr(p, 0, len))
				return sm_cur_fail(c, "process mappings", "mapping %u has an invalid path", i);
			v->path = strndup((const char *)p, len);
			if (!v->path)
				return -ENOMEM;
		}
	}
	return sm_cur_check(c, "process mappings", 0);
}

static int read_thread(struct sm_cursor *c, struct ckpt_thread *t)
{
	const uint8_t *p;
	size_t n;

	t->tid = sm_cur_u32(c);
	for (int i = 0; i < CKPT_NREGS; i++)
		t->regs[i] = sm_cur_u64(c);
	t->sigmask = sm_cur_u64(c);
	t->rseq_ptr = sm_cur_u64(c);
	t->rseq_len = sm_cur_u32(c);
	t->rseq_sig = sm_cur_u32(c);
	p = sm_cur_blob(c, &n);
	if (!p)
		return sm_cur_check(c, "thread state", 0);
	if (n > sizeof(t->xstate) || n < 576)
		return sm_cur_fail(c, "thread state", "an xstate of %zu bytes is invalid", n);
	memcpy(t->xstate, p, n);
	t->xstate_len = (uint32_t)n;
	return sm_cur_check(c, "thread state", 0);
}

/* The highest user address (47 bits, also with 5-level paging unless a
 * process asked for more, which pre-copy does not follow). */
#define USER_END (1ull << 47)

int ckpt_read_ranges(struct sm_cursor *c, const char *what, uint32_t flags_ok, struct ckpt_pc_ranges *ret)
{
	const uint8_t *id = sm_cur_bytes(c, CKPT_PC_ID_LEN);
	uint64_t prev_end = 0;
	uint32_t n;

	memset(ret, 0, sizeof(*ret));
	ret->round = sm_cur_u32(c);
	n = sm_cur_u32(c);
	if (!id || c->err)
		return sm_cur_check(c, what, 0);
	memcpy(ret->id, id, sizeof(ret->id));
	if (n > CKPT_PC_MAX_RANGES || (size_t)n * 24 > sm_cur_remaining(c))
		return sm_cur_fail(c, what, "%u ranges cannot be right", n);
	ret->r = calloc(n ? n : 1, sizeof(*ret->r));
	if (!ret->r)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct ckpt_pc_range *g = &ret->r[i];

		g->start = sm_cur_u64(c);
		g->end = sm_cur_u64(c);
		g->flags = sm_cur_u32(c);
		(void)sm_cur_u32(c);
		ret->n = i + 1;
		if (g->start % CKPT_PAGE || g->end % CKPT_PAGE || g->start >= g->end || g->start < prev_end ||
		    g->end > USER_END)
			return sm_cur_fail(c, what, "range %u (%#llx-%#llx) is invalid", i, (unsigned long long)g->start,
					   (unsigned long long)g->end);
		if (g->flags & ~flags_ok)
			return sm_cur_fail(c, what, "range %u has flags %#x, which this sockmig does not know here", i,
					   g->flags);
		prev_end = g->end;
	}
	return sm_cur_check(c, what, 0);
}

/* The VMAs are sorted and disjoint (read_vmas checks it): binary search. */
static const struct ckpt_vma *vma_containing(const struct ckpt_image *im, uint64_t a, uint64_t len)
{
	size_t lo = 0, hi = im->n_vmas;

	if (a + len <= a)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (im->vmas[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < im->n_vmas && a >= im->vmas[lo].start && a + len <= im->vmas[lo].end)
		return &im->vmas[lo];
	return NULL;
}

static const struct ckpt_pc_range *range_containing(const struct ckpt_pc_ranges *pr, uint64_t a, uint64_t len)
{
	size_t lo = 0, hi = pr->n;

	if (a + len <= a)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pr->r[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < pr->n && a >= pr->r[lo].start && a + len <= pr->r[lo].end)
		return &pr->r[lo];
	return NULL;
}

/* PRECOPY: each range is one whole VMA the store can hold. */
static int read_precopy(struct sm_cursor *c, struct ckpt_image *im)
{
	static const char what[] = "pre-copied mappings";
	int r = ckpt_read_ranges(c, what, 0, &im->precopy);

	if (r < 0)
		return r;
	for (size_t i = 0; i < im->precopy.n; i++) {
		const struct ckpt_pc_range *g = &im->precopy.r[i];
		const struct ckpt_vma *v = vma_containing(im, g->start, g->end - g->start);

		if (!v || v->start != g->start || v->end != g->end || !ckpt_vma_precopyable(v->flags))
			return sm_cur_fail(c, what, "range %zu (%#llx-%#llx) is not one private anonymous mapping", i,
					   (unsigned long long)g->start, (unsigned long long)g->end);
	}
	im->has_precopy = 1;
	return 0;
}

#define SEEN_VMAS (1u << (CKPT_SEC_VMAS - CKPT_SEC_INFO))
#define SEEN(t) (1u << ((t) - CKPT_SEC_INFO))
#define SEEN_REQUIRED                                                                                       \
	(SEEN(CKPT_SEC_INFO) | SEEN(CKPT_SEC_MM) | SEEN(CKPT_SEC_VMAS) | SEEN(CKPT_SEC_THREAD) | \
	 SEEN(CKPT_SEC_VDSO))

int ckpt_read_image(struct sm_image_reader *r, struct ckpt_image *im, ckpt_pages_fn fn, void *userdata)
{
	const struct ckpt_read_ops ops = { .pages = fn };

	return ckpt_read_image_ops(r, im, &ops, userdata);
}

int ckpt_read_image_ops(struct sm_image_reader *r, struct ckpt_image *im, const struct ckpt_read_ops *ops,
			void *userdata)
{
	ckpt_pages_fn fn = ops->pages;
	bool any_pages = false;
	unsigned seen = 0;
	int err;

	memset(im, 0, sizeof(*im));
	if (sm_image_reader_kind(r) != SM_IMAGE_KIND_PROCESS)
		return sm_fail(-EINVAL, "image holds kind %u, not a process checkpoint", sm_image_reader_kind(r));
	for (;;) {
		const uint8_t *data;
		struct sm_cursor c;
		uint64_t off;
		uint16_t type;
		size_t len;

		err = sm_image_next_section(r, &type, &data, &len, &off);
		if (err <= 0)
			break;
		sm_cursor_init(&c, data, len, off);
		switch (type) {
		case CKPT_SEC_INFO:
			err = read_info(&c, &im->info);
			break;
		case CKPT_SEC_MM:
			err = read_mm(&c, &im->mm);
			break;
		case CKPT_SEC_VMAS:
			err = (seen & SEEN_VMAS) ? sm_cur_fail(&c, "process mappings", "a second list")
						 : read_vmas(&c, im);
			break;
		case CKPT_SEC_THREAD:
			err = read_thread(&c, &im->thread);
			break;
		case CKPT_SEC_VDSO:
			free(im->vdso);
			im->vdso = malloc(len ? len : 1);
			if (!im->vdso) {
				err = -ENOMEM;
				break;
			}
			memcpy(im->vdso, data, len);
			im->vdso_len = len;
			err = 0;
			break;
		case CKPT_SEC_PAGES: {
			uint64_t addr = sm_cur_u64(&c);
			uint32_t npages = sm_cur_u32(&c);
			const uint8_t *bytes;

			(void)sm_cur_u32(&c);
			if (!(seen & SEEN_VMAS)) {
				err = sm_cur_fail(&c, "process pages", "pages before the list of mappings");
				break;
			}
			if (npages == 0 || npages > CKPT_RUN_MAX_PAGES || addr % CKPT_PAGE ||
			    sm_cur_remaining(&c) != npages * CKPT_PAGE) {
				err = sm_cur_fail(&c, "process pages", "run of %u pages at %#llx is invalid", npages,
						  (unsigned long long)addr);
				break;
			}
			if (!vma_containing(im, addr, npages * CKPT_PAGE)) {
				err = sm_cur_fail(&c, "process pages", "pages at %#llx lie outside every mapping",
						  (unsigned long long)addr);
				break;
			}
			bytes = sm_cur_bytes(&c, npages * CKPT_PAGE);
			any_pages = true;
			err = fn ? fn(addr, bytes, npages * CKPT_PAGE, userdata) : 0;
			break;
		}
		case CKPT_SEC_PRECOPY:
			if (!(seen & SEEN_VMAS) || any_pages || im->has_precopy) {
				err = sm_cur_fail(&c, "pre-copied mappings", "out of place (before the mappings, after pages, or twice)");
				break;
			}
			err = read_precopy(&c, im);
			if (err == 0 && ops->precopy)
				err = ops->precopy(&im->precopy, userdata);
			break;
		case CKPT_SEC_DROP: {
			uint64_t addr = sm_cur_u64(&c);
			uint32_t npages = sm_cur_u32(&c);

			(void)sm_cur_u32(&c);
			err = sm_cur_check(&c, "dropped pages", 0);
			if (err < 0)
				break;
			any_pages = true;
			if (npages == 0 || addr % CKPT_PAGE ||
			    !range_containing(&im->precopy, addr, (uint64_t)npages * CKPT_PAGE)) {
				err = sm_cur_fail(&c, "dropped pages", "run of %u pages at %#llx lies outside the pre-copied mappings",
						  npages, (unsigned long long)addr);
				break;
			}
			err = ops->drop ? ops->drop(addr, (uint64_t)npages * CKPT_PAGE, userdata) : 0;
			break;
		}
		default:
			if (ckpt_fds_owns(type))
				err = ckpt_fds_read_section(&im->fds, type, &c);
			else if (ckpt_task_owns(type))
				err = ckpt_task_read_section(&im->task, type, &c);
			else
				err = sm_image_unknown_section(r);
			break;
		}
		if (err < 0)
			break;
		if (type >= CKPT_SEC_INFO && type <= CKPT_SEC_VDSO)
			seen |= 1u << (type - CKPT_SEC_INFO);
	}
	/* Every section but PAGES is required (a process may have no page). */
	if (err == 0 && (seen & SEEN_REQUIRED) != SEEN_REQUIRED)
		err = sm_fail(-EBADMSG, "process image lacks a required section (present: %#x)", seen);
	if (err == 0 && im->fds)
		err = ckpt_fds_validate(im->fds);
	if (err == 0 && im->task)
		err = ckpt_task_validate(im->task);
	if (err < 0)
		ckpt_image_free(im);
	return err;
}
