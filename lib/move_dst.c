/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The destination side of a socket move (include/sockmig/sockets.h). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "flow.h"
#include "move.h"
#include "sock.h"
#include "util.h"

#define DEFAULT_TIMEOUT_MS 10000

struct dst {
	const struct sockmig_move_opts *o;
	unsigned timeout_ms;
	struct sm_move_msg m; /* header and sockets */
	struct sockmig_flow *flows;
	struct sockmig_capture *cap;
	struct sockmig_flowlock *lock;
	uint32_t n_took;
	bool frozen;
	struct sockmig_flow *routed; /* o->hooks: flows whose address does not move */
	size_t n_routed;
	bool routes_taken;
	/* What D caught and replayed into sockets it may still have to throw
	 * away: kept until the move commits, to hand back to S on an abort. */
	struct sockmig_flow_capture *caught[4];
	int n_caught;
	struct sockmig_move_stats st;
	struct sockmig_restore *proc; /* with_process: prepared, then held */
	pid_t proc_pid;               /* what it became, once made */
	bool proc_running;
};


/* The address must be local here when the addresses do not move with the
 * sockets: the replay and the UDP re-injection are addressed to it. */
static int check_local(const struct sockmig_endpoint *e, uint32_t fd)
{
	static const uint8_t zero[16];
	struct sockaddr_storage ss;
	struct sockmig_endpoint any = *e;
	char text[INET6_ADDRSTRLEN];
	int s, r;

	if (!memcmp(e->addr, zero, e->family == AF_INET ? 4 : 16))
		return 0;
	any.port = 0;
	r = sm_ep_to_sockaddr(&any, &ss);
	if (r < 0)
		return r;
	s = socket(e->family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	r = bind(s, (struct sockaddr *)&ss, (socklen_t)r) < 0 ? -errno : 0;
	close(s);
	if (r == -EADDRNOTAVAIL)
		return sm_fail(r, "fd %u: address %s is not on this node; take it with --take-address IFACE", fd,
			       inet_ntop(e->family, e->addr, text, sizeof(text)));
	return r;
}

/* The capture and the lock's chains cost milliseconds to make: made before
 * the source freezes anything, they stay out of the pause. */
static int arm(struct dst *d)
{
	int r = 0;

	if (!d->cap)
		r = sockmig_capture_open(&d->cap);
	if (r >= 0 && !d->lock)
		r = sockmig_flowlock_new(SOCKMIG_FLOWLOCK_CAPTURE | SOCKMIG_FLOWLOCK_PASS_LOCAL, d->cap, &d->lock);
	return r;
}

/* Connections blocked whole, listeners only for SYNs (as on S). */
static int block(struct dst *d, bool on)
{
	_cleanup_free_ struct sockmig_flow *cf = calloc(d->m.n_socks + 1, sizeof(*cf));
	_cleanup_free_ struct sockmig_flow *lf = calloc(d->m.n_socks + 1, sizeof(*lf));
	size_t nc = 0, nl = 0;
	int r = 0;

	if (!cf || !lf)
		return -ENOMEM;
	for (size_t i = 0; i < d->m.n_socks; i++) {
		if (d->m.socks[i].listener)
			lf[nl++] = d->flows[i];
		else
			cf[nc++] = d->flows[i];
	}
	if (nc)
		r = on ? sockmig_flow_freeze(d->lock, cf, nc) : sockmig_flow_thaw(d->lock, cf, nc);
	if (r >= 0 && nl)
		r = on ? sockmig_flow_freeze_syn(d->lock, lf, nl) : sockmig_flow_thaw_syn(d->lock, lf, nl);
	return r;
}

static bool addr_moves(const struct sm_move_header *h, const struct sockmig_endpoint *e)
{
	static const uint8_t zero[16];
	size_t alen = e->family == AF_INET ? 4 : 16;

	if (!(h->flags & SM_MOVE_F_ADDRESSES) || !memcmp(e->addr, zero, alen))
		return false;
	for (uint32_t k = 0; k < h->n_addrs; k++)
		if (h->addrs[k].family == e->family && !memcmp(h->addrs[k].addr, e->addr, alen))
			return true;
	return false;
}

/* A routed socket is bound to an address that is not local here (or to
 * the wildcard, reached through the accept route): it keeps
 * IP_TRANSPARENT, to send from that address and to answer new
 * connections to it. */
static void keep_transparent(struct sm_move_sock *s)
{
	struct sockmig_sock_opts *o = s->listener ? &s->lst.sockopts
				    : s->proto == IPPROTO_TCP ? &s->tcp.sockopts : &s->udp.sockopts;

	o->present |= SOCKMIG_OPT_TRANSPARENT;
	o->transparent = 1;
}

static int take_routes(struct dst *d)
{
	char err[400] = "";
	int r;

	d->routed = calloc(d->m.n_socks ? d->m.n_socks : 1, sizeof(*d->routed));
	if (!d->routed)
		return -ENOMEM;
	for (size_t i = 0; i < d->m.n_socks; i++) {
		if (addr_moves(&d->m.hdr, &d->flows[i].local))
			continue;
		d->routed[d->n_routed++] = d->flows[i];
		keep_transparent(&d->m.socks[i]);
	}
	if (!d->n_routed || !d->o->hooks->route_take)
		return 0;
	d->routes_taken = true; /* even half-taken: route_drop undoes all */
	r = d->o->hooks->route_take(d->o->hooks->ctx, d->routed, d->n_routed, err, sizeof(err));
	if (r < 0)
		return sm_fail(r, "cannot take the flows' routes here: %s", err[0] ? err : strerror(-r));
	sm_debug("move dst: %zu flows routed here", d->n_routed);
	return 0;
}

static int prepare(struct dst *d)
{
	const struct sm_move_header *h = &d->m.hdr;
	int r;

	if (!d->m.has_header || d->m.kind != SM_IMAGE_KIND_SOCKETS)
		return sm_fail(-EBADMSG, "the source sent no move header");
	if ((h->flags & SM_MOVE_F_ADDRESSES) && !d->o->ifname)
		return sm_fail(-EINVAL, "the sockets' addresses move with them; name the interface to take them on (--take-address IFACE)");
	d->flows = calloc(d->m.n_socks ? d->m.n_socks : 1, sizeof(*d->flows));
	if (!d->flows)
		return -ENOMEM;
	for (size_t i = 0; i < d->m.n_socks; i++) {
		d->flows[i] = d->m.socks[i].flow;
		if (!(h->flags & SM_MOVE_F_ADDRESSES) && !d->o->hooks) {
			r = check_local(&d->flows[i].local, d->m.socks[i].id);
			if (r < 0)
				return r;
		}
	}
	/* Blocked (and captured) before the address is here: a packet that
	 * reaches D before its socket exists must not draw an RST. */
	r = arm(d);
	if (r >= 0)
		r = block(d, true);
	if (r < 0)
		return r;
	d->frozen = true;
	sm_debug("move dst: flows blocked");
	if (d->o->hooks) {
		r = take_routes(d);
		if (r < 0)
			return r;
	}
	if (h->flags & SM_MOVE_F_ADDRESSES) {
		for (uint32_t i = 0; i < h->n_addrs; i++) {
			const struct sm_move_addr *a = &h->addrs[i];

			r = sockmig_addr_add(d->o->ifname, a->family, a->addr, a->prefixlen);
			if (r < 0)
				return r;
			d->n_took = i + 1;
			r = sockmig_addr_announce(d->o->ifname, a->family, a->addr);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static uint32_t restore_snd_una(const struct sm_move_sock *s, const struct sockmig_flow_capture *caps, size_t n)
{
	uint32_t una = s->tcp.snd_una;

	for (size_t i = 0; i < n; i++) {
		const struct sockmig_flow_capture *c = &caps[i];

		if (!c->has_ack || !sm_move_flow_eq(&c->flow, &s->flow))
			continue;
		/* Only an ACK inside what was queued can trim the queue. */
		if ((int32_t)(c->ack - una) > 0 && (int32_t)(c->ack - s->tcp.snd_seq) <= 0)
			una = c->ack;
	}
	return una;
}

static int replay_local(struct dst *d, uint32_t *count)
{
	struct sockmig_flow_capture *fc = NULL;
	int r = sockmig_capture_collect(d->cap, d->flows, d->m.n_socks, &fc);

	if (r < 0)
		return r;
	for (size_t i = 0; i < d->m.n_socks; i++)
		*count += fc[i].n_packets;
	r = getenv("SOCKMIG_NO_REPLAY") ? 0 : sockmig_flow_replay(fc, d->m.n_socks);
	if (d->n_caught < (int)ARRAY_SIZE(d->caught))
		d->caught[d->n_caught++] = fc;
	else
		sockmig_flow_captures_free(fc, d->m.n_socks);
	return r < 0 ? r : 0;
}

static int restore_process(struct dst *d)
{
	static const struct sockmig_restore_opts defaults = { .stdio_fd = { -1, -1, -1 } };
	struct sockmig_restore_opts ro = d->o->restore ? *d->o->restore : defaults;
	_cleanup_free_ struct sockmig_restore_fd *extra = calloc(d->m.n_socks + 1, sizeof(*extra));
	struct sockmig_restored_proc got;
	int r;

	if (!extra)
		return -ENOMEM;
	for (size_t i = 0; i < d->m.n_socks; i++)
		extra[i] = (struct sockmig_restore_fd){ (int)d->m.socks[i].id, d->m.socks[i].fd };
	ro.extra = extra;
	ro.n_extra = d->m.n_socks;
	r = sockmig_restore_run(d->proc, &ro, &got);
	/* half-way: the process exists, held; it must die unseen */
	if (r >= 0 && sm_fault("dst-fail-restore"))
		r = sm_fail(-EIO, "fault injected: dst-fail-restore");
	if (r < 0)
		return sm_fail(r, "cannot restore the process: %s", sockmig_error());
	d->proc_pid = got.pid;
	if (d->o->ret_proc)
		*d->o->ret_proc = got;
	sm_debug("move dst: process restored, held");
	return 0;
}

/* Image 1 said a process follows: read it (pages staged in memory). */
static int receive_process(struct dst *d, int chan)
{
	struct timeval tv = { .tv_sec = d->timeout_ms / 1000, .tv_usec = (d->timeout_ms % 1000) * 1000 };
	int r;

	if (!(d->m.hdr.flags & SM_MOVE_F_PROCESS) != !d->o->with_process)
		return sm_fail(-EPROTO, d->o->with_process ? "the source sent sockets without their process"
							   : "the source sent a whole process, but this node takes sockets only");
	if (!d->o->with_process)
		return 0;
	/* a source that stops in the middle cannot hold us */
	setsockopt(chan, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r = sockmig_restore_prepare(chan, &d->proc);
	if (r == -EAGAIN || r == -EWOULDBLOCK)
		return sm_fail(-ETIMEDOUT, "the source stopped sending the process for %u ms", d->timeout_ms);
	if (r < 0)
		return sm_fail(r, "cannot take the process: %s", sockmig_error());
	sm_debug("move dst: process received");
	return 0;
}

static int finish(struct dst *d, const struct sockmig_flow_capture *caps, size_t n_caps)
{
	uint64_t t = sm_now_ns();
	int r;

	for (size_t i = 0; i < d->m.n_socks; i++) {
		struct sm_move_sock *s = &d->m.socks[i];

		/* as on S: keep the capture's queue from overflowing */
		if ((i & 255) == 255 && sockmig_capture_poll(d->cap) < 0)
			return sm_fail(-ENOBUFS, "%s", sockmig_error());
		if (s->listener) {
			r = sockmig_tcp_listener_restore(&s->lst, &s->fd);
			d->st.n_tcp++;
		} else if (s->proto == IPPROTO_TCP) {
			r = sockmig_tcp_restore(&s->tcp, s->sndq, s->rcvq, restore_snd_una(s, caps, n_caps), &s->fd);
			d->st.n_tcp++;
		} else {
			r = sockmig_udp_restore(&s->udp, &s->fd);
			if (r >= 0 && s->udpq && s->udpq->count) {
				r = sockmig_udp_inject_queue(&s->udp, s->udpq);
				d->st.udp_queued += s->udpq->count;
			}
			d->st.n_udp++;
		}
		if (r < 0)
			return sm_fail(r, "fd %u: %s", s->id, sockmig_error());
	}
	/* The process, with its sockets at their numbers, held stopped: the
	 * sockets are still in repair mode, where a write would go into the
	 * queue as if restored. Before the replay: the restore takes tens of
	 * ms, and what D catches meanwhile must still be replayed before the
	 * flows open, or a datagram straight from the wire would overtake it. */
	if (d->proc) {
		r = restore_process(d);
		if (r < 0)
			return r;
	}
	/* SOCKMIG_NO_REPLAY=1 (benchmarks only): drop what was captured, to
	 * measure what replay is worth; the peers then wait for their RTO. */
	if (getenv("SOCKMIG_NO_REPLAY"))
		n_caps = 0;
	/* Oldest first: what S captured, then what reached D early. */
	if (n_caps) {
		r = sockmig_flow_replay(caps, n_caps);
		if (r < 0)
			return r;
		for (size_t i = 0; i < n_caps; i++)
			d->st.captured_src += caps[i].n_packets;
	}
	r = replay_local(d, &d->st.captured_dst);
	if (r < 0)
		return r;
	sm_debug("move dst: %u + %u packets replayed", d->st.captured_src, d->st.captured_dst);
	/* Everything that can fail is done before the flows open: once they
	 * do, what reaches D cannot be given back to S. */
	if (sm_fault("dst-fail-finish"))
		return sm_fail(-ECANCELED, "fault injected: dst-fail-finish");
	/* Thawing the flows is one small batch; removing the lock's chains
	 * waits until the sockets run. The shorter this step, the smaller the
	 * window in which a datagram from the wire can overtake one still
	 * waiting in the capture. */
	r = block(d, false);
	if (r < 0)
		return r;
	d->frozen = false;
	/* Copies the kernel queued between the last read and the unblock. */
	r = replay_local(d, &d->st.captured_dst);
	if (r < 0)
		return r;
	for (size_t i = 0; i < d->m.n_socks; i++) {
		struct sm_move_sock *s = &d->m.socks[i];

		if (s->proto != IPPROTO_TCP || s->listener)
			continue;
		r = sockmig_tcp_resume(s->fd, &s->tcp);
		if (r < 0)
			return sm_fail(r, "fd %u: %s", s->id, sockmig_error());
	}
	d->st.restore_ns = sm_now_ns() - t;
	sm_debug("move dst: sockets live");
	return 0;
}

/* Undo everything D did; the source rolls back on its side. */
static void discard(struct dst *d)
{
	for (size_t i = 0; i < d->m.n_socks; i++) {
		struct sm_move_sock *s = &d->m.socks[i];

		if (s->fd < 0)
			continue;
		/* A listener with an empty queue sends nothing when closed. */
		if (s->proto != IPPROTO_TCP || s->listener || sockmig_tcp_discard(s->fd) < 0)
			close(s->fd);
		s->fd = -1;
	}
	for (uint32_t i = 0; i < d->n_took; i++) {
		const struct sm_move_addr *a = &d->m.hdr.addrs[i];

		sockmig_addr_release(d->o->ifname, a->family, a->addr, a->prefixlen);
	}
	d->n_took = 0;
	if (d->routes_taken && d->o->hooks->route_drop)
		d->o->hooks->route_drop(d->o->hooks->ctx, d->routed, d->n_routed);
	d->routes_taken = false;
	/* After the sockets went back into repair mode: a process that dies
	 * now closes them silently. One made but never let run is killed. */
	if (d->proc_running && d->proc_pid > 0)
		kill(d->proc_pid, SIGKILL);
	sockmig_restore_free(d->proc);
	d->proc = NULL;
}

static void dst_free(struct dst *d)
{
	sockmig_restore_free(d->proc);
	d->proc = NULL;
	for (int i = 0; i < d->n_caught; i++)
		sockmig_flow_captures_free(d->caught[i], d->m.n_socks);
	d->n_caught = 0;
	sockmig_flowlock_free(d->lock);
	sockmig_capture_free(d->cap);
	for (size_t i = 0; i < d->m.n_socks; i++)
		if (d->m.socks[i].fd >= 0)
			close(d->m.socks[i].fd);
	sm_move_msg_clear(&d->m);
	free(d->flows);
	free(d->routed);
}

/* The sockets are live: let a sibling process (CLONE_PARENT: our parent
 * reaps it, we do not wait for it) remove the lock and close the capture,
 * while our copies of those fds close for free at the caller's exec, the
 * sibling holding the last reference. A plain fork + wait for a grandchild
 * cost 2 to 7 ms of the pause. */
static void dst_free_in_background(struct dst *d)
{
	pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);

	if (pid == 0) {
		dst_free(d);
		_exit(0);
	}
	if (pid < 0) {
		dst_free(d);
		return;
	}
	sm_debug("move dst: teardown handed to another process");
	sm_move_msg_clear(&d->m);
	free(d->flows);
	free(d->routed);
}

static int hand_over(struct dst *d, struct sockmig_restored **ret)
{
	struct sockmig_restored *r = calloc(1, sizeof(*r) + d->m.n_socks * sizeof(r->socks[0]));

	if (!r)
		return -ENOMEM;
	r->n = d->m.n_socks;
	for (size_t i = 0; i < d->m.n_socks; i++) {
		r->socks[i].target_fd = (int)d->m.socks[i].id;
		r->socks[i].fd = d->m.socks[i].fd;
		r->socks[i].proto = d->m.socks[i].proto;
		d->m.socks[i].fd = -1;
	}
	*ret = r;
	return 0;
}

/*
 * Tell S we give up. Once D has announced the addresses, peers send here:
 * keep catching their packets until S says it has the addresses back (BACK),
 * then hand S what was caught, so that a rolled-back move loses nothing
 * either. A source that does not answer in time gets nothing more.
 */
static void abort_to_source(struct dst *d, int chan)
{
	struct sockmig_flow_capture *fc = NULL;
	struct sm_image_writer *w;
	struct sm_move_msg back = { 0 };

	if (sm_move_send_status(chan, SM_MOVE_ABORT, sockmig_error()) < 0 || (!d->n_took && !d->routes_taken) ||
	    !d->cap)
		return;
	if (sm_move_recv(chan, d->timeout_ms, &back) < 0 || !back.has_status || back.status != SM_MOVE_BACK) {
		sm_move_msg_clear(&back);
		return;
	}
	sm_move_msg_clear(&back);
	if (sockmig_capture_collect(d->cap, d->flows, d->m.n_socks, &fc) < 0)
		return;
	if (sm_image_writer_new(chan, SM_IMAGE_KIND_CONTROL, &w) >= 0) {
		int r = 0;

		/* oldest first: what was already replayed here, then the rest */
		for (int i = 0; r >= 0 && i < d->n_caught; i++)
			r = sm_flow_captures_write(w, d->caught[i], d->m.n_socks);
		if (r >= 0 && sm_flow_captures_write(w, fc, d->m.n_socks) >= 0 &&
		    sm_move_write_status(w, SM_MOVE_ABORT, "the packets this node caught") >= 0)
			sm_image_writer_finish(w);
		sm_image_writer_free(w);
	}
	sockmig_flow_captures_free(fc, d->m.n_socks);
}

int sockmig_sockets_receive(int chan, const struct sockmig_move_opts *o, struct sockmig_restored **ret,
			    struct sockmig_move_stats *ret_stats)
{
	struct dst d = { .o = o, .timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS };
	struct sm_move_msg m2 = { 0 };
	int r;

	r = arm(&d);
	if (r < 0)
		goto out_abort;
	r = sm_move_recv(chan, d.timeout_ms, &d.m);
	if (r < 0) {
		sm_fail(r, "cannot read the sockets from the source: %s", sockmig_error());
		goto out_abort;
	}
	sm_fault_stall("dst-stall-sockets"); /* the process image still to come */
	r = receive_process(&d, chan);
	if (r < 0)
		goto out_abort;
	r = prepare(&d);
	if (r >= 0 && sm_fault("dst-refuse"))
		r = sm_fail(-ECANCELED, "fault injected: dst-refuse");
	if (r < 0)
		goto out_abort;
	r = sm_move_send_status(chan, SM_MOVE_ANNOUNCED, NULL);
	if (sm_fault("dst-exit-announced"))
		_exit(99);
	if (r < 0) {
		sm_fail(r, "the source is gone: %s", sockmig_error());
		goto out_discard;
	}
	sm_debug("move dst: announced");
	sm_fault_stall("dst-stall-announced");
	r = sm_move_recv(chan, d.timeout_ms, &m2);
	sm_debug("move dst: captures received");
	if (r < 0) {
		sm_fail(r, "cannot read the captured packets from the source: %s", sockmig_error());
		goto out_discard;
	}
	if (!m2.has_status || m2.status != SM_MOVE_CONTINUE) {
		r = m2.has_status && m2.status == SM_MOVE_ABORT ?
			    sm_fail(-ECANCELED, "the source gave up: %s", m2.reason) :
			    sm_fail(-EPROTO, "the source sent no CONTINUE");
		goto out_discard;
	}
	r = finish(&d, m2.caps, m2.n_caps);
	if (r < 0)
		goto out_abort;
	r = sm_move_send_status(chan, SM_MOVE_RUNNING, NULL);
	sm_debug("move dst: RUNNING sent");
	if (r < 0) {
		/* S cannot learn that we run: it rolls back, so must we. */
		sm_fail(r, "cannot tell the source that the sockets run here: %s", sockmig_error());
		goto out_discard;
	}
	/* S ends the original once it reads RUNNING, then says COMMIT: only
	 * then may the process run here (or the sockets go to a program).
	 * Without COMMIT, S may have rolled back: discard, so that two
	 * copies never run. */
	sm_move_msg_clear(&m2);
	r = sm_move_recv(chan, d.timeout_ms, &m2);
	if (r >= 0 && (!m2.has_status || m2.status != SM_MOVE_COMMIT))
		r = m2.has_status && m2.status == SM_MOVE_ABORT ? sm_fail(-ECANCELED, "the source gave up: %s", m2.reason)
								: sm_fail(-EPROTO, "the source sent no COMMIT");
	else if (r < 0)
		sm_fail(r, "the source did not confirm the move (no COMMIT): %s", sockmig_error());
	if (r < 0)
		goto out_discard;
	sm_debug("move dst: COMMIT received");
	if (d.proc) {
		r = sockmig_restore_release(d.proc);
		if (r < 0) {
			sm_fail(r, "the process was restored but could not be let run: %s", sockmig_error());
			goto out_discard;
		}
		d.proc_running = true;
		sockmig_restore_free(d.proc);
		d.proc = NULL;
		sm_debug("move dst: process running");
	}
	r = hand_over(&d, ret);
	if (r < 0)
		goto out_discard;
	if (ret_stats)
		*ret_stats = d.st;
	if (o->cleanup_in_background) {
		sm_move_msg_clear(&m2);
		dst_free_in_background(&d);
		return 0;
	}
	goto out;

out_abort:
	abort_to_source(&d, chan);
out_discard:
	discard(&d);
out:
	sm_move_msg_clear(&m2);
	dst_free(&d);
	return r;
}

int sockmig_sockets_restore_image(int in_fd, const struct sockmig_move_opts *o, struct sockmig_restored **ret,
				  struct sockmig_move_stats *ret_stats)
{
	struct dst d = { .o = o, .timeout_ms = DEFAULT_TIMEOUT_MS };
	struct sm_image_reader *rd;
	int r;

	r = sm_image_reader_new_fd(in_fd, &rd);
	if (r < 0)
		return r;
	r = sm_move_msg_read(rd, &d.m);
	sm_image_reader_free(rd);
	if (r < 0)
		return r;
	r = prepare(&d);
	if (r >= 0)
		r = finish(&d, d.m.caps, d.m.n_caps);
	if (r >= 0)
		r = hand_over(&d, ret);
	if (r < 0)
		discard(&d);
	else if (ret_stats)
		*ret_stats = d.st;
	dst_free(&d);
	return r;
}

void sockmig_restored_free(struct sockmig_restored *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		if (r->socks[i].fd >= 0)
			close(r->socks[i].fd);
	free(r);
}
