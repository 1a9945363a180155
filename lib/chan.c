/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The node-to-node channel: include/sockmig/chan.h is the manual,
 * docs/wire-protocol.md the bytes. Everything read from the peer is
 * untrusted: lengths are checked before anything is allocated or read, and
 * no byte of a record is handed out before its authentication tag checked.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <sodium.h>

#include "sockmig/chan.h"
#include "sockmig/config.h"
#include "util.h"

/* ---- wire constants (docs/wire-protocol.md) ---- */

#define HS_MAGIC "SMCH"
#define HS_FRAME_MAX 1024
#define HS_HELLO_FIXED 44
#define HS_REASON_MAX 300

enum {
	HS_HELLO = 1,
	HS_AUTH = 2,
	HS_STREAM = 3,
	HS_REFUSE = 4,
};

enum { ROLE_INITIATOR = 1, ROLE_RESPONDER = 2 };

/* Subkey ids of crypto_kdf under the session's root key. */
enum { KDF_MAC_RESPONDER = 1, KDF_MAC_INITIATOR = 2, KDF_STREAM_I2R = 3, KDF_STREAM_R2I = 4 };
#define KDF_CONTEXT "smchan1_"
#define ROOT_LABEL "sockmig channel v1 root key"

#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define HEADERBYTES crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define REC_HDR 4
#define REC_MIN_CLEN (1 + ABYTES)
#define REC_MAX_CLEN (1 + SOCKMIG_CHAN_RECORD_MAX + ABYTES)

struct rx_state {
	uint8_t hdr[REC_HDR];
	size_t hdr_got;
	uint32_t clen;
	uint8_t *buf; /* ciphertext of the record being read */
	size_t cap, got;
	uint8_t *pt;  /* the last record, decrypted: type, payload */
	size_t pt_cap, pt_len;
	uint64_t n;   /* records received so far */
	bool ended;
};

struct sockmig_chan {
	int fd;
	unsigned timeout_ms;
	char peer[SOCKMIG_NAME_MAX + 1];
	char peer_desc[SOCKMIG_NAME_MAX + 16]; /* "node 'NAME'", for sentences */
	crypto_secretstream_xchacha20poly1305_state tx_st, rx_st;
	struct rx_state rx;
	/* sealed bytes waiting for the socket */
	uint8_t *tx;
	size_t tx_cap, tx_len, tx_off;
	/* plaintext being sealed: type, payload */
	uint8_t *txp;
	size_t txp_cap;
	uint64_t tx_n;
	bool tx_ended;
	/* the pump */
	int cancel_fd;
	int pump_local; /* our end of pump_start's socketpair */
	pthread_t thread;
	bool thread_running;
	int pump_result;
	char pump_error[512];
};

static const char *peer_name(const struct sockmig_chan *c)
{
	return c->peer_desc[0] ? c->peer_desc : "the peer";
}

static void set_peer(struct sockmig_chan *c, const char *name)
{
	snprintf(c->peer, sizeof(c->peer), "%s", name);
	snprintf(c->peer_desc, sizeof(c->peer_desc), "node '%s'", name);
}

static unsigned timeout_of(const struct sockmig_chan_opts *o)
{
	return o->timeout_ms ? o->timeout_ms : SOCKMIG_CHAN_DEFAULT_TIMEOUT_MS;
}

static uint64_t deadline_in(unsigned ms)
{
	return sm_now_ns() + (uint64_t)ms * 1000000ull;
}

/* Wait until fd has events or the deadline; 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };

	for (;;) {
		uint64_t now = sm_now_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now + 999999ull) / 1000000ull), r;

		r = poll(&p, 1, left);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int write_deadline(int fd, const void *buf, size_t len, uint64_t deadline)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int r = wait_fd(fd, POLLOUT, deadline);
				if (r < 0)
					return r;
				continue;
			}
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
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
		r = wait_fd(fd, POLLIN, deadline);
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

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
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
	r = write_deadline(fd, buf, len, deadline);
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
	char name[SOCKMIG_NAME_MAX + 1];
	char cluster[SOCKMIG_NAME_MAX + 1];
};

static void hello_build(struct hs_frame *f, uint8_t role, const uint8_t *pk, const char *name, const char *cluster)
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
	if (f->len < HS_HELLO_FIXED || memcmp(b, HS_MAGIC, 4)) {
		snprintf(reason, size, "not a sockmig channel HELLO");
		return sm_fail(-EPROTO, "channel handshake: %s does not speak the sockmig channel protocol", peer);
	}
	h->major = get_le16(b + 4);
	h->minor = get_le16(b + 6);
	if (h->major != SOCKMIG_CHAN_VERSION_MAJOR) {
		snprintf(reason, size, "this node speaks channel version %d.%d, not %u.%u", SOCKMIG_CHAN_VERSION_MAJOR,
			 SOCKMIG_CHAN_VERSION_MINOR, h->major, h->minor);
		return sm_fail(-EPROTONOSUPPORT, "channel handshake: %s speaks channel version %u.%u, this node %d.%d", peer,
			       h->major, h->minor, SOCKMIG_CHAN_VERSION_MAJOR, SOCKMIG_CHAN_VERSION_MINOR);
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
 * root = BLAKE2b-256(key = secret, "sockmig channel v1 root key" || th ||
 * kx_i2r || kx_r2i); every key is a crypto_kdf subkey of root. The kx keys
 * bind the ephemeral Diffie-Hellman result, th both HELLOs, the secret the
 * cluster: each MAC proves the secret and this very session.
 */
static int keys_derive(struct keys *k, const uint8_t *secret, const struct hs_frame *hi, const struct hs_frame *hr,
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
	return 0;
}

static void auth_mac(uint8_t out[32], const uint8_t key[32], const uint8_t th[32])
{
	crypto_generichash(out, 32, th, 32, key, 32);
}

static int chan_new(int fd, unsigned timeout_ms, struct sockmig_chan **ret)
{
	struct sockmig_chan *c = calloc(1, sizeof(*c));
	int fl;

	if (!c)
		return sm_fail(-ENOMEM, "out of memory for a channel");
	c->fd = fd;
	c->pump_local = -1;
	c->timeout_ms = timeout_ms;
	c->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->cancel_fd < 0) {
		int r = -errno;
		free(c);
		return sm_fail(r, "cannot make an eventfd for a channel: %s", strerror(-r));
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int r = -errno;
		close(c->cancel_fd);
		free(c);
		return sm_fail(r, "cannot make the channel's socket non-blocking: %s", strerror(-r));
	}
	*ret = c;
	return 0;
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

static int check_opts(const struct sockmig_chan_opts *o)
{
	if (!o || !o->secret || !sockmig_name_valid(o->cluster) || !sockmig_name_valid(o->node))
		return sm_fail(-EINVAL, "a channel needs a valid cluster name, node name and secret");
	if (sodium_init() < 0)
		return sm_fail(-EIO, "cannot initialise libsodium");
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
	uint8_t kx_rx[crypto_kx_SESSIONKEYBYTES], kx_tx[crypto_kx_SESSIONKEYBYTES], mac[32];
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
	r = chan_new(fd, timeout_of(o), &c);
	if (r < 0)
		return r;
	deadline = deadline_in(c->timeout_ms);
	snprintf(who, sizeof(who), "%s", o->expect_peer ? o->expect_peer : "the peer");

	crypto_kx_keypair(pk, sk);
	hello_build(&hi, ROLE_INITIATOR, pk, o->node, o->cluster);
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
	keys_derive(&k, o->secret, &hi, &hr, kx_tx, kx_rx);

	r = hs_recv(fd, deadline, who, "its AUTH", &f);
	if (r < 0)
		goto out;
	auth_mac(mac, k.mac_r, k.th);
	if (f.type != HS_AUTH || f.len != 32 || sodium_memcmp(mac, f.raw + 4, 32) != 0) {
		r = sm_fail(-EACCES, "channel handshake: %s failed authentication: it does not know the secret of "
				     "cluster '%s' (or the handshake was changed in transit)",
			    who, o->cluster);
		snprintf(reason, sizeof(reason), "authentication failed: node '%s' does not share this cluster secret",
			 o->node);
		goto out_refuse;
	}
	r = run_check_peer(o, h.name, reason, sizeof(reason));
	if (r < 0)
		goto out_refuse;

	auth_mac(mac, k.mac_i, k.th);
	hs_frame_build(&auth, HS_AUTH, mac, 32);
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
	uint8_t kx_rx[crypto_kx_SESSIONKEYBYTES], kx_tx[crypto_kx_SESSIONKEYBYTES], mac[32];
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
	r = chan_new(fd, timeout_of(o), &c);
	if (r < 0)
		return r;
	deadline = deadline_in(c->timeout_ms);

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
	hello_build(&hr, ROLE_RESPONDER, pk, o->node, o->cluster);
	keys_derive(&k, o->secret, &hi, &hr, kx_rx, kx_tx);
	auth_mac(mac, k.mac_r, k.th);
	hs_frame_build(&auth, HS_AUTH, mac, 32);
	out[0] = &hr;
	out[1] = &auth;
	r = hs_send(fd, out, 2, deadline, who);
	if (r < 0)
		goto out;

	r = hs_recv(fd, deadline, who, "its AUTH", &f);
	if (r < 0)
		goto out;
	auth_mac(mac, k.mac_i, k.th);
	if (f.type != HS_AUTH || f.len != 32 || sodium_memcmp(mac, f.raw + 4, 32) != 0) {
		r = sm_fail(-EACCES, "channel handshake: %s failed authentication: it does not know the secret of "
				     "cluster '%s' (or the handshake was changed in transit)",
			    who, o->cluster);
		snprintf(reason, sizeof(reason), "authentication failed: you do not share the secret of cluster '%s'",
			 o->cluster);
		goto out_refuse;
	}
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

const char *sockmig_chan_peer(const struct sockmig_chan *c)
{
	return c->peer;
}

int sockmig_chan_fd(const struct sockmig_chan *c)
{
	return c->fd;
}

void sockmig_chan_set_timeout(struct sockmig_chan *c, unsigned timeout_ms)
{
	c->timeout_ms = timeout_ms ? timeout_ms : SOCKMIG_CHAN_DEFAULT_TIMEOUT_MS;
}

/* ---- records ---- */

static int grow(uint8_t **p, size_t *cap, size_t need)
{
	void *n;

	if (*cap >= need)
		return 0;
	n = realloc(*p, need);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = need;
	return 0;
}

/* Seal c->txp[0..1+len) (type byte and payload) into c->tx. */
static int seal(struct sockmig_chan *c, size_t len)
{
	uint8_t type = c->txp[0];
	size_t clen = 1 + len + ABYTES;
	unsigned long long out_len = 0;

	if (grow(&c->tx, &c->tx_cap, REC_HDR + clen) < 0)
		return sm_fail(-ENOMEM, "out of memory for a record to %s", peer_name(c));
	put_le32(c->tx, (uint32_t)clen);
	/* The length is the additional data: changing it fails the tag. */
	crypto_secretstream_xchacha20poly1305_push(&c->tx_st, c->tx + REC_HDR, &out_len, c->txp, 1 + len, c->tx,
						   REC_HDR,
						   type == SOCKMIG_CHAN_END ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
									    : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	c->tx_len = REC_HDR + (size_t)out_len;
	c->tx_off = 0;
	c->tx_n++;
	if (type == SOCKMIG_CHAN_END)
		c->tx_ended = true;
	return 0;
}

static int seal_copy(struct sockmig_chan *c, uint8_t type, const void *data, size_t len)
{
	if (c->tx_ended)
		return sm_fail(-EPIPE, "the channel to %s was already ended", peer_name(c));
	if (len > SOCKMIG_CHAN_RECORD_MAX)
		return sm_fail(-EMSGSIZE, "a record of %zu bytes is more than the channel's limit %u", len,
			       SOCKMIG_CHAN_RECORD_MAX);
	if (type == 0 || (type == SOCKMIG_CHAN_END && len))
		return sm_fail(-EINVAL, "record type 0x%02x cannot carry %zu bytes", type, len);
	if (grow(&c->txp, &c->txp_cap, 1 + len) < 0)
		return sm_fail(-ENOMEM, "out of memory for a record to %s", peer_name(c));
	c->txp[0] = type;
	if (len)
		memcpy(c->txp + 1, data, len);
	return seal(c, len);
}

static int flush_blocking(struct sockmig_chan *c)
{
	int r = write_deadline(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, deadline_in(c->timeout_ms));

	c->tx_off = c->tx_len = 0;
	if (r == -ETIMEDOUT)
		return sm_fail(r, "%s did not take data on the channel for %u ms", peer_name(c), c->timeout_ms);
	if (r < 0)
		return sm_fail(r, "cannot send to %s on the channel: %s", peer_name(c), strerror(-r));
	return 0;
}

int sockmig_chan_send(struct sockmig_chan *c, uint8_t type, const void *data, size_t len)
{
	int r;

	if (type == SOCKMIG_CHAN_END)
		return sockmig_chan_end(c);
	r = seal_copy(c, type, data, len);
	return r < 0 ? r : flush_blocking(c);
}

int sockmig_chan_end(struct sockmig_chan *c)
{
	int r;

	if (c->tx_ended)
		return 0;
	r = seal_copy(c, SOCKMIG_CHAN_END, NULL, 0);

	return r < 0 ? r : flush_blocking(c);
}

/*
 * Read as much of the next record as the socket has: 1 once a whole record
 * is decrypted into rx.pt, 0 if the socket has no more for now, -errno on a
 * damaged, oversized or truncated stream (sticky: the channel is dead).
 */
static int rx_step(struct sockmig_chan *c)
{
	struct rx_state *x = &c->rx;
	unsigned long long pt_len = 0;
	unsigned char tag = 0;

	while (x->hdr_got < REC_HDR || x->got < x->clen) {
		uint8_t *dst;
		size_t want;
		ssize_t n;

		if (x->hdr_got < REC_HDR) {
			dst = x->hdr + x->hdr_got;
			want = REC_HDR - x->hdr_got;
		} else {
			dst = x->buf + x->got;
			want = x->clen - x->got;
		}
		n = recv(c->fd, dst, want, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return sm_fail(-errno, "cannot read from %s on the channel: %s", peer_name(c), strerror(errno));
		}
		if (n == 0) {
			if (x->hdr_got == 0)
				return sm_fail(-EPIPE, "%s closed the channel without ending it (the stream is truncated "
						       "after %llu records)",
					       peer_name(c), (unsigned long long)x->n);
			return sm_fail(-EPIPE, "%s closed the channel in the middle of record %llu (the stream is truncated)",
				       peer_name(c), (unsigned long long)x->n + 1);
		}
		if (x->hdr_got < REC_HDR) {
			x->hdr_got += (size_t)n;
			if (x->hdr_got < REC_HDR)
				continue;
			x->clen = get_le32(x->hdr);
			/* Checked before anything is allocated for it. */
			if (x->clen < REC_MIN_CLEN || x->clen > REC_MAX_CLEN)
				return sm_fail(-EMSGSIZE, "%s announced record %llu of %u bytes, outside %u to %u (the stream "
							  "is damaged or not ours)",
					       peer_name(c), (unsigned long long)x->n + 1, x->clen,
					       (unsigned)REC_MIN_CLEN, (unsigned)REC_MAX_CLEN);
			if (grow(&x->buf, &x->cap, x->clen) < 0)
				return sm_fail(-ENOMEM, "out of memory for a record from %s", peer_name(c));
			x->got = 0;
		} else {
			x->got += (size_t)n;
		}
	}
	if (grow(&x->pt, &x->pt_cap, x->clen - ABYTES) < 0)
		return sm_fail(-ENOMEM, "out of memory for a record from %s", peer_name(c));
	if (crypto_secretstream_xchacha20poly1305_pull(&c->rx_st, x->pt, &pt_len, &tag, x->buf, x->clen, x->hdr,
						       REC_HDR) < 0)
		return sm_fail(-EBADMSG, "record %llu from %s failed authentication: the stream was changed or damaged "
					 "in transit",
			       (unsigned long long)x->n + 1, peer_name(c));
	x->n++;
	x->pt_len = (size_t)pt_len;
	x->hdr_got = 0;
	x->got = 0;
	x->clen = 0;
	if (x->pt_len < 1 || x->pt[0] == 0)
		return sm_fail(-EBADMSG, "record %llu from %s has no valid type", (unsigned long long)x->n, peer_name(c));
	if ((tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) != (x->pt[0] == SOCKMIG_CHAN_END) ||
	    (x->pt[0] == SOCKMIG_CHAN_END && x->pt_len != 1))
		return sm_fail(-EBADMSG, "record %llu from %s is a malformed END", (unsigned long long)x->n, peer_name(c));
	if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE &&
	    tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)
		return sm_fail(-EBADMSG, "record %llu from %s carries an unexpected tag %u", (unsigned long long)x->n,
			       peer_name(c), tag);
	if (x->pt[0] == SOCKMIG_CHAN_END)
		x->ended = true;
	return 1;
}

int sockmig_chan_recv(struct sockmig_chan *c, uint8_t *ret_type, const uint8_t **ret_data, size_t *ret_len)
{
	uint64_t deadline = deadline_in(c->timeout_ms);

	if (c->rx.ended)
		return 0;
	for (;;) {
		int r = rx_step(c);

		if (r < 0)
			return r;
		if (r > 0)
			break;
		r = wait_fd(c->fd, POLLIN, deadline);
		if (r == -ETIMEDOUT)
			return sm_fail(r, "%s sent nothing on the channel for %u ms", peer_name(c), c->timeout_ms);
		if (r < 0)
			return sm_fail(r, "cannot wait for %s on the channel: %s", peer_name(c), strerror(-r));
	}
	if (c->rx.ended)
		return 0;
	*ret_type = c->rx.pt[0];
	*ret_data = c->rx.pt + 1;
	*ret_len = c->rx.pt_len - 1;
	return 1;
}

/* ---- the pump ---- */

static ssize_t local_write(int fd, const void *p, size_t n)
{
	ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (k < 0 && errno == ENOTSOCK)
		k = write(fd, p, n);
	return k;
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int sockmig_chan_pump(struct sockmig_chan *c, int local_fd)
{
	bool local_open = true;  /* local_fd still gives data */
	bool discard = false;    /* the local side stopped reading */
	const uint8_t *out = NULL; /* plaintext waiting for local_fd */
	size_t out_len = 0;
	uint64_t last = sm_now_ns(), ended_at = 0;
	int r = 0;

	if (set_nonblock(local_fd) < 0)
		return sm_fail(-errno, "cannot make the channel's local end non-blocking: %s", strerror(errno));
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = c->fd, .events = 0 },
			{ .fd = local_fd, .events = 0 },
			{ .fd = c->cancel_fd, .events = POLLIN },
		};
		bool tcp_busy = c->tx_off < c->tx_len || c->rx.hdr_got > 0;
		int wait = -1, n;

		if (!local_open && c->tx_off == c->tx_len && c->rx.ended && out_len == 0)
			break; /* both directions ended, everything delivered */
		if (c->tx_off < c->tx_len)
			p[0].events |= POLLOUT;
		if (!c->rx.ended && out_len == 0)
			p[0].events |= POLLIN;
		if (local_open && c->tx_off == c->tx_len)
			p[1].events |= POLLIN;
		if (out_len)
			p[1].events |= POLLOUT;
		/* The peer is bounded while it owes us the rest of a record or
		 * our data, and once we ended, for its END; an idle channel
		 * between records is bounded by the protocol on top. */
		if (tcp_busy || (!local_open && !c->rx.ended)) {
			uint64_t since = tcp_busy ? last : (ended_at > last ? ended_at : last);
			uint64_t dl = since + (uint64_t)c->timeout_ms * 1000000ull, now = sm_now_ns();
			wait = now >= dl ? 0 : (int)((dl - now + 999999ull) / 1000000ull);
		}
		n = poll(p, 3, wait);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = sm_fail(-errno, "channel pump: poll: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			if (tcp_busy)
				r = sm_fail(-ETIMEDOUT, "%s stopped in the middle of the channel's traffic for %u ms",
					    peer_name(c), c->timeout_ms);
			else
				r = sm_fail(-ETIMEDOUT, "%s did not end its side of the channel within %u ms of ours",
					    peer_name(c), c->timeout_ms);
			break;
		}
		if (p[2].revents) {
			r = sm_fail(-ECANCELED, "the channel to %s was cancelled", peer_name(c));
			break;
		}
		/* Sealed bytes out to the peer. */
		if (p[0].revents & (POLLOUT | POLLERR | POLLHUP) && c->tx_off < c->tx_len) {
			ssize_t k = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				r = sm_fail(-errno, "cannot send to %s on the channel: %s", peer_name(c), strerror(errno));
				break;
			}
			if (k > 0) {
				c->tx_off += (size_t)k;
				last = sm_now_ns();
			}
			if (c->tx_off == c->tx_len)
				c->tx_off = c->tx_len = 0;
		}
		/* Local bytes in, sealed as one record. */
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR) && local_open && c->tx_off == c->tx_len) {
			ssize_t k;

			if (grow(&c->txp, &c->txp_cap, 1 + SOCKMIG_CHAN_RECORD_MAX) < 0) {
				r = sm_fail(-ENOMEM, "out of memory for the channel to %s", peer_name(c));
				break;
			}
			k = read(local_fd, c->txp + 1, SOCKMIG_CHAN_RECORD_MAX);
			if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				r = sm_fail(-errno, "cannot read the channel's local end: %s", strerror(errno));
				break;
			}
			if (k > 0) {
				c->txp[0] = SOCKMIG_CHAN_DATA;
				r = seal(c, (size_t)k);
			} else if (k == 0) {
				local_open = false;
				ended_at = sm_now_ns();
				c->txp[0] = SOCKMIG_CHAN_END;
				r = seal(c, 0);
			}
			if (r < 0)
				break;
		}
		/* Records in from the peer; one at a time, delivered first. */
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR) && !c->rx.ended && out_len == 0) {
			size_t before = c->rx.hdr_got + c->rx.got;
			uint64_t n_before = c->rx.n;

			r = rx_step(c);
			if (r < 0)
				break;
			if (c->rx.hdr_got + c->rx.got != before || c->rx.n != n_before)
				last = sm_now_ns();
			if (r > 0) {
				uint8_t type = c->rx.pt[0];

				r = 0;
				if (type == SOCKMIG_CHAN_DATA) {
					out = c->rx.pt + 1;
					out_len = c->rx.pt_len - 1;
				} else if (type == SOCKMIG_CHAN_END) {
					shutdown(local_fd, SHUT_WR);
				} else if (!(type & SOCKMIG_CHAN_MAY_SKIP)) {
					r = sm_fail(-EBADMSG, "%s sent a record of type 0x%02x in a relayed stream", peer_name(c),
						    type);
					break;
				}
			}
		}
		/* Plaintext out to the local end. */
		if (p[1].revents & (POLLOUT | POLLERR | POLLHUP) && out_len) {
			ssize_t k = discard ? (ssize_t)out_len : local_write(local_fd, out, out_len);

			if (k < 0 && errno == EPIPE) {
				/* The local side closed before reading it all:
				 * its choice; the rest is dropped until END. */
				discard = true;
				k = (ssize_t)out_len;
			} else if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
				r = sm_fail(-errno, "cannot write the channel's local end: %s", strerror(errno));
				break;
			}
			if (k > 0) {
				out += k;
				out_len -= (size_t)k;
			}
		}
	}
	if (r < 0) {
		/* Both sides at once: the peer sees the connection close, the
		 * local side reads EOF, and nothing of a damaged record was
		 * ever written to it. */
		shutdown(c->fd, SHUT_RDWR);
		shutdown(local_fd, SHUT_RDWR);
		c->rx.ended = true;
		c->tx_ended = true;
	}
	return r;
}

static void *pump_thread(void *arg)
{
	struct sockmig_chan *c = arg;

	c->pump_result = sockmig_chan_pump(c, c->pump_local);
	if (c->pump_result < 0)
		snprintf(c->pump_error, sizeof(c->pump_error), "%s", sockmig_error());
	return NULL;
}

int sockmig_chan_pump_start(struct sockmig_chan *c, int *ret_fd)
{
	int sp[2], r;

	if (c->thread_running)
		return sm_fail(-EBUSY, "the channel to %s is pumped already", peer_name(c));
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return sm_fail(-errno, "cannot make a socketpair for the channel: %s", strerror(errno));
	c->pump_local = sp[1];
	c->pump_result = 0;
	c->pump_error[0] = '\0';
	r = pthread_create(&c->thread, NULL, pump_thread, c);
	if (r != 0) {
		close(sp[0]);
		close(sp[1]);
		c->pump_local = -1;
		return sm_fail(-r, "cannot start the channel's pump thread: %s", strerror(r));
	}
	c->thread_running = true;
	*ret_fd = sp[0];
	return 0;
}

int sockmig_chan_pump_wait(struct sockmig_chan *c)
{
	int r;

	if (!c->thread_running)
		return sm_fail(-EINVAL, "the channel to %s has no pump running", peer_name(c));
	pthread_join(c->thread, NULL);
	c->thread_running = false;
	if (c->pump_local >= 0) {
		close(c->pump_local);
		c->pump_local = -1;
	}
	r = c->pump_result;
	if (r < 0)
		sm_fail(r, "%s", c->pump_error);
	return r;
}

void sockmig_chan_pump_cancel(struct sockmig_chan *c)
{
	uint64_t one = 1;

	if (c && c->cancel_fd >= 0 && write(c->cancel_fd, &one, sizeof(one)) < 0) {
		/* full counter: already cancelled */
	}
}

void sockmig_chan_free(struct sockmig_chan *c)
{
	if (!c)
		return;
	if (c->thread_running) {
		sockmig_chan_pump_cancel(c);
		pthread_join(c->thread, NULL);
	}
	if (c->pump_local >= 0)
		close(c->pump_local);
	if (c->fd >= 0)
		close(c->fd);
	if (c->cancel_fd >= 0)
		close(c->cancel_fd);
	sodium_memzero(&c->tx_st, sizeof(c->tx_st));
	sodium_memzero(&c->rx_st, sizeof(c->rx_st));
	if (c->rx.pt)
		sodium_memzero(c->rx.pt, c->rx.pt_cap);
	if (c->txp)
		sodium_memzero(c->txp, c->txp_cap);
	free(c->rx.buf);
	free(c->rx.pt);
	free(c->tx);
	free(c->txp);
	free(c);
}
