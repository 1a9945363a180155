/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Times of the flow routes' set and delete calls (include/sockmig/route.h),
 * in a network namespace of its own (unshare(CLONE_NEWNET): needs root; the
 * machine's namespace is never touched; the forward chain hooks "lo").
 * Prints a table, median of RUNS (5) runs each; never passes or fails on
 * time.
 *
 *   route_set [RUNS]
 *
 * Flows: n connected IPv4 TCP flows. Columns, one call each: forward set
 * (new), forward set again with another next hop (replace), forward del,
 * accept set, accept del, rewrite set (new), rewrite set again with another
 * peer address (replace: reads the old entries back first), rewrite del.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rtnl.h"
#include "sockmig/route.h"
#include "sockmig/sockmig.h"
#include "util.h"

#define MAX_RUNS 15
#define COLS 8

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void make_flows(struct sockmig_flow *f, struct sockmig_route_rewrite *rw, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].proto = IPPROTO_TCP;
		f[i].local.family = f[i].remote.family = AF_INET;
		inet_pton(AF_INET, "10.0.0.1", f[i].local.addr);
		f[i].local.port = 80;
		/* 10.1.x.y : 1024 + i % 50000 */
		f[i].remote.addr[0] = 10;
		f[i].remote.addr[1] = 1;
		f[i].remote.addr[2] = (uint8_t)(i >> 8);
		f[i].remote.addr[3] = (uint8_t)i;
		f[i].remote.port = (uint16_t)(1024 + i % 50000);
		memset(&rw[i], 0, sizeof(rw[i]));
		rw[i].flow = f[i];
		inet_pton(AF_INET, "10.0.0.5", rw[i].own_now);
		inet_pton(AF_INET, "10.0.0.6", rw[i].peer_now);
	}
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 1, 100, 1000, 10000 };
	static const char *const col[COLS] = { "fwd set", "fwd replace", "fwd del", "acc set",
					       "acc del", "rw set",	 "rw replace", "rw del" };
	int runs = argc > 1 ? atoi(argv[1]) : 5;
	uint8_t nh1[4] = { 10, 0, 0, 2 }, nh2[4] = { 10, 0, 0, 3 };
	struct sockmig_route_rewrite *rw;
	struct sockmig_flow *flows;
	struct sockmig_route *h;
	struct sm_rtnl *rt;
	double t[COLS][MAX_RUNS];
	uint64_t t0;

	if (runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "route_set: RUNS must be 1..%d\n", MAX_RUNS);
		return 2;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "route_set: cannot create a network namespace: %s (run as root)\n", strerror(errno));
		return 1;
	}
	/* The local routes need their device up. */
	if (sm_rtnl_open(&rt) < 0 || sm_rtnl_link_set_up(rt, sm_rtnl_link_index(rt, "lo"), true) < 0) {
		fprintf(stderr, "route_set: %s\n", sockmig_error());
		return 1;
	}
	sm_rtnl_close(rt);
	flows = calloc(10000, sizeof(*flows));
	rw = calloc(10000, sizeof(*rw));
	if (!flows || !rw) {
		fprintf(stderr, "route_set: out of memory\n");
		return 1;
	}
	make_flows(flows, rw, 10000);
	t0 = sm_now_ns();
	if (sockmig_route_open("lo", &h) < 0)
		goto fail;
	printf("open (tables, chains, rules, routes): %.3f ms\n\n", (double)(sm_now_ns() - t0) / 1e6);
	printf("connected IPv4 TCP flows, one call each, median of %d runs, ms\n\n", runs);
	printf("| flows  |");
	for (int c = 0; c < COLS; c++)
		printf(" %s |", col[c]);
	printf("\n| -----: |");
	for (int c = 0; c < COLS; c++)
		printf(" %.*s: |", (int)strlen(col[c]) - 1, "----------------");
	printf("\n");
	for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
		size_t n = sizes[s];

		for (int r = 0; r < runs; r++) {
			int c = 0;
#define STEP(call)                                                            \
	do {                                                                  \
		t0 = sm_now_ns();                                             \
		if ((call) < 0)                                               \
			goto fail;                                            \
		t[c++][r] = (double)(sm_now_ns() - t0) / 1e6;                \
	} while (0)
			for (size_t i = 0; i < n; i++)
				inet_pton(AF_INET, "10.0.0.6", rw[i].peer_now);
			STEP(sockmig_route_forward_set(h, flows, n, nh1));
			STEP(sockmig_route_forward_set(h, flows, n, nh2));
			STEP(sockmig_route_forward_del(h, flows, n));
			STEP(sockmig_route_accept_set(h, flows, n));
			STEP(sockmig_route_accept_del(h, flows, n));
			STEP(sockmig_route_rewrite_set(h, rw, n));
			for (size_t i = 0; i < n; i++)
				inet_pton(AF_INET, "10.0.0.7", rw[i].peer_now);
			STEP(sockmig_route_rewrite_set(h, rw, n));
			STEP(sockmig_route_rewrite_del(h, flows, n));
#undef STEP
		}
		printf("| %6zu |", n);
		for (int c = 0; c < COLS; c++)
			printf(" %*.3f |", (int)strlen(col[c]), median(t[c], runs));
		printf("\n");
		fflush(stdout);
	}
	sockmig_route_free(h);
	if (sockmig_route_flush() < 0)
		goto fail;
	free(flows);
	free(rw);
	return 0;

fail:
	fprintf(stderr, "route_set: %s\n", sockmig_error());
	return 1;
}
