/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The node-to-node channel over socketpairs: a handshake and records both
 * ways, refusals (secret, cluster, version, name, the peer check), and every
 * kind of damage the receiver must catch: a flipped ciphertext byte, a
 * truncated stream, an oversized length (refused before it is read), a peer
 * silent for the timeout. The pump relays a local fd both ways with EOF,
 * and closes both sides on a damaged record without handing any of it on.
 *
 * Damage is done on real sealed bytes: after the handshake the initiator's
 * fd is swapped (dup2) for a socketpair whose other end the test reads, so
 * the test sees each record as it would go on the wire and decides what
 * reaches the responder.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "sockmig/chan.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

static uint8_t secret_a[32], secret_b[32];

struct side {
	int fd;
	struct sockmig_chan_opts o;
	struct sockmig_chan *c;
	int r;
	char err[512];
	bool accept;
};

static void *side_run(void *arg)
{
	struct side *s = arg;

	s->r = s->accept ? sockmig_chan_accept(s->fd, &s->o, &s->c) : sockmig_chan_connect(s->fd, &s->o, &s->c);
	snprintf(s->err, sizeof(s->err), "%s", s->r < 0 ? sockmig_error() : "");
	return NULL;
}

static void opts(struct sockmig_chan_opts *o, const char *cluster, const char *node, const uint8_t *secret)
{
	memset(o, 0, sizeof(*o));
	o->cluster = cluster;
	o->node = node;
	o->secret = secret;
	o->timeout_ms = 2000;
}

/* Both handshakes at once over a socketpair; i connects, r accepts. */
static void handshake(struct side *i, struct side *r)
{
	int sp[2];
	pthread_t t;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	i->fd = sp[0];
	r->fd = sp[1];
	i->accept = false;
	r->accept = true;
	assert_int_equal(pthread_create(&t, NULL, side_run, r), 0);
	side_run(i);
	pthread_join(t, NULL);
	/* On failure the fds stay ours. */
	if (i->r < 0)
		close(i->fd);
	if (r->r < 0)
		close(r->fd);
}

static void pair_up(struct side *i, struct side *r)
{
	opts(&i->o, "lab", "n1", secret_a);
	opts(&r->o, "lab", "n2", secret_a);
	handshake(i, r);
	assert_int_equal(i->r, 0);
	assert_int_equal(r->r, 0);
}

static void test_exchange_both_ways(void **state)
{
	struct side i = { 0 }, r = { 0 };
	const uint8_t *data;
	uint8_t type;
	size_t len;

	(void)state;
	pair_up(&i, &r);
	assert_string_equal(sockmig_chan_peer(i.c), "n2");
	assert_string_equal(sockmig_chan_peer(r.c), "n1");
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_REQUEST, "ping", 4), 0);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 1);
	assert_int_equal(type, SOCKMIG_CHAN_REQUEST);
	assert_int_equal(len, 4);
	assert_memory_equal(data, "ping", 4);
	assert_int_equal(sockmig_chan_send(r.c, SOCKMIG_CHAN_REPLY, "ok pong", 7), 0);
	assert_int_equal(sockmig_chan_recv(i.c, &type, &data, &len), 1);
	assert_int_equal(type, SOCKMIG_CHAN_REPLY);
	assert_memory_equal(data, "ok pong", 7);
	/* an empty record and a skippable type come through as they are */
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_MAY_SKIP | 0x11, NULL, 0), 0);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 1);
	assert_int_equal(type, 0x91);
	assert_int_equal(len, 0);
	/* END both ways, then recv keeps saying 0 */
	assert_int_equal(sockmig_chan_end(i.c), 0);
	assert_int_equal(sockmig_chan_end(i.c), 0);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 0);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 0);
	assert_int_equal(sockmig_chan_end(r.c), 0);
	assert_int_equal(sockmig_chan_recv(i.c, &type, &data, &len), 0);
	assert_true(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "x", 1) < 0);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

struct send_arg {
	struct sockmig_chan *c;
	const uint8_t *p;
	size_t len;
	int r;
};

static void *send_one(void *arg)
{
	struct send_arg *a = arg;

	a->r = sockmig_chan_send(a->c, SOCKMIG_CHAN_DATA, a->p, a->len);
	return NULL;
}

static void test_largest_record(void **state)
{
	struct side i = { 0 }, r = { 0 };
	uint8_t *big = malloc(SOCKMIG_CHAN_RECORD_MAX + 1), type;
	struct send_arg sa;
	const uint8_t *data;
	pthread_t t;
	size_t len;

	(void)state;
	assert_non_null(big);
	randombytes_buf(big, SOCKMIG_CHAN_RECORD_MAX + 1);
	pair_up(&i, &r);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, big, SOCKMIG_CHAN_RECORD_MAX + 1), -EMSGSIZE);
	/* the biggest is more than a socketpair holds: sent from a thread */
	sa = (struct send_arg){ .c = i.c, .p = big, .len = SOCKMIG_CHAN_RECORD_MAX };
	assert_int_equal(pthread_create(&t, NULL, send_one, &sa), 0);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 1);
	pthread_join(t, NULL);
	assert_int_equal(sa.r, 0);
	assert_int_equal(type, SOCKMIG_CHAN_DATA);
	assert_int_equal(len, SOCKMIG_CHAN_RECORD_MAX);
	assert_memory_equal(data, big, len);
	free(big);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

static void test_wrong_secret_refused(void **state)
{
	struct side i = { 0 }, r = { 0 };

	(void)state;
	opts(&i.o, "lab", "n1", secret_a);
	opts(&r.o, "lab", "n2", secret_b);
	handshake(&i, &r);
	assert_int_equal(i.r, -EACCES);
	assert_non_null(strstr(i.err, "failed authentication"));
	assert_non_null(strstr(i.err, "node 'n2'"));
	/* the responder learns it too: the initiator tells it why */
	assert_true(r.r < 0);
	assert_non_null(strstr(r.err, "authentication failed"));
}

static void test_wrong_cluster_refused(void **state)
{
	struct side i = { 0 }, r = { 0 };

	(void)state;
	opts(&i.o, "other", "n1", secret_a);
	opts(&r.o, "lab", "n2", secret_a);
	handshake(&i, &r);
	assert_int_equal(r.r, -EPERM);
	assert_non_null(strstr(r.err, "belongs to cluster 'other', not 'lab'"));
	assert_int_equal(i.r, -ECONNREFUSED);
	assert_non_null(strstr(i.err, "refused the channel: this node belongs to cluster 'lab', not 'other'"));
}

static int refuse_n1(const char *peer, char *reason, size_t size, void *userdata)
{
	(void)userdata;
	if (!strcmp(peer, "n1")) {
		snprintf(reason, size, "node 'n1' is not a member of cluster 'lab'");
		return -EPERM;
	}
	return 0;
}

static void test_peer_check_and_expected_name(void **state)
{
	struct side i = { 0 }, r = { 0 };

	(void)state;
	opts(&i.o, "lab", "n1", secret_a);
	opts(&r.o, "lab", "n2", secret_a);
	r.o.check_peer = refuse_n1;
	handshake(&i, &r);
	assert_int_equal(r.r, -EPERM);
	assert_non_null(strstr(r.err, "is not a member"));
	assert_int_equal(i.r, -ECONNREFUSED);
	assert_non_null(strstr(i.err, "refused the channel: node 'n1' is not a member of cluster 'lab'"));

	opts(&i.o, "lab", "n1", secret_a);
	opts(&r.o, "lab", "n2", secret_a);
	i.o.expect_peer = "n3";
	handshake(&i, &r);
	assert_int_equal(i.r, -EPERM);
	assert_non_null(strstr(i.err, "the node that answered for 'n3' calls itself 'n2'"));
	assert_true(r.r < 0);
}

/* Raw bytes as a peer from the document would write them. */
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> 8 * k); }

static size_t doc_hello(uint8_t *f, uint16_t major, uint8_t role, const char *name, const char *cluster)
{
	size_t n = strlen(name), k = strlen(cluster);

	f[0] = 1;
	f[1] = 0;
	put16(f + 2, (uint16_t)(44 + n + k));
	memcpy(f + 4, "SMCH", 4);
	put16(f + 8, major);
	put16(f + 10, 0);
	f[12] = role;
	f[13] = (uint8_t)n;
	f[14] = (uint8_t)k;
	f[15] = 0;
	randombytes_buf(f + 16, 32);
	memcpy(f + 48, name, n);
	memcpy(f + 48 + n, cluster, k);
	return 48 + n + k;
}

static void test_version_refused_with_reason(void **state)
{
	struct side r = { 0 };
	uint8_t f[200], back[400];
	ssize_t n;
	int sp[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(write(sp[0], f, doc_hello(f, 2, 1, "n1", "lab")), 48 + 5);
	opts(&r.o, "lab", "n2", secret_a);
	r.fd = sp[1];
	r.accept = true;
	side_run(&r);
	assert_int_equal(r.r, -EPROTONOSUPPORT);
	assert_non_null(strstr(r.err, "speaks channel version 2.0, this node 1.0"));
	/* the peer got a REFUSE frame (type 4) with the reason */
	n = read(sp[0], back, sizeof(back) - 1);
	assert_true(n > 4);
	assert_int_equal(back[0], 4);
	back[n] = 0;
	assert_non_null(strstr((char *)back + 4, "this node speaks channel version 1.0, not 2.0"));
	close(sp[0]);
	close(sp[1]);
}

/* The first frame the initiator writes is the document's HELLO. */
static void test_hello_matches_document(void **state)
{
	struct side i = { 0 };
	uint8_t f[200];
	int sp[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	shutdown(sp[1], SHUT_WR); /* the "responder" says nothing */
	opts(&i.o, "lab", "node-1", secret_a);
	i.fd = sp[0];
	side_run(&i);
	assert_int_equal(i.r, -EPIPE);
	assert_int_equal(read(sp[1], f, sizeof(f)), 4 + 44 + 6 + 3);
	assert_int_equal(f[0], 1);
	assert_int_equal(f[1], 0);
	assert_int_equal(f[2] | f[3] << 8, 44 + 6 + 3);
	assert_memory_equal(f + 4, "SMCH", 4);
	assert_int_equal(f[8] | f[9] << 8, SOCKMIG_CHAN_VERSION_MAJOR);
	assert_int_equal(f[10] | f[11] << 8, SOCKMIG_CHAN_VERSION_MINOR);
	assert_int_equal(f[12], 1);
	assert_int_equal(f[13], 6);
	assert_int_equal(f[14], 3);
	assert_memory_equal(f + 48, "node-1lab", 9);
	close(sp[0]);
	close(sp[1]);
}

static void test_handshake_timeout(void **state)
{
	struct side i = { 0 };
	uint64_t t0;
	int sp[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	opts(&i.o, "lab", "n1", secret_a);
	i.o.timeout_ms = 200;
	i.fd = sp[0];
	t0 = (uint64_t)time(NULL);
	side_run(&i);
	assert_int_equal(i.r, -ETIMEDOUT);
	assert_true((uint64_t)time(NULL) - t0 <= 2);
	assert_non_null(strstr(i.err, "in time"));
	close(sp[0]);
	close(sp[1]);
}

/* ---- damage on the wire ---- */

struct tap {
	int wire;    /* the real connection to the responder */
	int capture; /* where the initiator's channel now writes */
};

static void tap_install(struct side *i, struct tap *t)
{
	int x[2], fd = sockmig_chan_fd(i->c);

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x), 0);
	t->wire = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	assert_true(t->wire >= 0);
	assert_int_equal(dup2(x[0], fd), fd);
	close(x[0]);
	t->capture = x[1];
}

/* The sealed bytes of one record the initiator just sent. */
static size_t tap_take(struct tap *t, uint8_t *buf, size_t size)
{
	struct pollfd p = { .fd = t->capture, .events = POLLIN };
	size_t got = 0;

	while (poll(&p, 1, 0) == 1 && got < size) {
		ssize_t n = read(t->capture, buf + got, size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static void test_flipped_byte_detected(void **state)
{
	(void)state;
	/* every byte of a record: the length, the tag, the ciphertext */
	for (size_t pos = 0; pos < 4 + 1 + 5 + 17; pos++) {
		struct side i = { 0 }, r = { 0 };
		uint8_t rec[64], type;
		const uint8_t *data;
		struct tap t;
		size_t n, len;
		int k;

		pair_up(&i, &r);
		tap_install(&i, &t);
		assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "hello", 5), 0);
		n = tap_take(&t, rec, sizeof(rec));
		assert_int_equal(n, 4 + 1 + 5 + 17);
		assert_int_equal(rec[0] | rec[1] << 8 | rec[2] << 16 | (uint32_t)rec[3] << 24, 1 + 5 + 17);
		rec[pos] ^= 0x01;
		assert_int_equal(write(t.wire, rec, n), (ssize_t)n);
		shutdown(t.wire, SHUT_WR);
		k = sockmig_chan_recv(r.c, &type, &data, &len);
		if (pos < 4) {
			/* a changed length: out of bounds, a short stream or a
			 * failed tag, never a record */
			assert_true(k < 0);
		} else {
			assert_int_equal(k, -EBADMSG);
			assert_non_null(strstr(sockmig_error(), "record 1 from node 'n1' failed authentication"));
		}
		close(t.wire);
		close(t.capture);
		sockmig_chan_free(i.c);
		sockmig_chan_free(r.c);
	}
}

static void test_truncated_stream_detected(void **state)
{
	struct side i = { 0 }, r = { 0 };
	uint8_t rec[64], type;
	const uint8_t *data;
	struct tap t;
	size_t n, len;

	(void)state;
	/* in the middle of a record */
	pair_up(&i, &r);
	tap_install(&i, &t);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "hello", 5), 0);
	n = tap_take(&t, rec, sizeof(rec));
	assert_int_equal(write(t.wire, rec, n - 3), (ssize_t)(n - 3));
	shutdown(t.wire, SHUT_WR);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), -EPIPE);
	assert_non_null(strstr(sockmig_error(), "in the middle of record 1"));
	close(t.wire);
	close(t.capture);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);

	/* between records, without END: a cut, not an end */
	pair_up(&i, &r);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "hello", 5), 0);
	shutdown(sockmig_chan_fd(i.c), SHUT_WR);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 1);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), -EPIPE);
	assert_non_null(strstr(sockmig_error(), "without ending it"));
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);

	/* a record dropped from the middle: the next one fails */
	pair_up(&i, &r);
	tap_install(&i, &t);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "one", 3), 0);
	tap_take(&t, rec, sizeof(rec));
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "two", 3), 0);
	n = tap_take(&t, rec, sizeof(rec));
	assert_int_equal(write(t.wire, rec, n), (ssize_t)n);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), -EBADMSG);
	close(t.wire);
	close(t.capture);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

static void test_oversized_refused_before_reading(void **state)
{
	struct side i = { 0 }, r = { 0 };
	uint8_t hdr[4], type;
	const uint8_t *data;
	struct tap t;
	size_t len;

	(void)state;
	pair_up(&i, &r);
	tap_install(&i, &t);
	/* Only the length arrives, and the stream stays open: a reader that
	 * waited for (or allocated) the body would time out instead. */
	put32(hdr, 1 + SOCKMIG_CHAN_RECORD_MAX + 17 + 1);
	assert_int_equal(write(t.wire, hdr, 4), 4);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), -EMSGSIZE);
	assert_non_null(strstr(sockmig_error(), "announced record 1 of"));
	sockmig_chan_free(r.c);
	close(t.wire);

	/* shorter than a tag */
	pair_up(&i, &r);
	tap_install(&i, &t);
	put32(hdr, 17);
	assert_int_equal(write(t.wire, hdr, 4), 4);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), -EMSGSIZE);
	close(t.wire);
	close(t.capture);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

static void test_record_timeout(void **state)
{
	struct side i = { 0 }, r = { 0 };
	const uint8_t *data;
	uint8_t type;
	size_t len;

	(void)state;
	pair_up(&i, &r);
	sockmig_chan_set_timeout(r.c, 100);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), -ETIMEDOUT);
	assert_non_null(strstr(sockmig_error(), "sent nothing on the channel for 100 ms"));
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

/* ---- the pump ---- */

struct stream_arg {
	int fd;
	const uint8_t *p;
	size_t len;
	uint8_t *got;
	size_t got_len, cap;
	bool close_after;
};

static void *writer(void *arg)
{
	struct stream_arg *a = arg;
	size_t off = 0;

	while (off < a->len) {
		ssize_t n = write(a->fd, a->p + off, a->len - off > 70000 ? 70000 : a->len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(a->fd, SHUT_WR);
	return NULL;
}

static void read_all(struct stream_arg *a)
{
	for (;;) {
		ssize_t n = read(a->fd, a->got + a->got_len, a->cap - a->got_len);
		if (n <= 0)
			break;
		a->got_len += (size_t)n;
	}
}

static void test_pump_both_ways(void **state)
{
	struct side i = { 0 }, r = { 0 };
	size_t size = 3 * SOCKMIG_CHAN_RECORD_MAX + 12345;
	uint8_t *a = malloc(size), *b = malloc(size);
	struct stream_arg wa, wb, ra, rb;
	pthread_t ta, tb;
	int fa, fb;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	randombytes_buf(a, size);
	randombytes_buf(b, size);
	pair_up(&i, &r);
	assert_int_equal(sockmig_chan_pump_start(i.c, &fa), 0);
	assert_int_equal(sockmig_chan_pump_start(r.c, &fb), 0);
	wa = (struct stream_arg){ .fd = fa, .p = a, .len = size };
	wb = (struct stream_arg){ .fd = fb, .p = b, .len = size };
	ra = (struct stream_arg){ .fd = fa, .got = malloc(size + 1), .cap = size + 1 };
	rb = (struct stream_arg){ .fd = fb, .got = malloc(size + 1), .cap = size + 1 };
	assert_int_equal(pthread_create(&ta, NULL, writer, &wa), 0);
	assert_int_equal(pthread_create(&tb, NULL, writer, &wb), 0);
	read_all(&rb);
	read_all(&ra);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	/* each side got exactly the other's bytes, then EOF */
	assert_int_equal(rb.got_len, size);
	assert_memory_equal(rb.got, a, size);
	assert_int_equal(ra.got_len, size);
	assert_memory_equal(ra.got, b, size);
	close(fa);
	close(fb);
	assert_int_equal(sockmig_chan_pump_wait(i.c), 0);
	assert_int_equal(sockmig_chan_pump_wait(r.c), 0);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
	free(a);
	free(b);
	free(ra.got);
	free(rb.got);
}

static void test_pump_closes_on_damage(void **state)
{
	struct side i = { 0 }, r = { 0 };
	uint8_t rec[128], buf[64];
	struct tap t;
	size_t n;
	ssize_t k;
	int fb;

	(void)state;
	pair_up(&i, &r);
	tap_install(&i, &t);
	assert_int_equal(sockmig_chan_pump_start(r.c, &fb), 0);
	/* a good record is delivered */
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "good", 4), 0);
	n = tap_take(&t, rec, sizeof(rec));
	assert_int_equal(write(t.wire, rec, n), (ssize_t)n);
	assert_int_equal(read(fb, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "good", 4);
	/* a damaged one never is: EOF, and the sentence from wait */
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "evil", 4), 0);
	n = tap_take(&t, rec, sizeof(rec));
	rec[n - 1] ^= 0x80;
	assert_int_equal(write(t.wire, rec, n), (ssize_t)n);
	k = read(fb, buf, sizeof(buf));
	assert_int_equal(k, 0);
	assert_int_equal(sockmig_chan_pump_wait(r.c), -EBADMSG);
	assert_non_null(strstr(sockmig_error(), "failed authentication"));
	/* and the network side was closed: the peer reads EOF */
	assert_int_equal(read(t.wire, buf, sizeof(buf)), 0);
	close(fb);
	close(t.wire);
	close(t.capture);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

static void test_pump_cancel(void **state)
{
	struct side i = { 0 }, r = { 0 };
	int fb;

	(void)state;
	pair_up(&i, &r);
	assert_int_equal(sockmig_chan_pump_start(r.c, &fb), 0);
	sockmig_chan_pump_cancel(r.c);
	assert_int_equal(sockmig_chan_pump_wait(r.c), -ECANCELED);
	close(fb);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exchange_both_ways),
		cmocka_unit_test(test_largest_record),
		cmocka_unit_test(test_wrong_secret_refused),
		cmocka_unit_test(test_wrong_cluster_refused),
		cmocka_unit_test(test_peer_check_and_expected_name),
		cmocka_unit_test(test_version_refused_with_reason),
		cmocka_unit_test(test_hello_matches_document),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_flipped_byte_detected),
		cmocka_unit_test(test_truncated_stream_detected),
		cmocka_unit_test(test_oversized_refused_before_reading),
		cmocka_unit_test(test_record_timeout),
		cmocka_unit_test(test_pump_both_ways),
		cmocka_unit_test(test_pump_closes_on_damage),
		cmocka_unit_test(test_pump_cancel),
	};

	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	randombytes_buf(secret_a, sizeof(secret_a));
	randombytes_buf(secret_b, sizeof(secret_b));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
