/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image container. The layout is docs/image-format.md; keep the two in step.
 *
 * Integrity rests on one hash chain: the header checksum starts it and every
 * section's checksum covers the previous link, the section header and the
 * payload. A section is handed out only after its own link verified, so a
 * consumer never acts on a byte that was damaged, moved, dropped or repeated;
 * the trailer is the last link, so a stream cut at a section boundary is
 * caught as well.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include <sodium.h>

#include "image.h"
#include "util.h"

#define IMG_MAGIC "SOCKMIG\0"
#define IMG_HDR_LEN 40
#define IMG_HDR_SUMMED 24 /* bytes 0..23 are covered by the header checksum */
#define SEC_HDR_LEN 16
#define SEC_HCHECK_COVERS 12
#define SUM_LEN 16 /* BLAKE2b-128 */
#define TRAILER_LEN 16
#define SEC_TYPE_TRAILER 0x0000

/* Flag bits 0..15 of the header and 8..15 of a section must be understood:
 * a newer minor version sets one only for a change an older reader would
 * misread. The other bits may be ignored. */
#define IMG_FLAGS_REQUIRED 0x0000ffffu
#define SEC_FLAGS_REQUIRED 0xff00u
#define SEC_FLAGS_KNOWN SM_SECTION_MAY_SKIP

/* ---- little-endian helpers ---- */

static void le16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void le32_put(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le64_put(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t le16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32_get(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64_get(const uint8_t *p)
{
	return (uint64_t)le32_get(p) | (uint64_t)le32_get(p + 4) << 32;
}

/* ---- sm_buf ---- */

void sm_buf_init(struct sm_buf *b)
{
	*b = (struct sm_buf){ 0 };
}

void sm_buf_free(struct sm_buf *b)
{
	if (!b)
		return;
	free(b->data);
	sm_buf_init(b);
}

/* Room for n more bytes; NULL (and the sticky error) if there is none. */
static uint8_t *buf_reserve(struct sm_buf *b, size_t n)
{
	size_t need, cap;
	uint8_t *p;

	if (b->err)
		return NULL;
	if (n > SIZE_MAX - b->len) {
		b->err = -ENOMEM;
		return NULL;
	}
	need = b->len + n;
	if (need > b->cap) {
		cap = b->cap ? b->cap : 64;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		p = realloc(b->data, cap);
		if (!p) {
			b->err = -ENOMEM;
			return NULL;
		}
		b->data = p;
		b->cap = cap;
	}
	p = b->data + b->len;
	b->len = need;
	return p;
}

void sm_buf_put_u8(struct sm_buf *b, uint8_t v)
{
	uint8_t *p = buf_reserve(b, 1);

	if (p)
		*p = v;
}

void sm_buf_put_u16(struct sm_buf *b, uint16_t v)
{
	uint8_t *p = buf_reserve(b, 2);

	if (p)
		le16_put(p, v);
}

void sm_buf_put_u32(struct sm_buf *b, uint32_t v)
{
	uint8_t *p = buf_reserve(b, 4);

	if (p)
		le32_put(p, v);
}

void sm_buf_put_u64(struct sm_buf *b, uint64_t v)
{
	uint8_t *p = buf_reserve(b, 8);

	if (p)
		le64_put(p, v);
}

void sm_buf_put_bytes(struct sm_buf *b, const void *src, size_t n)
{
	uint8_t *p = buf_reserve(b, n);

	if (p && n)
		memcpy(p, src, n);
}

void sm_buf_put_blob(struct sm_buf *b, const void *src, size_t n)
{
	if (n > UINT32_MAX) {
		if (!b->err)
			b->err = -E2BIG;
		return;
	}
	sm_buf_put_u32(b, (uint32_t)n);
	sm_buf_put_bytes(b, src, n);
}

/* ---- sm_cursor ---- */

void sm_cursor_init(struct sm_cursor *c, const void *p, size_t len, uint64_t image_off)
{
	*c = (struct sm_cursor){ .p = p, .len = len, .image_off = image_off };
}

size_t sm_cur_remaining(const struct sm_cursor *c)
{
	return c->err ? 0 : c->len - c->off;
}

/* On failure the cursor stays where the field that did not fit starts, so the
 * sentence points at it. */
const uint8_t *sm_cur_bytes(struct sm_cursor *c, size_t n)
{
	const uint8_t *p;

	if (c->err)
		return NULL;
	if (n > c->len - c->off) {
		c->err = -EBADMSG;
		return NULL;
	}
	p = c->p + c->off;
	c->off += n;
	return p;
}

uint8_t sm_cur_u8(struct sm_cursor *c)
{
	const uint8_t *p = sm_cur_bytes(c, 1);

	return p ? p[0] : 0;
}

uint16_t sm_cur_u16(struct sm_cursor *c)
{
	const uint8_t *p = sm_cur_bytes(c, 2);

	return p ? le16_get(p) : 0;
}

uint32_t sm_cur_u32(struct sm_cursor *c)
{
	const uint8_t *p = sm_cur_bytes(c, 4);

	return p ? le32_get(p) : 0;
}

uint64_t sm_cur_u64(struct sm_cursor *c)
{
	const uint8_t *p = sm_cur_bytes(c, 8);

	return p ? le64_get(p) : 0;
}

const uint8_t *sm_cur_blob(struct sm_cursor *c, size_t *ret_len)
{
	size_t start = c->off;
	uint32_t n = sm_cur_u32(c);
	const uint8_t *p;

	if (c->err)
		return NULL;
	p = sm_cur_bytes(c, n);
	if (!p) {
		c->off = start;
		return NULL;
	}
	*ret_len = n;
	return p;
}

int sm_cur_check(struct sm_cursor *c, const char *what, int require_end)
{
	unsigned long long at = (unsigned long long)(c->image_off + c->off);

	if (c->err) {
		if (c->recorded)
			return c->err;
		c->recorded = 1;
		return sm_fail(c->err, "%s at image byte %llu: field runs past the end of the section (%zu bytes left)",
			       what, at, c->len - c->off);
	}
	if (require_end && c->off != c->len) {
		c->err = -EBADMSG;
		c->recorded = 1;
		return sm_fail(-EBADMSG, "%s at image byte %llu: %zu unexpected bytes after the last field", what,
			       at, c->len - c->off);
	}
	return 0;
}

int sm_cur_fail(struct sm_cursor *c, const char *what, const char *fmt, ...)
{
	char cause[384];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cause, sizeof(cause), fmt, ap);
	va_end(ap);
	c->err = -EBADMSG;
	c->recorded = 1;
	return sm_fail(-EBADMSG, "%s at image byte %llu: %s", what, (unsigned long long)(c->image_off + c->off),
		       cause);
}

/* ---- hashing ---- */

static int sodium_ready(void)
{
	/* Idempotent and thread-safe; -1 only if the library cannot work at all. */
	if (sodium_init() < 0)
		return sm_fail(-EIO, "libsodium failed to initialise, images cannot be checked");
	return 0;
}

static void header_sum(const uint8_t *hdr, uint8_t out[SUM_LEN])
{
	crypto_generichash(out, SUM_LEN, hdr, IMG_HDR_SUMMED, NULL, 0);
}

static uint32_t section_hcheck(const uint8_t *sec_hdr)
{
	uint8_t sum[SUM_LEN];

	crypto_generichash(sum, SUM_LEN, sec_hdr, SEC_HCHECK_COVERS, NULL, 0);
	return le32_get(sum);
}

static void section_sum(const uint8_t prev[SUM_LEN], const uint8_t *sec_hdr, const void *payload, size_t len,
			uint8_t out[SUM_LEN])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, SUM_LEN);
	crypto_generichash_update(&st, prev, SUM_LEN);
	crypto_generichash_update(&st, sec_hdr, SEC_HDR_LEN);
	if (len)
		crypto_generichash_update(&st, payload, len);
	crypto_generichash_final(&st, out, SUM_LEN);
}

static void section_header(uint8_t *h, uint16_t type, uint16_t flags, uint32_t seq, uint32_t len)
{
	le16_put(h, type);
	le16_put(h + 2, flags);
	le32_put(h + 4, seq);
	le32_put(h + 8, len);
	le32_put(h + 12, section_hcheck(h));
}

/* ---- writer ---- */

struct sm_image_writer {
	int fd;
	int err; /* sticky: the stream is unusable after a failed write */
	int finished;
	uint32_t seq;
	uint64_t off;
	uint8_t chain[SUM_LEN];
};

static int writev_full(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		ssize_t done = writev(fd, iov, n);

		if (done < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		while (n > 0 && (size_t)done >= iov->iov_len) {
			done -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= (size_t)done;
		}
	}
	return 0;
}

static int writer_emit(struct sm_image_writer *w, struct iovec *iov, int n, size_t total)
{
	int r = writev_full(w->fd, iov, n);

	if (r < 0) {
		w->err = r;
		errno = -r;
		return sm_fail(r, "cannot write image byte %llu to fd %d: %m", (unsigned long long)w->off, w->fd);
	}
	w->off += total;
	return 0;
}

int sm_image_writer_new(int fd, uint32_t kind, struct sm_image_writer **ret)
{
	struct sm_image_writer *w;
	uint8_t hdr[IMG_HDR_LEN] = { 0 };
	struct iovec iov;
	int r;

	r = sodium_ready();
	if (r < 0)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w)
		return sm_fail(-ENOMEM, "image writer: out of memory");
	w->fd = fd;

	memcpy(hdr, IMG_MAGIC, 8);
	le16_put(hdr + 8, SM_IMAGE_VERSION_MAJOR);
	le16_put(hdr + 10, SM_IMAGE_VERSION_MINOR);
	le32_put(hdr + 12, kind);
	le32_put(hdr + 16, 0); /* flags */
	le32_put(hdr + 20, 0); /* reserved */
	header_sum(hdr, hdr + IMG_HDR_SUMMED);
	memcpy(w->chain, hdr + IMG_HDR_SUMMED, SUM_LEN);

	iov = (struct iovec){ hdr, sizeof(hdr) };
	r = writer_emit(w, &iov, 1, sizeof(hdr));
	if (r < 0) {
		free(w);
		return r;
	}
	*ret = w;
	return 0;
}

static int writer_section(struct sm_image_writer *w, uint16_t type, uint16_t flags, const void *data, size_t len)
{
	uint8_t h[SEC_HDR_LEN], sum[SUM_LEN];
	struct iovec iov[3];

	section_header(h, type, flags, w->seq, (uint32_t)len);
	section_sum(w->chain, h, data, len, sum);
	iov[0] = (struct iovec){ h, sizeof(h) };
	iov[1] = (struct iovec){ (void *)data, len };
	iov[2] = (struct iovec){ sum, sizeof(sum) };
	if (writer_emit(w, iov, 3, SEC_HDR_LEN + len + SUM_LEN) < 0)
		return w->err;
	memcpy(w->chain, sum, SUM_LEN);
	w->seq++;
	return 0;
}

int sm_image_write_section_flags(struct sm_image_writer *w, uint16_t type, uint16_t flags, const void *data,
				 size_t len)
{
	if (w->err)
		return w->err;
	if (w->finished)
		return sm_fail(-EINVAL, "image section type 0x%04x: written after the image was finished", type);
	if (type == SEC_TYPE_TRAILER)
		return sm_fail(-EINVAL, "image section type 0x0000 is reserved for the trailer");
	if (flags & ~SEC_FLAGS_KNOWN)
		return sm_fail(-EINVAL, "image section type 0x%04x: unknown flags 0x%04x", type, flags);
	if (len > SM_IMAGE_MAX_SECTION)
		return sm_fail(-E2BIG, "image section type 0x%04x: %zu bytes is over the %u MiB section limit", type,
			       len, SM_IMAGE_MAX_SECTION >> 20);
	if (w->seq == UINT32_MAX)
		return sm_fail(-E2BIG, "image section type 0x%04x: too many sections", type);
	return writer_section(w, type, flags, data, len);
}

int sm_image_write_section(struct sm_image_writer *w, uint16_t type, const void *data, size_t len)
{
	return sm_image_write_section_flags(w, type, 0, data, len);
}

int sm_image_write_buf(struct sm_image_writer *w, uint16_t type, const struct sm_buf *b)
{
	if (b->err) {
		errno = -b->err;
		return sm_fail(b->err, "image section type 0x%04x: encoding failed: %m", type);
	}
	return sm_image_write_section(w, type, b->data, b->len);
}

int sm_image_writer_finish(struct sm_image_writer *w)
{
	uint8_t t[TRAILER_LEN];
	int r;

	if (w->err)
		return w->err;
	if (w->finished)
		return 0;
	le32_put(t, w->seq);
	le32_put(t + 4, 0);
	le64_put(t + 8, w->off);
	r = writer_section(w, SEC_TYPE_TRAILER, 0, t, sizeof(t));
	if (r < 0)
		return r;
	w->finished = 1;
	return 0;
}

void sm_image_writer_free(struct sm_image_writer *w)
{
	free(w);
}

/* ---- reader ---- */

struct sm_image_reader {
	int fd; /* -1 when reading from memory */
	const uint8_t *mem;
	size_t mem_len, mem_pos;

	int err; /* sticky */
	int done;
	uint32_t kind;
	uint32_t seq;    /* sequence number the next section must carry */
	uint64_t off;    /* image offset of the next section header */
	uint8_t chain[SUM_LEN];

	/* Bytes of the next section header that arrived with the previous read. */
	uint8_t hdr[SEC_HDR_LEN];
	size_t hdr_have;

	uint8_t *buf; /* payload + checksum (+ the start of the next header) */
	size_t cap;

	int have_last;
	uint16_t last_type, last_flags;
	uint32_t last_seq;
	uint64_t last_off;
};

/*
 * Read at least min and at most max bytes; fewer than min only at the end of
 * the stream. Taking what arrives beyond min saves a read per section, and
 * stopping at min means we never wait for bytes the writer has not produced:
 * a writer may well wait for us before it writes the next section.
 */
static ssize_t src_read(struct sm_image_reader *r, uint8_t *dst, size_t min, size_t max)
{
	size_t got = 0;

	if (r->fd < 0) {
		size_t n = r->mem_len - r->mem_pos;

		if (n > max)
			n = max;
		if (n)
			memcpy(dst, r->mem + r->mem_pos, n);
		r->mem_pos += n;
		return (ssize_t)n;
	}
	while (got < min) {
		ssize_t n = read(r->fd, dst + got, max - got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int reader_fail_read(struct sm_image_reader *r, int err, uint64_t at)
{
	errno = -err;
	return sm_fail(err, "cannot read image byte %llu from fd %d: %m", (unsigned long long)at, r->fd);
}

static int reader_header(struct sm_image_reader *r)
{
	uint8_t hdr[IMG_HDR_LEN + SEC_HDR_LEN], sum[SUM_LEN];
	uint16_t major, minor;
	uint32_t flags;
	ssize_t n;
	size_t cmp;

	n = src_read(r, hdr, IMG_HDR_LEN, sizeof(hdr));
	if (n < 0)
		return reader_fail_read(r, (int)n, 0);
	cmp = (size_t)n < 8 ? (size_t)n : 8;
	if (memcmp(hdr, IMG_MAGIC, cmp) != 0)
		return sm_fail(-EBADMSG, "image byte 0: not a sockmig image (bad magic)");
	if ((size_t)n < IMG_HDR_LEN)
		return sm_fail(-EBADMSG, "image byte %zd: truncated: %zu bytes missing from the image header", n,
			       IMG_HDR_LEN - (size_t)n);
	/* The 40-byte header keeps its layout in every major version, so the
	 * checksum is verified first: a damaged version field is then reported
	 * as damage, and a valid newer one as a newer version. */
	header_sum(hdr, sum);
	if (sodium_memcmp(sum, hdr + IMG_HDR_SUMMED, SUM_LEN) != 0)
		return sm_fail(-EBADMSG, "image byte %d: image header checksum mismatch", IMG_HDR_SUMMED);
	major = le16_get(hdr + 8);
	minor = le16_get(hdr + 10);
	if (major == 0)
		return sm_fail(-EBADMSG, "image byte 8: invalid format version 0.%u", minor);
	if (major > SM_IMAGE_VERSION_MAJOR)
		return sm_fail(-EPROTONOSUPPORT, "image byte 8: image is format version %u.%u, this sockmig reads up to %u.x",
			       major, minor, SM_IMAGE_VERSION_MAJOR);
	flags = le32_get(hdr + 16);
	if (flags & IMG_FLAGS_REQUIRED)
		return sm_fail(-EPROTONOSUPPORT,
			       "image byte 16: image header has flags 0x%08x this sockmig does not know (format version %u.%u)",
			       flags, major, minor);
	r->kind = le32_get(hdr + 12);
	memcpy(r->chain, hdr + IMG_HDR_SUMMED, SUM_LEN);
	r->off = IMG_HDR_LEN;
	r->hdr_have = (size_t)n - IMG_HDR_LEN;
	memcpy(r->hdr, hdr + IMG_HDR_LEN, r->hdr_have);
	return 0;
}

static int reader_new(int fd, const void *p, size_t len, struct sm_image_reader **ret)
{
	struct sm_image_reader *r;
	int err;

	err = sodium_ready();
	if (err < 0)
		return err;
	r = calloc(1, sizeof(*r));
	if (!r)
		return sm_fail(-ENOMEM, "image reader: out of memory");
	r->fd = fd;
	r->mem = p;
	r->mem_len = len;
	err = reader_header(r);
	if (err < 0) {
		free(r);
		return err;
	}
	*ret = r;
	return 0;
}

int sm_image_reader_new_fd(int fd, struct sm_image_reader **ret)
{
	if (fd < 0)
		return sm_fail(-EBADF, "image reader: invalid fd %d", fd);
	return reader_new(fd, NULL, 0, ret);
}

int sm_image_reader_new_mem(const void *p, size_t len, struct sm_image_reader **ret)
{
	return reader_new(-1, p, len, ret);
}

uint32_t sm_image_reader_kind(const struct sm_image_reader *r)
{
	return r->kind;
}

static int reader_trailer(struct sm_image_reader *r, uint64_t sec_off, const uint8_t *t)
{
	uint32_t count = le32_get(t);
	uint64_t len = le64_get(t + 8);

	/* Both are implied by the chain; checked anyway so that a writer bug
	 * gets a sentence of its own. */
	if (count != r->seq)
		return sm_fail(-EBADMSG, "image byte %llu: trailer counts %u sections, the stream had %u",
			       (unsigned long long)sec_off, count, r->seq);
	if (len != sec_off)
		return sm_fail(-EBADMSG, "image byte %llu: trailer says it starts at byte %llu",
			       (unsigned long long)sec_off, (unsigned long long)len);
	if (r->fd < 0 && r->mem_pos < r->mem_len)
		return sm_fail(-EBADMSG, "image byte %llu: %zu unexpected bytes after the trailer",
			       (unsigned long long)(sec_off + SEC_HDR_LEN + TRAILER_LEN + SUM_LEN),
			       r->mem_len - r->mem_pos);
	return 0;
}

static int reader_section(struct sm_image_reader *r, uint16_t *ret_type, const uint8_t **ret_data,
			  size_t *ret_len, uint64_t *ret_offset)
{
	uint64_t sec_off = r->off;
	uint8_t h[SEC_HDR_LEN], sum[SUM_LEN];
	uint16_t type, flags;
	uint32_t seq, len;
	size_t need, want;
	ssize_t n;

	if (r->hdr_have < SEC_HDR_LEN) {
		n = src_read(r, r->hdr + r->hdr_have, SEC_HDR_LEN - r->hdr_have, SEC_HDR_LEN - r->hdr_have);
		if (n < 0)
			return reader_fail_read(r, (int)n, sec_off + r->hdr_have);
		r->hdr_have += (size_t)n;
		if (r->hdr_have == 0)
			return sm_fail(-EBADMSG, "image byte %llu: truncated: the stream ends after %u sections, without a trailer",
				       (unsigned long long)sec_off, r->seq);
		if (r->hdr_have < SEC_HDR_LEN)
			return sm_fail(-EBADMSG, "image byte %llu: truncated: %zu bytes missing from section %u header",
				       (unsigned long long)(sec_off + r->hdr_have), SEC_HDR_LEN - r->hdr_have, r->seq);
	}
	memcpy(h, r->hdr, SEC_HDR_LEN);
	r->hdr_have = 0;

	/* The length must be trusted before it sizes an allocation or a read:
	 * the header carries a check of its own. */
	if (le32_get(h + 12) != section_hcheck(h))
		return sm_fail(-EBADMSG, "image byte %llu: section %u header checksum mismatch",
			       (unsigned long long)sec_off, r->seq);
	type = le16_get(h);
	flags = le16_get(h + 2);
	seq = le32_get(h + 4);
	len = le32_get(h + 8);
	if (seq != r->seq)
		return sm_fail(-EBADMSG,
			       "image byte %llu: section %u carries sequence number %u (a section was dropped, repeated or moved)",
			       (unsigned long long)sec_off, r->seq, seq);
	if (len > SM_IMAGE_MAX_SECTION)
		return sm_fail(-E2BIG, "image byte %llu: section %u (type 0x%04x) is %u bytes, over the %u MiB section limit",
			       (unsigned long long)sec_off, seq, type, len, SM_IMAGE_MAX_SECTION >> 20);
	if (flags & SEC_FLAGS_REQUIRED & ~SEC_FLAGS_KNOWN)
		return sm_fail(-EPROTONOSUPPORT,
			       "image byte %llu: section %u (type 0x%04x) has flags 0x%04x this sockmig does not know",
			       (unsigned long long)sec_off, seq, type, flags);
	if (type == SEC_TYPE_TRAILER && len != TRAILER_LEN)
		return sm_fail(-EBADMSG, "image byte %llu: trailer is %u bytes long, expected %d",
			       (unsigned long long)sec_off, len, TRAILER_LEN);

	need = (size_t)len + SUM_LEN;
	/* Nothing follows the trailer that is ours to read. */
	want = need + (type == SEC_TYPE_TRAILER ? 0 : SEC_HDR_LEN);
	if (want > r->cap) {
		uint8_t *p = realloc(r->buf, want);

		if (!p)
			return sm_fail(-ENOMEM, "image byte %llu: no memory for section %u (%u bytes)",
				       (unsigned long long)sec_off, seq, len);
		r->buf = p;
		r->cap = want;
	}
	n = src_read(r, r->buf, need, want);
	if (n < 0)
		return reader_fail_read(r, (int)n, sec_off + SEC_HDR_LEN);
	if ((size_t)n < need)
		return sm_fail(-EBADMSG, "image byte %llu: truncated: %zu bytes missing from section %u (type 0x%04x)",
			       (unsigned long long)(sec_off + SEC_HDR_LEN + (size_t)n), need - (size_t)n, seq, type);

	section_sum(r->chain, h, r->buf, len, sum);
	if (sodium_memcmp(sum, r->buf + len, SUM_LEN) != 0)
		return sm_fail(-EBADMSG, "image byte %llu: section %u (type 0x%04x) checksum mismatch",
			       (unsigned long long)sec_off, seq, type);
	memcpy(r->chain, sum, SUM_LEN);
	r->hdr_have = (size_t)n - need;
	memcpy(r->hdr, r->buf + need, r->hdr_have);
	r->off = sec_off + SEC_HDR_LEN + len + SUM_LEN;

	if (type == SEC_TYPE_TRAILER) {
		int err = reader_trailer(r, sec_off, r->buf);

		if (err < 0)
			return err;
		r->done = 1;
		return 0;
	}
	r->seq++;
	r->have_last = 1;
	r->last_type = type;
	r->last_flags = flags;
	r->last_seq = seq;
	r->last_off = sec_off;
	*ret_type = type;
	*ret_data = r->buf;
	*ret_len = len;
	*ret_offset = sec_off + SEC_HDR_LEN;
	return 1;
}

int sm_image_next_section(struct sm_image_reader *r, uint16_t *ret_type, const uint8_t **ret_data,
			  size_t *ret_len, uint64_t *ret_offset)
{
	int err;

	if (r->err)
		return r->err;
	if (r->done)
		return 0;
	r->have_last = 0;
	err = reader_section(r, ret_type, ret_data, ret_len, ret_offset);
	if (err < 0)
		r->err = err;
	return err;
}

int sm_image_unknown_section(struct sm_image_reader *r)
{
	if (!r->have_last)
		return sm_fail(-EINVAL, "image: no section to skip");
	if (r->last_flags & SM_SECTION_MAY_SKIP) {
		sm_debug("image byte %llu: skipping section %u of unknown type 0x%04x",
			 (unsigned long long)r->last_off, r->last_seq, r->last_type);
		return 0;
	}
	return sm_fail(-EPROTONOSUPPORT,
		       "image byte %llu: section %u has type 0x%04x, which this sockmig does not know and may not skip",
		       (unsigned long long)r->last_off, r->last_seq, r->last_type);
}

void sm_image_reader_free(struct sm_image_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r);
}
