/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flow locks: nftables sets of frozen flows in "table inet sockmig".
 *
 * Each lock owns two base chains and five sets, named after a tag unique to
 * the lock (f<pid>_<n>), so that locks of concurrent moves never touch each
 * other's objects and a lock is released by deleting exactly its objects:
 *
 *   <tag>_c4, _c6  meta l4proto . local addr . local port . remote addr . remote port
 *   <tag>_l4, _l6  meta l4proto . local addr . local port     (listener, bound UDP)
 *   <tag>_p        meta l4proto . local port                  (bound to the wildcard)
 *   <tag>_s4, _s6, _sp   the same keys as _l4, _l6, _p: listeners whose
 *                  connection attempts only are frozen (inbound SYN without
 *                  ACK; established connections on the port keep flowing)
 *
 *   <tag>_in   hook prerouting, priority -300: daddr . dport . saddr . sport
 *   <tag>_out  hook output,     priority -300: saddr . sport . daddr . dport
 *
 * The same set serves both directions, with the key read in the packet's
 * order. Freezing n flows is one NEWSETELEM batch, whatever n.
 *
 * The chains and sets are made once per lock with libnftables (text, rare,
 * clearer); the elements are sent as nf_tables netlink messages built here
 * with libmnl (batch helpers in lib/nft_batch.c): parsing and evaluating
 * 1,000 elements as text cost 15 ms, the binary batch well under one
 * (bench/flow_freeze.c).
 *
 * Why prerouting and not input: a packet of the flow must be caught even
 * when the address is no longer local (released on S, not yet added on D),
 * or it would be forwarded or dropped uncaptured. Priority -300 runs before
 * conntrack (-200), so dropped packets never change conntrack state. The
 * price: without nf_defrag loaded, only a first fragment carries the ports;
 * later fragments of a frozen UDP flow pass and die in reassembly.
 *
 * With SOCKMIG_FLOWLOCK_CAPTURE the inbound rules are "log group G drop":
 * the copy and the drop are one step. With SOCKMIG_FLOWLOCK_PASS_LOCAL the
 * rules ignore the loopback device, which is where replayed packets travel.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <libmnl/libmnl.h>
#include <nftables/libnftables.h>

#include "flow.h"
#include "nft_batch.h"
#include "util.h"

#define TABLE "sockmig"

struct sockmig_flowlock {
	struct nft_ctx *nft;
	unsigned flags;
	char tag[32];
	struct sm_nft nl;
};

enum set_kind { SET_C4, SET_C6, SET_L4, SET_L6, SET_P, SET_S4, SET_S6, SET_SP, SET_N };
static const char *const set_suffix[SET_N] = { "c4", "c6", "l4", "l6", "p", "s4", "s6", "sp" };
static const char *const set_type[SET_N] = {
	"inet_proto . ipv4_addr . inet_service . ipv4_addr . inet_service",
	"inet_proto . ipv6_addr . inet_service . ipv6_addr . inet_service",
	"inet_proto . ipv4_addr . inet_service",
	"inet_proto . ipv6_addr . inet_service",
	"inet_proto . inet_service",
	"inet_proto . ipv4_addr . inet_service",
	"inet_proto . ipv6_addr . inet_service",
	"inet_proto . inet_service",
};
/* The keys as read from an inbound and an outbound packet. The SYN sets
 * have no outbound rule: the listener's SYN-ACKs to handshakes begun before
 * the freeze, and everything of its established connections, must pass. */
#define SYN_ONLY "tcp flags & (syn | ack) == syn "
static const char *const key_in[SET_N] = {
	"meta l4proto . ip daddr . th dport . ip saddr . th sport",
	"meta l4proto . ip6 daddr . th dport . ip6 saddr . th sport",
	"meta l4proto . ip daddr . th dport",
	"meta l4proto . ip6 daddr . th dport",
	"meta l4proto . th dport",
	SYN_ONLY "meta l4proto . ip daddr . th dport",
	SYN_ONLY "meta l4proto . ip6 daddr . th dport",
	SYN_ONLY "meta l4proto . th dport",
};
static const char *const key_out[SET_N] = {
	"meta l4proto . ip saddr . th sport . ip daddr . th dport",
	"meta l4proto . ip6 saddr . th sport . ip6 daddr . th dport",
	"meta l4proto . ip saddr . th sport",
	"meta l4proto . ip6 saddr . th sport",
	"meta l4proto . th sport",
	NULL,
	NULL,
	NULL,
};

/* libnftables reports errors as text only; recover the errno from the
 * kernel's message so that callers can tell a duplicate from a failure. */
static int nft_errno(const char *msg)
{
	static const struct {
		const char *text;
		int err;
	} map[] = {
		{ "File exists", EEXIST },   { "No such file or directory", ENOENT },
		{ "Operation not permitted", EPERM }, { "Device or resource busy", EBUSY },
		{ "Cannot allocate memory", ENOMEM }, { "Too many open files", EMFILE },
		{ "No buffer space", ENOBUFS },
	};

	for (size_t i = 0; i < ARRAY_SIZE(map); i++)
		if (strstr(msg, map[i].text))
			return -map[i].err;
	return -EIO;
}

/* Run one buffer of commands: libnftables sends it as one batch, applied
 * by the kernel atomically or not at all. */
static int nft_run(struct sockmig_flowlock *l, const char *cmds, const char *what)
{
	const char *msg;
	char *nl;
	int r;

	if (nft_run_cmd_from_buffer(l->nft, cmds) == 0) {
		(void)nft_ctx_get_error_buffer(l->nft); /* reset it */
		return 0;
	}
	msg = nft_ctx_get_error_buffer(l->nft);
	r = nft_errno(msg ? msg : "");
	/* The first line is the sentence; then the command and a caret. */
	while (msg && (!strncmp(msg, "Error: ", 7) || *msg == '\n'))
		msg += *msg == '\n' ? 1 : 7;
	nl = msg ? strchr(msg, '\n') : NULL;
	return sm_fail(r, "cannot %s in nftables table inet %s: %.*s", what, TABLE,
		       msg ? (int)(nl ? nl - msg : (ptrdiff_t)strlen(msg)) : 0, msg ? msg : "");
}

/* ---- locks ---- */

int sockmig_flowlock_new(unsigned flags, struct sockmig_capture *cap, struct sockmig_flowlock **ret)
{
	static unsigned counter;
	struct sockmig_flowlock *l;
	char *cmds = NULL, logstmt[64] = "";
	const char *pass_in = "", *pass_out = "";
	size_t cmds_len = 0;
	FILE *f;
	int r;

	if ((flags & SOCKMIG_FLOWLOCK_CAPTURE) && !cap)
		return sm_fail(-EINVAL, "cannot lock flows with capture: no capture given");
	l = calloc(1, sizeof(*l));
	if (!l)
		return sm_fail(-ENOMEM, "cannot allocate a flow lock");
	l->flags = flags;
	snprintf(l->tag, sizeof(l->tag), "f%d_%u", (int)getpid(), __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));
	r = sm_nft_open(&l->nl);
	if (r < 0) {
		r = sm_fail(r, "cannot open a netfilter netlink socket for a flow lock: %s", strerror(-r));
		goto out_close;
	}
	l->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!l->nft) {
		r = sm_fail(-ENOMEM, "cannot create an nftables context");
		goto out_close;
	}
	/* The library never prints: keep libnftables' messages in memory. */
	nft_ctx_buffer_output(l->nft);
	nft_ctx_buffer_error(l->nft);
	if (flags & SOCKMIG_FLOWLOCK_CAPTURE)
		snprintf(logstmt, sizeof(logstmt), "log group %u queue-threshold 1 ", sockmig_capture_group(cap));
	if (flags & SOCKMIG_FLOWLOCK_PASS_LOCAL) {
		pass_in = "iifname != \"lo\" ";
		pass_out = "oifname != \"lo\" ";
	}

	f = open_memstream(&cmds, &cmds_len);
	if (!f) {
		r = sm_fail(-ENOMEM, "cannot build the nftables commands of a flow lock");
		goto out_free;
	}
	fprintf(f, "add table inet %s\n", TABLE);
	for (int s = 0; s < SET_N; s++)
		fprintf(f, "add set inet %s %s_%s { type %s; }\n", TABLE, l->tag, set_suffix[s], set_type[s]);
	fprintf(f, "add chain inet %s %s_in { type filter hook prerouting priority -300; policy accept; }\n", TABLE,
		l->tag);
	fprintf(f, "add chain inet %s %s_out { type filter hook output priority -300; policy accept; }\n", TABLE,
		l->tag);
	for (int s = 0; s < SET_N; s++) {
		fprintf(f, "add rule inet %s %s_in %s%s @%s_%s %sdrop\n", TABLE, l->tag, pass_in, key_in[s], l->tag,
			set_suffix[s], logstmt);
		if (key_out[s])
			fprintf(f, "add rule inet %s %s_out %s%s @%s_%s drop\n", TABLE, l->tag, pass_out,
				key_out[s], l->tag, set_suffix[s]);
	}
	if (fclose(f) != 0 || !cmds) {
		r = sm_fail(-ENOMEM, "cannot build the nftables commands of a flow lock");
		goto out_free;
	}
	r = nft_run(l, cmds, "create a flow lock");
	free(cmds);
	if (r < 0)
		goto out_free;
	*ret = l;
	return 0;

out_free:
	nft_ctx_free(l->nft);
out_close:
	sm_nft_close(&l->nl);
	free(l);
	return r;
}

/* Delete the lock's chains and sets and then the table, in one batch; the
 * table with NLM_F_NONREC, which the kernel refuses with EBUSY while the
 * table still holds anything (objects of the other locks; the lock's own
 * deleted earlier in the batch no longer count), so that a lock of another
 * process is never swept away. EBUSY aborts the whole batch: it is then sent
 * again without the table. One batch, not two, because a batch that deletes
 * objects waits for an RCU grace period in the kernel: about 20 ms here.
 * libnftables cannot express NONREC. Returns the batch's error. */
static int lock_delete(struct sockmig_flowlock *l, bool with_table)
{
	uint8_t buf[4096];
	uint32_t seq0 = l->nl.seq, n_msgs = 0, bad_seq, offs;
	struct nlmsghdr *nlh;
	char name[48];
	size_t len;

	len = sm_nft_batch_begin(buf, seq0);
	for (int c = 0; c < 2; c++) {
		snprintf(name, sizeof(name), "%s_%s", l->tag, c ? "out" : "in");
		nlh = sm_nft_msg_put(buf + len, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELCHAIN, NLM_F_ACK, seq0 + ++n_msgs,
			      NFPROTO_INET, 0);
		mnl_attr_put_strz(nlh, NFTA_CHAIN_TABLE, TABLE);
		mnl_attr_put_strz(nlh, NFTA_CHAIN_NAME, name);
		len += nlh->nlmsg_len;
	}
	for (int k = 0; k < SET_N; k++) {
		snprintf(name, sizeof(name), "%s_%s", l->tag, set_suffix[k]);
		nlh = sm_nft_msg_put(buf + len, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSET, NLM_F_ACK, seq0 + ++n_msgs,
			      NFPROTO_INET, 0);
		mnl_attr_put_strz(nlh, NFTA_SET_TABLE, TABLE);
		mnl_attr_put_strz(nlh, NFTA_SET_NAME, name);
		len += nlh->nlmsg_len;
	}
	if (with_table) {
		nlh = sm_nft_msg_put(buf + len, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE, NLM_F_ACK | NLM_F_NONREC,
			      seq0 + ++n_msgs, NFPROTO_INET, 0);
		mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, TABLE);
		len += nlh->nlmsg_len;
	}
	len += sm_nft_batch_end(buf + len, seq0 + n_msgs + 1);
	l->nl.seq += n_msgs + 2;
	return sm_nft_batch_send(&l->nl, buf, len, seq0, n_msgs, &bad_seq, &offs);
}

int sockmig_flowlock_purge_dead(void)
{
	struct sockmig_flowlock *l;
	const char *out, *p;
	int r, n = 0;

	l = calloc(1, sizeof(*l));
	if (!l)
		return sm_fail(-ENOMEM, "cannot allocate a flow lock");
	r = sm_nft_open(&l->nl);
	if (r < 0) {
		r = sm_fail(r, "cannot open a netfilter netlink socket: %s", strerror(-r));
		goto out_free;
	}
	l->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!l->nft) {
		r = sm_fail(-ENOMEM, "cannot create an nftables context");
		goto out_close;
	}
	nft_ctx_buffer_output(l->nft);
	nft_ctx_buffer_error(l->nft);
	r = 0;
	if (nft_run_cmd_from_buffer(l->nft, "list table inet " TABLE) != 0)
		goto out_nft; /* no table: nothing to purge */
	out = nft_ctx_get_output_buffer(l->nft);
	/* "chain f<pid>_<n>_in {": the tag names the process that made it */
	for (p = out ? strstr(out, "chain f") : NULL; p; p = strstr(p + 1, "chain f")) {
		int pid;
		unsigned idx;

		if (sscanf(p, "chain f%d_%u_in ", &pid, &idx) != 2 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue; /* alive, or not ours to judge */
		snprintf(l->tag, sizeof(l->tag), "f%d_%u", pid, idx);
		if (lock_delete(l, true) == -EBUSY)
			(void)lock_delete(l, false);
		n++;
	}
	r = n;
out_nft:
	nft_ctx_free(l->nft);
out_close:
	sm_nft_close(&l->nl);
out_free:
	free(l);
	return r;
}

void sockmig_flowlock_free(struct sockmig_flowlock *l)
{
	if (!l)
		return;
	/* Nothing to report from a destructor: on failure the objects stay
	 * and are found by their tag. */
	if (lock_delete(l, true) == -EBUSY)
		(void)lock_delete(l, false);
	nft_ctx_free(l->nft);
	sm_nft_close(&l->nl);
	free(l);
}

/* ---- elements ---- */

/* Largest key: proto . ip6 . port . ip6 . port, each part in a 4-byte
 * register of its own. */
#define KEY_MAX (4 + 16 + 4 + 16 + 4)

/* Classify a flow and build its set key as nf_tables stores a
 * concatenation: every part padded to 32 bits, the protocol as one byte,
 * addresses and ports in network order. syn: the listener's SYN set.
 * -EINVAL for what no set can hold. */
static int flow_key(const struct sockmig_flow *fl, bool syn, enum set_kind *ret_kind, uint8_t *key, size_t *ret_len)
{
	int lf = sm_flow_family(&fl->local);
	size_t alen = lf == AF_INET ? 4 : 16, len;
	const uint8_t *la = lf == AF_INET && fl->local.family == AF_INET6 ? fl->local.addr + 12 : fl->local.addr;
	uint16_t lp = htons(fl->local.port);
	enum set_kind k;

	if (fl->proto != IPPROTO_TCP && fl->proto != IPPROTO_UDP)
		return -EINVAL;
	if (lf != AF_INET && lf != AF_INET6)
		return -EINVAL;
	if (syn && (fl->proto != IPPROTO_TCP || fl->remote.family))
		return -EINVAL;
	memset(key, 0, KEY_MAX);
	len = sm_nft_key_put(key, 0, &fl->proto, 1);
	if (fl->remote.family) {
		int rf = sm_flow_family(&fl->remote);
		const uint8_t *ra;
		uint16_t rp = htons(fl->remote.port);

		if (rf != lf)
			return -EINVAL;
		ra = rf == AF_INET && fl->remote.family == AF_INET6 ? fl->remote.addr + 12 : fl->remote.addr;
		k = lf == AF_INET ? SET_C4 : SET_C6;
		len = sm_nft_key_put(key, len, la, alen);
		len = sm_nft_key_put(key, len, &lp, 2);
		len = sm_nft_key_put(key, len, ra, alen);
		len = sm_nft_key_put(key, len, &rp, 2);
	} else if (sm_addr_is_any(&fl->local)) {
		k = syn ? SET_SP : SET_P;
		len = sm_nft_key_put(key, len, &lp, 2);
	} else {
		k = lf == AF_INET ? (syn ? SET_S4 : SET_L4) : (syn ? SET_S6 : SET_L6);
		len = sm_nft_key_put(key, len, la, alen);
		len = sm_nft_key_put(key, len, &lp, 2);
	}
	*ret_kind = k;
	*ret_len = len;
	return 0;
}

/* Where each flow's element went in the batch, to name the flow the kernel
 * refused. */
struct elem_pos {
	uint32_t seq;
	uint32_t off;
};

/* Add (create: -EEXIST on a duplicate) or delete (-ENOENT on a missing one)
 * the flows' elements, in one batch: a NEWSETELEM / DELSETELEM message per
 * set and per 60 KB of elements. */
static int flows_update(struct sockmig_flowlock *l, const struct sockmig_flow *flows, size_t n, bool add, bool syn)
{
	const char *verb = add ? (syn ? "freeze connection attempts to" : "freeze")
			       : (syn ? "thaw connection attempts to" : "thaw");
	_cleanup_free_ uint8_t *buf = NULL;
	_cleanup_free_ struct elem_pos *pos = NULL;
	_cleanup_free_ uint8_t *kinds = NULL;
	size_t count[SET_N] = { 0 }, len, cap, i, n_msgs_max;
	uint32_t seq0, n_msgs = 0, bad_seq = 0, bad_offs = 0;
	uint8_t key[KEY_MAX];
	char s[128];
	int r;

	if (!n)
		return 0;
	kinds = malloc(n);
	pos = calloc(n, sizeof(*pos));
	if (!kinds || !pos)
		return sm_fail(-ENOMEM, "cannot allocate the nftables batch for %zu flows", n);
	for (i = 0; i < n; i++) {
		enum set_kind k;
		size_t klen;

		if (flow_key(&flows[i], syn, &k, key, &klen) < 0)
			return sm_fail(-EINVAL, "cannot %s flow %s: %s", verb, sockmig_flow_str(&flows[i], s, sizeof(s)),
				       syn ? "not a TCP listener (remote address set, or not TCP)"
					   : "not a TCP or UDP flow with addresses of one family");
		kinds[i] = (uint8_t)k;
		count[k]++;
	}
	/* Per element at most 3 attribute headers and the key; per message
	 * the headers and names; begin and end. */
	n_msgs_max = SET_N + n * (12 + KEY_MAX) / (SM_NFT_ELEMS_MSG_MAX - 12 - KEY_MAX) + 1;
	cap = n * (12 + KEY_MAX) + (n_msgs_max + 2) * 128;
	buf = malloc(cap);
	if (!buf)
		return sm_fail(-ENOMEM, "cannot allocate the nftables batch for %zu flows", n);

	seq0 = l->nl.seq;
	len = sm_nft_batch_begin(buf, seq0);
	for (int k = 0; k < SET_N; k++) {
		struct nlmsghdr *nlh = NULL;
		struct nlattr *list = NULL;
		char set[48];

		if (!count[k])
			continue;
		snprintf(set, sizeof(set), "%s_%s", l->tag, set_suffix[k]);
		for (i = 0; i < n; i++) {
			struct nlattr *el, *kn;
			size_t klen;
			enum set_kind kk;

			if (kinds[i] != k)
				continue;
			if (nlh && (uint8_t *)mnl_nlmsg_get_payload_tail(nlh) - (uint8_t *)list > SM_NFT_ELEMS_MSG_MAX) {
				mnl_attr_nest_end(nlh, list);
				len += nlh->nlmsg_len;
				nlh = NULL;
			}
			if (!nlh) {
				n_msgs++;
				nlh = sm_nft_msg_put(buf + len,
					      (NFNL_SUBSYS_NFTABLES << 8) | (add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM),
					      NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0), seq0 + n_msgs,
					      NFPROTO_INET, 0);
				mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, TABLE);
				mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set);
				list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
			}
			(void)flow_key(&flows[i], syn, &kk, key, &klen);
			pos[i].seq = seq0 + n_msgs;
			pos[i].off = (uint32_t)((uint8_t *)mnl_nlmsg_get_payload_tail(nlh) - (uint8_t *)nlh);
			el = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
			kn = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
			mnl_attr_put(nlh, NFTA_DATA_VALUE, klen, key);
			mnl_attr_nest_end(nlh, kn);
			mnl_attr_nest_end(nlh, el);
		}
		mnl_attr_nest_end(nlh, list);
		len += nlh->nlmsg_len;
	}
	len += sm_nft_batch_end(buf + len, seq0 + n_msgs + 1);
	l->nl.seq += n_msgs + 2;

	r = sm_nft_batch_send(&l->nl, buf, len, seq0, n_msgs, &bad_seq, &bad_offs);
	if (r == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (bad_offs && pos[i].seq == bad_seq && pos[i].off == bad_offs)
			return sm_fail(r, "cannot %s flow %s in nftables table inet %s: %s", verb,
				       sockmig_flow_str(&flows[i], s, sizeof(s)), TABLE,
				       r == -EEXIST ? "already frozen by this lock"
				       : r == -ENOENT ? "not frozen by this lock"
						      : strerror(-r));
	if (n == 1)
		return sm_fail(r, "cannot %s flow %s in nftables table inet %s: %s", verb,
			       sockmig_flow_str(&flows[0], s, sizeof(s)), TABLE, strerror(-r));
	return sm_fail(r, "cannot %s %zu flows in nftables table inet %s: %s", verb, n, TABLE, strerror(-r));
}

int sockmig_flow_freeze(struct sockmig_flowlock *l, const struct sockmig_flow *flows, size_t n)
{
	return flows_update(l, flows, n, true, false);
}

int sockmig_flow_thaw(struct sockmig_flowlock *l, const struct sockmig_flow *flows, size_t n)
{
	return flows_update(l, flows, n, false, false);
}

int sockmig_flow_freeze_syn(struct sockmig_flowlock *l, const struct sockmig_flow *listeners, size_t n)
{
	return flows_update(l, listeners, n, true, true);
}

int sockmig_flow_thaw_syn(struct sockmig_flowlock *l, const struct sockmig_flow *listeners, size_t n)
{
	return flows_update(l, listeners, n, false, true);
}
