/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The node-to-node channel over socketpairs: a handshake and records both
 * ways, refusals (secret, cluster, version, name, the peer check, and the
 * node keys: a member that knows the secret but claims another's name, a
 * flipped signature byte, a name that is no member, our own key not ours),
 * and every kind of damage the receiver must catch: a flipped ciphertext
 * byte, a truncated stream, an oversized length (refused before it is read),
 * a peer silent for the timeout, the chan-corrupt-data fault point. The
 * pump relays a local fd both ways with EOF, and closes both sides on a
 * damaged record without handing any of it on.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "sockmig/chan.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

static uint8_t secret_a[32], secret_b[32];

/* Every node of the tests' cluster, with its Ed25519 key. */
#define N_NODES 4
static const char *const node_names[N_NODES] = { "n1", "n2", "n3", "node-1" };
static uint8_t node_sk[N_NODES][64];
static struct sockmig_member members[N_NODES];

static int node_index(const char *name)
{
	for (int k = 0; k < N_NODES; k++) {
		if (!strcmp(node_names[k], name))
			return k;
	}
	fail_msg("no node %s", name);
	return 0;
}

/* What a loaded config gives the channel: the secret, the node's key, the
 * members (the honest list unless the test forges one). */
static struct sockmig_keys *keys_of(struct sockmig_keys *k, const uint8_t *secret, const char *key_of,
				    const struct sockmig_member *list)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->cluster, secret, 32);
	k->has_node_key = true;
	memcpy(k->node, node_sk[node_index(key_of)], 64);
	k->members = list ? list : members;
	k->n_members = N_NODES;
	return k;
}

struct side {
	int fd;
	struct sockmig_chan_opts o;
	struct sockmig_keys k;
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

/* The side's own options: its node's key and the honest member list. */
static void opts_of(struct side *s, const char *cluster, const char *node, const uint8_t *secret)
{
	memset(&s->o, 0, sizeof(s->o));
	s->o.cluster = cluster;
	s->o.node = node;
	s->o.secret = keys_of(&s->k, secret, node, NULL);
	s->o.timeout_ms = 2000;
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
	opts_of(i, "lab", "n1", secret_a);
	opts_of(r, "lab", "n2", secret_a);
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
	opts_of(&i, "lab", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_b);
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
	opts_of(&i, "other", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
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
	opts_of(&i, "lab", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
	r.o.check_peer = refuse_n1;
	handshake(&i, &r);
	assert_int_equal(r.r, -EPERM);
	assert_non_null(strstr(r.err, "is not a member"));
	assert_int_equal(i.r, -ECONNREFUSED);
	assert_non_null(strstr(i.err, "refused the channel: node 'n1' is not a member of cluster 'lab'"));

	opts_of(&i, "lab", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
	i.o.expect_peer = "n3";
	handshake(&i, &r);
	assert_int_equal(i.r, -EPERM);
	assert_non_null(strstr(i.err, "the node that answered for 'n3' calls itself 'n2'"));
	assert_true(r.r < 0);
}

/* Raw bytes as a peer from the document would write them. */
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> 8 * k); }

/* A HELLO frame; fixed is 44 for version 1's layout, 76 for version 2's
 * (which adds the node key at body offset 44). */
static size_t doc_hello(uint8_t *f, uint16_t major, size_t fixed, uint8_t role, const char *name, const char *cluster)
{
	size_t n = strlen(name), k = strlen(cluster);

	f[0] = 1;
	f[1] = 0;
	put16(f + 2, (uint16_t)(fixed + n + k));
	memcpy(f + 4, "SMCH", 4);
	put16(f + 8, major);
	put16(f + 10, 0);
	f[12] = role;
	f[13] = (uint8_t)n;
	f[14] = (uint8_t)k;
	f[15] = 0;
	randombytes_buf(f + 16, fixed - 12);
	memcpy(f + 4 + fixed, name, n);
	memcpy(f + 4 + fixed + n, cluster, k);
	return 4 + fixed + n + k;
}

/* A HELLO of another major version is refused with both versions, whatever
 * its layout: version 1's shorter one, or a later one's. */
static void version_refused(uint16_t major, size_t fixed)
{
	struct side r = { 0 };
	uint8_t f[200], back[400];
	char want[100];
	size_t len;
	ssize_t n;
	int sp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	len = doc_hello(f, major, fixed, 1, "n1", "lab");
	assert_int_equal(write(sp[0], f, len), (ssize_t)len);
	opts_of(&r, "lab", "n2", secret_a);
	r.fd = sp[1];
	r.accept = true;
	side_run(&r);
	assert_int_equal(r.r, -EPROTONOSUPPORT);
	snprintf(want, sizeof(want), "speaks channel version %u.0, this node 2.0", major);
	assert_non_null(strstr(r.err, want));
	/* the peer got a REFUSE frame (type 4) with the reason */
	n = read(sp[0], back, sizeof(back) - 1);
	assert_true(n > 4);
	assert_int_equal(back[0], 4);
	back[n] = 0;
	snprintf(want, sizeof(want), "this node speaks channel version 2.0, not %u.0", major);
	assert_non_null(strstr((char *)back + 4, want));
	close(sp[0]);
	close(sp[1]);
}

static void test_version_refused_with_reason(void **state)
{
	(void)state;
	version_refused(1, 44);
	version_refused(3, 76);
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
	opts_of(&i, "lab", "node-1", secret_a);
	i.fd = sp[0];
	side_run(&i);
	assert_int_equal(i.r, -EPIPE);
	assert_int_equal(read(sp[1], f, sizeof(f)), 4 + 76 + 6 + 3);
	assert_int_equal(f[0], 1);
	assert_int_equal(f[1], 0);
	assert_int_equal(f[2] | f[3] << 8, 76 + 6 + 3);
	assert_memory_equal(f + 4, "SMCH", 4);
	assert_int_equal(f[8] | f[9] << 8, SOCKMIG_CHAN_VERSION_MAJOR);
	assert_int_equal(SOCKMIG_CHAN_VERSION_MAJOR, 2);
	assert_int_equal(f[10] | f[11] << 8, SOCKMIG_CHAN_VERSION_MINOR);
	assert_int_equal(f[12], 1);
	assert_int_equal(f[13], 6);
	assert_int_equal(f[14], 3);
	/* 16..47 the ephemeral key, 48..79 the node's public key */
	assert_memory_equal(f + 48, members[node_index("node-1")].key, 32);
	assert_memory_equal(f + 80, "node-1lab", 9);
	close(sp[0]);
	close(sp[1]);
}

/* ---- node keys ---- */

/* n3, which knows the secret, claims n1's name: it signs with its own key
 * (its forged config says that is n1's). Refused by the honest responder,
 * with the sentence, and the impostor is told why. */
static void test_claimed_name_refused(void **state)
{
	struct sockmig_member forged[N_NODES];
	struct side i = { 0 }, r = { 0 };

	(void)state;
	memcpy(forged, members, sizeof(forged));
	memcpy(forged[node_index("n1")].key, members[node_index("n3")].key, 32);
	memcpy(forged[node_index("n3")].key, members[node_index("n1")].key, 32);
	opts_of(&i, "lab", "n1", secret_a);
	i.o.secret = keys_of(&i.k, secret_a, "n3", forged);
	opts_of(&r, "lab", "n2", secret_a);
	handshake(&i, &r);
	assert_int_equal(r.r, -EACCES);
	assert_string_equal(r.err, "channel handshake: the peer calling itself 'n1' is not node 'n1': it knows the secret "
				   "of cluster 'lab' but holds another node key than this node's config gives 'n1' (a "
				   "member claiming another's name, or a stale key)");
	assert_int_equal(i.r, -ECONNREFUSED);
	assert_non_null(strstr(i.err, "node 'n2' refused the channel: node key refused: you are not node 'n1'"));

	/* the same from the other side: n3 answers for n2 */
	memcpy(forged, members, sizeof(forged));
	memcpy(forged[node_index("n2")].key, members[node_index("n3")].key, 32);
	memcpy(forged[node_index("n3")].key, members[node_index("n2")].key, 32);
	opts_of(&i, "lab", "n1", secret_a);
	i.o.expect_peer = "n2";
	opts_of(&r, "lab", "n2", secret_a);
	r.o.secret = keys_of(&r.k, secret_a, "n3", forged);
	handshake(&i, &r);
	assert_int_equal(i.r, -EACCES);
	assert_non_null(strstr(i.err, "the peer calling itself 'n2' is not node 'n2'"));
	assert_int_equal(r.r, -ECONNREFUSED);
	assert_non_null(strstr(r.err, "refused the channel: node key refused: you are not node 'n2'"));

	/* a good pair passes, and names each other */
	opts_of(&i, "lab", "n3", secret_a);
	i.o.expect_peer = "n1";
	opts_of(&r, "lab", "n1", secret_a);
	handshake(&i, &r);
	assert_int_equal(i.r, 0);
	assert_int_equal(r.r, 0);
	assert_string_equal(sockmig_chan_peer(i.c), "n1");
	assert_string_equal(sockmig_chan_peer(r.c), "n3");
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

static void test_member_and_own_key_checked(void **state)
{
	struct sockmig_member fewer[N_NODES];
	struct side i = { 0 }, r = { 0 };
	int sp[2];

	(void)state;
	/* a name that is not a member of the responder's config */
	memcpy(fewer, members, sizeof(fewer));
	snprintf(fewer[node_index("n3")].name, sizeof(fewer[0].name), "gone");
	opts_of(&i, "lab", "n3", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
	r.o.secret = keys_of(&r.k, secret_a, "n2", fewer);
	handshake(&i, &r);
	assert_int_equal(r.r, -EPERM);
	assert_non_null(strstr(r.err, "the peer calling itself 'n3' is not a member of cluster 'lab'"));
	assert_non_null(strstr(i.err, "refused the channel: node 'n3' is not a member of cluster 'lab'"));

	/* our own key-file holds another member's key: nothing is sent */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	opts_of(&i, "lab", "n1", secret_a);
	i.o.secret = keys_of(&i.k, secret_a, "n2", NULL);
	i.fd = sp[0];
	side_run(&i);
	assert_int_equal(i.r, -EACCES);
	assert_string_equal(i.err, "this node's key-file does not hold the key that the config gives node 'n1' (it is "
				   "another member's)");
	/* no key at all (a config loaded without its key-file) */
	i.k.has_node_key = false;
	side_run(&i);
	assert_int_equal(i.r, -EINVAL);
	assert_non_null(strstr(i.err, "signing key"));
	{
		struct pollfd p = { .fd = sp[1], .events = POLLIN };
		assert_int_equal(poll(&p, 1, 0), 0);
	}
	close(sp[0]);
	close(sp[1]);
}

/* Relays a <-> b, xoring byte `at` of what a sends with x (if x). */
struct relay {
	int a, b;
	size_t at;
	uint8_t x;
};

static void *relay_run(void *arg)
{
	struct relay *rl = arg;
	size_t from_a = 0;
	bool a_open = true, b_open = true;

	while (a_open || b_open) {
		struct pollfd p[2] = { { .fd = rl->a, .events = a_open ? POLLIN : 0 },
				       { .fd = rl->b, .events = b_open ? POLLIN : 0 } };
		uint8_t buf[4096];
		ssize_t n;

		if (poll(p, 2, 5000) <= 0)
			break;
		if (p[0].revents) {
			n = read(rl->a, buf, sizeof(buf));
			if (n <= 0) {
				a_open = false;
				shutdown(rl->b, SHUT_WR);
			} else {
				if (rl->at >= from_a && rl->at < from_a + (size_t)n)
					buf[rl->at - from_a] ^= rl->x;
				from_a += (size_t)n;
				if (write(rl->b, buf, (size_t)n) != n)
					a_open = false;
			}
		}
		if (p[1].revents) {
			n = read(rl->b, buf, sizeof(buf));
			if (n <= 0) {
				b_open = false;
				shutdown(rl->a, SHUT_WR);
			} else if (write(rl->a, buf, (size_t)n) != n) {
				b_open = false;
			}
		}
	}
	return NULL;
}

/* A handshake through a relay that flips byte `at` of the stream from
 * `from_initiator` ? I : R. */
static void handshake_flipped(struct side *i, struct side *r, bool from_initiator, size_t at)
{
	struct relay rl = { .at = at, .x = 0x20 };
	int x[2], y[2];
	pthread_t t, tr;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, y), 0);
	i->fd = x[0];
	r->fd = y[1];
	rl.a = from_initiator ? x[1] : y[0];
	rl.b = from_initiator ? y[0] : x[1];
	i->accept = false;
	r->accept = true;
	assert_int_equal(pthread_create(&tr, NULL, relay_run, &rl), 0);
	assert_int_equal(pthread_create(&t, NULL, side_run, r), 0);
	side_run(i);
	/* the failed side closes: the relay and the other side see EOF */
	if (i->r < 0)
		close(i->fd);
	pthread_join(t, NULL);
	if (r->r < 0)
		close(r->fd);
	if (i->r == 0)
		sockmig_chan_free(i->c);
	if (r->r == 0)
		sockmig_chan_free(r->c);
	pthread_join(tr, NULL);
	close(x[1]);
	close(y[0]);
}

static void test_flipped_signature_refused(void **state)
{
	/* HELLO from n1 or n2 in cluster lab: 4 + 76 + 2 + 3 bytes; then
	 * AUTH: 4, the MAC (32), the signature (64) */
	size_t hello = 4 + 76 + 2 + 3, sig = hello + 4 + 32;
	struct side i = { 0 }, r = { 0 };

	(void)state;
	/* the initiator's signature: the responder refuses (the MAC checked,
	 * the key in the HELLO is n1's: a changed handshake, not an impostor) */
	opts_of(&i, "lab", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
	handshake_flipped(&i, &r, true, sig + 17);
	assert_int_equal(r.r, -EACCES);
	assert_string_equal(r.err, "channel handshake: the peer calling itself 'n1' failed authentication: its "
				   "signature does not verify with the key of node 'n1' (the handshake was changed in "
				   "transit)");
	assert_true(i.r < 0);
	/* the responder's: the initiator refuses */
	opts_of(&i, "lab", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
	handshake_flipped(&i, &r, false, sig + 63);
	assert_int_equal(i.r, -EACCES);
	assert_non_null(strstr(i.err, "the peer calling itself 'n2' failed authentication: its signature does not verify"));
	assert_true(r.r < 0);
	assert_non_null(strstr(r.err, "refused the channel: authentication failed: your signature does not verify"));
	/* the node key in the HELLO: the two sides' transcripts differ, so
	 * the first MAC checked (the responder's, by the initiator) fails */
	opts_of(&i, "lab", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
	handshake_flipped(&i, &r, true, 4 + 44 + 3);
	assert_int_equal(i.r, -EACCES);
	assert_non_null(strstr(i.err, "node 'n2' failed authentication: it does not know the secret"));
	assert_int_equal(r.r, -ECONNREFUSED);
	/* and the relay itself, untouched, is no obstacle */
	opts_of(&i, "lab", "n1", secret_a);
	opts_of(&r, "lab", "n2", secret_a);
	handshake_flipped(&i, &r, true, (size_t)-1);
	assert_int_equal(i.r, 0);
	assert_int_equal(r.r, 0);
}

static void test_handshake_timeout(void **state)
{
	struct side i = { 0 };
	uint64_t t0;
	int sp[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	opts_of(&i, "lab", "n1", secret_a);
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

/* SOCKMIG_FAULT=chan-corrupt-data: only the Nth DATA record this process
 * seals is damaged (other types are not counted), and the receiver says so. */
static void test_fault_corrupt_data(void **state)
{
	struct side i = { 0 }, r = { 0 };
	const uint8_t *data;
	uint8_t type;
	size_t len;

	(void)state;
	pair_up(&i, &r);
	setenv("SOCKMIG_FAULT", "chan-corrupt-data", 1);
	setenv("SOCKMIG_FAULT_RECORD", "2", 1);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "one", 3), 0);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_REQUEST, "req", 3), 0);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "two", 3), 0);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 1);
	assert_memory_equal(data, "one", 3);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 1);
	assert_int_equal(type, SOCKMIG_CHAN_REQUEST);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), -EBADMSG);
	assert_string_equal(sockmig_error(), "record 3 from node 'n1' failed authentication: the stream was changed or "
					     "damaged in transit");
	/* the receiver told the sender why */
	assert_int_equal(sockmig_chan_recv(i.c, &type, &data, &len), -ECONNABORTED);
	assert_string_equal(sockmig_error(), "node 'n2' gave up the channel: record 3 from node 'n1' failed "
					     "authentication: the stream was changed or damaged in transit");
	/* which callers cannot send themselves */
	assert_int_equal(sockmig_chan_send(r.c, SOCKMIG_CHAN_ERROR, "x", 1), -EINVAL);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
	/* once only: the next DATA record of the process goes out intact */
	pair_up(&i, &r);
	assert_int_equal(sockmig_chan_send(i.c, SOCKMIG_CHAN_DATA, "three", 5), 0);
	assert_int_equal(sockmig_chan_recv(r.c, &type, &data, &len), 1);
	assert_memory_equal(data, "three", 5);
	unsetenv("SOCKMIG_FAULT");
	unsetenv("SOCKMIG_FAULT_RECORD");
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
	/* and the network side: the peer is told why in an ERROR record,
	 * then reads EOF */
	assert_int_equal(dup2(t.wire, sockmig_chan_fd(i.c)), sockmig_chan_fd(i.c));
	{
		const uint8_t *data;
		uint8_t type;
		size_t len;

		assert_int_equal(sockmig_chan_recv(i.c, &type, &data, &len), -ECONNABORTED);
		assert_string_equal(sockmig_error(), "node 'n2' gave up the channel: record 2 from node 'n1' failed "
						     "authentication: the stream was changed or damaged in transit");
		/* the channel is dead from then on, and says nothing back */
		assert_int_equal(sockmig_chan_recv(i.c, &type, &data, &len), 0);
	}
	assert_int_equal(read(t.wire, buf, sizeof(buf)), 0);
	close(fb);
	close(t.wire);
	close(t.capture);
	sockmig_chan_free(i.c);
	sockmig_chan_free(r.c);
}

static void *cancel_after_5s(void *arg)
{
	struct timespec ts = { .tv_sec = 5 };

	nanosleep(&ts, NULL);
	sockmig_chan_pump_cancel(arg);
	return NULL;
}

/* Our local end is done and gone (EOF, then hung up) and the peer never
 * sends its END (a cut link): the pump waits for it the timeout, asleep,
 * then fails; a poll() woken by the hang-up every time would spin, and
 * never see its timeout (the watchdog cancels it after 5 s). */
static void test_pump_waits_for_end_asleep(void **state)
{
	struct side i = { 0 }, r = { 0 };
	struct rusage ru0, ru1;
	uint64_t t0, cpu_us;
	pthread_t dog;
	int fb;

	(void)state;
	pair_up(&i, &r);
	sockmig_chan_set_timeout(r.c, 300);
	assert_int_equal(getrusage(RUSAGE_SELF, &ru0), 0);
	t0 = (uint64_t)time(NULL);
	assert_int_equal(sockmig_chan_pump_start(r.c, &fb), 0);
	close(fb);
	assert_int_equal(pthread_create(&dog, NULL, cancel_after_5s, r.c), 0);
	assert_int_equal(sockmig_chan_pump_wait(r.c), -ETIMEDOUT);
	assert_string_equal(sockmig_error(), "node 'n1' did not end its side of the channel within 300 ms of ours");
	assert_true((uint64_t)time(NULL) - t0 <= 2);
	assert_int_equal(getrusage(RUSAGE_SELF, &ru1), 0);
	cpu_us = (uint64_t)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000 +
		 (uint64_t)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
	if (cpu_us > 100000)
		fail_msg("the pump used %llu us of CPU waiting 300 ms for the peer", (unsigned long long)cpu_us);
	pthread_cancel(dog);
	pthread_join(dog, NULL);
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
		cmocka_unit_test(test_claimed_name_refused),
		cmocka_unit_test(test_member_and_own_key_checked),
		cmocka_unit_test(test_flipped_signature_refused),
		cmocka_unit_test(test_handshake_timeout),
		cmocka_unit_test(test_flipped_byte_detected),
		cmocka_unit_test(test_truncated_stream_detected),
		cmocka_unit_test(test_oversized_refused_before_reading),
		cmocka_unit_test(test_record_timeout),
		cmocka_unit_test(test_fault_corrupt_data),
		cmocka_unit_test(test_pump_both_ways),
		cmocka_unit_test(test_pump_closes_on_damage),
		cmocka_unit_test(test_pump_waits_for_end_asleep),
		cmocka_unit_test(test_pump_cancel),
	};

	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	randombytes_buf(secret_a, sizeof(secret_a));
	randombytes_buf(secret_b, sizeof(secret_b));
	for (int k = 0; k < N_NODES; k++) {
		snprintf(members[k].name, sizeof(members[k].name), "%s", node_names[k]);
		members[k].has_key = true;
		crypto_sign_keypair(members[k].key, node_sk[k]);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
