/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The process image reader (ckpt_read_image), as sockmig restore runs it on
 * a file it did not write. The first byte picks the mode:
 *
 *   bit 0 clear: the rest is the image itself, read from memory (the
 *                container's checks: magic, header, hashes, truncation);
 *   bit 0 set:   random bytes almost never carry valid BLAKE2b links, so
 *                the rest is a list of sections (u8 type selector, u16
 *                length, payload) written through the real writer into a
 *                memfd and read back: every section decoder is reached with
 *                arbitrary payloads, in arbitrary orders and numbers. One
 *                selector makes a PAGES section of zero pages from a 12-byte
 *                header (u64 addr, u32 npages), which inputs of libFuzzer's
 *                default size could not hold otherwise.
 *   bit 1 set:   the image is of another kind (sockets): always refused.
 *
 * What the reader promises is checked, not only that it does not crash:
 * every page run handed out is page-aligned and inside one mapping, the
 * mappings are ordered and disjoint, and a decoded image encodes and decodes
 * again to the same values.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t types[] = {
	CKPT_SEC_INFO, CKPT_SEC_MM, CKPT_SEC_VMAS, CKPT_SEC_PAGES, CKPT_SEC_THREAD, 0x1008 /* fds: ckpt_fd.c */, CKPT_SEC_VDSO,
	0x10ff, /* unknown: refused, or skipped with SM_SECTION_MAY_SKIP */
};
#define SEL_ZERO_PAGES 8
#define N_SEL 9

static int check_pages(uint64_t addr, const uint8_t *bytes, size_t len, void *userdata)
{
	const struct ckpt_image *im = userdata;
	volatile uint8_t sink;
	size_t i;

	if (addr % CKPT_PAGE || len == 0 || len % CKPT_PAGE || len > CKPT_RUN_MAX_PAGES * CKPT_PAGE)
		abort();
	for (i = 0; i < im->n_vmas; i++)
		if (addr >= im->vmas[i].start && addr + len <= im->vmas[i].end)
			break;
	if (i == im->n_vmas)
		abort();
	sink = bytes[0];
	sink = bytes[len - 1];
	(void)sink;
	return 0;
}

static void check_invariants(const struct ckpt_image *im)
{
	uint64_t prev_end = 0;

	for (size_t i = 0; i < im->n_vmas; i++) {
		const struct ckpt_vma *v = &im->vmas[i];

		if (v->start % CKPT_PAGE || v->end % CKPT_PAGE || v->start >= v->end || v->start < prev_end)
			abort();
		if (v->path && (!v->path[0] || strlen(v->path) >= 4096))
			abort();
		prev_end = v->end;
	}
	if (im->mm.auxv_len > CKPT_AUXV_MAX || im->mm.auxv_len % 16)
		abort();
	if (im->thread.xstate_len > CKPT_XSTATE_MAX || im->thread.xstate_len < 576)
		abort();
	if (memchr(im->info.comm, 0, sizeof(im->info.comm)) == NULL || memchr(im->mm.exe, 0, sizeof(im->mm.exe)) == NULL)
		abort();
}

static int same_str(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* Encode what was decoded, decode it again: the same values come back. */
static void check_roundtrip(const struct ckpt_image *im)
{
	struct sm_image_writer *w;
	struct sm_image_reader *r;
	struct ckpt_image *im2;
	int fd;

	fd = memfd_create("fuzz-rt", MFD_CLOEXEC);
	if (fd < 0)
		return;
	if (sm_image_writer_new(fd, SM_IMAGE_KIND_PROCESS, &w) < 0) {
		close(fd);
		return;
	}
	if (ckpt_write_info(w, &im->info) < 0 || ckpt_write_mm(w, &im->mm) < 0 ||
	    ckpt_write_thread(w, &im->thread) < 0 || ckpt_write_vdso(w, im->vdso, im->vdso_len) < 0 ||
	    ckpt_write_vmas(w, im->vmas, im->n_vmas) < 0 || sm_image_writer_finish(w) < 0)
		abort();
	sm_image_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	im2 = calloc(1, sizeof(*im2));
	if (!im2 || sm_image_reader_new_fd(fd, &r) < 0)
		abort();
	if (ckpt_read_image(r, im2, NULL, NULL) < 0)
		abort();
	if (im2->info.pid != im->info.pid || strcmp(im2->info.comm, im->info.comm) ||
	    im2->info.xfeatures != im->info.xfeatures)
		abort();
	if (im2->mm.start_code != im->mm.start_code || im2->mm.env_end != im->mm.env_end ||
	    im2->mm.brk != im->mm.brk || im2->mm.auxv_len != im->mm.auxv_len ||
	    memcmp(im2->mm.auxv, im->mm.auxv, im->mm.auxv_len) || strcmp(im2->mm.exe, im->mm.exe))
		abort();
	if (im2->thread.tid != im->thread.tid || memcmp(im2->thread.regs, im->thread.regs, sizeof(im->thread.regs)) ||
	    im2->thread.sigmask != im->thread.sigmask || im2->thread.rseq_ptr != im->thread.rseq_ptr ||
	    im2->thread.xstate_len != im->thread.xstate_len ||
	    memcmp(im2->thread.xstate, im->thread.xstate, im->thread.xstate_len))
		abort();
	if (im2->vdso_len != im->vdso_len || (im->vdso_len && memcmp(im2->vdso, im->vdso, im->vdso_len)))
		abort();
	if (im2->n_vmas != im->n_vmas)
		abort();
	for (size_t i = 0; i < im->n_vmas; i++)
		if (im2->vmas[i].start != im->vmas[i].start || im2->vmas[i].end != im->vmas[i].end ||
		    im2->vmas[i].pgoff != im->vmas[i].pgoff || im2->vmas[i].ino != im->vmas[i].ino || im2->vmas[i].prot != im->vmas[i].prot ||
		    im2->vmas[i].flags != im->vmas[i].flags || !same_str(im2->vmas[i].path, im->vmas[i].path))
			abort();
	ckpt_image_free(im2);
	free(im2);
	sm_image_reader_free(r);
	close(fd);
}

static void read_and_check(struct sm_image_reader *r)
{
	/* ~30 KiB: on the heap, where ASan sees every overflow. */
	struct ckpt_image *im = calloc(1, sizeof(*im));

	if (!im)
		return;
	if (ckpt_read_image(r, im, check_pages, im) == 0) {
		check_invariants(im);
		check_roundtrip(im);
		ckpt_image_free(im);
	}
	free(im);
}

/* A PAGES section of npages zero pages from a 12-byte header in the input. */
static void write_zero_pages(struct sm_image_writer *w, const uint8_t *p, size_t len)
{
	uint8_t hdr[CKPT_PAGES_HDR] = { 0 };
	uint32_t npages;
	size_t total;
	uint8_t *buf;

	memcpy(hdr, p, len < 12 ? len : 12);
	npages = (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 | (uint32_t)hdr[10] << 16 | (uint32_t)hdr[11] << 24;
	/* Small runs get their pages; a wrong count keeps its (wrong) bytes. */
	total = CKPT_PAGES_HDR + (npages <= 16 ? npages * CKPT_PAGE : 0);
	buf = calloc(1, total);
	if (!buf)
		return;
	memcpy(buf, hdr, sizeof(hdr));
	sm_image_write_section(w, CKPT_SEC_PAGES, buf, total);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sm_image_writer *w;
	struct sm_image_reader *r;
	uint32_t kind;
	uint8_t mode;
	int fd;

	if (size < 1)
		return 0;
	mode = data[0];
	kind = mode & 2 ? SM_IMAGE_KIND_SOCKETS : SM_IMAGE_KIND_PROCESS;
	data++;
	size--;
	if (!(mode & 1)) {
		if (sm_image_reader_new_mem(data, size, &r) == 0) {
			read_and_check(r);
			sm_image_reader_free(r);
		}
		return 0;
	}
	fd = memfd_create("fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (sm_image_writer_new(fd, kind, &w) < 0) {
		close(fd);
		return 0;
	}
	while (size >= 3) {
		unsigned sel = (data[0] & 0x7f) % N_SEL; /* bit 7: SM_SECTION_MAY_SKIP */
		size_t len = (size_t)data[1] | (size_t)data[2] << 8;
		int wr;

		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		if (sel == SEL_ZERO_PAGES) {
			write_zero_pages(w, data, len);
			wr = 0;
		} else {
			wr = sm_image_write_section_flags(w, types[sel], data[-3] & 0x80 ? SM_SECTION_MAY_SKIP : 0,
							  data, len);
		}
		if (wr < 0)
			break;
		data += len;
		size -= len;
	}
	sm_image_writer_finish(w);
	sm_image_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	if (sm_image_reader_new_fd(fd, &r) == 0) {
		read_and_check(r);
		sm_image_reader_free(r);
	}
	close(fd);
	return 0;
}
