/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The source side of a socket move (include/sockmig/sockets.h); COMMIT and
 * what follows it: lib/move_src_end.c. */
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>

#include "flow.h"
#include "move.h"
#include "move_src.h"
#include "rtnl.h"
#include "sock.h"
#include "sockmig/ckpt.h"
#include "sockmig/proc.h"
#include "util.h"

#define DEFAULT_TIMEOUT_MS 10000

static bool addr_is_any(const struct sockmig_endpoint *e)
{
	static const uint8_t zero[16];

	return !memcmp(e->addr, zero, e->family == AF_INET ? 4 : 16);
}

static bool addr_stays(const struct src *s, const struct sockmig_endpoint *e)
{
	size_t alen = e->family == AF_INET ? 4 : 16;

	if (!s->o->hooks)
		return false;
	if (addr_is_any(e))
		return true;
	for (size_t k = 0; k < s->o->n_stay_addrs; k++)
		if (s->o->stay_addrs[k].family == e->family && !memcmp(s->o->stay_addrs[k].addr, e->addr, alen))
			return true;
	return false;
}

/* The local addresses of the sockets, with their prefix on o->ifname;
 * those that stay (routed flows) are left out. */
static int find_addresses(struct src *s)
{
	_cleanup_free_ struct sm_rtnl_addr *addrs = NULL;
	struct sm_rtnl *rt;
	size_t n_addrs = 0;
	int ifindex, r;

	ifindex = (int)if_nametoindex(s->o->ifname);
	if (!ifindex)
		return sm_fail(-ENODEV, "this node has no interface %s", s->o->ifname);
	r = sm_rtnl_open(&rt);
	if (r < 0)
		return r;
	r = sm_rtnl_addr_dump(rt, AF_UNSPEC, ifindex, &addrs, &n_addrs);
	sm_rtnl_close(rt);
	if (r < 0)
		return r;
	for (size_t i = 0; i < s->n; i++) {
		const struct sockmig_endpoint *e = &s->flows[i].local;
		size_t alen = e->family == AF_INET ? 4 : 16;
		bool known = false, found = false;
		char text[INET6_ADDRSTRLEN];

		if (addr_is_any(e) || addr_stays(s, e))
			continue;
		for (uint32_t k = 0; k < s->hdr.n_addrs; k++)
			known |= s->hdr.addrs[k].family == e->family && !memcmp(s->hdr.addrs[k].addr, e->addr, alen);
		if (known)
			continue;
		for (size_t k = 0; k < n_addrs && !found; k++) {
			if (addrs[k].family != e->family || memcmp(&addrs[k].addr, e->addr, alen))
				continue;
			if (s->hdr.n_addrs == SM_MOVE_MAX_ADDRS)
				return sm_fail(-E2BIG, "more than %d addresses to move", SM_MOVE_MAX_ADDRS);
			s->hdr.addrs[s->hdr.n_addrs].family = e->family;
			s->hdr.addrs[s->hdr.n_addrs].prefixlen = addrs[k].prefixlen;
			memcpy(s->hdr.addrs[s->hdr.n_addrs].addr, e->addr, alen);
			s->hdr.n_addrs++;
			found = true;
		}
		/* With hooks, an address that is not ours (a flow routed here
		 * from its home) is routed on. */
		if (!found && !s->o->hooks)
			return sm_fail(-EADDRNOTAVAIL, "pid %d fd %u: its address %s is not on interface %s, so it cannot move with it",
				       (int)sockmig_proc_pid(s->proc), s->socks[i].id,
				       inet_ntop(e->family, e->addr, text, sizeof(text)), s->o->ifname);
	}
	s->hdr.flags |= SM_MOVE_F_ADDRESSES;
	return 0;
}

static int add_sock(struct src *s, int fd, uint8_t proto, int local)
{
	struct sm_move_sock *ns = realloc(s->socks, (s->n + 1) * sizeof(*ns));
	struct sockmig_flow *nf;

	if (!ns)
		return -ENOMEM;
	s->socks = ns;
	nf = realloc(s->flows, (s->n + 1) * sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	s->flows = nf;
	memset(&ns[s->n], 0, sizeof(ns[s->n]));
	ns[s->n].id = (uint32_t)fd;
	ns[s->n].proto = proto;
	ns[s->n].fd = local;
	s->n++;
	return 0;
}

static bool tcp_state_movable(int state)
{
	switch (state) {
	case TCP_ESTABLISHED:
	case TCP_SYN_SENT:
	case TCP_FIN_WAIT1:
	case TCP_FIN_WAIT2:
	case TCP_CLOSE_WAIT:
	case TCP_LAST_ACK:
	case TCP_CLOSING:
	case TCP_LISTEN:
		return true;
	}
	return false;
}

/* Take our handle `local` on the process's fd into the move, with its flow. */
static int add_movable(struct src *s, int fd, int local, const struct sockmig_fd_info *info)
{
	struct sockmig_flow *f;
	int r;

	r = add_sock(s, fd, info->kind == SOCKMIG_FD_TCP ? IPPROTO_TCP : IPPROTO_UDP, local);
	if (r < 0) {
		close(local);
		return r;
	}
	f = &s->flows[s->n - 1];
	s->socks[s->n - 1].listener = info->tcp_state == TCP_LISTEN;
	r = sm_move_flow_of_fd(local, s->socks[s->n - 1].proto, f);
	/* In SYN_SENT there is no peer name yet; sock_diag knows the peer. */
	if (r >= 0 && info->tcp_state == TCP_SYN_SENT) {
		struct sockmig_endpoint peer;

		r = sm_diag_tcp_peer(local, info->family, f->local.port, 1u << TCP_SYN_SENT, &peer);
		if (r >= 0)
			sm_ep_wire(&peer, &f->remote);
	}
	if (r < 0)
		return sm_fail(r, "pid %d fd %d: cannot read its addresses: %s", (int)sockmig_proc_pid(s->proc), fd,
			       strerror(-r));
	s->socks[s->n - 1].flow = *f;
	return 0;
}

static bool have_fd(const struct src *s, int fd)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->socks[i].id == (uint32_t)fd)
			return true;
	return false;
}

static bool port_of_listener(const struct src *s, const struct sockmig_flow *f)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct sockmig_flow *l = &s->socks[i].flow;

		if (s->socks[i].listener && l->local.port == f->local.port &&
		    (addr_is_any(&l->local) ||
		     (l->local.family == f->local.family &&
		      !memcmp(l->local.addr, f->local.addr, l->local.family == AF_INET ? 4 : 16))))
			return true;
	}
	return false;
}

/*
 * Listeners: hold new connection attempts (captured, for D), then let the
 * application, still running, accept everything that waits and finish the
 * handshakes in progress. The connections it accepts meanwhile are new fds:
 * they move too.
 */
static int drain_listeners(struct src *s)
{
	uint64_t deadline = sm_now_ns() + (uint64_t)(s->o->drain_ms ? s->o->drain_ms : 2000) * 1000000ull;
	_cleanup_free_ struct sockmig_flow *lf = calloc(s->n, sizeof(*lf));
	_cleanup_free_ int *fds = NULL;
	size_t nl = 0, n_fds = 0;
	int r;

	if (!lf)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++)
		if (s->socks[i].listener)
			lf[nl++] = s->flows[i];
	if (!nl)
		return 0;
	r = sockmig_flow_freeze_syn(s->lock, lf, nl);
	if (r < 0)
		return r;
	for (;;) {
		uint32_t busy = 0, busy_fd = 0;
		struct timespec pause = { 0, 500000 };

		for (size_t i = 0; i < s->n; i++) {
			uint32_t q = 0, p = 0;

			if (!s->socks[i].listener)
				continue;
			if (sockmig_tcp_listener_queue(s->socks[i].fd, &q, NULL) < 0 ||
			    sockmig_listener_pending(&s->flows[i], &p) < 0)
				return -EIO;
			if (q + p) {
				busy = q + p;
				busy_fd = s->socks[i].id;
			}
		}
		if (!busy)
			break;
		if (sm_now_ns() > deadline)
			return sm_fail(-EBUSY, "pid %d fd %u: %u connections wait in its listen queue and the application did not accept them within %u ms",
				       (int)sockmig_proc_pid(s->proc), busy_fd, busy,
				       s->o->drain_ms ? s->o->drain_ms : 2000);
		/* No event tells when an application accepts: poll, bounded. */
		nanosleep(&pause, NULL);
	}
	sm_debug("move src: listeners drained");
	r = sockmig_proc_fd_list(s->proc, &fds, &n_fds);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n_fds; i++) {
		struct sockmig_fd_info info;
		struct sockmig_flow f;
		int local;

		if (have_fd(s, fds[i]) || sockmig_proc_fd_get(s->proc, fds[i], &local) < 0)
			continue;
		if (sockmig_fd_describe(local, fds[i], &info) < 0 || info.kind != SOCKMIG_FD_TCP ||
		    info.tcp_state == TCP_LISTEN || !tcp_state_movable(info.tcp_state) ||
		    sm_move_flow_of_fd(local, IPPROTO_TCP, &f) < 0 || !port_of_listener(s, &f)) {
			close(local);
			continue;
		}
		r = add_movable(s, fds[i], local, &info);
		if (r < 0)
			return r;
		s->hdr.n_sockets++;
	}
	return 0;
}

/* Everything that can be refused is refused here, before anything changes. */
static int preflight(struct src *s, pid_t pid)
{
	_cleanup_free_ int *all = NULL;
	const int *fds = s->o->with_process ? NULL : s->o->fds;
	size_t n_fds = s->o->with_process ? 0 : s->o->n_fds;
	bool explicit = fds != NULL;
	int r;

	r = sockmig_proc_open(pid, &s->proc);
	if (r < 0)
		return r;
	if (!explicit) {
		r = sockmig_proc_fd_list(s->proc, &all, &n_fds);
		if (r < 0)
			return r;
		fds = all;
	}
	for (size_t i = 0; i < n_fds; i++) {
		struct sockmig_fd_info info;
		int local;

		r = sockmig_proc_fd_get(s->proc, fds[i], &local);
		if (r < 0)
			return r;
		r = sockmig_fd_describe(local, fds[i], &info);
		if (r < 0) {
			close(local);
			return r;
		}
		if (info.kind == SOCKMIG_FD_TCP && !tcp_state_movable(info.tcp_state)) {
			close(local);
			return sm_fail(-EOPNOTSUPP, "pid %d fd %d: a TCP socket in state %s cannot be moved",
				       (int)pid, fds[i], sockmig_tcp_state_name(info.tcp_state));
		}
		if (info.kind != SOCKMIG_FD_TCP && info.kind != SOCKMIG_FD_UDP) {
			close(local);
			if (!explicit)
				continue; /* stays with the process */
			if (info.kind == SOCKMIG_FD_NOT_SOCKET)
				return sm_fail(-ENOTSOCK, "pid %d fd %d is not a socket", (int)pid, fds[i]);
			return sm_fail(-EOPNOTSUPP, "pid %d fd %d is a %s, which cannot be moved", (int)pid, fds[i],
				       sockmig_fd_kind_name(info.kind));
		}
		r = add_movable(s, fds[i], local, &info);
		if (r < 0)
			return r;
	}
	if (s->n == 0 && !s->o->with_process)
		return sm_fail(-ENOENT, "pid %d has no TCP or UDP socket to move", (int)pid);
	if (s->o->with_process) {
		/* everything else the process has: refused now, before the
		 * freeze, if it cannot be moved */
		s->skip = calloc(s->n ? s->n : 1, sizeof(int));
		if (!s->skip)
			return -ENOMEM;
		for (size_t i = 0; i < s->n; i++)
			s->skip[i] = (int)s->socks[i].id;
		s->ckpt = (struct sockmig_ckpt_opts){ .skip_fds = s->skip, .n_skip_fds = s->n };
		r = sockmig_ckpt_check(s->proc, &s->ckpt);
		if (r < 0)
			return r;
		s->hdr.flags |= SM_MOVE_F_PROCESS;
	}
	s->hdr.version = SM_MOVE_VERSION;
	s->hdr.pid = (uint32_t)pid;
	s->hdr.n_sockets = (uint32_t)s->n;
	if (s->o->ifname)
		return find_addresses(s);
	return 0;
}

/* Listeners are already held to SYNs only: their established connections
 * have flows of their own. */
static int freeze_connections(struct src *s)
{
	_cleanup_free_ struct sockmig_flow *cf = calloc(s->n ? s->n : 1, sizeof(*cf));
	size_t nc = 0;

	if (!cf)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++)
		if (!s->socks[i].listener)
			cf[nc++] = s->flows[i];
	return nc ? sockmig_flow_freeze(s->lock, cf, nc) : 0;
}

/* The capture and the lock first: they cost milliseconds, and their fds
 * must be low numbers (libnftables select()s on its socket, which fails past
 * FD_SETSIZE once thousands of the process's fds are ours). */
static int arm(struct src *s)
{
	int r = sockmig_capture_open(&s->cap);

	if (r < 0)
		return r;
	/* PASS_LOCAL: a rollback replays into the originals through lo while
	 * the wire is still blocked. (A peer on this same node would not be
	 * frozen: such moves are not supported.) */
	return sockmig_flowlock_new(SOCKMIG_FLOWLOCK_CAPTURE | SOCKMIG_FLOWLOCK_PASS_LOCAL, s->cap, &s->lock);
}

/* Before the freeze: connections accepted while the listeners drain join
 * the move, and may use further addresses. */
static int before_freeze(struct src *s)
{
	int r = drain_listeners(s);

	if (r >= 0 && s->o->ifname)
		r = find_addresses(s);
	return r;
}

static int write_socket(struct sm_image_writer *w, const struct sm_move_sock *m)
{
	struct sm_buf b;
	int r;

	if (m->proto == IPPROTO_TCP && !m->listener)
		return sm_sock_image_write_tcp(w, m->id, &m->tcp, m->sndq, m->rcvq);
	if (m->proto == IPPROTO_UDP)
		return sm_sock_image_write_udp(w, m->id, &m->udp, m->udpq);
	sm_buf_init(&b);
	r = sm_sock_encode_listener(&b, m->id, &m->lst);
	if (r >= 0)
		r = sm_image_write_buf(w, SM_SEC_TCP_LISTENER, &b);
	sm_buf_free(&b);
	return r;
}

/*
 * Stop, freeze, read every socket. With w (a move), each socket goes to D
 * as soon as it is read, so that D restores one while we read the next
 * (at 1,000 sockets the two took 30 and 45 ms one after the other). A
 * write that fails (the channel) is left in *ret_wr, apart from a failure
 * to read a socket (the return value).
 */
static int freeze_and_save(struct src *s, struct sm_image_writer *w, int *ret_wr)
{
	uint64_t t;
	int r;

	/* Stop the process first, then freeze: a reply it sends between the
	 * freeze and the stop would be dropped by the lock, which TCP
	 * retransmits but UDP loses. Stopped, it sends nothing; what arrives
	 * until the freeze waits in the queues that are saved next. */
	sm_debug("move src: stopping the process");
	s->t_frozen = t = sm_now_ns();
	r = sockmig_proc_stop(s->proc);
	if (r < 0)
		return r;
	r = freeze_connections(s);
	if (r < 0)
		return r;
	sm_debug("move src: process stopped, flows frozen");
	for (size_t i = 0; i < s->n; i++) {
		struct sm_move_sock *m = &s->socks[i];

		/* Thousands of frozen flows fill the capture's queue while we
		 * read: drain it as we go (a full queue fails the move). */
		if ((i & 255) == 255 && sockmig_capture_poll(s->cap) < 0)
			return sm_fail(-ENOBUFS, "%s", sockmig_error());
		if (m->listener) {
			r = sockmig_tcp_listener_save(m->fd, &m->lst);
			s->st.n_tcp++;
		} else if (m->proto == IPPROTO_TCP) {
			r = sockmig_tcp_save(m->fd, &m->tcp);
			if (r < 0)
				return sm_fail(r, "pid %d fd %u: %s", (int)s->hdr.pid, m->id, sockmig_error());
			m->sndq = m->tcp.sndq_len ? malloc(m->tcp.sndq_len) : NULL;
			m->rcvq = m->tcp.rcvq_len ? malloc(m->tcp.rcvq_len) : NULL;
			if ((m->tcp.sndq_len && !m->sndq) || (m->tcp.rcvq_len && !m->rcvq))
				return sm_fail(-ENOMEM, "pid %d fd %u: no memory for its queues", (int)s->hdr.pid, m->id);
			r = sockmig_tcp_save_queues(m->fd, &m->tcp, m->sndq, m->rcvq);
			s->st.n_tcp++;
		} else {
			r = sockmig_udp_save(m->fd, &m->udp);
			if (r >= 0)
				r = sockmig_udp_save_queue(m->fd, &m->udp, &m->udpq);
			if (r >= 0 && m->udpq)
				s->st.udp_queued += m->udpq->count;
			s->st.n_udp++;
		}
		if (r < 0)
			return sm_fail(r, "pid %d fd %u: %s", (int)s->hdr.pid, m->id, sockmig_error());
		if (w && *ret_wr >= 0)
			*ret_wr = write_socket(w, m);
	}
	s->st.save_ns = sm_now_ns() - t;
	sm_debug("move src: %zu sockets saved", s->n);
	return 0;
}

static int write_sockets(struct src *s, struct sm_image_writer *w)
{
	int r = sm_move_write_header(w, &s->hdr);

	for (size_t i = 0; r >= 0 && i < s->n; i++)
		r = write_socket(w, &s->socks[i]);
	return r;
}

/* The flows whose local address does not travel in the header: the
 * hooks route them. */
static int find_routed(struct src *s)
{
	s->n_routed = 0;
	if (!s->o->hooks)
		return 0;
	free(s->routed);
	s->routed = calloc(s->n ? s->n : 1, sizeof(*s->routed));
	if (!s->routed)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++) {
		const struct sockmig_endpoint *e = &s->flows[i].local;
		size_t alen = e->family == AF_INET ? 4 : 16;
		bool moves = false;

		for (uint32_t k = 0; k < s->hdr.n_addrs && !moves; k++)
			moves = s->hdr.addrs[k].family == e->family && !memcmp(s->hdr.addrs[k].addr, e->addr, alen) &&
				!addr_is_any(e);
		if (!moves)
			s->routed[s->n_routed++] = s->flows[i];
	}
	return 0;
}

static void route_back(struct src *s)
{
	if (s->switched && s->o->hooks->route_back)
		s->o->hooks->route_back(s->o->hooks->ctx, s->routed, s->n_routed);
	s->switched = false;
}

/*
 * Pre-copy: the process's memory goes to D while it runs, round after
 * round, each carrying what was written since the one before; the freeze
 * then dumps only what changed since the last. Rounds stop once that is
 * small (what the freeze can send in about a millisecond) or stops
 * shrinking (the process writes as fast as we send).
 */
#define PRECOPY_ENOUGH (256u << 10)
static int expect(struct src *s, int chan, uint32_t want);
static int precopy(struct src *s, int chan)
{
	uint64_t last = UINT64_MAX;
	int r;

	r = sockmig_precopy_start(s->proc, &s->pc);
	if (r < 0)
		return sm_fail(r, "cannot start the pre-copy: %s", sockmig_error());
	for (unsigned i = 0; i < s->o->precopy_rounds; i++) {
		struct sockmig_precopy_stats st = { 0 };
		uint64_t bytes;

		r = sm_move_send_status(chan, SM_MOVE_PRECOPY, NULL);
		if (r >= 0)
			r = sockmig_precopy_round(s->pc, chan, &st);
		if (r < 0)
			return sm_fail(r, "cannot send the pre-copy to the destination: %s", sockmig_error());
		s->st.precopy_rounds++;
		s->st.precopy_bytes += st.bytes;
		bytes = st.pages * 4096;
		sm_debug("move src: pre-copy round %u: %llu pages, %llu bytes, %.3f ms", st.round,
			 (unsigned long long)st.pages, (unsigned long long)st.bytes, (double)st.ns / 1e6);
		if (i && (bytes <= PRECOPY_ENOUGH || bytes >= last))
			break;
		last = bytes;
	}
	/* The rounds went into the channel faster than D stores them (64 MiB
	 * took D 150 to 200 ms more than S to handle, measured): freezing now,
	 * the process would wait while D catches up. D answers once it holds
	 * every round; the freeze starts then. */
	r = sm_move_send_status(chan, SM_MOVE_PRECOPY_DONE, NULL);
	if (r < 0)
		return sm_fail(r, "cannot send the pre-copy to the destination: %s", sockmig_error());
	r = expect(s, chan, SM_MOVE_PRECOPY_HELD);
	if (r < 0)
		return r;
	sm_debug("move src: pre-copy held by the destination");
	s->ckpt.precopy = s->pc;
	s->ckpt.precopy_stats = &s->frozen_pc;
	return 0;
}

/* Put everything back as it was. Best effort: each step runs even if an
 * earlier one failed, and the first failure is what is reported. */
static int rollback(struct src *s)
{
	char saved[512];
	struct sockmig_flow_capture *late = NULL;
	int r = 0, k;

	snprintf(saved, sizeof(saved), "%s", sockmig_error());
	route_back(s);
	if (s->released) {
		for (uint32_t i = 0; i < s->hdr.n_addrs; i++) {
			const struct sm_move_addr *a = &s->hdr.addrs[i];

			k = sockmig_addr_add(s->o->ifname, a->family, a->addr, a->prefixlen);
			if (k < 0 && !r)
				r = k;
		}
	}
	for (size_t i = 0; i < s->n; i++) {
		struct sm_move_sock *m = &s->socks[i];

		if (m->proto == IPPROTO_TCP && !m->listener && m->fd >= 0) {
			k = sockmig_tcp_repair_off(m->fd, m->tcp.family ? &m->tcp : NULL);
			if (k < 0 && !r)
				r = k;
		}
	}
	/* What the freeze dropped goes to the originals, oldest first, while
	 * the flows are still blocked to the wire (the replay comes in on lo,
	 * which the lock lets through): nothing new can overtake it. */
	if (s->sent_caps)
		sockmig_flow_replay(s->sent_caps, s->n_sent_caps);
	/* After D gave up: what S caught until it took the peers back, then
	 * what D caught, then what came back to S since. */
	if (s->pre_back)
		sockmig_flow_replay(s->pre_back, s->n);
	if (s->dst_caps)
		sockmig_flow_replay(s->dst_caps, s->n_dst_caps);
	if (s->cap && s->lock && sockmig_capture_collect(s->cap, s->flows, s->n, &late) >= 0) {
		sockmig_flow_replay(late, s->n);
		sockmig_flow_captures_free(late, s->n);
		late = NULL;
	}
	sockmig_flowlock_free(s->lock);
	s->lock = NULL;
	/* Copies the kernel queued between the last read and the unblock. */
	if (s->cap && sockmig_capture_collect(s->cap, s->flows, s->n, &late) >= 0) {
		sockmig_flow_replay(late, s->n);
		sockmig_flow_captures_free(late, s->n);
	}
	/* D may have announced the addresses already (it does before it
	 * answers): take the peers back, whether we had released them or not. */
	if (s->o->ifname && (s->hdr.flags & SM_MOVE_F_ADDRESSES)) {
		for (uint32_t i = 0; i < s->hdr.n_addrs; i++) {
			const struct sm_move_addr *a = &s->hdr.addrs[i];

			k = sockmig_addr_announce(s->o->ifname, a->family, a->addr);
			if (k < 0 && !r)
				r = k;
		}
	}
	if (s->proc) {
		k = sockmig_proc_resume(s->proc);
		if (k < 0 && !r)
			r = k;
	}
	/* the process exactly as before the pre-copy (the kernel's
	 * unregister walk, out of the stop) */
	sockmig_precopy_free(s->pc);
	s->pc = NULL;
	/* The caller reports why the move failed, not how the rollback went. */
	sm_fail(0, "%s", saved);
	return r;
}

static void src_free(struct src *s)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->socks[i].fd >= 0)
			close(s->socks[i].fd);
		free(s->socks[i].sndq);
		free(s->socks[i].rcvq);
		sockmig_udp_queue_free(s->socks[i].udpq);
	}
	free(s->socks);
	free(s->flows);
	free(s->routed);
	free(s->skip);
	sockmig_precopy_free(s->pc);
	sockmig_flowlock_free(s->lock);
	sockmig_flow_captures_free(s->sent_caps, s->n_sent_caps);
	sockmig_flow_captures_free(s->dst_caps, s->n_dst_caps);
	sockmig_flow_captures_free(s->pre_back, s->pre_back ? s->n : 0);
	sockmig_capture_free(s->cap);
	sockmig_proc_free(s->proc);
}

/* D gave up after announcing: get the peers back first, then what D caught
 * while they were sending there (see abort_to_source in move_dst.c). */
static void take_back(struct src *s, int chan)
{
	char saved[512];
	struct sm_move_msg m;

	if (!s->switched && (!s->o->ifname || !(s->hdr.flags & SM_MOVE_F_ADDRESSES)))
		return;
	snprintf(saved, sizeof(saved), "%s", sockmig_error());
	/* Older than anything D caught: keep it apart, for the replay order. */
	if (sockmig_capture_collect(s->cap, s->flows, s->n, &s->pre_back) < 0)
		s->pre_back = NULL;
	route_back(s);
	for (uint32_t i = 0; s->o->ifname && i < s->hdr.n_addrs; i++) {
		const struct sm_move_addr *a = &s->hdr.addrs[i];

		if (s->released)
			sockmig_addr_add(s->o->ifname, a->family, a->addr, a->prefixlen);
		sockmig_addr_announce(s->o->ifname, a->family, a->addr);
	}
	s->released = false; /* back already */
	if (sm_move_send_status(chan, SM_MOVE_BACK, NULL) >= 0 && sm_move_recv(chan, s->timeout_ms, &m) >= 0) {
		if (m.has_status && m.status == SM_MOVE_ABORT) {
			s->dst_caps = m.caps;
			s->n_dst_caps = m.n_caps;
			m.caps = NULL;
			m.n_caps = 0;
		}
		sm_move_msg_clear(&m);
	}
	sm_fail(0, "%s", saved);
}

static int expect(struct src *s, int chan, uint32_t want)
{
	struct sm_move_msg m;
	int r = sm_move_recv(chan, s->timeout_ms, &m);

	if (r < 0)
		return sm_fail(r, "the destination did not answer: %s", sockmig_error());
	if (!m.has_status || m.status != want) {
		if (m.has_status && m.status == SM_MOVE_ABORT) {
			r = sm_fail(-ECANCELED, "the destination refused: %s", m.reason);
			s->dst_aborted = true;
		}
		else
			r = sm_fail(-EPROTO, "the destination answered %s where %s was due",
				    m.has_status ? sm_move_status_name(m.status) : "without a status",
				    sm_move_status_name(want));
	}
	sm_move_msg_clear(&m);
	return r;
}

int sockmig_sockets_send(pid_t pid, const struct sockmig_move_opts *o, int chan, struct sockmig_move_stats *ret_stats)
{
	struct src s = { .o = o, .timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS };
	struct sm_image_writer *w = NULL;
	bool killed;
	int r, wr = 0;

	r = arm(&s);
	if (r >= 0)
		r = preflight(&s, pid);
	if (r < 0)
		goto out; /* nothing changed yet */
	if (o->with_process && o->precopy_rounds) {
		r = precopy(&s, chan);
		if (r < 0) {
			/* nothing frozen: D stops, the tracking ends (src_free) */
			sm_move_send_status(chan, SM_MOVE_ABORT, sockmig_error());
			goto out;
		}
	}
	r = before_freeze(&s);
	if (r >= 0)
		r = sm_image_writer_new(chan, SM_IMAGE_KIND_SOCKETS, &w);
	if (r >= 0)
		wr = sm_move_write_header(w, &s.hdr);
	if (r >= 0)
		r = freeze_and_save(&s, w, &wr);
	if (r >= 0 && sm_fault("src-fail-save"))
		r = sm_fail(-EIO, "fault injected: src-fail-save");
	/* a test's split: catch something here first (50 ms) */
	if (r >= 0 && sm_fault("src-tail-split"))
		nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
	if (r < 0) {
		/* D may be restoring what it got: it gives up on this */
		if (w && wr >= 0 && sm_move_write_status(w, SM_MOVE_ABORT, sockmig_error()) >= 0)
			sm_image_writer_finish(w);
		sm_image_writer_free(w);
		goto out_rollback;
	}
	if (wr >= 0)
		wr = sm_image_writer_finish(w);
	sm_image_writer_free(w);
	w = NULL;
	if (wr < 0) {
		r = sm_fail(wr, "cannot send the sockets to the destination: %s", sockmig_error());
		goto out_rollback;
	}
	sm_debug("move src: sockets sent");
	if (o->with_process) {
		r = sm_fault("src-fail-process") ? sm_fail(-EIO, "fault injected: src-fail-process")
						  : sockmig_ckpt_dump(s.proc, chan, &s.ckpt);
		if (r < 0) {
			sm_fail(r, "cannot send the process to the destination: %s", sockmig_error());
			goto out_rollback;
		}
		s.st.frozen_pages = s.frozen_pc.pages;
		sm_debug("move src: process sent");
	}
	r = expect(&s, chan, SM_MOVE_ANNOUNCED);
	if (r < 0)
		goto out_rollback;
	sm_debug("move src: destination announced");

	/* Packets the peers sent before they heard the announcement may still
	 * be on their way here: no need to wait for them (a quiet of 1 ms cost
	 * that much of the pause, and was no guarantee), they go with COMMIT.
	 * And the captures go before the addresses are released (RTM_DELADDR
	 * took 0.3 to 2.7 ms here): D replays them meanwhile. What reaches S
	 * from now on is caught all the same, and goes with COMMIT too. */
	r = sockmig_capture_collect(s.cap, s.flows, s.n, &s.sent_caps);
	sm_debug("move src: packets collected");
	if (r < 0)
		goto out_abort;
	s.n_sent_caps = s.n;
	s.st.captured_src += sm_src_count_packets(s.sent_caps, s.n);
	s.split = sm_fault("src-tail-split");
	for (size_t i = 0; s.split && i < s.n; i++)
		s.held += s.sent_caps[i].n_packets / 2;

	r = sm_image_writer_new(chan, SM_IMAGE_KIND_SOCKETS, &w);
	if (r >= 0)
		r = sm_src_write_captures(w, s.sent_caps, s.n, s.split);
	if (r >= 0)
		r = sm_move_write_status(w, SM_MOVE_CONTINUE, NULL);
	if (r >= 0)
		r = sm_image_writer_finish(w);
	sm_image_writer_free(w);
	if (r < 0) {
		sm_fail(r, "cannot send the captured packets to the destination: %s", sockmig_error());
		goto out_rollback;
	}
	sm_debug("move src: captures sent");

	if (o->ifname) {
		s.released = true; /* even half-released: rollback re-adds all */
		for (uint32_t i = 0; i < s.hdr.n_addrs; i++) {
			const struct sm_move_addr *a = &s.hdr.addrs[i];

			r = sockmig_addr_release(o->ifname, a->family, a->addr, a->prefixlen);
			if (r < 0 && r != -EADDRNOTAVAIL)
				goto out_abort;
		}
	}
	sm_debug("move src: addresses released");
	r = find_routed(&s);
	if (r >= 0 && s.n_routed) {
		s.switched = true; /* even half-switched: route_back undoes all */
		char err[400] = "";

		r = o->hooks->route_switch ? o->hooks->route_switch(o->hooks->ctx, s.routed, s.n_routed, err, sizeof(err))
					   : 0;
		if (r < 0)
			sm_fail(r, "cannot route the flows to the destination: %s", err[0] ? err : strerror(-r));
		sm_debug("move src: %zu flows routed", s.n_routed);
	}
	if (r < 0)
		goto out_abort;

	r = expect(&s, chan, SM_MOVE_RUNNING);
	if (r < 0)
		goto out_rollback;
	sm_debug("move src: destination running");
	s.st.frozen_ns = sm_now_ns() - s.t_frozen;
	/* The third message: D opens the flows and lets the process run (or
	 * hands the sockets over) only on COMMIT, which goes out once the
	 * original can never run again. If it is lost, D discards its copy: a
	 * process may be lost then, but two copies never run. */
	killed = o->with_process && !sm_src_exit_kills(&s);
	if (killed)
		kill(sockmig_proc_pid(s.proc), SIGKILL);
	sm_src_send_commit(&s, chan);
	/* What is left here (the original's memory torn down, the sockets
	 * destroyed, the lock removed) would take the CPU D needs to go live.
	 * D writes to the channel or closes it once it runs: after that, or
	 * 100 ms. Nothing is read: the caller may expect D's words. */
	poll(&(struct pollfd){ .fd = chan, .events = POLLIN }, 1, 100);
	if (o->with_process && !killed)
		kill(sockmig_proc_pid(s.proc), SIGKILL);
	sm_src_commit(&s);
	if (ret_stats)
		*ret_stats = s.st;
	r = 0;
	goto out;

out_abort:
	sm_move_send_status(chan, SM_MOVE_ABORT, sockmig_error());
out_rollback:
	if (s.dst_aborted)
		take_back(&s, chan);
	rollback(&s);
out:
	src_free(&s);
	return r;
}

int sockmig_sockets_snapshot(pid_t pid, const struct sockmig_move_opts *o, int out_fd,
			     struct sockmig_move_stats *ret_stats)
{
	struct src s = { .o = o, .timeout_ms = DEFAULT_TIMEOUT_MS };
	struct sm_image_writer *w = NULL;
	int r, k;

	r = arm(&s);
	if (r >= 0)
		r = preflight(&s, pid);
	if (r < 0)
		goto out;
	r = before_freeze(&s);
	if (r >= 0)
		r = freeze_and_save(&s, NULL, NULL);
	if (r >= 0)
		r = sockmig_capture_collect(s.cap, s.flows, s.n, &s.sent_caps);
	if (r >= 0) {
		s.n_sent_caps = s.n;
		for (size_t i = 0; i < s.n; i++)
			s.st.captured_src += s.sent_caps[i].n_packets;
		r = sm_image_writer_new(out_fd, SM_IMAGE_KIND_SOCKETS, &w);
	}
	if (r >= 0)
		r = write_sockets(&s, w);
	/* a snapshot keeps one 0x0301 section per flow (docs/socket-move.md) */
	if (r >= 0)
		r = sm_flow_captures_write(w, s.sent_caps, s.n);
	if (r >= 0)
		r = sm_image_writer_finish(w);
	sm_image_writer_free(w);
	s.st.frozen_ns = sm_now_ns() - s.t_frozen;
	/* A snapshot is a copy: the process keeps its connections. */
	k = rollback(&s);
	if (r >= 0 && k < 0)
		r = k;
	if (r >= 0 && ret_stats)
		*ret_stats = s.st;
out:
	src_free(&s);
	return r;
}
