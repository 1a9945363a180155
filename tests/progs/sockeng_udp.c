/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sockeng_udp: moves two UDP sockets with datagrams waiting in their receive
 * queues from node A to node B and checks that every datagram arrives on the
 * restored socket, in order, with its original source address and port.
 *
 *   sockeng_udp --ns-peer P --ns-a A --ns-b B --family 4|6|mapped
 *               --peer ADDR --job ADDR
 *
 * Socket C is bound to the job's address and connected to one peer socket;
 * socket W is bound to the wildcard and hears from two peer sockets (so the
 * sources differ and the destination comes from IP_PKTINFO). W has also
 * joined a multicast group on eth0 (an IPv4 group for 4 and mapped, IPv6
 * for 6) and set its multicast options: after restore on B it must receive
 * a datagram the peer sends to that group, and read the options back.
 */
#include <getopt.h>
#include <net/if.h>
#include <netinet/in.h>

#include "image.h"
#include "sock.h"
#include "sockmig/socket.h"
#include "sockmig/sockmig.h"
#include "sockeng_common.h"

#define CPORT 40201 /* connected holder socket */
#define WPORT 40202 /* wildcard holder socket */
#define PPORT1 40211
#define PPORT2 40212
#define N 200
#define MC4 "239.77.0.1"
#define MC6 "ff15::77:1"

static int family_mode;

static size_t dgram_len(int i)
{
	return (size_t)(1 + (i * 37) % 1400);
}

static void fill_dgram(uint8_t *buf, int sock, int i)
{
	fill_pattern(buf, dgram_len(i), (uint64_t)i << 16, (uint8_t)sock);
}

static int udp_socket(int fam, const char *addr, int port, int v6only)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd = socket(fam, SOCK_DGRAM | SOCK_CLOEXEC, 0), v = 256 * 1024;

	if (fd < 0)
		die("udp socket: %s", strerror(errno));
	if (fam == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	sl = make_addr(fam, addr, port, &ss);
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
		die("udp bind %s:%d: %s", addr, port, strerror(errno));
	return fd;
}

static void udp_connect(int fd, int fam, const char *addr, int port)
{
	struct sockaddr_storage ss;
	socklen_t sl = make_addr(fam, addr, port, &ss);

	if (connect(fd, (struct sockaddr *)&ss, sl) < 0)
		die("udp connect %s:%d: %s", addr, port, strerror(errno));
}

static void send_to(int fd, int fam, const char *addr, int port, const uint8_t *p, size_t n)
{
	struct sockaddr_storage ss;
	socklen_t sl = make_addr(fam, addr, port, &ss);

	if (sendto(fd, p, n, 0, (struct sockaddr *)&ss, sl) != (ssize_t)n)
		die("sendto %s:%d: %s", addr, port, strerror(errno));
}

/* Join (or, with src, join source-specifically) group on eth0. */
static void mc_join(int fd, int gfam, const char *group, const char *src)
{
	struct group_source_req gsr;
	socklen_t sl;

	memset(&gsr, 0, sizeof(gsr));
	gsr.gsr_interface = if_nametoindex("eth0");
	sl = make_addr(gfam, group, 0, &gsr.gsr_group);
	(void)sl;
	if (src)
		make_addr(gfam, src, 0, &gsr.gsr_source);
	if (setsockopt(fd, gfam == AF_INET ? IPPROTO_IP : IPPROTO_IPV6,
		       src ? MCAST_JOIN_SOURCE_GROUP : MCAST_JOIN_GROUP, &gsr,
		       src ? sizeof(gsr) : sizeof(struct group_req)) < 0)
		die("join %s%s%s: %s", group, src ? " from " : "", src ? src : "", strerror(errno));
}

static int getint(int fd, int level, int name)
{
	int v = -1;
	socklen_t sl = sizeof(v);

	if (getsockopt(fd, level, name, &v, &sl) < 0)
		die("getsockopt %d/%d: %s", level, name, strerror(errno));
	return v;
}

static uint32_t queued(int fd)
{
	struct sockmig_udp_state st;
	struct sockmig_udp_queue *q;
	uint32_t n;

	if (sockmig_udp_save(fd, &st) < 0 || sockmig_udp_save_queue(fd, &st, &q) < 0)
		die("peek queue: %s", sockmig_error());
	n = q->count;
	sockmig_udp_queue_free(q);
	return n;
}

/* Receive n datagrams on fd and check order, bytes and source port. */
static void expect_dgrams(int fd, int sock, int first, int n, const int *src_ports,
			  const char *src_addr)
{
	uint8_t buf[2048], want[2048];
	char a[64];

	for (int i = first; i < first + n; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t k;
		int port;

		if (poll(&pfd, 1, 5000) != 1)
			die("socket %c: datagram %d never came", sock, i);
		k = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		fill_dgram(want, sock, i);
		if (k != (ssize_t)dgram_len(i) || memcmp(buf, want, (size_t)k))
			die("socket %c: datagram %d is wrong (%zd bytes, want %zu): lost or reordered",
			    sock, i, k, dgram_len(i));
		if (from.ss_family == AF_INET) {
			port = ntohs(((struct sockaddr_in *)&from)->sin_port);
			inet_ntop(AF_INET, &((struct sockaddr_in *)&from)->sin_addr, a, sizeof(a));
		} else {
			port = ntohs(((struct sockaddr_in6 *)&from)->sin6_port);
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&from)->sin6_addr, a, sizeof(a));
		}
		if (port != src_ports[i % 2] || !strstr(a, src_addr))
			die("socket %c: datagram %d came from %s:%d, want %s:%d", sock, i, a, port,
			    src_addr, src_ports[i % 2]);
	}
}

int main(int argc, char *argv[])
{
	static const struct option lopts[] = {
		{ "ns-peer", 1, 0, 'p' }, { "ns-a", 1, 0, 'a' }, { "ns-b", 1, 0, 'b' },
		{ "family", 1, 0, 'f' },  { "peer", 1, 0, 'P' }, { "job", 1, 0, 'J' }, {},
	};
	const char *ns_p = NULL, *ns_a = NULL, *ns_b = NULL, *peer = NULL, *job = NULL;
	struct sockmig_udp_state cst, wst, cst2, wst2;
	struct sockmig_udp_queue *cq, *wq, *cq2, *wq2;
	int c, fam, pfam, nsp, nsa, nsb, p1, p2, hc, hw, rc, rw, v;
	int cports[2] = { PPORT1, PPORT1 }, wports[2] = { PPORT1, PPORT2 };
	uint8_t buf[2048];
	struct sm_buf b;
	uint32_t id;
	socklen_t sl;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': ns_p = optarg; break;
		case 'a': ns_a = optarg; break;
		case 'b': ns_b = optarg; break;
		case 'P': peer = optarg; break;
		case 'J': job = optarg; break;
		case 'f':
			family_mode = !strcmp(optarg, "4") ? 4 : !strcmp(optarg, "6") ? 6 :
				      !strcmp(optarg, "mapped") ? 46 : 0;
			break;
		default: exit(2);
		}
	}
	if (!ns_p || !ns_a || !ns_b || !peer || !job || !family_mode)
		die("usage: sockeng_udp --ns-peer P --ns-a A --ns-b B --family 4|6|mapped --peer ADDR --job ADDR");
	setvbuf(stdout, NULL, _IOLBF, 0);
	fam = family_mode == 4 ? AF_INET : AF_INET6;
	pfam = family_mode == 6 ? AF_INET6 : AF_INET;
	nsp = ns_open(ns_p);
	nsa = ns_open(ns_a);
	nsb = ns_open(ns_b);

	ns_enter(nsp);
	p1 = udp_socket(pfam, peer, PPORT1, 1);
	p2 = udp_socket(pfam, peer, PPORT2, 1);
	ns_enter(nsa);
	hc = udp_socket(fam, job, CPORT, family_mode == 6);
	udp_connect(hc, fam, peer, PPORT1);
	hw = udp_socket(fam, fam == AF_INET ? "0.0.0.0" : "::", WPORT, family_mode == 6);
	v = 5;
	setsockopt(hw, SOL_SOCKET, SO_PRIORITY, &v, sizeof(v));
	/* multicast: W joins the group; its sending options are set off the
	 * defaults (IPv6: hops, loop and interface; IPv4: ttl and loop) */
	mc_join(hw, pfam, pfam == AF_INET ? MC4 : MC6, NULL);
	v = 0;
	if (fam == AF_INET6) {
		setsockopt(hw, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &v, sizeof(v));
		v = 7;
		setsockopt(hw, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &v, sizeof(v));
		v = (int)if_nametoindex("eth0");
		setsockopt(hw, IPPROTO_IPV6, IPV6_MULTICAST_IF, &v, sizeof(v));
	} else {
		setsockopt(hw, IPPROTO_IP, IP_MULTICAST_LOOP, &v, sizeof(v));
		v = 7;
		setsockopt(hw, IPPROTO_IP, IP_MULTICAST_TTL, &v, sizeof(v));
	}
	/* a source-specific membership is refused, not dropped silently */
	{
		int ss = udp_socket(fam, fam == AF_INET ? "0.0.0.0" : "::", WPORT + 10, family_mode == 6);
		struct sockmig_udp_state sst;
		int r;

		mc_join(ss, pfam, pfam == AF_INET ? MC4 : MC6, peer);
		r = sockmig_udp_save(ss, &sst);
		if (r != -EOPNOTSUPP)
			die("save of a socket with a source-specific membership returned %d, want -EOPNOTSUPP", r);
		close(ss);
		printf("PASS source-specific membership refused: %s\n", sockmig_error());
	}

	for (int i = 0; i < N; i++) {
		fill_dgram(buf, 'C', i);
		send_to(p1, pfam, job, CPORT, buf, dgram_len(i));
		fill_dgram(buf, 'W', i);
		send_to(i % 2 ? p2 : p1, pfam, job, WPORT, buf, dgram_len(i));
	}
	for (int t = 0; t < 1000 && (queued(hc) < N || queued(hw) < N); t++)
		usleep(1000);

	/* freeze, save */
	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; udp dport { %d, %d } drop; }\n}\nEOF",
	    ns_a, CPORT, WPORT);
	if (sockmig_udp_save(hc, &cst) < 0 || sockmig_udp_save_queue(hc, &cst, &cq) < 0 ||
	    sockmig_udp_save(hw, &wst) < 0 || sockmig_udp_save_queue(hw, &wst, &wq) < 0)
		die("save: %s", sockmig_error());
	if (cq->count != N || wq->count != N)
		die("saved %u and %u datagrams, %d were sent to each", cq->count, wq->count, N);
	if (cst.flags || cst.mc_count)
		die("socket C has no membership but was probed (flags 0x%x, %u groups)", cst.flags, cst.mc_count);
	if (!(wst.flags & SOCKMIG_UDP_MC_PROBED) || wst.mc_count != 1 || wst.mc[0].family != pfam ||
	    strcmp(wst.mc[0].ifname, "eth0"))
		die("socket W: memberships not found (flags 0x%x, %u groups)", wst.flags, wst.mc_count);
	if (fam == AF_INET6 && strcmp(wst.mc_ifname, "eth0"))
		die("socket W: IPV6_MULTICAST_IF saved as '%s', want eth0", wst.mc_ifname);
	printf("PASS multicast membership found: %s group on %s\n", pfam == AF_INET ? MC4 : MC6, wst.mc[0].ifname);
	sl = sizeof(v);
	getsockopt(hw, SOL_SOCKET, SO_PEEK_OFF, &v, &sl);
	if (v != -1)
		die("the original's SO_PEEK_OFF is %d after save, want -1", v);
	if (queued(hw) != N)
		die("save consumed datagrams of the original");
	printf("PASS saved %u + %u datagrams without consuming them, SO_PEEK_OFF put back\n",
	       cq->count, wq->count);

	/* through the image encoding */
	sm_buf_init(&b);
	if (sm_sock_encode_udp(&b, 1, &cst, cq) < 0 || sm_sock_decode_udp(b.data, b.len, 0, &id, &cst2, &cq2) < 0)
		die("image C: %s", sockmig_error());
	sm_buf_free(&b);
	sm_buf_init(&b);
	if (sm_sock_encode_udp(&b, 2, &wst, wq) < 0 || sm_sock_decode_udp(b.data, b.len, 0, &id, &wst2, &wq2) < 0)
		die("image W: %s", sockmig_error());
	sm_buf_free(&b);
	if (memcmp(&cst, &cst2, sizeof(cst)) || memcmp(&wst, &wst2, sizeof(wst)) || cq2->count != N ||
	    wq2->count != N || memcmp(wq2->dgrams[N - 1].data, wq->dgrams[N - 1].data, wq->dgrams[N - 1].len))
		die("UDP state changed in the image round trip");
	printf("PASS image round trip\n");

	close(hc);
	close(hw);
	run("ip netns exec %s ip addr del %s/%d dev eth0", ns_a, job, family_mode == 6 ? 128 : 32);

	/* restore in B, before the address; then the address; then inject */
	ns_enter(nsb);
	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; iifname eth0 udp dport { %d, %d } drop; }\n}\nEOF",
	    ns_b, CPORT, WPORT);
	if (sockmig_udp_restore(&cst2, &rc) < 0 || sockmig_udp_restore(&wst2, &rw) < 0)
		die("restore: %s", sockmig_error());
	run("ip netns exec %s ip addr add %s/%d dev eth0 %s", ns_b, job, family_mode == 6 ? 128 : 32,
	    family_mode == 6 ? "nodad" : "");
	run("ip netns exec %s ip neigh flush to %s", ns_p, job);
	if (sockmig_udp_inject_queue(&cst2, cq2) != N || sockmig_udp_inject_queue(&wst2, wq2) != N)
		die("inject: %s", sockmig_error());
	run("ip netns exec %s nft delete table inet sockeng", ns_b);
	expect_dgrams(rc, 'C', 0, N, cports, peer);
	expect_dgrams(rw, 'W', 0, N, wports, peer);
	printf("PASS all %d + %d queued datagrams re-delivered in order with their original sources\n", N, N);

	/* the sockets go on: new datagrams from the wire, and replies */
	for (int i = N; i < N + 10; i++) {
		fill_dgram(buf, 'C', i);
		send_to(p1, pfam, job, CPORT, buf, dgram_len(i));
		fill_dgram(buf, 'W', i);
		send_to(i % 2 ? p2 : p1, pfam, job, WPORT, buf, dgram_len(i));
	}
	expect_dgrams(rc, 'C', N, 10, cports, peer);
	expect_dgrams(rw, 'W', N, 10, wports, peer);
	fill_dgram(buf, 'R', 7);
	if (send(rc, buf, dgram_len(7), 0) != (ssize_t)dgram_len(7))
		die("restored connected socket cannot send: %s", strerror(errno));
	{
		int jports[2] = { CPORT, CPORT };
		uint8_t want[2048];
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		struct pollfd pfd = { .fd = p1, .events = POLLIN };
		ssize_t k;

		(void)jports;
		if (poll(&pfd, 1, 5000) != 1)
			die("peer never got the restored socket's datagram");
		k = recvfrom(p1, want, sizeof(want), 0, (struct sockaddr *)&from, &fl);
		if (k != (ssize_t)dgram_len(7) || memcmp(want, buf, (size_t)k))
			die("peer got a wrong datagram from the restored socket");
		if ((from.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&from)->sin_port)
					       : ntohs(((struct sockaddr_in6 *)&from)->sin6_port)) != CPORT)
			die("the restored socket's datagram has the wrong source port");
	}
	sl = sizeof(v);
	getsockopt(rw, SOL_SOCKET, SO_PRIORITY, &v, &sl);
	if (v != 5)
		die("restored wildcard socket: SO_PRIORITY %d, want 5", v);
	sl = sizeof(v);
	getsockopt(rw, SOL_SOCKET, SO_RCVBUF, &v, &sl);
	if (v != 512 * 1024)
		die("restored wildcard socket: SO_RCVBUF %d, want %d", v, 512 * 1024);
	printf("PASS both restored sockets go on both ways; options read back\n");

	/* the group, from the peer, on B now */
	if (fam == AF_INET6) {
		if (getint(rw, IPPROTO_IPV6, IPV6_MULTICAST_LOOP) != 0 ||
		    getint(rw, IPPROTO_IPV6, IPV6_MULTICAST_HOPS) != 7 ||
		    getint(rw, IPPROTO_IPV6, IPV6_MULTICAST_IF) != (int)if_nametoindex("eth0"))
			die("restored wildcard socket: IPv6 multicast loop/hops/if not read back as 0/7/eth0");
	} else if (getint(rw, IPPROTO_IP, IP_MULTICAST_LOOP) != 0 || getint(rw, IPPROTO_IP, IP_MULTICAST_TTL) != 7) {
		die("restored wildcard socket: IPv4 multicast loop/ttl not read back as 0/7");
	}
	ns_enter(nsp);
	{
		int ms = udp_socket(pfam, peer, PPORT2 + 10, 1);
		int idx = (int)if_nametoindex("eth0");
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		struct pollfd pfd = { .fd = rw, .events = POLLIN };
		ssize_t k;

		if (pfam == AF_INET) {
			struct ip_mreqn mr = { .imr_ifindex = idx };

			setsockopt(ms, IPPROTO_IP, IP_MULTICAST_IF, &mr, sizeof(mr));
		} else {
			setsockopt(ms, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx, sizeof(idx));
		}
		send_to(ms, pfam, pfam == AF_INET ? MC4 : MC6, WPORT, (const uint8_t *)"group", 5);
		if (poll(&pfd, 1, 5000) != 1)
			die("restored wildcard socket: the datagram to group %s never came", pfam == AF_INET ? MC4 : MC6);
		k = recvfrom(rw, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (k != 5 || memcmp(buf, "group", 5))
			die("restored wildcard socket: wrong datagram from the group (%zd bytes)", k);
		close(ms);
	}
	printf("PASS the restored socket is still in the group on B: a datagram to it arrived; multicast options read back\n");
	sockmig_udp_queue_free(cq);
	sockmig_udp_queue_free(wq);
	sockmig_udp_queue_free(cq2);
	sockmig_udp_queue_free(wq2);
	printf("PASS sockeng_udp family %s\n", family_mode == 46 ? "mapped" : family_mode == 4 ? "4" : "6");
	return 0;
}
