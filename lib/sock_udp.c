/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * UDP sockets: bound or connected, IPv4, IPv6 and dual-stack; the datagrams
 * waiting in the receive queue are copied without being consumed and sent
 * again, in order and from their original sources, on the destination.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sock.h"
#include "sockmig/route.h"
#include "util.h"

#define DGRAM_BUF 65536
/* A receive queue holds at most rcvbuf bytes; this bounds the loop against
 * a queue that is being filled while we read it (the flow must be blocked). */
#define MAX_DGRAMS (1u << 20)

static int udp_fail(int fd, const char *what)
{
	return sm_fail(-errno, "UDP socket fd %d: %s: %s", fd, what, strerror(errno));
}

/* ---- multicast memberships (include/sockmig/socket.h says why this way) ---- */

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

/* Open /proc/net/igmp and /proc/net/igmp6 as fd's network namespace shows
 * them: a /proc/net file shows the namespace of the thread that opens it,
 * so enter the socket's for the open() only. Either may fail to open
 * (IPv6 off): NULL. */
static int mc_open_proc(int fd, FILE **ret4, FILE **ret6)
{
	_cleanup_close_ int nsfd = -1, self = -1;
	struct stat a, b;
	int other;

	nsfd = ioctl(fd, SIOCGSKNS);
	if (nsfd < 0)
		return udp_fail(fd, "cannot get its network namespace");
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return sm_fail(-errno, "cannot open this thread's network namespace: %s", strerror(errno));
	if (fstat(nsfd, &a) < 0 || fstat(self, &b) < 0)
		return sm_fail(-errno, "cannot compare network namespaces: %s", strerror(errno));
	other = a.st_ino != b.st_ino || a.st_dev != b.st_dev;
	if (other && setns(nsfd, CLONE_NEWNET) < 0)
		return udp_fail(fd, "cannot enter its network namespace");
	*ret4 = fopen("/proc/thread-self/net/igmp", "re");
	*ret6 = fopen("/proc/thread-self/net/igmp6", "re");
	if (other && setns(self, CLONE_NEWNET) < 0)
		abort(); /* never leave the thread in another namespace */
	return 0;
}

/* Is fd a member of group on ifindex? 1 yes (any-source), 0 no, -errno. */
static int mc_probe(int fd, int family, uint32_t ifindex, const uint8_t *group)
{
	struct group_filter gf;
	socklen_t len = GROUP_FILTER_SIZE(0);
	char a[INET6_ADDRSTRLEN];

	memset(&gf, 0, sizeof(gf));
	gf.gf_interface = ifindex;
	gf.gf_group.ss_family = (sa_family_t)family;
	if (family == AF_INET)
		memcpy(&((struct sockaddr_in *)&gf.gf_group)->sin_addr, group, 4);
	else
		memcpy(&((struct sockaddr_in6 *)&gf.gf_group)->sin6_addr, group, 16);
	if (getsockopt(fd, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6, MCAST_MSFILTER, &gf, &len) < 0) {
		if (errno == EADDRNOTAVAIL)
			return 0;
		return udp_fail(fd, "cannot read a multicast filter (MCAST_MSFILTER)");
	}
	if (gf.gf_fmode != MCAST_EXCLUDE || gf.gf_numsrc)
		return sm_fail(-EOPNOTSUPP, "UDP socket fd %d: its membership of %s on interface %u is source-specific (%s, %u sources), which is not migratable",
			       fd, inet_ntop(family, group, a, sizeof(a)), ifindex,
			       gf.gf_fmode == MCAST_INCLUDE ? "include" : "exclude", gf.gf_numsrc);
	return 1;
}

static int mc_add(int fd, struct sockmig_udp_state *st, int family, uint32_t ifindex, const uint8_t *group)
{
	struct sockmig_udp_mc *m;
	struct ifreq ifr;
	int r;

	r = mc_probe(fd, family, ifindex, group);
	if (r <= 0)
		return r;
	if (st->mc_count >= SOCKMIG_UDP_MC_MAX)
		return sm_fail(-E2BIG, "UDP socket fd %d: more than %d multicast memberships", fd,
			       SOCKMIG_UDP_MC_MAX);
	m = &st->mc[st->mc_count++];
	memset(m, 0, sizeof(*m));
	m->family = (uint8_t)family;
	m->ifindex = ifindex;
	memcpy(m->group, group, family == AF_INET ? 4 : 16);
	/* the name in the socket's namespace: its own ioctl resolves there */
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_ifindex = (int)ifindex;
	if (ioctl(fd, SIOCGIFNAME, &ifr) < 0)
		return udp_fail(fd, "cannot name the interface of a multicast membership");
	memcpy(m->ifname, ifr.ifr_name, sizeof(m->ifname) - 1);
	return 0;
}

/* Memberships: only for a socket with option memory in use (every
 * membership is charged there), then by asking about each group that some
 * interface of its namespace has joined. */
static int mc_save(int fd, struct sockmig_udp_state *st)
{
	uint32_t mi[SK_MEMINFO_VARS];
	socklen_t len = sizeof(mi);
	FILE *f4 = NULL, *f6 = NULL;
	char line[256];
	uint32_t ifindex = 0;
	int r;

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) < 0)
		return udp_fail(fd, "cannot read its memory use (SO_MEMINFO)");
	if (len <= SK_MEMINFO_OPTMEM * sizeof(mi[0]) || !mi[SK_MEMINFO_OPTMEM])
		return 0;
	st->flags |= SOCKMIG_UDP_MC_PROBED;
	r = mc_open_proc(fd, &f4, &f6);
	if (r < 0)
		return r;
	/* igmp: "<idx>\t<dev> : <count> <querier>" then one
	 * "\t\t\t\t<group hex> ..." line per group, the __be32 printed as %08X */
	while (r >= 0 && f4 && fgets(line, sizeof(line), f4)) {
		unsigned idx, g;
		uint8_t group[4];

		if (line[0] >= '0' && line[0] <= '9') {
			if (sscanf(line, "%u", &idx) == 1)
				ifindex = idx;
		} else if (line[0] == '\t' && ifindex && sscanf(line, " %8x", &g) == 1) {
			memcpy(group, &g, 4);
			r = mc_add(fd, st, AF_INET, ifindex, group);
		}
	}
	/* igmp6: "<idx> <dev> <group, 32 hex> <users> <flags> <timer>" */
	while (r >= 0 && f6 && st->family == AF_INET6 && fgets(line, sizeof(line), f6)) {
		char hex[33];
		unsigned idx;
		uint8_t group[16];
		int ok = 1;

		if (sscanf(line, "%u %*s %32s", &idx, hex) != 2 || strlen(hex) != 32)
			continue;
		for (int i = 0; i < 16 && ok; i++) {
			unsigned v;

			ok = sscanf(hex + 2 * i, "%2x", &v) == 1;
			group[i] = (uint8_t)v;
		}
		if (ok)
			r = mc_add(fd, st, AF_INET6, idx, group);
	}
	if (f4)
		fclose(f4);
	if (f6)
		fclose(f6);
	return r < 0 ? r : 0;
}

/* IPV6_MULTICAST_IF's interface by name, in the socket's namespace. */
static int mc_if_name(int fd, struct sockmig_udp_state *st)
{
	struct ifreq ifr;

	if (st->family != AF_INET6 || !(st->sockopts.present & SOCKMIG_OPT_MC) || !st->sockopts.mc_ifindex)
		return 0;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_ifindex = (int)st->sockopts.mc_ifindex;
	if (ioctl(fd, SIOCGIFNAME, &ifr) < 0)
		return udp_fail(fd, "cannot name its multicast interface (IPV6_MULTICAST_IF)");
	memcpy(st->mc_ifname, ifr.ifr_name, sizeof(st->mc_ifname) - 1);
	return 0;
}

/* The index of the interface called name here (in fd's namespace). */
static int ifindex_here(int fd, const char *name, uint32_t *ret)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, name, SOCKMIG_NAME_LEN - 1);
	if (!ifr.ifr_name[0] || ioctl(fd, SIOCGIFINDEX, &ifr) < 0)
		return sm_fail(-ENODEV, "UDP socket: there is no interface '%s' here for its multicast %s",
			       ifr.ifr_name, "settings");
	*ret = (uint32_t)ifr.ifr_ifindex;
	return 0;
}

static int mc_restore(int fd, const struct sockmig_udp_state *st)
{
	char a[INET6_ADDRSTRLEN];
	uint32_t ifindex;
	int r;

	if (st->mc_count > SOCKMIG_UDP_MC_MAX)
		return sm_fail(-EINVAL, "UDP state: %u multicast memberships", st->mc_count);
	for (uint32_t i = 0; i < st->mc_count; i++) {
		const struct sockmig_udp_mc *m = &st->mc[i];
		struct group_req gr;

		r = ifindex_here(fd, m->ifname, &ifindex);
		if (r < 0)
			return r;
		memset(&gr, 0, sizeof(gr));
		gr.gr_interface = ifindex;
		gr.gr_group.ss_family = m->family;
		if (m->family == AF_INET)
			memcpy(&((struct sockaddr_in *)&gr.gr_group)->sin_addr, m->group, 4);
		else
			memcpy(&((struct sockaddr_in6 *)&gr.gr_group)->sin6_addr, m->group, 16);
		/* IPv4 groups at IPPROTO_IP, on an AF_INET6 socket too */
		if (setsockopt(fd, m->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6, MCAST_JOIN_GROUP, &gr,
			       sizeof(gr)) < 0)
			return sm_fail(-errno, "UDP socket fd %d: cannot join multicast group %s on %s: %s", fd,
				       inet_ntop(m->family, m->group, a, sizeof(a)), m->ifname, strerror(errno));
	}
	if (st->family == AF_INET6 && (st->sockopts.present & SOCKMIG_OPT_MC) && st->sockopts.mc_ifindex) {
		r = ifindex_here(fd, st->mc_ifname, &ifindex);
		if (r < 0)
			return r;
		r = sm_setsockopt_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, (int)ifindex, "IPV6_MULTICAST_IF");
		if (r < 0)
			return r;
	}
	return 0;
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
	r = mc_if_name(fd, &st);
	if (r < 0)
		return r;
	r = mc_save(fd, &st);
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
	int nonblock = !(o->present & SOCKMIG_OPT_FILE_FLAGS) || sm_sock_opts_nonblock(o);
	struct sockaddr_storage ss;
	char ep[64];
	int r, salen;

	if (st->family != AF_INET && st->family != AF_INET6)
		return sm_fail(-EAFNOSUPPORT, "UDP state: address family %u is not supported", st->family);
	fd = socket(st->family, SOCK_DGRAM | (nonblock ? SOCK_NONBLOCK : 0) | SOCK_CLOEXEC, IPPROTO_UDP);
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
	/* UDP buffers are never autotuned: an unlocked size that differs from
	 * the default was set (then unlocked) by the application; write both. */
	r = sm_sock_opts_restore_late_known(fd, st->family, IPPROTO_UDP, o, SM_BUF_SND | SM_BUF_RCV,
					    nonblock ? O_NONBLOCK : 0);
	if (r < 0)
		return r;
	r = mc_restore(fd, st);
	if (r < 0)
		return r;
	*ret_fd = sm_take_fd(&fd);
	return 0;
}

/* A socket that sends from src (not local here): IP_TRANSPARENT lets it bind
 * and route from a foreign address. The flow routes' mark makes the
 * datagram local when its destination is an address of another node (a
 * flow in forward or rewrite mode, include/sockmig/route.h); without the
 * mark's policy rule it changes nothing. */
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
	r = sm_setsockopt_int(fd, SOL_SOCKET, SO_MARK, (int)SOCKMIG_ROUTE_MARK, "SO_MARK");
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
