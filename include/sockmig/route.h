/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flow routes: how a moved flow keeps working when its addresses do not move
 * with it (docs/flow-routes.md). They outlive a move: a node's daemon keeps
 * them for as long as the moved process runs where it went.
 *
 * Terms. A flow is given in socket terms, as the socket on the host node sees
 * it: local = the address and port the socket is bound to (the node address
 * of the node the process started on, its "home"), remote = the peer's. On
 * the wire, addresses may differ (rewrite mode).
 *
 *   forward (on the home node H, where the local address is H's own):
 *     packets that reach H for the flow are sent on to the node that hosts
 *     the socket now, by its address (netdev ingress "fwd ip to", the
 *     neighbour table finds its MAC). Set again with another next hop when
 *     the process moves on: the rule is replaced, never chained.
 *
 *   accept (on the node that hosts the socket, when the local address is
 *     not its own): packets of the flow are delivered locally (a mark, and
 *     a policy route to a local table). The socket must be IP_TRANSPARENT
 *     so that it may send from an address that is not local.
 *
 *   rewrite (both ends on sockmig nodes): stateless address translation on
 *     the two nodes that hold the ends, so that packets go straight from node
 *     to node with node addresses on the wire. For each flow end hosted on a
 *     node, that node rewrites its own end's address (own_now: where it is
 *     now) and the peer end's (peer_now), in both directions; an end at its
 *     home needs nothing. Works when both ends have moved.
 *
 * Every call acts in the calling thread's current network namespace and is
 * one atomic netlink batch, whatever n: all of it happens or none. A set
 * call replaces any previous entry of the same kind for the same flow; a del
 * call of a flow that has no such entry fails with -ENOENT (naming the flow)
 * and changes nothing. A flow with remote.family == 0 (a listener, a bound
 * UDP socket) matches on its local address and port only; on the local port
 * only if the local address is the wildcard, and then only packets of the
 * local address's family (a dual-stack wildcard socket is given as two
 * flows, 0.0.0.0 and ::). Flows are matched as the packets carry them: a
 * v4-mapped IPv6 address is IPv4, and list returns it so. Nothing here
 * touches the flow locks of moves in progress (table inet sockmig): inbound
 * rewrite runs before them (prerouting, priority -350) so that they see
 * socket terms, outbound rewrite after them (output, -250).
 *
 * Kernel objects (docs/flow-routes.md): table netdev sockmig_fwd (forward:
 * maps and an ingress chain per interface), table inet sockmig_route
 * (accept sets, rewrite maps, chains "pre" and "out"), the policy rules
 * "fwmark SOCKMIG_ROUTE_MARK/SOCKMIG_ROUTE_MARK_MASK lookup
 * SOCKMIG_ROUTE_TABLE pref SOCKMIG_ROUTE_RULE_PRIORITY" (IPv4 and IPv6) and
 * in that table "local 0.0.0.0/0 dev lo" and "local ::/0 dev lo".
 *
 * Not handled: IP fragments after the first (no ports: not matched), ICMP
 * errors about a rewritten flow (not translated back).
 */
#ifndef SOCKMIG_ROUTE_H
#define SOCKMIG_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockmig/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sockmig_route;

/* A handle on this node's routes; creates what is missing (tables, chains,
 * maps, the mark's policy rule and local table, for IPv4 and IPv6). ifname
 * is the cluster interface (forward sends out of it). Idempotent: several
 * handles may exist; callers serialise their updates. */
int sockmig_route_open(const char *ifname, struct sockmig_route **ret);
/* Closes the handle; the routes stay. NULL is fine. */
void sockmig_route_free(struct sockmig_route *r);
/* Removes every route of this node: tables, policy rules, local routes. */
int sockmig_route_flush(void);

/* forward: next_hop is 4 bytes if the flows' local.family is AF_INET, 16 if
 * AF_INET6 (v4-mapped for flows that are IPv4 on the wire); every flow of the
 * call must be of the next hop's family on the wire (-EINVAL otherwise).
 * Packets that arrive on the handle's interface are sent out of it. */
int sockmig_route_forward_set(struct sockmig_route *r, const struct sockmig_flow *flows, size_t n,
			      const uint8_t *next_hop);
int sockmig_route_forward_del(struct sockmig_route *r, const struct sockmig_flow *flows, size_t n);

/* accept */
int sockmig_route_accept_set(struct sockmig_route *r, const struct sockmig_flow *flows, size_t n);
int sockmig_route_accept_del(struct sockmig_route *r, const struct sockmig_flow *flows, size_t n);

/* rewrite: one flow end hosted here. An address that did not move is given
 * as it is (own_now == flow.local.addr, peer_now == flow.remote.addr);
 * connected flows only (remote.family != 0). Addresses as in struct
 * sockmig_endpoint (IPv4 in the first 4 bytes; v4-mapped is accepted).
 * Rewritten flows are not tracked by conntrack (notrack), and their inbound
 * packets carry SOCKMIG_ROUTE_MARK (delivered locally even when flow.local
 * is not an address of this node). Two flows that are the same on the wire
 * (same own_now, peer_now, protocol and ports) cannot both be rewritten. */
struct sockmig_route_rewrite {
	struct sockmig_flow flow;
	uint8_t own_now[16];  /* the address on the wire for flow.local */
	uint8_t peer_now[16]; /* the address on the wire for flow.remote */
};
int sockmig_route_rewrite_set(struct sockmig_route *r, const struct sockmig_route_rewrite *rw, size_t n);
int sockmig_route_rewrite_del(struct sockmig_route *r, const struct sockmig_flow *flows, size_t n);

/* What this node holds, for `sockmig flows`: every entry of every kind
 * (also those set by other handles), in no particular order. */
enum sockmig_route_kind {
	SOCKMIG_ROUTE_FORWARD = 1,
	SOCKMIG_ROUTE_ACCEPT = 2,
	SOCKMIG_ROUTE_REWRITE = 3,
};
struct sockmig_route_entry {
	enum sockmig_route_kind kind;
	struct sockmig_flow flow;
	uint8_t next_hop[16]; /* forward */
	uint8_t own_now[16];  /* rewrite */
	uint8_t peer_now[16]; /* rewrite */
	uint64_t packets;     /* matched so far, where the kernel counts them
			       * (rewrite: both directions); else 0. Not
			       * counted today: per-element counters made
			       * set calls 2 to 4 times slower */
};
/* free() the result. */
int sockmig_route_list(struct sockmig_route *r, struct sockmig_route_entry **ret, size_t *ret_n);

/* The mark (and mask) that makes a packet local on this node (accept):
 * replayed packets and re-injected datagrams carry it, so that they reach
 * sockets bound to an address that is not local. Only the bits of the mask
 * are set on a packet; the others are kept. */
#define SOCKMIG_ROUTE_MARK 0x50c00000u
#define SOCKMIG_ROUTE_MARK_MASK 0xfff00000u
/* The routing table that holds the local routes, and the preference of the
 * policy rules that send marked packets to it: after "local" (0), before
 * "main" (32766) and before the usual places of an administrator's rules. */
#define SOCKMIG_ROUTE_TABLE 20672u /* 0x50c0 */
#define SOCKMIG_ROUTE_RULE_PRIORITY 92u

#ifdef __cplusplus
}
#endif

#endif
