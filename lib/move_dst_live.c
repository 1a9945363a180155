/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The destination side of a socket move after COMMIT (lib/move_dst.c has
 * what comes before): the last packets replayed in their order, the flows
 * opened, and what opening them could put out of order put back in order.
 * docs/socket-move.md, "Sequence".
 */
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "flow.h"
#include "move.h"
#include "move_dst.h"
#include "sock.h"
#include "util.h"

/* What this node caught, replayed (after COMMIT: a failure is noted, not
 * fatal; what the packets were for is done by then). Returns how many. */
static uint32_t replay_local(struct dst *d)
{
	struct sockmig_flow_capture *fc = NULL;
	uint32_t n = 0;

	if (sockmig_capture_collect(d->cap, d->flows, d->m.n_socks, &fc) < 0) {
		sm_debug("move dst: cannot collect what this node caught: %s", sockmig_error());
		d->replay_failed = true;
		return 0;
	}
	if (!getenv("SOCKMIG_NO_REPLAY") && sockmig_flow_replay(fc, d->m.n_socks) < 0) {
		sm_debug("move dst: %s", sockmig_error());
		d->replay_failed = true;
	}
	for (size_t i = 0; i < d->m.n_socks; i++) {
		n += fc[i].n_packets;
		d->m.socks[i].given += fc[i].n_packets;
	}
	d->st.captured_dst += n;
	sockmig_flow_captures_free(fc, d->m.n_socks);
	return n;
}

/* Replay until a collect finds nothing (bounded): the unblock that follows
 * then leaves only the moment of its own syscall for packets to be caught
 * in and come late. */
static void replay_settled(struct dst *d)
{
	for (int i = 0; i < 16 && replay_local(d); i++)
		;
}

static uint32_t sock_meminfo(int fd, int which)
{
	uint32_t mi[SK_MEMINFO_VARS] = { 0 };
	socklen_t len = sizeof(mi);

	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) < 0 || len <= (socklen_t)(which * sizeof(mi[0])))
		return 0;
	return mi[which];
}

/*
 * The buffer back to its size once the flows are open. What the replay
 * queued stays, and the process reads it only once it runs: had the buffer
 * its old size by then, what comes from the wire meanwhile would find it
 * full and be dropped (lost datagrams, measured at 5,000 a second). So
 * what is queued is added to the old size (the process sees a larger
 * SO_RCVBUF, by about what it has not yet read), unless it is small
 * beside it.
 */
static void udp_buffers_back(struct dst *d)
{
	for (size_t i = 0; i < d->m.n_socks; i++) {
		const struct sm_move_sock *s = &d->m.socks[i];
		const struct sockmig_sock_opts *o = &s->udp.sockopts;
		uint32_t queued;
		int v;

		if (s->proto != IPPROTO_UDP || s->fd < 0 || !s->rcvbuf)
			continue;
		queued = sock_meminfo(s->fd, SK_MEMINFO_RMEM_ALLOC);
		v = s->rcvbuf;
		if (queued > (uint32_t)v / 4)
			v += (int)queued;
		v /= 2; /* the kernel doubles it */
		setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v));
		/* SO_RCVBUFFORCE locked the size: the saved lock back */
		v = (o->present & SOCKMIG_OPT_BUF_LOCK) ? o->buf_lock : 0;
		setsockopt(s->fd, SOL_SOCKET, SO_BUF_LOCK, &v, sizeof(v));
	}
}

/* A UDP socket's packets in caps, however many sections carry them. */
uint32_t sm_dst_packets_for(const struct sockmig_flow_capture *caps, size_t n, const struct sockmig_flow *f)
{
	uint32_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (sm_move_flow_eq(&caps[i].flow, f))
			k += caps[i].n_packets;
	return k;
}

/* A captured UDP packet as a datagram of a queue (pointers into it). */
static bool dgram_of(const struct sockmig_packet *p, struct sockmig_udp_dgram *ret)
{
	struct sm_pkt_tuple t;

	if (sm_pkt_parse(p->data, p->len, &t) < 0 || t.proto != IPPROTO_UDP || t.l4_len < 8)
		return false;
	memset(ret, 0, sizeof(*ret));
	ret->src.family = ret->dst.family = t.family;
	memcpy(ret->src.addr, t.saddr, 16);
	memcpy(ret->dst.addr, t.daddr, 16);
	ret->src.port = t.sport;
	ret->dst.port = t.dport;
	ret->len = (uint32_t)(t.l4_len - 8);
	ret->data = p->data + t.l4_off + 8;
	return true;
}

/*
 * Put `late` (caught before the flows opened) into socket i's queue ahead
 * of what came straight from the wire since (the process has read nothing:
 * it is held): freeze the flow again, take the whole queue out, put it
 * back with `late` where it belongs, replay what came meanwhile (newer than
 * all of it), open again. 0, or -errno if the queue could not be rebuilt:
 * then `late` is still to be replayed, behind, and the flow is open.
 */
static int udp_requeue(struct dst *d, size_t i, struct sockmig_flow_capture *late)
{
	struct sm_move_sock *s = &d->m.socks[i];
	_cleanup_free_ struct sockmig_udp_dgram *dg = NULL;
	struct sockmig_udp_queue *q = NULL, *all = NULL;
	uint32_t n = 0, k;
	int r;

	if (d->replay_failed || sock_meminfo(s->fd, SK_MEMINFO_DROPS))
		return sm_fail(-ESTALE, "what its queue holds is not known (a replay failed, or it dropped some)");
	r = sockmig_flow_freeze(d->lock, &d->flows[i], 1);
	if (r < 0)
		return r;
	r = sockmig_udp_save_queue(s->fd, &s->udp, &q);
	if (r >= 0 && q->count < s->given)
		r = sm_fail(-ESTALE, "its queue holds %u datagrams, fewer than the %u it was given", q->count, s->given);
	if (r >= 0) {
		dg = calloc((size_t)q->count + late->n_packets + 1, sizeof(*dg));
		r = dg ? 0 : -ENOMEM;
	}
	for (k = 0; r >= 0 && k <= q->count; k++) {
		if (k == s->given)
			for (uint32_t j = 0; j < late->n_packets; j++)
				n += dgram_of(&late->packets[j], &dg[n]);
		if (k < q->count)
			dg[n++] = q->dgrams[k];
	}
	if (r >= 0)
		r = sockmig_udp_queue_new(dg, n, &all);
	/* out, and back in order: nothing can come in meanwhile (frozen) */
	for (k = 0; r >= 0 && k < q->count; k++)
		if (recv(s->fd, NULL, 0, MSG_DONTWAIT | MSG_TRUNC) < 0)
			r = sm_fail(-errno, "cannot take its queue out: %s", strerror(errno));
	if (r >= 0)
		r = sockmig_udp_inject_queue(&s->udp, all);
	if (r >= 0) {
		s->given = all->count;
		sm_flow_capture_clear(late);
		/* what came while it was frozen again: the newest */
		replay_settled(d);
	}
	if (sockmig_flow_thaw(d->lock, &d->flows[i], 1) < 0 && r >= 0)
		r = -EIO;
	sockmig_udp_queue_free(q);
	sockmig_udp_queue_free(all);
	return r < 0 ? r : 0;
}

/*
 * The flows are open; a packet caught in the moment before (after our last
 * collect) reaches us only now, and newer ones may already be in the
 * socket, straight from the wire. TCP puts segments in order itself. A UDP
 * socket would deliver the datagrams out of order: each such flow is
 * frozen again and its queue rebuilt in order (udp_requeue), then opened,
 * and what was caught in that moment again is handled the same way, 15
 * times at most. Each time the moment is only the unblock's syscall (0.1
 * to 0.5 ms here), so a flow that sends a few thousand datagrams a second
 * is through in one or two. A test forces the first moment
 * (SOCKMIG_FAULT=dst-thaw-race).
 */
#define REQUEUE_ROUNDS 16
static void late_packets(struct dst *d)
{
	for (int round = 0; round < REQUEUE_ROUNDS; round++) {
		struct sockmig_flow_capture *late = NULL;
		bool again = false;

		if (sockmig_capture_collect(d->cap, d->flows, d->m.n_socks, &late) < 0)
			return;
		for (size_t i = 0; i < d->m.n_socks; i++) {
			struct sockmig_flow_capture *l = &late[i];
			uint32_t n = l->n_packets;

			if (!n)
				continue;
			d->st.captured_dst += n;
			if (getenv("SOCKMIG_NO_REPLAY"))
				continue;
			if (d->m.socks[i].proto == IPPROTO_UDP && d->lock && round < REQUEUE_ROUNDS - 1) {
				if (udp_requeue(d, i, l) == 0) {
					sm_debug("move dst: fd %u: %u datagrams caught as the flows opened, put in order",
						 d->m.socks[i].id, n);
					again = true;
					continue;
				}
				sm_debug("move dst: fd %u: %u datagrams caught as the flows opened come late: %s",
					 d->m.socks[i].id, n, sockmig_error());
			}
			if (sockmig_flow_replay(l, 1) < 0)
				sm_debug("move dst: %s", sockmig_error());
			d->m.socks[i].given += n;
		}
		sockmig_flow_captures_free(late, d->m.n_socks);
		if (!again)
			return;
	}
}

/*
 * After COMMIT: S's last packets, then ours, then the flows open, then
 * repair mode off. Nothing here may undo the move (S has ended the
 * original): a step that fails is noted and the next one runs.
 */
void sm_dst_go_live(struct dst *d, const struct sockmig_flow_capture *tail, size_t n_tail)
{
	if (getenv("SOCKMIG_NO_REPLAY"))
		n_tail = 0;
	if (n_tail && sockmig_flow_replay(tail, n_tail) < 0) {
		sm_debug("move dst: %s", sockmig_error());
		d->replay_failed = true;
	}
	for (size_t i = 0; i < n_tail; i++)
		d->st.captured_src += tail[i].n_packets;
	for (size_t i = 0; n_tail && i < d->m.n_socks; i++)
		if (d->m.socks[i].proto == IPPROTO_UDP)
			d->m.socks[i].given += sm_dst_packets_for(tail, n_tail, &d->m.socks[i].flow);
	replay_settled(d);
	sm_debug("move dst: %u + %u packets replayed", d->st.captured_src, d->st.captured_dst);
	if (sm_fault("dst-thaw-race"))
		nanosleep(&(struct timespec){ 0, 30000000 }, NULL);
	/* One small batch: the shorter, the fewer packets are caught in the
	 * moment before it and need late_packets(). */
	if (sm_dst_block(d, false) < 0) {
		/* the lock's whole table goes instead: open at any rate */
		sm_debug("move dst: cannot open the flows, removing the lock: %s", sockmig_error());
		sockmig_flowlock_free(d->lock);
		d->lock = NULL;
	}
	d->frozen = false;
	sm_debug("move dst: flows unblocked");
	late_packets(d);
	udp_buffers_back(d);
	for (size_t i = 0; i < d->m.n_socks; i++) {
		struct sm_move_sock *s = &d->m.socks[i];

		if (s->proto != IPPROTO_TCP || s->listener)
			continue;
		if (sockmig_tcp_resume(s->fd, &s->tcp) < 0)
			sm_debug("move dst: fd %u: %s", s->id, sockmig_error());
	}
	d->st.restore_ns = sm_now_ns() - d->st.restore_ns;
	sm_debug("move dst: sockets live");
}
