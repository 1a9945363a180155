/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Address moves: the job's address leaves S and appears on D, and D tells
 * the segment at once. Without the announcement a peer keeps S's MAC until
 * its neighbour entry expires (about 29 s measured here).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <stdbool.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/if_ether.h>
#include <netpacket/packet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "flow.h"
#include "rtnl.h"
#include "util.h"

static const char *addr_str(int family, const void *addr, char *buf, size_t size)
{
	if (!inet_ntop(family, addr, buf, (socklen_t)size))
		snprintf(buf, size, "?");
	return buf;
}

/* One address change through lib/rtnl.c, in the current network namespace:
 * removed, added, or (how 2) added or made to last valid_s seconds (0:
 * forever). */
static int addr_set(int how, const char *ifname, int family, const void *addr, unsigned prefixlen, unsigned valid_s)
{
	bool add = how != 0;
	struct sm_rtnl_addr a = { .family = family, .prefixlen = (uint8_t)prefixlen, .valid_s = valid_s };
	size_t alen = family == AF_INET ? 4 : 16;
	const char *verb = add ? "add" : "remove";
	char s[INET6_ADDRSTRLEN];
	struct sm_rtnl *rt;
	int r;

	if ((family != AF_INET && family != AF_INET6) || prefixlen > alen * 8)
		return sm_fail(-EINVAL, "cannot %s address on %s: bad family or prefix length %u", verb, ifname,
			       prefixlen);
	a.ifindex = (int)if_nametoindex(ifname);
	if (!a.ifindex)
		return sm_fail(-errno, "cannot %s address %s on %s: %m", verb, addr_str(family, addr, s, sizeof(s)),
			       ifname);
	memcpy(&a.addr, addr, alen);
	/* No duplicate address detection: the address must be usable at once
	 * (DAD would keep it tentative for a second, and S may still hold it
	 * for a moment, which DAD would call a conflict). */
	if (family == AF_INET6 && add)
		a.flags = IFA_F_NODAD;
	r = sm_rtnl_open(&rt);
	if (r < 0)
		return r;
	r = how == 2 ? sm_rtnl_addr_change(rt, &a) : add ? sm_rtnl_addr_add(rt, &a) : sm_rtnl_addr_del(rt, &a);
	sm_rtnl_close(rt);
	/* Taking an address we already hold is not an error. */
	if (add && r == -EEXIST)
		r = 0;
	return r;
}

int sockmig_addr_release(const char *ifname, int family, const void *addr, unsigned prefixlen)
{
	return addr_set(0, ifname, family, addr, prefixlen, 0);
}

int sockmig_addr_add(const char *ifname, int family, const void *addr, unsigned prefixlen)
{
	return addr_set(1, ifname, family, addr, prefixlen, 0);
}

int sm_addr_add_for(const char *ifname, int family, const void *addr, unsigned prefixlen, unsigned valid_s)
{
	return addr_set(2, ifname, family, addr, prefixlen, valid_s);
}

int sm_addr_keep(const char *ifname, int family, const void *addr, unsigned prefixlen)
{
	return addr_set(2, ifname, family, addr, prefixlen, 0);
}

struct arp_pkt {
	uint16_t htype, ptype;
	uint8_t hlen, plen;
	uint16_t op;
	uint8_t sha[6], spa[4], tha[6], tpa[4];
} __attribute__((packed));

/* Closing a packet socket waits for an RCU grace period (synchronize_net()
 * in packet_release: 10 to 15 ms measured here), which would sit in the
 * middle of a move. So the socket is opened once per thread and network
 * namespace and kept; the kernel closes it when the process ends. */
static __thread int arp_fd = -1;
static __thread uint64_t arp_fd_netns;

static int arp_socket(void)
{
	struct stat st;

	if (stat("/proc/thread-self/ns/net", &st) < 0)
		return -errno;
	if (arp_fd >= 0 && arp_fd_netns == (uint64_t)st.st_ino)
		return arp_fd;
	if (arp_fd >= 0)
		close(arp_fd);
	/* Protocol 0: this socket sends only and never queues received frames. */
	arp_fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (arp_fd < 0)
		return -errno;
	arp_fd_netns = (uint64_t)st.st_ino;
	return arp_fd;
}

static int announce_arp(const char *ifname, unsigned ifindex, const void *addr)
{
	int fd;
	struct sockaddr_ll sll = { 0 };
	struct arp_pkt a = { 0 };
	struct ifreq ifr = { 0 };
	char s[INET_ADDRSTRLEN];

	fd = arp_socket();
	if (fd < 0)
		return sm_fail(fd, "cannot open a packet socket to announce %s: %s",
			       addr_str(AF_INET, addr, s, sizeof(s)), strerror(-fd));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		return sm_fail(-errno, "cannot read the MAC address of %s: %m", ifname);
	if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
		return sm_fail(-EOPNOTSUPP, "cannot announce %s on %s: not an Ethernet device",
			       addr_str(AF_INET, addr, s, sizeof(s)), ifname);

	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ARP);
	sll.sll_ifindex = (int)ifindex;
	sll.sll_halen = 6;
	memset(sll.sll_addr, 0xff, 6);

	a.htype = htons(ARPHRD_ETHER);
	a.ptype = htons(ETH_P_IP);
	a.hlen = 6;
	a.plen = 4;
	memcpy(a.sha, ifr.ifr_hwaddr.sa_data, 6);
	memcpy(a.spa, addr, 4);
	memcpy(a.tpa, addr, 4);
	/* Both forms of gratuitous ARP: some stacks heed only the request,
	 * some only the reply. Linux updates an existing entry on either. */
	for (int op = ARPOP_REQUEST; op <= ARPOP_REPLY; op++) {
		a.op = htons((uint16_t)op);
		if (op == ARPOP_REPLY)
			memcpy(a.tha, ifr.ifr_hwaddr.sa_data, 6);
		if (sendto(fd, &a, sizeof(a), 0, (struct sockaddr *)&sll, sizeof(sll)) < 0)
			return sm_fail(-errno, "cannot send a gratuitous ARP for %s on %s: %m",
				       addr_str(AF_INET, addr, s, sizeof(s)), ifname);
	}
	return 0;
}

static int announce_na(const char *ifname, unsigned ifindex, const void *addr)
{
	_cleanup_close_ int fd = -1;
	struct sockaddr_in6 src = { .sin6_family = AF_INET6 }, dst = { .sin6_family = AF_INET6 };
	struct ifreq ifr = { 0 };
	char s[INET6_ADDRSTRLEN];
	int hops = 255;
	struct {
		struct nd_neighbor_advert na;
		uint8_t opt_type, opt_len, mac[6];
	} __attribute__((packed)) m = { 0 };

	fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
	if (fd < 0)
		return sm_fail(-errno, "cannot open an ICMPv6 socket to announce %s: %m",
			       addr_str(AF_INET6, addr, s, sizeof(s)));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		return sm_fail(-errno, "cannot read the MAC address of %s: %m", ifname);
	/* Receivers drop neighbour discovery with a hop limit below 255. */
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) < 0)
		return sm_fail(-errno, "cannot set up the ICMPv6 socket on %s: %m", ifname);
	/* The advertisement comes from the address itself (NODAD made it
	 * usable at once). */
	memcpy(&src.sin6_addr, addr, 16);
	if (IN6_IS_ADDR_LINKLOCAL(&src.sin6_addr))
		src.sin6_scope_id = ifindex;
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
		return sm_fail(-errno, "cannot send from %s to announce it: %m", addr_str(AF_INET6, addr, s, sizeof(s)));

	m.na.nd_na_type = ND_NEIGHBOR_ADVERT;
	/* Override, not solicited: peers replace the MAC they have. */
	m.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
	memcpy(&m.na.nd_na_target, addr, 16);
	m.opt_type = ND_OPT_TARGET_LINKADDR;
	m.opt_len = 1; /* in units of 8 bytes */
	memcpy(m.mac, ifr.ifr_hwaddr.sa_data, 6);
	/* The kernel fills in the ICMPv6 checksum of raw ICMPv6 sockets. */
	inet_pton(AF_INET6, "ff02::1", &dst.sin6_addr);
	dst.sin6_scope_id = ifindex;
	if (sendto(fd, &m, sizeof(m), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0)
		return sm_fail(-errno, "cannot send a neighbour advertisement for %s on %s: %m",
			       addr_str(AF_INET6, addr, s, sizeof(s)), ifname);
	return 0;
}

int sockmig_addr_announce(const char *ifname, int family, const void *addr)
{
	unsigned ifindex = if_nametoindex(ifname);

	if (!ifindex)
		return sm_fail(-errno, "cannot announce an address on %s: %m", ifname);
	if (family == AF_INET)
		return announce_arp(ifname, ifindex, addr);
	if (family == AF_INET6)
		return announce_na(ifname, ifindex, addr);
	return sm_fail(-EAFNOSUPPORT, "cannot announce an address of family %d", family);
}

int sockmig_addr_take(const char *ifname, int family, const void *addr, unsigned prefixlen)
{
	int r = sockmig_addr_add(ifname, family, addr, prefixlen);

	return r < 0 ? r : sockmig_addr_announce(ifname, family, addr);
}
