/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The fd checkpoint (lib/ckpt_fd.c):
 *   - sections of every type decode and encode back to the same bytes;
 *   - every cut of a valid section, trailing bytes, and each kind of wrong
 *     value is refused with a sentence naming the image byte; references that
 *     do not resolve are refused by ckpt_fds_validate(); more than 64 MiB of
 *     content is refused;
 *   - a live round trip: a child builds every kind of fd (the very code of
 *     tests/progs/ckpt_fds.c), is checked, stopped and dumped; resumed, it
 *     verifies its own fds (the dump took nothing from it), which changes a
 *     file, so the restore refuses that file by name; with the file put back,
 *     the image is prepared and applied in a forked child that verifies every
 *     fd the same way;
 *   - sockets left to the socket engine come back as extras, with the epoll
 *     registration that watched one;
 *   - the pre-flight check refuses netlink, io_uring, inotify, a terminal,
 *     a pipe or a unix socket whose other end is elsewhere, a TCP socket not
 *     in skip[], 65 MiB of memfd; and takes a stdout pipe whose reader is
 *     elsewhere.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#define CKPT_FDS_NO_MAIN
#include "../progs/ckpt_fds.c"
#undef FAIL
#undef CHECK

#include <dirent.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "ckpt_fd.h"
#include "image.h"
#include "sockmig/proc.h"
#include "sockmig/sockmig.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

/* ---- hand-made sections ---- */

struct sec {
	uint16_t type;
	struct sm_buf b;
};

#define MAX_SECS 32
static struct sec secs[MAX_SECS];
static size_t n_secs;

static struct sm_buf *sec_new(uint16_t type)
{
	assert_true(n_secs < MAX_SECS);
	secs[n_secs].type = type;
	sm_buf_init(&secs[n_secs].b);
	return &secs[n_secs++].b;
}

static void secs_free(void)
{
	for (size_t i = 0; i < n_secs; i++)
		sm_buf_free(&secs[i].b);
	n_secs = 0;
}

static void put_str(struct sm_buf *b, const char *s)
{
	sm_buf_put_blob(b, s, strlen(s));
}

static int feed(struct ckpt_fds **f, uint16_t type, const void *p, size_t len)
{
	struct sm_cursor c;

	sm_cursor_init(&c, p, len, 1000);
	return ckpt_fds_read_section(f, type, &c);
}

static void put_data(uint32_t id, uint32_t stream, uint64_t off, const char *s)
{
	struct sm_buf *b = sec_new(CKPT_SEC_FD_DATA);

	sm_buf_put_u32(b, id);
	sm_buf_put_u32(b, stream);
	sm_buf_put_u64(b, off);
	sm_buf_put_bytes(b, s, strlen(s));
}

static void put_path(uint32_t file, uint32_t kind, uint32_t flags, uint32_t mode, const char *path)
{
	struct sm_buf *b = sec_new(CKPT_SEC_FD_PATH);

	sm_buf_put_u32(b, file);
	sm_buf_put_u32(b, kind);
	sm_buf_put_u32(b, flags);
	sm_buf_put_u32(b, mode);
	sm_buf_put_u64(b, 3);        /* pos */
	sm_buf_put_u64(b, 10);       /* size */
	sm_buf_put_u64(b, 0);        /* rdev */
	sm_buf_put_u64(b, 1700000000); /* mtime */
	sm_buf_put_u32(b, 5);
	put_str(b, path);
}

/* One of every section, in the order ckpt_fds_write() writes them:
 * table, then each object followed by its bytes. */
static void make_valid(void)
{
	static const uint32_t table[][3] = {
		{ 0, 1, 0 },  { 3, 2, 1 },  { 4, 3, 0 },  { 5, 5, 1 },  { 6, 6, 0 },  { 7, 8, 0 },  { 8, 9, 0 },
		{ 9, 10, 0 }, { 10, 11, 1 }, { 11, 13, 0 }, { 12, 14, 0 }, { 13, 0, 1 },
	};
	struct sm_buf *b;

	secs_free();
	b = sec_new(CKPT_SEC_FD_TABLE);
	sm_buf_put_u32(b, ARRAY_SIZE(table));
	for (size_t i = 0; i < ARRAY_SIZE(table); i++)
		for (int k = 0; k < 3; k++)
			sm_buf_put_u32(b, table[i][k]);
	put_path(1, 5, O_RDWR, S_IFCHR | 0620, "/dev/pts/3");
	put_path(2, 1, O_WRONLY | O_APPEND, S_IFREG | 0644, "/tmp/x/y");

	b = sec_new(CKPT_SEC_FD_MEMFILE);
	sm_buf_put_u32(b, 4);
	sm_buf_put_u32(b, 1);
	sm_buf_put_u32(b, S_IFREG | 0777);
	sm_buf_put_u32(b, F_SEAL_SHRINK);
	sm_buf_put_u64(b, 4096);
	sm_buf_put_u64(b, 123456);
	put_str(b, "name");
	sm_buf_put_u32(b, 1);
	sm_buf_put_u32(b, 3);
	sm_buf_put_u32(b, O_RDWR);
	sm_buf_put_u64(b, 7);
	put_data(4, 0, 0, "hello");
	put_data(4, 0, 100, "world");

	b = sec_new(CKPT_SEC_FD_PIPE);
	sm_buf_put_u32(b, 7);
	sm_buf_put_u32(b, 1);
	sm_buf_put_u32(b, 65536);
	put_str(b, "");
	sm_buf_put_u32(b, 2);
	sm_buf_put_u32(b, 5);
	sm_buf_put_u32(b, O_RDONLY | O_NONBLOCK);
	sm_buf_put_u32(b, 6);
	sm_buf_put_u32(b, O_WRONLY);
	put_data(7, 0, 0, "pipe-bytes");

	b = sec_new(CKPT_SEC_FD_EVENT);
	sm_buf_put_u32(b, 8);
	sm_buf_put_u32(b, 1);
	sm_buf_put_u32(b, O_RDWR);
	sm_buf_put_u64(b, 7);
	sm_buf_put_u32(b, 1);
	b = sec_new(CKPT_SEC_FD_EVENT);
	sm_buf_put_u32(b, 9);
	sm_buf_put_u32(b, 2);
	sm_buf_put_u32(b, O_RDWR);
	sm_buf_put_u32(b, CLOCK_MONOTONIC);
	sm_buf_put_u64(b, 1500000000);
	sm_buf_put_u64(b, 100000000);
	sm_buf_put_u64(b, 2);
	b = sec_new(CKPT_SEC_FD_EVENT);
	sm_buf_put_u32(b, 10);
	sm_buf_put_u32(b, 3);
	sm_buf_put_u32(b, O_RDWR | O_NONBLOCK);
	sm_buf_put_u64(b, 1ull << (SIGUSR2 - 1));

	b = sec_new(CKPT_SEC_FD_EPOLL);
	sm_buf_put_u32(b, 11);
	sm_buf_put_u32(b, O_RDWR);
	sm_buf_put_u32(b, 3);
	sm_buf_put_u32(b, 7);
	sm_buf_put_u32(b, 7);
	sm_buf_put_u32(b, EPOLLIN);
	sm_buf_put_u64(b, 0x1111);
	sm_buf_put_u32(b, 40); /* stale number, the file is at 11 */
	sm_buf_put_u32(b, 11);
	sm_buf_put_u32(b, EPOLLIN | EPOLLET);
	sm_buf_put_u64(b, 0x3333);
	sm_buf_put_u32(b, 13); /* a socket of the engine */
	sm_buf_put_u32(b, 13);
	sm_buf_put_u32(b, EPOLLIN);
	sm_buf_put_u64(b, 0x4444);

	b = sec_new(CKPT_SEC_FD_UNIX);
	sm_buf_put_u32(b, 12);
	sm_buf_put_u32(b, SOCK_STREAM);
	for (int e = 0; e < 2; e++) {
		sm_buf_put_u32(b, 13 + (uint32_t)e);
		sm_buf_put_u32(b, O_RDWR | O_NONBLOCK);
		sm_buf_put_u32(b, 212992);
		sm_buf_put_u32(b, 212992);
		sm_buf_put_u32(b, (uint32_t)-1);
		sm_buf_put_u32(b, 0);
	}
	put_data(12, 0, 0, "to-0");
	put_data(12, 1, 0, "to-1");
}

static struct ckpt_fds *read_valid(void)
{
	struct ckpt_fds *f = NULL;

	for (size_t i = 0; i < n_secs; i++) {
		int r = feed(&f, secs[i].type, secs[i].b.data, secs[i].b.len);

		if (r < 0)
			fail_msg("section %zu (%#x): %s", i, secs[i].type, sockmig_error());
	}
	return f;
}

static void test_roundtrip(void **state)
{
	struct sm_image_writer *w;
	struct sm_image_reader *rd;
	struct ckpt_fds *f;
	size_t i = 0;
	int fd, r;

	(void)state;
	make_valid();
	f = read_valid();
	assert_int_equal(ckpt_fds_validate(f), 0);
	assert_int_equal(ckpt_fds_max_target(f), 13);
	for (uint32_t t = 0x1000; t < 0x1020; t++)
		assert_int_equal(ckpt_fds_owns(t), t >= 0x1008 && t <= 0x100f);

	fd = memfd_create("rt", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(sm_image_writer_new(fd, SM_IMAGE_KIND_PROCESS, &w), 0);
	assert_int_equal(ckpt_fds_write(f, w), 0);
	assert_int_equal(sm_image_writer_finish(w), 0);
	sm_image_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	assert_int_equal(sm_image_reader_new_fd(fd, &rd), 0);
	for (;;) {
		const uint8_t *data;
		uint64_t off;
		uint16_t type;
		size_t len;

		r = sm_image_next_section(rd, &type, &data, &len, &off);
		assert_true(r >= 0);
		if (r == 0)
			break;
		assert_true(i < n_secs);
		assert_int_equal(type, secs[i].type);
		assert_int_equal(len, secs[i].b.len);
		assert_memory_equal(data, secs[i].b.data, len);
		i++;
	}
	assert_int_equal(i, n_secs);
	sm_image_reader_free(rd);
	close(fd);
	ckpt_fds_free(f);
	secs_free();
}

/* Every cut of every valid section, and one byte more, is refused. */
static void test_truncated(void **state)
{
	(void)state;
	make_valid();
	for (size_t i = 0; i < n_secs; i++) {
		for (size_t cut = 0; cut <= secs[i].b.len; cut++) {
			struct ckpt_fds *f = NULL;
			uint8_t *p;
			size_t len = cut == secs[i].b.len ? cut + 1 : cut;
			int r = 0;

			/* DATA names an object that must come first */
			for (size_t k = 0; k < i && secs[i].type == CKPT_SEC_FD_DATA; k++)
				if (secs[k].type != CKPT_SEC_FD_DATA && secs[k].type != CKPT_SEC_FD_TABLE)
					assert_int_equal(feed(&f, secs[k].type, secs[k].b.data, secs[k].b.len), 0);
			p = calloc(1, len + 1);
			memcpy(p, secs[i].b.data, cut);
			r = feed(&f, secs[i].type, p, len);
			/* a datagram or a stream's bytes may be cut anywhere after the header */
			if (secs[i].type == CKPT_SEC_FD_DATA && len >= 16) {
				assert_true(r == 0 || r == -EBADMSG);
			} else {
				if (r != -EBADMSG)
					fail_msg("section %zu (%#x) cut to %zu of %zu bytes: %d", i, secs[i].type, len,
						 secs[i].b.len, r);
				assert_non_null(strstr(sockmig_error(), "image byte"));
			}
			free(p);
			ckpt_fds_free(f);
		}
	}
	secs_free();
}

/* Feed the valid set with section `idx` replaced by `b`; expect refusal
 * mentioning `what`. */
static void expect_bad(size_t idx, struct sm_buf *b, const char *what)
{
	struct ckpt_fds *f = NULL;
	int r = 0;

	for (size_t i = 0; i <= idx && r == 0; i++)
		r = i == idx ? feed(&f, secs[i].type, b->data, b->len) : feed(&f, secs[i].type, secs[i].b.data, secs[i].b.len);
	if (r != -EBADMSG || !strstr(sockmig_error(), what))
		fail_msg("bad section %zu: %d, \"%s\" (expected \"%s\")", idx, r, sockmig_error(), what);
	ckpt_fds_free(f);
	sm_buf_free(b);
}

/* A copy of section idx with the u32 at byte `at` set to v. */
static struct sm_buf patch32(size_t idx, size_t at, uint32_t v)
{
	struct sm_buf b;

	sm_buf_init(&b);
	sm_buf_put_bytes(&b, secs[idx].b.data, secs[idx].b.len);
	assert_true(at + 4 <= b.len);
	for (int k = 0; k < 4; k++)
		b.data[at + (size_t)k] = (uint8_t)(v >> (8 * k));
	return b;
}

static struct sm_buf patch64(size_t idx, size_t at, uint64_t v)
{
	struct sm_buf b = patch32(idx, at, (uint32_t)v);

	for (int k = 4; k < 8; k++)
		b.data[at + (size_t)k] = (uint8_t)(v >> (8 * k));
	return b;
}

static size_t sec_index(uint16_t type, size_t nth)
{
	for (size_t i = 0; i < n_secs; i++)
		if (secs[i].type == type && nth-- == 0)
			return i;
	fail_msg("no section %#x", type);
	return 0;
}

static void test_bad_values(void **state)
{
	size_t t, p, m, pi, ev, ep, u, d;
	struct sm_buf b;

	(void)state;
	make_valid();
	t = sec_index(CKPT_SEC_FD_TABLE, 0);
	p = sec_index(CKPT_SEC_FD_PATH, 1);
	m = sec_index(CKPT_SEC_FD_MEMFILE, 0);
	pi = sec_index(CKPT_SEC_FD_PIPE, 0);
	ev = sec_index(CKPT_SEC_FD_EVENT, 0);
	ep = sec_index(CKPT_SEC_FD_EPOLL, 0);
	u = sec_index(CKPT_SEC_FD_UNIX, 0);
	d = sec_index(CKPT_SEC_FD_DATA, 0);

	/* table: out of order, a number too high, an unknown fd flag, a count that lies */
	b = patch32(t, 4 + 12, 0);
	expect_bad(t, &b, "out of order");
	b = patch32(t, 4 + 11 * 12, CKPT_FD_NUM_MAX);
	expect_bad(t, &b, "fd table");
	b = patch32(t, 4 + 8, 2);
	expect_bad(t, &b, "fd table");
	b = patch32(t, 0, 1000);
	expect_bad(t, &b, "fds cannot be right");

	/* path: unknown kind, file id 0, a directory kind on a regular mode,
	 * nanoseconds out of range, a relative path, a NUL in the path */
	b = patch32(p, 4, 9);
	expect_bad(p, &b, "unknown kind");
	b = patch32(p, 0, 0);
	expect_bad(p, &b, "is invalid");
	b = patch32(p, 4, 2);
	expect_bad(p, &b, "is invalid");
	b = patch32(p, 48, 1000000000);
	expect_bad(p, &b, "is invalid");
	b = patch32(p, 52 + 4, (uint32_t)'x' | (uint32_t)'t' << 8 | (uint32_t)'m' << 16 | (uint32_t)'p' << 24);
	expect_bad(p, &b, "is invalid");
	b = patch32(p, 52 + 4, 0);
	expect_bad(p, &b, "string is invalid");
	/* O_PATH flags on a file kind */
	b = patch32(p, 8, O_PATH);
	expect_bad(p, &b, "is invalid");

	/* memfile: unknown kind, unknown seal, no description, a directory mode */
	b = patch32(m, 4, 3);
	expect_bad(m, &b, "is invalid");
	b = patch32(m, 12, 0x100);
	expect_bad(m, &b, "is invalid");
	b = patch32(m, 36 + 4, 0);
	expect_bad(m, &b, "descriptions cannot be right");
	b = patch32(m, 8, S_IFDIR | 0755);
	expect_bad(m, &b, "is invalid");

	/* pipe: size not in pages, a FIFO without a path */
	b = patch32(pi, 8, 1000);
	expect_bad(pi, &b, "is invalid");
	b = patch32(pi, 4, 2);
	expect_bad(pi, &b, "is invalid");

	/* event: an eventfd at the overflow value, a semaphore flag of 2, a clock
	 * timerfd cannot have, an unknown kind */
	b = patch64(ev, 12, UINT64_MAX);
	expect_bad(ev, &b, "is invalid");
	b = patch32(ev, 20, 2);
	expect_bad(ev, &b, "is invalid");
	b = patch32(ev + 1, 12, 3 /* CLOCK_THREAD_CPUTIME_ID */);
	expect_bad(ev + 1, &b, "is invalid");
	b = patch32(ev + 2, 4, 4);
	expect_bad(ev + 2, &b, "unknown kind");

	/* epoll: a count that does not match, a watched fd out of range */
	b = patch32(ep, 8, 4);
	expect_bad(ep, &b, "registrations is invalid");
	b = patch32(ep, 12 + 4, CKPT_FD_NUM_MAX);
	expect_bad(ep, &b, "registration 0");

	/* unix: a socket type that has no pairs here, a peek offset below -1, a shutdown bit too many */
	b = patch32(u, 4, SOCK_RAW);
	expect_bad(u, &b, "socket type");
	b = patch32(u, 8 + 16, (uint32_t)-2);
	expect_bad(u, &b, "end 0");
	b = patch32(u, 8 + 20, 4);
	expect_bad(u, &b, "end 0");

	/* data: for an object that does not exist (or comes later), beyond a
	 * memfile's size, overlapping the previous extent, a stream with a gap,
	 * a stream that does not exist, more than the pipe holds */
	b = patch32(d, 0, 99);
	expect_bad(d, &b, "does not exist");
	b = patch64(d, 8, 4094);
	expect_bad(d, &b, "do not fit");
	b = patch64(d + 1, 8, 2);
	expect_bad(d + 1, &b, "do not fit");
	b = patch64(sec_index(CKPT_SEC_FD_DATA, 3), 8, 1);
	expect_bad(sec_index(CKPT_SEC_FD_DATA, 3), &b, "do not fit");
	b = patch32(sec_index(CKPT_SEC_FD_DATA, 3), 4, 2);
	expect_bad(sec_index(CKPT_SEC_FD_DATA, 3), &b, "do not fit");
	sm_buf_init(&b);
	sm_buf_put_u32(&b, 7);
	sm_buf_put_u32(&b, 0);
	sm_buf_put_u64(&b, 10);
	{
		uint8_t *big = calloc(1, 65536);

		sm_buf_put_bytes(&b, big, 65536 - 9);
		free(big);
	}
	{
		/* in place of the section after the pipe's bytes */
		size_t at = sec_index(CKPT_SEC_FD_DATA, 2) + 1;
		uint16_t saved = secs[at].type;

		secs[at].type = CKPT_SEC_FD_DATA;
		expect_bad(at, &b, "do not fit");
		secs[at].type = saved;
	}

	/* a second table; a type that is not ours */
	{
		struct ckpt_fds *f = NULL;

		assert_int_equal(feed(&f, CKPT_SEC_FD_TABLE, secs[t].b.data, secs[t].b.len), 0);
		assert_int_equal(feed(&f, CKPT_SEC_FD_TABLE, secs[t].b.data, secs[t].b.len), -EBADMSG);
		assert_non_null(strstr(sockmig_error(), "a second table"));
		assert_int_equal(feed(&f, 0x1010, secs[t].b.data, secs[t].b.len), -EBADMSG);
		ckpt_fds_free(f);
	}
	secs_free();
}

/* Read the valid set with section idx left out or replaced; validate must
 * refuse with `what`. */
static void expect_invalid(size_t idx, struct sm_buf *b, const char *what)
{
	struct ckpt_fds *f = NULL;

	for (size_t i = 0; i < n_secs; i++) {
		if (i == idx && !b)
			continue;
		assert_int_equal(i == idx ? feed(&f, secs[i].type, b->data, b->len)
					  : feed(&f, secs[i].type, secs[i].b.data, secs[i].b.len),
				 0);
	}
	if (ckpt_fds_validate(f) != -EBADMSG || !strstr(sockmig_error(), what))
		fail_msg("validate after changing section %zu: \"%s\" (expected \"%s\")", idx, sockmig_error(), what);
	ckpt_fds_free(f);
	if (b)
		sm_buf_free(b);
}

static void test_validate(void **state)
{
	size_t t, ep, pi, p;
	struct sm_buf b;

	(void)state;
	make_valid();
	t = sec_index(CKPT_SEC_FD_TABLE, 0);
	p = sec_index(CKPT_SEC_FD_PATH, 1);
	ep = sec_index(CKPT_SEC_FD_EPOLL, 0);
	pi = sec_index(CKPT_SEC_FD_PIPE, 0);
	expect_invalid(t, NULL, "without an fd table");
	b = patch32(t, 4 + 4, 77); /* fd 0 -> file 77 */
	expect_invalid(t, &b, "which no section describes");
	expect_invalid(p, NULL, "which no section describes");
	b = patch32(t, 4 + 4, 2); /* fd 0 to file 2 as well: file 1 is at no fd */
	expect_invalid(t, &b, "file 1 is not at any fd");
	b = patch32(p, 0, 4); /* the memfile's object id */
	expect_invalid(p, &b, "used twice");
	b = patch32(ep, 12 + 4, 50); /* watches fd 50 */
	expect_invalid(ep, &b, "not in the table");
	b = patch32(pi, 32, O_RDONLY); /* both ends read ends */
	expect_invalid(pi, &b, "lacks a read or a write end");
	/* nothing at all is fine */
	assert_int_equal(ckpt_fds_validate(NULL), 0);
	assert_int_equal(ckpt_fds_max_target(NULL), -1);
	secs_free();
}

static void test_data_limit(void **state)
{
	struct ckpt_fds *f = NULL;
	struct sm_buf b;
	uint8_t *chunk = calloc(1, (1u << 20) + 16);
	int r = 0;
	unsigned i;

	(void)state;
	assert_non_null(chunk);
	sm_buf_init(&b);
	sm_buf_put_u32(&b, 1);
	sm_buf_put_u32(&b, 1);
	sm_buf_put_u32(&b, S_IFREG | 0600);
	sm_buf_put_u32(&b, 0);
	sm_buf_put_u64(&b, 1ull << 30);
	sm_buf_put_u64(&b, 1);
	put_str(&b, "big");
	sm_buf_put_u32(&b, 1);
	sm_buf_put_u32(&b, 2);
	sm_buf_put_u32(&b, O_RDWR);
	sm_buf_put_u64(&b, 0);
	assert_int_equal(feed(&f, CKPT_SEC_FD_MEMFILE, b.data, b.len), 0);
	sm_buf_free(&b);
	for (i = 0; i < 65 && r == 0; i++) {
		uint64_t off = (uint64_t)i << 20;

		memset(chunk, 0, 16);
		chunk[0] = 1;
		for (int k = 0; k < 8; k++)
			chunk[8 + k] = (uint8_t)(off >> (8 * k));
		r = feed(&f, CKPT_SEC_FD_DATA, chunk, (1u << 20) + 16);
	}
	assert_int_equal(r, -EBADMSG);
	assert_int_equal(i, 65);
	assert_non_null(strstr(sockmig_error(), "more than 64 MiB"));
	ckpt_fds_free(f);
	free(chunk);
}

/* ---- live processes ---- */

static int cmp_int(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Close everything but keep[] (any order, n < 256). */
static void close_all_but(const int *keep, size_t n)
{
	int k[256], lo = 0;

	memcpy(k, keep, n * sizeof(int));
	qsort(k, n, sizeof(int), cmp_int);
	for (size_t i = 0; i < n; i++) {
		if (k[i] > lo)
			syscall(SYS_close_range, lo, k[i] - 1, 0);
		lo = k[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0u, 0);
}

typedef int (*setup_fn)(void *arg, char *why, size_t n);

/* An fd of the test's that the next spawned child keeps for its setup. */
static int spawn_keep_fd = -1;

/* A child with /dev/null as 0..2 and only what setup() makes; it reports
 * "ready" on a pipe it then closes, waits for SIGUSR1, and runs verify if
 * given (exit status 0 = passed). */
static pid_t spawn(setup_fn setup, void *arg, setup_fn verify, void *varg)
{
	int p[2];
	pid_t pid;
	char c, why[512] = "";
	ssize_t n;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int w, nul = open("/dev/null", O_RDWR), keep[5];
		sigset_t ss;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		sigemptyset(&ss);
		sigaddset(&ss, SIGUSR1);
		sigaddset(&ss, SIGUSR2);
		sigprocmask(SIG_BLOCK, &ss, NULL);
		w = fcntl(p[1], F_DUPFD_CLOEXEC, 900);
		if (nul < 0 || w < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
			_exit(120);
		keep[0] = 0;
		keep[1] = 1;
		keep[2] = 2;
		keep[3] = w;
		keep[4] = spawn_keep_fd;
		close_all_but(keep, spawn_keep_fd >= 0 ? 5 : 4);
		if (setup(arg, why, sizeof(why)) < 0) {
			n = write(w, "F", 1);
			n = write(w, why, strlen(why));
			(void)n;
			_exit(1);
		}
		if (write(w, "r", 1) != 1)
			_exit(121);
		close(w);
		sigemptyset(&ss);
		sigaddset(&ss, SIGUSR1);
		while (sigwaitinfo(&ss, NULL) < 0)
			;
		if (verify && verify(varg, why, sizeof(why)) < 0) {
			char path[4096];
			int fd;

			snprintf(path, sizeof(path), "%s/orig.why", (const char *)varg);
			fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd >= 0 && write(fd, why, strlen(why)) < 0)
				_exit(2);
			_exit(1);
		}
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], &c, 1);
	if (n == 1 && c == 'F') {
		n = read(p[0], why, sizeof(why) - 1);
		why[n > 0 ? n : 0] = 0;
		fail_msg("the child's setup failed: %s", why);
	}
	assert_int_equal(n, 1);
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
	return pid;
}

static int end_child(pid_t pid)
{
	int st = 0;

	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return st;
}

static int build_all(void *arg, char *why, size_t n)
{
	return fds_build(arg, why, n);
}

static int verify_all(void *arg, char *why, size_t n)
{
	return fds_verify(arg, why, n);
}

/* Dump the stopped child (skip[]) into a memfd; returns the memfd. */
static int dump_child(pid_t pid, const int *skip, size_t n_skip)
{
	struct sockmig_proc *p;
	struct sm_image_writer *w;
	int fd = memfd_create("img", MFD_CLOEXEC), r;

	assert_true(fd >= 0);
	r = ckpt_fds_check(pid, skip, n_skip);
	if (r < 0)
		fail_msg("check: %s", sockmig_error());
	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_proc_stop(p), 0);
	assert_int_equal(sm_image_writer_new(fd, SM_IMAGE_KIND_PROCESS, &w), 0);
	r = ckpt_fds_dump(p, skip, n_skip, w);
	if (r < 0)
		fail_msg("dump: %s", sockmig_error());
	assert_int_equal(sm_image_writer_finish(w), 0);
	sm_image_writer_free(w);
	sockmig_proc_free(p); /* resumes it */
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static struct ckpt_fds *read_image(int fd)
{
	struct sm_image_reader *rd;
	struct ckpt_fds *f = NULL;

	assert_int_equal(sm_image_reader_new_fd(fd, &rd), 0);
	for (;;) {
		const uint8_t *data;
		struct sm_cursor c;
		uint64_t off;
		uint16_t type;
		size_t len;
		int r = sm_image_next_section(rd, &type, &data, &len, &off);

		assert_true(r >= 0);
		if (r == 0)
			break;
		assert_true(ckpt_fds_owns(type));
		sm_cursor_init(&c, data, len, off);
		if (ckpt_fds_read_section(&f, type, &c) < 0)
			fail_msg("read: %s", sockmig_error());
	}
	sm_image_reader_free(rd);
	if (ckpt_fds_validate(f) < 0)
		fail_msg("validate: %s", sockmig_error());
	return f;
}

/* Fork a child that applies the plan, keeps only its targets, and runs
 * check(); returns what it reported ("pass" or the reason). */
static void run_restored(const struct ckpt_fd_plan *plan, setup_fn check, void *arg, char *out, size_t size)
{
	int p[2];
	pid_t pid;
	ssize_t n;
	int st;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		const char *what = "?";
		const int *t;
		size_t nt = ckpt_fd_plan_targets(plan, &t);
		int w = fcntl(p[1], F_DUPFD_CLOEXEC, 2000), keep[256], r;
		char why[512];
		sigset_t ss;

		sigemptyset(&ss);
		sigaddset(&ss, SIGUSR2);
		sigprocmask(SIG_BLOCK, &ss, NULL);
		r = ckpt_fd_plan_apply_child(plan, &what);
		if (r < 0) {
			snprintf(why, sizeof(why), "apply: %s: %s", what, strerror(-r));
			n = write(w, why, strlen(why));
			_exit(1);
		}
		if (nt > 250)
			_exit(3);
		memcpy(keep, t, nt * sizeof(int));
		keep[nt] = w;
		close_all_but(keep, nt + 1);
		if (check(arg, why, sizeof(why)) < 0) {
			n = write(w, why, strlen(why));
			_exit(1);
		}
		n = write(w, "pass", 4);
		_exit(0);
	}
	close(p[1]);
	n = read(p[0], out, size - 1);
	out[n > 0 ? n : 0] = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[4096];

	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			unlink(path);
		}
	if (d)
		closedir(d);
	rmdir(dir);
}

static void test_live_roundtrip(void **state)
{
	char dir[] = "/tmp/test_ckpt_fd.XXXXXX", path[4096], out[512], expect[4200];
	struct ckpt_fd_plan *plan = NULL;
	struct ckpt_fds *f;
	struct timespec ts[2];
	struct stat st;
	pid_t pid;
	int img, r, status = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	pid = spawn(build_all, dir, verify_all, dir);
	img = dump_child(pid, NULL, 0);
	assert_true(fstat(img, &st) == 0);
	/* 1 MiB memfd with 8292 bytes of data, a 20000-byte deleted file, queues */
	assert_true(st.st_size < 64 * 1024);
	snprintf(path, sizeof(path), "%s/app", dir);
	assert_int_equal(stat(path, &st), 0);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;

	/* the dump took nothing: the original finds all its fds as they were */
	kill(pid, SIGUSR1);
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char why[512] = "";
		int fd;

		snprintf(path, sizeof(path), "%s/orig.why", dir);
		fd = open(path, O_RDONLY);
		if (fd >= 0 && read(fd, why, sizeof(why) - 1) < 0)
			why[0] = 0;
		fail_msg("the original after the dump: status %#x: %s", status, why);
	}

	f = read_image(img);
	/* it appended to app: that file is not the one of the checkpoint */
	r = ckpt_fds_prepare(f, NULL, 0, NULL, 100, &plan);
	assert_int_equal(r, -ESTALE);
	snprintf(expect, sizeof(expect), "fd 13: %s/app changed since the checkpoint (size 1 -> 2)", dir);
	assert_string_equal(sockmig_error(), expect);
	snprintf(path, sizeof(path), "%s/app", dir);
	assert_int_equal(truncate(path, 1), 0);
	assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
	/* a floor at or below a target */
	assert_int_equal(ckpt_fds_prepare(f, NULL, 0, NULL, 37, &plan), -EINVAL);

	r = ckpt_fds_prepare(f, NULL, 0, NULL, 100, &plan);
	if (r < 0)
		fail_msg("prepare: %s", sockmig_error());
	{
		const int *t;
		size_t n = ckpt_fd_plan_targets(plan, &t);

		assert_int_equal(n, 3 + ARRAY_SIZE(fds_expect));
		for (size_t i = 1; i < n; i++)
			assert_true(t[i] > t[i - 1]);
	}
	run_restored(plan, verify_all, dir, out, sizeof(out));
	assert_string_equal(out, "pass");
	ckpt_fd_plan_free(plan);
	ckpt_fds_free(f);
	close(img);
	rm_dir(dir);
}

/* ---- sockets left to the engine ---- */

static int build_tcp(void *arg, char *why, size_t n)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x77 };
	int s = socket(AF_INET, SOCK_STREAM, 0);

	(void)arg;
	if (s != 3 || eventfd(1, 0) != 4 || epoll_create1(0) != 5 || epoll_ctl(5, EPOLL_CTL_ADD, 3, &ev) < 0 ||
	    fcntl(3, F_SETFD, FD_CLOEXEC) < 0)
		return snprintf(why, n, "tcp setup: %s", strerror(errno)), -1;
	return 0;
}

static int verify_tcp(void *arg, char *why, size_t n)
{
	struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = 1 };
	int type = 0;
	socklen_t len = sizeof(type);

	(void)arg;
	if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_DGRAM)
		return snprintf(why, n, "fd 3 is not the extra socket"), -1;
	if (fcntl(3, F_GETFD) != FD_CLOEXEC)
		return snprintf(why, n, "fd 3 lost FD_CLOEXEC"), -1;
	/* registered: MOD works, ADD again says EEXIST */
	if (epoll_ctl(5, EPOLL_CTL_MOD, 3, &ev) < 0 || epoll_ctl(5, EPOLL_CTL_ADD, 3, &ev) == 0 || errno != EEXIST)
		return snprintf(why, n, "the epoll registration of fd 3: %s", strerror(errno)), -1;
	return 0;
}

static void test_extras(void **state)
{
	static const int skip[] = { 3 };
	struct ckpt_fd_plan *plan = NULL;
	struct ckpt_fd_extra extra;
	struct ckpt_fds *f;
	char out[512];
	pid_t pid;
	int img;

	(void)state;
	pid = spawn(build_tcp, NULL, NULL, NULL);
	/* not in skip: refused */
	assert_int_equal(ckpt_fds_check(pid, NULL, 0), -EOPNOTSUPP);
	assert_non_null(strstr(sockmig_error(), "fd 3: this TCP socket is not among the sockets the socket engine moves"));
	img = dump_child(pid, skip, 1);
	end_child(pid);
	f = read_image(img);
	assert_int_equal(ckpt_fds_prepare(f, NULL, 0, NULL, 64, &plan), -ENOENT);
	assert_non_null(strstr(sockmig_error(), "fd 3: the image leaves it (a socket) to the socket engine"));
	extra.target = 3;
	extra.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* any socket: the engine's */
	assert_true(extra.fd >= 0);
	assert_int_equal(ckpt_fds_prepare(f, &extra, 1, NULL, 64, &plan), 0);
	close(extra.fd);
	run_restored(plan, verify_tcp, NULL, out, sizeof(out));
	assert_string_equal(out, "pass");
	ckpt_fd_plan_free(plan);
	ckpt_fds_free(f);
	close(img);
}

/* ---- pre-flight refusals ---- */

struct refusal {
	const char *name;
	int (*make)(void); /* returns the fd it made at 3, or -1 (then skipped) */
	const char *sentence;
};

static int make_netlink(void)
{
	return socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
}

static int make_io_uring(void)
{
	uint8_t params[120] = { 0 };

	return (int)syscall(SYS_io_uring_setup, 4, params);
}

static int make_inotify(void)
{
	return inotify_init1(0);
}

static int make_pty(void)
{
	return posix_openpt(O_RDWR | O_NOCTTY);
}

static int make_lone_pipe(void)
{
	int p[2];

	if (pipe(p) < 0)
		return -1;
	close(p[1]);
	return p[0];
}

static int make_big_memfd(void)
{
	static uint8_t mib[1 << 20];
	int fd = memfd_create("big", 0);

	memset(mib, 1, sizeof(mib));
	for (int i = 0; i < 65 && fd >= 0; i++)
		if (write(fd, mib, sizeof(mib)) != (ssize_t)sizeof(mib))
			return -1;
	return fd;
}

static int make_unix_elsewhere(void)
{
	return dup(spawn_keep_fd); /* one end; the test keeps the other */
}

static int setup_refusal(void *arg, char *why, size_t n)
{
	const struct refusal *rf = arg;
	int fd = rf->make();

	if (fd < 0)
		return snprintf(why, n, "%s: %s", rf->name, strerror(errno)), -1;
	if (spawn_keep_fd >= 0)
		close(spawn_keep_fd);
	if (fd != 3 && (dup2(fd, 3) < 0 || close(fd) < 0))
		return snprintf(why, n, "dup2"), -1;
	return 0;
}

static void test_check_refusals(void **state)
{
	static const struct refusal cases[] = {
		{ "netlink", make_netlink, "fd 3: a netlink socket is not migratable" },
		{ "io_uring", make_io_uring, "fd 3: io_uring is not migratable" },
		{ "inotify", make_inotify, "fd 3: an inotify instance is not migratable" },
		{ "pty", make_pty, "fd 3: the terminal /dev/" },
		{ "lone pipe", make_lone_pipe, "fd 3: a pipe whose other end is in another process is not migratable" },
		{ "unix", make_unix_elsewhere, "fd 3: a unix socket whose peer is in another process is not migratable" },
		{ "memfd", make_big_memfd, ": its memfds, deleted files, pipes and unix sockets hold 65 MiB, more than the 64 MiB a checkpoint carries" },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		int sv[2] = { -1, -1 }, r;
		char want[256];
		pid_t pid;

		if (cases[i].make == make_io_uring) {
			int fd = make_io_uring();

			if (fd < 0) {
				print_message("io_uring_setup: %s; case skipped\n", strerror(errno));
				continue;
			}
			close(fd);
		}
		if (cases[i].make == make_unix_elsewhere) {
			assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
			spawn_keep_fd = sv[0];
		}
		pid = spawn(setup_refusal, (void *)&cases[i], NULL, NULL);
		spawn_keep_fd = -1;
		if (sv[0] >= 0)
			close(sv[0]);
		r = ckpt_fds_check(pid, NULL, 0);
		if (cases[i].make == make_big_memfd)
			snprintf(want, sizeof(want), "pid %d%s", (int)pid, cases[i].sentence);
		else
			snprintf(want, sizeof(want), "pid %d %s", (int)pid, cases[i].sentence);
		if (r != -EOPNOTSUPP || strncmp(sockmig_error(), want, strlen(want)))
			fail_msg("%s: %d \"%s\", expected \"%s\"", cases[i].name, r, sockmig_error(), want);
		end_child(pid);
		if (sv[1] >= 0)
			close(sv[1]);
	}
}

/* stdout a pipe whose reader is the test: accepted, dumped as "elsewhere",
 * restored as /dev/null, or as the override */
static int setup_stdout_pipe(void *arg, char *why, size_t n)
{
	(void)arg;
	(void)why;
	(void)n;
	return dup2(spawn_keep_fd, 1) == 1 && close(spawn_keep_fd) == 0 ? 0 : -1;
}

static int verify_stdout(void *arg, char *why, size_t n)
{
	struct stat st;
	int want_null = *(int *)arg;

	if (fstat(1, &st) < 0)
		return snprintf(why, n, "no fd 1"), -1;
	if (want_null ? !(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3)) : !S_ISREG(st.st_mode))
		return snprintf(why, n, "fd 1 is mode %#o", st.st_mode), -1;
	return 0;
}

static void test_stdio_elsewhere(void **state)
{
	struct ckpt_fd_plan *plan = NULL;
	struct ckpt_fds *f;
	char out[512];
	int p[2], img, ovr[3] = { -1, -1, -1 }, yes = 1, no = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(p), 0);
	spawn_keep_fd = p[1];
	pid = spawn(setup_stdout_pipe, NULL, NULL, NULL);
	spawn_keep_fd = -1;
	close(p[1]);
	img = dump_child(pid, NULL, 0);
	end_child(pid);
	close(p[0]);
	f = read_image(img);
	assert_int_equal(ckpt_fds_prepare(f, NULL, 0, ovr, 10, &plan), 0);
	run_restored(plan, verify_stdout, &yes, out, sizeof(out));
	assert_string_equal(out, "pass");
	ckpt_fd_plan_free(plan);
	ovr[1] = memfd_create("override", MFD_CLOEXEC);
	assert_true(ovr[1] >= 0);
	assert_int_equal(ckpt_fds_prepare(f, NULL, 0, ovr, 10, &plan), 0);
	close(ovr[1]);
	run_restored(plan, verify_stdout, &no, out, sizeof(out));
	assert_string_equal(out, "pass");
	ckpt_fd_plan_free(plan);
	ckpt_fds_free(f);
	close(img);
}

/* A running process that removes and adds an epoll registration all the
 * time (asyncio does on every pause of its reading): the check, which reads
 * the fdinfo and then asks kcmp, must not take a registration gone in
 * between for one that watches a file no fd holds. */
static int setup_busy_epoll(void *arg, char *why, size_t n)
{
	(void)arg;
	if (epoll_create1(0) != 3 || eventfd(0, 0) != 4)
		return snprintf(why, n, "busy epoll setup: %s", strerror(errno)), -1;
	return 0;
}

static int churn_epoll(void *arg, char *why, size_t n)
{
	struct epoll_event ev = { .events = EPOLLIN };

	(void)arg;
	(void)why;
	(void)n;
	/* bounded: the test kills it long before */
	for (long i = 0; i < 200000000L; i++) {
		ev.data.u64 = (uint64_t)i;
		epoll_ctl(3, EPOLL_CTL_ADD, 4, &ev);
		epoll_ctl(3, EPOLL_CTL_DEL, 4, NULL);
	}
	return 0;
}

static void test_check_busy_epoll(void **state)
{
	pid_t pid;

	(void)state;
	pid = spawn(setup_busy_epoll, NULL, churn_epoll, NULL);
	kill(pid, SIGUSR1); /* start churning */
	for (int i = 0; i < 2000; i++)
		if (ckpt_fds_check(pid, NULL, 0) < 0)
			fail_msg("check %d of a process busy with its epoll: %s", i, sockmig_error());
	end_child(pid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),        cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_bad_values),       cmocka_unit_test(test_validate),
		cmocka_unit_test(test_data_limit),       cmocka_unit_test(test_live_roundtrip),
		cmocka_unit_test(test_extras),           cmocka_unit_test(test_check_refusals),
		cmocka_unit_test(test_stdio_elsewhere), cmocka_unit_test(test_check_busy_epoll),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
