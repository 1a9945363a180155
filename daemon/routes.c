/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Flows whose address stays behind: modes forward and rewrite
 * (docs/cluster.md, "Modes"). The rules themselves are the library's
 * (include/sockmig/route.h); this file decides which node holds which rule
 * and asks it to.
 *
 * A routed flow is named in socket terms, as the moved socket has it: local
 * = the address it is bound to, which belongs to its home node (the member
 * with that address; for a wildcard socket, the process's origin). Per
 * mode, for a process on host node X:
 *
 *   forward   home:  forward flow -> X          (replaced on every move: no chain)
 *             X:     accept flow (it is not local there)
 *   rewrite   X:     rewrite flow own=X peer=P  (P: the node holding the other end)
 *             P:     rewrite flow' own=.. peer=X (flow' = flow seen from P)
 *
 * Each node's rule tables are its record: a node that hosts a rewritten
 * flow has a rewrite entry for it, which says where the peer end is; a
 * flow it hosts with only an accept entry is forwarded. A flow keeps the
 * mode it got on its first move.
 *
 * Between daemons, one request verb, "route", with a sub-verb and flows as
 * text items (chunked to the request size):
 *
 *   route forward NEXTHOP|- F...     on the home node: set (or delete) forward
 *   route own F,OWN,PEER...          on the host: its own end's rewrite (OWN and
 *                                    PEER equal to F's addresses: delete)
 *   route peer F,PEER...             on the peer's node: F is its end; it keeps
 *                                    its own end's address and points at PEER
 *   route probe F...                 answers one digit per flow: 1 if a socket
 *                                    with that flow (its terms) is here
 *
 * F is "t|u,LOCAL,LPORT,REMOTE,RPORT" (REMOTE "-" and RPORT 0: unconnected).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"
#include "routes.h"
#include "sockmig/route.h"
#include "sockmig/sockmig.h"

#define CHUNK_MAX 3800

size_t alen(int family)
{
	return family == AF_INET ? 4 : 16;
}

bool is_any(const struct sockmig_endpoint *e)
{
	static const uint8_t zero[16];

	return !memcmp(e->addr, zero, alen(e->family));
}

bool same_addr(int family, const uint8_t *a, const uint8_t *b)
{
	return !memcmp(a, b, alen(family));
}

const struct sockmig_member *member_by_addr(const struct sockmig_config *cfg, int family, const uint8_t *addr)
{
	for (size_t i = 0; i < cfg->n_members; i++)
		if (cfg->members[i].family == family && same_addr(family, cfg->members[i].addr, addr))
			return &cfg->members[i];
	return NULL;
}

bool flow_same(const struct sockmig_flow *a, const struct sockmig_flow *b)
{
	return a->proto == b->proto && a->local.family == b->local.family && a->local.port == b->local.port &&
	       same_addr(a->local.family, a->local.addr, b->local.addr) && a->remote.family == b->remote.family &&
	       (!a->remote.family ||
		(a->remote.port == b->remote.port && same_addr(a->remote.family, a->remote.addr, b->remote.addr)));
}

/* The same flow seen from the other end. */
struct sockmig_flow flow_reversed(const struct sockmig_flow *f)
{
	struct sockmig_flow r = *f;

	r.local = f->remote;
	r.remote = f->local;
	return r;
}

const char *flow_text(const struct sockmig_flow *f, char *buf, size_t size)
{
	char l[INET6_ADDRSTRLEN], r[INET6_ADDRSTRLEN] = "-";

	inet_ntop(f->local.family, f->local.addr, l, sizeof(l));
	if (f->remote.family)
		inet_ntop(f->remote.family, f->remote.addr, r, sizeof(r));
	snprintf(buf, size, "%c,%s,%u,%s,%u", f->proto == IPPROTO_TCP ? 't' : 'u', l, f->local.port, r,
		 f->remote.family ? f->remote.port : 0);
	return buf;
}

static bool parse_port(const char *s, uint16_t *ret)
{
	char *end;
	unsigned long v;

	if (!*s)
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > 65535)
		return false;
	*ret = (uint16_t)v;
	return true;
}

static bool parse_addr(const char *s, uint8_t *family, uint8_t *addr)
{
	*family = strchr(s, ':') ? AF_INET6 : AF_INET;
	return inet_pton(*family, s, addr) == 1;
}

/* "t,LOCAL,LPORT,REMOTE,RPORT" then ",ADDR" extras (up to n_extra, each 16
 * bytes, of the flow's family). */
static bool flow_parse(char *s, struct sockmig_flow *f, uint8_t (*extra)[16], size_t n_extra)
{
	char *tok[5 + 2], *save = NULL;
	size_t n = 0;

	memset(f, 0, sizeof(*f));
	for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == 5 + n_extra)
			return false;
		tok[n++] = t;
	}
	if (n != 5 + n_extra || strlen(tok[0]) != 1 || (tok[0][0] != 't' && tok[0][0] != 'u'))
		return false;
	f->proto = tok[0][0] == 't' ? IPPROTO_TCP : IPPROTO_UDP;
	if (!parse_addr(tok[1], &f->local.family, f->local.addr) || !parse_port(tok[2], &f->local.port))
		return false;
	if (strcmp(tok[3], "-")) {
		if (!parse_addr(tok[3], &f->remote.family, f->remote.addr) || !parse_port(tok[4], &f->remote.port) ||
		    f->remote.family != f->local.family)
			return false;
	} else if (strcmp(tok[4], "0")) {
		return false;
	}
	for (size_t i = 0; i < n_extra; i++) {
		uint8_t fam;

		memset(extra[i], 0, 16);
		if (!parse_addr(tok[5 + i], &fam, extra[i]) || fam != f->local.family)
			return false;
	}
	return true;
}

/* ---- this node's rules ---- */

/* The handle, opened on first use; under d->route_lock. */
struct sockmig_route *route_handle(struct daemon *d, char *err, size_t size)
{
	char ifname[IF_NAMESIZE];
	unsigned plen;

	if (d->route)
		return d->route;
	if (cluster_iface(d, ifname, sizeof(ifname), &plen, err, size) < 0)
		return NULL;
	if (sockmig_route_open(ifname, &d->route) < 0) {
		snprintf(err, size, "cannot set up this node's flow routes: %s", sockmig_error());
		d->route = NULL;
	}
	return d->route;
}

/* What this node holds (under d->route_lock); free() it. */
int route_entries(struct daemon *d, struct sockmig_route_entry **ret, size_t *n, char *err, size_t size)
{
	struct sockmig_route *rt = route_handle(d, err, size);

	*ret = NULL;
	*n = 0;
	if (!rt)
		return -ENODEV;
	if (sockmig_route_list(rt, ret, n) < 0) {
		snprintf(err, size, "cannot read this node's flow routes: %s", sockmig_error());
		return -EIO;
	}
	return 0;
}

const struct sockmig_route_entry *entry_find(const struct sockmig_route_entry *e, size_t n,
						    enum sockmig_route_kind kind, const struct sockmig_flow *f)
{
	for (size_t i = 0; i < n; i++)
		if (e[i].kind == kind && flow_same(&e[i].flow, f))
			return &e[i];
	return NULL;
}

/* Delete the entries of kind that exist for these flows (a delete of one
 * that does not exist would fail the whole batch). Under d->route_lock. */
int entries_del(struct daemon *d, enum sockmig_route_kind kind, const struct sockmig_flow *flows, size_t n,
		       char *err, size_t size)
{
	_cleanup_free_ struct sockmig_route_entry *e = NULL;
	_cleanup_free_ struct sockmig_flow *del = calloc(n ? n : 1, sizeof(*del));
	size_t ne = 0, nd = 0;
	int k;

	if (!del)
		return -ENOMEM;
	k = route_entries(d, &e, &ne, err, size);
	if (k < 0)
		return k;
	for (size_t i = 0; i < n; i++)
		if (entry_find(e, ne, kind, &flows[i]))
			del[nd++] = flows[i];
	if (!nd)
		return 0;
	k = kind == SOCKMIG_ROUTE_FORWARD   ? sockmig_route_forward_del(d->route, del, nd)
	    : kind == SOCKMIG_ROUTE_ACCEPT ? sockmig_route_accept_del(d->route, del, nd)
					   : sockmig_route_rewrite_del(d->route, del, nd);
	if (k < 0)
		snprintf(err, size, "cannot remove flow routes on node %s: %s", d->cfg->node, sockmig_error());
	return k;
}

/* Apply one "route SUB items..." request here (from a peer, or our own
 * when we are the node concerned). reply gets "ok ..." content. */
static int route_apply(struct daemon *d, char *args, char *reply, size_t rsize, char *err, size_t size)
{
	_cleanup_free_ struct sockmig_flow *flows = NULL;
	_cleanup_free_ struct sockmig_route_rewrite *rw = NULL;
	_cleanup_free_ struct sockmig_route_entry *e = NULL;
	char *save = NULL, *sub = strtok_r(args, " ", &save), *item;
	uint8_t next_hop[16] = { 0 };
	bool del = false;
	size_t n = 0, cap = 64, ne = 0;
	int k = 0;

	reply[0] = '\0';
	if (!sub) {
		snprintf(err, size, "a route request names what to do");
		return -EINVAL;
	}
	if (!strcmp(sub, "forward")) {
		char *h = strtok_r(NULL, " ", &save);
		uint8_t fam;

		if (!h || (!(del = !strcmp(h, "-")) && !parse_addr(h, &fam, next_hop))) {
			snprintf(err, size, "a malformed route request");
			return -EINVAL;
		}
	} else if (!strcmp(sub, "list")) {
		return -ENOTSUP; /* answered by peer_route with a long reply */
	} else if (strcmp(sub, "own") && strcmp(sub, "peer") && strcmp(sub, "probe")) {
		snprintf(err, size, "'%.20s' is not a route request", sub);
		return -EINVAL;
	}
	flows = calloc(cap, sizeof(*flows));
	rw = calloc(cap, sizeof(*rw));
	if (!flows || !rw)
		return -ENOMEM;
	while ((item = strtok_r(NULL, " ", &save))) {
		uint8_t ex[2][16];
		size_t n_ex = !strcmp(sub, "own") ? 2 : !strcmp(sub, "peer") ? 1 : 0;

		if (n == cap) {
			void *a = realloc(flows, 2 * cap * sizeof(*flows)), *b;

			if (!a)
				return -ENOMEM;
			flows = a;
			b = realloc(rw, 2 * cap * sizeof(*rw));
			if (!b)
				return -ENOMEM;
			rw = b;
			cap *= 2;
		}
		if (!flow_parse(item, &flows[n], ex, n_ex)) {
			snprintf(err, size, "a malformed flow in a route request");
			return -EINVAL;
		}
		rw[n].flow = flows[n];
		if (n_ex == 2) {
			memcpy(rw[n].own_now, ex[0], 16);
			memcpy(rw[n].peer_now, ex[1], 16);
		} else if (n_ex == 1) {
			memcpy(rw[n].peer_now, ex[0], 16);
		}
		n++;
	}
	if (!strcmp(sub, "probe")) {
		for (size_t i = 0; i < n && i + 1 < rsize; i++) {
			reply[i] = flow_is_here(&flows[i]) ? '1' : '0';
			reply[i + 1] = '\0';
		}
		return 0;
	}
	pthread_mutex_lock(&d->route_lock);
	if (!route_handle(d, err, size)) {
		k = -ENODEV;
		goto out;
	}
	if (!strcmp(sub, "forward")) {
		if (del) {
			k = entries_del(d, SOCKMIG_ROUTE_FORWARD, flows, n, err, size);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			if (flows[i].local.family != flows[0].local.family) {
				snprintf(err, size, "a forward request mixes address families");
				k = -EINVAL;
				goto out;
			}
		}
		k = n ? sockmig_route_forward_set(d->route, flows, n, next_hop) : 0;
		if (k < 0)
			snprintf(err, size, "cannot forward the flows on node %s: %s", d->cfg->node, sockmig_error());
		goto out;
	}
	/* own and peer: an entry whose two addresses are those of the
	 * socket is no entry at all. */
	if (!strcmp(sub, "peer")) {
		k = route_entries(d, &e, &ne, err, size);
		if (k < 0)
			goto out;
		for (size_t i = 0; i < n; i++) {
			const struct sockmig_route_entry *x = entry_find(e, ne, SOCKMIG_ROUTE_REWRITE, &flows[i]);

			memcpy(rw[i].own_now, x ? x->own_now : flows[i].local.addr, 16);
		}
	}
	{
		_cleanup_free_ struct sockmig_flow *gone = calloc(n ? n : 1, sizeof(*gone));
		size_t ng = 0, ns = 0;
		int fam;

		if (!gone) {
			k = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			fam = flows[i].local.family;
			if (!flows[i].remote.family) {
				snprintf(err, size, "only a connected flow can be rewritten");
				k = -EINVAL;
				goto out;
			}
			if (same_addr(fam, rw[i].own_now, flows[i].local.addr) &&
			    same_addr(fam, rw[i].peer_now, flows[i].remote.addr))
				gone[ng++] = flows[i];
			else
				rw[ns++] = rw[i];
		}
		k = entries_del(d, SOCKMIG_ROUTE_REWRITE, gone, ng, err, size);
		if (k >= 0 && ns) {
			k = sockmig_route_rewrite_set(d->route, rw, ns);
			if (k < 0)
				snprintf(err, size, "cannot rewrite the flows on node %s: %s", d->cfg->node,
					 sockmig_error());
		}
	}
out:
	pthread_mutex_unlock(&d->route_lock);
	return k;
}

int peer_route(struct peer_req *r)
{
	char reply[PEER_REPLY_ROUTE_MAX];
	int k;

	if (!strcmp(r->args, "list")) {
		char *text = NULL;
		size_t len = 0;

		k = routes_lines(r->d, &text, &len, r->error, sizeof(r->error));
		if (k < 0)
			return k;
		k = peer_reply_raw(r, text, len);
		free(text);
		return k < 0 ? -EIO : 0;
	}
	k = route_apply(r->d, r->args, reply, sizeof(reply), r->error, sizeof(r->error));

	if (k < 0)
		return k;
	return peer_reply(r, "ok %s", reply) < 0 ? -EIO : 0;
}

/* ---- asking the nodes ---- */

/* Send "route HEAD item..." to member m (ourselves: applied here), in
 * chunks; probe answers are concatenated into probe (one digit an item). */
int ask(struct daemon *d, const struct sockmig_member *m, const char *head, char **items, size_t n,
	       char *probe, char *err, size_t size)
{
	bool self = !strcmp(m->name, d->cfg->node);
	struct peer_link l;
	size_t i = 0, got = 0;
	int k = 0;

	if (!n)
		return 0;
	if (!self) {
		k = peer_open(d, m, d->cfg->timeout_ms, &l, err, size);
		if (k < 0)
			return k;
	}
	while (i < n && k >= 0) {
		char req[CHUNK_MAX + ITEM_MAX + 64], reply[PEER_REPLY_ROUTE_MAX + 8];
		size_t len = (size_t)snprintf(req, sizeof(req), "route %s", head);

		while (i < n && len + strlen(items[i]) + 1 < CHUNK_MAX) {
			len += (size_t)snprintf(req + len, sizeof(req) - len, " %s", items[i]);
			i++;
		}
		if (self) {
			k = route_apply(d, req + 6, reply, sizeof(reply), err, size);
		} else {
			k = peer_request(&l, req, reply, sizeof(reply));
			if (k < 0)
				snprintf(err, size, "node %s: %s", m->name, reply);
		}
		if (k >= 0 && probe) {
			size_t add = strspn(reply, "01");

			memcpy(probe + got, reply, add);
			got += add;
		}
	}
	if (!self)
		peer_close(d, &l);
	return k;
}

char *item_flow(const struct sockmig_flow *f)
{
	char *s = malloc(ITEM_MAX);

	if (s)
		flow_text(f, s, ITEM_MAX);
	return s;
}

char *item_flow_addrs(const struct sockmig_flow *f, const uint8_t *a, const uint8_t *b)
{
	char *s = item_flow(f), x[INET6_ADDRSTRLEN], y[INET6_ADDRSTRLEN];
	size_t len;

	if (!s)
		return NULL;
	len = strlen(s);
	inet_ntop(f->local.family, a, x, sizeof(x));
	if (b) {
		inet_ntop(f->local.family, b, y, sizeof(y));
		snprintf(s + len, ITEM_MAX - len, ",%s,%s", x, y);
	} else {
		snprintf(s + len, ITEM_MAX - len, ",%s", x);
	}
	return s;
}

void items_free(char **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/* ---- a socket with this flow here? (route probe) ---- */

/* /proc/net/{tcp,udp}{,6}: "sl local:port rem:port st ..." in hex, the
 * address as the kernel's 32-bit words in host order. */
static bool hex_addr(const char *s, size_t len, uint8_t *out)
{
	for (size_t w = 0; w < len / 8; w++) {
		char buf[9];
		uint32_t v;

		memcpy(buf, s + 8 * w, 8);
		buf[8] = '\0';
		v = (uint32_t)strtoul(buf, NULL, 16);
		memcpy(out + 4 * w, &v, 4);
	}
	return true;
}

bool flow_is_here(const struct sockmig_flow *f)
{
	char path[32], line[512];
	bool found = false;
	FILE *fp;
	size_t hex = f->local.family == AF_INET ? 8 : 32;

	snprintf(path, sizeof(path), "/proc/net/%s%s", f->proto == IPPROTO_TCP ? "tcp" : "udp",
		 f->local.family == AF_INET ? "" : "6");
	fp = fopen(path, "re");
	if (!fp)
		return false;
	while (!found && fgets(line, sizeof(line), fp)) {
		char la[40], ra[40];
		unsigned lp, rp;
		uint8_t l[16] = { 0 }, rm[16] = { 0 };

		if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x", la, &lp, ra, &rp) != 4 ||
		    strlen(la) != hex || strlen(ra) != hex)
			continue;
		hex_addr(la, hex, l);
		hex_addr(ra, hex, rm);
		found = lp == f->local.port && rp == (f->remote.family ? f->remote.port : 0) &&
			same_addr(f->local.family, l, f->local.addr) &&
			(!f->remote.family || same_addr(f->local.family, rm, f->remote.addr));
	}
	fclose(fp);
	return found;
}

/* ---- sockmig flows ---- */

static const char *kind_name(enum sockmig_route_kind k)
{
	return k == SOCKMIG_ROUTE_FORWARD ? "forward" : k == SOCKMIG_ROUTE_ACCEPT ? "accept" : "rewrite";
}

static void ep_text(const struct sockmig_endpoint *e, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (!e->family) {
		snprintf(buf, size, "-");
		return;
	}
	inet_ntop(e->family, e->addr, a, sizeof(a));
	snprintf(buf, size, e->family == AF_INET6 ? "[%s]:%u" : "%s:%u", a, e->port);
}

/* "ok N" and one "flow ..." line per entry of this node (the peer
 * request "route list"; the control request "flows"). */
int routes_lines(struct daemon *d, char **ret, size_t *ret_len, char *err, size_t size)
{
	_cleanup_free_ struct sockmig_route_entry *e = NULL;
	size_t ne = 0, cap, len = 0;
	char *out;
	int k;

	pthread_mutex_lock(&d->route_lock);
	k = route_entries(d, &e, &ne, err, size);
	pthread_mutex_unlock(&d->route_lock);
	if (k < 0)
		return k;
	cap = 64 + ne * 400;
	out = malloc(cap);
	if (!out)
		return -ENOMEM;
	len += (size_t)snprintf(out, cap, "ok %zu\n", ne);
	for (size_t i = 0; i < ne && len < cap; i++) {
		char l[64], rm[64], a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], c[INET6_ADDRSTRLEN], job[80] = "-";
		int fam = e[i].flow.local.family;

		ep_text(&e[i].flow.local, l, sizeof(l));
		ep_text(&e[i].flow.remote, rm, sizeof(rm));
		inet_ntop(fam, e[i].next_hop, a, sizeof(a));
		inet_ntop(fam, e[i].own_now, b, sizeof(b));
		inet_ntop(fam, e[i].peer_now, c, sizeof(c));
		pthread_mutex_lock(&d->jobs_lock);
		for (struct job *j = d->jobs; j; j = j->next)
			for (size_t x = 0; x < j->n_routed; x++)
				if (flow_same(&j->routed[x], &e[i].flow))
					snprintf(job, sizeof(job), "%s pid=%d", j->name[0] ? j->name : "-", (int)j->pid);
		pthread_mutex_unlock(&d->jobs_lock);
		if (!strcmp(job, "-"))
			snprintf(job, sizeof(job), "- pid=0");
		len += (size_t)snprintf(out + len, cap - len,
					"flow node=%s kind=%s proto=%s local=%s remote=%s next_hop=%s own_now=%s "
					"peer_now=%s packets=%llu job=%s\n",
					d->cfg->node, kind_name(e[i].kind), e[i].flow.proto == IPPROTO_TCP ? "tcp" : "udp",
					l, rm, e[i].kind == SOCKMIG_ROUTE_FORWARD ? a : "-",
					e[i].kind == SOCKMIG_ROUTE_REWRITE ? b : "-",
					e[i].kind == SOCKMIG_ROUTE_REWRITE ? c : "-", (unsigned long long)e[i].packets, job);
	}
	if (len >= cap)
		len = cap - 1;
	*ret = out;
	*ret_len = len;
	return 0;
}

/* Control request "flows [all]". */
int ctl_flows(struct ctl_req *r)
{
	struct daemon *d = r->d;
	bool all = r->argc > 1 && !strcmp(r->argv[1], "all");
	char *text = NULL, *line, *save = NULL;
	size_t len;
	int k;

	if (r->argc > 1 && !all)
		return ctl_fail(r, -EINVAL, "usage: flows [all]");
	k = routes_lines(d, &text, &len, r->error, sizeof(r->error));
	if (k < 0)
		return k;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		if (!strncmp(line, "flow ", 5))
			ctl_send(r, "%s", line);
	free(text);
	for (size_t i = 0; all && i < d->cfg->n_members; i++) {
		const struct sockmig_member *m = &d->cfg->members[i];
		char err[400];
		struct peer_link l;
		char *ans = NULL;

		if (!strcmp(m->name, d->cfg->node))
			continue;
		k = peer_open(d, m, DAEMON_PING_TIMEOUT_MS, &l, err, sizeof(err));
		if (k >= 0) {
			k = peer_request_long(&l, "route list", &ans, err, sizeof(err));
			peer_close(d, &l);
		}
		if (k < 0 || !ans) {
			char q[440];

			ctl_send(r, "node name=%s state=down error=%s", m->name, kv_quote(err, q, sizeof(q)));
			continue;
		}
		for (line = strtok_r(ans, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			if (!strncmp(line, "flow ", 5))
				ctl_send(r, "%s", line);
		free(ans);
	}
	return 0;
}

