/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TCP listeners: the bound address, the backlog, the options; restored as
 * socket + options + bind + listen(backlog). The connections waiting in the
 * accept queue are not sockets of their own yet and cannot be saved: the
 * caller drains the queue through the application before the freeze
 * (sockmig_tcp_listener_queue() tells how many wait).
 */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "sock.h"
#include "util.h"

static int listen_fail(int fd, const char *what)
{
	return sm_fail(-errno, "TCP listener fd %d: %s: %s", fd, what, strerror(errno));
}

/* For a listener, TCP_INFO's tcpi_unacked is the accept queue length
 * (sk_ack_backlog) and tcpi_sacked the backlog (sk_max_ack_backlog). */
static int listener_info(int fd, uint32_t *ret_acceptq, uint32_t *ret_backlog)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return listen_fail(fd, "cannot read TCP_INFO");
	if (ti.tcpi_state != SOCKMIG_TCP_LISTEN)
		return sm_fail(-EINVAL, "TCP socket fd %d: state %u is not LISTEN", fd, ti.tcpi_state);
	*ret_acceptq = ti.tcpi_unacked;
	*ret_backlog = ti.tcpi_sacked;
	return 0;
}

int sockmig_tcp_listener_queue(int fd, uint32_t *ret_acceptq, uint32_t *ret_backlog)
{
	uint32_t q, b;
	int r;

	r = listener_info(fd, &q, &b);
	if (r < 0)
		return r;
	if (ret_acceptq)
		*ret_acceptq = q;
	if (ret_backlog)
		*ret_backlog = b;
	return 0;
}

int sockmig_tcp_listener_save(int fd, struct sockmig_tcp_listener_state *ret)
{
	struct sockmig_tcp_listener_state st = { 0 };
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int r, v;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return listen_fail(fd, "cannot read the local address");
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return sm_fail(-EAFNOSUPPORT, "socket fd %d: address family %d is not migratable", fd,
			       ss.ss_family);
	st.family = (uint8_t)ss.ss_family;
	sm_sockaddr_to_ep(&ss, &st.local);
	r = listener_info(fd, &st.acceptq, &st.backlog);
	if (r < 0)
		return r;
	r = sockmig_sock_opts_save(fd, st.family, IPPROTO_TCP, &st.sockopts);
	if (r < 0)
		return r;
	len = sizeof(v);
	if (getsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, &len) < 0)
		return listen_fail(fd, "cannot read TCP_DEFER_ACCEPT");
	st.defer_accept = (uint32_t)v;
	len = sizeof(v);
	if (getsockopt(fd, IPPROTO_TCP, TCP_FASTOPEN, &v, &len) == 0) {
		st.fastopen_qlen = (uint32_t)v;
		st.flags |= SOCKMIG_LISTENER_HAS_FASTOPEN;
	} else if (errno != ENOPROTOOPT) {
		return listen_fail(fd, "cannot read TCP_FASTOPEN");
	}
	*ret = st;
	return 0;
}

static int set_transparent(int fd, int family, int on)
{
	if (family == AF_INET6)
		return sm_setsockopt_int(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, on, "IPV6_TRANSPARENT");
	return sm_setsockopt_int(fd, IPPROTO_IP, IP_TRANSPARENT, on, "IP_TRANSPARENT");
}

int sockmig_tcp_listener_restore(const struct sockmig_tcp_listener_state *st, int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	const struct sockmig_sock_opts *o = &st->sockopts;
	int saved_transparent = (o->present & SOCKMIG_OPT_TRANSPARENT) && o->transparent;
	struct sockaddr_storage ss;
	char ep[64];
	int r, salen;

	if (st->family != AF_INET && st->family != AF_INET6)
		return sm_fail(-EAFNOSUPPORT, "TCP listener: address family %u is not supported", st->family);
	if (st->local.family != st->family)
		return sm_fail(-EINVAL, "TCP listener: endpoint family differs from the socket's");
	fd = socket(st->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return sm_fail(-errno, "cannot create a TCP listener for %s: %s",
			       sm_ep_str(&st->local, ep, sizeof(ep)), strerror(errno));
	r = sm_sock_opts_restore_early(fd, st->family, IPPROTO_TCP, o);
	if (r < 0)
		return r;
	/* The address comes to this node after the socket: transparent lets
	 * bind() take it (as IP_FREEBIND would, but that one the application
	 * could read back); back to the saved value right after. */
	if (!sm_ep_is_any(&st->local) || saved_transparent) {
		r = set_transparent(fd, st->family, 1);
		if (r < 0)
			return r;
	}
	salen = sm_ep_to_sockaddr(&st->local, &ss);
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
		return sm_fail(-errno, "cannot bind the restored TCP listener to %s: %s",
			       sm_ep_str(&st->local, ep, sizeof(ep)), strerror(errno));
	if (!sm_ep_is_any(&st->local) && !saved_transparent) {
		r = set_transparent(fd, st->family, 0);
		if (r < 0)
			return r;
	}
	/* Options the accepted sockets inherit, before listen() */
	if (st->defer_accept) {
		r = sm_setsockopt_int(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, (int)st->defer_accept, "TCP_DEFER_ACCEPT");
		if (r < 0)
			return r;
	}
	if ((st->flags & SOCKMIG_LISTENER_HAS_FASTOPEN) && st->fastopen_qlen) {
		r = sm_setsockopt_int(fd, IPPROTO_TCP, TCP_FASTOPEN, (int)st->fastopen_qlen, "TCP_FASTOPEN");
		if (r < 0)
			return r;
	}
	r = sm_sock_opts_restore_late(fd, st->family, IPPROTO_TCP, o);
	if (r < 0)
		return r;
	if (listen(fd, (int)(st->backlog > INT32_MAX ? INT32_MAX : st->backlog)) < 0)
		return sm_fail(-errno, "cannot listen on %s (backlog %u): %s",
			       sm_ep_str(&st->local, ep, sizeof(ep)), st->backlog, strerror(errno));
	*ret_fd = sm_take_fd(&fd);
	return 0;
}
