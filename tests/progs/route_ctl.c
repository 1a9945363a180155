/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test driver for flow routes (include/sockmig/route.h), run inside a node's
 * network namespace. One command per run; prints "ok" or the library's
 * sentence and exits 1.
 *
 *   route_ctl open IFNAME
 *   route_ctl forward-set IFNAME PROTO LADDR LPORT RADDR|- RPORT|- NEXTHOP
 *   route_ctl forward-del IFNAME PROTO LADDR LPORT RADDR|- RPORT|-
 *   route_ctl accept-set  IFNAME PROTO LADDR LPORT RADDR|- RPORT|-
 *   route_ctl accept-del  IFNAME PROTO LADDR LPORT RADDR|- RPORT|-
 *   route_ctl rewrite-set IFNAME PROTO LADDR LPORT RADDR RPORT OWN_NOW PEER_NOW
 *   route_ctl rewrite-del IFNAME PROTO LADDR LPORT RADDR RPORT
 *   route_ctl list IFNAME          one line per entry:
 *       forward FLOW via ADDR packets=N
 *       accept FLOW packets=N
 *       rewrite FLOW own ADDR peer ADDR packets=N
 *     (FLOW as sockmig_flow_str: "tcp 198.18.0.1:7000 > 198.18.0.4:5000")
 *   route_ctl flush
 *   route_ctl bench IFNAME N       set and delete N connected flows of each
 *                                  kind, one call each, and print the times
 *   route_ctl replay-udp SRC SPORT DST DPORT FILE
 *       one IPv4 UDP datagram (payload: FILE) from SRC to DST through
 *       sockmig_flow_replay (a raw socket), as a move replays captures
 *   route_ctl inject-udp SRC SPORT DST DPORT FILE
 *       the same through sockmig_udp_inject_queue (a transparent UDP
 *       sender), as a move re-injects a UDP receive queue
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockmig/route.h"
#include "sockmig/sockmig.h"
#include "sockmig/socket.h"
#include "util.h"

static int parse_addr(const char *s, uint8_t *addr, uint8_t *family)
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, s, addr) == 1)
		*family = AF_INET;
	else if (inet_pton(AF_INET6, s, addr) == 1)
		*family = AF_INET6;
	else
		return -1;
	return 0;
}

static int parse_flow(char **a, struct sockmig_flow *f)
{
	memset(f, 0, sizeof(*f));
	if (!strcmp(a[0], "tcp"))
		f->proto = IPPROTO_TCP;
	else if (!strcmp(a[0], "udp"))
		f->proto = IPPROTO_UDP;
	else
		return -1;
	if (parse_addr(a[1], f->local.addr, &f->local.family) < 0)
		return -1;
	f->local.port = (uint16_t)atoi(a[2]);
	if (strcmp(a[3], "-")) {
		if (parse_addr(a[3], f->remote.addr, &f->remote.family) < 0)
			return -1;
		f->remote.port = (uint16_t)atoi(a[4]);
	}
	return 0;
}

static const char *addr_str(int family, const uint8_t *a, char *buf, size_t size)
{
	if (!inet_ntop(family, a, buf, (socklen_t)size))
		snprintf(buf, size, "?");
	return buf;
}

static int usage(void)
{
	fprintf(stderr, "usage: route_ctl open|forward-set|forward-del|accept-set|accept-del|rewrite-set|rewrite-del|"
			"list|flush|bench ... (see the source's header)\n");
	return 2;
}

static int fail(const char *what)
{
	printf("error: %s: %s\n", what, sockmig_error());
	return 1;
}

static int list(struct sockmig_route *r)
{
	struct sockmig_route_entry *e;
	size_t n;
	char f[160], a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];

	if (sockmig_route_list(r, &e, &n) < 0)
		return fail("list");
	for (size_t i = 0; i < n; i++) {
		int fam = e[i].flow.local.family;

		sockmig_flow_str(&e[i].flow, f, sizeof(f));
		switch (e[i].kind) {
		case SOCKMIG_ROUTE_FORWARD:
			printf("forward %s via %s packets=%llu\n", f, addr_str(fam, e[i].next_hop, a, sizeof(a)),
			       (unsigned long long)e[i].packets);
			break;
		case SOCKMIG_ROUTE_ACCEPT:
			printf("accept %s packets=%llu\n", f, (unsigned long long)e[i].packets);
			break;
		case SOCKMIG_ROUTE_REWRITE:
			printf("rewrite %s own %s peer %s packets=%llu\n", f, addr_str(fam, e[i].own_now, a, sizeof(a)),
			       addr_str(fam, e[i].peer_now, b, sizeof(b)), (unsigned long long)e[i].packets);
			break;
		}
	}
	free(e);
	return 0;
}

static double ms_since(uint64_t t0)
{
	return (double)(sm_now_ns() - t0) / 1e6;
}

/* n connected IPv4 TCP flows 10.0.0.1:80 > 10.1.x.y:1024+i. */
static int bench(struct sockmig_route *r, size_t n)
{
	struct sockmig_flow *f = calloc(n, sizeof(*f));
	struct sockmig_route_rewrite *rw = calloc(n, sizeof(*rw));
	uint8_t nh[4] = { 10, 0, 0, 2 }, nh2[4] = { 10, 0, 0, 3 };
	uint64_t t0;
	int rc = 1;

	if (!f || !rw)
		goto out;
	for (size_t i = 0; i < n; i++) {
		f[i].proto = IPPROTO_TCP;
		f[i].local.family = f[i].remote.family = AF_INET;
		inet_pton(AF_INET, "10.0.0.1", f[i].local.addr);
		f[i].local.port = 80;
		f[i].remote.addr[0] = 10;
		f[i].remote.addr[1] = 1;
		f[i].remote.addr[2] = (uint8_t)(i >> 8);
		f[i].remote.addr[3] = (uint8_t)i;
		f[i].remote.port = (uint16_t)(1024 + i % 50000);
		rw[i].flow = f[i];
		inet_pton(AF_INET, "10.0.0.5", rw[i].own_now);
		inet_pton(AF_INET, "10.0.0.6", rw[i].peer_now);
	}
#define STEP(what, call)                                                                            \
	do {                                                                                        \
		t0 = sm_now_ns();                                                                   \
		if ((call) < 0) {                                                                   \
			fail(what);                                                                 \
			goto out;                                                                   \
		}                                                                                   \
		printf("bench %s flows=%zu ms=%.3f\n", what, n, ms_since(t0));                      \
	} while (0)
	STEP("forward-set", sockmig_route_forward_set(r, f, n, nh));
	STEP("forward-set-again", sockmig_route_forward_set(r, f, n, nh2));
	STEP("forward-del", sockmig_route_forward_del(r, f, n));
	STEP("accept-set", sockmig_route_accept_set(r, f, n));
	STEP("accept-del", sockmig_route_accept_del(r, f, n));
	STEP("rewrite-set", sockmig_route_rewrite_set(r, rw, n));
	for (size_t i = 0; i < n; i++)
		inet_pton(AF_INET, "10.0.0.7", rw[i].peer_now);
	STEP("rewrite-set-again", sockmig_route_rewrite_set(r, rw, n));
	STEP("rewrite-del", sockmig_route_rewrite_del(r, f, n));
#undef STEP
	rc = 0;
out:
	free(f);
	free(rw);
	return rc;
}

/* replay-udp / inject-udp: argv = SRC SPORT DST DPORT FILE. */
static int send_udp(bool replay, char **argv)
{
	struct sockmig_endpoint src = { .family = AF_INET }, dst = { .family = AF_INET };
	uint8_t payload[1400], pkt[1428];
	size_t len;
	FILE *f;
	int r;

	if (inet_pton(AF_INET, argv[0], src.addr) != 1 || inet_pton(AF_INET, argv[2], dst.addr) != 1)
		return usage();
	src.port = (uint16_t)atoi(argv[1]);
	dst.port = (uint16_t)atoi(argv[3]);
	f = fopen(argv[4], "rb");
	if (!f) {
		printf("error: %s: %m\n", argv[4]);
		return 1;
	}
	len = fread(payload, 1, sizeof(payload), f);
	fclose(f);
	if (replay) {
		struct sockmig_packet p = { .len = (uint32_t)(28 + len), .data = pkt };
		struct sockmig_flow_capture fc = { .flow = { .proto = IPPROTO_UDP, .local = dst, .remote = src },
						   .n_packets = 1, .packets = &p };
		uint16_t v;

		/* IPv4 (DF, TTL 64) and UDP headers; the replay computes the sums. */
		memset(pkt, 0, 28);
		pkt[0] = 0x45;
		v = htons((uint16_t)(28 + len));
		memcpy(pkt + 2, &v, 2);
		pkt[6] = 0x40;
		pkt[8] = 64;
		pkt[9] = IPPROTO_UDP;
		memcpy(pkt + 12, src.addr, 4);
		memcpy(pkt + 16, dst.addr, 4);
		v = htons(src.port);
		memcpy(pkt + 20, &v, 2);
		v = htons(dst.port);
		memcpy(pkt + 22, &v, 2);
		v = htons((uint16_t)(8 + len));
		memcpy(pkt + 24, &v, 2);
		memcpy(pkt + 28, payload, len);
		r = sockmig_flow_replay(&fc, 1);
	} else {
		struct sockmig_udp_state st = { .family = AF_INET, .local = dst };
		struct sockmig_udp_dgram d = { .src = src, .len = (uint32_t)len, .data = payload };
		struct sockmig_udp_queue *q;

		r = sockmig_udp_queue_new(&d, 1, &q);
		if (r >= 0) {
			r = sockmig_udp_inject_queue(&st, q);
			sockmig_udp_queue_free(q);
		}
	}
	if (r < 0)
		return fail(replay ? "replay-udp" : "inject-udp");
	printf("ok\n");
	return 0;
}

int main(int argc, char **argv)
{
	struct sockmig_route *r = NULL;
	struct sockmig_flow f;
	const char *cmd;
	int rc = 0, need;

	if (argc < 2)
		return usage();
	cmd = argv[1];
	if (!strcmp(cmd, "flush")) {
		if (sockmig_route_flush() < 0)
			return fail("flush");
		printf("ok\n");
		return 0;
	}
	if (!strcmp(cmd, "replay-udp") || !strcmp(cmd, "inject-udp"))
		return argc == 7 ? send_udp(!strcmp(cmd, "replay-udp"), argv + 2) : usage();
	if (argc < 3)
		return usage();
	need = !strcmp(cmd, "forward-set")   ? 9
	       : !strcmp(cmd, "rewrite-set") ? 10
	       : !strcmp(cmd, "bench")	     ? 4
	       : !strcmp(cmd, "open") || !strcmp(cmd, "list") ? 3
							      : 8;
	if (argc != need)
		return usage();
	if (need >= 8 && parse_flow(argv + 3, &f) < 0)
		return usage();
	if (sockmig_route_open(argv[2], &r) < 0)
		return fail("open");
	if (!strcmp(cmd, "open")) {
		rc = 0;
	} else if (!strcmp(cmd, "forward-set")) {
		uint8_t nh[16], fam;

		/* The library reads the next hop at the flow's size. */
		if (parse_addr(argv[8], nh, &fam) < 0 || fam != f.local.family)
			rc = usage();
		else if (sockmig_route_forward_set(r, &f, 1, nh) < 0)
			rc = fail(cmd);
	} else if (!strcmp(cmd, "forward-del")) {
		if (sockmig_route_forward_del(r, &f, 1) < 0)
			rc = fail(cmd);
	} else if (!strcmp(cmd, "accept-set")) {
		if (sockmig_route_accept_set(r, &f, 1) < 0)
			rc = fail(cmd);
	} else if (!strcmp(cmd, "accept-del")) {
		if (sockmig_route_accept_del(r, &f, 1) < 0)
			rc = fail(cmd);
	} else if (!strcmp(cmd, "rewrite-set")) {
		struct sockmig_route_rewrite rw = { .flow = f };
		uint8_t fam;

		if (parse_addr(argv[8], rw.own_now, &fam) < 0 || parse_addr(argv[9], rw.peer_now, &fam) < 0)
			rc = usage();
		else if (sockmig_route_rewrite_set(r, &rw, 1) < 0)
			rc = fail(cmd);
	} else if (!strcmp(cmd, "rewrite-del")) {
		if (sockmig_route_rewrite_del(r, &f, 1) < 0)
			rc = fail(cmd);
	} else if (!strcmp(cmd, "list")) {
		rc = list(r);
	} else if (!strcmp(cmd, "bench")) {
		rc = bench(r, (size_t)strtoul(argv[3], NULL, 10));
	} else {
		rc = usage();
	}
	if (!rc && strcmp(cmd, "list") && strcmp(cmd, "bench"))
		printf("ok\n");
	sockmig_route_free(r);
	return rc;
}
