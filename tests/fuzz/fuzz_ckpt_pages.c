/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The pre-copy store's reader (sockmig_precopy_store_read), as D runs it on
 * rounds a peer sends. The first byte picks the mode:
 *
 *   bit 0 clear: the rest is one pages image, read from a memfd (the
 *                container's checks, the kind, the ROUND header);
 *   bit 0 set:   random bytes almost never carry valid BLAKE2b links, so
 *                the rest is a script of records written through the real
 *                writer, several images in a row into one store, so that
 *                the layout from one round to the next (kept, grown,
 *                joined, shrunk, new, forgotten ranges) is reached:
 *
 *     0 ROUND   u8 id, u8 round delta, u8 n, n x (u8 gap, u8 pages-1, u8 flags):
 *               ranges one after the other from a fixed base
 *     1 raw     u8 type selector, u16 len, payload (any section, any bytes)
 *     2 PAGES   u16 page, u8 count (0..7), u8 fill
 *     3 DROP    u16 page, u16 count
 *     4 END     the image is finished and read into the store
 *
 * What the store promises is checked after every image, not only that it
 * does not crash: regions sorted and disjoint, each one mapped (its pages
 * are touched), the pages held counted right and under the bound, the
 * address space under its bound; a failed round leaves a store that
 * refuses everything after.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt_pc.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE 0x100000000ull
#define MAX_BYTES (256 * 4096ull)

static void check_store(const struct sockmig_precopy_store *ps)
{
	const struct ckpt_pcs *s = &ps->pcs;
	uint64_t held = 0, va = 0, prev_end = 0;
	volatile uint8_t sink;

	for (size_t i = 0; i < s->n; i++) {
		const struct ckpt_region *g = &s->r[i];
		uint64_t n = (g->end - g->start) / CKPT_PAGE, h = 0;

		if (g->start % CKPT_PAGE || g->end % CKPT_PAGE || g->start >= g->end || g->start < prev_end || !g->base ||
		    !g->bits)
			abort();
		for (uint64_t k = 0; k < n; k++) {
			if (g->bits[k / 64] >> (k % 64) & 1) {
				h++;
				sink = g->base[k * CKPT_PAGE];
				sink = g->base[k * CKPT_PAGE + CKPT_PAGE - 1];
			}
		}
		(void)sink;
		if (h != g->held)
			abort();
		held += h;
		va += g->end - g->start;
		prev_end = g->end;
	}
	if (held != s->held || held > s->max_held || va != s->va || va > s->max_va)
		abort();
}

static void read_into(struct sockmig_precopy_store *ps, int fd)
{
	uint32_t failed = ps->failed;
	int r;

	lseek(fd, 0, SEEK_SET);
	r = sockmig_precopy_store_read(ps, fd);
	if (failed && r == 0)
		abort(); /* a store that failed must refuse everything */
	check_store(ps);
}

struct script {
	const uint8_t *p;
	size_t n;
};

static int take(struct script *s, size_t n, const uint8_t **ret)
{
	if (s->n < n)
		return 0;
	*ret = s->p;
	s->p += n;
	s->n -= n;
	return 1;
}

static void write_round(struct sm_image_writer *w, struct script *s, uint32_t last)
{
	static const uint8_t ids[2][CKPT_PC_ID_LEN] = { { 1 }, { 2 } };
	struct ckpt_pc_range r[16];
	struct ckpt_pc_ranges pr = { .r = r };
	const uint8_t *h, *e;
	uint64_t at = BASE;

	if (!take(s, 3, &h))
		return;
	memcpy(pr.id, ids[h[0] & 1], sizeof(pr.id));
	pr.round = last + h[1] % 3; /* again, next (the only good one), one skipped */
	for (unsigned i = 0; i < h[2] % 17 && take(s, 3, &e); i++) {
		at += (uint64_t)e[0] * CKPT_PAGE;
		r[pr.n++] = (struct ckpt_pc_range){ at, at + ((uint64_t)e[1] + 1) * CKPT_PAGE, e[2] };
		at = r[pr.n - 1].end;
	}
	ckpt_write_ranges(w, CKPT_SEC_ROUND, &pr);
}

static void write_pages(struct sm_image_writer *w, struct script *s)
{
	uint8_t buf[CKPT_PAGES_HDR + 7 * CKPT_PAGE];
	const uint8_t *h;
	uint64_t addr;
	unsigned count;

	if (!take(s, 4, &h))
		return;
	addr = BASE + ((uint64_t)h[0] | (uint64_t)h[1] << 8) * CKPT_PAGE;
	count = h[2] % 8;
	memset(buf, 0, CKPT_PAGES_HDR);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(addr >> (8 * i));
	buf[8] = (uint8_t)count;
	memset(buf + CKPT_PAGES_HDR, h[3], count * CKPT_PAGE);
	sm_image_write_section(w, CKPT_SEC_PAGES, buf, CKPT_PAGES_HDR + count * CKPT_PAGE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { CKPT_SEC_ROUND, CKPT_SEC_PAGES, CKPT_SEC_DROP, CKPT_SEC_PRECOPY, 0x10f0 };
	struct sockmig_precopy_store *ps;
	struct sm_image_writer *w = NULL;
	struct script s = { data + 1, size ? size - 1 : 0 };
	int fd;

	if (size < 1 || sockmig_precopy_store_new(MAX_BYTES, &ps) < 0)
		return 0;
	fd = memfd_create("fuzz-pages", MFD_CLOEXEC);
	if (fd < 0)
		goto out;
	if (!(data[0] & 1)) {
		if (write(fd, s.p, s.n) == (ssize_t)s.n)
			read_into(ps, fd);
		goto out;
	}
	for (int images = 0; images < 16; images++) {
		const uint8_t *op, *h;

		if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
		    sm_image_writer_new(fd, CKPT_IMAGE_KIND_PAGES, &w) < 0)
			break;
		while (take(&s, 1, &op) && *op % 5 != 4) {
			switch (*op % 5) {
			case 0:
				write_round(w, &s, ps->round);
				break;
			case 1:
				if (take(&s, 3, &h)) {
					size_t len = (size_t)h[1] | (size_t)h[2] << 8;
					const uint8_t *p;

					if (len > s.n)
						len = s.n;
					take(&s, len, &p);
					sm_image_write_section_flags(w, types[h[0] % 5], h[0] & 0x80 ? SM_SECTION_MAY_SKIP : 0, p,
								     len);
				}
				break;
			case 2:
				write_pages(w, &s);
				break;
			case 3:
				if (take(&s, 4, &h))
					ckpt_write_drop(w, BASE + ((uint64_t)h[0] | (uint64_t)h[1] << 8) * CKPT_PAGE,
							(uint64_t)h[2] | (uint64_t)h[3] << 8);
				break;
			}
		}
		sm_image_writer_finish(w);
		sm_image_writer_free(w);
		w = NULL;
		read_into(ps, fd);
		if (!s.n)
			break;
	}
out:
	if (fd >= 0)
		close(fd);
	sockmig_precopy_store_free(ps);
	return 0;
}
