/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The channel's readers of untrusted bytes (docs/wire-protocol.md).
 *
 * Both sides are members n1 and n2 of cluster "fuzz", with fixed keys (a
 * seed per node), so a corpus can hold real handshakes' bytes.
 *
 * First byte, low 2 bits, the mode:
 *   0  the rest is what an initiator sends: the responder's handshake reads it
 *   1  the rest is what a responder sends: the initiator's handshake reads it
 *   2  a real handshake, then the rest is a list of operations that put bytes
 *      on the wire to the responder, which reads records until the end
 *   3  the same, read by the pump (into a local socket)
 *
 * Random bytes never carry a valid tag, so the operations of modes 2 and 3
 * seal real records (through the initiator's channel, whose fd is swapped
 * for a socketpair the harness reads) and then pass them on whole, damaged,
 * cut short, or mixed with raw bytes:
 *   0 TYPE LEN16 PAYLOAD          a sealed record
 *   1 LEN16 BYTES                 raw bytes
 *   2 TYPE LEN16 PAYLOAD POS16 X  a sealed record with byte POS xor X
 *   3                             END
 *   4 TYPE LEN16 PAYLOAD CUT16    the first CUT bytes of a sealed record
 *   5                             ERROR: the initiator gives up (a receive
 *                                 that times out) and says so
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "sockmig/chan.h"
#include "sockmig/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WIRE_MAX (128u << 10)

static const uint8_t secret[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
				    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };

static struct sockmig_member members[2];
static struct sockmig_keys keys[2];

/* n1's seed is 32 bytes 0x01, n2's 0x02. */
static void keys_init(void)
{
	static bool done;

	if (done)
		return;
	if (sodium_init() < 0)
		abort();
	for (int k = 0; k < 2; k++) {
		uint8_t seed[32];

		memset(seed, k + 1, sizeof(seed));
		snprintf(members[k].name, sizeof(members[k].name), "n%d", k + 1);
		members[k].has_key = true;
		crypto_sign_seed_keypair(members[k].key, keys[k].node, seed);
	}
	for (int k = 0; k < 2; k++) {
		memcpy(keys[k].cluster, secret, sizeof(secret));
		keys[k].has_node_key = true;
		keys[k].members = members;
		keys[k].n_members = 2;
	}
	done = true;
}

static void opts(struct sockmig_chan_opts *o, const char *node)
{
	keys_init();
	memset(o, 0, sizeof(*o));
	o->cluster = "fuzz";
	o->node = node;
	o->secret = &keys[node[1] - '1'];
	o->timeout_ms = 50;
}

static void big_buffers(int fd)
{
	int sz = 1 << 20;

	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

static void raw_handshake(int accept, const uint8_t *data, size_t size)
{
	struct sockmig_chan_opts o;
	struct sockmig_chan *c = NULL;
	int sp[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return;
	big_buffers(sp[0]);
	big_buffers(sp[1]);
	if (size > WIRE_MAX)
		size = WIRE_MAX;
	if (write(sp[0], data, size) < 0) {
	}
	shutdown(sp[0], SHUT_WR);
	opts(&o, "n2");
	if ((accept ? sockmig_chan_accept(sp[1], &o, &c) : sockmig_chan_connect(sp[1], &o, &c)) == 0)
		sockmig_chan_free(c); /* cannot happen without the secret */
	else
		close(sp[1]);
	close(sp[0]);
}

struct side {
	int fd;
	struct sockmig_chan *c;
	int r;
};

static void *accept_side(void *arg)
{
	struct side *s = arg;
	struct sockmig_chan_opts o;

	opts(&o, "n2");
	s->r = sockmig_chan_accept(s->fd, &o, &s->c);
	return NULL;
}

struct input {
	const uint8_t *p;
	size_t left;
};

static bool take(struct input *in, void *out, size_t n)
{
	if (in->left < n)
		return false;
	memcpy(out, in->p, n);
	in->p += n;
	in->left -= n;
	return true;
}

static size_t take_len(struct input *in, size_t max)
{
	uint8_t b[2] = { 0, 0 };
	size_t n;

	take(in, b, 2);
	n = (size_t)b[0] | (size_t)b[1] << 8;
	if (n > in->left)
		n = in->left;
	return n > max ? max : n;
}

/* What the initiator's channel just wrote. */
static size_t tap_take(int capture, uint8_t *buf, size_t size)
{
	struct pollfd p = { .fd = capture, .events = POLLIN };
	size_t got = 0;

	while (got < size && poll(&p, 1, 0) == 1) {
		ssize_t n = read(capture, buf + got, size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	return got;
}

static void records(int pump, const uint8_t *data, size_t size)
{
	static uint8_t rec[WIRE_MAX + 64];
	struct input in = { data, size };
	struct side r = { .c = NULL };
	struct sockmig_chan_opts o;
	struct sockmig_chan *i = NULL;
	size_t wired = 0;
	int sp[2], x[2], wire, fd;
	pthread_t t;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
		return;
	big_buffers(sp[0]);
	big_buffers(sp[1]);
	r.fd = sp[1];
	opts(&o, "n1");
	if (pthread_create(&t, NULL, accept_side, &r) != 0) {
		close(sp[0]);
		close(sp[1]);
		return;
	}
	if (sockmig_chan_connect(sp[0], &o, &i) < 0) {
		pthread_join(t, NULL);
		close(sp[0]);
		if (r.r == 0)
			sockmig_chan_free(r.c);
		else
			close(sp[1]);
		return;
	}
	pthread_join(t, NULL);
	if (r.r < 0)
		abort(); /* a handshake between two honest sides must work */

	/* The initiator now writes into x[0]; we read it at x[1] and decide
	 * what goes on the wire. */
	fd = sockmig_chan_fd(i);
	wire = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (wire < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x) < 0)
		abort();
	big_buffers(x[0]);
	big_buffers(x[1]);
	/* non-blocking, as the channel made the socket it replaces */
	fcntl(x[0], F_SETFL, fcntl(x[0], F_GETFL) | O_NONBLOCK);
	dup2(x[0], fd);
	close(x[0]);
	while (in.left && wired < WIRE_MAX) {
		uint8_t op = 0, type = 0, xr = 0;
		size_t len, n, pos, cut;

		take(&in, &op, 1);
		switch (op % 6) {
		case 0:
		case 2:
		case 4:
			take(&in, &type, 1);
			len = take_len(&in, SOCKMIG_CHAN_RECORD_MAX);
			if (len > WIRE_MAX - wired)
				len = WIRE_MAX - wired;
			if (type == SOCKMIG_CHAN_END || type == 0)
				type = SOCKMIG_CHAN_DATA;
			if (sockmig_chan_send(i, type, in.p, len) < 0)
				goto done;
			in.p += len;
			in.left -= len;
			n = tap_take(x[1], rec, sizeof(rec));
			if (op % 6 == 2 && n) {
				pos = take_len(&in, 0xffff) % n;
				take(&in, &xr, 1);
				rec[pos] ^= xr ? xr : 1;
			} else if (op % 6 == 4) {
				cut = take_len(&in, 0xffff);
				n = cut < n ? cut : n;
			}
			break;
		case 1:
			n = take_len(&in, WIRE_MAX - wired);
			memcpy(rec, in.p, n);
			in.p += n;
			in.left -= n;
			break;
		case 3:
			if (sockmig_chan_end(i) < 0)
				goto done;
			n = tap_take(x[1], rec, sizeof(rec));
			break;
		default: {
			const uint8_t *d;
			uint8_t ty;
			size_t l;

			/* the responder sent nothing: 1 ms, then ERROR */
			sockmig_chan_set_timeout(i, 1);
			if (sockmig_chan_recv(i, &ty, &d, &l) >= 0)
				goto done;
			n = tap_take(x[1], rec, sizeof(rec));
			break;
		}
		}
		if (n > WIRE_MAX - wired)
			n = WIRE_MAX - wired;
		if (n && write(wire, rec, n) != (ssize_t)n)
			break;
		wired += n;
	}
done:
	shutdown(wire, SHUT_WR);
	if (pump) {
		int l[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l) == 0) {
			big_buffers(l[0]);
			big_buffers(l[1]);
			shutdown(l[0], SHUT_WR);
			sockmig_chan_pump(r.c, l[1]);
			close(l[0]);
			close(l[1]);
		}
	} else {
		for (int k = 0; k < 100000; k++) {
			const uint8_t *d;
			uint8_t ty;
			size_t len;
			if (sockmig_chan_recv(r.c, &ty, &d, &len) <= 0)
				break;
		}
	}
	close(wire);
	close(x[1]);
	sockmig_chan_free(i);
	sockmig_chan_free(r.c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
	case 1:
		raw_handshake(!(data[0] & 1), data + 1, size - 1);
		break;
	default:
		records((data[0] & 3) == 3, data + 1, size - 1);
		break;
	}
	return 0;
}
