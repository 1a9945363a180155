/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The node-to-node channel's records and pump: include/sockmig/chan.h is
 * the manual, docs/wire-protocol.md the bytes; the handshake that keys a
 * channel is lib/chan_handshake.c. Everything read from the peer is
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

#include "chan_impl.h"
#include "util.h"

/* ---- wire constants (docs/wire-protocol.md) ---- */

#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define REC_MIN_CLEN (1 + ABYTES)
#define REC_MAX_CLEN (1 + SOCKMIG_CHAN_RECORD_MAX + ABYTES)
#define ERROR_REASON_MAX 300

/* The types that end a direction, sealed with TAG_FINAL. */
static bool is_final(uint8_t type)
{
	return type == SOCKMIG_CHAN_END || type == SOCKMIG_CHAN_ERROR;
}

static const char *peer_name(const struct sockmig_chan *c)
{
	return c->peer_desc[0] ? c->peer_desc : "the peer";
}

uint64_t sm_chan_deadline_in(unsigned ms)
{
	return sm_now_ns() + (uint64_t)ms * 1000000ull;
}

int sm_chan_wait_fd(int fd, short events, uint64_t deadline)
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

int sm_chan_write_deadline(int fd, const void *buf, size_t len, uint64_t deadline)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int r = sm_chan_wait_fd(fd, POLLOUT, deadline);
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

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int sm_chan_new(int fd, unsigned timeout_ms, struct sockmig_chan **ret)
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

/*
 * Test only (SOCKMIG_FAULT=chan-corrupt-data): the Nth DATA record this
 * process seals, over all its channels (N from SOCKMIG_FAULT_RECORD, 1 by
 * default), gets one byte of its ciphertext flipped after sealing, as a
 * damaged link or a tampering relay would. Only that one: a daemon started
 * with the fault fails one migration, and the next one is clean.
 */
static void fault_corrupt_data(uint8_t *ct, size_t clen)
{
	static unsigned long sealed;
	const char *e;
	unsigned long want = 1;

	if (!sm_fault("chan-corrupt-data"))
		return;
	e = getenv("SOCKMIG_FAULT_RECORD");
	if (e && *e)
		want = strtoul(e, NULL, 10);
	if (__atomic_add_fetch(&sealed, 1, __ATOMIC_RELAXED) == want)
		ct[clen / 2] ^= 0x01;
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
						   is_final(type) ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
								  : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
	c->tx_len = REC_HDR + (size_t)out_len;
	c->tx_off = 0;
	if (type == SOCKMIG_CHAN_DATA)
		fault_corrupt_data(c->tx + REC_HDR, (size_t)out_len);
	c->tx_n++;
	if (is_final(type))
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
	if (type == 0 || (type == SOCKMIG_CHAN_END && len) || (type == SOCKMIG_CHAN_ERROR && len > ERROR_REASON_MAX))
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
	int r = sm_chan_write_deadline(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off, sm_chan_deadline_in(c->timeout_ms));

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
	if (type == SOCKMIG_CHAN_ERROR)
		return sm_fail(-EINVAL, "an ERROR record is the channel's own, sent when it fails");
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
 * Best effort, once this side gives up: tell the peer why, in an ERROR
 * record (the sentence of sockmig_error(), which is kept), so that its side
 * fails with the cause rather than with a cut connection. Our direction may
 * be intact even when the peer's is damaged. Only between our records, not
 * to a peer that gave up itself, and bounded by 1 s: a peer that stopped
 * reading gets nothing.
 */
static void tell_peer(struct sockmig_chan *c)
{
	char saved[512];
	size_t len;
	unsigned ms = c->timeout_ms < 1000 ? c->timeout_ms : 1000;

	if (c->tx_ended || c->tx_off != c->tx_len || c->rx.peer_gave_up)
		return;
	snprintf(saved, sizeof(saved), "%s", sockmig_error());
	len = strlen(saved);
	if (len > ERROR_REASON_MAX)
		len = ERROR_REASON_MAX;
	if (seal_copy(c, SOCKMIG_CHAN_ERROR, saved, len) == 0)
		sm_chan_write_deadline(c->fd, c->tx, c->tx_len, sm_chan_deadline_in(ms));
	c->tx_off = c->tx_len = 0;
	sm_fail(0, "%s", saved);
}

/* The peer's ERROR record: its reason, as the sentence. */
static int peer_gave_up(struct sockmig_chan *c)
{
	char reason[ERROR_REASON_MAX + 1];
	size_t i, n = c->rx.pt_len - 1;

	for (i = 0; i < n; i++) {
		uint8_t b = c->rx.pt[1 + i];
		reason[i] = b >= 0x20 && b < 0x7f ? (char)b : '?';
	}
	reason[i] = '\0';
	c->rx.ended = true;
	c->rx.peer_gave_up = true;
	return sm_fail(-ECONNABORTED, "%s gave up the channel: %s", peer_name(c), n ? reason : "(no reason)");
}

/*
 * Read as much of the next record as the socket has: 1 once a whole record
 * is decrypted into rx.pt, 0 if the socket has no more for now, -errno on a
 * damaged, oversized or truncated stream, or an ERROR from the peer (sticky:
 * the channel is dead).
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
	if ((tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) != is_final(x->pt[0]) ||
	    (x->pt[0] == SOCKMIG_CHAN_END && x->pt_len != 1) ||
	    (x->pt[0] == SOCKMIG_CHAN_ERROR && x->pt_len - 1 > ERROR_REASON_MAX))
		return sm_fail(-EBADMSG, "record %llu from %s is a malformed %s", (unsigned long long)x->n, peer_name(c),
			       x->pt[0] == SOCKMIG_CHAN_ERROR ? "ERROR" : "END");
	if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE &&
	    tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)
		return sm_fail(-EBADMSG, "record %llu from %s carries an unexpected tag %u", (unsigned long long)x->n,
			       peer_name(c), tag);
	if (x->pt[0] == SOCKMIG_CHAN_ERROR)
		return peer_gave_up(c);
	if (x->pt[0] == SOCKMIG_CHAN_END)
		x->ended = true;
	return 1;
}

int sockmig_chan_recv(struct sockmig_chan *c, uint8_t *ret_type, const uint8_t **ret_data, size_t *ret_len)
{
	uint64_t deadline = sm_chan_deadline_in(c->timeout_ms);

	if (c->rx.ended)
		return 0;
	for (;;) {
		int r = rx_step(c);

		if (r > 0)
			break;
		if (r == 0) {
			r = sm_chan_wait_fd(c->fd, POLLIN, deadline);
			if (r == -ETIMEDOUT)
				r = sm_fail(r, "%s sent nothing on the channel for %u ms", peer_name(c), c->timeout_ms);
			else if (r < 0)
				r = sm_fail(r, "cannot wait for %s on the channel: %s", peer_name(c), strerror(-r));
		}
		if (r < 0) {
			tell_peer(c);
			return r;
		}
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
		/* poll() reports POLLHUP and POLLERR whatever was asked: a local
		 * end that hung up after its EOF would wake every call, and the
		 * loop would spin (and, never seeing poll() time out, for as
		 * long as a peer behind a cut link keeps its END). Not asked,
		 * not polled. */
		for (int k = 0; k < 2; k++) {
			if (!p[k].events)
				p[k].fd = -1;
		}
		/* The peer is bounded while it owes us the rest of a record or
		 * our data, and once we ended, for its END; an idle channel
		 * between records is bounded by the protocol on top. The clock
		 * decides, not poll()'s return. */
		if (tcp_busy || (!local_open && !c->rx.ended)) {
			uint64_t since = tcp_busy ? last : (ended_at > last ? ended_at : last);
			uint64_t dl = since + (uint64_t)c->timeout_ms * 1000000ull, now = sm_now_ns();

			if (now >= dl) {
				if (tcp_busy)
					r = sm_fail(-ETIMEDOUT, "%s stopped in the middle of the channel's traffic for %u ms",
						    peer_name(c), c->timeout_ms);
				else
					r = sm_fail(-ETIMEDOUT, "%s did not end its side of the channel within %u ms of ours",
						    peer_name(c), c->timeout_ms);
				break;
			}
			wait = (int)((dl - now + 999999ull) / 1000000ull);
		}
		n = poll(p, 3, wait);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = sm_fail(-errno, "channel pump: poll: %s", strerror(errno));
			break;
		}
		if (n == 0)
			continue; /* the deadline, checked above */
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
		/* Both sides at once: the peer learns why (if it can still
		 * hear) and sees the connection close, the local side reads
		 * EOF, and nothing of a damaged record was ever written to
		 * it. */
		tell_peer(c);
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
