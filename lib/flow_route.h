/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flow routes internals, shared by lib/flow_route.c (the kernel objects,
 * forward, accept, list) and lib/flow_route_rw.c (rewrite). Not installed.
 */
#ifndef SOCKMIG_LIB_FLOW_ROUTE_H
#define SOCKMIG_LIB_FLOW_ROUTE_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nft_batch.h"
#include "sockmig/route.h"

#define SM_ROUTE_TABLE_FWD "sockmig_fwd"   /* netdev: forward */
#define SM_ROUTE_TABLE_RT "sockmig_route"  /* inet: accept, rewrite */

/* Largest key: proto . ip6 . port . ip6 . port, 4-byte aligned parts. */
#define SM_ROUTE_KEY_MAX (4 + 16 + 4 + 16 + 4)

struct sockmig_route {
	struct sm_nft nl;
	char ifname[IF_NAMESIZE];
};

/* Key shapes: connected, bound address, wildcard; per family. */
enum sm_route_shape { SM_SH_C4, SM_SH_C6, SM_SH_L4, SM_SH_L6, SM_SH_P4, SM_SH_P6, SM_SH_N };

/* A flow as the wire carries it (v4-mapped addresses unwrapped). */
struct sm_route_wflow {
	int family; /* AF_INET or AF_INET6 */
	size_t alen;
	uint8_t proto;
	uint8_t laddr[16], raddr[16];
	uint16_t lport, rport; /* network order */
	enum sm_route_shape shape;
};

/* -EINVAL for what no set can hold (not TCP/UDP, families that differ). */
int sm_route_wflow_of(const struct sockmig_flow *f, struct sm_route_wflow *ret);
/* An address laid out as in struct sockmig_endpoint, as the wire carries it
 * for a flow of wire_family (a v4-mapped one unwrapped). */
const uint8_t *sm_route_wire_addr(const uint8_t *a16, int wire_family);
/* The key proto . a1 . p1 [. a2 . p2] (a1 NULL: proto . p1); its length. */
size_t sm_route_key5(uint8_t *key, uint8_t proto, size_t alen, const uint8_t *a1, uint16_t p1, const uint8_t *a2,
		     uint16_t p2);
/* The flow of a key of a shape (the inbound order: local first). */
int sm_route_flow_of_key(enum sm_route_shape sh, const uint8_t *key, size_t klen, struct sockmig_flow *ret);

/* The mark statement of the rules: only the mask's bits change. */
#define SM_ROUTE_MARK_STMT_MAX 96
const char *sm_route_mark_stmt(char *buf, size_t size);

/* Which flow an element of a batch belongs to, to name the one the kernel
 * refused (its extended ACK's offset). */
struct sm_route_owner {
	struct sm_nft_pos pos;
	size_t flow;
};
int sm_route_batch_fail(int r, const struct sm_nft_pos *bad, const struct sm_route_owner *own, size_t n_own,
			const struct sockmig_flow *flows, size_t n, const char *verb, const char *table);
int sm_route_bad_flow(const struct sockmig_flow *f, const char *verb, const char *why);

/* A growing list of entries. */
struct sm_route_entries {
	struct sockmig_route_entry *v;
	size_t n, cap;
};
struct sockmig_route_entry *sm_route_entry_new(struct sm_route_entries *e);

/* ---- rewrite (flow_route_rw.c) ---- */

/* The rewrite maps and the rules of chains "pre" and "out", as
 * libnftables commands (the table and chains exist before them). */
void sm_route_rw_cmds(FILE *f);
/* Append the rewrites this node holds. */
int sm_route_rw_list(struct sockmig_route *h, struct sm_route_entries *e);

#endif
