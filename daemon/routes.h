/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Modes forward and rewrite: which node holds which flow route (routes.c). */
#ifndef SOCKMIGD_ROUTES_H
#define SOCKMIGD_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon.h"
#include "sockmig/flow.h"
#include "sockmig/route.h"

#define PEER_REPLY_ROUTE_MAX 4096

enum route_kind { ROUTE_NONE, ROUTE_FORWARD, ROUTE_REWRITE, ROUTE_PROBE };

struct route_step {
	enum route_kind kind;
	const struct sockmig_member *via; /* forward: the home node; rewrite: the peer end's node */
};

/* One move's routed flows, on the source. */
struct route_move {
	struct daemon *d;
	const struct sockmig_member *dst;
	const char *mode;   /* auto, forward, rewrite */
	const char *origin; /* the node the process started on */
	bool kind_job;      /* a job with an address of its own */
	struct sockmig_flow *flows;
	struct route_step *plan;
	size_t n;
	size_t done_fwd, done_own, done_peer; /* for routes_back */
	unsigned n_forward, n_rewrite;
};

/* S: point the wire at mv->dst (plan, then ask the nodes); routes_back
 * undoes what was done; routes_commit drops this node's own entries. */
int routes_switch(struct route_move *mv, const struct sockmig_flow *flows, size_t n, char *err, size_t size);
void routes_back(struct route_move *mv);
void routes_commit(struct route_move *mv);
void routes_move_free(struct route_move *mv);

/* D: accept entries for the routed flows that need them; *ret (malloc'ed)
 * gets those, for routes_drop. */
int routes_take(struct daemon *d, const struct job *j, const struct sockmig_flow *flows, size_t n,
		struct sockmig_flow **ret, size_t *ret_n, char *err, size_t size);
void routes_drop(struct daemon *d, const struct sockmig_flow *flows, size_t n);
/* A moved-in process with routed flows ended: its homes stop forwarding,
 * its peers' nodes stop rewriting towards it (a thread of its own), and
 * this node's entries go. */
void routes_forget(struct daemon *d, const struct job *j);

/* "flow ..." lines of this node's entries; the control request flows. */
int routes_lines(struct daemon *d, char **ret, size_t *ret_len, char *err, size_t size);
int ctl_flows(struct ctl_req *r);

/* The "route" request between daemons. */
int peer_route(struct peer_req *r);

/* ---- shared by routes.c and routes_move.c ---- */

#define ITEM_MAX 160

struct sockmig_route_entry;
enum sockmig_route_kind;

size_t alen(int family);
bool is_any(const struct sockmig_endpoint *e);
bool same_addr(int family, const uint8_t *a, const uint8_t *b);
bool flow_same(const struct sockmig_flow *a, const struct sockmig_flow *b);
/* the same flow seen from the other end */
struct sockmig_flow flow_reversed(const struct sockmig_flow *f);
const struct sockmig_member *member_by_addr(const struct sockmig_config *cfg, int family, const uint8_t *addr);
/* "t,LOCAL,LPORT,REMOTE,RPORT" */
const char *flow_text(const struct sockmig_flow *f, char *buf, size_t size);
/* a socket with this flow (its terms) is on this node */
bool flow_is_here(const struct sockmig_flow *f);

/* This node's rules, under d->route_lock: the handle (opened on first
 * use), what it holds (free() it), one entry, deleting the entries of kind
 * that exist for flows. */
struct sockmig_route *route_handle(struct daemon *d, char *err, size_t size);
int route_entries(struct daemon *d, struct sockmig_route_entry **ret, size_t *n, char *err, size_t size);
const struct sockmig_route_entry *entry_find(const struct sockmig_route_entry *e, size_t n,
					     enum sockmig_route_kind kind, const struct sockmig_flow *f);
int entries_del(struct daemon *d, enum sockmig_route_kind kind, const struct sockmig_flow *flows, size_t n,
		char *err, size_t size);

/* "route HEAD item..." to member m (ourselves: applied here), chunked;
 * probe answers concatenated into probe (one digit an item). */
int ask(struct daemon *d, const struct sockmig_member *m, const char *head, char **items, size_t n, char *probe,
	char *err, size_t size);
/* Items: a flow's text, with ",ADDR" (and ",ADDR") after it; NULL: no memory. */
char *item_flow(const struct sockmig_flow *f);
char *item_flow_addrs(const struct sockmig_flow *f, const uint8_t *a, const uint8_t *b);
void items_free(char **items, size_t n);

#endif
