/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image sections of the socket engine: one section per socket, its state,
 * options and queues, encoded field by field, little-endian (never a struct
 * dump). Byte layouts: docs/socket-engine.md. The decoders take untrusted
 * bytes: every length is checked against what remains and against the state
 * it must agree with; they are fuzzed (tests/fuzz/fuzz_sock_image.c).
 */
#include <netinet/in.h>
#include <string.h>

#include "image.h"
#include "sock.h"
#include "util.h"

#define SOCK_IMAGE_VERSION 1
/* UDP sections with multicast state: version 1 plus a trailer. Written only
 * when there is something in it, so that every state has one encoding. */
#define UDP_IMAGE_VERSION_MC 2
/* States a TCP socket section may carry, and the FIN flags each implies
 * (sock_tcp.c). */
#define TCPF(s) (1u << (s))
#define TCPF_SECTION                                                                               \
	(TCPF(SOCKMIG_TCP_ESTABLISHED) | TCPF(SOCKMIG_TCP_FIN_WAIT1) | TCPF(SOCKMIG_TCP_FIN_WAIT2) |  \
	 TCPF(SOCKMIG_TCP_CLOSE_WAIT) | TCPF(SOCKMIG_TCP_LAST_ACK) | TCPF(SOCKMIG_TCP_CLOSING) |      \
	 TCPF(SOCKMIG_TCP_SYN_SENT))
#define TCPF_FIN_OUT                                                                               \
	(TCPF(SOCKMIG_TCP_FIN_WAIT1) | TCPF(SOCKMIG_TCP_FIN_WAIT2) | TCPF(SOCKMIG_TCP_LAST_ACK) |    \
	 TCPF(SOCKMIG_TCP_CLOSING))
#define TCPF_FIN_IN (TCPF(SOCKMIG_TCP_CLOSE_WAIT) | TCPF(SOCKMIG_TCP_LAST_ACK) | TCPF(SOCKMIG_TCP_CLOSING))
#define TCP_MAX_WSCALE 14
#define UDP_DGRAM_MAX 65535u

/* ---- endpoints and options ---- */

static void put_ep(struct sm_buf *b, const struct sockmig_endpoint *ep)
{
	sm_buf_put_u8(b, ep->family);
	sm_buf_put_u32(b, ep->scope_id);
	sm_buf_put_bytes(b, ep->addr, 16);
	sm_buf_put_u16(b, ep->port);
}

static int get_ep(struct sm_cursor *c, struct sockmig_endpoint *ret)
{
	const uint8_t *a;

	memset(ret, 0, sizeof(*ret));
	ret->family = sm_cur_u8(c);
	ret->scope_id = sm_cur_u32(c);
	a = sm_cur_bytes(c, 16);
	if (a)
		memcpy(ret->addr, a, 16);
	ret->port = sm_cur_u16(c);
	if (c->err)
		return c->err;
	if (ret->family != 0 && ret->family != AF_INET && ret->family != AF_INET6)
		return -EINVAL;
	return 0;
}

static void put_opts(struct sm_buf *b, const struct sockmig_sock_opts *o)
{
	sm_buf_put_u32(b, o->present);
	sm_buf_put_u32(b, o->file_flags);
	sm_buf_put_u8(b, o->reuseaddr);
	sm_buf_put_u8(b, o->reuseport);
	sm_buf_put_u8(b, o->keepalive);
	sm_buf_put_u8(b, o->buf_lock);
	sm_buf_put_u32(b, o->sndbuf);
	sm_buf_put_u32(b, o->rcvbuf);
	sm_buf_put_u32(b, o->linger_onoff);
	sm_buf_put_u32(b, o->linger_sec);
	sm_buf_put_u32(b, o->priority);
	sm_buf_put_u32(b, o->mark);
	sm_buf_put_u32(b, o->rcvlowat);
	sm_buf_put_u32(b, o->tos);
	sm_buf_put_u8(b, o->v6only);
	sm_buf_put_u8(b, o->transparent);
	sm_buf_put_u8(b, o->freebind);
	sm_buf_put_u8(b, o->nodelay);
	sm_buf_put_u8(b, o->cork);
	sm_buf_put_u8(b, o->mc_loop);
	sm_buf_put_u8(b, o->mc_ttl);
	sm_buf_put_u32(b, o->keepidle);
	sm_buf_put_u32(b, o->keepintvl);
	sm_buf_put_u32(b, o->keepcnt);
	sm_buf_put_u32(b, o->user_timeout);
	sm_buf_put_u32(b, o->notsent_lowat);
	sm_buf_put_u32(b, o->mc_ifindex);
	sm_buf_put_bytes(b, o->bindtodevice, SOCKMIG_NAME_LEN);
	sm_buf_put_bytes(b, o->congestion, SOCKMIG_NAME_LEN);
}

static int get_name(struct sm_cursor *c, char *ret)
{
	const uint8_t *p = sm_cur_bytes(c, SOCKMIG_NAME_LEN);

	if (!p)
		return c->err;
	if (!memchr(p, '\0', SOCKMIG_NAME_LEN))
		return -EINVAL;
	memcpy(ret, p, SOCKMIG_NAME_LEN);
	return 0;
}

static int get_opts(struct sm_cursor *c, struct sockmig_sock_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->present = sm_cur_u32(c);
	o->file_flags = sm_cur_u32(c);
	o->reuseaddr = sm_cur_u8(c);
	o->reuseport = sm_cur_u8(c);
	o->keepalive = sm_cur_u8(c);
	o->buf_lock = sm_cur_u8(c);
	o->sndbuf = sm_cur_u32(c);
	o->rcvbuf = sm_cur_u32(c);
	o->linger_onoff = sm_cur_u32(c);
	o->linger_sec = sm_cur_u32(c);
	o->priority = sm_cur_u32(c);
	o->mark = sm_cur_u32(c);
	o->rcvlowat = sm_cur_u32(c);
	o->tos = sm_cur_u32(c);
	o->v6only = sm_cur_u8(c);
	o->transparent = sm_cur_u8(c);
	o->freebind = sm_cur_u8(c);
	o->nodelay = sm_cur_u8(c);
	o->cork = sm_cur_u8(c);
	o->mc_loop = sm_cur_u8(c);
	o->mc_ttl = sm_cur_u8(c);
	o->keepidle = sm_cur_u32(c);
	o->keepintvl = sm_cur_u32(c);
	o->keepcnt = sm_cur_u32(c);
	o->user_timeout = sm_cur_u32(c);
	o->notsent_lowat = sm_cur_u32(c);
	o->mc_ifindex = sm_cur_u32(c);
	if (c->err)
		return c->err;
	if (get_name(c, o->bindtodevice) < 0 || get_name(c, o->congestion) < 0)
		return c->err ? c->err : -EINVAL;
	/* Sizes are passed to setsockopt as int halves: keep them sane. */
	if (o->sndbuf > INT32_MAX || o->rcvbuf > INT32_MAX)
		return -EINVAL;
	return 0;
}

/* ---- TCP ---- */

int sm_sock_encode_tcp(struct sm_buf *b, uint32_t id, const struct sockmig_tcp_state *st,
		       const void *sndq, const void *rcvq)
{
	if ((st->sndq_len && !sndq) || (st->rcvq_len && !rcvq))
		return sm_fail(-EINVAL, "TCP socket %u: a non-empty queue has no data to write", id);
	sm_buf_put_u8(b, SOCK_IMAGE_VERSION);
	sm_buf_put_u8(b, st->family);
	sm_buf_put_u8(b, st->state);
	sm_buf_put_u8(b, st->opts);
	sm_buf_put_u8(b, st->snd_wscale);
	sm_buf_put_u8(b, st->rcv_wscale);
	sm_buf_put_u16(b, 0);
	sm_buf_put_u32(b, id);
	sm_buf_put_u32(b, st->flags);
	put_ep(b, &st->local);
	put_ep(b, &st->remote);
	sm_buf_put_u32(b, st->mss_clamp);
	sm_buf_put_u32(b, st->snd_mss);
	sm_buf_put_u32(b, st->snd_una);
	sm_buf_put_u32(b, st->snd_seq);
	sm_buf_put_u32(b, st->rcv_seq);
	sm_buf_put_u32(b, st->sndq_unsent);
	sm_buf_put_u32(b, st->ts_now);
	sm_buf_put_u32(b, st->snd_wl1);
	sm_buf_put_u32(b, st->snd_wnd);
	sm_buf_put_u32(b, st->max_window);
	sm_buf_put_u32(b, st->rcv_wnd);
	sm_buf_put_u32(b, st->rcv_wup);
	put_opts(b, &st->sockopts);
	/* The blob lengths are the queue lengths: stored once. */
	sm_buf_put_blob(b, sndq, st->sndq_len);
	sm_buf_put_blob(b, rcvq, st->rcvq_len);
	if (b->err)
		return sm_fail(b->err, "TCP socket %u: out of memory encoding its image section", id);
	return 0;
}

int sm_sock_decode_tcp(const uint8_t *data, size_t len, uint64_t image_off, uint32_t *ret_id,
		       struct sockmig_tcp_state *ret, const uint8_t **ret_sndq, const uint8_t **ret_rcvq)
{
	struct sockmig_tcp_state st = { 0 };
	struct sm_cursor c;
	const uint8_t *sndq, *rcvq;
	size_t sl, rl;
	uint32_t id;
	uint16_t reserved;
	uint8_t ver;
	const char *why = NULL;

	sm_cursor_init(&c, data, len, image_off);
	ver = sm_cur_u8(&c);
	st.family = sm_cur_u8(&c);
	st.state = sm_cur_u8(&c);
	st.opts = sm_cur_u8(&c);
	st.snd_wscale = sm_cur_u8(&c);
	st.rcv_wscale = sm_cur_u8(&c);
	reserved = sm_cur_u16(&c);
	id = sm_cur_u32(&c);
	st.flags = sm_cur_u32(&c);
	if (get_ep(&c, &st.local) < 0 || get_ep(&c, &st.remote) < 0) {
		if (c.err)
			return sm_cur_check(&c, "TCP socket section", 1);
		why = "bad endpoint address family";
		goto bad;
	}
	st.mss_clamp = sm_cur_u32(&c);
	st.snd_mss = sm_cur_u32(&c);
	st.snd_una = sm_cur_u32(&c);
	st.snd_seq = sm_cur_u32(&c);
	st.rcv_seq = sm_cur_u32(&c);
	st.sndq_unsent = sm_cur_u32(&c);
	st.ts_now = sm_cur_u32(&c);
	st.snd_wl1 = sm_cur_u32(&c);
	st.snd_wnd = sm_cur_u32(&c);
	st.max_window = sm_cur_u32(&c);
	st.rcv_wnd = sm_cur_u32(&c);
	st.rcv_wup = sm_cur_u32(&c);
	if (get_opts(&c, &st.sockopts) < 0) {
		if (c.err)
			return sm_cur_check(&c, "TCP socket section", 1);
		why = "bad socket options";
		goto bad;
	}
	sndq = sm_cur_blob(&c, &sl);
	rcvq = sm_cur_blob(&c, &rl);
	if (sm_cur_check(&c, "TCP socket section", 1) < 0)
		return -EBADMSG;

	if (ver != SOCK_IMAGE_VERSION)
		why = "unknown version";
	else if (reserved)
		why = "reserved bytes are not zero";
	else if (st.family != AF_INET && st.family != AF_INET6)
		why = "bad address family";
	else if (st.local.family != st.family || st.remote.family != st.family)
		why = "endpoint families differ from the socket's";
	else if (st.state >= 32 || !(TCPF(st.state) & TCPF_SECTION))
		why = "unsupported TCP state";
	else if (!!(st.flags & SOCKMIG_TCP_FIN_OUT) != !!(TCPF(st.state) & TCPF_FIN_OUT) ||
		 !!(st.flags & SOCKMIG_TCP_FIN_IN) != !!(TCPF(st.state) & TCPF_FIN_IN) ||
		 !!(st.flags & SOCKMIG_TCP_FIN_OUT_ACKED) != (st.state == SOCKMIG_TCP_FIN_WAIT2))
		why = "FIN flags disagree with the TCP state";
	else if (st.state == SOCKMIG_TCP_SYN_SENT && (sl || rl))
		why = "SYN_SENT socket with queued data";
	else if (st.snd_wscale > TCP_MAX_WSCALE || st.rcv_wscale > TCP_MAX_WSCALE)
		why = "window scale above 14";
	else if (sl > UINT32_MAX || rl > UINT32_MAX)
		why = "queue too long";
	else if ((uint32_t)sl != st.snd_seq - st.snd_una)
		why = "send queue length disagrees with its sequence numbers";
	else if (st.sndq_unsent > sl)
		why = "more unsent bytes than queued";
	if (why)
		goto bad;
	st.sndq_len = (uint32_t)sl;
	st.rcvq_len = (uint32_t)rl;
	*ret = st;
	*ret_id = id;
	*ret_sndq = sndq;
	*ret_rcvq = rcvq;
	return 0;
bad:
	return sm_fail(-EBADMSG, "TCP socket section at byte %llu: %s",
		       (unsigned long long)image_off, why);
}

int sm_sock_image_write_tcp(struct sm_image_writer *w, uint32_t id, const struct sockmig_tcp_state *st,
			    const void *sndq, const void *rcvq)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	r = sm_sock_encode_tcp(&b, id, st, sndq, rcvq);
	if (r == 0)
		r = sm_image_write_section(w, SM_SEC_TCP_SOCKET, b.data, b.len);
	sm_buf_free(&b);
	return r;
}

/* ---- UDP ---- */

int sm_sock_encode_udp(struct sm_buf *b, uint32_t id, const struct sockmig_udp_state *st,
		       const struct sockmig_udp_queue *q)
{
	uint32_t n = q ? q->count : 0;
	int mc = st->mc_count || st->mc_ifname[0];

	if (st->mc_count > SOCKMIG_UDP_MC_MAX)
		return sm_fail(-EINVAL, "UDP socket %u: %u multicast memberships", id, st->mc_count);
	sm_buf_put_u8(b, mc ? UDP_IMAGE_VERSION_MC : SOCK_IMAGE_VERSION);
	sm_buf_put_u8(b, st->family);
	sm_buf_put_u16(b, 0);
	sm_buf_put_u32(b, id);
	sm_buf_put_u32(b, st->flags);
	put_ep(b, &st->local);
	put_ep(b, &st->remote);
	put_opts(b, &st->sockopts);
	sm_buf_put_u32(b, n);
	for (uint32_t i = 0; i < n; i++) {
		put_ep(b, &q->dgrams[i].src);
		put_ep(b, &q->dgrams[i].dst);
		sm_buf_put_blob(b, q->dgrams[i].data, q->dgrams[i].len);
	}
	if (mc) {
		sm_buf_put_bytes(b, st->mc_ifname, SOCKMIG_NAME_LEN);
		sm_buf_put_u32(b, st->mc_count);
		for (uint32_t i = 0; i < st->mc_count; i++) {
			sm_buf_put_u8(b, st->mc[i].family);
			sm_buf_put_u32(b, st->mc[i].ifindex);
			sm_buf_put_bytes(b, st->mc[i].ifname, SOCKMIG_NAME_LEN);
			sm_buf_put_bytes(b, st->mc[i].group, 16);
		}
	}
	if (b->err)
		return sm_fail(b->err, "UDP socket %u: out of memory encoding its image section", id);
	return 0;
}

/* The multicast trailer of a version 2 UDP section; NULL, or why not. */
static const char *get_mc(struct sm_cursor *c, struct sockmig_udp_state *st)
{
	static const uint8_t zero[12];

	if (get_name(c, st->mc_ifname) < 0)
		return c->err ? NULL : "bad multicast interface name";
	st->mc_count = sm_cur_u32(c);
	if (c->err)
		return NULL;
	if (st->mc_count > SOCKMIG_UDP_MC_MAX)
		return "too many multicast memberships";
	if (!st->mc_count && !st->mc_ifname[0])
		return "empty multicast trailer (version 1 says that)";
	if (st->mc_ifname[0] && (st->family != AF_INET6 || !(st->sockopts.present & SOCKMIG_OPT_MC) ||
				 !st->sockopts.mc_ifindex))
		return "multicast interface name without an IPv6 multicast interface";
	if (st->mc_count && !(st->flags & SOCKMIG_UDP_MC_PROBED))
		return "multicast memberships without the probed flag";
	for (uint32_t i = 0; i < st->mc_count; i++) {
		struct sockmig_udp_mc *m = &st->mc[i];
		const uint8_t *g;

		m->family = sm_cur_u8(c);
		m->ifindex = sm_cur_u32(c);
		if (get_name(c, m->ifname) < 0)
			return c->err ? NULL : "bad multicast membership interface name";
		g = sm_cur_bytes(c, 16);
		if (!g)
			return NULL;
		memcpy(m->group, g, 16);
		if (!m->ifname[0])
			return "multicast membership without an interface";
		if (m->family == AF_INET) {
			if ((m->group[0] & 0xf0) != 0xe0 || memcmp(m->group + 4, zero, 12))
				return "IPv4 multicast membership of a non-multicast address";
		} else if (m->family == AF_INET6 && st->family == AF_INET6) {
			if (m->group[0] != 0xff)
				return "IPv6 multicast membership of a non-multicast address";
		} else {
			return "bad multicast membership family";
		}
	}
	return NULL;
}

/* Smallest encoding of one datagram: two endpoints and an empty blob. */
#define DGRAM_MIN_ENCODED (2 * 23 + 4)

int sm_sock_decode_udp(const uint8_t *data, size_t len, uint64_t image_off, uint32_t *ret_id,
		       struct sockmig_udp_state *ret, struct sockmig_udp_queue **ret_q)
{
	struct sockmig_udp_state st = { 0 };
	struct sockmig_udp_dgram *dg = NULL;
	struct sm_cursor c;
	uint32_t id, n;
	uint16_t reserved;
	uint8_t ver;
	const char *why = NULL;
	int r;

	sm_cursor_init(&c, data, len, image_off);
	ver = sm_cur_u8(&c);
	st.family = sm_cur_u8(&c);
	reserved = sm_cur_u16(&c);
	id = sm_cur_u32(&c);
	st.flags = sm_cur_u32(&c);
	if (get_ep(&c, &st.local) < 0 || get_ep(&c, &st.remote) < 0 ||
	    get_opts(&c, &st.sockopts) < 0) {
		if (c.err)
			return sm_cur_check(&c, "UDP socket section", 1);
		why = "bad endpoint or socket options";
		goto bad;
	}
	n = sm_cur_u32(&c);
	if (c.err)
		return sm_cur_check(&c, "UDP socket section", 1);
	if (ver != SOCK_IMAGE_VERSION && ver != UDP_IMAGE_VERSION_MC)
		why = "unknown version";
	else if (reserved)
		why = "reserved bytes are not zero";
	else if (st.family != AF_INET && st.family != AF_INET6)
		why = "bad address family";
	else if (st.local.family != st.family ||
		 (st.remote.family && st.remote.family != st.family))
		why = "endpoint families differ from the socket's";
	else if (n > sm_cur_remaining(&c) / DGRAM_MIN_ENCODED)
		why = "more datagrams than bytes";
	if (why)
		goto bad;

	/* n is bounded by the payload size just above: no huge allocation. */
	dg = calloc(n ? n : 1, sizeof(*dg));
	if (!dg)
		return sm_fail(-ENOMEM, "UDP socket section at byte %llu: out of memory",
			       (unsigned long long)image_off);
	for (uint32_t i = 0; i < n; i++) {
		size_t l;

		if (get_ep(&c, &dg[i].src) < 0 || get_ep(&c, &dg[i].dst) < 0) {
			if (!c.err) {
				why = "bad datagram endpoint";
				free(dg);
				goto bad;
			}
			break;
		}
		dg[i].data = sm_cur_blob(&c, &l);
		if (c.err)
			break;
		if (l > UDP_DGRAM_MAX || dg[i].src.family == 0) {
			why = l > UDP_DGRAM_MAX ? "datagram longer than 65535 bytes" : "datagram without a source";
			free(dg);
			goto bad;
		}
		dg[i].len = (uint32_t)l;
	}
	if (!c.err && ver == UDP_IMAGE_VERSION_MC) {
		why = get_mc(&c, &st);
		if (why) {
			free(dg);
			goto bad;
		}
	}
	r = sm_cur_check(&c, "UDP socket section", 1);
	if (r < 0) {
		free(dg);
		return r;
	}
	r = sockmig_udp_queue_new(dg, n, ret_q);
	free(dg);
	if (r < 0)
		return r;
	*ret = st;
	*ret_id = id;
	return 0;
bad:
	return sm_fail(-EBADMSG, "UDP socket section at byte %llu: %s",
		       (unsigned long long)image_off, why);
}

int sm_sock_image_write_udp(struct sm_image_writer *w, uint32_t id, const struct sockmig_udp_state *st,
			    const struct sockmig_udp_queue *q)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	r = sm_sock_encode_udp(&b, id, st, q);
	if (r == 0)
		r = sm_image_write_section(w, SM_SEC_UDP_SOCKET, b.data, b.len);
	sm_buf_free(&b);
	return r;
}

/* ---- TCP listeners (section 0x0102) ---- */

int sm_sock_encode_listener(struct sm_buf *b, uint32_t id, const struct sockmig_tcp_listener_state *st)
{
	sm_buf_put_u8(b, SOCK_IMAGE_VERSION);
	sm_buf_put_u8(b, st->family);
	sm_buf_put_u16(b, 0);
	sm_buf_put_u32(b, id);
	sm_buf_put_u32(b, st->flags);
	put_ep(b, &st->local);
	sm_buf_put_u32(b, st->backlog);
	sm_buf_put_u32(b, st->acceptq);
	sm_buf_put_u32(b, st->defer_accept);
	sm_buf_put_u32(b, st->fastopen_qlen);
	put_opts(b, &st->sockopts);
	if (b->err)
		return sm_fail(b->err, "TCP listener %u: out of memory encoding its image section", id);
	return 0;
}

int sm_sock_decode_listener(const uint8_t *data, size_t len, uint64_t image_off, uint32_t *ret_id,
			    struct sockmig_tcp_listener_state *ret)
{
	struct sockmig_tcp_listener_state st = { 0 };
	struct sm_cursor c;
	uint32_t id;
	uint8_t ver;

	sm_cursor_init(&c, data, len, image_off);
	ver = sm_cur_u8(&c);
	st.family = sm_cur_u8(&c);
	sm_cur_u16(&c);
	id = sm_cur_u32(&c);
	st.flags = sm_cur_u32(&c);
	if (c.err)
		return sm_cur_check(&c, "TCP listener section", 0);
	if (ver != SOCK_IMAGE_VERSION)
		return sm_cur_fail(&c, "TCP listener section", "version %u, this sockmig reads %u", ver,
				   SOCK_IMAGE_VERSION);
	if (st.family != AF_INET && st.family != AF_INET6)
		return sm_cur_fail(&c, "TCP listener section", "address family %u", st.family);
	if (get_ep(&c, &st.local) < 0 || st.local.family == 0)
		return c.err ? sm_cur_check(&c, "TCP listener section", 0) :
			       sm_cur_fail(&c, "TCP listener section", "bad local address");
	st.backlog = sm_cur_u32(&c);
	st.acceptq = sm_cur_u32(&c);
	st.defer_accept = sm_cur_u32(&c);
	st.fastopen_qlen = sm_cur_u32(&c);
	if (get_opts(&c, &st.sockopts) < 0)
		return c.err && c.recorded ? c.err :
		       c.err ? sm_cur_check(&c, "TCP listener section", 0) :
			       sm_cur_fail(&c, "TCP listener section", "bad socket options");
	if (st.backlog > 65535)
		return sm_cur_fail(&c, "TCP listener section", "backlog %u", st.backlog);
	if (sm_cur_check(&c, "TCP listener section", 1) < 0)
		return -EBADMSG;
	*ret_id = id;
	*ret = st;
	return 0;
}
