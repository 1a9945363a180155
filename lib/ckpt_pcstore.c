/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * D's side of pre-copy: the page store and the reader of pages images.
 *
 * The store keeps the pages of each tracked mapping in anonymous memory of
 * ours laid out like the mapping itself (a "region": page at address a of
 * the process is at base + (a - start)), so that a restore can hand the
 * whole region to the new process with one mremap: page tables move, no
 * byte is copied, no page is allocated or zeroed while the process is
 * frozen. A page we do not hold is not there (it reads as zeros).
 *
 * Everything comes from the network: every range, address and length is
 * checked against what the round announced before it is used, the pages
 * held are bounded by max_bytes and the address space reserved by max_va,
 * and the reader is fuzzed (tests/fuzz/fuzz_ckpt_pages.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "ckpt_pc.h"
#include "util.h"

#define HUGE_ALIGN (2ull << 20)

static uint64_t npages_of(const struct ckpt_region *g)
{
	return (g->end - g->start) / CKPT_PAGE;
}

static bool bit_get(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static void bit_set(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ull << (i % 64);
}

void ckpt_pcs_init(struct ckpt_pcs *s, uint64_t max_bytes, uint64_t max_va)
{
	*s = (struct ckpt_pcs){ .max_held = max_bytes / CKPT_PAGE, .max_va = max_va };
}

/* A mapping of ours for [start, start + len), its address congruent to
 * start modulo 2 MiB. Accounted like the process's own memory; without the
 * commit charge if the kernel's overcommit heuristic refuses the size. */
static uint8_t *map_region(uint64_t start, uint64_t len)
{
	uint64_t want = start % HUGE_ALIGN, a;
	uint8_t *m;
	int extra = 0;

	for (int pass = 0; pass < 2; pass++) {
		m = mmap(NULL, len + HUGE_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);
		if (m != MAP_FAILED)
			break;
		if (errno != ENOMEM)
			return NULL;
		extra = MAP_NORESERVE;
	}
	if (m == MAP_FAILED)
		return NULL;
	a = ((uint64_t)(uintptr_t)m & ~(HUGE_ALIGN - 1)) + want;
	if (a < (uint64_t)(uintptr_t)m)
		a += HUGE_ALIGN;
	if (a > (uint64_t)(uintptr_t)m)
		munmap(m, a - (uint64_t)(uintptr_t)m);
	if ((uint64_t)(uintptr_t)m + len + HUGE_ALIGN > a + len)
		munmap((uint8_t *)(uintptr_t)(a + len), (uint64_t)(uintptr_t)m + len + HUGE_ALIGN - (a + len));
	return (uint8_t *)(uintptr_t)a;
}

static void region_free(struct ckpt_region *g, bool unmap)
{
	if (unmap && g->base)
		munmap(g->base, g->end - g->start);
	free(g->bits);
	g->bits = NULL;
	g->base = NULL;
}

void ckpt_pcs_clear(struct ckpt_pcs *s)
{
	for (size_t i = 0; i < s->n; i++)
		region_free(&s->r[i], true);
	free(s->r);
	s->r = NULL;
	s->n = s->cap = 0;
	s->held = 0;
	s->va = 0;
}

void ckpt_pcs_move(struct ckpt_pcs *dst, struct ckpt_pcs *src)
{
	ckpt_pcs_clear(dst);
	*dst = *src;
	src->r = NULL;
	src->n = src->cap = 0;
	src->held = 0;
	src->va = 0;
}

struct ckpt_region *ckpt_pcs_find(const struct ckpt_pcs *s, uint64_t addr, uint64_t len)
{
	size_t lo = 0, hi = s->n;

	if (addr + len < addr)
		return NULL;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->r[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < s->n && addr >= s->r[lo].start && addr + len <= s->r[lo].end)
		return &s->r[lo];
	return NULL;
}

int ckpt_pcs_add(struct ckpt_pcs *s, uint64_t start, uint64_t end)
{
	struct ckpt_region g = { .start = start, .end = end };
	size_t at = s->n, lo = 0;

	if (end - start > s->max_va - s->va || s->va > s->max_va)
		return sm_fail(-E2BIG, "the pages of mapping %#" PRIx64 "-%#" PRIx64 " would take more than %" PRIu64 " MiB of address space",
			       start, end, s->max_va >> 20);
	/* a dump writes mappings in address order: mostly appended */
	if (s->n && s->r[s->n - 1].start > start) {
		at = s->n;
		while (lo < at) {
			size_t mid = lo + (at - lo) / 2;

			if (s->r[mid].start < start)
				lo = mid + 1;
			else
				at = mid;
		}
	}
	if ((at > 0 && s->r[at - 1].end > start) || (at < s->n && s->r[at].start < end))
		return sm_fail(-EINVAL, "mapping %#" PRIx64 "-%#" PRIx64 " overlaps another one", start, end);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct ckpt_region *nr = realloc(s->r, cap * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		s->r = nr;
		s->cap = cap;
	}
	g.bits = calloc((npages_of(&g) + 63) / 64, 8);
	g.base = g.bits ? map_region(start, end - start) : NULL;
	if (!g.base) {
		free(g.bits);
		return sm_fail(-ENOMEM, "no memory for the pages of mapping %#" PRIx64 "-%#" PRIx64, start, end);
	}
	memmove(&s->r[at + 1], &s->r[at], (s->n - at) * sizeof(*s->r));
	s->r[at] = g;
	s->n++;
	s->va += end - start;
	return 0;
}

int ckpt_pcs_put(struct ckpt_pcs *s, uint64_t addr, const uint8_t *data, size_t len)
{
	struct ckpt_region *g = ckpt_pcs_find(s, addr, len);
	uint64_t first, n, fresh = 0;

	if (!g || addr % CKPT_PAGE || len % CKPT_PAGE)
		return sm_fail(-EINVAL, "pages at %#" PRIx64 " lie outside the store's mappings", addr);
	first = (addr - g->start) / CKPT_PAGE;
	n = len / CKPT_PAGE;
	for (uint64_t i = 0; i < n; i++)
		fresh += !bit_get(g->bits, first + i);
	if (fresh > s->max_held - s->held)
		return sm_fail(-ENOSPC, "the pre-copy store is full: it holds %" PRIu64 " MiB, its limit", (uint64_t)(s->max_held * CKPT_PAGE) >> 20);
	memcpy(g->base + (addr - g->start), data, len);
	for (uint64_t i = 0; i < n; i++)
		bit_set(g->bits, first + i);
	g->held += fresh;
	s->held += fresh;
	return 0;
}

/* Forget pages [first, first + n) of g: their memory goes back at once.
 * A word of the bitmap at a time, so that a DROP over a large empty range
 * costs little. */
static void region_drop(struct ckpt_pcs *s, struct ckpt_region *g, uint64_t first, uint64_t n)
{
	uint64_t gone = 0, end = first + n;

	for (uint64_t i = first; i < end;) {
		uint64_t w = i / 64, lo = i % 64, hi = end - w * 64 < 64 ? end - w * 64 : 64;
		uint64_t mask = (hi == 64 ? ~0ull : (1ull << hi) - 1) & ~((1ull << lo) - 1);

		gone += (uint64_t)__builtin_popcountll(g->bits[w] & mask);
		g->bits[w] &= ~mask;
		i = (w + 1) * 64;
	}
	if (gone)
		madvise(g->base + first * CKPT_PAGE, n * CKPT_PAGE, MADV_DONTNEED);
	g->held -= gone;
	s->held -= gone;
}

int ckpt_pcs_drop(struct ckpt_pcs *s, uint64_t addr, uint64_t len)
{
	uint64_t end = addr + len;
	size_t lo = 0, hi = s->n;

	if (end < addr)
		return -EINVAL;
	/* the first region that ends after addr */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->r[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo; i < s->n && s->r[i].start < end; i++) {
		struct ckpt_region *g = &s->r[i];
		uint64_t a = addr > g->start ? addr : g->start, b = end < g->end ? end : g->end;

		if (a < b)
			region_drop(s, g, (a - g->start) / CKPT_PAGE, (b - a) / CKPT_PAGE);
	}
	return 0;
}

/* ---- layout: the regions become the ranges of a new round ---- */

/* A piece of an old region that a kept range uses: its overlap with it. */
struct use {
	size_t old;          /* old region */
	uint64_t start, end; /* process addresses, inside both */
	bool base;           /* the piece at the range's start: it stays in place */
	bool done;           /* taken over or copied */
};

static void unmap_piece(const struct ckpt_region *o, uint64_t start, uint64_t end)
{
	if (end > start && o->base)
		munmap(o->base + (start - o->start), end - start);
}

int ckpt_pcs_layout(struct ckpt_pcs *s, const struct ckpt_pc_range *g, size_t n)
{
	struct ckpt_region *old = s->r, *nr;
	size_t n_old = s->n, n_uses = 0, j = 0, u = 0;
	struct use *uses;
	uint64_t va = 0;
	int r = 0;

	for (size_t i = 0; i < n; i++) {
		if (g[i].start % CKPT_PAGE || g[i].end % CKPT_PAGE || g[i].start >= g[i].end ||
		    (i && g[i].start < g[i - 1].end))
			return sm_fail(-EINVAL, "the store's mappings are not sorted page ranges");
		if (g[i].end - g[i].start > CKPT_PC_VMA_MAX || g[i].end - g[i].start > s->max_va - va)
			return sm_fail(-E2BIG, "the pre-copied mappings would take more than %" PRIu64 " MiB of address space",
				       s->max_va >> 20);
		va += g[i].end - g[i].start;
	}
	nr = calloc(n ? n : 1, sizeof(*nr));
	/* two sorted lists of disjoint intervals overlap in fewer than
	 * n + n_old pairs */
	uses = calloc(n + n_old + 1, sizeof(*uses));
	if (!nr || !uses) {
		free(nr);
		free(uses);
		return -ENOMEM;
	}
	/* 1. the old pieces each kept range uses, in address order */
	for (size_t i = 0; i < n; i++) {
		nr[i] = (struct ckpt_region){ .start = g[i].start, .end = g[i].end };
		if (g[i].flags & CKPT_PC_NEW)
			continue;
		while (j < n_old && old[j].end <= g[i].start)
			j++;
		for (size_t k = j; k < n_old && old[k].start < g[i].end; k++) {
			uint64_t a = old[k].start > g[i].start ? old[k].start : g[i].start;
			uint64_t b = old[k].end < g[i].end ? old[k].end : g[i].end;

			uses[n_uses++] = (struct use){ .old = k, .start = a, .end = b, .base = a == g[i].start };
		}
	}
	/* 2. what no kept range uses goes first, before anything new is
	 * mapped, so that nothing new can land where an unmap is still due.
	 * The uses of one old region are consecutive in uses[]. */
	for (size_t k = 0; k < n_old; k++) {
		uint64_t at = old[k].start;

		while (u < n_uses && uses[u].old < k)
			u++;
		for (; u < n_uses && uses[u].old == k; u++) {
			unmap_piece(&old[k], at, uses[u].start);
			at = uses[u].end;
		}
		unmap_piece(&old[k], at, old[k].end);
	}
	/* 3. each range: the old piece at its start stays where it is (grown
	 * with mremap, page tables only, if the range is longer), else a new
	 * mapping; what other pieces hold is copied in, page by page */
	s->held = 0;
	u = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		struct ckpt_region *ng = &nr[i];
		size_t first = u;

		while (u < n_uses && uses[u].start < ng->end && uses[u].end > ng->start)
			u++;
		ng->bits = calloc((npages_of(ng) + 63) / 64, 8);
		if (!ng->bits) {
			r = -ENOMEM;
			break;
		}
		if (first < u && uses[first].base) {
			struct use *b = &uses[first];
			uint8_t *at = old[b->old].base + (b->start - old[b->old].start);

			if (b->end < ng->end) {
				void *m = mremap(at, b->end - b->start, ng->end - ng->start, MREMAP_MAYMOVE);

				if (m == MAP_FAILED) {
					r = sm_fail(-errno, "cannot grow the store's copy of mapping %#" PRIx64 "-%#" PRIx64 ": %s",
						    ng->start, ng->end, strerror(errno));
					break;
				}
				at = m;
			}
			ng->base = at;
			b->done = true;
		} else {
			ng->base = map_region(ng->start, ng->end - ng->start);
			if (!ng->base) {
				r = sm_fail(-ENOMEM, "no memory for the pages of mapping %#" PRIx64 "-%#" PRIx64, ng->start,
					    ng->end);
				break;
			}
		}
		for (size_t k = first; k < u; k++) {
			struct use *p = &uses[k];
			const struct ckpt_region *o = &old[p->old];

			for (uint64_t a = p->start; a < p->end; a += CKPT_PAGE) {
				uint64_t oi = (a - o->start) / CKPT_PAGE;

				if (!bit_get(o->bits, oi))
					continue;
				if (!p->base)
					memcpy(ng->base + (a - ng->start), o->base + (a - o->start), CKPT_PAGE);
				bit_set(ng->bits, (a - ng->start) / CKPT_PAGE);
				ng->held++;
			}
			if (!p->base)
				unmap_piece(o, p->start, p->end);
			p->done = true;
		}
		s->held += ng->held;
	}
	if (r < 0) /* pieces not taken over yet */
		for (size_t k = 0; k < n_uses; k++)
			if (!uses[k].done)
				unmap_piece(&old[uses[k].old], uses[k].start, uses[k].end);
	free(uses);
	for (size_t k = 0; k < n_old; k++)
		free(old[k].bits);
	free(old);
	s->r = nr;
	s->n = n;
	s->cap = n ? n : 1;
	s->va = va;
	if (r < 0)
		ckpt_pcs_clear(s); /* the ranges not made yet have no base */
	return r;
}

/* ---- the public store ---- */

int sockmig_precopy_store_new(uint64_t max_bytes, struct sockmig_precopy_store **ret)
{
	struct sockmig_precopy_store *ps;
	uint64_t va;

	if (max_bytes < CKPT_PAGE)
		return sm_fail(-EINVAL, "a pre-copy store needs room for at least one page");
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	/* sparse mappings reserve more than they hold; 64 x is plenty, and
	 * caps what a peer can make us reserve */
	va = max_bytes > (UINT64_MAX >> 7) ? (UINT64_MAX >> 1) : max_bytes * 64;
	ckpt_pcs_init(&ps->pcs, max_bytes, va < (256ull << 20) ? (256ull << 20) : va);
	*ret = ps;
	return 0;
}

void sockmig_precopy_store_free(struct sockmig_precopy_store *ps)
{
	if (!ps)
		return;
	ckpt_pcs_clear(&ps->pcs);
	free(ps);
}

void sockmig_precopy_store_info(const struct sockmig_precopy_store *ps, struct sockmig_precopy_store_info *ret)
{
	*ret = (struct sockmig_precopy_store_info){ ps->round, (uint32_t)ps->pcs.n, ps->pcs.held * CKPT_PAGE };
}

static const struct ckpt_pc_range *in_ranges(const struct ckpt_pc_ranges *pr, uint64_t a, uint64_t len)
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

/* The sections after ROUND: PAGES and DROP inside the round's ranges. */
static int read_round_body(struct sockmig_precopy_store *ps, struct sm_image_reader *rd, const struct ckpt_pc_ranges *pr)
{
	for (;;) {
		const uint8_t *data;
		struct sm_cursor c;
		uint64_t off, addr;
		uint32_t npages;
		uint16_t type;
		size_t len;
		int r = sm_image_next_section(rd, &type, &data, &len, &off);

		if (r <= 0)
			return r;
		sm_cursor_init(&c, data, len, off);
		switch (type) {
		case CKPT_SEC_PAGES:
			addr = sm_cur_u64(&c);
			npages = sm_cur_u32(&c);
			(void)sm_cur_u32(&c);
			if (c.err)
				return sm_cur_check(&c, "pre-copied pages", 0);
			if (npages == 0 || npages > CKPT_RUN_MAX_PAGES || addr % CKPT_PAGE ||
			    sm_cur_remaining(&c) != npages * CKPT_PAGE || !in_ranges(pr, addr, npages * CKPT_PAGE))
				return sm_cur_fail(&c, "pre-copied pages", "run of %u pages at %#llx is invalid", npages,
						   (unsigned long long)addr);
			r = ckpt_pcs_put(&ps->pcs, addr, sm_cur_bytes(&c, npages * CKPT_PAGE), npages * CKPT_PAGE);
			break;
		case CKPT_SEC_DROP:
			addr = sm_cur_u64(&c);
			npages = sm_cur_u32(&c);
			(void)sm_cur_u32(&c);
			if (c.err)
				return sm_cur_check(&c, "pre-copy dropped pages", 0);
			if (npages == 0 || addr % CKPT_PAGE || !in_ranges(pr, addr, (uint64_t)npages * CKPT_PAGE))
				return sm_cur_fail(&c, "pre-copy dropped pages", "run of %u pages at %#llx is invalid", npages,
						   (unsigned long long)addr);
			r = ckpt_pcs_drop(&ps->pcs, addr, (uint64_t)npages * CKPT_PAGE);
			break;
		case CKPT_SEC_ROUND:
			return sm_cur_fail(&c, "pre-copy round", "a second round header");
		default:
			r = sm_image_unknown_section(rd);
			break;
		}
		if (r < 0)
			return r;
	}
}

int sockmig_precopy_store_read(struct sockmig_precopy_store *ps, int fd)
{
	struct sm_image_reader *rd = NULL;
	struct ckpt_pc_ranges pr = { 0 };
	const uint8_t *data;
	struct sm_cursor c;
	uint64_t off;
	uint16_t type;
	size_t len;
	int r;

	if (ps->failed)
		return sm_fail(-EIO, "the pre-copy store is unusable: round %u failed half-way", ps->failed);
	if (ps->taken)
		return sm_fail(-EINVAL, "the pre-copy store was handed to a restore");
	r = sm_image_reader_new_fd(fd, &rd);
	if (r < 0)
		return r;
	if (sm_image_reader_kind(rd) != CKPT_IMAGE_KIND_PAGES) {
		r = sm_fail(-EINVAL, "image holds kind %u, not pre-copied pages", sm_image_reader_kind(rd));
		goto out;
	}
	r = sm_image_next_section(rd, &type, &data, &len, &off);
	if (r == 0)
		r = sm_fail(-EBADMSG, "pre-copy round: the image is empty");
	if (r < 0)
		goto out;
	sm_cursor_init(&c, data, len, off);
	if (type != CKPT_SEC_ROUND) {
		r = sm_cur_fail(&c, "pre-copy round", "the first section has type 0x%04x, not the round's", type);
		goto out;
	}
	r = ckpt_read_ranges(&c, "pre-copy round", CKPT_PC_NEW, &pr);
	if (r < 0)
		goto out;
	if (pr.round != ps->round + 1 || (ps->round && memcmp(pr.id, ps->id, sizeof(pr.id)))) {
		r = sm_fail(-EINVAL, "pre-copy round %u cannot follow round %u%s", pr.round, ps->round,
			    ps->round && memcmp(pr.id, ps->id, sizeof(pr.id)) ? " of another pre-copy" : "");
		goto out;
	}
	/* from here on a failure leaves the store half-way */
	r = ckpt_pcs_layout(&ps->pcs, pr.r, pr.n);
	if (r >= 0)
		r = read_round_body(ps, rd, &pr);
	if (r < 0) {
		ps->failed = pr.round;
		goto out;
	}
	memcpy(ps->id, pr.id, sizeof(ps->id));
	ps->round = pr.round;
out:
	ckpt_pc_ranges_free(&pr);
	sm_image_reader_free(rd);
	return r < 0 ? r : 0;
}
