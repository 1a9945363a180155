/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modes forward and rewrite in a move: which node holds which route for a
 * process's flows, and asking them (the request itself and this node's
 * rules are routes.c). See routes.c for the terms.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon.h"
#include "routes.h"
#include "sockmig/route.h"
#include "sockmig/sockmig.h"

/* ---- the source's side of a move ---- */

/* The address on the wire for a node's end: the member's address, or the
 * socket's own when that member is the address's home. */
static const uint8_t *wire_addr(const struct sockmig_member *at, const struct sockmig_endpoint *e)
{
	return at->family == e->family ? at->addr : e->addr;
}

static const struct sockmig_member *home_of(struct route_move *mv, const struct sockmig_flow *f)
{
	if (is_any(&f->local))
		return sockmig_config_member(mv->d->cfg, mv->origin);
	return member_by_addr(mv->d->cfg, f->local.family, f->local.addr);
}

/* One request per node: forward for the flows of kind FWD whose home is m,
 * pointing at target (NULL: delete). */
static int ask_forward(struct route_move *mv, const struct sockmig_member *home, const struct sockmig_member *target,
		       char *err, size_t size)
{
	char **items = calloc(mv->n ? mv->n : 1, sizeof(*items)), head[INET6_ADDRSTRLEN + 16];
	size_t n = 0;
	int k = 0;

	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < mv->n; i++) {
		if (mv->plan[i].kind != ROUTE_FORWARD || mv->plan[i].via != home)
			continue;
		if (target && target->family != mv->flows[i].local.family) {
			char t[ITEM_MAX];

			snprintf(err, size, "flow %s cannot be forwarded to node %s: its member address is of another family",
				 flow_text(&mv->flows[i], t, sizeof(t)), target->name);
			k = -EAFNOSUPPORT;
			goto out;
		}
		if (!(items[n++] = item_flow(&mv->flows[i]))) {
			k = -ENOMEM;
			goto out;
		}
	}
	if (target) {
		char a[INET6_ADDRSTRLEN];

		inet_ntop(target->family, target->addr, a, sizeof(a));
		snprintf(head, sizeof(head), "forward %s", a);
	} else {
		snprintf(head, sizeof(head), "forward -");
	}
	k = ask(mv->d, home, head, items, n, NULL, err, size);
out:
	items_free(items, n);
	return k;
}

/* The rewrite entries of the flows of kind REWRITE: on the host (own end)
 * and on the peer's node, for a process now at x. */
static int ask_rewrite(struct route_move *mv, const struct sockmig_member *x, bool own, const struct sockmig_member *p,
		       char *err, size_t size)
{
	char **items = calloc(mv->n ? mv->n : 1, sizeof(*items));
	size_t n = 0;
	int k = 0;

	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < mv->n; i++) {
		const struct sockmig_flow *f = &mv->flows[i];
		const uint8_t *at = wire_addr(x, &f->local);
		struct sockmig_flow rev;

		if (mv->plan[i].kind != ROUTE_REWRITE || mv->plan[i].via != p)
			continue;
		if (own) {
			items[n] = item_flow_addrs(f, x == home_of(mv, f) ? f->local.addr : at,
						   p == member_by_addr(mv->d->cfg, f->remote.family, f->remote.addr)
							   ? f->remote.addr
							   : wire_addr(p, &f->remote));
		} else {
			rev = flow_reversed(f);
			items[n] = item_flow_addrs(&rev, x == home_of(mv, f) ? f->local.addr : at, NULL);
		}
		if (!items[n++]) {
			k = -ENOMEM;
			goto out;
		}
	}
	k = ask(mv->d, own ? x : p, own ? "own" : "peer", items, n, NULL, err, size);
out:
	items_free(items, n);
	return k;
}

/* Own-end entries to remove from the host x (the flows' rewrite there). */
static int ask_rewrite_gone(struct route_move *mv, const struct sockmig_member *x, const struct sockmig_member *p,
			    char *err, size_t size)
{
	char **items = calloc(mv->n ? mv->n : 1, sizeof(*items));
	size_t n = 0;
	int k;

	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < mv->n; i++) {
		const struct sockmig_flow *f = &mv->flows[i];

		if (mv->plan[i].kind != ROUTE_REWRITE || mv->plan[i].via != p)
			continue;
		items[n] = item_flow_addrs(f, f->local.addr, f->remote.addr);
		if (!items[n++]) {
			items_free(items, n);
			return -ENOMEM;
		}
	}
	k = ask(mv->d, x, "own", items, n, NULL, err, size);
	items_free(items, n);
	return k;
}

/* The distinct nodes the plan names (homes, peers), in plan order. */
static size_t plan_nodes(const struct route_move *mv, enum route_kind kind, const struct sockmig_member **out)
{
	size_t n = 0;

	for (size_t i = 0; i < mv->n; i++) {
		bool seen = false;

		if (mv->plan[i].kind != kind)
			continue;
		for (size_t k = 0; k < n && !seen; k++)
			seen = out[k] == mv->plan[i].via;
		if (!seen)
			out[n++] = mv->plan[i].via;
	}
	return n;
}

/* Decide each flow's mode (before anything changes). */
static int plan(struct route_move *mv, char *err, size_t size)
{
	struct daemon *d = mv->d;
	const struct sockmig_member *self = sockmig_config_self(d->cfg);
	_cleanup_free_ struct sockmig_route_entry *e = NULL;
	size_t ne = 0;
	int k;

	pthread_mutex_lock(&d->route_lock);
	k = route_entries(d, &e, &ne, err, size);
	pthread_mutex_unlock(&d->route_lock);
	if (k < 0)
		return k;
	for (size_t i = 0; i < mv->n; i++) {
		const struct sockmig_flow *f = &mv->flows[i];
		const struct sockmig_route_entry *x = entry_find(e, ne, SOCKMIG_ROUTE_REWRITE, f);
		struct route_step *s = &mv->plan[i];
		char t[ITEM_MAX], a[INET6_ADDRSTRLEN];

		flow_text(f, t, sizeof(t));
		if (!x && entry_find(e, ne, SOCKMIG_ROUTE_ACCEPT, f)) {
			/* forwarded before: it stays so */
			s->kind = ROUTE_FORWARD;
			s->via = home_of(mv, f);
			if (!s->via) {
				snprintf(err, size, "flow %s has no home node", t);
				return -EINVAL;
			}
			continue;
		}
		if (x) {
			/* rewritten before: it stays so, its peer end where
			 * our entry says */
			s->kind = ROUTE_REWRITE;
			s->via = member_by_addr(d->cfg, f->remote.family, x->peer_now);
			if (!s->via) {
				snprintf(err, size, "flow %s is rewritten towards %s, which is no member", t,
					 inet_ntop(f->remote.family, x->peer_now, a, sizeof(a)));
				return -EINVAL;
			}
			continue;
		}
		if (is_any(&f->local) && mv->kind_job) {
			s->kind = ROUTE_NONE; /* a job's own address carries these */
			continue;
		}
		s->kind = ROUTE_FORWARD;
		s->via = home_of(mv, f);
		if (!s->via) {
			snprintf(err, size, "flow %s: its address %s belongs to no member (nor to the job), so nothing can "
				 "carry it to node %s", t, inet_ntop(f->local.family, f->local.addr, a, sizeof(a)),
				 mv->dst->name);
			return -EADDRNOTAVAIL;
		}
		if (strcmp(mv->mode, "forward") && f->remote.family) {
			const struct sockmig_member *p = member_by_addr(d->cfg, f->remote.family, f->remote.addr);

			if (p && p != self && p != mv->dst) {
				s->kind = ROUTE_PROBE;
				s->via = p;
			} else if (!strcmp(mv->mode, "rewrite")) {
				snprintf(err, size, "flow %s cannot be rewritten: its peer %s is %s", t,
					 inet_ntop(f->remote.family, f->remote.addr, a, sizeof(a)),
					 p ? "on the source or the destination node itself" : "not on a node of the cluster");
				return -EHOSTUNREACH;
			}
		}
	}
	/* Ask each peer node whether it holds the other ends. */
	{
		const struct sockmig_member *nodes[SOCKMIG_CONFIG_MEMBERS_MAX];
		size_t nn = plan_nodes(mv, ROUTE_PROBE, nodes);

		for (size_t j = 0; j < nn; j++) {
			char **items = calloc(mv->n, sizeof(*items)), *probe = calloc(mv->n + 1, 1);
			size_t n = 0, m = 0;

			if (!items || !probe) {
				free(items);
				free(probe);
				return -ENOMEM;
			}
			for (size_t i = 0; i < mv->n; i++) {
				struct sockmig_flow rev = flow_reversed(&mv->flows[i]);

				if (mv->plan[i].kind == ROUTE_PROBE && mv->plan[i].via == nodes[j])
					if (!(items[n++] = item_flow(&rev)))
						k = -ENOMEM;
			}
			if (k >= 0)
				k = ask(d, nodes[j], "probe", items, n, probe, err, size);
			items_free(items, n);
			for (size_t i = 0; k >= 0 && i < mv->n; i++) {
				struct route_step *s = &mv->plan[i];
				char t[ITEM_MAX];

				if (s->kind != ROUTE_PROBE || s->via != nodes[j])
					continue;
				if (probe[m++] == '1') {
					s->kind = ROUTE_REWRITE;
				} else if (!strcmp(mv->mode, "rewrite")) {
					snprintf(err, size, "flow %s cannot be rewritten: node %s does not hold its other end",
						 flow_text(&mv->flows[i], t, sizeof(t)), nodes[j]->name);
					k = -EHOSTUNREACH;
				} else {
					s->kind = ROUTE_FORWARD;
					s->via = home_of(mv, &mv->flows[i]);
				}
			}
			free(probe);
			if (k < 0) {
				/* auto: a peer node that does not answer
				 * only costs the better mode */
				if (strcmp(mv->mode, "rewrite")) {
					for (size_t i = 0; i < mv->n; i++) {
						if (mv->plan[i].kind == ROUTE_PROBE && mv->plan[i].via == nodes[j]) {
							mv->plan[i].kind = ROUTE_FORWARD;
							mv->plan[i].via = home_of(mv, &mv->flows[i]);
						}
					}
					k = 0;
				} else {
					return k;
				}
			}
		}
	}
	return 0;
}

int routes_switch(struct route_move *mv, const struct sockmig_flow *flows, size_t n, char *err, size_t size)
{
	const struct sockmig_member *nodes[SOCKMIG_CONFIG_MEMBERS_MAX];
	size_t nn;
	int k;

	free(mv->flows);
	free(mv->plan);
	mv->flows = calloc(n ? n : 1, sizeof(*mv->flows));
	mv->plan = calloc(n ? n : 1, sizeof(*mv->plan));
	mv->n = 0;
	mv->done_fwd = mv->done_own = mv->done_peer = 0;
	if (!mv->flows || !mv->plan)
		return -ENOMEM;
	memcpy(mv->flows, flows, n * sizeof(*flows));
	mv->n = n;
	k = plan(mv, err, size);
	if (k < 0)
		return k;
	mv->n_forward = mv->n_rewrite = 0;
	for (size_t i = 0; i < n; i++) {
		mv->n_forward += mv->plan[i].kind == ROUTE_FORWARD;
		mv->n_rewrite += mv->plan[i].kind == ROUTE_REWRITE;
	}
	/* The destination's own ends first, then the peers that send there:
	 * a rewritten packet must find its translation back waiting. */
	nn = plan_nodes(mv, ROUTE_REWRITE, nodes);
	for (size_t j = 0; j < nn; j++) {
		k = ask_rewrite(mv, mv->dst, true, nodes[j], err, size);
		if (k < 0)
			return k;
		mv->done_own = j + 1;
	}
	for (size_t j = 0; j < nn; j++) {
		k = ask_rewrite(mv, mv->dst, false, nodes[j], err, size);
		if (k < 0)
			return k;
		mv->done_peer = j + 1;
	}
	nn = plan_nodes(mv, ROUTE_FORWARD, nodes);
	for (size_t j = 0; j < nn; j++) {
		/* back home: the address is local there again */
		k = ask_forward(mv, nodes[j], nodes[j] == mv->dst ? NULL : mv->dst, err, size);
		if (k < 0)
			return k;
		mv->done_fwd = j + 1;
	}
	return 0;
}

void routes_back(struct route_move *mv)
{
	const struct sockmig_member *self = sockmig_config_self(mv->d->cfg), *nodes[SOCKMIG_CONFIG_MEMBERS_MAX];
	char err[400];
	size_t nn;

	/* Best effort, in reverse: every node is asked even if one fails. */
	nn = plan_nodes(mv, ROUTE_FORWARD, nodes);
	for (size_t j = 0; j < mv->done_fwd && j < nn; j++)
		if (ask_forward(mv, nodes[j], nodes[j] == self ? NULL : self, err, sizeof(err)) < 0)
			log_kv("warn", "event=route-back-failed node=%s msg=\"%s\"", nodes[j]->name, err);
	nn = plan_nodes(mv, ROUTE_REWRITE, nodes);
	for (size_t j = 0; j < mv->done_peer && j < nn; j++)
		if (ask_rewrite(mv, self, false, nodes[j], err, sizeof(err)) < 0)
			log_kv("warn", "event=route-back-failed node=%s msg=\"%s\"", nodes[j]->name, err);
	for (size_t j = 0; j < mv->done_own && j < nn; j++)
		if (ask_rewrite_gone(mv, mv->dst, nodes[j], err, sizeof(err)) < 0)
			log_kv("warn", "event=route-back-failed node=%s msg=\"%s\"", mv->dst->name, err);
	mv->done_fwd = mv->done_own = mv->done_peer = 0;
}

/* The move went through: what this node held for the flows goes. */
void routes_commit(struct route_move *mv)
{
	char err[400];

	if (!mv->n)
		return;
	pthread_mutex_lock(&mv->d->route_lock);
	if (entries_del(mv->d, SOCKMIG_ROUTE_ACCEPT, mv->flows, mv->n, err, sizeof(err)) < 0 ||
	    entries_del(mv->d, SOCKMIG_ROUTE_REWRITE, mv->flows, mv->n, err, sizeof(err)) < 0)
		log_kv("warn", "event=route-cleanup-failed msg=\"%s\"", err);
	pthread_mutex_unlock(&mv->d->route_lock);
}

void routes_move_free(struct route_move *mv)
{
	free(mv->flows);
	free(mv->plan);
	mv->flows = NULL;
	mv->plan = NULL;
	mv->n = 0;
}

/* ---- the destination's side ---- */

/* Which routed flows need an accept entry here: those whose address is
 * not local, and wildcard ones away from their origin (adopted processes;
 * a job's own address carries its wildcard sockets' traffic). */
int routes_take(struct daemon *d, const struct job *j, const struct sockmig_flow *flows, size_t n,
		struct sockmig_flow **ret, size_t *ret_n, char *err, size_t size)
{
	struct sockmig_flow *acc = calloc(n ? n : 1, sizeof(*acc));
	size_t na = 0;
	int k = 0;

	*ret = NULL;
	*ret_n = 0;
	if (!acc)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct sockmig_flow *f = &flows[i];

		if (is_any(&f->local) ? (j->kind == JOB_RUN || !strcmp(j->origin, d->cfg->node))
				      : addr_is_local(f->local.family, f->local.addr))
			continue;
		acc[na++] = *f;
	}
	pthread_mutex_lock(&d->route_lock);
	if (na && !route_handle(d, err, size))
		k = -ENODEV;
	else if (na && (k = sockmig_route_accept_set(d->route, acc, na)) < 0)
		snprintf(err, size, "cannot accept the flows on node %s: %s", d->cfg->node, sockmig_error());
	pthread_mutex_unlock(&d->route_lock);
	if (k < 0) {
		free(acc);
		return k;
	}
	*ret = acc;
	*ret_n = na;
	return 0;
}

void routes_drop(struct daemon *d, const struct sockmig_flow *flows, size_t n)
{
	char err[400];

	if (!n)
		return;
	pthread_mutex_lock(&d->route_lock);
	if (entries_del(d, SOCKMIG_ROUTE_ACCEPT, flows, n, err, sizeof(err)) < 0 ||
	    entries_del(d, SOCKMIG_ROUTE_REWRITE, flows, n, err, sizeof(err)) < 0)
		log_kv("warn", "event=route-cleanup-failed msg=\"%s\"", err);
	pthread_mutex_unlock(&d->route_lock);
}

/* ---- a moved-in process ended ---- */

struct forget {
	struct route_move mv;
};

static void *forget_thread(void *arg)
{
	struct forget *fg = arg;
	struct route_move *mv = &fg->mv;
	const struct sockmig_member *nodes[SOCKMIG_CONFIG_MEMBERS_MAX];
	char err[400];
	size_t nn;

	/* Its peers point at where its ends were: back at their homes (an
	 * entry that only did that goes); its homes stop forwarding. */
	nn = plan_nodes(mv, ROUTE_REWRITE, nodes);
	for (size_t j = 0; j < nn; j++) {
		char **items = calloc(mv->n, sizeof(*items));
		size_t n = 0;

		if (!items)
			break;
		for (size_t i = 0; i < mv->n; i++) {
			struct sockmig_flow rev = flow_reversed(&mv->flows[i]);

			if (mv->plan[i].kind == ROUTE_REWRITE && mv->plan[i].via == nodes[j])
				items[n++] = item_flow_addrs(&rev, mv->flows[i].local.addr, NULL);
		}
		if (ask(mv->d, nodes[j], "peer", items, n, NULL, err, sizeof(err)) < 0)
			log_kv("warn", "event=route-cleanup-failed node=%s msg=\"%s\"", nodes[j]->name, err);
		items_free(items, n);
	}
	nn = plan_nodes(mv, ROUTE_FORWARD, nodes);
	for (size_t j = 0; j < nn; j++)
		if (ask_forward(mv, nodes[j], NULL, err, sizeof(err)) < 0)
			log_kv("warn", "event=route-cleanup-failed node=%s msg=\"%s\"", nodes[j]->name, err);
	routes_drop(mv->d, mv->flows, mv->n);
	free((void *)mv->origin);
	routes_move_free(mv);
	free(fg);
	return NULL;
}

void routes_forget(struct daemon *d, const struct job *j)
{
	_cleanup_free_ struct sockmig_route_entry *e = NULL;
	struct forget *fg;
	size_t ne = 0;
	pthread_t t;
	char err[400];

	if (!j->n_routed)
		return;
	fg = calloc(1, sizeof(*fg));
	if (!fg)
		return;
	fg->mv.d = d;
	fg->mv.flows = malloc(j->n_routed * sizeof(*fg->mv.flows));
	fg->mv.plan = calloc(j->n_routed, sizeof(*fg->mv.plan));
	fg->mv.origin = fg->mv.flows ? strdup(j->origin) : NULL;
	if (!fg->mv.flows || !fg->mv.plan || !fg->mv.origin)
		goto fail;
	memcpy(fg->mv.flows, j->routed, j->n_routed * sizeof(*fg->mv.flows));
	fg->mv.n = j->n_routed;
	pthread_mutex_lock(&d->route_lock);
	route_entries(d, &e, &ne, err, sizeof(err));
	pthread_mutex_unlock(&d->route_lock);
	for (size_t i = 0; i < fg->mv.n; i++) {
		const struct sockmig_flow *f = &fg->mv.flows[i];
		const struct sockmig_route_entry *x = entry_find(e, ne, SOCKMIG_ROUTE_REWRITE, f);
		struct route_step *s = &fg->mv.plan[i];

		s->kind = x ? ROUTE_REWRITE : ROUTE_FORWARD;
		s->via = x ? member_by_addr(d->cfg, f->remote.family, x->peer_now) : home_of(&fg->mv, f);
		if (!s->via || !strcmp(s->via->name, d->cfg->node))
			s->kind = ROUTE_NONE;
	}
	/* Not in the main loop, which reaps: other nodes may be slow. */
	if (pthread_create(&t, NULL, forget_thread, fg) == 0) {
		pthread_detach(t);
		return;
	}
fail:
	routes_drop(d, j->routed, j->n_routed);
	free((void *)fg->mv.origin);
	routes_move_free(&fg->mv);
	free(fg);
}
