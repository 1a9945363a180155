/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The other nodes' daemons. Accepted connections: the channel handshake
 * (only members of our cluster that know its secret, connecting from their
 * member address), then requests until the peer ends the channel. Each
 * request is one REQUEST record "VERB [ARGS]" answered by one REPLY record
 * "ok [...]" or "error SENTENCE" (docs/cluster.md); a handler may also take
 * the channel over for a longer exchange (the pump) before it returns.
 *
 * Adding a request: a function int fn(struct peer_req *) and a line in
 * peer_requests[]. The dispatcher answers "ok" for 0 or "error SENTENCE"
 * (req->error, or sockmig_error()) for < 0, unless the handler already
 * answered with peer_reply().
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "routes.h"
#include "sockmig/sockmig.h"

#define PEER_REQUEST_MAX 4096

int peer_reply(struct peer_req *r, const char *fmt, ...)
{
	char msg[PEER_REQUEST_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(msg))
		n = sizeof(msg) - 1;
	r->replied = true;
	return sockmig_chan_send(r->chan, SOCKMIG_CHAN_REPLY, msg, (size_t)n);
}

int peer_reply_raw(struct peer_req *r, const char *text, size_t len)
{
	if (len > SOCKMIG_CHAN_RECORD_MAX)
		len = SOCKMIG_CHAN_RECORD_MAX;
	r->replied = true;
	return sockmig_chan_send(r->chan, SOCKMIG_CHAN_REPLY, text, len);
}

static int req_ping(struct peer_req *r)
{
	return peer_reply(r, "ok pong");
}

static const struct peer_request {
	const char *verb;
	int (*fn)(struct peer_req *r);
} peer_requests[] = {
	{ "ping", req_ping },
	{ "jobs", peer_jobs },
	{ "migrate", peer_migrate },
	{ "route", peer_route },
};

static void peer_dispatch(struct peer_req *r, const uint8_t *data, size_t len)
{
	char text[PEER_REQUEST_MAX + 1], q[600], a[64], *sp;
	const struct peer_request *h = NULL;
	int k;

	if (len > PEER_REQUEST_MAX || memchr(data, '\0', len)) {
		snprintf(r->error, sizeof(r->error), "a request is at most %d bytes of text", PEER_REQUEST_MAX);
		k = -EINVAL;
		goto answer;
	}
	memcpy(text, data, len);
	text[len] = '\0';
	r->verb = text;
	sp = strchr(text, ' ');
	r->args = sp ? sp + 1 : text + len;
	if (sp)
		*sp = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(peer_requests); i++) {
		if (!strcmp(peer_requests[i].verb, r->verb))
			h = &peer_requests[i];
	}
	log_kv("info", "event=request via=peer peer=%s from=%s request=%s",
	       addr_text((struct sockaddr *)&r->conn->addr, a, sizeof(a)), sockmig_chan_peer(r->chan),
	       kv_quote(r->verb, q, sizeof(q)));
	if (!h) {
		snprintf(r->error, sizeof(r->error), "node '%s' does not know the request '%.40s'", r->d->cfg->node, r->verb);
		k = -EOPNOTSUPP;
		goto answer;
	}
	sockmig_error_clear();
	k = h->fn(r);
	if (k < 0 && !r->error[0])
		snprintf(r->error, sizeof(r->error), "%s", sockmig_error()[0] ? sockmig_error() : strerror(-k));
answer:
	if (r->replied)
		return;
	if (k < 0)
		peer_reply(r, "error %s", r->error);
	else
		peer_reply(r, "ok");
}

struct check_ctx {
	struct daemon *d;
	const struct sockaddr_storage *from;
};

/* Only members, and only from their member address, after the channel
 * checked the cluster's secret and the member's own node key. */
static int check_peer(const char *peer, char *reason, size_t size, void *userdata)
{
	struct check_ctx *x = userdata;
	const struct sockmig_member *m = sockmig_config_member(x->d->cfg, peer);
	const struct sockaddr *sa = (const struct sockaddr *)x->from;
	const void *addr;
	char a[64];

	if (!m) {
		snprintf(reason, size, "node '%s' is not a member of cluster '%s'", peer, x->d->cfg->cluster);
		return -EPERM;
	}
	if (sa->sa_family == AF_INET)
		addr = &((const struct sockaddr_in *)sa)->sin_addr;
	else
		addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (sa->sa_family != m->family || memcmp(addr, m->addr, m->family == AF_INET ? 4 : 16)) {
		snprintf(reason, size, "node '%s' must connect from its member address %s, not %s", peer, m->addr_text,
			 addr_text(sa, a, sizeof(a)));
		return -EPERM;
	}
	return 0;
}

void peer_serve(struct conn *c)
{
	struct daemon *d = c->d;
	struct check_ctx x = { .d = d, .from = &c->addr };
	struct sockmig_chan_opts o;
	struct sockmig_chan *chan;
	char a[64], q[700];
	int fd, r;

	addr_text((struct sockaddr *)&c->addr, a, sizeof(a));
	daemon_chan_opts(d, &o);
	o.check_peer = check_peer;
	o.userdata = &x;
	/* The channel gets a dup: c->fd stays registered (stop shuts the
	 * socket down through it) until our caller closes it. */
	fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
	if (fd < 0) {
		log_kv("err", "event=refuse peer=%s reason=%s", a, kv_quote(strerror(errno), q, sizeof(q)));
		return;
	}
	r = sockmig_chan_accept(fd, &o, &chan);
	if (r < 0) {
		close(fd);
		log_kv("warn", "event=refuse peer=%s reason=%s", a, kv_quote(sockmig_error(), q, sizeof(q)));
		return;
	}
	log_kv("info", "event=accept peer=%s from=%s", a, sockmig_chan_peer(chan));
	for (;;) {
		struct peer_req req = { .d = d, .conn = c, .chan = chan };
		const uint8_t *data;
		uint8_t type;
		size_t len;

		r = sockmig_chan_recv(chan, &type, &data, &len);
		if (r == 0)
			break;
		if (r < 0) {
			log_kv("warn", "event=channel-error peer=%s from=%s msg=%s", a, sockmig_chan_peer(chan),
			       kv_quote(sockmig_error(), q, sizeof(q)));
			break;
		}
		if (type == SOCKMIG_CHAN_REQUEST) {
			peer_dispatch(&req, data, len);
			continue;
		}
		if (type & SOCKMIG_CHAN_MAY_SKIP)
			continue;
		log_kv("warn", "event=channel-error peer=%s from=%s msg=%s", a, sockmig_chan_peer(chan),
		       kv_quote("unexpected record type on a request channel", q, sizeof(q)));
		r = -EPROTO;
		break;
	}
	if (r == 0)
		sockmig_chan_end(chan);
	sockmig_chan_free(chan);
}

/* ---- dialing ---- */

static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, unsigned timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	socklen_t elen = sizeof(int);
	int err = 0;

	if (connect(fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	for (;;) {
		uint64_t now = now_ns();
		int left = now >= deadline ? 0 : (int)((deadline - now + 999999ull) / 1000000ull);
		int n = poll(&p, 1, left);
		if (n > 0)
			break;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		return -errno;
	return -err;
}

int peer_open(struct daemon *d, const struct sockmig_member *m, unsigned timeout_ms, struct peer_link *l, char *err,
	      size_t size)
{
	const struct sockmig_member *self = sockmig_config_self(d->cfg);
	struct sockaddr_storage ss;
	struct sockmig_chan_opts o;
	socklen_t len;
	uint64_t t0 = now_ns();
	int fd, cfd, r, one = 1;
	char a[64];

	memset(l, 0, sizeof(*l));
	len = sockmig_member_sockaddr(m, &ss);
	addr_text((struct sockaddr *)&ss, a, sizeof(a));
	fd = socket(m->family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, size, "cannot make a socket to reach node '%s': %s", m->name, strerror(errno));
		return -errno;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* From our member address, which is what the other side checks. */
	if (self->family == m->family) {
		struct sockaddr_storage me;
		socklen_t mlen = sockmig_member_sockaddr(self, &me);

		if (me.ss_family == AF_INET)
			((struct sockaddr_in *)&me)->sin_port = 0;
		else
			((struct sockaddr_in6 *)&me)->sin6_port = 0;
		if (bind(fd, (struct sockaddr *)&me, mlen) < 0) {
			r = -errno;
			snprintf(err, size, "cannot use this node's address %s to reach node '%s': %s", self->addr_text,
				 m->name, strerror(-r));
			close(fd);
			return r;
		}
	}
	l->conn.kind = CONN_OUTGOING;
	l->conn.fd = fd;
	l->conn.addr = ss;
	if (!daemon_register(d, &l->conn)) {
		close(fd);
		snprintf(err, size, "the daemon is stopping");
		return -ESHUTDOWN;
	}
	r = connect_timeout(fd, (struct sockaddr *)&ss, len, timeout_ms);
	if (r < 0) {
		if (r == -ETIMEDOUT)
			snprintf(err, size, "node '%s' at %s did not answer within %u ms", m->name, a, timeout_ms);
		else
			snprintf(err, size, "cannot connect to node '%s' at %s: %s", m->name, a, strerror(-r));
		goto fail;
	}
	cfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (cfd < 0) {
		r = -errno;
		snprintf(err, size, "cannot reach node '%s': %s", m->name, strerror(-r));
		goto fail;
	}
	daemon_chan_opts(d, &o);
	o.timeout_ms = timeout_ms;
	o.expect_peer = m->name;
	r = sockmig_chan_connect(cfd, &o, &l->chan);
	if (r < 0) {
		close(cfd);
		snprintf(err, size, "node '%s' at %s: %s", m->name, a, sockmig_error());
		goto fail;
	}
	l->connect_ns = now_ns() - t0;
	return 0;
fail:
	daemon_unregister(d, &l->conn);
	close(fd);
	l->conn.fd = -1;
	return r;
}

/* Send the request, wait for its REPLY (records of unknown MAY_SKIP types
 * are skipped): 0 with the payload (valid until the next call on the
 * channel), or < 0 with the sentence in err. */
static int request_exchange(struct peer_link *l, const char *request, const uint8_t **ret_data, size_t *ret_len,
			    char *err, size_t size)
{
	uint8_t type;
	int r;

	r = sockmig_chan_send(l->chan, SOCKMIG_CHAN_REQUEST, request, strlen(request));
	if (r < 0) {
		snprintf(err, size, "%s", sockmig_error());
		return r;
	}
	for (;;) {
		r = sockmig_chan_recv(l->chan, &type, ret_data, ret_len);
		if (r == 0) {
			snprintf(err, size, "node '%s' ended the channel without answering", sockmig_chan_peer(l->chan));
			return -EPIPE;
		}
		if (r < 0) {
			snprintf(err, size, "%s", sockmig_error());
			return r;
		}
		if (type == SOCKMIG_CHAN_REPLY)
			return 0;
		if (!(type & SOCKMIG_CHAN_MAY_SKIP)) {
			snprintf(err, size, "node '%s' answered with a record of type 0x%02x", sockmig_chan_peer(l->chan), type);
			return -EPROTO;
		}
	}
}

static bool reply_is_ok(const uint8_t *data, size_t len)
{
	return len >= 2 && !memcmp(data, "ok", 2) && (len == 2 || data[2] == ' ' || data[2] == '\n');
}

/* "error SENTENCE": the sentence, printable ASCII only. */
static void reply_error(const uint8_t *data, size_t len, char *err, size_t size)
{
	size_t off = len >= 6 && !memcmp(data, "error ", 6) ? 6 : 0, n = len - off, i;

	if (n >= size)
		n = size - 1;
	for (i = 0; i < n; i++)
		err[i] = data[off + i] >= 0x20 && data[off + i] < 0x7f ? (char)data[off + i] : '?';
	err[i] = '\0';
}

int peer_request(struct peer_link *l, const char *request, char *reply, size_t size)
{
	const uint8_t *data;
	size_t len;
	int r = request_exchange(l, request, &data, &len, reply, size);

	if (r < 0)
		return r;
	if (reply_is_ok(data, len)) {
		size_t n = len > 3 ? len - 3 : 0;
		if (n >= size)
			n = size - 1;
		if (n)
			memcpy(reply, data + 3, n);
		reply[n] = '\0';
		return 0;
	}
	reply_error(data, len, reply, size);
	return -EREMOTEIO;
}

int peer_request_long(struct peer_link *l, const char *request, char **ret, char *err, size_t size)
{
	const uint8_t *data;
	size_t len, n;
	char *text;
	int r = request_exchange(l, request, &data, &len, err, size);

	*ret = NULL;
	if (r < 0)
		return r;
	if (!reply_is_ok(data, len)) {
		reply_error(data, len, err, size);
		return -EREMOTEIO;
	}
	n = len > 3 ? len - 3 : 0;
	text = malloc(n + 1);
	if (!text) {
		snprintf(err, size, "out of memory");
		return -ENOMEM;
	}
	if (n)
		memcpy(text, data + 3, n);
	text[n] = '\0';
	*ret = text;
	return 0;
}

void peer_close(struct daemon *d, struct peer_link *l)
{
	if (l->chan) {
		const uint8_t *data;
		uint8_t type;
		size_t len;
		int r = sockmig_chan_end(l->chan);

		/* Wait for the peer's END, so that both sides close cleanly
		 * (bounded by the channel's timeout). */
		for (int i = 0; r >= 0 && i < 64; i++) {
			r = sockmig_chan_recv(l->chan, &type, &data, &len);
			if (r <= 0)
				break;
		}
		sockmig_chan_free(l->chan);
		l->chan = NULL;
	}
	if (l->conn.fd >= 0) {
		daemon_unregister(d, &l->conn);
		close(l->conn.fd);
		l->conn.fd = -1;
	}
}

void peer_ping(struct daemon *d, const struct sockmig_member *m, unsigned timeout_ms, struct ping_result *res)
{
	struct peer_link l;
	char reply[512];
	uint64_t t;
	int r;

	memset(res, 0, sizeof(*res));
	r = peer_open(d, m, timeout_ms, &l, res->error, sizeof(res->error));
	if (r < 0)
		return;
	res->connect_ns = l.connect_ns;
	t = now_ns();
	r = peer_request(&l, "ping", reply, sizeof(reply));
	res->rtt_ns = now_ns() - t;
	if (r < 0)
		snprintf(res->error, sizeof(res->error), "node '%s': %.400s", m->name, reply);
	else if (strcmp(reply, "pong"))
		snprintf(res->error, sizeof(res->error), "node '%s' answered the ping with '%.60s'", m->name, reply);
	else
		res->up = true;
	peer_close(d, &l);
}
