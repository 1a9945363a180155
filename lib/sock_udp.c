/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * UDP sockets: bound or connected, IPv4, IPv6 and dual-stack; the datagrams
 * waiting in the receive queue are copied without being consumed and sent
 * again, in order and from their original sources, on the destination.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

#include "sock.h"
#include "util.h"

#define DGRAM_BUF 65536
/* A receive queue holds at most rcvbuf bytes; this bounds the loop against
 * a queue that is being filled while we read it (the flow must be blocked). */
#define MAX_DGRAMS (1u << 20)

static int udp_fail(int fd, const char *what)
{
	return sm_fail(-errno, "UDP socket fd %d: %s: %s", fd, what, strerror(errno));
}

int sockmig_udp_save(int fd, struct sockmig_udp_state *ret)
{
	struct sockmig_udp_state st = { 0 };
	struct sockaddr_storage ss;
	socklen_t len;
	int r, v;

	len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &v, &len) < 0)
		return udp_fail(fd, "cannot read its protocol");
	if (v != IPPROTO_UDP)
		return sm_fail(-EPROTONOSUPPORT, "socket fd %d: protocol %d is not UDP", fd, v);
	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return udp_fail(fd, "cannot read the local address");
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return sm_fail(-EAFNOSUPPORT, "socket fd %d: address family %d is not migratable",
			       fd, ss.ss_family);
	st.family = (uint8_t)ss.ss_family;
	sm_sockaddr_to_ep(&ss, &st.local);
	len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		sm_sockaddr_to_ep(&ss, &st.remote);
	else if (errno != ENOTCONN)
		return udp_fail(fd, "cannot read the remote address");
	r = sockmig_sock_opts_save(fd, st.family, IPPROTO_UDP, &st.sockopts);
	if (r < 0)
		return r;
	*ret = st;
	return 0;
}

void sockmig_udp_queue_free(struct sockmig_udp_queue *q)
{
	free(q);
}

int sockmig_udp_queue_new(const struct sockmig_udp_dgram *dgrams, uint32_t count,
			  struct sockmig_udp_queue **ret)
{
	struct sockmig_udp_queue *q;
	size_t head, total = 0;
	uint8_t *p;

	if (count > MAX_DGRAMS)
		return sm_fail(-E2BIG, "UDP queue of %u datagrams is too long", count);
	for (uint32_t i = 0; i < count; i++)
		total += dgrams[i].len;
	head = sizeof(*q) + (size_t)count * sizeof(q->dgrams[0]);
	q = malloc(head + total + 1);
	if (!q)
		return sm_fail(-ENOMEM, "UDP queue of %u datagrams: out of memory", count);
	q->count = count;
	q->bytes = total;
	p = (uint8_t *)q + head;
	for (uint32_t i = 0; i < count; i++) {
		q->dgrams[i] = dgrams[i];
		if (dgrams[i].len)
			memcpy(p, dgrams[i].data, dgrams[i].len);
		q->dgrams[i].data = p;
		p += dgrams[i].len;
	}
	*ret = q;
	return 0;
}

/* Destination address of a datagram, from IP_PKTINFO / IPV6_PKTINFO. */
static void dgram_dst(struct msghdr *mh, struct sockmig_endpoint *ret, uint16_t port)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;

			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			ret->family = AF_INET;
			memcpy(ret->addr, &pi.ipi_addr, 4);
			ret->port = port;
		} else if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo pi;

			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			ret->family = AF_INET6;
			memcpy(ret->addr, &pi.ipi6_addr, 16);
			ret->port = port;
		}
	}
}

int sockmig_udp_save_queue(int fd, const struct sockmig_udp_state *st, struct sockmig_udp_queue **ret)
{
	_cleanup_free_ struct sockmig_udp_dgram *dg = NULL;
	_cleanup_free_ uint8_t *data = NULL;
	size_t n = 0, cap = 0, used = 0, data_cap = 0;
	int peek_off, pktinfo = -1, one = 1, r;
	int pi_level = st->family == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
	int pi_name = st->family == AF_INET6 ? IPV6_RECVPKTINFO : IP_PKTINFO;
	socklen_t len;
	uint8_t buf[DGRAM_BUF];
	union {
		char b[CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo))];
		struct cmsghdr align;
	} cbuf;

	/*
	 * SO_PEEK_OFF belongs to the socket, which the application shares: read
	 * it, use it, put it back. With a peek offset, each MSG_PEEK moves the
	 * offset past what it returned, so successive peeks walk the queue
	 * datagram by datagram without consuming anything.
	 */
	len = sizeof(peek_off);
	if (getsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &peek_off, &len) < 0)
		return udp_fail(fd, "cannot read SO_PEEK_OFF");
	/* The destination address matters only to a wildcard socket. */
	if (sm_ep_is_any(&st->local)) {
		len = sizeof(pktinfo);
		if (getsockopt(fd, pi_level, pi_name, &pktinfo, &len) < 0)
			return udp_fail(fd, "cannot read its packet info option");
		if (!pktinfo && setsockopt(fd, pi_level, pi_name, &one, sizeof(one)) < 0)
			return udp_fail(fd, "cannot turn packet info on");
	}
	r = sm_setsockopt_int(fd, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF");
	if (r < 0)
		goto out_restore;

	for (;;) {
		struct sockaddr_storage from;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr mh = {
			.msg_name = &from, .msg_namelen = sizeof(from),
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = cbuf.b, .msg_controllen = sizeof(cbuf.b),
		};
		ssize_t k = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);

		if (k < 0) {
			if (errno == EAGAIN)
				break;
			if (errno == EINTR)
				continue;
			r = udp_fail(fd, "cannot peek the receive queue");
			goto out_restore;
		}
		if ((size_t)k > sizeof(buf) || n >= MAX_DGRAMS) {
			r = sm_fail(-EMSGSIZE, "UDP socket fd %d: datagram %zu is %zd bytes or the queue is endless",
				    fd, n, k);
			goto out_restore;
		}
		if (n == cap) {
			void *p = realloc(dg, (cap = cap ? 2 * cap : 16) * sizeof(*dg));

			if (!p) {
				r = sm_fail(-ENOMEM, "UDP socket fd %d: out of memory", fd);
				goto out_restore;
			}
			dg = p;
		}
		if (used + (size_t)k > data_cap) {
			void *p;

			data_cap = (used + (size_t)k) * 2 + 4096;
			p = realloc(data, data_cap);
			if (!p) {
				r = sm_fail(-ENOMEM, "UDP socket fd %d: out of memory", fd);
				goto out_restore;
			}
			data = p;
		}
		memcpy(data + used, buf, (size_t)k);
		memset(&dg[n], 0, sizeof(dg[n]));
		sm_sockaddr_to_ep(&from, &dg[n].src);
		if (pktinfo >= 0)
			dgram_dst(&mh, &dg[n].dst, st->local.port);
		dg[n].len = (uint32_t)k;
		/* an offset for now: data may still move in realloc */
		dg[n].data = (const uint8_t *)(uintptr_t)used;
		used += (size_t)k;
		n++;
	}
	for (size_t i = 0; i < n; i++)
		dg[i].data = data + (uintptr_t)dg[i].data;
	r = sockmig_udp_queue_new(dg, (uint32_t)n, ret);

out_restore:
	if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &peek_off, sizeof(peek_off)) < 0 && r == 0)
		r = udp_fail(fd, "cannot put SO_PEEK_OFF back");
	if (pktinfo == 0 && setsockopt(fd, pi_level, pi_name, &pktinfo, sizeof(pktinfo)) < 0 && r == 0)
		r = udp_fail(fd, "cannot turn packet info back off");
	return r;
}

static int set_transparent(int fd, int family, int on)
{
	if (family == AF_INET6)
		return sm_setsockopt_int(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, on, "IPV6_TRANSPARENT");
	return sm_setsockopt_int(fd, IPPROTO_IP, IP_TRANSPARENT, on, "IP_TRANSPARENT");
}

int sockmig_udp_restore(const struct sockmig_udp_state *st, int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	const struct sockmig_sock_opts *o = &st->sockopts;
	int saved_transparent = (o->present & SOCKMIG_OPT_TRANSPARENT) && o->transparent;
	struct sockaddr_storage ss;
	char ep[64];
	int r, salen;

	if (st->family != AF_INET && st->family != AF_INET6)
		return sm_fail(-EAFNOSUPPORT, "UDP state: address family %u is not supported", st->family);
	fd = socket(st->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
	if (fd < 0)
		return sm_fail(-errno, "cannot create a UDP socket for %s: %s",
			       sm_ep_str(&st->local, ep, sizeof(ep)), strerror(errno));
	r = sm_sock_opts_restore_early(fd, st->family, IPPROTO_UDP, o);
	if (r < 0)
		return r;
	/* As for TCP: the address comes to this node after the socket, and
	 * connect()'s route lookup wants a local source unless transparent. */
	r = set_transparent(fd, st->family, 1);
	if (r < 0)
		return r;
	salen = sm_ep_to_sockaddr(&st->local, &ss);
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
		return sm_fail(-errno, "cannot bind the restored UDP socket to %s: %s",
			       sm_ep_str(&st->local, ep, sizeof(ep)), strerror(errno));
	if (st->remote.family) {
		salen = sm_ep_to_sockaddr(&st->remote, &ss);
		if (connect(fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
			return sm_fail(-errno, "cannot connect the restored UDP socket to %s: %s",
				       sm_ep_str(&st->remote, ep, sizeof(ep)), strerror(errno));
	}
	/* Later route lookups (the cached one goes stale when the address
	 * arrives) find the address local: transparent is no longer needed. */
	if (!saved_transparent) {
		r = set_transparent(fd, st->family, 0);
		if (r < 0)
			return r;
	}
	r = sm_sock_opts_restore_late(fd, st->family, IPPROTO_UDP, o);
	if (r < 0)
		return r;
	*ret_fd = sm_take_fd(&fd);
	return 0;
}

/* A socket that sends from src (not local here): IP_TRANSPARENT lets it bind
 * and route from a foreign address. */
static int sender_open(const struct sockmig_endpoint *src)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_storage ss;
	char ep[64];
	int salen, r;

	fd = socket(src->family, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
	if (fd < 0)
		return sm_fail(-errno, "cannot create a UDP sender: %s", strerror(errno));
	r = set_transparent(fd, src->family, 1);
	if (r < 0)
		return r;
	r = sm_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
	if (r < 0)
		return r;
	salen = sm_ep_to_sockaddr(src, &ss);
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
		return sm_fail(-errno, "cannot bind a UDP sender to the datagram source %s: %s",
			       sm_ep_str(src, ep, sizeof(ep)), strerror(errno));
	return sm_take_fd(&fd);
}

int sockmig_udp_inject_queue(const struct sockmig_udp_state *st, const struct sockmig_udp_queue *q)
{
	_cleanup_close_ int sfd = -1;
	struct sockmig_endpoint cur = { 0 }, src, dst;
	struct sockaddr_storage ss;
	char ep[64];
	uint32_t i;
	int salen;

	for (i = 0; q && i < q->count; i++) {
		const struct sockmig_udp_dgram *d = &q->dgrams[i];

		/* On the wire a dual-stack socket's IPv4 datagram is IPv4. */
		sm_ep_wire(&d->src, &src);
		sm_ep_wire(d->dst.family ? &d->dst : &st->local, &dst);
		dst.port = st->local.port;
		if (sm_ep_is_any(&dst))
			return sm_fail(-EDESTADDRREQ, "UDP datagram %u: the socket is bound to a wildcard and the datagram's destination is unknown", i);
		if (src.family != dst.family)
			return sm_fail(-EAFNOSUPPORT, "UDP datagram %u: source %s and destination differ in family",
				       i, sm_ep_str(&src, ep, sizeof(ep)));
		/* One sender per run of datagrams from the same source keeps the
		 * common case (a connected socket: one source) at one socket. */
		if (sfd < 0 || memcmp(&src, &cur, sizeof(src))) {
			if (sfd >= 0)
				close(sfd);
			sfd = sender_open(&src);
			if (sfd < 0)
				return sfd;
			cur = src;
		}
		salen = sm_ep_to_sockaddr(&dst, &ss);
		/* Local delivery runs in the softirq that sendto's
		 * local_bh_enable() triggers: queued in the order sent. The
		 * test checks the order on the receiver. */
		if (sendto(sfd, d->data, d->len, 0, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
			return sm_fail(-errno, "cannot re-send UDP datagram %u (%u bytes) to %s: %s", i,
				       d->len, sm_ep_str(&dst, ep, sizeof(ep)), strerror(errno));
	}
	return (int)i;
}
