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
 *
 *   <tag>_in   hook prerouting, priority -300: daddr . dport . saddr . sport
 *   <tag>_out  hook output,     priority -300: saddr . sport . daddr . dport
 *
 * The same set serves both directions, with the key read in the packet's
 * order. Freezing n flows is one "create element" batch, whatever n.
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
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <libmnl/libmnl.h>
#include <nftables/libnftables.h>

#include "flow.h"
#include "util.h"

#define TABLE "sockmig"

struct sockmig_flowlock {
	struct nft_ctx *nft;
	unsigned flags;
	char tag[32];
};

enum set_kind { SET_C4, SET_C6, SET_L4, SET_L6, SET_P, SET_N };
static const char *const set_suffix[SET_N] = { "c4", "c6", "l4", "l6", "p" };
static const char *const set_type[SET_N] = {
	"inet_proto . ipv4_addr . inet_service . ipv4_addr . inet_service",
	"inet_proto . ipv6_addr . inet_service . ipv6_addr . inet_service",
	"inet_proto . ipv4_addr . inet_service",
	"inet_proto . ipv6_addr . inet_service",
	"inet_proto . inet_service",
};
/* The keys as read from an inbound and an outbound packet. */
static const char *const key_in[SET_N] = {
	"meta l4proto . ip daddr . th dport . ip saddr . th sport",
	"meta l4proto . ip6 daddr . th dport . ip6 saddr . th sport",
	"meta l4proto . ip daddr . th dport",
	"meta l4proto . ip6 daddr . th dport",
	"meta l4proto . th dport",
};
static const char *const key_out[SET_N] = {
	"meta l4proto . ip saddr . th sport . ip daddr . th dport",
	"meta l4proto . ip6 saddr . th sport . ip6 daddr . th dport",
	"meta l4proto . ip saddr . th sport",
	"meta l4proto . ip6 saddr . th sport",
	"meta l4proto . th sport",
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

int sockmig_flowlock_new(unsigned flags, struct sockmig_capture *cap, struct sockmig_flowlock **ret)
{
	static unsigned counter;
	struct sockmig_flowlock *l;
	char *cmds = NULL, logstmt[64] = "";
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
	l->nft = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!l->nft) {
		free(l);
		return sm_fail(-ENOMEM, "cannot create an nftables context");
	}
	/* The library never prints: keep libnftables' messages in memory. */
	nft_ctx_buffer_output(l->nft);
	nft_ctx_buffer_error(l->nft);
	if (flags & SOCKMIG_FLOWLOCK_CAPTURE)
		snprintf(logstmt, sizeof(logstmt), "log group %u queue-threshold 1 ", sockmig_capture_group(cap));

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
		fprintf(f, "add rule inet %s %s_in %s%s @%s_%s %sdrop\n", TABLE, l->tag,
			flags & SOCKMIG_FLOWLOCK_PASS_LOCAL ? "iifname != \"lo\" " : "", key_in[s], l->tag,
			set_suffix[s], logstmt);
		fprintf(f, "add rule inet %s %s_out %s%s @%s_%s drop\n", TABLE, l->tag,
			flags & SOCKMIG_FLOWLOCK_PASS_LOCAL ? "oifname != \"lo\" " : "", key_out[s], l->tag,
			set_suffix[s]);
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
	free(l);
	return r;
}

/* Delete the table only if it is empty (NLM_F_NONREC: the kernel refuses
 * with EBUSY otherwise), in one request, so that a lock of another process
 * created meanwhile is never swept away. libnftables cannot express this. */
static void table_delete_if_empty(void)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct mnl_socket *nl;
	struct nlmsghdr *nlh;
	struct nfgenmsg *nfg;
	char *p = buf;
	uint32_t seq = (uint32_t)sm_now_ns();

	nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!nl)
		return;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
		goto out;

	nlh = mnl_nlmsg_put_header(p);
	nlh->nlmsg_type = NFNL_MSG_BATCH_BEGIN;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC;
	nfg->res_id = htons(NFNL_SUBSYS_NFTABLES);
	p += nlh->nlmsg_len;

	nlh = mnl_nlmsg_put_header(p);
	nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_NONREC;
	nlh->nlmsg_seq = seq + 1;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = NFPROTO_INET;
	mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, TABLE);
	p += nlh->nlmsg_len;

	nlh = mnl_nlmsg_put_header(p);
	nlh->nlmsg_type = NFNL_MSG_BATCH_END;
	nlh->nlmsg_flags = NLM_F_REQUEST;
	nlh->nlmsg_seq = seq + 2;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC;
	nfg->res_id = htons(NFNL_SUBSYS_NFTABLES);
	p += nlh->nlmsg_len;

	if (mnl_socket_sendto(nl, buf, (size_t)(p - buf)) < 0)
		goto out;
	/* The answer (ACK or EBUSY) is of no interest: either outcome is fine. */
	(void)mnl_socket_recvfrom(nl, buf, sizeof(buf));
out:
	mnl_socket_close(nl);
}

void sockmig_flowlock_free(struct sockmig_flowlock *l)
{
	char cmds[1024];
	int n;

	if (!l)
		return;
	n = snprintf(cmds, sizeof(cmds), "delete chain inet %s %s_in\ndelete chain inet %s %s_out\n", TABLE, l->tag,
		     TABLE, l->tag);
	for (int s = 0; s < SET_N; s++)
		n += snprintf(cmds + n, sizeof(cmds) - (size_t)n, "delete set inet %s %s_%s\n", TABLE, l->tag,
			      set_suffix[s]);
	/* Nothing to report from a destructor: on failure the objects stay
	 * and are found by their tag. */
	(void)nft_run(l, cmds, "remove a flow lock");
	table_delete_if_empty();
	nft_ctx_free(l->nft);
	free(l);
}

static void put_addr(FILE *f, int family, const uint8_t *addr)
{
	char s[INET6_ADDRSTRLEN];

	fputs(inet_ntop(family, addr, s, sizeof(s)) ? s : "::", f);
}

/* Classify a flow and print its element; -EINVAL for what no set can hold. */
static int flow_element(const struct sockmig_flow *fl, FILE *f, enum set_kind *ret_kind, bool print)
{
	int lf = sm_flow_family(&fl->local), rf;
	const uint8_t *la = lf == AF_INET && fl->local.family == AF_INET6 ? fl->local.addr + 12 : fl->local.addr;
	enum set_kind k;

	if (fl->proto != IPPROTO_TCP && fl->proto != IPPROTO_UDP)
		return -EINVAL;
	if (lf != AF_INET && lf != AF_INET6)
		return -EINVAL;
	if (fl->remote.family) {
		const uint8_t *ra;

		rf = sm_flow_family(&fl->remote);
		if (rf != lf)
			return -EINVAL;
		ra = rf == AF_INET && fl->remote.family == AF_INET6 ? fl->remote.addr + 12 : fl->remote.addr;
		k = lf == AF_INET ? SET_C4 : SET_C6;
		if (print) {
			fprintf(f, "%u . ", fl->proto);
			put_addr(f, lf, la);
			fprintf(f, " . %u . ", fl->local.port);
			put_addr(f, rf, ra);
			fprintf(f, " . %u", fl->remote.port);
		}
	} else if (sm_addr_is_any(&fl->local)) {
		k = SET_P;
		if (print)
			fprintf(f, "%u . %u", fl->proto, fl->local.port);
	} else {
		k = lf == AF_INET ? SET_L4 : SET_L6;
		if (print) {
			fprintf(f, "%u . ", fl->proto);
			put_addr(f, lf, la);
			fprintf(f, " . %u", fl->local.port);
		}
	}
	*ret_kind = k;
	return 0;
}

/* verb "create" (fails on a duplicate) or "delete" (fails on a missing one). */
static int flows_update(struct sockmig_flowlock *l, const struct sockmig_flow *flows, size_t n, const char *verb)
{
	size_t count[SET_N] = { 0 };
	char *cmds = NULL, what[160];
	size_t cmds_len = 0, i;
	enum set_kind k;
	FILE *f;
	int r;

	if (!n)
		return 0;
	for (i = 0; i < n; i++) {
		if (flow_element(&flows[i], NULL, &k, false) < 0) {
			char s[128];
			return sm_fail(-EINVAL, "cannot %s flow %s: not a TCP or UDP flow with addresses of one family",
				       *verb == 'c' ? "freeze" : "thaw", sockmig_flow_str(&flows[i], s, sizeof(s)));
		}
		count[k]++;
	}
	f = open_memstream(&cmds, &cmds_len);
	if (!f)
		return sm_fail(-ENOMEM, "cannot build the nftables commands for %zu flows", n);
	for (int s = 0; s < SET_N; s++) {
		bool first = true;

		if (!count[s])
			continue;
		fprintf(f, "%s element inet %s %s_%s { ", verb, TABLE, l->tag, set_suffix[s]);
		for (i = 0; i < n; i++) {
			(void)flow_element(&flows[i], NULL, &k, false);
			if ((int)k != s)
				continue;
			if (!first)
				fputs(", ", f);
			first = false;
			(void)flow_element(&flows[i], f, &k, true);
		}
		fputs(" }\n", f);
	}
	if (fclose(f) != 0 || !cmds)
		return sm_fail(-ENOMEM, "cannot build the nftables commands for %zu flows", n);
	if (n == 1) {
		char s[128];
		snprintf(what, sizeof(what), "%s flow %s", *verb == 'c' ? "freeze" : "thaw",
			 sockmig_flow_str(&flows[0], s, sizeof(s)));
	} else {
		snprintf(what, sizeof(what), "%s %zu flows", *verb == 'c' ? "freeze" : "thaw", n);
	}
	r = nft_run(l, cmds, what);
	free(cmds);
	return r;
}

int sockmig_flow_freeze(struct sockmig_flowlock *l, const struct sockmig_flow *flows, size_t n)
{
	return flows_update(l, flows, n, "create");
}

int sockmig_flow_thaw(struct sockmig_flowlock *l, const struct sockmig_flow *flows, size_t n)
{
	return flows_update(l, flows, n, "delete");
}
