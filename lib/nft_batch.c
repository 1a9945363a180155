/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nf_tables netlink batches and dumps with libmnl (lib/nft_batch.h), shared
 * by the flow locks (lib/flow_nft.c) and the flow routes (lib/flow_route.c).
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "nft_batch.h"
#include "util.h"

/* The kernel answers a well-formed batch at once; this only bounds a wait
 * for an answer that a malformed one would never get. */
#define ACK_TIMEOUT_S 5
/* Dumps come in multipart messages of up to 32 KiB. */
#define RX_SIZE 32768

int sm_nft_open(struct sm_nft *s)
{
	struct timeval tv = { .tv_sec = ACK_TIMEOUT_S };
	int one = 1, fd;

	memset(s, 0, sizeof(*s));
	s->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!s->nl)
		return -errno;
	if (mnl_socket_bind(s->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int err = -errno;
		mnl_socket_close(s->nl);
		s->nl = NULL;
		return err;
	}
	s->portid = mnl_socket_get_portid(s->nl);
	fd = mnl_socket_get_fd(s->nl);
	/* Small answers (no copy of a 64 KiB request in each error) that name
	 * the refused element. */
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
	(void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		int err = -errno;
		mnl_socket_close(s->nl);
		s->nl = NULL;
		return err;
	}
	s->sndbuf = 0;
	s->seq = (uint32_t)sm_now_ns();
	return 0;
}

void sm_nft_close(struct sm_nft *s)
{
	if (s && s->nl) {
		mnl_socket_close(s->nl);
		s->nl = NULL;
	}
}

struct nlmsghdr *sm_nft_msg_put(void *p, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family,
				uint16_t res_id)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(p);
	struct nfgenmsg *nfg;

	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	nlh->nlmsg_seq = seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = family;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(res_id);
	return nlh;
}

size_t sm_nft_batch_begin(void *p, uint32_t seq)
{
	return sm_nft_msg_put(p, NFNL_MSG_BATCH_BEGIN, 0, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES)->nlmsg_len;
}

size_t sm_nft_batch_end(void *p, uint32_t seq)
{
	return sm_nft_msg_put(p, NFNL_MSG_BATCH_END, 0, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES)->nlmsg_len;
}

/* One NLMSG_ERROR answer: the error (0 for an ACK) and, with extended
 * ACKs, the offset of the attribute the kernel refused (0 if none). */
static int ack_parse(const struct nlmsghdr *nlh, uint32_t *ret_offs)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	size_t off = sizeof(*e), plen = mnl_nlmsg_get_payload_len(nlh);
	*ret_offs = 0;
	if (plen < sizeof(*e))
		return -EBADMSG;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += MNL_ALIGN(e->msg.nlmsg_len) - sizeof(e->msg);
	if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
		while (off + sizeof(struct nlattr) <= plen) {
			const struct nlattr *a = (const struct nlattr *)((const uint8_t *)e + off);

			if (!mnl_attr_ok(a, (int)(plen - off)))
				break;
			if (mnl_attr_get_type(a) == NLMSGERR_ATTR_OFFS &&
			    mnl_attr_get_payload_len(a) == sizeof(uint32_t))
				*ret_offs = mnl_attr_get_u32(a);
			off += MNL_ALIGN(a->nla_len);
		}
	}
	return e->error;
}

/* The kernel reports an error per failing message (every message is
 * processed even after one failed) plus an ACK per good one; an error
 * against the batch header means the batch was not processed at all. */
int sm_nft_batch_send(struct sm_nft *s, const void *buf, size_t len, uint32_t seq0, uint32_t n_msgs,
		      uint32_t *ret_seq, uint32_t *ret_offs)
{
	uint8_t rx[MNL_SOCKET_BUFFER_SIZE];
	uint32_t acked = 0;
	int first = 0;

	if (len + 4096 > (size_t)s->sndbuf) {
		int size = (int)(len + 4096);
		/* FORCE needs CAP_NET_ADMIN, which changing the ruleset needs too. */
		if (setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0 &&
		    setsockopt(mnl_socket_get_fd(s->nl), SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0)
			return -errno;
		s->sndbuf = size;
	}
	if (mnl_socket_sendto(s->nl, buf, len) < 0)
		return -errno;
	while (acked < n_msgs) {
		ssize_t n = mnl_socket_recvfrom(s->nl, rx, sizeof(rx));
		const struct nlmsghdr *nlh;
		int rem;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		rem = (int)n;
		for (nlh = (const struct nlmsghdr *)rx; mnl_nlmsg_ok(nlh, rem); nlh = mnl_nlmsg_next(nlh, &rem)) {
			uint32_t offs;
			int err;

			if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_seq < seq0 ||
			    nlh->nlmsg_seq > seq0 + n_msgs)
				continue; /* a stale answer of an earlier, timed out batch */
			err = ack_parse(nlh, &offs);
			if (err && !first) {
				first = err;
				*ret_seq = nlh->nlmsg_seq;
				*ret_offs = offs;
			}
			if (nlh->nlmsg_seq == seq0)
				return first ? first : -EPROTO;
			acked++;
		}
	}
	return first;
}

/* ---- element batches ---- */

void sm_nft_batch_init(struct sm_nft_batch *b, struct sm_nft *s)
{
	memset(b, 0, sizeof(*b));
	b->s = s;
	b->seq0 = s->seq;
}

void sm_nft_batch_free(struct sm_nft_batch *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}

static bool reserve(struct sm_nft_batch *b, size_t more)
{
	size_t cap;
	uint8_t *p;

	if (b->err)
		return false;
	if (b->len + more <= b->cap)
		return true;
	cap = b->cap ? b->cap : 16384;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->buf, cap);
	if (!p) {
		b->err = -ENOMEM;
		return false;
	}
	b->buf = p;
	b->cap = cap;
	return true;
}

static void msg_close(struct sm_nft_batch *b)
{
	struct nlmsghdr *nlh;

	if (!b->msg_off)
		return;
	nlh = (struct nlmsghdr *)(b->buf + b->msg_off);
	mnl_attr_nest_end(nlh, (struct nlattr *)(b->buf + b->list_off));
	b->len = b->msg_off + nlh->nlmsg_len;
	b->msg_off = 0;
}

static void msg_open(struct sm_nft_batch *b)
{
	struct nlmsghdr *nlh;

	if (!reserve(b, 512))
		return;
	if (!b->len)
		b->len = sm_nft_batch_begin(b->buf, b->seq0);
	b->n_msgs++;
	b->msg_off = b->len;
	nlh = sm_nft_msg_put(b->buf + b->len, (NFNL_SUBSYS_NFTABLES << 8) | b->type, NLM_F_ACK | b->flags,
			     b->seq0 + b->n_msgs, b->family, 0);
	mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, b->table);
	mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, b->set);
	b->list_off = (size_t)((uint8_t *)mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS) - b->buf);
	b->len = b->msg_off + nlh->nlmsg_len;
}

void sm_nft_batch_elems(struct sm_nft_batch *b, uint16_t type, uint16_t flags, uint8_t family, const char *table,
			const char *set)
{
	msg_close(b);
	b->type = type;
	b->flags = flags;
	b->family = family;
	snprintf(b->table, sizeof(b->table), "%s", table);
	snprintf(b->set, sizeof(b->set), "%s", set);
}

void sm_nft_batch_elem(struct sm_nft_batch *b, const void *key, size_t klen, const void *data, size_t dlen,
		       struct sm_nft_pos *ret_pos)
{
	struct nlmsghdr *nlh;
	struct nlattr *el, *nest;

	if (b->msg_off && b->len - b->list_off > SM_NFT_ELEMS_MSG_MAX)
		msg_close(b);
	if (!b->msg_off)
		msg_open(b);
	if (!reserve(b, 64 + klen + dlen))
		return;
	nlh = (struct nlmsghdr *)(b->buf + b->msg_off);
	if (ret_pos) {
		ret_pos->seq = nlh->nlmsg_seq;
		ret_pos->off = nlh->nlmsg_len;
	}
	el = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
	nest = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
	mnl_attr_put(nlh, NFTA_DATA_VALUE, klen, key);
	mnl_attr_nest_end(nlh, nest);
	if (dlen) {
		nest = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_DATA);
		mnl_attr_put(nlh, NFTA_DATA_VALUE, dlen, data);
		mnl_attr_nest_end(nlh, nest);
	}
	mnl_attr_nest_end(nlh, el);
	b->len = b->msg_off + nlh->nlmsg_len;
}

int sm_nft_batch_commit(struct sm_nft_batch *b, struct sm_nft_pos *ret_bad)
{
	uint32_t bad_seq = 0, bad_offs = 0;
	int r;

	msg_close(b);
	if (b->err)
		return b->err;
	if (!b->n_msgs)
		return 0;
	if (!reserve(b, 64))
		return b->err;
	b->len += sm_nft_batch_end(b->buf + b->len, b->seq0 + b->n_msgs + 1);
	b->s->seq = b->seq0 + b->n_msgs + 2;
	r = sm_nft_batch_send(b->s, b->buf, b->len, b->seq0, b->n_msgs, &bad_seq, &bad_offs);
	if (r < 0 && ret_bad) {
		ret_bad->seq = bad_seq;
		ret_bad->off = bad_offs;
	}
	return r;
}

/* ---- reading ---- */

typedef int (*msg_cb)(const struct nlmsghdr *nlh, void *arg);

/* Send one request and read its answers until the end of the dump or the
 * ACK (or error), handing every other message of ours to cb. */
static int nft_talk(struct sm_nft *s, struct nlmsghdr *nlh, msg_cb cb, void *arg)
{
	_cleanup_free_ uint8_t *rx = malloc(RX_SIZE);
	uint32_t seq = nlh->nlmsg_seq;
	int cb_err = 0;

	if (!rx)
		return -ENOMEM;
	if (mnl_socket_sendto(s->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(s->nl, rx, RX_SIZE);
		const struct nlmsghdr *m;
		int rem;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		rem = (int)n;
		for (m = (const struct nlmsghdr *)rx; mnl_nlmsg_ok(m, rem); m = mnl_nlmsg_next(m, &rem)) {
			uint32_t offs;

			if (m->nlmsg_seq != seq)
				continue;
			if (m->nlmsg_type == NLMSG_DONE)
				return cb_err;
			if (m->nlmsg_type == NLMSG_ERROR) {
				int err = ack_parse(m, &offs);
				return err ? err : cb_err;
			}
			if (!cb_err && cb)
				cb_err = cb(m, arg);
		}
	}
}

struct dump_arg {
	sm_nft_elem_cb cb;
	void *arg;
};

struct elem_attrs {
	const struct nlattr *key, *data, *expr, *exprs;
};

static int elem_attr_cb(const struct nlattr *a, void *data)
{
	struct elem_attrs *ea = data;

	switch (mnl_attr_get_type(a)) {
	case NFTA_SET_ELEM_KEY:
		ea->key = a;
		break;
	case NFTA_SET_ELEM_DATA:
		ea->data = a;
		break;
	case NFTA_SET_ELEM_EXPR:
		ea->expr = a;
		break;
	case NFTA_SET_ELEM_EXPRESSIONS:
		ea->exprs = a;
		break;
	}
	return MNL_CB_OK;
}

/* The value inside NFTA_DATA_VALUE of a nested data attribute. */
static const uint8_t *data_value(const struct nlattr *nest, size_t *ret_len)
{
	const struct nlattr *a;

	*ret_len = 0;
	if (!nest)
		return NULL;
	mnl_attr_for_each_nested(a, nest) {
		if (mnl_attr_get_type(a) == NFTA_DATA_VALUE) {
			*ret_len = mnl_attr_get_payload_len(a);
			return mnl_attr_get_payload(a);
		}
	}
	return NULL;
}

/* Packets of a counter expression (NFTA_EXPR_NAME "counter"), else 0. */
static uint64_t expr_packets(const struct nlattr *expr)
{
	const struct nlattr *a, *d = NULL;
	bool counter = false;

	mnl_attr_for_each_nested(a, expr) {
		if (mnl_attr_get_type(a) == NFTA_EXPR_NAME && mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
			counter = !strcmp(mnl_attr_get_str(a), "counter");
		else if (mnl_attr_get_type(a) == NFTA_EXPR_DATA)
			d = a;
	}
	if (!counter || !d)
		return 0;
	mnl_attr_for_each_nested(a, d) {
		if (mnl_attr_get_type(a) == NFTA_COUNTER_PACKETS && mnl_attr_validate(a, MNL_TYPE_U64) == 0)
			return be64toh(mnl_attr_get_u64(a));
	}
	return 0;
}

static int elems_msg_cb(const struct nlmsghdr *nlh, void *arg)
{
	struct dump_arg *d = arg;
	const struct nlattr *a, *list = NULL, *el;

	if ((nlh->nlmsg_type & 0xff) != NFT_MSG_NEWSETELEM)
		return 0;
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		if (mnl_attr_get_type(a) == NFTA_SET_ELEM_LIST_ELEMENTS)
			list = a;
	}
	if (!list)
		return 0;
	mnl_attr_for_each_nested(el, list) {
		struct elem_attrs ea = { 0 };
		const uint8_t *key, *data;
		size_t klen, dlen;
		uint64_t packets = 0;
		int r;

		if (mnl_attr_parse_nested(el, elem_attr_cb, &ea) < 0)
			return -EBADMSG;
		key = data_value(ea.key, &klen);
		data = data_value(ea.data, &dlen);
		if (!key)
			continue;
		if (ea.expr)
			packets = expr_packets(ea.expr);
		if (ea.exprs) {
			const struct nlattr *e;
			mnl_attr_for_each_nested(e, ea.exprs)
				packets += expr_packets(e);
		}
		r = d->cb(key, klen, data, data ? dlen : 0, packets, d->arg);
		if (r < 0)
			return r;
	}
	return 0;
}

int sm_nft_set_dump(struct sm_nft *s, uint8_t family, const char *table, const char *set, sm_nft_elem_cb cb,
		    void *arg)
{
	uint8_t buf[512];
	struct dump_arg d = { cb, arg };
	struct nlmsghdr *nlh = sm_nft_msg_put(buf, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM, NLM_F_DUMP,
					      ++s->seq, family, 0);

	mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table);
	mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set);
	return nft_talk(s, nlh, elems_msg_cb, &d);
}

static int exists(struct sm_nft *s, uint16_t type, uint8_t family, const char *table, const char *chain)
{
	uint8_t buf[512];
	struct nlmsghdr *nlh = sm_nft_msg_put(buf, (NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F_ACK, ++s->seq, family, 0);
	int r;

	if (chain) {
		mnl_attr_put_strz(nlh, NFTA_CHAIN_TABLE, table);
		mnl_attr_put_strz(nlh, NFTA_CHAIN_NAME, chain);
	} else {
		mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table);
	}
	r = nft_talk(s, nlh, NULL, NULL);
	if (r == -ENOENT)
		return 0;
	return r < 0 ? r : 1;
}

int sm_nft_chain_exists(struct sm_nft *s, uint8_t family, const char *table, const char *chain)
{
	return exists(s, NFT_MSG_GETCHAIN, family, table, chain);
}

int sm_nft_table_exists(struct sm_nft *s, uint8_t family, const char *table)
{
	return exists(s, NFT_MSG_GETTABLE, family, table, NULL);
}
