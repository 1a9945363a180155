/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flow routes (include/sockmig/route.h, docs/flow-routes.md): forward,
 * accept and rewrite, as nftables maps and sets whose elements are the
 * flows, plus a policy rule and local routes for the mark.
 *
 *   table netdev sockmig_fwd       forward (home node)
 *     maps fwd_{c,l,p}{4,6}: flow key (inbound order) -> next hop address
 *     chain in_<ifname>: ingress of ifname, "fwd ip to <key> map @fwd_c4
 *       device ifname": the neighbour table gives the next hop's MAC and the
 *       frame leaves with the interface's own source MAC, so the bridge
 *       never learns the peer's MAC on our port (an L2 "fwd to dev" would
 *       keep the peer's)
 *
 *   table inet sockmig_route       accept and rewrite (host and peer nodes)
 *     sets acc_{c,l,p}{4,6}: flow key (inbound order)
 *     maps rw_{is,id,os,od}{4,6}: rewrite (lib/flow_route_rw.c)
 *     chain pre: prerouting -350, inbound rewrite, then marks
 *     chain out: route output -250, outbound rewrite (type route: the
 *       kernel routes the packet again when its addresses changed)
 *
 * No per-element counters: each is a per-CPU allocation, and with them a
 * set call took 2 to 4 times as long (list reports 0 packets).
 *
 * Elements are sent as one netlink batch with libmnl (lib/nft_batch.c);
 * replacing is DESTROYSETELEM (no error when missing, Linux 6.3) then
 * NEWSETELEM of the same key in the same batch. Tables, chains and rules
 * are made once with libnftables text.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nftables/libnftables.h>

#include "flow.h"
#include "flow_route.h"
#include "nft_batch.h"
#include "rtnl.h"
#include "sockmig/route.h"
#include "util.h"

#define TABLE_FWD SM_ROUTE_TABLE_FWD
#define TABLE_RT SM_ROUTE_TABLE_RT
#define KEY_MAX SM_ROUTE_KEY_MAX

/* Inbound rewrite before the flow locks (-300), outbound after them. */
#define PRIO_PRE (-350)
#define PRIO_OUT (-250)
/* Netdev ingress runs before every inet hook anyway. */
#define PRIO_FWD (-300)

/* Key shapes of forward and accept. */
static const char *const shape_suffix[SM_SH_N] = { "c4", "c6", "l4", "l6", "p4", "p6" };
static const char *const shape_type[SM_SH_N] = {
	"inet_proto . ipv4_addr . inet_service . ipv4_addr . inet_service",
	"inet_proto . ipv6_addr . inet_service . ipv6_addr . inet_service",
	"inet_proto . ipv4_addr . inet_service",
	"inet_proto . ipv6_addr . inet_service",
	"inet_proto . inet_service",
	"inet_proto . inet_service",
};
/* The key as read from an inbound packet; the p shapes with their family. */
static const char *const shape_key[SM_SH_N] = {
	"meta l4proto . ip daddr . th dport . ip saddr . th sport",
	"meta l4proto . ip6 daddr . th dport . ip6 saddr . th sport",
	"meta l4proto . ip daddr . th dport",
	"meta l4proto . ip6 daddr . th dport",
	"meta nfproto ipv4 meta l4proto . th dport",
	"meta nfproto ipv6 meta l4proto . th dport",
};
static const char *const netdev_key[SM_SH_N] = {
	"meta protocol ip fwd ip to meta l4proto . ip daddr . th dport . ip saddr . th sport",
	"meta protocol ip6 fwd ip6 to meta l4proto . ip6 daddr . th dport . ip6 saddr . th sport",
	"meta protocol ip fwd ip to meta l4proto . ip daddr . th dport",
	"meta protocol ip6 fwd ip6 to meta l4proto . ip6 daddr . th dport",
	"meta protocol ip fwd ip to meta l4proto . th dport",
	"meta protocol ip6 fwd ip6 to meta l4proto . th dport",
};

/* ---- keys ---- */

static const uint8_t v4mapped_prefix[12] = { [10] = 0xff, [11] = 0xff };

/* An address of struct sockmig_endpoint's layout as the wire carries it. */
const uint8_t *sm_route_wire_addr(const uint8_t *a16, int wire_family)
{
	if (wire_family == AF_INET && !memcmp(a16, v4mapped_prefix, 12))
		return a16 + 12;
	return a16;
}

int sm_route_wflow_of(const struct sockmig_flow *f, struct sm_route_wflow *w)
{
	int lf = sm_flow_family(&f->local);

	memset(w, 0, sizeof(*w));
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return -EINVAL;
	if (lf != AF_INET && lf != AF_INET6)
		return -EINVAL;
	w->family = lf;
	w->alen = lf == AF_INET ? 4 : 16;
	w->proto = f->proto;
	memcpy(w->laddr, f->local.family == AF_INET6 ? sm_route_wire_addr(f->local.addr, lf) : f->local.addr, w->alen);
	w->lport = htons(f->local.port);
	if (f->remote.family) {
		if (sm_flow_family(&f->remote) != lf)
			return -EINVAL;
		memcpy(w->raddr, f->remote.family == AF_INET6 ? sm_route_wire_addr(f->remote.addr, lf) : f->remote.addr,
		       w->alen);
		w->rport = htons(f->remote.port);
		w->shape = lf == AF_INET ? SM_SH_C4 : SM_SH_C6;
	} else if (sm_addr_is_any(&f->local)) {
		w->shape = lf == AF_INET ? SM_SH_P4 : SM_SH_P6;
	} else {
		w->shape = lf == AF_INET ? SM_SH_L4 : SM_SH_L6;
	}
	return 0;
}

size_t sm_route_key5(uint8_t *key, uint8_t proto, size_t alen, const uint8_t *a1, uint16_t p1, const uint8_t *a2,
		   uint16_t p2)
{
	size_t len = sm_nft_key_put(key, 0, &proto, 1);

	if (a1)
		len = sm_nft_key_put(key, len, a1, alen);
	len = sm_nft_key_put(key, len, &p1, 2);
	if (a2) {
		len = sm_nft_key_put(key, len, a2, alen);
		len = sm_nft_key_put(key, len, &p2, 2);
	}
	return len;
}

/* The forward / accept key of a flow: its inbound packets' fields. */
static size_t shape_key_of(const struct sm_route_wflow *w, uint8_t *key)
{
	switch (w->shape) {
	case SM_SH_C4:
	case SM_SH_C6:
		return sm_route_key5(key, w->proto, w->alen, w->laddr, w->lport, w->raddr, w->rport);
	case SM_SH_L4:
	case SM_SH_L6:
		return sm_route_key5(key, w->proto, w->alen, w->laddr, w->lport, NULL, 0);
	default:
		return sm_route_key5(key, w->proto, w->alen, NULL, w->lport, NULL, 0);
	}
}

int sm_route_flow_of_key(enum sm_route_shape sh, const uint8_t *key, size_t klen, struct sockmig_flow *f)
{
	int fam = sh == SM_SH_C4 || sh == SM_SH_L4 || sh == SM_SH_P4 ? AF_INET : AF_INET6;
	size_t alen = fam == AF_INET ? 4 : 16, want, off = 4;
	uint16_t port;

	want = sh == SM_SH_C4 || sh == SM_SH_C6 ? 4 + 2 * (((alen + 3) & ~3u) + 4)
	       : sh == SM_SH_L4 || sh == SM_SH_L6 ? 4 + alen + 4
					    : 8;
	if (klen != want)
		return -EBADMSG;
	memset(f, 0, sizeof(*f));
	f->proto = key[0];
	f->local.family = (uint8_t)fam;
	if (sh != SM_SH_P4 && sh != SM_SH_P6) {
		memcpy(f->local.addr, key + off, alen);
		off += alen;
	}
	memcpy(&port, key + off, 2);
	f->local.port = ntohs(port);
	off += 4;
	if (sh == SM_SH_C4 || sh == SM_SH_C6) {
		f->remote.family = (uint8_t)fam;
		memcpy(f->remote.addr, key + off, alen);
		off += alen;
		memcpy(&port, key + off, 2);
		f->remote.port = ntohs(port);
	}
	return 0;
}

/* ---- the kernel objects ---- */

/* libnftables reports errors as text only: the first line is the sentence. */
static int nft_text_run(const char *cmds, const char *what)
{
	struct nft_ctx *nft = nft_ctx_new(NFT_CTX_DEFAULT);
	const char *msg;
	int r = 0, len;

	if (!nft)
		return sm_fail(-ENOMEM, "cannot create an nftables context");
	/* The library never prints: keep libnftables' messages in memory. */
	nft_ctx_buffer_output(nft);
	nft_ctx_buffer_error(nft);
	if (nft_run_cmd_from_buffer(nft, cmds) != 0) {
		msg = nft_ctx_get_error_buffer(nft);
		if (!msg)
			msg = "";
		while (!strncmp(msg, "Error: ", 7) || *msg == '\n')
			msg += *msg == '\n' ? 1 : 7;
		len = (int)strcspn(msg, "\n");
		r = sm_fail(strstr(msg, "No such device")			? -ENODEV
			    : strstr(msg, "Operation not permitted")	? -EPERM
			    : strstr(msg, "Protocol not supported")		? -EPROTONOSUPPORT
									: -EIO,
			    "cannot %s: %.*s", what, len, msg);
	}
	nft_ctx_free(nft);
	return r;
}

const char *sm_route_mark_stmt(char *buf, size_t size)
{
	snprintf(buf, size, "meta mark set meta mark and 0x%08x or 0x%08x", ~SOCKMIG_ROUTE_MARK_MASK,
		 SOCKMIG_ROUTE_MARK);
	return buf;
}

static char *inet_table_cmds(void)
{
	char *cmds = NULL, mark[SM_ROUTE_MARK_STMT_MAX];
	size_t len = 0;
	FILE *f = open_memstream(&cmds, &len);

	if (!f)
		return NULL;
	sm_route_mark_stmt(mark, sizeof(mark));
	fprintf(f, "add table inet " TABLE_RT "\n");
	for (int s = 0; s < SM_SH_N; s++)
		fprintf(f, "add set inet " TABLE_RT " acc_%s { type %s; }\n", shape_suffix[s], shape_type[s]);
	fprintf(f, "add chain inet " TABLE_RT " pre { type filter hook prerouting priority %d; policy accept; }\n",
		PRIO_PRE);
	fprintf(f, "add chain inet " TABLE_RT " out { type route hook output priority %d; policy accept; }\n",
		PRIO_OUT);
	fprintf(f, "flush chain inet " TABLE_RT " pre\nflush chain inet " TABLE_RT " out\n");
	/* Rewrite first: the accept sets then see socket terms too. */
	sm_route_rw_cmds(f);
	for (int s = 0; s < SM_SH_N; s++)
		fprintf(f, "add rule inet " TABLE_RT " pre %s @acc_%s %s\n", shape_key[s], shape_suffix[s], mark);
	if (fclose(f) != 0) {
		free(cmds);
		return NULL;
	}
	return cmds;
}

/* A chain name of our own for an interface name (which may hold '.', '-'
 * and such that nft's grammar does not take in an identifier). */
static void fwd_chain_name(const char *ifname, char *buf, size_t size)
{
	size_t i;

	snprintf(buf, size, "in_%s", ifname);
	for (i = 3; buf[i]; i++)
		if (!((buf[i] >= 'a' && buf[i] <= 'z') || (buf[i] >= 'A' && buf[i] <= 'Z') ||
		      (buf[i] >= '0' && buf[i] <= '9')))
			buf[i] = '_';
}

static char *netdev_table_cmds(const char *ifname)
{
	char *cmds = NULL, chain[IF_NAMESIZE + 8];
	size_t len = 0;
	FILE *f = open_memstream(&cmds, &len);

	if (!f)
		return NULL;
	fwd_chain_name(ifname, chain, sizeof(chain));
	fprintf(f, "add table netdev " TABLE_FWD "\n");
	for (int s = 0; s < SM_SH_N; s++)
		fprintf(f, "add map netdev " TABLE_FWD " fwd_%s { type %s : %s; }\n", shape_suffix[s],
			shape_type[s], s % 2 ? "ipv6_addr" : "ipv4_addr");
	fprintf(f,
		"add chain netdev " TABLE_FWD " %s { type filter hook ingress device \"%s\" priority %d; policy accept; }\n",
		chain, ifname, PRIO_FWD);
	fprintf(f, "flush chain netdev " TABLE_FWD " %s\n", chain);
	for (int s = 0; s < SM_SH_N; s++)
		fprintf(f, "add rule netdev " TABLE_FWD " %s %s map @fwd_%s device \"%s\"\n", chain, netdev_key[s],
			shape_suffix[s], ifname);
	if (fclose(f) != 0) {
		free(cmds);
		return NULL;
	}
	return cmds;
}

static const struct sm_rtnl_rule route_rule[2] = {
	{ .family = AF_INET, .priority = SOCKMIG_ROUTE_RULE_PRIORITY, .fwmark = SOCKMIG_ROUTE_MARK,
	  .fwmask = SOCKMIG_ROUTE_MARK_MASK, .table = SOCKMIG_ROUTE_TABLE },
	{ .family = AF_INET6, .priority = SOCKMIG_ROUTE_RULE_PRIORITY, .fwmark = SOCKMIG_ROUTE_MARK,
	  .fwmask = SOCKMIG_ROUTE_MARK_MASK, .table = SOCKMIG_ROUTE_TABLE },
};

static struct sm_rtnl_route local_route(int family, int lo)
{
	struct sm_rtnl_route rt = { .family = family, .type = RTN_LOCAL, .table = SOCKMIG_ROUTE_TABLE, .oif = lo };

	return rt;
}

/* The mark's rules and local routes. A node without IPv6 keeps IPv4. */
static int routing_setup(void)
{
	struct sm_rtnl *rt;
	int r, lo;

	r = sm_rtnl_open(&rt);
	if (r < 0)
		return r;
	lo = sm_rtnl_link_index(rt, "lo");
	if (lo < 0) {
		r = lo;
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		struct sm_rtnl_route lr = local_route(route_rule[i].family, lo);

		r = sm_rtnl_route_replace(rt, &lr);
		if (r == -EAFNOSUPPORT && i == 1) {
			r = 0;
			break;
		}
		if (r < 0)
			goto out;
		r = sm_rtnl_rule_add(rt, &route_rule[i]);
		if (r == -EEXIST)
			r = 0;
		if (r < 0)
			goto out;
	}
out:
	sm_rtnl_close(rt);
	return r;
}

int sockmig_route_open(const char *ifname, struct sockmig_route **ret)
{
	struct sockmig_route *h;
	char chain[IF_NAMESIZE + 8];
	int r, have_pre, have_out, have_fwd;

	if (!ifname || !*ifname || strlen(ifname) >= IF_NAMESIZE)
		return sm_fail(-EINVAL, "cannot open flow routes: '%s' is not an interface name", ifname ? ifname : "");
	if (!if_nametoindex(ifname))
		return sm_fail(-ENODEV, "cannot open flow routes on interface '%s': no such interface", ifname);
	h = calloc(1, sizeof(*h));
	if (!h)
		return sm_fail(-ENOMEM, "cannot allocate a flow routes handle");
	snprintf(h->ifname, sizeof(h->ifname), "%s", ifname);
	r = sm_nft_open(&h->nl);
	if (r < 0) {
		r = sm_fail(r, "cannot open a netfilter netlink socket for flow routes: %s", strerror(-r));
		goto out_free;
	}
	/* Made once; later handles find them. The text batches flush and
	 * refill the chains, so two handles made at once leave one copy. */
	fwd_chain_name(ifname, chain, sizeof(chain));
	have_pre = sm_nft_chain_exists(&h->nl, NFPROTO_INET, TABLE_RT, "pre");
	have_out = sm_nft_chain_exists(&h->nl, NFPROTO_INET, TABLE_RT, "out");
	have_fwd = sm_nft_chain_exists(&h->nl, NFPROTO_NETDEV, TABLE_FWD, chain);
	if (have_pre < 0 || have_out < 0 || have_fwd < 0) {
		r = have_pre < 0 ? have_pre : have_out < 0 ? have_out : have_fwd;
		r = sm_fail(r, "cannot read the nftables tables of flow routes: %s", strerror(-r));
		goto out_close;
	}
	if (!have_pre || !have_out) {
		char *cmds = inet_table_cmds();

		if (!cmds) {
			r = sm_fail(-ENOMEM, "cannot build the nftables commands of flow routes");
			goto out_close;
		}
		r = nft_text_run(cmds, "create nftables table inet " TABLE_RT);
		free(cmds);
		if (r < 0)
			goto out_close;
	}
	if (!have_fwd) {
		char *cmds = netdev_table_cmds(ifname);

		if (!cmds) {
			r = sm_fail(-ENOMEM, "cannot build the nftables commands of flow routes");
			goto out_close;
		}
		r = nft_text_run(cmds, "create the forward chain of nftables table netdev " TABLE_FWD);
		free(cmds);
		if (r < 0)
			goto out_close;
	}
	r = routing_setup();
	if (r < 0)
		goto out_close;
	*ret = h;
	return 0;

out_close:
	sm_nft_close(&h->nl);
out_free:
	free(h);
	return r;
}

void sockmig_route_free(struct sockmig_route *h)
{
	if (!h)
		return;
	sm_nft_close(&h->nl);
	free(h);
}

#define SM_NFT_MSG_DESTROYTABLE 26

int sockmig_route_flush(void)
{
	struct sm_nft nl;
	struct sm_rtnl *rt;
	uint8_t buf[1024];
	uint32_t seq0, n_msgs = 0, bad_seq, offs;
	size_t len;
	int r, lo;

	r = sm_nft_open(&nl);
	if (r < 0)
		return sm_fail(r, "cannot open a netfilter netlink socket to flush flow routes: %s", strerror(-r));
	/* One batch; DESTROYTABLE (Linux 6.3) is no error for a table that is
	 * not there, and takes the table's chains, sets and elements along. */
	seq0 = nl.seq;
	len = sm_nft_batch_begin(buf, seq0);
	for (int t = 0; t < 2; t++) {
		struct nlmsghdr *nlh = sm_nft_msg_put(buf + len, (NFNL_SUBSYS_NFTABLES << 8) | SM_NFT_MSG_DESTROYTABLE,
						      NLM_F_ACK, seq0 + ++n_msgs, t ? NFPROTO_NETDEV : NFPROTO_INET, 0);
		mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, t ? TABLE_FWD : TABLE_RT);
		len += nlh->nlmsg_len;
	}
	len += sm_nft_batch_end(buf + len, seq0 + n_msgs + 1);
	nl.seq += n_msgs + 2;
	r = sm_nft_batch_send(&nl, buf, len, seq0, n_msgs, &bad_seq, &offs);
	sm_nft_close(&nl);
	if (r < 0)
		return sm_fail(r, "cannot delete nftables tables inet " TABLE_RT " and netdev " TABLE_FWD ": %s",
			       strerror(-r));

	r = sm_rtnl_open(&rt);
	if (r < 0)
		return r;
	lo = sm_rtnl_link_index(rt, "lo");
	for (int i = 0; i < 2 && r >= 0; i++) {
		struct sm_rtnl_route lr = local_route(route_rule[i].family, lo > 0 ? lo : 0);

		/* Rules may have been added twice by hand: delete until none
		 * is left (bounded). */
		for (int k = 0; k < 64; k++) {
			r = sm_rtnl_rule_del(rt, &route_rule[i]);
			if (r < 0)
				break;
		}
		if (r == -ENOENT || r == -EAFNOSUPPORT)
			r = 0;
		if (r < 0)
			break;
		r = sm_rtnl_route_del(rt, &lr);
		if (r == -ESRCH || r == -ENOENT || r == -EAFNOSUPPORT)
			r = 0;
	}
	sm_rtnl_close(rt);
	return r < 0 ? r : 0;
}

/* ---- errors ---- */

int sm_route_batch_fail(int r, const struct sm_nft_pos *bad, const struct sm_route_owner *own, size_t n_own,
			const struct sockmig_flow *flows, size_t n, const char *verb, const char *table)
{
	char s[128];

	if (r == -ENOMEM)
		return sm_fail(r, "cannot allocate the nftables batch for %zu flows", n);
	for (size_t i = 0; i < n_own; i++)
		if (bad->off && own[i].pos.seq == bad->seq && own[i].pos.off == bad->off)
			return sm_fail(r, "cannot %s flow %s in nftables table %s: %s", verb,
				       sockmig_flow_str(&flows[own[i].flow], s, sizeof(s)), table,
				       r == -ENOENT ? "no such entry" : strerror(-r));
	if (n == 1)
		return sm_fail(r, "cannot %s flow %s in nftables table %s: %s", verb,
			       sockmig_flow_str(&flows[0], s, sizeof(s)), table, strerror(-r));
	return sm_fail(r, "cannot %s %zu flows in nftables table %s: %s", verb, n, table, strerror(-r));
}

int sm_route_bad_flow(const struct sockmig_flow *f, const char *verb, const char *why)
{
	char s[128];

	return sm_fail(-EINVAL, "cannot %s flow %s: %s", verb, sockmig_flow_str(f, s, sizeof(s)), why);
}

/* ---- forward and accept ---- */

/* Set (replace) or delete the flows' elements in the shape sets of table:
 * "fwd_" maps with next_hop as data, or "acc_" sets. */
static int shaped_update(struct sockmig_route *h, const struct sockmig_flow *flows, size_t n, bool set,
			 const uint8_t *next_hop, bool fwd)
{
	const char *verb = fwd ? (set ? "set the forward of" : "delete the forward of")
			       : (set ? "set the accept of" : "delete the accept of");
	const char *table = fwd ? "netdev " TABLE_FWD : "inet " TABLE_RT;
	uint8_t family = fwd ? NFPROTO_NETDEV : NFPROTO_INET;
	_cleanup_free_ struct sm_route_wflow *w = NULL;
	_cleanup_free_ struct sm_route_owner *own = NULL;
	struct sm_nft_batch b;
	struct sm_nft_pos bad = { 0 };
	uint8_t key[KEY_MAX], nh[16];
	size_t n_own = 0, nh_len = 0;
	int nh_family = 0, r;

	if (!n)
		return 0;
	w = calloc(n, sizeof(*w));
	own = calloc(n, sizeof(*own));
	if (!w || !own)
		return sm_fail(-ENOMEM, "cannot allocate the nftables batch for %zu flows", n);
	for (size_t i = 0; i < n; i++) {
		if (sm_route_wflow_of(&flows[i], &w[i]) < 0)
			return sm_route_bad_flow(&flows[i], verb, "not a TCP or UDP flow with addresses of one family");
		if (fwd && set) {
			/* The next hop is read at the flows' declared size. */
			int fam = flows[i].local.family;
			const uint8_t *a;

			if (i == 0) {
				uint8_t a16[16] = { 0 };

				memcpy(a16, next_hop, fam == AF_INET ? 4 : 16);
				nh_family = fam == AF_INET6 && memcmp(a16, v4mapped_prefix, 12) ? AF_INET6 : AF_INET;
				a = fam == AF_INET6 && nh_family == AF_INET ? next_hop + 12 : next_hop;
				nh_len = nh_family == AF_INET ? 4 : 16;
				memcpy(nh, a, nh_len);
			}
			if (w[i].family != nh_family)
				return sm_route_bad_flow(&flows[i], verb, "the next hop is of another address family");
		}
	}

	sm_nft_batch_init(&b, &h->nl);
	for (int pass = set && fwd ? 0 : 1; pass < 2; pass++) {
		for (int s = 0; s < SM_SH_N; s++) {
			char name[16];
			bool any = false;

			for (size_t i = 0; i < n && !any; i++)
				any = w[i].shape == (enum sm_route_shape)s;
			if (!any)
				continue;
			snprintf(name, sizeof(name), "%s_%s", fwd ? "fwd" : "acc", shape_suffix[s]);
			/* A map's element with other data cannot be created over:
			 * destroy first (pass 0), create in the same batch. */
			if (pass == 0)
				sm_nft_batch_elems(&b, SM_NFT_MSG_DESTROYSETELEM, 0, family, fwd ? TABLE_FWD : TABLE_RT,
						   name);
			else if (set)
				sm_nft_batch_elems(&b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, family,
						   fwd ? TABLE_FWD : TABLE_RT, name);
			else
				sm_nft_batch_elems(&b, NFT_MSG_DELSETELEM, 0, family, fwd ? TABLE_FWD : TABLE_RT,
						   name);
			for (size_t i = 0; i < n; i++) {
				size_t klen;

				if (w[i].shape != (enum sm_route_shape)s)
					continue;
				klen = shape_key_of(&w[i], key);
				if (pass == 0) {
					sm_nft_batch_elem(&b, key, klen, NULL, 0, NULL);
					continue;
				}
				own[n_own].flow = i;
				sm_nft_batch_elem(&b, key, klen, nh, set && fwd ? nh_len : 0, &own[n_own].pos);
				n_own++;
			}
		}
	}
	r = sm_nft_batch_commit(&b, &bad);
	sm_nft_batch_free(&b);
	if (r < 0)
		return sm_route_batch_fail(r, &bad, own, n_own, flows, n, verb, table);
	return 0;
}

int sockmig_route_forward_set(struct sockmig_route *h, const struct sockmig_flow *flows, size_t n,
			      const uint8_t *next_hop)
{
	if (n && !next_hop)
		return sm_fail(-EINVAL, "cannot set the forward of %zu flows: no next hop given", n);
	return shaped_update(h, flows, n, true, next_hop, true);
}

int sockmig_route_forward_del(struct sockmig_route *h, const struct sockmig_flow *flows, size_t n)
{
	return shaped_update(h, flows, n, false, NULL, true);
}

int sockmig_route_accept_set(struct sockmig_route *h, const struct sockmig_flow *flows, size_t n)
{
	return shaped_update(h, flows, n, true, NULL, false);
}

int sockmig_route_accept_del(struct sockmig_route *h, const struct sockmig_flow *flows, size_t n)
{
	return shaped_update(h, flows, n, false, NULL, false);
}

/* ---- list ---- */

struct sockmig_route_entry *sm_route_entry_new(struct sm_route_entries *e)
{
	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 32;
		struct sockmig_route_entry *v = realloc(e->v, cap * sizeof(*v));

		if (!v)
			return NULL;
		e->v = v;
		e->cap = cap;
	}
	memset(&e->v[e->n], 0, sizeof(e->v[0]));
	return &e->v[e->n++];
}

struct shaped_list {
	struct sm_route_entries *e;
	enum sockmig_route_kind kind;
	enum sm_route_shape shape;
};

static int shaped_collect(const uint8_t *key, size_t klen, const uint8_t *data, size_t dlen, uint64_t packets,
			  void *arg)
{
	struct shaped_list *l = arg;
	struct sockmig_route_entry *en = sm_route_entry_new(l->e);

	if (!en)
		return -ENOMEM;
	en->kind = l->kind;
	en->packets = packets;
	if (sm_route_flow_of_key(l->shape, key, klen, &en->flow) < 0 ||
	    dlen > sizeof(en->next_hop))
		return -EBADMSG;
	memcpy(en->next_hop, data, dlen);
	return 0;
}

int sockmig_route_list(struct sockmig_route *h, struct sockmig_route_entry **ret, size_t *ret_n)
{
	struct sm_route_entries e = { 0 };
	struct shaped_list l = { .e = &e };
	int r = 0;

	for (int k = 0; k < 2 && r >= 0; k++)
		for (int s = 0; s < SM_SH_N && r >= 0; s++) {
			char name[16];

			l.kind = k ? SOCKMIG_ROUTE_ACCEPT : SOCKMIG_ROUTE_FORWARD;
			l.shape = (enum sm_route_shape)s;
			snprintf(name, sizeof(name), "%s_%s", k ? "acc" : "fwd", shape_suffix[s]);
			r = sm_nft_set_dump(&h->nl, k ? NFPROTO_INET : NFPROTO_NETDEV, k ? TABLE_RT : TABLE_FWD, name,
					    shaped_collect, &l);
			if (r < 0)
				r = sm_fail(r, "cannot read nftables set %s %s %s: %s", k ? "inet" : "netdev",
					    k ? TABLE_RT : TABLE_FWD, name, strerror(-r));
		}
	if (r >= 0)
		r = sm_route_rw_list(h, &e);
	if (r < 0) {
		free(e.v);
		return r;
	}
	*ret = e.v;
	*ret_n = e.n;
	return 0;
}
