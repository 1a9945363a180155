/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flow routes: rewrite (include/sockmig/route.h, docs/flow-routes.md).
 *
 * One flow end hosted here, in socket terms L:lp <-> R:rp, on the wire
 * O <-> P (own_now, peer_now). A translation that changes an address
 * changes the key of the next one, so each direction is one rule with two
 * lookups, each keyed on what the packet carries at that point:
 *
 *   chain pre (prerouting -350, before the flow locks at -300):
 *     key O.lp.P.rp @rw_is -> R: saddr set;  key O.lp.R.rp @rw_id -> L:
 *     daddr set; mark (deliver locally: L may not be ours); notrack
 *   chain out (route output -250, after the flow locks):
 *     key L.lp.R.rp @rw_os -> O: saddr set;  key O.lp.R.rp @rw_od -> P:
 *     daddr set; notrack
 *
 * A lookup that misses ends the rule: other traffic is untouched. The keys
 * of rw_is, rw_id and rw_od hold O and P, so replacing or deleting a
 * rewrite needs the old ones: they are read back first (rw_os: socket key
 * -> O; rw_od: O key -> P), one dump each per family concerned.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "flow_route.h"
#include "util.h"

enum rw_map { RW_IS, RW_ID, RW_OS, RW_OD, RW_N };
static const char *const rw_name[RW_N] = { "rw_is", "rw_id", "rw_os", "rw_od" };

void sm_route_rw_cmds(FILE *f)
{
	char mark[SM_ROUTE_MARK_STMT_MAX];

	sm_route_mark_stmt(mark, sizeof(mark));
	for (int fam = 4; fam <= 6; fam += 2) {
		const char *at = fam == 4 ? "ipv4_addr" : "ipv6_addr", *ip = fam == 4 ? "ip" : "ip6";

		for (int m = 0; m < RW_N; m++)
			fprintf(f,
				"add map inet " SM_ROUTE_TABLE_RT " %s%d { type inet_proto . %s . inet_service . %s . inet_service : %s; }\n",
				rw_name[m], fam, at, at, at);
		fprintf(f,
			"add rule inet " SM_ROUTE_TABLE_RT " pre"
			" %s saddr set meta l4proto . %s daddr . th dport . %s saddr . th sport map @rw_is%d"
			" %s daddr set meta l4proto . %s daddr . th dport . %s saddr . th sport map @rw_id%d %s notrack\n",
			ip, ip, ip, fam, ip, ip, ip, fam, mark);
		fprintf(f,
			"add rule inet " SM_ROUTE_TABLE_RT " out"
			" %s saddr set meta l4proto . %s saddr . th sport . %s daddr . th dport map @rw_os%d"
			" %s daddr set meta l4proto . %s saddr . th sport . %s daddr . th dport map @rw_od%d notrack\n",
			ip, ip, ip, fam, ip, ip, ip, fam);
	}
}

/* ---- reading the maps back ---- */

struct rw_elem {
	uint8_t key[SM_ROUTE_KEY_MAX];
	uint8_t klen;
	uint8_t data[16];
};

struct rw_table {
	struct rw_elem *v;
	size_t n, cap;
};

static int rw_elem_cmp(const void *a, const void *b)
{
	const struct rw_elem *x = a, *y = b;

	if (x->klen != y->klen)
		return x->klen < y->klen ? -1 : 1;
	return memcmp(x->key, y->key, x->klen);
}

static int rw_collect(const uint8_t *key, size_t klen, const uint8_t *data, size_t dlen, uint64_t packets, void *arg)
{
	struct rw_table *t = arg;
	struct rw_elem *e;

	(void)packets;
	if (klen > SM_ROUTE_KEY_MAX || dlen > 16)
		return -EBADMSG;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct rw_elem *v = realloc(t->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	e = &t->v[t->n++];
	memset(e, 0, sizeof(*e));
	memcpy(e->key, key, klen);
	e->klen = (uint8_t)klen;
	memcpy(e->data, data, dlen);
	return 0;
}

/* A rewrite map, sorted by key. */
static int rw_read(struct sockmig_route *h, enum rw_map m, int v6, struct rw_table *t)
{
	char name[16];
	int r;

	snprintf(name, sizeof(name), "%s%d", rw_name[m], v6 ? 6 : 4);
	r = sm_nft_set_dump(&h->nl, NFPROTO_INET, SM_ROUTE_TABLE_RT, name, rw_collect, t);
	if (r < 0)
		return sm_fail(r, "cannot read nftables map inet " SM_ROUTE_TABLE_RT " %s: %s", name, strerror(-r));
	if (t->n)
		qsort(t->v, t->n, sizeof(*t->v), rw_elem_cmp);
	return 0;
}

static const struct rw_elem *rw_find(const struct rw_table *t, const uint8_t *key, size_t klen)
{
	struct rw_elem k = { .klen = (uint8_t)klen };

	memcpy(k.key, key, klen);
	return t->n ? bsearch(&k, t->v, t->n, sizeof(*t->v), rw_elem_cmp) : NULL;
}

/* rw_os and rw_od of both families ([0] IPv4, [1] IPv6). */
struct rw_state {
	struct rw_table os[2], od[2];
};

static void rw_state_free(struct rw_state *st)
{
	for (int i = 0; i < 2; i++) {
		free(st->os[i].v);
		free(st->od[i].v);
	}
}

/* Reads the families that want[] names. */
static int rw_state_read(struct sockmig_route *h, const bool want[2], struct rw_state *st)
{
	int r = 0;

	memset(st, 0, sizeof(*st));
	for (int v6 = 0; v6 < 2 && r >= 0; v6++) {
		if (!want[v6])
			continue;
		r = rw_read(h, RW_OS, v6, &st->os[v6]);
		if (r >= 0)
			r = rw_read(h, RW_OD, v6, &st->od[v6]);
	}
	return r;
}

/* The rewrite in force for a flow: its own_now (rw_os, by the socket key)
 * and peer_now (rw_od, by the key with own_now). */
static bool rw_current(const struct rw_state *st, const struct sm_route_wflow *w, uint8_t *own, uint8_t *peer)
{
	int v6 = w->family == AF_INET6;
	uint8_t key[SM_ROUTE_KEY_MAX];
	const struct rw_elem *e;

	e = rw_find(&st->os[v6], key, sm_route_key5(key, w->proto, w->alen, w->laddr, w->lport, w->raddr, w->rport));
	if (!e)
		return false;
	memcpy(own, e->data, w->alen);
	e = rw_find(&st->od[v6], key, sm_route_key5(key, w->proto, w->alen, own, w->lport, w->raddr, w->rport));
	if (!e)
		return false;
	memcpy(peer, e->data, w->alen);
	return true;
}

/* The four keys and data of a rewrite. */
struct rw_keys {
	uint8_t key[RW_N][SM_ROUTE_KEY_MAX];
	size_t klen[RW_N];
	const uint8_t *data[RW_N];
};

static void rw_keys_of(const struct sm_route_wflow *w, const uint8_t *own, const uint8_t *peer, struct rw_keys *k)
{
	k->klen[RW_IS] = sm_route_key5(k->key[RW_IS], w->proto, w->alen, own, w->lport, peer, w->rport);
	k->data[RW_IS] = w->raddr;
	k->klen[RW_ID] = sm_route_key5(k->key[RW_ID], w->proto, w->alen, own, w->lport, w->raddr, w->rport);
	k->data[RW_ID] = w->laddr;
	k->klen[RW_OS] = sm_route_key5(k->key[RW_OS], w->proto, w->alen, w->laddr, w->lport, w->raddr, w->rport);
	k->data[RW_OS] = own;
	k->klen[RW_OD] = sm_route_key5(k->key[RW_OD], w->proto, w->alen, own, w->lport, w->raddr, w->rport);
	k->data[RW_OD] = peer;
}

/* ---- set, delete ---- */

/* set: rw[] (flows NULL); delete: flows[] (rw NULL). */
static int rewrite_update(struct sockmig_route *h, const struct sockmig_flow *flows,
			  const struct sockmig_route_rewrite *rw, size_t n)
{
	bool set = rw != NULL, want[2] = { false, false };
	const char *verb = set ? "set the rewrite of" : "delete the rewrite of";
	_cleanup_free_ struct sm_route_wflow *w = NULL;
	_cleanup_free_ uint8_t(*old)[2][16] = NULL;
	_cleanup_free_ uint8_t(*nw)[2][16] = NULL;
	_cleanup_free_ bool *has_old = NULL;
	_cleanup_free_ struct sm_route_owner *own = NULL;
	_cleanup_free_ struct sockmig_flow *fl = NULL;
	struct rw_state st;
	struct sm_nft_batch b;
	struct sm_nft_pos bad = { 0 };
	size_t n_own = 0;
	int r;

	if (!n)
		return 0;
	w = calloc(n, sizeof(*w));
	old = calloc(n, sizeof(*old));
	nw = calloc(n, sizeof(*nw));
	has_old = calloc(n, sizeof(*has_old));
	own = calloc(2 * n * RW_N, sizeof(*own));
	fl = calloc(n, sizeof(*fl));
	if (!w || !old || !nw || !has_old || !own || !fl)
		return sm_fail(-ENOMEM, "cannot allocate the nftables batch for %zu flows", n);
	for (size_t i = 0; i < n; i++) {
		fl[i] = set ? rw[i].flow : flows[i];
		if (sm_route_wflow_of(&fl[i], &w[i]) < 0)
			return sm_route_bad_flow(&fl[i], verb, "not a TCP or UDP flow with addresses of one family");
		if (!fl[i].remote.family)
			return sm_route_bad_flow(&fl[i], verb, "only connected flows are rewritten (no remote address)");
		if (set) {
			memcpy(nw[i][0], sm_route_wire_addr(rw[i].own_now, w[i].family), w[i].alen);
			memcpy(nw[i][1], sm_route_wire_addr(rw[i].peer_now, w[i].family), w[i].alen);
		}
		want[w[i].family == AF_INET6] = true;
	}
	r = rw_state_read(h, want, &st);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		has_old[i] = rw_current(&st, &w[i], old[i][0], old[i][1]);
		if (!set && !has_old[i]) {
			char s[128];

			r = sm_fail(-ENOENT, "cannot %s flow %s in nftables table inet " SM_ROUTE_TABLE_RT ": no such entry",
				    verb, sockmig_flow_str(&fl[i], s, sizeof(s)));
			goto out;
		}
	}

	/* One batch. set: the old entry's keys destroyed (a key the new entry
	 * shares is destroyed, then created again), then the new ones
	 * created; delete: the old entry's keys deleted. A message per map
	 * and family. */
	sm_nft_batch_init(&b, &h->nl);
	for (int pass = 0; pass < (set ? 2 : 1); pass++) {
		for (int v6 = 0; v6 < 2; v6++) {
			for (int m = 0; want[v6] && m < RW_N; m++) {
				char name[16];

				snprintf(name, sizeof(name), "%s%d", rw_name[m], v6 ? 6 : 4);
				if (pass == 1)
					sm_nft_batch_elems(&b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, NFPROTO_INET,
							   SM_ROUTE_TABLE_RT, name);
				else
					sm_nft_batch_elems(&b, set ? SM_NFT_MSG_DESTROYSETELEM : NFT_MSG_DELSETELEM, 0,
							   NFPROTO_INET, SM_ROUTE_TABLE_RT, name);
				for (size_t i = 0; i < n; i++) {
					struct rw_keys k;

					if ((w[i].family == AF_INET6) != v6 || (pass == 0 && !has_old[i]))
						continue;
					own[n_own].flow = i;
					if (pass == 0) {
						rw_keys_of(&w[i], old[i][0], old[i][1], &k);
						sm_nft_batch_elem(&b, k.key[m], k.klen[m], NULL, 0, &own[n_own++].pos);
					} else {
						rw_keys_of(&w[i], nw[i][0], nw[i][1], &k);
						sm_nft_batch_elem(&b, k.key[m], k.klen[m], k.data[m], w[i].alen,
								  &own[n_own++].pos);
					}
				}
			}
		}
	}
	r = sm_nft_batch_commit(&b, &bad);
	sm_nft_batch_free(&b);
	if (r < 0)
		r = sm_route_batch_fail(r, &bad, own, n_own, fl, n, verb, "inet " SM_ROUTE_TABLE_RT);
out:
	rw_state_free(&st);
	return r < 0 ? r : 0;
}

int sockmig_route_rewrite_set(struct sockmig_route *h, const struct sockmig_route_rewrite *rw, size_t n)
{
	if (n && !rw)
		return sm_fail(-EINVAL, "cannot set the rewrite of %zu flows: none given", n);
	return rewrite_update(h, NULL, rw, n);
}

int sockmig_route_rewrite_del(struct sockmig_route *h, const struct sockmig_flow *flows, size_t n)
{
	return rewrite_update(h, flows, NULL, n);
}

int sm_route_rw_list(struct sockmig_route *h, struct sm_route_entries *e)
{
	static const bool both[2] = { true, true };
	struct rw_state st;
	int r = rw_state_read(h, both, &st);

	for (int v6 = 0; v6 < 2 && r >= 0; v6++) {
		for (size_t i = 0; i < st.os[v6].n; i++) {
			const struct rw_elem *os = &st.os[v6].v[i];
			struct sockmig_route_entry *en = sm_route_entry_new(e);
			struct sm_route_wflow w;

			if (!en) {
				r = sm_fail(-ENOMEM, "cannot allocate the list of flow routes");
				break;
			}
			en->kind = SOCKMIG_ROUTE_REWRITE;
			if (sm_route_flow_of_key(v6 ? SM_SH_C6 : SM_SH_C4, os->key, os->klen, &en->flow) < 0 ||
			    sm_route_wflow_of(&en->flow, &w) < 0 || !rw_current(&st, &w, en->own_now, en->peer_now)) {
				r = sm_fail(-EBADMSG, "nftables map inet " SM_ROUTE_TABLE_RT " rw_os%d holds an entry without its other half",
					    v6 ? 6 : 4);
				break;
			}
		}
	}
	rw_state_free(&st);
	return r < 0 ? r : 0;
}
