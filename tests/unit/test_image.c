/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image container: round trips through memory, a file and pipes, an encoder
 * written here from docs/image-format.md alone (so the document and the code
 * cannot drift apart), and damage of every kind the reader must catch.
 *
 * With SOCKMIG_IMAGE_SEEDS=<dir> it also writes the fuzzer's seed images.
 */
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <cmocka.h>
#include <sodium.h>

#include "image.h"
#include "util.h"

/* ---- an independent encoder, from the document ---- */

static void put16(uint8_t *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i); }

struct ref {
	uint8_t *p;
	size_t len;
	uint8_t chain[16];
	uint32_t seq;
};

static void ref_header(struct ref *r, uint16_t major, uint16_t minor, uint32_t kind, uint32_t flags)
{
	r->p = calloc(1, 40);
	assert_non_null(r->p);
	memcpy(r->p, "SOCKMIG\0", 8);
	put16(r->p + 8, major);
	put16(r->p + 10, minor);
	put32(r->p + 12, kind);
	put32(r->p + 16, flags);
	crypto_generichash(r->p + 24, 16, r->p, 24, NULL, 0);
	memcpy(r->chain, r->p + 24, 16);
	r->len = 40;
	r->seq = 0;
}

/* seq is the one written, which a test may want wrong. */
static void ref_section_seq(struct ref *r, uint16_t type, uint16_t flags, uint32_t seq, const void *data,
			    uint32_t len)
{
	uint8_t *s, hsum[16];
	crypto_generichash_state st;

	r->p = realloc(r->p, r->len + 32 + len);
	assert_non_null(r->p);
	s = r->p + r->len;
	put16(s, type);
	put16(s + 2, flags);
	put32(s + 4, seq);
	put32(s + 8, len);
	crypto_generichash(hsum, 16, s, 12, NULL, 0);
	memcpy(s + 12, hsum, 4);
	if (len)
		memcpy(s + 16, data, len);
	crypto_generichash_init(&st, NULL, 0, 16);
	crypto_generichash_update(&st, r->chain, 16);
	crypto_generichash_update(&st, s, 16 + (size_t)len);
	crypto_generichash_final(&st, s + 16 + len, 16);
	memcpy(r->chain, s + 16 + len, 16);
	r->len += 32 + (size_t)len;
	r->seq++;
}

static void ref_section(struct ref *r, uint16_t type, uint16_t flags, const void *data, uint32_t len)
{
	ref_section_seq(r, type, flags, r->seq, data, len);
}

static void ref_trailer(struct ref *r)
{
	uint8_t t[16] = { 0 };

	put32(t, r->seq);
	put64(t + 8, r->len);
	ref_section(r, 0x0000, 0, t, 16);
}

/* ---- helpers ---- */

/* Writes the sample image (three sections, one empty) to fd. */
static void write_sample(int fd)
{
	struct sm_image_writer *w;
	struct sm_buf b;

	assert_int_equal(sm_image_writer_new(fd, SM_IMAGE_KIND_SOCKETS, &w), 0);
	sm_buf_init(&b);
	sm_buf_put_u32(&b, 0xdeadbeef);
	sm_buf_put_blob(&b, "flow", 4);
	assert_int_equal(sm_image_write_buf(w, 0x0101, &b), 0);
	assert_int_equal(sm_image_write_section(w, 0x0201, NULL, 0), 0);
	assert_int_equal(sm_image_write_section_flags(w, 0x0301, SM_SECTION_MAY_SKIP, "captured", 8), 0);
	assert_int_equal(sm_image_writer_finish(w), 0);
	sm_image_writer_free(w);
	sm_buf_free(&b);
}

static uint8_t *fd_contents(int fd, size_t *ret_len)
{
	off_t len = lseek(fd, 0, SEEK_END);
	uint8_t *p = malloc((size_t)len + 1);

	assert_non_null(p);
	assert_int_equal(pread(fd, p, (size_t)len, 0), len);
	*ret_len = (size_t)len;
	return p;
}

static uint8_t *sample_image(size_t *ret_len)
{
	int fd = memfd_create("image", MFD_CLOEXEC);
	uint8_t *p;

	assert_true(fd >= 0);
	write_sample(fd);
	p = fd_contents(fd, ret_len);
	close(fd);
	return p;
}

struct seen {
	int n;
	uint16_t type[8];
	size_t len[8];
	uint8_t data[8][64];
};

/* Reads a whole image; returns 0 or the first error; records what it got. */
static int read_image(struct sm_image_reader *r, struct seen *s)
{
	const uint8_t *d;
	uint16_t type;
	size_t len;
	uint64_t off;
	int ret;

	memset(s, 0, sizeof(*s));
	while ((ret = sm_image_next_section(r, &type, &d, &len, &off)) > 0) {
		if (s->n < 8) {
			s->type[s->n] = type;
			s->len[s->n] = len;
			memcpy(s->data[s->n], d, len < 64 ? len : 64);
		}
		s->n++;
	}
	return ret;
}

static int read_mem(const void *p, size_t len, struct seen *s)
{
	struct sm_image_reader *r;
	int ret;

	memset(s, 0, sizeof(*s));
	ret = sm_image_reader_new_mem(p, len, &r);
	if (ret < 0)
		return ret;
	ret = read_image(r, s);
	sm_image_reader_free(r);
	return ret;
}

static void assert_error_has(const char *needle)
{
	if (!strstr(sockmig_error(), needle))
		fail_msg("error \"%s\" lacks \"%s\"", sockmig_error(), needle);
}

/* ---- encoders and cursors ---- */

static void test_buf_little_endian(void **state)
{
	static const uint8_t want[] = { 0x01, 0x03, 0x02, 0x07, 0x06, 0x05, 0x04, 0x0f, 0x0e, 0x0d, 0x0c,
					0x0b, 0x0a, 0x09, 0x08, 0x02, 0x00, 0x00, 0x00, 'h', 'i', 'x' };
	struct sm_buf b;
	(void)state;

	sm_buf_init(&b);
	sm_buf_put_u8(&b, 0x01);
	sm_buf_put_u16(&b, 0x0203);
	sm_buf_put_u32(&b, 0x04050607);
	sm_buf_put_u64(&b, 0x08090a0b0c0d0e0full);
	sm_buf_put_blob(&b, "hi", 2);
	sm_buf_put_bytes(&b, "x", 1);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, sizeof(want));
	assert_memory_equal(b.data, want, sizeof(want));
	for (int i = 0; i < 10000; i++)
		sm_buf_put_u32(&b, (uint32_t)i);
	assert_int_equal(b.len, sizeof(want) + 40000);
	assert_int_equal(b.data[sizeof(want) + 4 * 9999], 9999 & 0xff);
	sm_buf_free(&b);
	assert_null(b.data);
	sm_buf_free(NULL);
}

static void test_cursor_bounds(void **state)
{
	static const uint8_t in[] = { 0x01, 0x03, 0x02, 0x07, 0x06, 0x05, 0x04, 0x05, 0x00, 0x00, 0x00, 'a', 'b' };
	struct sm_cursor c;
	size_t n = 99;
	(void)state;

	sm_cursor_init(&c, in, sizeof(in), 1000);
	assert_int_equal(sm_cur_u8(&c), 0x01);
	assert_int_equal(sm_cur_u16(&c), 0x0203);
	assert_int_equal(sm_cur_u32(&c), 0x04050607);
	assert_int_equal(sm_cur_remaining(&c), 6);
	/* the blob claims 5 bytes, 2 remain: refused, cursor left on its length */
	assert_null(sm_cur_blob(&c, &n));
	assert_int_equal(n, 99);
	assert_int_equal(c.err, -EBADMSG);
	/* sticky: even an in-bounds read now fails */
	assert_int_equal(sm_cur_u8(&c), 0);
	assert_int_equal(sm_cur_remaining(&c), 0);
	assert_int_equal(sm_cur_check(&c, "sockets section", 0), -EBADMSG);
	assert_string_equal(sockmig_error(),
			    "sockets section at image byte 1007: field runs past the end of the section (6 bytes left)");

	sm_cursor_init(&c, in, sizeof(in), 0);
	assert_int_equal(sm_cur_u64(&c), 0x0504050607020301ull);
	assert_null(sm_cur_bytes(&c, 6));
	assert_int_equal(sm_cur_check(&c, "x", 1), -EBADMSG);

	/* everything read but not consumed to the end */
	static const uint8_t in2[] = { 0x34, 0x12, 0x02, 0x00, 0x00, 0x00, 'a', 'b' };
	sm_cursor_init(&c, in2, sizeof(in2), 40);
	assert_int_equal(sm_cur_u16(&c), 0x1234);
	assert_memory_equal(sm_cur_blob(&c, &n), "ab", 2);
	assert_int_equal(n, 2);
	assert_int_equal(sm_cur_check(&c, "udp section", 1), 0);
	sm_cursor_init(&c, in, sizeof(in), 40);
	sm_cur_u32(&c);
	assert_int_equal(sm_cur_check(&c, "udp section", 0), 0);
	assert_int_equal(sm_cur_check(&c, "udp section", 1), -EBADMSG);
	assert_string_equal(sockmig_error(), "udp section at image byte 44: 9 unexpected bytes after the last field");

	/* a semantic failure keeps its own sentence through a later check */
	sm_cursor_init(&c, in, sizeof(in), 100);
	sm_cur_u8(&c);
	assert_int_equal(sm_cur_fail(&c, "tcp socket", "invalid state %d", 17), -EBADMSG);
	assert_int_equal(sm_cur_check(&c, "tcp socket", 1), -EBADMSG);
	assert_string_equal(sockmig_error(), "tcp socket at image byte 101: invalid state 17");

	/* zero-length input */
	sm_cursor_init(&c, NULL, 0, 0);
	assert_int_equal(sm_cur_u8(&c), 0);
	assert_int_equal(sm_cur_check(&c, "x", 0), -EBADMSG);
}

/* ---- round trips ---- */

static void test_format_matches_document(void **state)
{
	struct ref ref;
	uint8_t blob[12] = { 0xef, 0xbe, 0xad, 0xde, 4, 0, 0, 0, 'f', 'l', 'o', 'w' };
	uint8_t *img;
	size_t len;
	(void)state;

	ref_header(&ref, 1, 0, SM_IMAGE_KIND_SOCKETS, 0);
	ref_section(&ref, 0x0101, 0, blob, sizeof(blob));
	ref_section(&ref, 0x0201, 0, NULL, 0);
	ref_section(&ref, 0x0301, 0x0001, "captured", 8);
	ref_trailer(&ref);
	img = sample_image(&len);
	assert_int_equal(len, ref.len);
	assert_memory_equal(img, ref.p, len);
	free(img);
	free(ref.p);
}

static void test_roundtrip_mem(void **state)
{
	struct sm_image_reader *r;
	const uint8_t *d;
	struct seen s;
	uint16_t type;
	size_t len, ilen;
	uint64_t off;
	uint8_t *img = sample_image(&ilen);
	struct sm_cursor c;
	size_t blen;
	const uint8_t *blob;
	(void)state;

	assert_int_equal(sm_image_reader_new_mem(img, ilen, &r), 0);
	assert_int_equal(sm_image_reader_kind(r), SM_IMAGE_KIND_SOCKETS);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 1);
	assert_int_equal(type, 0x0101);
	assert_int_equal(off, 40 + 16);
	assert_memory_equal(img + off, d, len);
	sm_cursor_init(&c, d, len, off);
	assert_int_equal(sm_cur_u32(&c), 0xdeadbeef);
	blob = sm_cur_blob(&c, &blen);
	assert_non_null(blob);
	assert_int_equal(blen, 4);
	assert_memory_equal(blob, "flow", 4);
	assert_int_equal(sm_cur_check(&c, "test section", 1), 0);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 1);
	assert_int_equal(type, 0x0201);
	assert_int_equal(len, 0);
	assert_int_equal(sm_image_unknown_section(r), -EPROTONOSUPPORT);
	assert_string_equal(sockmig_error(),
			    "image byte 84: section 1 has type 0x0201, which this sockmig does not know and may not skip");
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 1);
	assert_int_equal(type, 0x0301);
	assert_memory_equal(d, "captured", 8);
	assert_int_equal(sm_image_unknown_section(r), 0);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 0);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 0);
	sm_image_reader_free(r);
	sm_image_reader_free(NULL);

	assert_int_equal(read_mem(img, ilen, &s), 0);
	assert_int_equal(s.n, 3);
	free(img);
}

static void pattern(uint8_t *p, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 131 + seed * 7) ^ (i >> 9));
}

#define BIG_LEN (3u << 20) /* several times a pipe's buffer */
#define SMALL_COUNT 1000

static void test_roundtrip_pipe(void **state)
{
	int pfd[2], status;
	pid_t pid;
	struct sm_image_reader *r;
	const uint8_t *d;
	uint16_t type;
	size_t len;
	uint64_t off;
	uint8_t *want = malloc(BIG_LEN);
	int n = 0;
	(void)state;

	assert_non_null(want);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm_image_writer *w;
		uint8_t small[64];

		close(pfd[0]);
		pattern(want, BIG_LEN, 1);
		if (sm_image_writer_new(pfd[1], SM_IMAGE_KIND_PROCESS, &w) < 0 ||
		    sm_image_write_section(w, 0x1001, want, BIG_LEN) < 0)
			_exit(1);
		for (uint32_t i = 0; i < SMALL_COUNT; i++) {
			pattern(small, i % 64, i);
			if (sm_image_write_section(w, 0x0100 | (i & 0xff), small, i % 64) < 0)
				_exit(1);
		}
		_exit(sm_image_writer_finish(w) < 0 ? 1 : 0);
	}
	close(pfd[1]);
	assert_int_equal(sm_image_reader_new_fd(pfd[0], &r), 0);
	assert_int_equal(sm_image_reader_kind(r), SM_IMAGE_KIND_PROCESS);
	pattern(want, BIG_LEN, 1);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 1);
	assert_int_equal(type, 0x1001);
	assert_int_equal(len, BIG_LEN);
	assert_memory_equal(d, want, BIG_LEN);
	for (;;) {
		int ret = sm_image_next_section(r, &type, &d, &len, &off);

		if (ret == 0)
			break;
		assert_int_equal(ret, 1);
		assert_int_equal(type, 0x0100 | (n & 0xff));
		assert_int_equal(len, (size_t)n % 64);
		pattern(want, len, (uint32_t)n);
		assert_memory_equal(d, want, len);
		n++;
	}
	assert_int_equal(n, SMALL_COUNT);
	sm_image_reader_free(r);
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	free(want);
}

/* The writer waits for the reader's answer to section 0 before it writes
 * anything else: a reader that waited for more than one section would
 * deadlock; the writer gives up after 5 s, which truncates the image. */
static void test_pipe_section_handed_out_at_once(void **state)
{
	int data[2], ack[2], status;
	pid_t pid;
	struct sm_image_reader *r;
	const uint8_t *d;
	uint16_t type;
	size_t len;
	uint64_t off;
	(void)state;

	assert_int_equal(pipe2(data, O_CLOEXEC), 0);
	assert_int_equal(pipe2(ack, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct sm_image_writer *w;
		struct pollfd p = { .fd = ack[0], .events = POLLIN };
		char c;

		close(data[0]);
		close(ack[1]);
		if (sm_image_writer_new(data[1], SM_IMAGE_KIND_SOCKETS, &w) < 0 ||
		    sm_image_write_section(w, 0x0101, "first", 5) < 0)
			_exit(1);
		if (poll(&p, 1, 5000) != 1 || read(ack[0], &c, 1) != 1)
			_exit(2);
		if (sm_image_write_section(w, 0x0102, "second", 6) < 0 || sm_image_writer_finish(w) < 0)
			_exit(1);
		_exit(0);
	}
	close(data[1]);
	close(ack[0]);
	assert_int_equal(sm_image_reader_new_fd(data[0], &r), 0);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 1);
	assert_memory_equal(d, "first", 5);
	assert_int_equal(write(ack[1], "k", 1), 1);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 1);
	assert_memory_equal(d, "second", 6);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 0);
	sm_image_reader_free(r);
	close(data[0]);
	close(ack[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* An image on a stream may be followed by other data: the reader must not
 * consume a byte of it. */
static void test_fd_reader_stops_at_trailer(void **state)
{
	int pfd[2];
	struct sm_image_reader *r;
	struct seen s;
	char rest[16] = { 0 };
	(void)state;

	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	write_sample(pfd[1]);
	assert_int_equal(write(pfd[1], "NEXT", 4), 4);
	close(pfd[1]);
	assert_int_equal(sm_image_reader_new_fd(pfd[0], &r), 0);
	assert_int_equal(read_image(r, &s), 0);
	assert_int_equal(s.n, 3);
	sm_image_reader_free(r);
	assert_int_equal(read(pfd[0], rest, sizeof(rest)), 4);
	assert_string_equal(rest, "NEXT");
	close(pfd[0]);
}

static void test_max_section(void **state)
{
	int fd = memfd_create("image", MFD_CLOEXEC);
	struct sm_image_writer *w;
	struct sm_image_reader *r;
	uint8_t *big = calloc(1, SM_IMAGE_MAX_SECTION + 1);
	const uint8_t *d;
	uint16_t type;
	size_t len;
	uint64_t off;
	(void)state;

	assert_true(fd >= 0);
	assert_non_null(big);
	big[SM_IMAGE_MAX_SECTION - 1] = 0x5a;
	assert_int_equal(sm_image_writer_new(fd, SM_IMAGE_KIND_PROCESS, &w), 0);
	assert_int_equal(sm_image_write_section(w, 0x1002, big, SM_IMAGE_MAX_SECTION + 1), -E2BIG);
	assert_string_equal(sockmig_error(), "image section type 0x1002: 67108865 bytes is over the 64 MiB section limit");
	assert_int_equal(sm_image_write_section(w, 0x1002, big, SM_IMAGE_MAX_SECTION), 0);
	assert_int_equal(sm_image_writer_finish(w), 0);
	sm_image_writer_free(w);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sm_image_reader_new_fd(fd, &r), 0);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 1);
	assert_int_equal(len, SM_IMAGE_MAX_SECTION);
	assert_int_equal(d[SM_IMAGE_MAX_SECTION - 1], 0x5a);
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), 0);
	sm_image_reader_free(r);
	close(fd);
	free(big);
}

/* ---- damage ---- */

/* Flip each bit of the image in turn: the reader must fail with -EBADMSG and
 * an offset, and must never hand out a section that differs from the original. */
static void test_every_bit_flip(void **state)
{
	size_t len;
	uint8_t *img = sample_image(&len);
	uint8_t *bad = malloc(len);
	struct seen good, s;
	(void)state;

	assert_int_equal(read_mem(img, len, &good), 0);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			int ret;

			memcpy(bad, img, len);
			bad[i] ^= (uint8_t)(1u << bit);
			sockmig_error_clear();
			ret = read_mem(bad, len, &s);
			if (ret != -EBADMSG)
				fail_msg("flip of byte %zu bit %d: got %d (%s)", i, bit, ret, sockmig_error());
			assert_error_has("image byte ");
			for (int k = 0; k < s.n; k++) {
				assert_int_equal(s.type[k], good.type[k]);
				assert_int_equal(s.len[k], good.len[k]);
				assert_memory_equal(s.data[k], good.data[k], s.len[k]);
			}
		}
	}
	free(bad);
	free(img);
}

static void test_every_truncation(void **state)
{
	size_t len;
	uint8_t *img = sample_image(&len);
	struct seen s;
	(void)state;

	for (size_t cut = 0; cut < len; cut++) {
		struct sm_image_reader *r;
		int fd, ret;

		sockmig_error_clear();
		ret = read_mem(img, cut, &s);
		if (ret != -EBADMSG)
			fail_msg("image cut at %zu: got %d (%s)", cut, ret, sockmig_error());
		assert_error_has("truncated");

		/* the same through an fd, which reads in different steps */
		fd = memfd_create("cut", MFD_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, img, cut), (ssize_t)cut);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		sockmig_error_clear();
		ret = sm_image_reader_new_fd(fd, &r);
		if (ret == 0) {
			ret = read_image(r, &s);
			sm_image_reader_free(r);
		}
		if (ret != -EBADMSG)
			fail_msg("image cut at %zu via fd: got %d (%s)", cut, ret, sockmig_error());
		assert_error_has("truncated");
		close(fd);
	}
	assert_int_equal(read_mem(img, 0, &s), -EBADMSG);
	assert_string_equal(sockmig_error(), "image byte 0: truncated: 40 bytes missing from the image header");
	assert_int_equal(read_mem(img, 60, &s), -EBADMSG);
	assert_string_equal(sockmig_error(), "image byte 60: truncated: 24 bytes missing from section 0 (type 0x0101)");
	free(img);
}

static void test_trailing_and_bad_magic(void **state)
{
	size_t len;
	uint8_t *img = sample_image(&len);
	uint8_t *more = calloc(1, len + 1);
	struct seen s;
	(void)state;

	memcpy(more, img, len);
	assert_int_equal(read_mem(more, len + 1, &s), -EBADMSG);
	assert_error_has("1 unexpected bytes after the trailer");
	assert_int_equal(read_mem("GIF89a\0\0", 8, &s), -EBADMSG);
	assert_string_equal(sockmig_error(), "image byte 0: not a sockmig image (bad magic)");
	assert_int_equal(read_mem("SOCK", 4, &s), -EBADMSG);
	assert_error_has("truncated");
	free(more);
	free(img);
}

/* Whole sections dropped, repeated or swapped, as a broken transport might. */
static void test_section_order(void **state)
{
	struct ref a;
	uint8_t *img;
	size_t l0 = 32 + 4, l1 = 32 + 5, l2 = 32 + 6, tail, len;
	size_t s0 = 40, s1 = s0 + l0, s2 = s1 + l1, st = s2 + l2;
	struct seen s;
	(void)state;

	ref_header(&a, 1, 0, 1, 0);
	ref_section(&a, 0x0101, 0, "zero", 4);
	ref_section(&a, 0x0102, 0, "first", 5);
	ref_section(&a, 0x0103, 0, "second", 6);
	ref_trailer(&a);
	tail = a.len - st;
	assert_int_equal(read_mem(a.p, a.len, &s), 0);
	img = malloc(a.len * 2);

	/* drop section 1 */
	len = 0;
	memcpy(img, a.p, s1), len = s1;
	memcpy(img + len, a.p + s2, l2 + tail), len += l2 + tail;
	assert_int_equal(read_mem(img, len, &s), -EBADMSG);
	assert_string_equal(sockmig_error(), "image byte 76: section 1 carries sequence number 2 (a section was dropped, repeated or moved)");
	assert_int_equal(s.n, 1);

	/* repeat section 1 */
	memcpy(img, a.p, s2), len = s2;
	memcpy(img + len, a.p + s1, l1), len += l1;
	memcpy(img + len, a.p + s2, l2 + tail), len += l2 + tail;
	assert_int_equal(read_mem(img, len, &s), -EBADMSG);
	assert_error_has("sequence number 1");
	assert_int_equal(s.n, 2);

	/* drop the last section and the trailer: a clean cut at a boundary */
	assert_int_equal(read_mem(a.p, s2, &s), -EBADMSG);
	assert_string_equal(sockmig_error(), "image byte 113: truncated: the stream ends after 2 sections, without a trailer");

	/* swapped and renumbered with valid header checks: only the chain sees it */
	free(a.p);
	ref_header(&a, 1, 0, 1, 0);
	ref_section(&a, 0x0101, 0, "zero", 4);
	ref_section(&a, 0x0102, 0, "first", 5);
	ref_section(&a, 0x0103, 0, "second", 6);
	ref_trailer(&a);
	{
		struct ref b;
		uint8_t *hsec;

		ref_header(&b, 1, 0, 1, 0);
		ref_section(&b, 0x0101, 0, "zero", 4);
		ref_section(&b, 0x0103, 0, "second", 6);
		ref_section(&b, 0x0102, 0, "first", 5);
		ref_trailer(&b);
		/* b is valid; give it a's checksums of the moved sections */
		hsec = b.p + s1;
		memcpy(hsec + 16 + 6, a.p + s2 + 16 + 6, 16);
		assert_int_equal(read_mem(b.p, b.len, &s), -EBADMSG);
		assert_string_equal(sockmig_error(), "image byte 76: section 1 (type 0x0103) checksum mismatch");
		free(b.p);
	}
	free(img);
	free(a.p);
}

static void test_versions(void **state)
{
	struct ref a;
	struct seen s;
	(void)state;

	ref_header(&a, 2, 0, 1, 0);
	ref_trailer(&a);
	assert_int_equal(read_mem(a.p, a.len, &s), -EPROTONOSUPPORT);
	assert_string_equal(sockmig_error(), "image byte 8: image is format version 2.0, this sockmig reads up to 1.x");
	free(a.p);

	/* a newer minor, with an optional header flag and a skippable
	 * section of a type nobody knows yet, is read */
	ref_header(&a, 1, 9, 1, 0x00010000);
	ref_section(&a, 0x7777, 0x0001, "new", 3);
	ref_section(&a, 0x0101, 0x0080, "old", 3); /* an optional section flag */
	ref_trailer(&a);
	assert_int_equal(read_mem(a.p, a.len, &s), 0);
	assert_int_equal(s.n, 2);
	free(a.p);

	/* but a required flag it does not know is refused */
	ref_header(&a, 1, 9, 1, 0x00000004);
	ref_trailer(&a);
	assert_int_equal(read_mem(a.p, a.len, &s), -EPROTONOSUPPORT);
	assert_string_equal(sockmig_error(),
			    "image byte 16: image header has flags 0x00000004 this sockmig does not know (format version 1.9)");
	free(a.p);
	ref_header(&a, 1, 9, 1, 0);
	ref_section(&a, 0x0101, 0x0100, "x", 1);
	ref_trailer(&a);
	assert_int_equal(read_mem(a.p, a.len, &s), -EPROTONOSUPPORT);
	assert_string_equal(sockmig_error(), "image byte 40: section 0 (type 0x0101) has flags 0x0100 this sockmig does not know");
	free(a.p);

	ref_header(&a, 0, 3, 1, 0);
	ref_trailer(&a);
	assert_int_equal(read_mem(a.p, a.len, &s), -EBADMSG);
	free(a.p);
}

/* A section header with a valid check that announces more than the limit is
 * refused before anything is allocated or read: the pipe holds nothing
 * after that header and is non-blocking, so any further read would fail
 * with EAGAIN instead. */
static void test_oversize_refused_before_allocating(void **state)
{
	struct ref a;
	struct sm_image_reader *r;
	const uint8_t *d;
	uint16_t type;
	size_t len;
	uint64_t off;
	int pfd[2];
	struct mallinfo2 before, after;
	(void)state;

	ref_header(&a, 1, 0, 2, 0);
	a.p = realloc(a.p, a.len + 16);
	put16(a.p + 40, 0x1001);
	put16(a.p + 42, 0);
	put32(a.p + 44, 0);
	put32(a.p + 48, SM_IMAGE_MAX_SECTION + 1);
	{
		uint8_t h[16];

		crypto_generichash(h, 16, a.p + 40, 12, NULL, 0);
		memcpy(a.p + 52, h, 4);
	}
	a.len += 16;

	assert_int_equal(pipe2(pfd, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(write(pfd[1], a.p, a.len), (ssize_t)a.len);
	assert_int_equal(sm_image_reader_new_fd(pfd[0], &r), 0);
	before = mallinfo2();
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), -E2BIG);
	after = mallinfo2();
	assert_string_equal(sockmig_error(),
			    "image byte 40: section 0 (type 0x1001) is 67108865 bytes, over the 64 MiB section limit");
	assert_true(after.hblkhd - before.hblkhd < (1u << 20));
	assert_true(after.uordblks - before.uordblks < (1u << 20));
	/* sticky */
	assert_int_equal(sm_image_next_section(r, &type, &d, &len, &off), -E2BIG);
	sm_image_reader_free(r);
	close(pfd[0]);
	close(pfd[1]);
	free(a.p);
}

static void test_writer_errors(void **state)
{
	int pfd[2];
	struct sm_image_writer *w;
	struct sm_buf b;
	int fd = memfd_create("image", MFD_CLOEXEC);
	(void)state;

	assert_int_equal(sm_image_writer_new(fd, 1, &w), 0);
	assert_int_equal(sm_image_write_section(w, 0x0000, "x", 1), -EINVAL);
	assert_int_equal(sm_image_write_section_flags(w, 0x0101, 0x8000, "x", 1), -EINVAL);
	sm_buf_init(&b);
	sm_buf_put_u8(&b, 1);
	b.err = -ENOMEM;
	assert_int_equal(sm_image_write_buf(w, 0x0101, &b), -ENOMEM);
	assert_string_equal(sockmig_error(), "image section type 0x0101: encoding failed: Cannot allocate memory");
	sm_buf_free(&b);
	assert_int_equal(sm_image_writer_finish(w), 0);
	assert_int_equal(sm_image_writer_finish(w), 0);
	assert_int_equal(sm_image_write_section(w, 0x0101, "x", 1), -EINVAL);
	sm_image_writer_free(w);
	close(fd);

	/* the reader went away */
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(sm_image_writer_new(pfd[1], 1, &w), 0);
	close(pfd[0]);
	assert_int_equal(sm_image_write_section(w, 0x0101, "x", 1), -EPIPE);
	assert_error_has("cannot write image byte 40 to fd ");
	assert_error_has("Broken pipe");
	assert_int_equal(sm_image_write_section(w, 0x0101, "x", 1), -EPIPE);
	assert_int_equal(sm_image_writer_finish(w), -EPIPE);
	sm_image_writer_free(w);
	close(pfd[1]);
	assert_int_equal(sm_image_reader_new_fd(-1, (struct sm_image_reader **)&w), -EBADF);
}

/* ---- fuzzer seeds ---- */

static void write_seed(const char *dir, const char *name, const void *p, size_t len)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || sm_write_full(fd, p, len) < 0) {
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
	close(fd);
}

static void write_seeds(const char *dir)
{
	struct ref a;
	struct sm_buf b;
	size_t len;
	uint8_t *img = sample_image(&len);

	write_seed(dir, "sample", img, len);
	free(img);

	ref_header(&a, 1, 0, SM_IMAGE_KIND_PROCESS, 0);
	ref_trailer(&a);
	write_seed(dir, "empty", a.p, a.len);
	free(a.p);

	ref_header(&a, 1, 3, SM_IMAGE_KIND_SOCKETS, 0x00020000);
	sm_buf_init(&b);
	for (int i = 0; i < 8; i++) {
		sm_buf_put_u8(&b, (uint8_t)i);
		sm_buf_put_u16(&b, (uint16_t)(0x100 * i));
		sm_buf_put_u64(&b, 0x1122334455667788ull >> i);
		sm_buf_put_blob(&b, "payload", (size_t)i);
	}
	ref_section(&a, 0x0101, 0, b.data, (uint32_t)b.len);
	ref_section(&a, 0x0202, 0x0001, b.data, 9);
	ref_section(&a, 0x1001, 0, NULL, 0);
	ref_trailer(&a);
	write_seed(dir, "fields", a.p, a.len);
	sm_buf_free(&b);
	free(a.p);
}

int main(void)
{
	const char *seeds = getenv("SOCKMIG_IMAGE_SEEDS");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_little_endian),
		cmocka_unit_test(test_cursor_bounds),
		cmocka_unit_test(test_format_matches_document),
		cmocka_unit_test(test_roundtrip_mem),
		cmocka_unit_test(test_roundtrip_pipe),
		cmocka_unit_test(test_pipe_section_handed_out_at_once),
		cmocka_unit_test(test_fd_reader_stops_at_trailer),
		cmocka_unit_test(test_max_section),
		cmocka_unit_test(test_every_bit_flip),
		cmocka_unit_test(test_every_truncation),
		cmocka_unit_test(test_trailing_and_bad_magic),
		cmocka_unit_test(test_section_order),
		cmocka_unit_test(test_versions),
		cmocka_unit_test(test_oversize_refused_before_allocating),
		cmocka_unit_test(test_writer_errors),
	};

	if (sodium_init() < 0)
		return 1;
	/* a vanished peer must fail an assertion, not kill the runner */
	signal(SIGPIPE, SIG_IGN);
	if (seeds) {
		write_seeds(seeds);
		return 0;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
