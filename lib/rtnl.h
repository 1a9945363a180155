/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small rtnetlink client on libmnl: links (bridge, veth, up/down, master),
 * addresses (IPv4 and IPv6: add, delete, dump), waiting for links to
 * become operational, and the policy rules and routes of the flow routes
 * (fwmark rules, local routes in a table of their own).
 *
 * A handle talks to the network namespace its socket was created in, for
 * its whole life (sm_rtnl_open_in()). Every request is acknowledged and a
 * failure records one sentence naming the interface or address.
 */
#ifndef SOCKMIG_LIB_RTNL_H
#define SOCKMIG_LIB_RTNL_H

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sm_rtnl;

/* Open a handle on the caller's current network namespace. */
int sm_rtnl_open(struct sm_rtnl **ret);
/* Open a handle on the network namespace nsfd (the caller stays where it is). */
int sm_rtnl_open_in(int nsfd, struct sm_rtnl **ret);
void sm_rtnl_close(struct sm_rtnl *r);

/* ---- links ---- */

/* ifindex (> 0) of the interface, or -ENODEV. */
int sm_rtnl_link_index(struct sm_rtnl *r, const char *ifname);
/* Name of the interface (buf of IF_NAMESIZE bytes). */
int sm_rtnl_link_name(struct sm_rtnl *r, int ifindex, char *buf);

/* A bridge with STP and multicast snooping off: ports forward at once and
 * multicast (IPv6 neighbour discovery) is flooded like broadcast. Down.
 * Returns its ifindex. */
int sm_rtnl_bridge_add(struct sm_rtnl *r, const char *name);

/* A veth pair: name here, peer in the namespace peer_nsfd (-1: here too).
 * The peer is created directly in its namespace, so it never exists in this
 * one. Both down. Returns the ifindex of name. */
int sm_rtnl_veth_add(struct sm_rtnl *r, const char *name, const char *peer, int peer_nsfd);

int sm_rtnl_link_set_up(struct sm_rtnl *r, int ifindex, bool up);
/* Enslave to master_ifindex (0: release from its master). */
int sm_rtnl_link_set_master(struct sm_rtnl *r, int ifindex, int master_ifindex);
int sm_rtnl_link_del(struct sm_rtnl *r, int ifindex);

/* Wait until each of the n interfaces is operationally up (carrier on, and
 * for bridge ports: in forwarding state), at most timeout_ms. Wakes on link
 * notifications, not a timer. -ETIMEDOUT names the first that is not. */
int sm_rtnl_links_wait_running(struct sm_rtnl *r, const int *ifindexes, size_t n, int timeout_ms);

/* ---- addresses ---- */

struct sm_rtnl_addr {
	int family; /* AF_INET or AF_INET6 */
	int ifindex;
	uint8_t prefixlen;
	uint8_t scope;  /* RT_SCOPE_*; dumps fill it, add uses RT_SCOPE_UNIVERSE if 0 */
	uint32_t flags; /* IFA_F_*, e.g. IFA_F_NODAD */
	uint32_t valid_s; /* add/change: its valid (and preferred) lifetime in s; 0: forever */
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} addr;
};

/* Parse "198.18.0.1/24" or "2001:2::1/64" (no prefix: /32 or /128). */
int sm_rtnl_addr_parse(const char *s, struct sm_rtnl_addr *ret);
/* "198.18.0.1/24" into buf (at least SM_RTNL_ADDR_STRLEN bytes). */
#define SM_RTNL_ADDR_STRLEN (INET6_ADDRSTRLEN + 4)
const char *sm_rtnl_addr_format(const struct sm_rtnl_addr *a, char *buf, size_t size);

/* Add an address; -EEXIST if the interface has it already. */
int sm_rtnl_addr_add(struct sm_rtnl *r, const struct sm_rtnl_addr *a);
/* Add an address, or set the lifetime (valid_s) of one the interface has. */
int sm_rtnl_addr_change(struct sm_rtnl *r, const struct sm_rtnl_addr *a);
/* Delete an address; -EADDRNOTAVAIL if the interface does not have it. */
int sm_rtnl_addr_del(struct sm_rtnl *r, const struct sm_rtnl_addr *a);
/* All addresses of family (AF_UNSPEC: both) on ifindex (0: every interface).
 * *ret is malloc'ed (free() it), *ret_n its length. */
int sm_rtnl_addr_dump(struct sm_rtnl *r, int family, int ifindex, struct sm_rtnl_addr **ret, size_t *ret_n);

/* ---- policy rules ---- */

/* "fwmark MARK/MASK lookup TABLE pref PRIORITY" of one family. */
struct sm_rtnl_rule {
	int family; /* AF_INET or AF_INET6 */
	uint32_t priority;
	uint32_t fwmark, fwmask;
	uint32_t table;
};

/* Add the rule; -EEXIST if the same rule exists (the kernel would add a
 * duplicate without NLM_F_EXCL, so the caller can tell). */
int sm_rtnl_rule_add(struct sm_rtnl *r, const struct sm_rtnl_rule *rule);
/* Delete one such rule; -ENOENT if there is none. */
int sm_rtnl_rule_del(struct sm_rtnl *r, const struct sm_rtnl_rule *rule);

/* ---- routes ---- */

struct sm_rtnl_route {
	int family;      /* AF_INET or AF_INET6 */
	uint8_t type;    /* RTN_LOCAL, RTN_UNICAST, ... */
	uint8_t dst_len; /* 0: every destination */
	uint32_t table;
	int oif;
	union {
		struct in_addr v4;
		struct in6_addr v6;
	} dst;
};

/* Add or replace the route (RTN_LOCAL: scope host, else universe). */
int sm_rtnl_route_replace(struct sm_rtnl *r, const struct sm_rtnl_route *rt);
/* Delete it; -ESRCH if there is no such route. */
int sm_rtnl_route_del(struct sm_rtnl *r, const struct sm_rtnl_route *rt);

#endif
