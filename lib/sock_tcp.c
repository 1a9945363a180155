/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TCP sockets: save an ESTABLISHED socket in repair mode, recreate it.
 * The call sequence and its preconditions are in include/sockmig/socket.h.
 *
 * Syscall budget (per-socket cost matters: thousands of sockets move in one
 * freeze; bench/sock_cost counts them). Save, 34 with empty queues:
 * getsockname, getpeername, the options (sock_opts.c, 22), TCP_REPAIR,
 * TCP_INFO, TCP_MAXSEG, SIOCOUTQ only with packets in flight, SIOCINQ,
 * 2 x (TCP_REPAIR_QUEUE + TCP_QUEUE_SEQ), TCP_REPAIR_WINDOW, TCP_TIMESTAMP
 * when negotiated, one peek per non-empty queue (+1 queue switch).
 * SIOCOUTQNSD is not needed: TCP_INFO's tcpi_notsent_bytes is the same
 * write_seq - snd_nxt. Restore + resume, 16 with empty queues: socket,
 * TCP_REPAIR, IP_TRANSPARENT, bind, 2 x (TCP_REPAIR_QUEUE + TCP_QUEUE_SEQ),
 * TCP_MAXSEG, connect, TCP_REPAIR_OPTIONS, TCP_TIMESTAMP, the options that
 * differ from a fresh socket's (TCP_CONGESTION at least), TCP_REPAIR_WINDOW;
 * IP_TRANSPARENT, TCP_REPAIR off. Buffers are sized only for queues over
 * 4 KiB, or when locked (sock_opts.c).
 */
#include <fcntl.h>
#include <linux/sockios.h>
/* linux/tcp.h, not netinet/tcp.h: glibc's struct tcp_info stops before
 * tcpi_notsent_bytes. The two headers cannot be mixed. */
#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "sock.h"
#include "sockmig/flow.h"
#include "util.h"

#define TCP_ESTABLISHED SOCKMIG_TCP_ESTABLISHED

#define TCPF(s) (1u << (s))
/* States with an fd that save/restore handle (a close()d socket is an
 * orphan, out of any fd table: FIN states are reached with shutdown()). */
#define TCPF_MIGRATABLE                                                                            \
	(TCPF(SOCKMIG_TCP_ESTABLISHED) | TCPF(SOCKMIG_TCP_FIN_WAIT1) | TCPF(SOCKMIG_TCP_FIN_WAIT2) |  \
	 TCPF(SOCKMIG_TCP_CLOSE_WAIT) | TCPF(SOCKMIG_TCP_LAST_ACK) | TCPF(SOCKMIG_TCP_CLOSING))
/* Our FIN is in the stream (we shut down the write side)... */
#define TCPF_FIN_OUT                                                                               \
	(TCPF(SOCKMIG_TCP_FIN_WAIT1) | TCPF(SOCKMIG_TCP_FIN_WAIT2) | TCPF(SOCKMIG_TCP_LAST_ACK) |    \
	 TCPF(SOCKMIG_TCP_CLOSING))
/* ... the peer's FIN was received. */
#define TCPF_FIN_IN (TCPF(SOCKMIG_TCP_CLOSE_WAIT) | TCPF(SOCKMIG_TCP_LAST_ACK) | TCPF(SOCKMIG_TCP_CLOSING))

/* TCP_REPAIR_OPTIONS codes (TCPOPT_* of the wire). */
#define OPT_MSS 2
#define OPT_WINDOW 3
#define OPT_SACK_PERM 4
#define OPT_TIMESTAMP 8

/* Room the timestamp option takes in every segment: mss_cache excludes it,
 * mss_clamp does not. */
#define TCPOLEN_TSTAMP_ALIGNED 12

static int tcp_fail(int fd, const char *what)
{
	return sm_fail(-errno, "TCP socket fd %d: %s: %s", fd, what, strerror(errno));
}

static int set_int(int fd, int name, int val, const char *what)
{
	if (setsockopt(fd, IPPROTO_TCP, name, &val, sizeof(val)) < 0)
		return tcp_fail(fd, what);
	return 0;
}

static int get_u32(int fd, int name, uint32_t *ret, const char *what)
{
	int v;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, IPPROTO_TCP, name, &v, &len) < 0)
		return tcp_fail(fd, what);
	*ret = (uint32_t)v;
	return 0;
}

/* ---- save ---- */

int sockmig_tcp_save(int fd, struct sockmig_tcp_state *ret)
{
	struct sockmig_tcp_state st = { 0 };
	struct sockaddr_storage ss;
	struct tcp_repair_window win;
	struct tcp_info ti;
	socklen_t len;
	int r, n;

	len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return tcp_fail(fd, "cannot read the local address");
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return sm_fail(-EAFNOSUPPORT, "socket fd %d: address family %d is not migratable",
			       fd, ss.ss_family);
	st.family = (uint8_t)ss.ss_family;
	sm_sockaddr_to_ep(&ss, &st.local);

	/* Before TCP_REPAIR: repair mode overwrites SO_REUSEADDR (sock_opts.c). */
	r = sockmig_sock_opts_save(fd, st.family, IPPROTO_TCP, &st.sockopts);
	if (r < 0)
		return r;

	r = set_int(fd, TCP_REPAIR, TCP_REPAIR_ON, "cannot turn repair mode on");
	if (r < 0)
		return r;

	len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return tcp_fail(fd, "cannot read TCP_INFO");
	if (ti.tcpi_state >= 32 || !(TCPF(ti.tcpi_state) & (TCPF_MIGRATABLE | TCPF(SOCKMIG_TCP_SYN_SENT))))
		return sm_fail(-EOPNOTSUPP, "TCP socket fd %d: state %u is not migratable by sockmig_tcp_save() "
			       "(listeners: sockmig_tcp_listener_save)",
			       fd, ti.tcpi_state);
	st.state = ti.tcpi_state;
	st.opts = ti.tcpi_options & (SOCKMIG_TCPOPT_TIMESTAMPS | SOCKMIG_TCPOPT_SACK | SOCKMIG_TCPOPT_WSCALE);
	st.snd_wscale = ti.tcpi_snd_wscale;
	st.rcv_wscale = ti.tcpi_rcv_wscale;
	st.snd_mss = ti.tcpi_snd_mss;
	st.sndq_unsent = ti.tcpi_notsent_bytes;

	/* In repair mode TCP_MAXSEG reports rx_opt.mss_clamp (the peer's MSS),
	 * which is what TCP_REPAIR_OPTIONS takes back; outside it, mss_cache. */
	r = get_u32(fd, TCP_MAXSEG, &st.mss_clamp, "cannot read TCP_MAXSEG");
	if (r < 0)
		return r;

	len = sizeof(ss);
	if (st.state == SOCKMIG_TCP_SYN_SENT) {
		/* getpeername() says ENOTCONN until the handshake is done */
		r = sm_diag_tcp_peer(fd, st.family, st.local.port, TCPF(SOCKMIG_TCP_SYN_SENT), &st.remote);
		if (r < 0)
			return r;
	} else if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
		return tcp_fail(fd, "cannot read the remote address");
	} else {
		sm_sockaddr_to_ep(&ss, &st.remote);
	}

	/* tcpi_unacked is packets_out: 0 means nothing (data, SYN or FIN)
	 * between snd_una and snd_nxt, so the send queue is the unsent part
	 * alone, which TCP_INFO already gave. */
	if (ti.tcpi_unacked) {
		if (ioctl(fd, SIOCOUTQ, &n) < 0)
			return tcp_fail(fd, "cannot read the send queue size (SIOCOUTQ)");
		st.sndq_len = (uint32_t)n;
	} else {
		st.sndq_len = ti.tcpi_notsent_bytes;
	}
	if (ioctl(fd, SIOCINQ, &n) < 0)
		return tcp_fail(fd, "cannot read the receive queue size (SIOCINQ)");
	st.rcvq_len = (uint32_t)n;

	/* TCP_QUEUE_SEQ reads rcv_nxt for the receive queue and write_seq for
	 * the send queue. The receive queue last: save_queues() peeks the send
	 * queue first and so needs no switch when the receive queue is empty. */
	r = set_int(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "cannot select the receive queue");
	if (r < 0)
		return r;
	r = get_u32(fd, TCP_QUEUE_SEQ, &st.rcv_seq, "cannot read the receive sequence number");
	if (r < 0)
		return r;
	r = set_int(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "cannot select the send queue");
	if (r < 0)
		return r;
	r = get_u32(fd, TCP_QUEUE_SEQ, &st.snd_seq, "cannot read the send sequence number");
	if (r < 0)
		return r;

	/*
	 * FINs take one sequence number each but are not data: take them out
	 * of the numbers and keep them as flags.
	 *
	 *   send:  write_seq counts our FIN; SIOCOUTQ (write_seq - snd_una)
	 *          counts it until it is acked; tcpi_notsent_bytes
	 *          (write_seq - snd_nxt) counts it until it is sent.
	 *   recv:  rcv_nxt counts the peer's FIN; SIOCINQ does not (tcp_inq).
	 */
	if (TCPF(st.state) & TCPF_FIN_OUT) {
		st.flags |= SOCKMIG_TCP_FIN_OUT;
		st.snd_seq--;
		if (st.state == SOCKMIG_TCP_FIN_WAIT2)
			st.flags |= SOCKMIG_TCP_FIN_OUT_ACKED | SOCKMIG_TCP_FIN_OUT_SENT;
		else if (st.sndq_len)
			st.sndq_len--;
		if (st.sndq_unsent)
			st.sndq_unsent--;
		else
			st.flags |= SOCKMIG_TCP_FIN_OUT_SENT;
	}
	/* SYN_SENT: write_seq is ISN + 1 (the SYN), both queues empty. */
	if (st.state == SOCKMIG_TCP_SYN_SENT)
		st.snd_seq--;
	if (TCPF(st.state) & TCPF_FIN_IN) {
		st.flags |= SOCKMIG_TCP_FIN_IN;
		st.rcv_seq--;
	}
	st.snd_una = st.snd_seq - st.sndq_len;

	len = sizeof(win);
	if (getsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, &len) == 0) {
		st.snd_wl1 = win.snd_wl1;
		st.snd_wnd = win.snd_wnd;
		st.max_window = win.max_window;
		st.rcv_wnd = win.rcv_wnd;
		st.rcv_wup = win.rcv_wup;
		st.flags |= SOCKMIG_TCP_HAS_WINDOW;
	} else if (errno != ENOPROTOOPT) {
		return tcp_fail(fd, "cannot read TCP_REPAIR_WINDOW");
	}

	if (st.opts & SOCKMIG_TCPOPT_TIMESTAMPS) {
		r = get_u32(fd, TCP_TIMESTAMP, &st.ts_now, "cannot read TCP_TIMESTAMP");
		if (r < 0)
			return r;
		st.flags |= SOCKMIG_TCP_HAS_TIMESTAMP;
	}

	*ret = st;
	return 0;
}

int sockmig_tcp_save_queues(int fd, const struct sockmig_tcp_state *st, void *sndq, void *rcvq)
{
	ssize_t n;
	int r;

	if ((st->sndq_len && !sndq) || (st->rcvq_len && !rcvq))
		return sm_fail(-EINVAL, "TCP socket fd %d: no buffer for a non-empty queue", fd);

	/* sockmig_tcp_save() left the send queue selected. Peeking it copies
	 * what fits in the buffer but returns the whole queue length (6.18),
	 * so the length check is ">=", and the buffer must come from SIOCOUTQ. */
	if (st->sndq_len) {
		n = recv(fd, sndq, st->sndq_len, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0)
			return tcp_fail(fd, "cannot peek the send queue");
		if ((size_t)n < st->sndq_len)
			return sm_fail(-EIO, "TCP socket fd %d: send queue shrank from %u to %zd bytes (is the flow blocked?)",
				       fd, st->sndq_len, n);
	}
	if (st->rcvq_len) {
		r = set_int(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, "cannot select the receive queue");
		if (r < 0)
			return r;
		n = recv(fd, rcvq, st->rcvq_len, MSG_PEEK | MSG_DONTWAIT);
		if (n < 0)
			return tcp_fail(fd, "cannot peek the receive queue");
		if ((size_t)n != st->rcvq_len)
			return sm_fail(-EIO, "TCP socket fd %d: peeked %zd bytes of a %u-byte receive queue",
				       fd, n, st->rcvq_len);
	}
	return 0;
}

/* ---- restore ---- */

/* Queues up to this size go into a fresh socket's buffers (tcp_wmem[1] and
 * tcp_rmem[1] are 16 KiB and 128 KiB by default) without sizing them first;
 * if they do not (lowered sysctls), write_queue() grows the buffer then. */
#define SMALL_QUEUE 4096

/* Write a whole buffer to the socket without ever blocking. When the buffer
 * is full (EAGAIN from the send path, ENOMEM from tcp_send_rcvq), force it
 * to len + slack once (grow: SO_SNDBUFFORCE or SO_RCVBUFFORCE) and record
 * it in *bufs_set (bit), so that the saved size comes back later; a second
 * failure is an error. */
static int write_queue(int fd, const uint8_t *p, size_t len, const char *what, int grow, unsigned bit,
		       unsigned *bufs_set)
{
	size_t total = len;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if ((errno == EAGAIN || errno == ENOMEM || errno == ENOBUFS) && !(*bufs_set & bit)) {
				int r = sm_setsockopt_int(fd, SOL_SOCKET, grow, (int)(total + 65536),
							  grow == SO_SNDBUFFORCE ? "SO_SNDBUFFORCE" : "SO_RCVBUFFORCE");

				if (r < 0)
					return r;
				*bufs_set |= bit;
				continue;
			}
			return sm_fail(-errno, "TCP socket fd %d: cannot restore the %s (%zu bytes left): %s",
				       fd, what, len, strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int restore_check(const struct sockmig_tcp_state *st, const void *sndq, const void *rcvq,
			 uint32_t snd_una)
{
	if (st->family != AF_INET && st->family != AF_INET6)
		return sm_fail(-EAFNOSUPPORT, "TCP state: address family %u is not supported", st->family);
	if (st->local.family != st->family || st->remote.family != st->family)
		return sm_fail(-EINVAL, "TCP state: endpoint families do not match the socket's");
	if (st->state >= 32 || !(TCPF(st->state) & (TCPF_MIGRATABLE | TCPF(SOCKMIG_TCP_SYN_SENT))))
		return sm_fail(-EOPNOTSUPP, "TCP state: state %u cannot be restored by sockmig_tcp_restore()",
			       st->state);
	if (st->state == SOCKMIG_TCP_SYN_SENT && (st->sndq_len || st->rcvq_len))
		return sm_fail(-EINVAL, "TCP state: a SYN_SENT socket with queued data");
	if (!!(st->flags & SOCKMIG_TCP_FIN_OUT) != !!(TCPF(st->state) & TCPF_FIN_OUT) ||
	    !!(st->flags & SOCKMIG_TCP_FIN_IN) != !!(TCPF(st->state) & TCPF_FIN_IN))
		return sm_fail(-EINVAL, "TCP state: FIN flags 0x%x disagree with state %u", st->flags, st->state);
	if ((st->sndq_len && !sndq) || (st->rcvq_len && !rcvq))
		return sm_fail(-EINVAL, "TCP state: a non-empty queue has no data");
	if (st->snd_seq - st->snd_una != st->sndq_len)
		return sm_fail(-EINVAL, "TCP state: send queue of %u bytes does not span snd_una %u to snd_seq %u",
			       st->sndq_len, st->snd_una, st->snd_seq);
	/* Unsigned distance from the saved snd_una: an ACK older than it, or
	 * one beyond what was ever written, wraps to a huge value. */
	if (snd_una - st->snd_una > st->sndq_len + !!(st->flags & SOCKMIG_TCP_FIN_OUT))
		return sm_fail(-ERANGE, "TCP state: snd_una %u is outside the send queue %u..%u",
			       snd_una, st->snd_una, st->snd_seq);
	return 0;
}

static int set_transparent(int fd, int family, int on)
{
	if (family == AF_INET6)
		return sm_setsockopt_int(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, on, "IPV6_TRANSPARENT");
	return sm_setsockopt_int(fd, IPPROTO_IP, IP_TRANSPARENT, on, "IP_TRANSPARENT");
}

int sockmig_tcp_restore(const struct sockmig_tcp_state *st, const void *sndq, const void *rcvq,
			uint32_t snd_una, int *ret_fd)
{
	_cleanup_close_ int fd = -1;
	const struct sockmig_sock_opts *o = &st->sockopts;
	struct sockaddr_storage ss;
	struct tcp_repair_opt ropts[4];
	uint32_t trim, unacked;
	unsigned bufs_set = 0;
	int nonblock = !(o->present & SOCKMIG_OPT_FILE_FLAGS) || sm_sock_opts_nonblock(o);
	int cur_q = TCP_NO_QUEUE;
	char ep[64];
	int r, salen, nopts = 0;

	r = restore_check(st, sndq, rcvq, snd_una);
	if (r < 0)
		return r;
	/* An ACK of our FIN (captured during the freeze) acks all the data;
	 * the FIN itself comes back in resume. */
	if (snd_una - st->snd_una > st->sndq_len)
		snd_una = st->snd_seq;
	trim = snd_una - st->snd_una;
	unacked = st->sndq_len - trim;

	/* Nothing below needs O_NONBLOCK (the queue writes use MSG_DONTWAIT,
	 * a repair connect() does not wait): the socket is made with the saved
	 * flag, which saves the F_SETFL of most restores. */
	fd = socket(st->family, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0) | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return sm_fail(-errno, "cannot create a TCP socket for %s: %s",
			       sm_ep_str(&st->local, ep, sizeof(ep)), strerror(errno));

	/* Before TCP_REPAIR: SO_REUSEADDR would overwrite the SK_FORCE_REUSE
	 * that repair mode sets so that bind() never conflicts. */
	r = sm_sock_opts_restore_early(fd, st->family, IPPROTO_TCP, o);
	if (r < 0)
		return r;
	r = set_int(fd, TCP_REPAIR, TCP_REPAIR_ON, "cannot turn repair mode on");
	if (r < 0)
		return r;

	/* The destination gets the address only after this socket exists (a
	 * packet of the flow reaching a node without the socket draws an RST).
	 * IP_FREEBIND lets bind() take it, but connect()'s route lookup also
	 * wants the source to be local unless the socket is transparent
	 * (FLOWI_FLAG_ANYSRC): IP_FREEBIND alone gives ENETUNREACH/EINVAL.
	 * sockmig_tcp_resume() puts the saved value back. */
	r = set_transparent(fd, st->family, 1);
	if (r < 0)
		return r;

	/* The saved queues must fit (tcp_sendmsg says EAGAIN without sndbuf
	 * room, tcp_send_rcvq ENOMEM). The kernel doubles the value; truesize
	 * overhead is covered by the slack. Small queues fit a fresh socket:
	 * no call (write_queue() still grows the buffer if they do not). The
	 * saved sizes and locks come back in restore_late. */
	if (st->sndq_len > SMALL_QUEUE) {
		r = sm_setsockopt_int(fd, SOL_SOCKET, SO_SNDBUFFORCE,
				      (int)((st->sndq_len > o->sndbuf / 2 ? st->sndq_len : o->sndbuf / 2) + 65536),
				      "SO_SNDBUFFORCE");
		if (r < 0)
			return r;
		bufs_set |= SM_BUF_SND;
	}
	if (st->rcvq_len > SMALL_QUEUE) {
		r = sm_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUFFORCE,
				      (int)((st->rcvq_len > o->rcvbuf / 2 ? st->rcvq_len : o->rcvbuf / 2) + 65536),
				      "SO_RCVBUFFORCE");
		if (r < 0)
			return r;
		bufs_set |= SM_BUF_RCV;
	}

	salen = sm_ep_to_sockaddr(&st->local, &ss);
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
		return sm_fail(-errno, "cannot bind the restored TCP socket to %s: %s",
			       sm_ep_str(&st->local, ep, sizeof(ep)), strerror(errno));

	/* SYN_SENT: bound, the ISN in write_seq, not connected; resume sends
	 * the SYN again with the same ISN (see syn_resume). */
	if (st->state == SOCKMIG_TCP_SYN_SENT) {
		r = set_int(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "cannot select the send queue");
		if (r < 0)
			return r;
		r = set_int(fd, TCP_QUEUE_SEQ, (int)st->snd_seq, "cannot set the initial sequence number");
		if (r < 0)
			return r;
		r = sm_sock_opts_restore_late_known(fd, st->family, IPPROTO_TCP, o, bufs_set,
						    nonblock ? O_NONBLOCK : 0);
		if (r < 0)
			return r;
		*ret_fd = sm_take_fd(&fd);
		return 0;
	}

	/*
	 * Sequence numbers. connect() in repair mode takes snd_una = snd_nxt =
	 * write_seq from the send queue's TCP_QUEUE_SEQ and rcv_nxt = copied_seq
	 * from the receive queue's; writing the queues back advances write_seq
	 * and rcv_nxt to their saved values:
	 *
	 *   send:  QUEUE_SEQ = snd_una (caller's, >= saved)  ... + unacked = snd_seq
	 *   recv:  QUEUE_SEQ = rcv_seq - rcvq_len            ... + rcvq_len = rcv_seq
	 *
	 * The queue selected last stays selected: the receive queue when it
	 * is written next, else the send queue, ready for its sent part.
	 */
	for (int k = 0; k < 2; k++) {
		int q = (k == 0) == !!st->rcvq_len ? TCP_SEND_QUEUE : TCP_RECV_QUEUE;

		r = set_int(fd, TCP_REPAIR_QUEUE, q,
			    q == TCP_SEND_QUEUE ? "cannot select the send queue" : "cannot select the receive queue");
		if (r < 0)
			return r;
		if (q == TCP_SEND_QUEUE)
			r = set_int(fd, TCP_QUEUE_SEQ, (int)snd_una, "cannot set the send sequence number");
		else
			r = set_int(fd, TCP_QUEUE_SEQ, (int)(st->rcv_seq - st->rcvq_len),
				    "cannot set the receive sequence number");
		if (r < 0)
			return r;
		cur_q = q;
	}

	/* Without a user MSS, connect() in repair mode computes the MSS before
	 * any option is known and the socket keeps sending 524-byte segments
	 * (6.18); TCP_REPAIR_OPTIONS below fixes mss_clamp but not mss_cache. */
	if (st->mss_clamp) {
		/* TCP_MAXSEG refuses more than MAX_TCP_WINDOW (32767); only
		 * loopback-sized MTUs have a larger MSS (65483 on lo). */
		r = set_int(fd, TCP_MAXSEG, (int)(st->mss_clamp < 32767 ? st->mss_clamp : 32767),
			    "cannot set TCP_MAXSEG");
		if (r < 0)
			return r;
	}

	salen = sm_ep_to_sockaddr(&st->remote, &ss);
	if (connect(fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
		return sm_fail(-errno, "cannot connect the restored TCP socket to %s (repair mode, no SYN): %s",
			       sm_ep_str(&st->remote, ep, sizeof(ep)), strerror(errno));

	if (st->mss_clamp) {
		ropts[nopts].opt_code = OPT_MSS;
		ropts[nopts++].opt_val = st->mss_clamp;
	}
	if (st->opts & SOCKMIG_TCPOPT_WSCALE) {
		ropts[nopts].opt_code = OPT_WINDOW;
		ropts[nopts++].opt_val = st->snd_wscale | (uint32_t)st->rcv_wscale << 16;
	}
	if (st->opts & SOCKMIG_TCPOPT_SACK) {
		ropts[nopts].opt_code = OPT_SACK_PERM;
		ropts[nopts++].opt_val = 0;
	}
	if (st->opts & SOCKMIG_TCPOPT_TIMESTAMPS) {
		ropts[nopts].opt_code = OPT_TIMESTAMP;
		ropts[nopts++].opt_val = 0;
	}
	if (nopts && setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, ropts,
				(socklen_t)(nopts * sizeof(ropts[0]))) < 0)
		return tcp_fail(fd, "cannot restore the negotiated options (TCP_REPAIR_OPTIONS)");

	if (st->flags & SOCKMIG_TCP_HAS_TIMESTAMP) {
		r = set_int(fd, TCP_TIMESTAMP, (int)st->ts_now, "cannot set TCP_TIMESTAMP");
		if (r < 0)
			return r;
	}

	if (st->rcvq_len) {
		r = write_queue(fd, rcvq, st->rcvq_len, "receive queue", SO_RCVBUFFORCE, SM_BUF_RCV, &bufs_set);
		if (r < 0)
			return r;
	}

	/*
	 * The send queue, in two parts:
	 *
	 *   snd_una (caller's)      snd_nxt (saved)                 snd_seq
	 *     |---- sent: restored as sent ---|--- restored as NOT sent ---|
	 *
	 * The sent part is written in repair mode (TCP_SEND_QUEUE: queued and
	 * marked sent, nothing transmitted). It must count as sent: the freeze
	 * dropped the peer's last ACKs, so the peer usually has it all, and its
	 * first ACK after resume acknowledges up to the old snd_nxt. Had that
	 * data been restored as unsent, the kernel would discard this ACK as an
	 * ACK of unsent data (6.18: a challenge ACK back, no window update) and
	 * the stream would wait for the persist timer, 3 s measured. An ACK
	 * captured during the freeze moves snd_una and shrinks this part.
	 *
	 * The unsent part is written with repair mode briefly off so that it
	 * goes out on the first ACK instead of waiting 1 to 4 s for an RTO. And
	 * yet nothing leaves now: connect() in repair mode leaves snd_wnd = 0
	 * (tcp_connect_init) and TCP_REPAIR_WINDOW comes after, so
	 * tcp_write_xmit() stops at the window test. TCP_REPAIR_OFF_NO_WP: no
	 * window probe either.
	 */
	uint32_t snd_nxt = st->snd_seq - st->sndq_unsent;
	uint32_t sent = snd_nxt - snd_una <= unacked ? snd_nxt - snd_una : 0;

	if (sent) {
		if (cur_q != TCP_SEND_QUEUE) {
			r = set_int(fd, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, "cannot select the send queue");
			if (r < 0)
				return r;
		}
		r = write_queue(fd, (const uint8_t *)sndq + trim, sent, "send queue (sent part)", SO_SNDBUFFORCE,
				SM_BUF_SND, &bufs_set);
		if (r < 0)
			return r;
	}
	if (unacked - sent) {
		r = set_int(fd, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP, "cannot leave repair mode for the send queue");
		if (r < 0)
			return r;
		r = write_queue(fd, (const uint8_t *)sndq + trim + sent, unacked - sent,
				"send queue (unsent part)", SO_SNDBUFFORCE, SM_BUF_SND, &bufs_set);
		if (r < 0)
			return r;
		r = set_int(fd, TCP_REPAIR, TCP_REPAIR_ON, "cannot turn repair mode back on");
		if (r < 0)
			return r;
	}

	/* Options before the window: TCP_NODELAY (and TCP_CORK off) push the
	 * pending frames at once, and in repair mode with no queue selected a
	 * push transmits for real. With snd_wnd still 0, it sends nothing. */
	r = sm_sock_opts_restore_late_known(fd, st->family, IPPROTO_TCP, o, bufs_set, nonblock ? O_NONBLOCK : 0);
	if (r < 0)
		return r;

	if (st->flags & SOCKMIG_TCP_HAS_WINDOW) {
		struct tcp_repair_window win = {
			.snd_wl1 = st->snd_wl1,
			.snd_wnd = st->snd_wnd,
			.max_window = st->max_window,
			.rcv_wnd = st->rcv_wnd,
			.rcv_wup = st->rcv_wup,
		};

		/* The peer's FIN comes back in resume: until then rcv_nxt is
		 * rcv_seq, and the kernel wants rcv_wup <= rcv_nxt. The window's
		 * right edge stays where it was. */
		if ((int32_t)(win.rcv_wup - st->rcv_seq) > 0) {
			win.rcv_wnd += win.rcv_wup - st->rcv_seq;
			win.rcv_wup = st->rcv_seq;
		}

		if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, sizeof(win)) < 0)
			return tcp_fail(fd, "cannot restore the windows (TCP_REPAIR_WINDOW)");
	}

	*ret_fd = sm_take_fd(&fd);
	return 0;
}

/* Leaving repair mode sets sk_reuse = SK_NO_REUSE: put the saved value back. */
static int reuseaddr_back(int fd, const struct sockmig_tcp_state *st)
{
	if (!st || !(st->sockopts.present & SOCKMIG_OPT_REUSEADDR) || !st->sockopts.reuseaddr)
		return 0;
	return sm_setsockopt_int(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
}

/* ---- half-closed connections: the FINs come back after repair mode ---- */

/*
 * A segment from the peer to the restored socket, made here: the peer's FIN
 * (FIN_IN) or its ACK of our FIN (FIN_WAIT2). Nothing but a segment makes
 * the kernel run tcp_fin() or the FIN_WAIT1 -> FIN_WAIT2 transition. It goes
 * through a raw socket to st->local, which this node owns by resume time, so
 * it loops through "lo" and takes the normal receive path (a flow lock with
 * SOCKMIG_FLOWLOCK_PASS_LOCAL lets it through, as it does the replay).
 * No TCP options: Linux accepts a segment without a timestamp.
 */
static int inject_segment(const struct sockmig_tcp_state *st, uint32_t seq, uint32_t ack, uint8_t flags)
{
	_cleanup_close_ int rfd = -1;
	struct sockmig_endpoint src, dst;
	struct sockaddr_storage ss;
	uint8_t pkt[60] = { 0 }, *tcp;
	uint32_t win = st->snd_wnd >> st->snd_wscale;
	size_t len;
	int salen, r;

	sm_ep_wire(&st->remote, &src);
	sm_ep_wire(&st->local, &dst);
	if (src.family == AF_INET) {
		len = 40;
		pkt[0] = 0x45;
		pkt[3] = (uint8_t)len;
		pkt[6] = 0x40; /* DF */
		pkt[8] = 64;
		pkt[9] = IPPROTO_TCP;
		memcpy(pkt + 12, src.addr, 4);
		memcpy(pkt + 16, dst.addr, 4);
		tcp = pkt + 20;
	} else {
		len = 60;
		pkt[0] = 0x60;
		pkt[5] = 20;
		pkt[6] = IPPROTO_TCP;
		pkt[7] = 64;
		memcpy(pkt + 8, src.addr, 16);
		memcpy(pkt + 24, dst.addr, 16);
		tcp = pkt + 40;
	}
	tcp[0] = (uint8_t)(src.port >> 8);
	tcp[1] = (uint8_t)src.port;
	tcp[2] = (uint8_t)(dst.port >> 8);
	tcp[3] = (uint8_t)dst.port;
	for (int i = 0; i < 4; i++) {
		tcp[4 + i] = (uint8_t)(seq >> (24 - 8 * i));
		tcp[8 + i] = (uint8_t)(ack >> (24 - 8 * i));
	}
	tcp[12] = 5 << 4;
	tcp[13] = flags;
	if (win > 0xffff)
		win = 0xffff;
	tcp[14] = (uint8_t)(win >> 8);
	tcp[15] = (uint8_t)win;
	r = sockmig_packet_fix_checksums(pkt, len);
	if (r < 0)
		return r;

	rfd = socket(src.family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	if (rfd < 0)
		return tcp_fail(rfd, "cannot open a raw socket to restore a FIN");
	dst.port = 0;
	salen = sm_ep_to_sockaddr(&dst, &ss);
	/* Local delivery runs in the softirq that sendto's local_bh_enable()
	 * triggers: the segment is processed when sendto returns. */
	if (sendto(rfd, pkt, len, 0, (struct sockaddr *)&ss, (socklen_t)salen) < 0)
		return sm_fail(-errno, "cannot inject the peer's %s to the restored socket (is its address local yet?): %s",
			       flags & 0x01 ? "FIN" : "ACK", strerror(errno));
	return 0;
}

static int read_state(int fd, uint8_t *ret)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return tcp_fail(fd, "cannot read TCP_INFO");
	*ret = ti.tcpi_state;
	return 0;
}

/* First unacknowledged sequence number now: write_seq - SIOCOUTQ, where
 * write_seq is the data's end plus our FIN once it is queued. */
static int cur_snd_una(int fd, const struct sockmig_tcp_state *st, int fin_queued, uint32_t *ret)
{
	int n;

	if (ioctl(fd, SIOCOUTQ, &n) < 0)
		return tcp_fail(fd, "cannot read the send queue size (SIOCOUTQ)");
	*ret = st->snd_seq + (fin_queued ? 1 : 0) - (uint32_t)n;
	return 0;
}

static int peer_fin(int fd, const struct sockmig_tcp_state *st, int fin_queued)
{
	uint32_t una = 0;
	uint8_t state = 0;
	int r;

	r = cur_snd_una(fd, st, fin_queued, &una);
	if (r < 0)
		return r;
	r = inject_segment(st, st->rcv_seq, una, 0x11 /* FIN|ACK */);
	if (r < 0)
		return r;
	r = read_state(fd, &state);
	if (r < 0)
		return r;
	/* CLOSE_WAIT or CLOSING; or already past them if the peer's real ACK
	 * of our FIN came first (FIN_WAIT2 + FIN = TIME_WAIT, i.e. CLOSE for a
	 * socket with an fd). */
	if (!(TCPF(state) & (TCPF(SOCKMIG_TCP_CLOSE_WAIT) | TCPF(SOCKMIG_TCP_CLOSING) |
			     TCPF(SOCKMIG_TCP_CLOSE))))
		return sm_fail(-EPROTO, "TCP socket fd %d: the restored peer's FIN was not taken (state %u)",
			       fd, state);
	return 0;
}

static int our_fin(int fd)
{
	if (shutdown(fd, SHUT_WR) < 0)
		return tcp_fail(fd, "cannot queue our FIN again (shutdown)");
	return 0;
}

/*
 * The FINs come back once the socket is out of repair mode, as ESTABLISHED:
 * TCP_REPAIR_OFF sends its window probe only in ESTABLISHED (tcp_send_window_probe),
 * and without the peer's answer the restored queue waits for an RTO or the
 * persist timer. Then, in the order they happened:
 *
 *   FIN_WAIT1   shutdown: our FIN goes out after the data (again, if it had
 *               left S: the peer drops the duplicate and ACKs it)
 *   FIN_WAIT2   shutdown, then the peer's ACK of it, made here
 *   CLOSING     shutdown, then the peer's FIN, made here
 *   CLOSE_WAIT  the peer's FIN, made here
 *   LAST_ACK    the peer's FIN, then shutdown
 */
static int fins_back(int fd, const struct sockmig_tcp_state *st)
{
	int r = 0;

	switch (st->state) {
	case SOCKMIG_TCP_FIN_WAIT1:
		return our_fin(fd);
	case SOCKMIG_TCP_FIN_WAIT2:
		r = our_fin(fd);
		if (r < 0)
			return r;
		/* The FIN left at once (the queue is empty); if a closed window
		 * kept it, this ACK is "of unsent data" and dropped, and the
		 * peer's own ACK finishes the job. */
		return inject_segment(st, st->rcv_seq, st->snd_seq + 1, 0x10 /* ACK */);
	case SOCKMIG_TCP_CLOSING:
		r = our_fin(fd);
		if (r < 0)
			return r;
		return peer_fin(fd, st, 1);
	case SOCKMIG_TCP_CLOSE_WAIT:
		return peer_fin(fd, st, 0);
	case SOCKMIG_TCP_LAST_ACK:
		r = peer_fin(fd, st, 0);
		if (r < 0)
			return r;
		return our_fin(fd);
	}
	return 0;
}

/*
 * SYN_SENT: connect() again, out of repair mode, from the same port with the
 * same ISN (tcp_v4_connect/tcp_v6_connect keep a write_seq set beforehand).
 * To the peer this SYN is a retransmission of the one S sent: a peer that
 * never saw it (the usual case: the freeze dropped it, or its SYN-ACK) just
 * answers it; a peer holding a request for it re-sends its SYN-ACK. A new
 * ISN would instead make such a peer answer with an ACK for the old one,
 * which we would reset. Known limit: connect() draws a new timestamp offset
 * (only a repair-mode connect keeps it, and that one sends no SYN), so a
 * SYN-ACK echoing the old SYN's timestamp fails our PAWS check
 * (PAWSActiveRejected): the SYN is retransmitted after 1 s and then succeeds.
 * Done here, not in restore: the SYN must leave once the address is ours
 * and the flow open, not into the freeze's drop rule (1 s retransmit).
 */
static int syn_resume(int fd, const struct sockmig_tcp_state *st)
{
	struct sockaddr_storage ss;
	char ep[64];
	int r, fl, salen;

	r = set_int(fd, TCP_REPAIR, TCP_REPAIR_OFF, "cannot leave repair mode");
	if (r < 0)
		return r;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return tcp_fail(fd, "cannot read the file status flags");
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return tcp_fail(fd, "cannot make the socket non-blocking for connect()");
	salen = sm_ep_to_sockaddr(&st->remote, &ss);
	r = connect(fd, (struct sockaddr *)&ss, (socklen_t)salen) < 0 && errno != EINPROGRESS ? -errno : 0;
	if (!(fl & O_NONBLOCK))
		fcntl(fd, F_SETFL, fl);
	if (r < 0)
		return sm_fail(r, "cannot send the SYN of the restored TCP socket to %s again: %s",
			       sm_ep_str(&st->remote, ep, sizeof(ep)), strerror(-r));
	return reuseaddr_back(fd, st);
}

int sockmig_tcp_resume(int fd, const struct sockmig_tcp_state *st)
{
	int r;

	/* The route is cached in the socket; once the address is local a new
	 * lookup no longer needs FLOWI_FLAG_ANYSRC either. */
	if (!((st->sockopts.present & SOCKMIG_OPT_TRANSPARENT) && st->sockopts.transparent)) {
		r = set_transparent(fd, st->family, 0);
		if (r < 0)
			return r;
	}
	/* TCP_REPAIR_OFF sends a window probe (an ACK for snd_una - 1): the
	 * peer answers at once with its window, and that ACK sends the queue. */
	if (st->state == SOCKMIG_TCP_SYN_SENT)
		return syn_resume(fd, st);
	r = set_int(fd, TCP_REPAIR, TCP_REPAIR_OFF, "cannot leave repair mode");
	if (r < 0)
		return r;
	r = reuseaddr_back(fd, st);
	if (r < 0)
		return r;
	return fins_back(fd, st);
}

int sockmig_tcp_repair_off(int fd, const struct sockmig_tcp_state *st)
{
	int r;

	r = set_int(fd, TCP_REPAIR, TCP_REPAIR_OFF, "cannot leave repair mode");
	if (r < 0)
		return r;
	return reuseaddr_back(fd, st);
}

int sockmig_tcp_discard(int fd)
{
	int on = TCP_REPAIR_ON;

	/* Repair mode is what makes close() silent; setting it again is free
	 * and makes discard safe whatever happened before. Without it close()
	 * would send a FIN or an RST: then the fd stays open. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
		return tcp_fail(fd, "cannot turn repair mode on to close it silently (left open)");
	close(fd);
	return 0;
}
