/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replay of captured packets: sent through raw sockets with the IP header
 * as captured, so the peer's source address is kept. The destination is a
 * local address, so the kernel loops the packet through "lo" and it reaches
 * the socket by the normal receive path (prerouting and input hooks run with
 * iif "lo", which is what a SOCKMIG_FLOWLOCK_PASS_LOCAL lock lets through).
 *
 * Checksums: the capture may hold packets whose transport checksum the
 * sender left unfinished (CHECKSUM_PARTIAL across a veth: only the
 * pseudo-header sum is in the field). A raw socket's packet is not offloaded,
 * so the receiver verifies it: every checksum is recomputed here. The IPv4
 * header checksum is rewritten by the kernel for IP_HDRINCL anyway.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "flow.h"
#include "sockmig/route.h"
#include "util.h"

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int sockmig_packet_fix_checksums(uint8_t *pkt, size_t len)
{
	struct sm_pkt_tuple t;
	uint8_t *l4;
	size_t csum_off;
	uint32_t sum = 0;
	uint16_t c;
	int r;

	r = sm_pkt_parse(pkt, len, &t);
	if (r < 0)
		return r;
	if (t.family == AF_INET) {
		size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;

		pkt[10] = pkt[11] = 0;
		c = csum_fold(csum_add(0, pkt, ihl));
		pkt[10] = (uint8_t)(c >> 8);
		pkt[11] = (uint8_t)c;
		/* A first fragment's checksum covers the whole datagram, which
		 * we do not have: leave it. */
		if (pkt[6] & 0x20)
			return 0;
	}
	l4 = pkt + t.l4_off;
	csum_off = t.proto == IPPROTO_TCP ? 16 : 6;
	l4[csum_off] = l4[csum_off + 1] = 0;
	if (t.family == AF_INET) {
		sum = csum_add(sum, t.saddr, 4);
		sum = csum_add(sum, t.daddr, 4);
	} else {
		sum = csum_add(sum, t.saddr, 16);
		sum = csum_add(sum, t.daddr, 16);
	}
	sum += t.proto;
	sum += (uint32_t)(t.l4_len & 0xffff) + (uint32_t)(t.l4_len >> 16);
	c = csum_fold(csum_add(sum, l4, t.l4_len));
	/* UDP: 0 means "no checksum", so a computed 0 is sent as 0xffff. */
	if (t.proto == IPPROTO_UDP && c == 0)
		c = 0xffff;
	l4[csum_off] = (uint8_t)(c >> 8);
	l4[csum_off + 1] = (uint8_t)c;
	return 0;
}

/* Up to this many packets go to the kernel in one sendmmsg(). */
#define REPLAY_BATCH 64

struct replay {
	int fd4, fd6;
	uint8_t *arena;  /* REPLAY_BATCH buffers of max bytes */
	size_t max;
	struct mmsghdr msg[REPLAY_BATCH];
	struct iovec iov[REPLAY_BATCH];
	union {
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} dst[REPLAY_BATCH];
	const struct sockmig_flow_capture *flow[REPLAY_BATCH];
	uint32_t index[REPLAY_BATCH];
	unsigned n;
	int fd; /* the batch's socket */
	int sent;
};

static int flush(struct replay *x)
{
	unsigned done = 0;

	while (done < x->n) {
		int k = sendmmsg(x->fd, x->msg + done, x->n - done, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			char s[128];
			int r = k < 0 ? -errno : -EIO;

			return sm_fail(r, "cannot replay packet %u of flow %s: %s", x->index[done],
				       sockmig_flow_str(&x->flow[done]->flow, s, sizeof(s)), strerror(-r));
		}
		for (unsigned i = done; i < done + (unsigned)k; i++) {
			char s[128];

			if (x->msg[i].msg_len != x->iov[i].iov_len)
				return sm_fail(-EMSGSIZE, "cannot replay packet %u of flow %s: sent %u of %zu bytes",
					       x->index[i], sockmig_flow_str(&x->flow[i]->flow, s, sizeof(s)),
					       x->msg[i].msg_len, x->iov[i].iov_len);
		}
		done += (unsigned)k;
		x->sent += k;
	}
	x->n = 0;
	return 0;
}

static int queue_one(struct replay *x, const struct sockmig_flow_capture *fc, uint32_t j)
{
	const struct sockmig_packet *p = &fc->packets[j];
	int fd = p->len && p->data[0] >> 4 == 6 ? x->fd6 : x->fd4;
	struct sm_pkt_tuple t;
	uint8_t *copy;
	char s[128];
	int r;

	/* one socket per sendmmsg: a change of family sends what waits */
	if (x->n == REPLAY_BATCH || (x->n && fd != x->fd)) {
		r = flush(x);
		if (r < 0)
			return r;
	}
	copy = x->arena + (size_t)x->n * x->max;
	memcpy(copy, p->data, p->len);
	if (sockmig_packet_fix_checksums(copy, p->len) < 0 || sm_pkt_parse(copy, p->len, &t) < 0)
		return sm_fail(-EINVAL, "cannot replay packet %u of flow %s: not a whole TCP/UDP packet", j,
			       sockmig_flow_str(&fc->flow, s, sizeof(s)));
	x->fd = fd;
	memset(&x->dst[x->n], 0, sizeof(x->dst[x->n]));
	memset(&x->msg[x->n], 0, sizeof(x->msg[x->n]));
	if (t.family == AF_INET) {
		x->dst[x->n].in.sin_family = AF_INET;
		memcpy(&x->dst[x->n].in.sin_addr, t.daddr, 4);
		x->msg[x->n].msg_hdr.msg_namelen = sizeof(x->dst[x->n].in);
	} else {
		x->dst[x->n].in6.sin6_family = AF_INET6;
		memcpy(&x->dst[x->n].in6.sin6_addr, t.daddr, 16);
		/* A link-local destination needs its interface. */
		x->dst[x->n].in6.sin6_scope_id = fc->flow.local.scope_id;
		x->msg[x->n].msg_hdr.msg_namelen = sizeof(x->dst[x->n].in6);
	}
	x->iov[x->n] = (struct iovec){ copy, p->len };
	x->msg[x->n].msg_hdr.msg_name = &x->dst[x->n];
	x->msg[x->n].msg_hdr.msg_iov = &x->iov[x->n];
	x->msg[x->n].msg_hdr.msg_iovlen = 1;
	x->flow[x->n] = fc;
	x->index[x->n] = j;
	x->n++;
	return 0;
}

/* TCP header fields of a captured segment (parsed before). */
struct seg {
	uint8_t flags;
	uint32_t seq, ack;
	uint32_t len; /* payload */
};

static bool seg_of(const struct sockmig_packet *p, struct seg *ret)
{
	struct sm_pkt_tuple t;
	const uint8_t *th;
	size_t doff;

	if (sm_pkt_parse(p->data, p->len, &t) < 0 || t.proto != IPPROTO_TCP)
		return false;
	th = p->data + t.l4_off;
	doff = (size_t)(th[12] >> 4) * 4;
	if (doff < 20 || doff > t.l4_len)
		return false;
	ret->flags = th[13];
	ret->seq = (uint32_t)th[4] << 24 | (uint32_t)th[5] << 16 | (uint32_t)th[6] << 8 | th[7];
	ret->ack = (uint32_t)th[8] << 24 | (uint32_t)th[9] << 16 | (uint32_t)th[10] << 8 | th[11];
	ret->len = (uint32_t)(t.l4_len - doff);
	return true;
}

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

/*
 * Which of a TCP flow's captured segments the replay can leave out, because
 * they would change nothing in the restored socket: a segment with nothing
 * but data and an ACK (no SYN, FIN, RST, URG), whose data, if any, lies
 * within what an earlier replayed segment of the flow carried (the peer's
 * retransmissions during a long freeze), and whose ACK a later segment of
 * the flow repeats or passes (that later one also brings the newer window).
 * What is left out still travels in the image and in a rollback: only the
 * replay skips it. Marks skip[j]; returns how many.
 */
static uint32_t tcp_redundant(const struct sockmig_flow_capture *fc, bool *skip)
{
	uint32_t n = fc->n_packets, skipped = 0;
	bool have_later = false, have_range = false;
	uint32_t later_ack = 0, lo = 0, hi = 0;
	struct seg *sg = calloc(n ? n : 1, sizeof(*sg));
	bool *ok = calloc(n ? n : 1, sizeof(*ok));

	if (!sg || !ok) {
		free(sg);
		free(ok);
		return 0; /* replay everything */
	}
	for (uint32_t j = 0; j < n; j++)
		ok[j] = seg_of(&fc->packets[j], &sg[j]);
	/* backwards: may a later segment stand in for this one's ACK */
	for (uint32_t j = n; j-- > 0;) {
		bool plain = ok[j] && (sg[j].flags & TH_ACK) && !(sg[j].flags & ~(TH_ACK | TH_PSH));

		skip[j] = plain && have_later && (int32_t)(later_ack - sg[j].ack) >= 0;
		if (ok[j] && (sg[j].flags & TH_ACK) && (!have_later || (int32_t)(sg[j].ack - later_ack) > 0)) {
			later_ack = sg[j].ack;
			have_later = true;
		}
	}
	/* forwards: a skipped segment's data must be no more than a copy */
	for (uint32_t j = 0; j < n; j++) {
		uint32_t s = sg[j].seq, e = sg[j].seq + sg[j].len;

		if (!ok[j]) {
			skip[j] = false;
			continue;
		}
		if (skip[j] && sg[j].len && !(have_range && (int32_t)(s - lo) >= 0 && (int32_t)(hi - e) >= 0))
			skip[j] = false;
		if (skip[j]) {
			skipped++;
			continue;
		}
		if (!sg[j].len)
			continue;
		if (have_range && (int32_t)(s - lo) >= 0 && (int32_t)(hi - s) >= 0) {
			if ((int32_t)(e - hi) > 0)
				hi = e;
		} else {
			lo = s;
			hi = e;
			have_range = true;
		}
	}
	free(sg);
	free(ok);
	return skipped;
}

int sockmig_flow_replay(const struct sockmig_flow_capture *fc, size_t n)
{
	struct replay x = { .fd4 = -1, .fd6 = -1 };
	_cleanup_free_ bool *skip = NULL;
	size_t max = 0, most = 0, i;
	bool v4 = false, v6 = false;
	int r, mark = (int)SOCKMIG_ROUTE_MARK;

	for (i = 0; i < n; i++) {
		if (fc[i].n_packets > most)
			most = fc[i].n_packets;
		for (uint32_t j = 0; j < fc[i].n_packets; j++) {
			const struct sockmig_packet *p = &fc[i].packets[j];
			if (p->len > max)
				max = p->len;
			if (p->len && p->data[0] >> 4 == 6)
				v6 = true;
			else
				v4 = true;
		}
	}
	if (!max)
		return 0;
	x.max = max;
	x.arena = malloc(REPLAY_BATCH * max);
	skip = calloc(most, sizeof(*skip));
	if (!x.arena || !skip) {
		free(x.arena);
		return sm_fail(-ENOMEM, "cannot allocate a replay buffer of %d x %zu bytes", REPLAY_BATCH, max);
	}
	/* IPPROTO_RAW: the packet carries its own IP header (IPv4: implied
	 * IP_HDRINCL; IPv6: the kernel takes the header as given too). The
	 * flow routes' mark: a flow in forward or rewrite mode has a local
	 * address that is not local here, and the mark's policy rule routes
	 * it to "lo" (include/sockmig/route.h); without the rule it changes
	 * nothing. */
	r = 0;
	if (v4) {
		x.fd4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
		if (x.fd4 < 0)
			r = sm_fail(-errno, "cannot open a raw IPv4 socket for replay: %m");
		else if (setsockopt(x.fd4, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
			r = sm_fail(-errno, "cannot set SO_MARK on a raw IPv4 socket for replay: %m");
	}
	if (r >= 0 && v6) {
		x.fd6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
		if (x.fd6 < 0)
			r = sm_fail(-errno, "cannot open a raw IPv6 socket for replay: %m");
		else if (setsockopt(x.fd6, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
			r = sm_fail(-errno, "cannot set SO_MARK on a raw IPv6 socket for replay: %m");
	}
	for (i = 0; r >= 0 && i < n; i++) {
		memset(skip, 0, most * sizeof(*skip));
		if (fc[i].flow.proto == IPPROTO_TCP)
			tcp_redundant(&fc[i], skip);
		for (uint32_t j = 0; r >= 0 && j < fc[i].n_packets; j++)
			if (!skip[j])
				r = queue_one(&x, &fc[i], j);
	}
	if (r >= 0 && x.n)
		r = flush(&x);
	if (x.fd4 >= 0)
		close(x.fd4);
	if (x.fd6 >= 0)
		close(x.fd6);
	free(x.arena);
	return r < 0 ? r : x.sent;
}
