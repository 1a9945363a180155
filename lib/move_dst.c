/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The destination side of a socket move (include/sockmig/sockets.h), up to
 * RUNNING; after COMMIT: lib/move_dst_live.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "flow.h"
#include "move.h"
#include "move_dst.h"
#include "sock.h"
#include "util.h"

#define DEFAULT_TIMEOUT_MS 10000


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
int sm_dst_block(struct dst *d, bool on)
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

/*
 * An IPv6 address is there as soon as it is added, but packets to it are
 * delivered here only a moment later (addrconf finishes its work in a
 * workqueue, even with IFA_F_NODAD): a UDP queue re-injected right after
 * the address was added went nowhere (32 queued datagrams lost in two
 * moves of six; 8 of 8 kept with 20 ms between). So D sends itself a
 * datagram to the address, and waits until it arrives. Bounded: 200 ms.
 */
static int wait_local6(const uint8_t *addr)
{
	struct sockaddr_in6 to = { .sin6_family = AF_INET6 };
	socklen_t len = sizeof(to);
	char text[INET6_ADDRSTRLEN];
	_cleanup_close_ int rx = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	_cleanup_close_ int tx = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (rx < 0 || tx < 0)
		return -errno;
	memcpy(&to.sin6_addr, addr, 16);
	if (setsockopt(rx, IPPROTO_IPV6, IPV6_FREEBIND, &(int){ 1 }, sizeof(int)) < 0 ||
	    bind(rx, (struct sockaddr *)&to, sizeof(to)) < 0 || getsockname(rx, (struct sockaddr *)&to, &len) < 0)
		return sm_fail(-errno, "cannot check that address %s is local here: %s",
			       inet_ntop(AF_INET6, addr, text, sizeof(text)), strerror(errno));
	for (int i = 0; i < 2000; i++) {
		char b;

		/* local delivery happens within sendto() */
		if (sendto(tx, "?", 1, MSG_DONTWAIT, (struct sockaddr *)&to, sizeof(to)) == 1 &&
		    recv(rx, &b, 1, MSG_DONTWAIT) == 1) {
			if (i)
				sm_debug("move dst: %s took packets after %d tries",
					 inet_ntop(AF_INET6, addr, text, sizeof(text)), i + 1);
			return 0;
		}
		nanosleep(&(struct timespec){ 0, 100000 }, NULL);
	}
	return sm_fail(-ETIMEDOUT, "address %s was added here but does not take packets after 200 ms",
		       inet_ntop(AF_INET6, addr, text, sizeof(text)));
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
		r = sm_dst_block(d, true);
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

			/* Ours for a while only, until finish() keeps it: if
			 * this process dies in the middle of the move, the
			 * kernel takes it back (S has it again by then). */
			r = sm_addr_add_for(d->o->ifname, a->family, a->addr, a->prefixlen,
					    2 * d->timeout_ms / 1000 + 10);
			if (r < 0)
				return r;
			d->n_took = i + 1;
			r = sockmig_addr_announce(d->o->ifname, a->family, a->addr);
			if (r < 0)
				return r;
		}
		for (uint32_t i = 0; i < h->n_addrs; i++) {
			r = h->addrs[i].family == AF_INET6 ? wait_local6(h->addrs[i].addr) : 0;
			if (r < 0)
				return r;
		}
	}
	return 0;
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

/* One pre-copy round into the store. */
static int store_round(struct dst *d, int chan)
{
	struct timeval tv = { .tv_sec = d->timeout_ms / 1000, .tv_usec = (d->timeout_ms % 1000) * 1000 };
	int r;

	if (!d->o->with_process)
		return sm_fail(-EPROTO, "the source sent a pre-copy, but this node takes sockets only");
	if (!d->pcs) {
		uint64_t max = d->o->precopy_max_bytes;

		if (!max)
			max = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / 2;
		r = sockmig_precopy_store_new(max, &d->pcs);
		if (r < 0)
			return sm_fail(r, "cannot take the pre-copy: %s", sockmig_error());
		/* a source that stops in the middle of a round cannot hold us */
		setsockopt(chan, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	r = sockmig_precopy_store_read(d->pcs, chan);
	if (r == -EAGAIN || r == -EWOULDBLOCK)
		return sm_fail(-ETIMEDOUT, "the source stopped sending the pre-copy for %u ms", d->timeout_ms);
	if (r < 0)
		return sm_fail(r, "cannot take the pre-copy: %s", sockmig_error());
	sm_debug("move dst: pre-copy round received");
	return 0;
}

/* A socket of image 1, made as soon as it arrives, in repair mode, while S
 * reads the next ones and then dumps the process: nothing reaches it (the
 * address is not here yet). A UDP socket's queue waits for the address
 * (get_ready); a TCP send queue starts at snd_una: S's own, untrimmed, as
 * what S caught comes later (the replay of those ACKs trims it instead),
 * or from an image file, trimmed by the newest ACK it holds. */
static int restore_early(struct dst *d, struct sm_move_sock *s, uint32_t snd_una)
{
	int r;

	/* a routed flow (its address stays on S): known from the header,
	 * which comes first, and needed before a listener or a UDP socket
	 * is made (TCP connections take it at resume) */
	if (d->o->hooks && !addr_moves(&d->m.hdr, &s->flow.local))
		keep_transparent(s);
	if (s->listener) {
		r = sockmig_tcp_listener_restore(&s->lst, &s->fd);
	} else if (s->proto == IPPROTO_TCP) {
		r = sockmig_tcp_restore(&s->tcp, s->sndq, s->rcvq, snd_una, &s->fd);
	} else {
		socklen_t len = sizeof(s->rcvbuf);

		r = sockmig_udp_restore(&s->udp, &s->fd);
		if (r >= 0 && getsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &s->rcvbuf, &len) < 0)
			s->rcvbuf = 0;
		/* Room until the flows are open (udp_buffers_back). */
		if (r >= 0 && setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &(int){ REPLAY_RCVBUF }, sizeof(int)) < 0)
			r = sm_fail(-errno, "cannot make room for the replay: SO_RCVBUFFORCE: %s", strerror(errno));
	}
	if (r < 0)
		return sm_fail(r, "fd %u: %s", s->id, sockmig_error());
	if (s->proto == IPPROTO_TCP)
		d->st.n_tcp++;
	else
		d->st.n_udp++;
	return 0;
}

/* Image 1, section by section: each socket restored as it comes. */
static int receive_image1(struct dst *d, struct sm_image_reader *rd)
{
	int r, bad = 0;

	while ((r = sm_move_recv_next(rd, d->timeout_ms, &d->m)) > 0) {
		struct sm_move_sock *s;

		if (!d->m.n_socks || bad)
			continue;
		s = &d->m.socks[d->m.n_socks - 1];
		/* read the rest all the same: S says why it stopped, if it did */
		if (s->fd < 0)
			bad = restore_early(d, s, s->tcp.snd_una);
	}
	if (r < 0)
		return sm_fail(r, "cannot read the sockets from the source: %s", sockmig_error());
	if (d->m.has_status && d->m.status == SM_MOVE_ABORT)
		return sm_fail(-ECANCELED, "the source gave up: %s", d->m.reason);
	return bad;
}

/* Pre-copy rounds (each a PRECOPY status, then a pages image into the
 * store; PRECOPY_DONE asks for an answer once all are stored), then image
 * 1, whose sockets are made as they come. */
static int receive_sockets(struct dst *d, int chan)
{
	for (;;) {
		struct sm_image_reader *rd;
		int r;

		r = sm_move_recv_begin(chan, d->timeout_ms, &rd, &d->m);
		if (r < 0)
			return sm_fail(r, "cannot read the sockets from the source: %s", sockmig_error());
		if (d->m.kind == SM_IMAGE_KIND_SOCKETS) {
			r = receive_image1(d, rd);
			sm_image_reader_free(rd);
			return r;
		}
		while ((r = sm_move_recv_next(rd, d->timeout_ms, &d->m)) > 0)
			;
		sm_image_reader_free(rd);
		if (r < 0)
			return sm_fail(r, "cannot read the sockets from the source: %s", sockmig_error());
		if (d->m.status == SM_MOVE_PRECOPY) {
			r = store_round(d, chan);
		} else if (d->m.status == SM_MOVE_PRECOPY_DONE) {
			/* every round before it is stored: S may freeze now */
			r = sm_move_send_status(chan, SM_MOVE_PRECOPY_HELD, NULL);
			if (r < 0)
				sm_fail(r, "the source is gone: %s", sockmig_error());
		} else if (d->m.status == SM_MOVE_ABORT) {
			r = sm_fail(-ECANCELED, "the source gave up: %s", d->m.reason);
		} else {
			r = sm_fail(-EPROTO, "the source sent %s where the sockets were due",
				    sm_move_status_name(d->m.status));
		}
		sm_move_msg_clear(&d->m);
		if (r < 0)
			return r;
	}
}

/* What image 1 says must match what this node was asked to take. */
static int check_kind(const struct dst *d)
{
	if (!(d->m.hdr.flags & SM_MOVE_F_PROCESS) != !d->o->with_process)
		return sm_fail(-EPROTO, d->o->with_process ? "the source sent sockets without their process"
							   : "the source sent a whole process, but this node takes sockets only");
	return 0;
}

/* Image 1 said a process follows: read it (pages staged in memory). */
static int receive_process(struct dst *d, int chan)
{
	struct timeval tv = { .tv_sec = d->timeout_ms / 1000, .tv_usec = (d->timeout_ms % 1000) * 1000 };
	int r;

	if (!d->o->with_process)
		return 0;
	/* a source that stops in the middle cannot hold us */
	setsockopt(chan, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	r = sockmig_restore_prepare2(chan, &(struct sockmig_prepare_opts){ .precopy = d->pcs }, &d->proc);
	/* its pages are the restore's now (or the move fails) */
	sockmig_precopy_store_free(d->pcs);
	d->pcs = NULL;
	if (r == -EAGAIN || r == -EWOULDBLOCK)
		return sm_fail(-ETIMEDOUT, "the source stopped sending the process for %u ms", d->timeout_ms);
	if (r < 0)
		return sm_fail(r, "cannot take the process: %s", sockmig_error());
	sm_debug("move dst: process received");
	return 0;
}


/* S's captures in S's socket order, empty ones left out: the next one for
 * socket i is most often where the last one was found, plus one. */
static const struct sockmig_flow_capture *capture_of(const struct sockmig_flow_capture *caps, size_t n,
						     const struct sockmig_flow *f, size_t *hint)
{
	if (*hint < n && sm_move_flow_eq(&caps[*hint].flow, f))
		return &caps[(*hint)++];
	for (size_t k = 0; k < n; k++)
		if (sm_move_flow_eq(&caps[k].flow, f)) {
			*hint = k + 1;
			return &caps[k];
		}
	return NULL;
}

static uint32_t restore_snd_una(const struct sm_move_sock *s, const struct sockmig_flow_capture *c)
{
	uint32_t una = s->tcp.snd_una;

	/* Only an ACK inside what was queued can trim the queue. */
	if (c && c->has_ack && (int32_t)(c->ack - una) > 0 && (int32_t)(c->ack - s->tcp.snd_seq) <= 0)
		una = c->ack;
	return una;
}

/*
 * Everything that can fail, before RUNNING: the sockets that are not made
 * yet (from an image file: their send queues trimmed by the ACKs S caught),
 * UDP queues re-injected (the addresses are here by now), the process made
 * and held. Then, with S's captures (replay_source), S's packets replayed.
 * What this node caught waits in its capture until COMMIT: S may still send
 * older packets then.
 */
static int get_ready(struct dst *d, const struct sockmig_flow_capture *caps, size_t n_caps)
{
	size_t hint = 0;
	int r = 0;

	d->st.restore_ns = sm_now_ns();
	for (size_t i = 0; i < d->m.n_socks; i++) {
		struct sm_move_sock *s = &d->m.socks[i];

		/* as on S: keep the capture's queue from overflowing */
		if ((i & 255) == 255 && sockmig_capture_poll(d->cap) < 0)
			return sm_fail(-ENOBUFS, "%s", sockmig_error());
		if (s->fd < 0)
			r = restore_early(d, s, restore_snd_una(s, capture_of(caps, n_caps, &s->flow, &hint)));
		if (r < 0)
			return r;
		if (s->proto != IPPROTO_UDP)
			continue;
		s->given = s->udpq ? s->udpq->count : 0;
		if (s->udpq && s->udpq->count) {
			r = sockmig_udp_inject_queue(&s->udp, s->udpq);
			if (r < 0)
				return sm_fail(r, "fd %u: %s", s->id, sockmig_error());
			d->st.udp_queued += s->udpq->count;
		}
	}
	sm_debug("move dst: %zu sockets restored", d->m.n_socks);
	/* The process, with its sockets at their numbers, held stopped: the
	 * sockets are still in repair mode, where a write would go into the
	 * queue as if restored. */
	if (d->proc)
		return restore_process(d);
	return 0;
}

static int replay_source(struct dst *d, const struct sockmig_flow_capture *caps, size_t n_caps)
{
	int r = 0;

	/* SOCKMIG_NO_REPLAY=1 (benchmarks only): drop what was captured, to
	 * measure what replay is worth; the peers then wait for their RTO. */
	if (getenv("SOCKMIG_NO_REPLAY"))
		n_caps = 0;
	/* The oldest packets, first. */
	if (n_caps) {
		r = sockmig_flow_replay(caps, n_caps);
		if (r < 0)
			return r;
		for (size_t i = 0; i < n_caps; i++)
			d->st.captured_src += caps[i].n_packets;
		for (size_t i = 0; i < d->m.n_socks; i++)
			if (d->m.socks[i].proto == IPPROTO_UDP)
				d->m.socks[i].given += sm_dst_packets_for(caps, n_caps, &d->m.socks[i].flow);
	}
	sm_debug("move dst: %u packets of the source replayed (%d sent)", d->st.captured_src, r);
	/* Everything that can fail is done before RUNNING: after COMMIT the
	 * original is gone, and nothing could be given back to S. */
	if (sm_fault("dst-fail-finish"))
		return sm_fail(-ECANCELED, "fault injected: dst-fail-finish");
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
	sockmig_precopy_store_free(d->pcs);
	d->pcs = NULL;
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
	/* (nothing of ours was replayed yet: that waits for COMMIT) */
	if (sm_image_writer_new(chan, SM_IMAGE_KIND_CONTROL, &w) >= 0) {
		if (sm_move_write_captures(w, fc, d->m.n_socks) >= 0 &&
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
	struct sm_move_msg m2 = { 0 }, m3 = { 0 };
	int r;

	r = arm(&d);
	if (r < 0)
		goto out_abort;
	r = receive_sockets(&d, chan);
	if (r < 0)
		goto out_abort;
	sm_debug("move dst: sockets received");
	sm_fault_stall("dst-stall-sockets"); /* the process image still to come */
	/* The sockets exist: the flows can be blocked and the addresses taken
	 * now, while S still dumps the process; and the process is made here
	 * while S, told ANNOUNCED, collects what it caught (each one's work
	 * hidden behind the other's). */
	r = check_kind(&d);
	if (r >= 0)
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
	r = receive_process(&d, chan);
	if (r >= 0)
		r = get_ready(&d, NULL, 0);
	if (r < 0)
		goto out_abort;
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
	r = replay_source(&d, m2.caps, m2.n_caps);
	if (r < 0)
		goto out_abort;
	r = sm_move_send_status(chan, SM_MOVE_RUNNING, NULL);
	sm_debug("move dst: RUNNING sent");
	if (r < 0) {
		/* S cannot learn that we are ready: it rolls back, so must we. */
		sm_fail(r, "cannot tell the source that the sockets are ready here: %s", sockmig_error());
		goto out_discard;
	}
	/* S ends the original once it reads RUNNING, then says COMMIT: only
	 * then do the flows open here and the process run (or the sockets go
	 * to a program). Without COMMIT, S may have rolled back: discard, so
	 * that two copies never run. */
	r = sm_move_recv(chan, d.timeout_ms, &m3);
	if (r >= 0 && (!m3.has_status || m3.status != SM_MOVE_COMMIT))
		r = m3.has_status && m3.status == SM_MOVE_ABORT ? sm_fail(-ECANCELED, "the source gave up: %s", m3.reason)
								: sm_fail(-EPROTO, "the source sent no COMMIT");
	else if (r < 0)
		sm_fail(r, "the source did not confirm the move (no COMMIT): %s", sockmig_error());
	if (r < 0)
		goto out_discard;
	sm_debug("move dst: COMMIT received");
	sm_dst_go_live(&d, m3.caps, m3.n_caps);
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
		sm_move_msg_clear(&m3);
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
	sm_move_msg_clear(&m3);
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
		r = get_ready(&d, d.m.caps, d.m.n_caps);
	if (r >= 0)
		r = replay_source(&d, d.m.caps, d.m.n_caps);
	if (r >= 0) {
		sm_dst_go_live(&d, NULL, 0);
		r = hand_over(&d, ret);
	}
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
