/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Socket options common to TCP and UDP, and endpoint conversions.
 *
 * Save reads every option we carry (one getsockopt each: the kernel offers no
 * batch read short of sock_diag). Restore writes only what differs from a
 * fresh socket's default, so a socket the application never tuned costs few
 * syscalls on the destination.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "sock.h"
#include "util.h"

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif
#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

/* A fresh TCP socket's receive buffer with the default tcp_rmem (131072):
 * an unlocked receive buffer no larger than this is left to the kernel on
 * restore. */
#define TCP_RCVBUF_DEFAULT 131072

/* Kernel defaults of a fresh socket (include/net/tcp.h). */
#define TCP_KEEPIDLE_DEFAULT 7200
#define TCP_KEEPINTVL_DEFAULT 75
#define TCP_KEEPCNT_DEFAULT 9

/* What F_SETFL can change; the rest of F_GETFL (O_RDWR, O_LARGEFILE) is not
 * the application's choice. */
#define FILE_FLAGS_SETTABLE ((uint32_t)(O_APPEND | O_ASYNC | O_NONBLOCK | O_NOATIME | O_DIRECT))

/* ---- endpoints ---- */

void sm_sockaddr_to_ep(const struct sockaddr_storage *ss, struct sockmig_endpoint *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		ret->family = AF_INET;
		memcpy(ret->addr, &sin->sin_addr, 4);
		ret->port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		ret->family = AF_INET6;
		memcpy(ret->addr, &sin6->sin6_addr, 16);
		ret->port = ntohs(sin6->sin6_port);
		ret->scope_id = sin6->sin6_scope_id;
	}
}

int sm_ep_to_sockaddr(const struct sockmig_endpoint *ep, struct sockaddr_storage *ret)
{
	memset(ret, 0, sizeof(*ret));
	if (ep->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ret;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, ep->addr, 4);
		sin->sin_port = htons(ep->port);
		return sizeof(*sin);
	}
	if (ep->family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ret;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, ep->addr, 16);
		sin6->sin6_port = htons(ep->port);
		sin6->sin6_scope_id = ep->scope_id;
		return sizeof(*sin6);
	}
	return -EAFNOSUPPORT;
}

int sm_ep_is_v4mapped(const struct sockmig_endpoint *ep)
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return ep->family == AF_INET6 && !memcmp(ep->addr, prefix, 12);
}

void sm_ep_wire(const struct sockmig_endpoint *ep, struct sockmig_endpoint *ret)
{
	*ret = *ep;
	if (sm_ep_is_v4mapped(ep)) {
		ret->family = AF_INET;
		ret->scope_id = 0;
		memmove(ret->addr, ep->addr + 12, 4);
		memset(ret->addr + 4, 0, 12);
	}
}

int sm_ep_is_any(const struct sockmig_endpoint *ep)
{
	static const uint8_t zero[16];

	if (ep->family == AF_INET)
		return !memcmp(ep->addr, zero, 4);
	return !memcmp(ep->addr, zero, 16);
}

const char *sm_ep_str(const struct sockmig_endpoint *ep, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (ep->family == AF_INET) {
		inet_ntop(AF_INET, ep->addr, a, sizeof(a));
		snprintf(buf, size, "%s:%u", a, ep->port);
	} else if (ep->family == AF_INET6) {
		inet_ntop(AF_INET6, ep->addr, a, sizeof(a));
		snprintf(buf, size, "[%s]:%u", a, ep->port);
	} else {
		snprintf(buf, size, "(none)");
	}
	return buf;
}

void sockmig_tcp_flow(const struct sockmig_tcp_state *st, struct sockmig_flow *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->proto = IPPROTO_TCP;
	sm_ep_wire(&st->local, &ret->local);
	sm_ep_wire(&st->remote, &ret->remote);
}

/* ---- helpers ---- */

int sm_setsockopt_int(int fd, int level, int name, int val, const char *what)
{
	if (setsockopt(fd, level, name, &val, sizeof(val)) < 0)
		return sm_fail(-errno, "socket fd %d: cannot set %s to %d: %s", fd, what, val,
			       strerror(errno));
	return 0;
}

/* 1 read, 0 not supported by this kernel (presence bit stays clear), -errno */
static int get_int(int fd, int level, int name, uint32_t *ret, const char *what)
{
	int v = 0;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, name, &v, &len) < 0) {
		if (errno == ENOPROTOOPT || errno == EOPNOTSUPP)
			return 0;
		return sm_fail(-errno, "socket fd %d: cannot read %s: %s", fd, what, strerror(errno));
	}
	*ret = (uint32_t)v;
	return 1;
}

#define GET(level, name, field, bit)                                                      \
	do {                                                                              \
		uint32_t v_;                                                              \
		r = get_int(fd, level, name, &v_, #name);                                 \
		if (r < 0)                                                                \
			return r;                                                         \
		if (r) {                                                                  \
			o.field = v_;                                                     \
			o.present |= bit;                                                 \
		}                                                                         \
	} while (0)

int sockmig_sock_opts_save(int fd, int family, int proto, struct sockmig_sock_opts *ret)
{
	struct sockmig_sock_opts o = { 0 };
	struct linger lg;
	socklen_t len;
	int r, fl;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return sm_fail(-errno, "socket fd %d: cannot read file status flags: %s", fd,
			       strerror(errno));
	o.file_flags = (uint32_t)fl & FILE_FLAGS_SETTABLE;
	o.present |= SOCKMIG_OPT_FILE_FLAGS;

	/* SO_REUSEADDR must be read before TCP_REPAIR is turned on: repair mode
	 * forces sk_reuse to SK_FORCE_REUSE (2) and turning it off sets
	 * SK_NO_REUSE, losing the application's value both ways. */
	GET(SOL_SOCKET, SO_REUSEADDR, reuseaddr, SOCKMIG_OPT_REUSEADDR);
	GET(SOL_SOCKET, SO_REUSEPORT, reuseport, SOCKMIG_OPT_REUSEPORT);
	/* SO_MEMINFO gives sk_sndbuf and sk_rcvbuf (what SO_SNDBUF/SO_RCVBUF
	 * report, doubled values) in one call. */
	{
		uint32_t mi[SK_MEMINFO_VARS];

		len = sizeof(mi);
		if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) == 0 &&
		    len >= (SK_MEMINFO_SNDBUF + 1) * sizeof(mi[0])) {
			o.sndbuf = mi[SK_MEMINFO_SNDBUF];
			o.rcvbuf = mi[SK_MEMINFO_RCVBUF];
			o.present |= SOCKMIG_OPT_SNDBUF;
		} else {
			GET(SOL_SOCKET, SO_SNDBUF, sndbuf, SOCKMIG_OPT_SNDBUF);
			GET(SOL_SOCKET, SO_RCVBUF, rcvbuf, SOCKMIG_OPT_SNDBUF);
		}
	}
	GET(SOL_SOCKET, SO_BUF_LOCK, buf_lock, SOCKMIG_OPT_BUF_LOCK);
	GET(SOL_SOCKET, SO_PRIORITY, priority, SOCKMIG_OPT_PRIORITY);
	GET(SOL_SOCKET, SO_MARK, mark, SOCKMIG_OPT_MARK);
	GET(SOL_SOCKET, SO_RCVLOWAT, rcvlowat, SOCKMIG_OPT_RCVLOWAT);

	len = sizeof(lg);
	if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) < 0)
		return sm_fail(-errno, "socket fd %d: cannot read SO_LINGER: %s", fd, strerror(errno));
	o.linger_onoff = (uint32_t)lg.l_onoff;
	o.linger_sec = (uint32_t)lg.l_linger;
	o.present |= SOCKMIG_OPT_LINGER;

	/* The kernel wants room for IFNAMSIZ (16) bytes, NUL included. */
	char name[IFNAMSIZ + 1] = { 0 };
	len = IFNAMSIZ;
	if (getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, &len) < 0)
		return sm_fail(-errno, "socket fd %d: cannot read SO_BINDTODEVICE: %s", fd,
			       strerror(errno));
	memcpy(o.bindtodevice, name, sizeof(o.bindtodevice) - 1);
	o.present |= SOCKMIG_OPT_BINDTODEVICE;

	if (family == AF_INET6) {
		GET(IPPROTO_IPV6, IPV6_TCLASS, tos, SOCKMIG_OPT_TOS);
		GET(IPPROTO_IPV6, IPV6_V6ONLY, v6only, SOCKMIG_OPT_V6ONLY);
		GET(IPPROTO_IPV6, IPV6_TRANSPARENT, transparent, SOCKMIG_OPT_TRANSPARENT);
		GET(IPPROTO_IPV6, IPV6_FREEBIND, freebind, SOCKMIG_OPT_FREEBIND);
	} else {
		GET(IPPROTO_IP, IP_TOS, tos, SOCKMIG_OPT_TOS);
		GET(IPPROTO_IP, IP_TRANSPARENT, transparent, SOCKMIG_OPT_TRANSPARENT);
		GET(IPPROTO_IP, IP_FREEBIND, freebind, SOCKMIG_OPT_FREEBIND);
	}

	if (proto == IPPROTO_TCP) {
		GET(SOL_SOCKET, SO_KEEPALIVE, keepalive, SOCKMIG_OPT_KEEPALIVE);
		GET(IPPROTO_TCP, TCP_KEEPIDLE, keepidle, SOCKMIG_OPT_KEEPIDLE);
		GET(IPPROTO_TCP, TCP_KEEPINTVL, keepintvl, SOCKMIG_OPT_KEEPIDLE);
		GET(IPPROTO_TCP, TCP_KEEPCNT, keepcnt, SOCKMIG_OPT_KEEPIDLE);
		GET(IPPROTO_TCP, TCP_NODELAY, nodelay, SOCKMIG_OPT_NODELAY);
		GET(IPPROTO_TCP, TCP_CORK, cork, SOCKMIG_OPT_CORK);
		GET(IPPROTO_TCP, TCP_USER_TIMEOUT, user_timeout, SOCKMIG_OPT_USER_TIMEOUT);
		GET(IPPROTO_TCP, TCP_NOTSENT_LOWAT, notsent_lowat, SOCKMIG_OPT_NOTSENT_LOWAT);
		memset(name, 0, sizeof(name));
		len = IFNAMSIZ; /* TCP_CA_NAME_MAX is 16 as well */
		if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) == 0) {
			memcpy(o.congestion, name, sizeof(o.congestion) - 1);
			o.present |= SOCKMIG_OPT_CONGESTION;
		} else if (errno != ENOPROTOOPT) {
			return sm_fail(-errno, "socket fd %d: cannot read TCP_CONGESTION: %s", fd,
				       strerror(errno));
		}
	} else if (family == AF_INET) {
		/* IP_MULTICAST_TTL/LOOP answer with one byte or an int depending
		 * on the length asked; an int is always accepted. */
		GET(IPPROTO_IP, IP_MULTICAST_TTL, mc_ttl, SOCKMIG_OPT_MC);
		GET(IPPROTO_IP, IP_MULTICAST_LOOP, mc_loop, SOCKMIG_OPT_MC);
	} else {
		/* The interface index is mapped to a name by sockmig_udp_save(). */
		GET(IPPROTO_IPV6, IPV6_MULTICAST_HOPS, mc_ttl, SOCKMIG_OPT_MC);
		GET(IPPROTO_IPV6, IPV6_MULTICAST_LOOP, mc_loop, SOCKMIG_OPT_MC);
		GET(IPPROTO_IPV6, IPV6_MULTICAST_IF, mc_ifindex, SOCKMIG_OPT_MC);
	}
	*ret = o;
	return 0;
}

/* ---- restore ---- */

int sm_sock_opts_restore_early(int fd, int family, int proto, const struct sockmig_sock_opts *o)
{
	int r;

	(void)proto;
	if ((o->present & SOCKMIG_OPT_REUSEADDR) && o->reuseaddr) {
		r = sm_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
		if (r < 0)
			return r;
	}
	if ((o->present & SOCKMIG_OPT_REUSEPORT) && o->reuseport) {
		r = sm_setsockopt_int(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT");
		if (r < 0)
			return r;
	}
	if ((o->present & SOCKMIG_OPT_BINDTODEVICE) && o->bindtodevice[0]) {
		char dev[SOCKMIG_NAME_LEN];

		memcpy(dev, o->bindtodevice, sizeof(dev));
		dev[sizeof(dev) - 1] = '\0';
		if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, (socklen_t)strlen(dev)) < 0)
			return sm_fail(-errno, "socket fd %d: cannot bind to device %s: %s", fd, dev,
				       strerror(errno));
	}
	/* The mark steers the route lookup of connect(): set before it. */
	if ((o->present & SOCKMIG_OPT_MARK) && o->mark) {
		r = sm_setsockopt_int(fd, SOL_SOCKET, SO_MARK, (int)o->mark, "SO_MARK");
		if (r < 0)
			return r;
	}
	if (family == AF_INET6 && (o->present & SOCKMIG_OPT_V6ONLY) && o->v6only) {
		r = sm_setsockopt_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
		if (r < 0)
			return r;
	}
	if ((o->present & SOCKMIG_OPT_FREEBIND) && o->freebind) {
		if (family == AF_INET6)
			r = sm_setsockopt_int(fd, IPPROTO_IPV6, IPV6_FREEBIND, 1, "IPV6_FREEBIND");
		else
			r = sm_setsockopt_int(fd, IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND");
		if (r < 0)
			return r;
	}
	return 0;
}

int sm_sock_opts_restore_late(int fd, int family, int proto, const struct sockmig_sock_opts *o)
{
	int fl = fcntl(fd, F_GETFL);

	/* unknown flags: always set them */
	return sm_sock_opts_restore_late_known(fd, family, proto, o, SM_BUF_SND | SM_BUF_RCV,
					       fl < 0 ? ~0u : (uint32_t)fl & FILE_FLAGS_SETTABLE);
}

int sm_sock_opts_restore_late_known(int fd, int family, int proto, const struct sockmig_sock_opts *o,
				    unsigned bufs_set, uint32_t cur_file_flags)
{
	int r;

#define SET_IF(cond, level, name, val)                                          \
	do {                                                                    \
		if (cond) {                                                     \
			r = sm_setsockopt_int(fd, level, name, (int)(val), #name); \
			if (r < 0)                                              \
				return r;                                       \
		}                                                               \
	} while (0)

	/* IP_TOS first: setting it also sets sk_priority from the TOS bits. */
	if (family == AF_INET6)
		SET_IF((o->present & SOCKMIG_OPT_TOS) && o->tos, IPPROTO_IPV6, IPV6_TCLASS, o->tos);
	else
		SET_IF((o->present & SOCKMIG_OPT_TOS) && o->tos, IPPROTO_IP, IP_TOS, o->tos);
	SET_IF((o->present & SOCKMIG_OPT_PRIORITY) && o->priority, SOL_SOCKET, SO_PRIORITY, o->priority);
	SET_IF((o->present & SOCKMIG_OPT_RCVLOWAT) && o->rcvlowat != 1, SOL_SOCKET, SO_RCVLOWAT,
	       o->rcvlowat);
	if ((o->present & SOCKMIG_OPT_LINGER) && o->linger_onoff) {
		struct linger lg = { .l_onoff = 1, .l_linger = (int)o->linger_sec };

		if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
			return sm_fail(-errno, "socket fd %d: cannot set SO_LINGER: %s", fd,
				       strerror(errno));
	}

	if (proto == IPPROTO_TCP) {
		SET_IF((o->present & SOCKMIG_OPT_KEEPIDLE) && o->keepidle != TCP_KEEPIDLE_DEFAULT,
		       IPPROTO_TCP, TCP_KEEPIDLE, o->keepidle);
		SET_IF((o->present & SOCKMIG_OPT_KEEPIDLE) && o->keepintvl != TCP_KEEPINTVL_DEFAULT,
		       IPPROTO_TCP, TCP_KEEPINTVL, o->keepintvl);
		SET_IF((o->present & SOCKMIG_OPT_KEEPIDLE) && o->keepcnt != TCP_KEEPCNT_DEFAULT,
		       IPPROTO_TCP, TCP_KEEPCNT, o->keepcnt);
		SET_IF((o->present & SOCKMIG_OPT_KEEPALIVE) && o->keepalive, SOL_SOCKET, SO_KEEPALIVE, 1);
		SET_IF((o->present & SOCKMIG_OPT_NODELAY) && o->nodelay, IPPROTO_TCP, TCP_NODELAY, 1);
		SET_IF((o->present & SOCKMIG_OPT_CORK) && o->cork, IPPROTO_TCP, TCP_CORK, 1);
		SET_IF((o->present & SOCKMIG_OPT_USER_TIMEOUT) && o->user_timeout, IPPROTO_TCP,
		       TCP_USER_TIMEOUT, o->user_timeout);
		/* 0 means "the sysctl" to the kernel: nothing to pin then. */
		SET_IF((o->present & SOCKMIG_OPT_NOTSENT_LOWAT) && o->notsent_lowat, IPPROTO_TCP,
		       TCP_NOTSENT_LOWAT, o->notsent_lowat);
		if ((o->present & SOCKMIG_OPT_CONGESTION) && o->congestion[0]) {
			char ca[SOCKMIG_NAME_LEN];

			memcpy(ca, o->congestion, sizeof(ca));
			ca[sizeof(ca) - 1] = '\0';
			if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, ca, (socklen_t)strlen(ca)) < 0)
				return sm_fail(-errno,
					       "socket fd %d: cannot set congestion control %s: %s",
					       fd, ca, strerror(errno));
		}
	} else if (family == AF_INET && (o->present & SOCKMIG_OPT_MC)) {
		SET_IF(o->mc_ttl != 1, IPPROTO_IP, IP_MULTICAST_TTL, o->mc_ttl);
		SET_IF(!o->mc_loop, IPPROTO_IP, IP_MULTICAST_LOOP, 0);
	} else if (family == AF_INET6 && (o->present & SOCKMIG_OPT_MC)) {
		/* defaults: hops 1 (IPV6_DEFAULT_MCASTHOPS), loop on; the
		 * interface is set by sockmig_udp_restore() (by name) */
		SET_IF(o->mc_ttl != 1, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, o->mc_ttl);
		SET_IF(!o->mc_loop, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 0);
	}

	/* Buffers: the kernel doubles what is set, getsockopt reports the
	 * doubled value, so half of it goes back. Setting a size locks it
	 * (SOCK_SNDBUF_LOCK); SO_BUF_LOCK puts the application's lock bits
	 * back, so an autotuned buffer is autotuned again. FORCE: the saved size
	 * may exceed this node's wmem_max/rmem_max, as it did on the source.
	 *
	 * A size is written only if the application locked it, or the caller
	 * changed it (bufs_set: room for the queues), or (TCP receive side) it
	 * had grown past a fresh socket's: the window advertised on the source
	 * may count on it. An unlocked send buffer is the kernel's to size: a
	 * repair connect() sizes it again (tcp_init_buffer_space). Without
	 * SO_BUF_LOCK (kernels before 5.14) both are written, as always. */
	if (o->present & SOCKMIG_OPT_SNDBUF) {
		unsigned lock = o->present & SOCKMIG_OPT_BUF_LOCK ? o->buf_lock : SM_BUF_SND | SM_BUF_RCV;
		unsigned snd = (lock | bufs_set) & SM_BUF_SND;
		unsigned rcv = (lock | bufs_set) & SM_BUF_RCV;

		if (proto == IPPROTO_TCP && o->rcvbuf > TCP_RCVBUF_DEFAULT)
			rcv = SM_BUF_RCV;
		SET_IF(snd, SOL_SOCKET, SO_SNDBUFFORCE, o->sndbuf / 2);
		SET_IF(rcv, SOL_SOCKET, SO_RCVBUFFORCE, o->rcvbuf / 2);
		if (o->present & SOCKMIG_OPT_BUF_LOCK)
			SET_IF((snd | rcv) != o->buf_lock, SOL_SOCKET, SO_BUF_LOCK, o->buf_lock);
	}
#undef SET_IF

	if ((o->present & SOCKMIG_OPT_FILE_FLAGS) && cur_file_flags != (o->file_flags & FILE_FLAGS_SETTABLE)) {
		if (fcntl(fd, F_SETFL, (int)(o->file_flags & FILE_FLAGS_SETTABLE)) < 0)
			return sm_fail(-errno, "socket fd %d: cannot set file status flags 0%o: %s",
				       fd, o->file_flags, strerror(errno));
	}
	return 0;
}

int sm_sock_opts_nonblock(const struct sockmig_sock_opts *o)
{
	return (o->present & SOCKMIG_OPT_FILE_FLAGS) && (o->file_flags & O_NONBLOCK);
}
