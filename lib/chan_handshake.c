/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The channel's handshake: include/sockmig/chan.h is the manual,
 * docs/wire-protocol.md the bytes (version 2.0). Both sides prove the
 * cluster's secret (a MAC under keys derived from it, the ephemeral key
 * exchange and the transcript) and their own node key (an Ed25519
 * signature of the transcript, checked against the key the verifier's own
 * config gives the name the peer claims). Nothing the peer says is believed
 * before both proofs checked.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include "chan_impl.h"
#include "util.h"

/* ---- wire constants (docs/wire-protocol.md) ---- */

#define HS_MAGIC "SMCH"
#define HS_FRAME_MAX 1024
/* magic and versions: what any version's HELLO starts with */
#define HS_HELLO_VERSIONED 8
#define HS_HELLO_FIXED 76
#define HS_REASON_MAX 300
#define AUTH_MAC_SIZE 32
#define AUTH_SIZE (AUTH_MAC_SIZE + crypto_sign_BYTES)

enum {
	HS_HELLO = 1,
	HS_AUTH = 2,
	HS_STREAM = 3,
	HS_REFUSE = 4,
};

enum { ROLE_INITIATOR = 1, ROLE_RESPONDER = 2 };

/* Subkey ids of crypto_kdf under the session's root key. */
enum { KDF_MAC_RESPONDER = 1, KDF_MAC_INITIATOR = 2, KDF_STREAM_I2R = 3, KDF_STREAM_R2I = 4 };
#define KDF_CONTEXT "smchan2_"
#define ROOT_LABEL "sockmig channel v2 root key"
#define SIG_LABEL "sockmig channel v2 node signature"

#define HEADERBYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES

static void set_peer(struct sockmig_chan *c, const char *name)
{
	snprintf(c->peer, sizeof(c->peer), "%s", name);
	snprintf(c->peer_desc, sizeof(c->peer_desc), "node '%s'", name);
}

static unsigned timeout_of(const struct sockmig_chan_opts *o)
{
	return o->timeout_ms ? o->timeout_ms : SOCKMIG_CHAN_DEFAULT_TIMEOUT_MS;
}

/* Exactly len bytes; -EPIPE at EOF (*ret_got tells how many came first). */
static int read_deadline(int fd, void *buf, size_t len, uint64_t deadline, size_t *ret_got)
{
	uint8_t *p = buf;
	size_t got = 0;
	int r = 0;

	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == 0) {
			r = -EPIPE;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			r = -errno;
			break;
		}
		r = sm_chan_wait_fd(fd, POLLIN, deadline);
		if (r < 0)
			break;
	}
	if (ret_got)
		*ret_got = got;
	return r;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* Untrusted text for a sentence: printable ASCII, the rest as '?'. */
static void printable(char *dst, size_t size, const uint8_t *src, size_t len)
{
	size_t i;

	if (size == 0)
		return;
	for (i = 0; i < len && i + 1 < size; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
	dst[i] = '\0';
}

/* ---- handshake frames ---- */

struct hs_frame {
	uint8_t type;
	uint16_t len;
	uint8_t raw[4 + HS_FRAME_MAX]; /* header and body, as on the wire */
};

static int hs_frame_build(struct hs_frame *f, uint8_t type, const void *body, size_t len)
{
	if (len > HS_FRAME_MAX)
		return -EMSGSIZE;
	f->type = type;
	f->len = (uint16_t)len;
	f->raw[0] = type;
	f->raw[1] = 0;
	put_le16(f->raw + 2, (uint16_t)len);
	if (len)
		memcpy(f->raw + 4, body, len);
	return 0;
}

static int hs_send(int fd, const struct hs_frame *const *frames, size_t n, uint64_t deadline, const char *peer)
{
	uint8_t buf[4 * (4 + HS_FRAME_MAX)];
	size_t len = 0;
	int r;

	for (size_t i = 0; i < n; i++) {
		memcpy(buf + len, frames[i]->raw, 4u + frames[i]->len);
		len += 4u + frames[i]->len;
	}
	r = sm_chan_write_deadline(fd, buf, len, deadline);
	sodium_memzero(buf, len);
	if (r == -ETIMEDOUT)
		return sm_fail(r, "channel handshake: %s did not take our data in time", peer);
	if (r < 0)
		return sm_fail(r, "channel handshake: cannot send to %s: %s", peer, strerror(-r));
	return 0;
}

static int hs_refuse(int fd, uint64_t deadline, const char *reason)
{
	struct hs_frame f;
	const struct hs_frame *fs[1] = { &f };
	size_t len = strlen(reason);
	char saved[512];
	int r;

	if (len > HS_REASON_MAX)
		len = HS_REASON_MAX;
	hs_frame_build(&f, HS_REFUSE, reason, len);
	/* Best effort and never the error that counts: keep the sentence. */
	snprintf(saved, sizeof(saved), "%s", sockmig_error());
	r = hs_send(fd, fs, 1, deadline, "the peer");
	sm_fail(0, "%s", saved);
	return r;
}

/* Read one frame; a REFUSE from the peer becomes the error, with its reason. */
static int hs_recv(int fd, uint64_t deadline, const char *peer, const char *step, struct hs_frame *f)
{
	size_t got = 0;
	int r = read_deadline(fd, f->raw, 4, deadline, &got);

	if (r == 0) {
		f->type = f->raw[0];
		f->len = get_le16(f->raw + 2);
		if (f->type < HS_HELLO || f->type > HS_REFUSE || f->raw[1] != 0)
			return sm_fail(-EPROTO, "channel handshake: %s sent a frame of type %u flags %u while we waited for %s: "
						"it does not speak the sockmig channel protocol",
				       peer, f->raw[0], f->raw[1], step);
		if (f->len > HS_FRAME_MAX)
			return sm_fail(-EPROTO, "channel handshake: %s announced a frame of %u bytes, more than the limit %d",
				       peer, f->len, HS_FRAME_MAX);
		r = read_deadline(fd, f->raw + 4, f->len, deadline, &got);
		got += 4;
	}
	if (r == -ETIMEDOUT)
		return sm_fail(r, "channel handshake: %s sent nothing for %s in time", peer, step);
	if (r == -EPIPE)
		return sm_fail(r, "channel handshake: %s closed the connection %s %s", peer,
			       got ? "in the middle of" : "instead of sending", step);
	if (r < 0)
		return sm_fail(r, "channel handshake: cannot read from %s: %s", peer, strerror(-r));
	if (f->type == HS_REFUSE) {
		char reason[HS_REASON_MAX + 1];
		printable(reason, sizeof(reason), f->raw + 4, f->len);
		return sm_fail(-ECONNREFUSED, "%s refused the channel: %s", peer, reason[0] ? reason : "(no reason)");
	}
	return 0;
}

struct hello {
	uint16_t major, minor;
	uint8_t role;
	uint8_t pk[crypto_kx_PUBLICKEYBYTES];
	uint8_t node_pk[SOCKMIG_KEY_SIZE];
	char name[SOCKMIG_NAME_MAX + 1];
	char cluster[SOCKMIG_NAME_MAX + 1];
};

static void hello_build(struct hs_frame *f, uint8_t role, const uint8_t *pk, const uint8_t *node_pk, const char *name,
			const char *cluster)
{
	uint8_t body[HS_HELLO_FIXED + 2 * SOCKMIG_NAME_MAX];
	size_t n = strlen(name), k = strlen(cluster);

	memcpy(body, HS_MAGIC, 4);
	put_le16(body + 4, SOCKMIG_CHAN_VERSION_MAJOR);
	put_le16(body + 6, SOCKMIG_CHAN_VERSION_MINOR);
	body[8] = role;
	body[9] = (uint8_t)n;
	body[10] = (uint8_t)k;
	body[11] = 0;
	memcpy(body + 12, pk, crypto_kx_PUBLICKEYBYTES);
	memcpy(body + 44, node_pk, SOCKMIG_KEY_SIZE);
	memcpy(body + HS_HELLO_FIXED, name, n);
	memcpy(body + HS_HELLO_FIXED + n, cluster, k);
	hs_frame_build(f, HS_HELLO, body, HS_HELLO_FIXED + n + k);
}

/* Decode a HELLO. The sentence for a refusal goes to reason too, so that
 * the responder can tell the peer. */
static int hello_parse(const struct hs_frame *f, uint8_t want_role, const char *peer, struct hello *h, char *reason,
		       size_t size)
{
	const uint8_t *b = f->raw + 4;
	char shown[80];
	size_t n, k;

	reason[0] = '\0';
	if (f->type != HS_HELLO)
		return sm_fail(-EPROTO, "channel handshake: %s sent a frame of type %u instead of HELLO", peer, f->type);
	if (f->len < HS_HELLO_VERSIONED || memcmp(b, HS_MAGIC, 4)) {
		snprintf(reason, size, "not a sockmig channel HELLO");
		return sm_fail(-EPROTO, "channel handshake: %s does not speak the sockmig channel protocol", peer);
	}
	/* The version before the length: a HELLO of another major version
	 * has another layout, and deserves the version's sentence. */
	h->major = get_le16(b + 4);
	h->minor = get_le16(b + 6);
	if (h->major != SOCKMIG_CHAN_VERSION_MAJOR) {
		snprintf(reason, size, "this node speaks channel version %d.%d, not %u.%u", SOCKMIG_CHAN_VERSION_MAJOR,
			 SOCKMIG_CHAN_VERSION_MINOR, h->major, h->minor);
		return sm_fail(-EPROTONOSUPPORT, "channel handshake: %s speaks channel version %u.%u, this node %d.%d", peer,
			       h->major, h->minor, SOCKMIG_CHAN_VERSION_MAJOR, SOCKMIG_CHAN_VERSION_MINOR);
	}
	if (f->len < HS_HELLO_FIXED) {
		snprintf(reason, size, "malformed HELLO");
		return sm_fail(-EPROTO, "channel handshake: %s sent a malformed HELLO", peer);
	}
	h->role = b[8];
	n = b[9];
	k = b[10];
	/* The minor version may append fields after the names: ignored here,
	 * but covered by the transcript like everything else. */
	if (h->role != want_role || n < 1 || n > SOCKMIG_NAME_MAX || k < 1 || k > SOCKMIG_NAME_MAX ||
	    HS_HELLO_FIXED + n + k > f->len) {
		snprintf(reason, size, "malformed HELLO");
		return sm_fail(-EPROTO, "channel handshake: %s sent a malformed HELLO", peer);
	}
	memcpy(h->pk, b + 12, sizeof(h->pk));
	memcpy(h->node_pk, b + 44, sizeof(h->node_pk));
	memcpy(h->name, b + HS_HELLO_FIXED, n);
	h->name[n] = '\0';
	memcpy(h->cluster, b + HS_HELLO_FIXED + n, k);
	h->cluster[k] = '\0';
	if (!sockmig_name_valid(h->name) || !sockmig_name_valid(h->cluster)) {
		printable(shown, sizeof(shown), b + HS_HELLO_FIXED, n);
		snprintf(reason, size, "malformed node or cluster name");
		return sm_fail(-EPROTO, "channel handshake: %s sent an invalid node or cluster name ('%s')", peer, shown);
	}
	return 0;
}

struct keys {
	uint8_t mac_i[32], mac_r[32];
	uint8_t stream_i2r[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	uint8_t stream_r2i[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	uint8_t th[32];
};

static void keys_wipe(struct keys *k)
{
	sodium_memzero(k, sizeof(*k));
}

/*
 * root = BLAKE2b-256(key = secret, "sockmig channel v2 root key" || th ||
 * kx_i2r || kx_r2i); every key is a crypto_kdf subkey of root. The kx keys
 * bind the ephemeral Diffie-Hellman result, th both HELLOs, the secret the
 * cluster: each MAC proves the secret and this very session.
 */
static void keys_derive(struct keys *k, const uint8_t *secret, const struct hs_frame *hi, const struct hs_frame *hr,
			const uint8_t *kx_i2r, const uint8_t *kx_r2i)
{
	crypto_generichash_state st;
	uint8_t root[crypto_kdf_KEYBYTES];

	crypto_generichash_init(&st, NULL, 0, sizeof(k->th));
	crypto_generichash_update(&st, hi->raw, 4u + hi->len);
	crypto_generichash_update(&st, hr->raw, 4u + hr->len);
	crypto_generichash_final(&st, k->th, sizeof(k->th));

	crypto_generichash_init(&st, secret, SOCKMIG_SECRET_SIZE, sizeof(root));
	crypto_generichash_update(&st, (const uint8_t *)ROOT_LABEL, strlen(ROOT_LABEL));
	crypto_generichash_update(&st, k->th, sizeof(k->th));
	crypto_generichash_update(&st, kx_i2r, crypto_kx_SESSIONKEYBYTES);
	crypto_generichash_update(&st, kx_r2i, crypto_kx_SESSIONKEYBYTES);
	crypto_generichash_final(&st, root, sizeof(root));

	crypto_kdf_derive_from_key(k->mac_r, sizeof(k->mac_r), KDF_MAC_RESPONDER, KDF_CONTEXT, root);
	crypto_kdf_derive_from_key(k->mac_i, sizeof(k->mac_i), KDF_MAC_INITIATOR, KDF_CONTEXT, root);
	crypto_kdf_derive_from_key(k->stream_i2r, sizeof(k->stream_i2r), KDF_STREAM_I2R, KDF_CONTEXT, root);
	crypto_kdf_derive_from_key(k->stream_r2i, sizeof(k->stream_r2i), KDF_STREAM_R2I, KDF_CONTEXT, root);
	sodium_memzero(root, sizeof(root));
	sodium_memzero(&st, sizeof(st));
}

/*
 * What a node signs: "sockmig channel v2 node signature" || role || th. The
 * transcript hash covers both HELLOs (both ephemeral keys, both names and
 * node keys, the cluster, the versions); the role keeps a responder's
 * signature from passing for an initiator's.
 */
static size_t sig_message(uint8_t *msg, uint8_t role, const uint8_t th[32])
{
	size_t n = strlen(SIG_LABEL);

	memcpy(msg, SIG_LABEL, n);
	msg[n] = role;
	memcpy(msg + n + 1, th, 32);
	return n + 1 + 32;
}

/* AUTH body: the MAC under mac_key, then this node's signature. */
static void auth_build(struct hs_frame *f, const uint8_t mac_key[32], const uint8_t *node_sk, uint8_t role,
		       const uint8_t th[32])
{
	uint8_t body[AUTH_SIZE], msg[64 + 32];
	size_t n = sig_message(msg, role, th);

	crypto_generichash(body, AUTH_MAC_SIZE, th, 32, mac_key, 32);
	crypto_sign_detached(body + AUTH_MAC_SIZE, NULL, msg, n, node_sk);
	hs_frame_build(f, HS_AUTH, body, sizeof(body));
}

static bool auth_mac_ok(const struct hs_frame *f, const uint8_t mac_key[32], const uint8_t th[32])
{
	uint8_t mac[AUTH_MAC_SIZE];

	if (f->type != HS_AUTH || f->len != AUTH_SIZE)
		return false;
	crypto_generichash(mac, sizeof(mac), th, 32, mac_key, 32);
	return sodium_memcmp(mac, f->raw + 4, AUTH_MAC_SIZE) == 0;
}

static const struct sockmig_member *member_of(const struct sockmig_keys *k, const char *name)
{
	for (size_t i = 0; i < k->n_members; i++) {
		if (!strcmp(k->members[i].name, name))
			return k->members[i].has_key ? &k->members[i] : NULL;
	}
	return NULL;
}

/*
 * The peer's node key: its signature in AUTH (whose MAC checked: it knows
 * the secret) must verify with the key that our own config gives the name
 * it claims. The key in its HELLO only tells a node with another key (a
 * member claiming another's name, a stale key) from a changed handshake.
 */
static int verify_node(const struct sockmig_chan_opts *o, const struct hello *h, uint8_t role, const uint8_t th[32],
		       const struct hs_frame *auth, char *reason, size_t size)
{
	const struct sockmig_member *m = member_of(o->secret, h->name);
	uint8_t msg[64 + 32];
	size_t n = sig_message(msg, role, th);

	if (!m) {
		snprintf(reason, size, "node '%s' is not a member of cluster '%s'", h->name, o->cluster);
		return sm_fail(-EPERM, "channel handshake: the peer calling itself '%s' is not a member of cluster '%s'",
			       h->name, o->cluster);
	}
	if (crypto_sign_verify_detached(auth->raw + 4 + AUTH_MAC_SIZE, msg, n, m->key) == 0)
		return 0;
	if (sodium_memcmp(h->node_pk, m->key, SOCKMIG_KEY_SIZE) != 0) {
		snprintf(reason, size, "node key refused: you are not node '%s' (your key is not the one cluster '%s' gives it)",
			 h->name, o->cluster);
		return sm_fail(-EACCES, "channel handshake: the peer calling itself '%s' is not node '%s': it knows the "
					"secret of cluster '%s' but holds another node key than this node's config gives "
					"'%s' (a member claiming another's name, or a stale key)",
			       h->name, h->name, o->cluster, h->name);
	}
	snprintf(reason, size, "authentication failed: your signature does not verify with the key of node '%s'", h->name);
	return sm_fail(-EACCES, "channel handshake: the peer calling itself '%s' failed authentication: its signature "
				"does not verify with the key of node '%s' (the handshake was changed in transit)",
		       h->name, h->name);
}

/* Frees c without touching its fd: the caller keeps the fd on failure. */
static void chan_discard(struct sockmig_chan *c, int fl_saved)
{
	if (!c)
		return;
	if (fl_saved >= 0)
		fcntl(c->fd, F_SETFL, fl_saved);
	c->fd = -1;
	sockmig_chan_free(c);
}

/* Our own side: a secret, and a node key that is the one our config gives
 * the node we speak for (`sockmigd --node` may have changed which). */
static int check_opts(const struct sockmig_chan_opts *o)
{
	const struct sockmig_member *self;

	if (!o || !o->secret || !sockmig_name_valid(o->cluster) || !sockmig_name_valid(o->node))
		return sm_fail(-EINVAL, "a channel needs a valid cluster name, node name and secret");
	if (sodium_init() < 0)
		return sm_fail(-EIO, "cannot initialise libsodium");
	if (!o->secret->has_node_key)
		return sm_fail(-EINVAL, "a channel needs this node's signing key (the config's key-file)");
	self = member_of(o->secret, o->node);
	if (!self)
		return sm_fail(-EINVAL, "this node '%s' has no member line with a key in the config of cluster '%s'",
			       o->node, o->cluster);
	if (sodium_memcmp(self->key, o->secret->node + 32, SOCKMIG_KEY_SIZE) != 0)
		return sm_fail(-EACCES, "this node's key-file does not hold the key that the config gives node '%s' "
					"(it is another member's)",
			       o->node);
	return 0;
}

static int run_check_peer(const struct sockmig_chan_opts *o, const char *peer, char *reason, size_t size)
{
	int r;

	if (!o->check_peer)
		return 0;
	reason[0] = '\0';
	r = o->check_peer(peer, reason, size, o->userdata);
	if (r >= 0)
		return 0;
	if (!reason[0])
		snprintf(reason, size, "node '%s' is not accepted here", peer);
	return sm_fail(r, "%s", reason);
}

int sockmig_chan_connect(int fd, const struct sockmig_chan_opts *o, struct sockmig_chan **ret)
{
	uint8_t pk[crypto_kx_PUBLICKEYBYTES], sk[crypto_kx_SECRETKEYBYTES];
	uint8_t kx_rx[crypto_kx_SESSIONKEYBYTES], kx_tx[crypto_kx_SESSIONKEYBYTES];
	struct hs_frame hi, hr, f, auth, stream;
	const struct hs_frame *out[2];
	struct sockmig_chan *c = NULL;
	char reason[HS_REASON_MAX + 1], who[96];
	struct hello h;
	struct keys k = { 0 };
	uint64_t deadline;
	int r, fl;

	r = check_opts(o);
	if (r < 0)
		return r;
	fl = fcntl(fd, F_GETFL);
	r = sm_chan_new(fd, timeout_of(o), &c);
	if (r < 0)
		return r;
	deadline = sm_chan_deadline_in(c->timeout_ms);
	snprintf(who, sizeof(who), "%s", o->expect_peer ? o->expect_peer : "the peer");

	crypto_kx_keypair(pk, sk);
	hello_build(&hi, ROLE_INITIATOR, pk, o->secret->node + 32, o->node, o->cluster);
	out[0] = &hi;
	r = hs_send(fd, out, 1, deadline, who);
	if (r < 0)
		goto out;
	r = hs_recv(fd, deadline, who, "its HELLO", &hr);
	if (r < 0)
		goto out;
	r = hello_parse(&hr, ROLE_RESPONDER, who, &h, reason, sizeof(reason));
	if (r < 0)
		goto out;
	if (strcmp(h.cluster, o->cluster)) {
		r = sm_fail(-EPERM, "channel handshake: %s belongs to cluster '%s', not '%s'", who, h.cluster, o->cluster);
		goto out_refuse_cluster;
	}
	if (o->expect_peer && strcmp(h.name, o->expect_peer)) {
		r = sm_fail(-EPERM, "channel handshake: the node that answered for '%s' calls itself '%s'", o->expect_peer,
			    h.name);
		snprintf(reason, sizeof(reason), "we dialed node '%s', not '%s'", o->expect_peer, h.name);
		goto out_refuse;
	}
	set_peer(c, h.name);
	snprintf(who, sizeof(who), "node '%s'", h.name);
	if (crypto_kx_client_session_keys(kx_rx, kx_tx, pk, sk, h.pk) < 0) {
		r = sm_fail(-EPROTO, "channel handshake: %s sent an unusable public key", who);
		snprintf(reason, sizeof(reason), "unusable public key");
		goto out_refuse;
	}
	keys_derive(&k, o->secret->cluster, &hi, &hr, kx_tx, kx_rx);

	r = hs_recv(fd, deadline, who, "its AUTH", &f);
	if (r < 0)
		goto out;
	if (!auth_mac_ok(&f, k.mac_r, k.th)) {
		r = sm_fail(-EACCES, "channel handshake: %s failed authentication: it does not know the secret of "
				     "cluster '%s' (or the handshake was changed in transit)",
			    who, o->cluster);
		snprintf(reason, sizeof(reason), "authentication failed: node '%s' does not share this cluster secret",
			 o->node);
		goto out_refuse;
	}
	r = verify_node(o, &h, ROLE_RESPONDER, k.th, &f, reason, sizeof(reason));
	if (r < 0)
		goto out_refuse;
	r = run_check_peer(o, h.name, reason, sizeof(reason));
	if (r < 0)
		goto out_refuse;

	auth_build(&auth, k.mac_i, o->secret->node, ROLE_INITIATOR, k.th);
	{
		uint8_t hdr[HEADERBYTES];
		crypto_secretstream_xchacha20poly1305_init_push(&c->tx_st, hdr, k.stream_i2r);
		hs_frame_build(&stream, HS_STREAM, hdr, sizeof(hdr));
	}
	out[0] = &auth;
	out[1] = &stream;
	r = hs_send(fd, out, 2, deadline, who);
	if (r < 0)
		goto out;
	r = hs_recv(fd, deadline, who, "its STREAM", &f);
	if (r < 0)
		goto out;
	if (f.type != HS_STREAM || f.len != HEADERBYTES) {
		r = sm_fail(-EPROTO, "channel handshake: %s sent a frame of type %u instead of STREAM", who, f.type);
		goto out;
	}
	if (crypto_secretstream_xchacha20poly1305_init_pull(&c->rx_st, f.raw + 4, k.stream_r2i) < 0) {
		r = sm_fail(-EPROTO, "channel handshake: %s sent an invalid stream header", who);
		goto out;
	}
	r = 0;
	goto out;

out_refuse_cluster:
	snprintf(reason, sizeof(reason), "this node belongs to cluster '%s', not '%s'", o->cluster, h.cluster);
out_refuse:
	hs_refuse(fd, deadline, reason);
out:
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(kx_rx, sizeof(kx_rx));
	sodium_memzero(kx_tx, sizeof(kx_tx));
	keys_wipe(&k);
	if (r < 0) {
		chan_discard(c, fl);
		return r;
	}
	*ret = c;
	return 0;
}

int sockmig_chan_accept(int fd, const struct sockmig_chan_opts *o, struct sockmig_chan **ret)
{
	uint8_t pk[crypto_kx_PUBLICKEYBYTES], sk[crypto_kx_SECRETKEYBYTES];
	uint8_t kx_rx[crypto_kx_SESSIONKEYBYTES], kx_tx[crypto_kx_SESSIONKEYBYTES];
	struct hs_frame hi, hr, f, auth, stream;
	const struct hs_frame *out[2];
	struct sockmig_chan *c = NULL;
	char reason[HS_REASON_MAX + 1], who[96] = "the peer";
	struct hello h;
	struct keys k = { 0 };
	uint64_t deadline;
	int r, fl;

	r = check_opts(o);
	if (r < 0)
		return r;
	fl = fcntl(fd, F_GETFL);
	r = sm_chan_new(fd, timeout_of(o), &c);
	if (r < 0)
		return r;
	deadline = sm_chan_deadline_in(c->timeout_ms);

	r = hs_recv(fd, deadline, who, "its HELLO", &hi);
	if (r < 0)
		goto out;
	r = hello_parse(&hi, ROLE_INITIATOR, who, &h, reason, sizeof(reason));
	if (r < 0) {
		if (reason[0])
			goto out_refuse;
		goto out;
	}
	snprintf(who, sizeof(who), "the peer calling itself '%s'", h.name);
	if (strcmp(h.cluster, o->cluster)) {
		r = sm_fail(-EPERM, "channel handshake: %s belongs to cluster '%s', not '%s'", who, h.cluster, o->cluster);
		snprintf(reason, sizeof(reason), "this node belongs to cluster '%s', not '%s'", o->cluster, h.cluster);
		goto out_refuse;
	}
	crypto_kx_keypair(pk, sk);
	if (crypto_kx_server_session_keys(kx_rx, kx_tx, pk, sk, h.pk) < 0) {
		r = sm_fail(-EPROTO, "channel handshake: %s sent an unusable public key", who);
		snprintf(reason, sizeof(reason), "unusable public key");
		goto out_refuse;
	}
	hello_build(&hr, ROLE_RESPONDER, pk, o->secret->node + 32, o->node, o->cluster);
	keys_derive(&k, o->secret->cluster, &hi, &hr, kx_rx, kx_tx);
	auth_build(&auth, k.mac_r, o->secret->node, ROLE_RESPONDER, k.th);
	out[0] = &hr;
	out[1] = &auth;
	r = hs_send(fd, out, 2, deadline, who);
	if (r < 0)
		goto out;

	r = hs_recv(fd, deadline, who, "its AUTH", &f);
	if (r < 0)
		goto out;
	if (!auth_mac_ok(&f, k.mac_i, k.th)) {
		r = sm_fail(-EACCES, "channel handshake: %s failed authentication: it does not know the secret of "
				     "cluster '%s' (or the handshake was changed in transit)",
			    who, o->cluster);
		snprintf(reason, sizeof(reason), "authentication failed: you do not share the secret of cluster '%s'",
			 o->cluster);
		goto out_refuse;
	}
	r = verify_node(o, &h, ROLE_INITIATOR, k.th, &f, reason, sizeof(reason));
	if (r < 0)
		goto out_refuse;
	r = run_check_peer(o, h.name, reason, sizeof(reason));
	if (r < 0)
		goto out_refuse;
	set_peer(c, h.name);
	snprintf(who, sizeof(who), "node '%s'", h.name);

	r = hs_recv(fd, deadline, who, "its STREAM", &f);
	if (r < 0)
		goto out;
	if (f.type != HS_STREAM || f.len != HEADERBYTES) {
		r = sm_fail(-EPROTO, "channel handshake: %s sent a frame of type %u instead of STREAM", who, f.type);
		goto out;
	}
	if (crypto_secretstream_xchacha20poly1305_init_pull(&c->rx_st, f.raw + 4, k.stream_i2r) < 0) {
		r = sm_fail(-EPROTO, "channel handshake: %s sent an invalid stream header", who);
		goto out;
	}
	{
		uint8_t hdr[HEADERBYTES];
		crypto_secretstream_xchacha20poly1305_init_push(&c->tx_st, hdr, k.stream_r2i);
		hs_frame_build(&stream, HS_STREAM, hdr, sizeof(hdr));
	}
	out[0] = &stream;
	r = hs_send(fd, out, 1, deadline, who);
	goto out;

out_refuse:
	hs_refuse(fd, deadline, reason);
out:
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(kx_rx, sizeof(kx_rx));
	sodium_memzero(kx_tx, sizeof(kx_tx));
	keys_wipe(&k);
	if (r < 0) {
		chan_discard(c, fl);
		return r;
	}
	*ret = c;
	return 0;
}
