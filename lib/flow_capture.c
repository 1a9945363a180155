/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Capture of the packets a flow lock drops, through NFLOG (nfnetlink_log).
 *
 * Why NFLOG and not an AF_PACKET socket with a BPF filter: the drop rule
 * itself copies the packet ("log group N drop"), so capture and drop are one
 * step of one rule. Exactly the packets that were not delivered are captured:
 * none is missed, none is both delivered and captured (a UDP datagram
 * replayed twice would be a repeated datagram). The flow match is the
 * nftables set lookup, so 1,000 flows cost one hash lookup per packet, while
 * a classic BPF program is limited to 4,096 instructions (about 300 flows)
 * and runs on every packet of the interface. With NFULNL_CFG_F_SEQ every
 * copy carries the instance's sequence number, so a copy lost to a full
 * receive buffer is detected (a gap, or ENOBUFS) instead of silently missed.
 *
 * The copies carry the packet from the network header on, as it was at the
 * hook: possibly with an unfinished checksum (CHECKSUM_PARTIAL from veth);
 * the replay recomputes checksums.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmnl/libmnl.h>

#include "flow.h"
#include "util.h"

#define CAPTURE_GROUP_FIRST 0x5300
#define CAPTURE_GROUP_LAST 0x53ff
/* Big: with thousands of busy flows frozen for a long save, copies arrive
 * faster than one poll drains them (the kernel charges only what is queued). */
#define CAPTURE_RCVBUF (128 << 20)

struct sockmig_capture {
	struct mnl_socket *nl;
	uint32_t portid;
	uint16_t group;
	uint32_t nl_seq;
	bool have_seq;
	uint32_t next_log_seq; /* NFULA_SEQ expected next */
	int lost;              /* sticky -ENOBUFS once a copy was lost */
	uint64_t unmatched;
	struct sockmig_packet *pkts;
	size_t n_pkts, cap_pkts;
	uint8_t *rxbuf;
};

/* ---- packet parsing ---- */

static bool ipv6_is_ext(uint8_t nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
	       nh == IPPROTO_FRAGMENT;
}

int sm_pkt_parse(const uint8_t *pkt, size_t len, struct sm_pkt_tuple *ret)
{
	struct sm_pkt_tuple t = { 0 };
	size_t off, end;
	uint8_t proto;

	if (len < 1)
		return -EINVAL;
	if (pkt[0] >> 4 == 4) {
		size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
		size_t tot;

		if (len < 20 || ihl < 20 || ihl > len)
			return -EINVAL;
		tot = (size_t)pkt[2] << 8 | pkt[3];
		if (tot < ihl || tot > len)
			return -EINVAL;
		/* Only a whole datagram or the first fragment has ports. */
		if ((pkt[6] & 0x1f) || pkt[7])
			return -EINVAL;
		t.family = AF_INET;
		proto = pkt[9];
		memcpy(t.saddr, pkt + 12, 4);
		memcpy(t.daddr, pkt + 16, 4);
		off = ihl;
		end = tot;
	} else if (pkt[0] >> 4 == 6) {
		if (len < 40)
			return -EINVAL;
		end = 40 + ((size_t)pkt[4] << 8 | pkt[5]);
		if (end > len)
			return -EINVAL;
		t.family = AF_INET6;
		memcpy(t.saddr, pkt + 8, 16);
		memcpy(t.daddr, pkt + 24, 16);
		proto = pkt[6];
		off = 40;
		/* Bounded: every extension header is at least 8 bytes. */
		while (ipv6_is_ext(proto)) {
			if (off + 8 > end)
				return -EINVAL;
			if (proto == IPPROTO_FRAGMENT) {
				/* offset != 0: no ports in this fragment */
				if ((pkt[off + 2] << 8 | pkt[off + 3]) & 0xfff8)
					return -EINVAL;
				proto = pkt[off];
				off += 8;
			} else {
				proto = pkt[off];
				off += ((size_t)pkt[off + 1] + 1) * 8;
			}
		}
	} else {
		return -EINVAL;
	}
	if (proto == IPPROTO_TCP) {
		if (off + 20 > end)
			return -EINVAL;
	} else if (proto == IPPROTO_UDP) {
		if (off + 8 > end)
			return -EINVAL;
	} else {
		return -EINVAL;
	}
	t.proto = proto;
	t.sport = (uint16_t)(pkt[off] << 8 | pkt[off + 1]);
	t.dport = (uint16_t)(pkt[off + 2] << 8 | pkt[off + 3]);
	t.l4_off = off;
	t.l4_len = end - off;
	*ret = t;
	return 0;
}

int sm_flow_family(const struct sockmig_endpoint *e)
{
	static const uint8_t v4mapped[12] = { [10] = 0xff, [11] = 0xff };

	if (e->family == AF_INET6 && !memcmp(e->addr, v4mapped, 12))
		return AF_INET;
	return e->family;
}

bool sm_addr_is_any(const struct sockmig_endpoint *e)
{
	static const uint8_t zero[16];

	return !memcmp(e->addr, zero, e->family == AF_INET ? 4 : 16);
}

/* The endpoint's address as the packet carries it (v4-mapped unwrapped). */
static const uint8_t *ep_wire_addr(const struct sockmig_endpoint *e)
{
	return sm_flow_family(e) == AF_INET && e->family == AF_INET6 ? e->addr + 12 : e->addr;
}

static bool ep_match(const struct sockmig_endpoint *e, int family, const uint8_t *addr, uint16_t port)
{
	return sm_flow_family(e) == family && e->port == port &&
	       !memcmp(ep_wire_addr(e), addr, family == AF_INET ? 4 : 16);
}

/* Rank of the match of packet t with flow f, as the kernel would pick the
 * socket: 3 connected, 2 bound to the address, 1 wildcard, 0 none. */
static int flow_match(const struct sockmig_flow *f, const struct sm_pkt_tuple *t)
{
	if (f->proto != t->proto)
		return 0;
	if (f->remote.family) {
		if (ep_match(&f->local, t->family, t->daddr, t->dport) &&
		    ep_match(&f->remote, t->family, t->saddr, t->sport))
			return 3;
		return 0;
	}
	if (f->local.port != t->dport)
		return 0;
	if (sm_addr_is_any(&f->local))
		return 1;
	return ep_match(&f->local, t->family, t->daddr, t->dport) ? 2 : 0;
}

/* ---- NFLOG socket ---- */

static int nflog_config(struct sockmig_capture *c, uint16_t group, void (*put)(struct nlmsghdr *, void *),
			void *arg)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	struct nfgenmsg *nfg;
	int r;

	nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	nlh->nlmsg_seq = ++c->nl_seq;
	nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
	nfg->nfgen_family = AF_UNSPEC;
	nfg->version = NFNETLINK_V0;
	nfg->res_id = htons(group);
	put(nlh, arg);

	if (mnl_socket_sendto(c->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	/* The socket is non-blocking for the capture; the ACK to a config
	 * request is queued before sendto returns (nfnetlink is synchronous). */
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(c->nl, buf, sizeof(buf));
		if (n < 0)
			return -errno;
		r = mnl_cb_run(buf, (size_t)n, c->nl_seq, c->portid, NULL, NULL);
		if (r < 0)
			return -errno;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

static void put_cmd_bind(struct nlmsghdr *nlh, void *arg)
{
	struct nfulnl_msg_config_cmd cmd = { .command = *(uint8_t *)arg };

	mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof(cmd), &cmd);
}

static void put_settings(struct nlmsghdr *nlh, void *arg)
{
	struct nfulnl_msg_config_mode mode = { .copy_range = htonl(0xffff), .copy_mode = NFULNL_COPY_PACKET };

	(void)arg;
	mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof(mode), &mode);
	/* One message per packet, at once: nothing waits in the kernel for a
	 * batch to fill or for the 1 s flush timer (never armed at 1). */
	mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1));
	mnl_attr_put_u16(nlh, NFULA_CFG_FLAGS, htons(NFULNL_CFG_F_SEQ));
}

int sockmig_capture_open(struct sockmig_capture **ret)
{
	struct sockmig_capture *c;
	int r, size = CAPTURE_RCVBUF;
	uint8_t cmd = NFULNL_CFG_CMD_BIND;
	uint16_t g;

	c = calloc(1, sizeof(*c));
	if (!c)
		return sm_fail(-ENOMEM, "cannot allocate a packet capture");
	c->rxbuf = malloc(0x10000 + 4096);
	if (!c->rxbuf) {
		r = sm_fail(-ENOMEM, "cannot allocate a packet capture buffer");
		goto out_free;
	}
	c->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (!c->nl) {
		r = sm_fail(-errno, "cannot open a netfilter netlink socket for capture: %m");
		goto out_free;
	}
	if (mnl_socket_bind(c->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		r = sm_fail(-errno, "cannot bind the capture's netlink socket: %m");
		goto out_close;
	}
	c->portid = mnl_socket_get_portid(c->nl);
	/* A packet burst during the freeze must fit: copies that do not are
	 * lost. FORCE needs CAP_NET_ADMIN, which the nft rules need anyway. */
	if (setsockopt(mnl_socket_get_fd(c->nl), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
		(void)setsockopt(mnl_socket_get_fd(c->nl), SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));

	r = -EBUSY;
	for (g = CAPTURE_GROUP_FIRST; g <= CAPTURE_GROUP_LAST; g++) {
		r = nflog_config(c, g, put_cmd_bind, &cmd);
		if (r != -EBUSY)
			break;
	}
	if (r < 0) {
		r = sm_fail(r, "cannot bind an NFLOG group %#x..%#x for capture: %s", CAPTURE_GROUP_FIRST,
			    CAPTURE_GROUP_LAST, strerror(-r));
		goto out_close;
	}
	c->group = g;
	r = nflog_config(c, g, put_settings, NULL);
	if (r < 0) {
		r = sm_fail(r, "cannot configure NFLOG group %u for capture: %s", g, strerror(-r));
		goto out_close; /* closing the socket unbinds the group */
	}
	*ret = c;
	return 0;

out_close:
	mnl_socket_close(c->nl);
out_free:
	free(c->rxbuf);
	free(c);
	return r;
}

static void packets_free(struct sockmig_packet *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(p[i].data);
	free(p);
}

void sockmig_capture_free(struct sockmig_capture *c)
{
	if (!c)
		return;
	/* Closing the netlink socket unbinds the group (netlink release). */
	mnl_socket_close(c->nl);
	packets_free(c->pkts, c->n_pkts);
	free(c->rxbuf);
	free(c);
}

uint16_t sockmig_capture_group(const struct sockmig_capture *c)
{
	return c->group;
}

int sockmig_capture_fd(const struct sockmig_capture *c)
{
	return mnl_socket_get_fd(c->nl);
}

uint64_t sockmig_capture_unmatched(const struct sockmig_capture *c)
{
	return c->unmatched;
}

static int packet_cb(const struct nlmsghdr *nlh, void *data)
{
	struct sockmig_capture *c = data;
	struct nlattr *tb[NFULA_MAX + 1] = { 0 };
	const struct nlattr *a;
	struct sockmig_packet *p;
	struct timespec ts;
	uint16_t len;

	if (nlh->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET))
		return MNL_CB_OK;
	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
		uint16_t type = mnl_attr_get_type(a);
		if (type <= NFULA_MAX)
			tb[type] = (struct nlattr *)a;
	}
	if (tb[NFULA_SEQ]) {
		uint32_t seq = ntohl(mnl_attr_get_u32(tb[NFULA_SEQ]));
		if (c->have_seq && seq != c->next_log_seq)
			c->lost = -ENOBUFS;
		c->have_seq = true;
		c->next_log_seq = seq + 1;
	}
	if (!tb[NFULA_PAYLOAD])
		return MNL_CB_OK;
	len = mnl_attr_get_payload_len(tb[NFULA_PAYLOAD]);
	if (c->n_pkts == c->cap_pkts) {
		size_t ncap = c->cap_pkts ? c->cap_pkts * 2 : 64;
		struct sockmig_packet *np = realloc(c->pkts, ncap * sizeof(*np));
		if (!np)
			return MNL_CB_ERROR;
		c->pkts = np;
		c->cap_pkts = ncap;
	}
	p = &c->pkts[c->n_pkts];
	p->data = malloc(len ? len : 1);
	if (!p->data)
		return MNL_CB_ERROR;
	memcpy(p->data, mnl_attr_get_payload(tb[NFULA_PAYLOAD]), len);
	p->len = len;
	clock_gettime(CLOCK_REALTIME, &ts);
	p->time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	c->n_pkts++;
	return MNL_CB_OK;
}

int sockmig_capture_poll(struct sockmig_capture *c)
{
	size_t before = c->n_pkts;

	/* Bounded: a peer that keeps sending must not keep us here; what is left
	 * stays readable on the fd for the next call. */
	for (int reads = 0; reads < 4096; reads++) {
		ssize_t n = recv(mnl_socket_get_fd(c->nl), c->rxbuf, 0x10000 + 4096, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			if (errno == ENOBUFS) {
				c->lost = -ENOBUFS;
				continue;
			}
			return sm_fail(-errno, "cannot read NFLOG group %u: %m", c->group);
		}
		if (mnl_cb_run(c->rxbuf, (size_t)n, 0, 0, packet_cb, c) < 0)
			return sm_fail(errno ? -errno : -ENOMEM, "cannot store a packet of NFLOG group %u: %m",
				       c->group);
	}
	if (c->lost)
		return sm_fail(c->lost, "capture on NFLOG group %u lost packets (receive buffer full)", c->group);
	return (int)(c->n_pkts - before);
}

/* ---- sorting packets to flows ---- */

static void ack_update(struct sockmig_flow_capture *fc, const struct sockmig_packet *p,
		       const struct sm_pkt_tuple *t)
{
	const uint8_t *th = p->data + t->l4_off;
	uint32_t ack;
	uint16_t win;

	if (t->proto != IPPROTO_TCP || !(th[13] & 0x10))
		return;
	ack = (uint32_t)th[8] << 24 | (uint32_t)th[9] << 16 | (uint32_t)th[10] << 8 | th[11];
	win = (uint16_t)(th[14] << 8 | th[15]);
	/* Later segments win on equal ACK: their window is the newer one. */
	if (!fc->has_ack || (int32_t)(ack - fc->ack) >= 0) {
		fc->has_ack = 1;
		fc->ack = ack;
		fc->window = win;
	}
}

/*
 * The flows by key, for collect: a packet finds its flow in one lookup per
 * rank instead of a pass over every flow (1,000 flows and 20,000 packets
 * took 20 million comparisons, 100 ms, inside the freeze). Open addressing
 * over flow indices; equal keys keep every index, and the lowest index wins
 * among equal ranks, as the linear pass had it.
 */
struct flow_index {
	size_t mask;   /* slots - 1, a power of two minus one */
	ssize_t *slot; /* -1: empty */
};

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* rank 3: proto, family, local address and port, remote address and port;
 * rank 2: proto, family, local address and port; rank 1: proto and port. */
static uint64_t key_hash(int rank, uint8_t proto, int family, const uint8_t *laddr, uint16_t lport,
			 const uint8_t *raddr, uint16_t rport)
{
	size_t alen = family == AF_INET ? 4 : 16;
	uint64_t h = hash_bytes(0xcbf29ce484222325ull, &proto, 1);

	h = hash_bytes(h, &lport, sizeof(lport));
	if (rank >= 2) {
		h = hash_bytes(h, &family, sizeof(family));
		h = hash_bytes(h, laddr, alen);
	}
	if (rank == 3) {
		h = hash_bytes(h, raddr, alen);
		h = hash_bytes(h, &rport, sizeof(rport));
	}
	return h ^ (h >> 29);
}

static int flow_rank(const struct sockmig_flow *f)
{
	if (f->remote.family)
		return 3;
	return sm_addr_is_any(&f->local) ? 1 : 2;
}

static uint64_t flow_hash(const struct sockmig_flow *f)
{
	return key_hash(flow_rank(f), f->proto, sm_flow_family(&f->local), ep_wire_addr(&f->local), f->local.port,
			ep_wire_addr(&f->remote), f->remote.port);
}

static int index_build(struct flow_index *x, const struct sockmig_flow *flows, size_t n, int rank)
{
	size_t slots = 16;

	while (slots < 2 * n)
		slots *= 2;
	x->mask = slots - 1;
	x->slot = malloc(slots * sizeof(*x->slot));
	if (!x->slot)
		return -ENOMEM;
	for (size_t i = 0; i < slots; i++)
		x->slot[i] = -1;
	for (size_t i = 0; i < n; i++) {
		size_t k;

		if (flow_rank(&flows[i]) != rank)
			continue;
		for (k = flow_hash(&flows[i]) & x->mask; x->slot[k] >= 0; k = (k + 1) & x->mask)
			;
		x->slot[k] = (ssize_t)i;
	}
	return 0;
}

/* The lowest index of a flow of this rank that packet t matches, or -1. */
static ssize_t index_find(const struct flow_index *x, const struct sockmig_flow *flows, int rank,
			  const struct sm_pkt_tuple *t)
{
	ssize_t best = -1;
	size_t k = key_hash(rank, t->proto, t->family, t->daddr, t->dport, t->saddr, t->sport) & x->mask;

	for (; x->slot[k] >= 0; k = (k + 1) & x->mask) {
		ssize_t i = x->slot[k];

		if ((best < 0 || i < best) && flow_match(&flows[i], t) == rank)
			best = i;
	}
	return best;
}

int sockmig_capture_collect(struct sockmig_capture *c, const struct sockmig_flow *flows, size_t n,
			    struct sockmig_flow_capture **ret)
{
	struct sockmig_flow_capture *fc;
	struct flow_index idx[3] = { { 0 } };
	size_t *count = NULL;
	size_t i, j;
	ssize_t *owner = NULL;
	int r;

	/* Everything waiting, not one poll's worth: a poll is bounded so an
	 * event loop stays fair, a collect must miss nothing. The kernel queue
	 * is finite, so this ends; the bound is a safety net. */
	for (int rounds = 0; rounds < 4096; rounds++) {
		r = sockmig_capture_poll(c);
		if (r < 0)
			return r;
		if (r == 0)
			break;
	}
	fc = calloc(n ? n : 1, sizeof(*fc));
	count = calloc(n ? n : 1, sizeof(*count));
	owner = calloc(c->n_pkts ? c->n_pkts : 1, sizeof(*owner));
	if (!fc || !count || !owner) {
		r = sm_fail(-ENOMEM, "cannot allocate the capture of %zu flows", n);
		goto out;
	}
	for (i = 0; i < n; i++)
		fc[i].flow = flows[i];
	for (int k = 0; k < 3 && c->n_pkts; k++) {
		r = index_build(&idx[k], flows, n, k + 1);
		if (r < 0) {
			r = sm_fail(r, "cannot allocate the capture of %zu flows", n);
			goto out;
		}
	}

	for (j = 0; j < c->n_pkts; j++) {
		struct sm_pkt_tuple t;

		owner[j] = -1;
		if (sm_pkt_parse(c->pkts[j].data, c->pkts[j].len, &t) < 0)
			continue;
		/* as the kernel picks sockets: connected, bound, wildcard */
		for (int k = 2; k >= 0 && owner[j] < 0; k--)
			owner[j] = index_find(&idx[k], flows, k + 1, &t);
		if (owner[j] >= 0)
			count[owner[j]]++;
	}
	for (i = 0; i < n; i++) {
		if (!count[i])
			continue;
		fc[i].packets = calloc(count[i], sizeof(*fc[i].packets));
		if (!fc[i].packets) {
			r = sm_fail(-ENOMEM, "cannot allocate %zu captured packets", count[i]);
			sockmig_flow_captures_free(fc, n);
			fc = NULL;
			goto out;
		}
	}
	/* Hand the packets over; from here nothing fails. */
	for (j = 0; j < c->n_pkts; j++) {
		struct sockmig_flow_capture *f;
		struct sm_pkt_tuple t;

		if (owner[j] < 0) {
			c->unmatched++;
			free(c->pkts[j].data);
			continue;
		}
		f = &fc[owner[j]];
		f->packets[f->n_packets] = c->pkts[j];
		if (sm_pkt_parse(c->pkts[j].data, c->pkts[j].len, &t) == 0)
			ack_update(f, &f->packets[f->n_packets], &t);
		f->n_packets++;
	}
	c->n_pkts = 0;
	*ret = fc;
	fc = NULL;
	r = 0;
out:
	for (int k = 0; k < 3; k++)
		free(idx[k].slot);
	free(fc);
	free(count);
	free(owner);
	return r;
}

void sm_flow_capture_clear(struct sockmig_flow_capture *fc)
{
	packets_free(fc->packets, fc->n_packets);
	fc->packets = NULL;
	fc->n_packets = 0;
}

void sockmig_flow_captures_free(struct sockmig_flow_capture *fc, size_t n)
{
	if (!fc)
		return;
	for (size_t i = 0; i < n; i++)
		sm_flow_capture_clear(&fc[i]);
	free(fc);
}

const char *sockmig_flow_str(const struct sockmig_flow *f, char *buf, size_t size)
{
	char l[INET6_ADDRSTRLEN], rr[INET6_ADDRSTRLEN];
	const char *proto = f->proto == IPPROTO_TCP ? "tcp" : f->proto == IPPROTO_UDP ? "udp" : "proto?";

	if (!f->local.family || !inet_ntop(f->local.family, f->local.addr, l, sizeof(l)))
		snprintf(l, sizeof(l), "?");
	if (!f->remote.family) {
		snprintf(buf, size, "%s %s%s%s:%u", proto, f->local.family == AF_INET6 ? "[" : "", l,
			 f->local.family == AF_INET6 ? "]" : "", f->local.port);
		return buf;
	}
	if (!inet_ntop(f->remote.family, f->remote.addr, rr, sizeof(rr)))
		snprintf(rr, sizeof(rr), "?");
	snprintf(buf, size, "%s %s%s%s:%u > %s%s%s:%u", proto, f->local.family == AF_INET6 ? "[" : "", l,
		 f->local.family == AF_INET6 ? "]" : "", f->local.port, f->remote.family == AF_INET6 ? "[" : "",
		 rr, f->remote.family == AF_INET6 ? "]" : "", f->remote.port);
	return buf;
}
