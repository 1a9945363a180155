/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flows: a socket's identity on the wire, and the control of its packets
 * while the socket moves.
 */
#ifndef SOCKMIG_FLOW_H
#define SOCKMIG_FLOW_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An endpoint. Plain data: written to images as is, field by field. */
struct sockmig_endpoint {
	uint8_t family;    /* AF_INET or AF_INET6; 0 = none (unconnected) */
	uint8_t pad[3];
	uint32_t scope_id; /* IPv6 link-local scope, else 0 */
	uint8_t addr[16];  /* IPv4 in the first 4 bytes, network order */
	uint16_t port;     /* host order */
	uint16_t pad2;
};

/* A flow: the 4-tuple of a connection, or the bound address of a listener or
 * of an unconnected UDP socket (remote.family == 0 then). A dual-stack
 * socket's IPv4 peer appears as family AF_INET6 with a v4-mapped address on
 * the socket, but the flow is stored as the packets on the wire carry it. */
struct sockmig_flow {
	uint8_t proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	uint8_t pad[3];
	struct sockmig_endpoint local;
	struct sockmig_endpoint remote;
};

/*
 * ---- Flow control during a move ----
 *
 * Everything below acts in the calling thread's current network namespace.
 *
 * On the source node S:
 *
 *   sockmig_capture_open(&cap);          bind a free NFLOG group first, so
 *                                        that no dropped packet goes unseen
 *   sockmig_flowlock_new(SOCKMIG_FLOWLOCK_CAPTURE, cap, &lock);
 *   sockmig_flow_freeze(lock, flows, n); one netlink batch: from here every
 *                                        packet of these flows is dropped in
 *                                        both directions, and each inbound one
 *                                        is copied to cap by the same rule
 *   ... stop the job, read the sockets in repair mode ...
 *   sockmig_capture_poll(cap);           as often as wanted (fd is pollable)
 *   sockmig_capture_collect(cap, flows, n, &fc);   packets per flow, in order
 *   image: sm_flow_captures_write(w, fc, n) (lib/flow.h, section 0x0301)
 *   commit: the sockets are closed in repair mode, then
 *   sockmig_flowlock_free(lock);         rules and sets gone, table removed
 *                                        if nothing else is left in it
 *   rollback: sockmig_flow_replay(fc, n) on S, then sockmig_flow_thaw().
 *
 * On the destination node D:
 *
 *   sockmig_flowlock_new(SOCKMIG_FLOWLOCK_PASS_LOCAL, NULL, &lock);
 *   sockmig_flow_freeze(lock, flows, n); the wire cannot reach (or hear)
 *                                        the flows; packets looped through
 *                                        "lo" (our replay) still pass
 *   ... sockets created in repair mode; sockmig_addr_add() ...
 *   sm_flow_capture_decode() per section; sockmig_flow_replay(fc, n);
 *   ... repair off; sockmig_addr_announce(); sockmig_flowlock_free(lock).
 *
 * On D with SOCKMIG_FLOWLOCK_CAPTURE | SOCKMIG_FLOWLOCK_PASS_LOCAL (and a
 * capture of D's own), packets that reach D from the wire while the lock
 * holds (after the address was announced, before the sockets are live) are
 * captured there too; replay S's capture first, then D's:
 *
 *   sockmig_capture_open(&dcap);
 *   sockmig_flowlock_new(SOCKMIG_FLOWLOCK_CAPTURE | SOCKMIG_FLOWLOCK_PASS_LOCAL, dcap, &lock);
 *   sockmig_flow_freeze(lock, flows, n);
 *   ... sockets; sockmig_addr_take(); sockmig_flow_replay(S's fc, n) ...
 *   sockmig_capture_collect(dcap, flows, n, &dfc); sockmig_flow_replay(dfc, n);
 *   sockmig_flowlock_free(lock);
 *   sockmig_capture_collect(dcap, ...) once more: a packet that arrived
 *   between the last collect and the free is in the capture; replay it
 *   (the socket is live by then, so for TCP this is a late duplicate that
 *   the peer retransmits anyway, and for UDP it must not be lost).
 *
 * The replay travels through "lo", which the lock lets pass uncaptured.
 */

struct sockmig_flowlock;
struct sockmig_capture;

enum {
	/* Copy every dropped inbound packet to the capture (NFLOG group). */
	SOCKMIG_FLOWLOCK_CAPTURE = 1u << 0,
	/* Let packets through that come in on, or go out to, the loopback
	 * device: on D this lets the replay reach the restored socket. */
	SOCKMIG_FLOWLOCK_PASS_LOCAL = 1u << 1,
};

/* A lock: its own chains and sets in "table inet sockmig" (created if
 * missing). Holds nothing until flows are frozen. cap is required with
 * SOCKMIG_FLOWLOCK_CAPTURE and must stay open while the lock lives. */
int sockmig_flowlock_new(unsigned flags, struct sockmig_capture *cap, struct sockmig_flowlock **ret);
/* Delete the chains and sets of every lock in this network namespace whose
 * process is gone (killed in the middle of a move: its frozen flows would
 * stay blackholed). Returns how many, or -errno. A daemon calls it as it
 * starts. */
int sockmig_flowlock_purge_dead(void);
/* Drop the lock's chains and sets (one batch): its flows flow again. */
void sockmig_flowlock_free(struct sockmig_flowlock *lock);

/* Add / remove the flows to / from the lock, each call one atomic netlink
 * batch. A flow with remote.family == 0 matches on its local address and
 * port only (any local address if that address is the wildcard). Freezing a
 * flow twice or thawing one that is not frozen fails with -EEXIST / -ENOENT
 * and changes nothing. */
int sockmig_flow_freeze(struct sockmig_flowlock *lock, const struct sockmig_flow *flows, size_t n);
int sockmig_flow_thaw(struct sockmig_flowlock *lock, const struct sockmig_flow *flows, size_t n);

/*
 * Listeners: freeze connection attempts only. While the job still runs and
 * drains its accept queue, a listener's new connection attempts (inbound
 * TCP segments with SYN set and ACK clear to its local address and port;
 * any local address if it is the wildcard) are dropped, and with
 * SOCKMIG_FLOWLOCK_CAPTURE copied to the capture, where collect sorts them
 * to the listener flow. Everything else on the port passes: segments of
 * established connections, the final ACKs of handshakes already begun, and
 * the listener's SYN-ACKs. The flows must be TCP with remote.family == 0
 * (-EINVAL otherwise). These are separate from sockmig_flow_freeze(): a
 * listener may be in both, and each is thawed by its own call. Replayed on
 * D into the restored listener, a captured SYN makes D answer the peer's
 * (still retrying) connect.
 *
 *   sockmig_flow_freeze_syn(lock, listeners, n);   no new handshakes begin
 *   sockmig_listener_pending(&listener, &n) until n == 0 (each handshake
 *                                          begun before completes or dies)
 *   sockmig_flow_freeze(lock, all_flows, m);      then everything
 */
int sockmig_flow_freeze_syn(struct sockmig_flowlock *lock, const struct sockmig_flow *listeners, size_t n);
int sockmig_flow_thaw_syn(struct sockmig_flowlock *lock, const struct sockmig_flow *listeners, size_t n);

/* Handshakes in progress for a TCP listener: the request sockets in
 * SYN_RECV (sock_diag) with the listener's local address and port (any
 * address if it is the wildcard; a wildcard or v4-mapped IPv6 listener
 * counts IPv4 handshakes too), in the current network namespace. Sockets
 * cannot tell which listener a request belongs to: two listeners on one
 * port (SO_REUSEPORT, or an IPv4 and an IPv6-only one) are counted
 * together. */
int sockmig_listener_pending(const struct sockmig_flow *listener, uint32_t *ret_synrecv);

/* One captured inbound packet: the IP packet, network header first. */
struct sockmig_packet {
	uint64_t time_ns; /* CLOCK_REALTIME when it was read from the kernel */
	uint32_t len;
	uint8_t *data;
};

/* The packets of one flow captured while it was frozen. */
struct sockmig_flow_capture {
	struct sockmig_flow flow;
	uint32_t n_packets;
	struct sockmig_packet *packets; /* capture order */
	/* TCP: the highest ACK (sequence arithmetic) among the captured
	 * segments, and the window field of the segment that carried it,
	 * unscaled as on the wire; valid if has_ack. The socket engine trims
	 * its send queue with these before restoring it as not yet sent. */
	uint8_t has_ack;
	uint32_t ack;
	uint16_t window;
};

/* Bind a free NFLOG group (searched from 0x5300 upwards) in copy-packet
 * mode, one message per packet. */
int sockmig_capture_open(struct sockmig_capture **ret);
void sockmig_capture_free(struct sockmig_capture *cap);
uint16_t sockmig_capture_group(const struct sockmig_capture *cap);
/* Readable when packets are waiting: call sockmig_capture_poll(). */
int sockmig_capture_fd(const struct sockmig_capture *cap);
/* Read everything waiting, without blocking; returns the packets read.
 * -ENOBUFS means the kernel dropped copies (the receive buffer overflowed):
 * the capture is then incomplete and the move must be rolled back. */
int sockmig_capture_poll(struct sockmig_capture *cap);
/* Drain (sockmig_capture_poll) and sort the packets read so far to the
 * flows, in capture order: a packet goes to the connected flow with its
 * 4-tuple, else to the listener flow of its local address and port. Packets
 * of no flow are counted and discarded. ret gets n records. */
int sockmig_capture_collect(struct sockmig_capture *cap, const struct sockmig_flow *flows, size_t n,
			    struct sockmig_flow_capture **ret);
/* Packets read that matched none of the flows given to collect. */
uint64_t sockmig_capture_unmatched(const struct sockmig_capture *cap);
void sockmig_flow_captures_free(struct sockmig_flow_capture *fc, size_t n);

/* Inject the captured packets, flow by flow in capture order, as if they
 * came from the wire (raw sockets; the peer's source address is kept;
 * TCP/UDP checksums recomputed). Run it while the restored sockets are still
 * in repair mode and before the switch-over (PAWS). Returns packets sent. */
int sockmig_flow_replay(const struct sockmig_flow_capture *fc, size_t n);

/* Recompute the transport checksum (TCP, UDP) of an IP packet in place;
 * IPv4 header checksum too. -EINVAL if it is not a whole TCP/UDP packet. */
int sockmig_packet_fix_checksums(uint8_t *pkt, size_t len);

/* Address moves. addr is 4 (AF_INET) or 16 (AF_INET6) bytes, network order.
 * release: remove it from ifname (S). add: put it on ifname, IPv6 with
 * IFA_F_NODAD so it is usable at once, without telling anyone. announce:
 * gratuitous ARP (request and reply) or an unsolicited neighbour
 * advertisement with the override flag to ff02::1, so that peers replace the
 * old MAC at once. take = add + announce. */
int sockmig_addr_release(const char *ifname, int family, const void *addr, unsigned prefixlen);
int sockmig_addr_add(const char *ifname, int family, const void *addr, unsigned prefixlen);
int sockmig_addr_announce(const char *ifname, int family, const void *addr);
int sockmig_addr_take(const char *ifname, int family, const void *addr, unsigned prefixlen);

/* Human form of a flow for error sentences: "tcp 10.0.0.1:80 > 10.0.0.2:5555". */
const char *sockmig_flow_str(const struct sockmig_flow *f, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
