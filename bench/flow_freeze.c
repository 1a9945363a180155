/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Freeze and thaw times of flow locks, in a network namespace of its own
 * (unshare(CLONE_NEWNET): needs root; the machine's namespace is never
 * touched). Prints a table, median of 5 runs each; never passes or fails on
 * time.
 *
 *   flow_freeze [RUNS]
 *
 * Columns: sockmig_flow_freeze / _thaw of n connected IPv4 TCP flows (one
 * netlink batch built with libmnl), and for comparison the same elements
 * added and deleted as libnftables text ("add element ... { ... }"), which
 * is how lib/flow_nft.c sent them before.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nftables/libnftables.h>

#include "sockmig/flow.h"
#include "sockmig/sockmig.h"
#include "util.h"

#define MAX_RUNS 15

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

static double ms(uint64_t t0, uint64_t t1)
{
	return (double)(t1 - t0) / 1e6;
}

static void make_flows(struct sockmig_flow *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		memset(&f[i], 0, sizeof(f[i]));
		f[i].proto = IPPROTO_TCP;
		f[i].local.family = AF_INET;
		f[i].remote.family = AF_INET;
		inet_pton(AF_INET, "10.0.0.1", f[i].local.addr);
		f[i].local.port = 80;
		/* 10.1.x.y : 1024 + i % 50000 */
		f[i].remote.addr[0] = 10;
		f[i].remote.addr[1] = 1;
		f[i].remote.addr[2] = (uint8_t)(i >> 8);
		f[i].remote.addr[3] = (uint8_t)i;
		f[i].remote.port = (uint16_t)(1024 + i % 50000);
	}
}

/* The same elements as text, for libnftables. */
static char *text_cmd(const char *verb, size_t n)
{
	size_t size = 128 + n * 64, len;
	char *s = malloc(size);

	if (!s)
		return NULL;
	len = (size_t)snprintf(s, size, "%s element inet bench c4 { ", verb);
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(s + len, size - len, "%s6 . 10.0.0.1 . 80 . 10.1.%zu.%zu . %zu", i ? ", " : "",
					(i >> 8) & 0xff, i & 0xff, 1024 + i % 50000);
	snprintf(s + len, size - len, " }\n");
	return s;
}

int main(int argc, char **argv)
{
	static const size_t sizes[] = { 1, 100, 1000, 10000 };
	int runs = argc > 1 ? atoi(argv[1]) : 5;
	struct sockmig_flow *flows;
	struct sockmig_flowlock *lock;
	struct nft_ctx *nft;
	double fr[MAX_RUNS], th[MAX_RUNS], ta[MAX_RUNS], td[MAX_RUNS], lk_new[MAX_RUNS], lk_free[MAX_RUNS];
	uint64_t t0;

	if (runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "flow_freeze: RUNS must be 1..%d\n", MAX_RUNS);
		return 2;
	}
	if (unshare(CLONE_NEWNET) < 0) {
		fprintf(stderr, "flow_freeze: cannot create a network namespace: %s (run as root)\n", strerror(errno));
		return 1;
	}
	flows = calloc(10000, sizeof(*flows));
	nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!flows || !nft) {
		fprintf(stderr, "flow_freeze: out of memory\n");
		return 1;
	}
	nft_ctx_buffer_output(nft);
	nft_ctx_buffer_error(nft);
	make_flows(flows, 10000);
	if (nft_run_cmd_from_buffer(nft, "add table inet bench\n"
					 "add set inet bench c4 { type inet_proto . ipv4_addr . inet_service . "
					 "ipv4_addr . inet_service; }\n")) {
		fprintf(stderr, "flow_freeze: cannot create the comparison set: %s\n", nft_ctx_get_error_buffer(nft));
		return 1;
	}

	for (int r = 0; r < runs; r++) {
		t0 = sm_now_ns();
		if (sockmig_flowlock_new(0, NULL, &lock) < 0) {
			fprintf(stderr, "flow_freeze: %s\n", sockmig_error());
			return 1;
		}
		lk_new[r] = ms(t0, sm_now_ns());
		t0 = sm_now_ns();
		sockmig_flowlock_free(lock);
		lk_free[r] = ms(t0, sm_now_ns());
	}
	printf("flow lock: new %.3f ms, free %.3f ms (median of %d)\n\n", median(lk_new, runs), median(lk_free, runs),
	       runs);

	if (sockmig_flowlock_new(0, NULL, &lock) < 0) {
		fprintf(stderr, "flow_freeze: %s\n", sockmig_error());
		return 1;
	}
	printf("connected IPv4 TCP flows, median of %d runs, ms\n\n", runs);
	printf("| flows  | freeze  | thaw    | text add | text delete |\n");
	printf("| -----: | ------: | ------: | -------: | ----------: |\n");
	for (size_t s = 0; s < ARRAY_SIZE(sizes); s++) {
		size_t n = sizes[s];
		char *add = text_cmd("add", n), *del = text_cmd("delete", n);

		if (!add || !del) {
			fprintf(stderr, "flow_freeze: out of memory\n");
			return 1;
		}
		for (int r = 0; r < runs; r++) {
			t0 = sm_now_ns();
			if (sockmig_flow_freeze(lock, flows, n) < 0)
				goto fail;
			fr[r] = ms(t0, sm_now_ns());
			t0 = sm_now_ns();
			if (sockmig_flow_thaw(lock, flows, n) < 0)
				goto fail;
			th[r] = ms(t0, sm_now_ns());
			t0 = sm_now_ns();
			if (nft_run_cmd_from_buffer(nft, add))
				goto fail_text;
			ta[r] = ms(t0, sm_now_ns());
			t0 = sm_now_ns();
			if (nft_run_cmd_from_buffer(nft, del))
				goto fail_text;
			td[r] = ms(t0, sm_now_ns());
		}
		printf("| %6zu | %7.3f | %7.3f | %8.3f | %11.3f |\n", n, median(fr, runs), median(th, runs),
		       median(ta, runs), median(td, runs));
		fflush(stdout);
		free(add);
		free(del);
	}
	sockmig_flowlock_free(lock);
	nft_ctx_free(nft);
	free(flows);
	return 0;

fail:
	fprintf(stderr, "flow_freeze: %s\n", sockmig_error());
	return 1;
fail_text:
	fprintf(stderr, "flow_freeze: libnftables: %s\n", nft_ctx_get_error_buffer(nft));
	return 1;
}
