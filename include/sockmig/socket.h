/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Socket engine: read the whole kernel state of a live TCP or UDP socket into
 * plain data, and make an equivalent socket from that data somewhere else
 * (another network namespace, another node).
 *
 * Live handles are plain fds; everything that travels is plain data with
 * fixed-width fields (struct sockmig_tcp_state, struct sockmig_udp_state),
 * encoded into an image field by field (sock_image.c, docs/socket-engine.md).
 *
 * ---- TCP: the call sequence -------------------------------------------------
 *
 *   source S                                   destination D
 *   --------                                   -------------
 *   block the flow both ways (netfilter)   (1)
 *   stop the owner; fd = pidfd_getfd()
 *   sockmig_tcp_save(fd, &st)              (2)  socket left in repair mode
 *   sockmig_tcp_save_queues(fd, &st, sndq, rcvq)
 *           ---- st + queues travel in the image ---->
 *                                              block the flow on D            (3)
 *                                              sockmig_tcp_restore(&st, sndq,
 *                                                 rcvq, snd_una, &fd2)    (4)(5)
 *                                              replay captured packets into fd2
 *                                              switch the address to D
 *                                              sockmig_tcp_resume(fd2, &st)  (6)
 *   commit:   sockmig_tcp_discard(fd)      (7)
 *   rollback: sockmig_tcp_repair_off(fd)   (7)
 *
 * (1) PRECONDITION: repair mode is not a freeze. A socket in repair mode still
 *     receives, ACKs and transmits; block the flow with netfilter before
 *     sockmig_tcp_save() or the state read is already stale.
 * (2) The socket is put in repair mode and left there, even when a later
 *     step fails (a failure before that step leaves it untouched). The
 *     caller decides how to leave it: (7).
 * (3) The restored socket can send from the moment it is connected (timers,
 *     replayed ACKs): keep its flow blocked on D until the address switch.
 * (4) ACKs captured during the freeze acknowledge part of the send queue. The
 *     caller passes the newest ACK as snd_una (never past st.snd_seq); restore
 *     trims the send queue accordingly:
 *
 *        saved snd_una   newer ACK       saved snd_nxt          snd_seq
 *          |---------------|-----------------|----------------------|
 *          |<-- trimmed -->|<- back as sent ->|<- back as NOT sent -->|
 *          |<------------------ sndq, st.sndq_len ------------------>|
 *
 *     The sent part goes back as sent: the freeze dropped the peer's last
 *     ACKs, so the peer usually has it, and its first ACK after resume must
 *     not look like an ACK of unsent data (6.18 discards that one and the
 *     stream waits 3 s for the persist timer). The unsent part goes back as
 *     NOT sent (as unacked data it would wait 1 to 4 s for an RTO): it leaves
 *     on the first ACK after resume. The peer drops what it already had.
 * (5) fd2 is connected (no SYN) and still in repair mode.
 * (6) Restores what repair mode must not see (IP_TRANSPARENT back to the saved
 *     value), then TCP_REPAIR off, which sends a window probe: the peer's
 *     answer restarts the stream at once.
 * (7) discard: close in repair mode, nothing is sent (no FIN, no RST). Keep the
 *     flow blocked on S until D's socket owns the address: any packet of the
 *     flow reaching S afterwards draws an RST.
 *     repair_off: the original carries on as if nothing happened.
 *
 * ---- UDP ------------------------------------------------------------------
 *
 *   S: sockmig_udp_save(fd, &st); sockmig_udp_save_queue(fd, &q)
 *      (the queue is peeked, never consumed: the original keeps it)
 *   D: sockmig_udp_restore(&st, &fd2); once D owns st.local's address:
 *      sockmig_udp_inject_queue(&st, q) sends each datagram again, in order,
 *      from its original source address, to fd2.
 *
 * Errors: -errno, and one sentence in sockmig_error().
 */
#ifndef SOCKMIG_SOCKET_H
#define SOCKMIG_SOCKET_H

#include <stddef.h>
#include <stdint.h>

#include "sockmig/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- options common to TCP and UDP ---- */

/* Presence bits: set when the option was read (optional kernel features that
 * fail with ENOPROTOOPT are left out, not fatal). */
enum {
	SOCKMIG_OPT_REUSEADDR     = 1u << 0,
	SOCKMIG_OPT_REUSEPORT     = 1u << 1,
	SOCKMIG_OPT_KEEPALIVE     = 1u << 2,
	SOCKMIG_OPT_SNDBUF        = 1u << 3,  /* also rcvbuf */
	SOCKMIG_OPT_BUF_LOCK      = 1u << 4,
	SOCKMIG_OPT_LINGER        = 1u << 5,
	SOCKMIG_OPT_PRIORITY      = 1u << 6,
	SOCKMIG_OPT_MARK          = 1u << 7,
	SOCKMIG_OPT_RCVLOWAT      = 1u << 8,
	SOCKMIG_OPT_BINDTODEVICE  = 1u << 9,
	SOCKMIG_OPT_TOS           = 1u << 10, /* IP_TOS or IPV6_TCLASS */
	SOCKMIG_OPT_V6ONLY        = 1u << 11,
	SOCKMIG_OPT_TRANSPARENT   = 1u << 12,
	SOCKMIG_OPT_FREEBIND      = 1u << 13,
	SOCKMIG_OPT_FILE_FLAGS    = 1u << 14,
	/* TCP only */
	SOCKMIG_OPT_KEEPIDLE      = 1u << 16, /* also keepintvl, keepcnt */
	SOCKMIG_OPT_NODELAY       = 1u << 17,
	SOCKMIG_OPT_CORK          = 1u << 18,
	SOCKMIG_OPT_USER_TIMEOUT  = 1u << 19,
	SOCKMIG_OPT_CONGESTION    = 1u << 20,
	SOCKMIG_OPT_NOTSENT_LOWAT = 1u << 21,
	/* UDP only. IPv4: IP_MULTICAST_TTL, IP_MULTICAST_LOOP (not the
	 * interface: IP_MULTICAST_IF reads back only an address, never the
	 * index that ip_mreqn set). IPv6: IPV6_MULTICAST_HOPS in mc_ttl,
	 * IPV6_MULTICAST_LOOP, IPV6_MULTICAST_IF in mc_ifindex (restored by
	 * the name in sockmig_udp_state.mc_ifname). */
	SOCKMIG_OPT_MC            = 1u << 22,
};

#define SOCKMIG_NAME_LEN 16 /* IFNAMSIZ, TCP_CA_NAME_MAX */

struct sockmig_sock_opts {
	uint32_t present;       /* SOCKMIG_OPT_* */
	uint32_t file_flags;    /* fcntl(F_GETFL) & (O_NONBLOCK | O_APPEND ...) */
	uint8_t reuseaddr;
	uint8_t reuseport;
	uint8_t keepalive;
	uint8_t buf_lock;       /* SO_BUF_LOCK: SOCK_SNDBUF_LOCK 1 | SOCK_RCVBUF_LOCK 2 */
	uint32_t sndbuf;        /* as getsockopt reports it: the doubled value */
	uint32_t rcvbuf;
	uint32_t linger_onoff;
	uint32_t linger_sec;
	uint32_t priority;
	uint32_t mark;
	uint32_t rcvlowat;
	uint32_t tos;           /* IP_TOS, or IPV6_TCLASS on AF_INET6 */
	uint8_t v6only;
	uint8_t transparent;
	uint8_t freebind;
	uint8_t nodelay;
	uint8_t cork;
	uint8_t mc_loop;
	uint8_t mc_ttl;
	uint8_t pad;
	uint32_t keepidle;
	uint32_t keepintvl;
	uint32_t keepcnt;
	uint32_t user_timeout;
	uint32_t notsent_lowat;
	uint32_t mc_ifindex;
	char bindtodevice[SOCKMIG_NAME_LEN]; /* NUL-terminated, "" = none */
	char congestion[SOCKMIG_NAME_LEN];   /* NUL-terminated */
};

/* ---- TCP ---- */

enum {
	SOCKMIG_TCP_HAS_TIMESTAMP = 1u << 0, /* timestamps negotiated: ts_now valid */
	SOCKMIG_TCP_HAS_WINDOW    = 1u << 1, /* TCP_REPAIR_WINDOW read */
	/* Half-closed connections (the FINs are not counted in the queues nor
	 * in snd_seq / rcv_seq, which describe data only):
	 *   FIN_OUT       we shut down our write side: our FIN is at snd_seq
	 *   FIN_OUT_SENT  ... and it was transmitted (snd_nxt = snd_seq + 1)
	 *   FIN_OUT_ACKED ... and acknowledged (FIN_WAIT2)
	 *   FIN_IN        the peer's FIN was received: at rcv_seq, after the
	 *                 rcvq_len bytes still unread (EOF after them) */
	SOCKMIG_TCP_FIN_OUT       = 1u << 2,
	SOCKMIG_TCP_FIN_OUT_SENT  = 1u << 3,
	SOCKMIG_TCP_FIN_OUT_ACKED = 1u << 4,
	SOCKMIG_TCP_FIN_IN        = 1u << 5,
};

/* TCP states (include/net/tcp_states.h), as st->state and TCP_INFO carry
 * them. sockmig_tcp_save() takes ESTABLISHED and the half-closed states
 * FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING; LISTEN and SYN_SENT
 * have functions of their own (below). */
enum {
	SOCKMIG_TCP_ESTABLISHED = 1,
	SOCKMIG_TCP_SYN_SENT    = 2,
	SOCKMIG_TCP_FIN_WAIT1   = 4,
	SOCKMIG_TCP_FIN_WAIT2   = 5,
	SOCKMIG_TCP_CLOSE       = 7,
	SOCKMIG_TCP_CLOSE_WAIT  = 8,
	SOCKMIG_TCP_LAST_ACK    = 9,
	SOCKMIG_TCP_LISTEN      = 10,
	SOCKMIG_TCP_CLOSING     = 11,
};

/* TCPI_OPT_* bits, as TCP_INFO reports them. */
enum {
	SOCKMIG_TCPOPT_TIMESTAMPS = 1,
	SOCKMIG_TCPOPT_SACK       = 2,
	SOCKMIG_TCPOPT_WSCALE     = 4,
};

/*
 * Sequence numbers (all mod 2^32):
 *
 *   send side:      snd_una            snd_nxt              snd_seq
 *                     |--- sent, unacked --|---- not sent ----|
 *                     |<------------- sndq_len -------------->|
 *                                          |<- sndq_unsent -->|
 *
 *   receive side:   rcv_seq - rcvq_len          rcv_seq (rcv_nxt)
 *                     |<-- received, unread: rcvq_len --->|
 */
struct sockmig_tcp_state {
	uint32_t flags;          /* SOCKMIG_TCP_HAS_* */
	uint8_t family;          /* of the socket: AF_INET or AF_INET6 */
	uint8_t state;           /* SOCKMIG_TCP_ESTABLISHED or a half-closed state */
	uint8_t opts;            /* SOCKMIG_TCPOPT_* negotiated */
	uint8_t snd_wscale;      /* peer's window scale */
	uint8_t rcv_wscale;      /* ours */
	uint8_t pad[3];
	/* As the socket sees them: a dual-stack socket's IPv4 peer is AF_INET6
	 * with a v4-mapped address. sockmig_tcp_flow() gives the wire form. */
	struct sockmig_endpoint local;
	struct sockmig_endpoint remote;
	uint32_t mss_clamp;      /* the peer's MSS (TCP_MAXSEG read in repair mode) */
	uint32_t snd_mss;        /* effective send MSS (mss_cache), for checks */
	uint32_t snd_una;        /* = snd_seq - sndq_len */
	uint32_t snd_seq;        /* write_seq: one past the last queued byte */
	uint32_t rcv_seq;        /* rcv_nxt */
	uint32_t sndq_len;       /* bytes of the send queue, from snd_una */
	uint32_t sndq_unsent;    /* of which never sent */
	uint32_t rcvq_len;       /* bytes received and not read */
	uint32_t ts_now;         /* TCP_TIMESTAMP: our timestamp clock */
	uint32_t snd_wl1;        /* TCP_REPAIR_WINDOW */
	uint32_t snd_wnd;
	uint32_t max_window;
	uint32_t rcv_wnd;
	uint32_t rcv_wup;
	struct sockmig_sock_opts sockopts;
};

/* Put fd (TCP, its flow blocked) in repair mode and read its state and
 * options into *ret. States: ESTABLISHED; the half-closed FIN_WAIT1,
 * FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING (FINs kept as SOCKMIG_TCP_FIN_*
 * flags, out of the sequence numbers); SYN_SENT (snd_seq = the ISN, queues
 * empty). LISTEN: sockmig_tcp_listener_save(). Others: -EOPNOTSUPP.
 * The socket stays in repair mode, even on failure (the caller decides:
 * discard or repair_off).
 *
 * Half-closed and SYN_SENT sockets follow the same call sequence; what
 * differs happens in sockmig_tcp_resume(), which for them needs st->local's
 * address local on D already and packets from "lo" let through a flow lock
 * (SOCKMIG_FLOWLOCK_PASS_LOCAL), as the replay does:
 *   - restore rebuilds them as ESTABLISHED (data only); resume leaves
 *     repair mode (window probe), then puts the FINs back in the order they
 *     happened: shutdown(SHUT_WR) for ours, a segment made by us and sent
 *     through "lo" for the peer's FIN (and for its ACK of ours, FIN_WAIT2).
 *     Our FIN may go out again: the peer takes it as a duplicate. CLOSING
 *     may read back as CLOSE at once (the peer's ACK of our FIN came first).
 *   - SYN_SENT: restore returns a bound, unconnected socket carrying the
 *     ISN; resume connect()s again (same port, same ISN: a retransmitted
 *     SYN to the peer). Limit: if the peer already answered the original
 *     SYN, its SYN-ACK echoes the old timestamp, which we reject once (an
 *     RST to the half-open request), and the connection completes with the
 *     SYN retransmitted 1 s later. */
int sockmig_tcp_save(int fd, struct sockmig_tcp_state *ret);

/* Copy the queues without consuming them. sndq must hold st->sndq_len bytes,
 * rcvq st->rcvq_len bytes (either may be NULL when its length is 0). */
int sockmig_tcp_save_queues(int fd, const struct sockmig_tcp_state *st, void *sndq, void *rcvq);

/* Create a socket in the calling thread's network namespace that continues
 * st: bound to st->local (the address need not be local yet), connected to
 * st->remote without a SYN, queues and options restored. sndq holds
 * st->sndq_len bytes from st->snd_una, rcvq st->rcvq_len bytes, as saved.
 * snd_una is the first byte not yet acknowledged at restore time: st->snd_una,
 * or a later ACK captured during the freeze, up to st->snd_seq (see (4)).
 * The socket is returned in repair mode, with O_CLOEXEC. Options that
 * differ from a fresh socket's are set; buffer sizes only when the
 * application locked them (SO_BUF_LOCK bits) or the receive buffer had grown
 * past 128 KiB: an unlocked send buffer is sized by this kernel again. */
int sockmig_tcp_restore(const struct sockmig_tcp_state *st, const void *sndq, const void *rcvq,
			uint32_t snd_una, int *ret_fd);

/* Finish a restored socket: saved IP_TRANSPARENT/IPV6_TRANSPARENT back,
 * TCP_REPAIR off with a window probe, SO_REUSEADDR back (leaving repair mode
 * clears it). */
int sockmig_tcp_resume(int fd, const struct sockmig_tcp_state *st);

/* Leave repair mode on the original (rollback). st is what save returned
 * (for SO_REUSEADDR, which leaving repair mode clears); NULL skips that. */
int sockmig_tcp_repair_off(int fd, const struct sockmig_tcp_state *st);

/* Close silently: turns repair mode on (again) so that close sends nothing,
 * no FIN and no RST, then closes fd. If repair mode cannot be set, fd is left
 * open (closing it would send a FIN or RST) and -errno returned. */
int sockmig_tcp_discard(int fd);

/* The flow as the packets on the wire carry it (v4-mapped made plain IPv4). */
void sockmig_tcp_flow(const struct sockmig_tcp_state *st, struct sockmig_flow *ret);

/* ---- TCP listeners ---- */

enum {
	SOCKMIG_LISTENER_HAS_FASTOPEN = 1u << 0, /* fastopen_qlen read */
};

struct sockmig_tcp_listener_state {
	uint32_t flags;          /* SOCKMIG_LISTENER_HAS_* */
	uint8_t family;
	uint8_t pad[3];
	struct sockmig_endpoint local;  /* may be a wildcard */
	uint32_t backlog;        /* listen() argument as the kernel keeps it */
	uint32_t acceptq;        /* connections waiting at save (informational:
				  * they are not carried; drain them first) */
	uint32_t defer_accept;   /* TCP_DEFER_ACCEPT as read (seconds) */
	uint32_t fastopen_qlen;  /* TCP_FASTOPEN, 0 = off */
	struct sockmig_sock_opts sockopts;
};

/*
 * Listener call sequence: the accept queue holds connections the kernel has
 * completed but the application has not accepted; they are not movable.
 *
 *   S: sockmig_tcp_listener_queue(fd, &q, NULL) until q == 0, letting the
 *      application accept (drain) before the freeze; block the flow;
 *      sockmig_tcp_listener_save(fd, &st); close(fd) at commit (a listener
 *      with an empty accept queue sends nothing when closed).
 *   D: sockmig_tcp_listener_restore(&st, &fd2) (bound even before the
 *      address is local; listening at once), then switch the address.
 *
 * SYNs reaching S during the freeze are dropped; the clients retransmit them
 * (1 s) to D. Half-open requests (SYN_RECV) are not carried: a client whose
 * final ACK was dropped has a connection the new listener does not know.
 */

/* Accept queue length and backlog of a listener (TCP_INFO: tcpi_unacked,
 * tcpi_sacked). Either pointer may be NULL. -EINVAL if fd is not LISTEN. */
int sockmig_tcp_listener_queue(int fd, uint32_t *ret_acceptq, uint32_t *ret_backlog);
int sockmig_tcp_listener_save(int fd, struct sockmig_tcp_listener_state *ret);
/* Socket + options + bind + listen(backlog) in the calling thread's
 * namespace; O_CLOEXEC, O_NONBLOCK as saved. */
int sockmig_tcp_listener_restore(const struct sockmig_tcp_listener_state *st, int *ret_fd);

/* ---- UDP ---- */

/*
 * Multicast group memberships of a UDP socket (IP_ADD_MEMBERSHIP,
 * IPV6_JOIN_GROUP, MCAST_JOIN_GROUP). Linux (6.18) has no call that lists a
 * socket's memberships: IP_MSFILTER / MCAST_MSFILTER answer only for a group
 * and interface named in the question, /proc/net/igmp and igmp6 list the
 * groups of each interface (all sockets together, plus the kernel's own),
 * and sock_diag does not report them. So sockmig_udp_save():
 *   1. detects: every membership is charged to the socket's option memory
 *      (sock_kmalloc of an ip_mc_socklist / ipv6_mc_socklist), which
 *      SO_MEMINFO reports (SK_MEMINFO_OPTMEM). 0: no membership, nothing
 *      more is read (the common case costs one getsockopt);
 *   2. otherwise asks MCAST_MSFILTER for every (interface, group) that
 *      /proc/net/igmp and /proc/net/igmp6 of the socket's namespace list:
 *      a membership of this socket answers, any other EADDRNOTAVAIL.
 * This finds every any-source membership on an existing interface. Limits:
 * a source-specific membership (INCLUDE mode or blocked sources) fails the
 * save with -EOPNOTSUPP (not carried, and not silently dropped); a membership
 * on an interface deleted since is not listed anywhere and is lost; IPv4
 * groups joined through an AF_INET6 socket are found (IPPROTO_IP level).
 * The interface travels by name (the index differs between nodes): restore
 * joins the group on the interface of the same name on D.
 */
#define SOCKMIG_UDP_MC_MAX 20 /* net.ipv4.igmp_max_memberships' default */

struct sockmig_udp_mc {
	uint8_t family;          /* of the group: AF_INET or AF_INET6 */
	uint8_t pad[3];
	uint32_t ifindex;        /* on S, informational */
	char ifname[SOCKMIG_NAME_LEN]; /* NUL-terminated */
	uint8_t group[16];       /* IPv4 in the first 4 bytes */
};

enum {
	/* The socket held option memory (SK_MEMINFO_OPTMEM > 0): its
	 * memberships were looked up, and mc[] holds what was found. */
	SOCKMIG_UDP_MC_PROBED = 1u << 0,
};

struct sockmig_udp_state {
	uint32_t flags;          /* SOCKMIG_UDP_* */
	uint8_t family;          /* of the socket */
	uint8_t pad[3];
	struct sockmig_endpoint local;
	struct sockmig_endpoint remote; /* family 0: not connected */
	struct sockmig_sock_opts sockopts;
	/* IPv6: name of sockopts.mc_ifindex (IPV6_MULTICAST_IF) on S, "" = none */
	char mc_ifname[SOCKMIG_NAME_LEN];
	uint32_t mc_count;       /* memberships in mc[] */
	struct sockmig_udp_mc mc[SOCKMIG_UDP_MC_MAX];
};

/* One datagram of a receive queue. */
struct sockmig_udp_dgram {
	struct sockmig_endpoint src;    /* as the socket saw it */
	struct sockmig_endpoint dst;    /* family 0 if the socket's bound address
					 * says it already (not a wildcard) */
	uint32_t len;
	const uint8_t *data;
};

/* A receive queue: one allocation, free with sockmig_udp_queue_free(). */
struct sockmig_udp_queue {
	uint32_t count;
	uint64_t bytes;
	struct sockmig_udp_dgram dgrams[];
};

/* Addresses, options, multicast memberships (see above: -EOPNOTSUPP for a
 * source-specific one, -E2BIG beyond SOCKMIG_UDP_MC_MAX). */
int sockmig_udp_save(int fd, struct sockmig_udp_state *ret);
/* Peek the whole receive queue, in order, leaving it to the socket. The
 * socket's SO_PEEK_OFF (and IP_PKTINFO for wildcard sockets) is put back. */
int sockmig_udp_save_queue(int fd, const struct sockmig_udp_state *st, struct sockmig_udp_queue **ret);
void sockmig_udp_queue_free(struct sockmig_udp_queue *q);
/* Build a queue from plain parts (image decoding, tests): the data pointers
 * are copied into the allocation. */
int sockmig_udp_queue_new(const struct sockmig_udp_dgram *dgrams, uint32_t count,
			  struct sockmig_udp_queue **ret);

/* Create the socket in the calling thread's namespace: bound (the address need
 * not be local yet), connected if it was, options restored, multicast groups
 * joined on the interfaces of the same names (-ENODEV if one is missing).
 * O_CLOEXEC. */
int sockmig_udp_restore(const struct sockmig_udp_state *st, int *ret_fd);

/* Re-send every datagram of q to the restored socket, from its original
 * source (an IP_TRANSPARENT sender). Needs D to own st->local's address (or
 * each dgram's dst) already. Returns the number sent. */
int sockmig_udp_inject_queue(const struct sockmig_udp_state *st, const struct sockmig_udp_queue *q);

/* ---- options (used by both, exported for tests) ---- */

int sockmig_sock_opts_save(int fd, int family, int proto, struct sockmig_sock_opts *ret);

#ifdef __cplusplus
}
#endif

#endif
