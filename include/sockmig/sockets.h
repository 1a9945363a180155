/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Moving the TCP and UDP sockets of a running process to another node, over
 * a channel between the two sides (any connected stream fd: the CLI uses a
 * TCP connection between the nodes, the daemon its authenticated channel).
 *
 *   source S: sockmig_sockets_send()          destination D: sockmig_sockets_receive()
 *   -------------------------------           ----------------------------------------
 *   check every fd (nothing changed yet)
 *   stop the process, freeze the flows
 *   (capturing what arrives), save every socket
 *           ---- image 1: header, sockets ---->  (each socket as soon as it is saved)
 *                                             restore each socket in repair mode as it
 *                                             comes; block the flows (capturing), take
 *                                             the addresses and announce them
 *           <--- ANNOUNCED -------------------
 *   release the addresses; collect the
 *   packets captured during the freeze
 *           ---- image 2: captured packets --->
 *                                             re-inject UDP queues, replay S's packets
 *           <--- RUNNING ---------------------  (ready: nothing can fail any more)
 *           ---- COMMIT, what S caught since ->
 *   destroy the originals (still blocked,     replay S's last packets, then D's own,
 *   so nothing reaches the peer), unblock,    unblock (late UDP datagrams put back in
 *   let the process go on                     order), leave repair mode; the caller
 *                                             hands the sockets to a program
 *
 * Until S reads RUNNING, any failure on either side (an ABORT, a timeout, the
 * channel breaking) rolls S back: the address comes back and is announced,
 * repair mode goes off, the flows are unblocked, the packets captured on S
 * are replayed into the originals, and the process goes on with its
 * connections as if nothing happened. D discards what it made (silently) and
 * gives the address up.
 *
 * Listeners move too. Before the freeze, new connection attempts (SYNs) are
 * held (captured, replayed on D, where the new listener answers them) while
 * the application, still running, accepts what waits in the queue; the
 * connections it accepts meanwhile move with it. If it does not empty the
 * queue within drain_ms, the move is refused and nothing changes.
 *
 * Without with_process, the process keeps running after the move, without
 * the moved sockets: they are destroyed on S (a read or write on them fails
 * with ECONNABORTED). With it, the process itself moves: its image follows
 * image 1 on the channel (docs/socket-move.md), D restores it with the
 * sockets in place before it unblocks the flows, and S ends the original.
 *
 * Messages are images (lib/image.h): section types 0x04xx, docs/socket-move.md.
 */
#ifndef SOCKMIG_SOCKETS_H
#define SOCKMIG_SOCKETS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sockmig/ckpt.h"
#include "sockmig/socket.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sockmig_image_addr;
struct sockmig_move_hooks;

struct sockmig_move_opts {
	/* The process's fds to move; NULL: every TCP and UDP socket it has. */
	const int *fds;
	size_t n_fds;
	/* Address moves: the sockets' local addresses leave S's interface of
	 * this name and appear on D's (gratuitous ARP / unsolicited NA).
	 * NULL: addresses stay where they are (D must already have them). */
	const char *ifname;
	/* Longest wait for the other side at each step; 0: 10 s. */
	unsigned timeout_ms;
	/* Listeners: how long the application may take to accept the
	 * connections waiting in their queues before the freeze; 0: 2 s. */
	unsigned drain_ms;
	/* D: leave the slow teardown (removing the lock's chains, closing
	 * netlink and packet sockets: 30 to 40 ms, most of it RCU grace
	 * periods) to a detached child process, so that the program that
	 * takes the sockets starts at once. For a caller that execs next. */
	unsigned cleanup_in_background;
	/* The whole process moves, not only its sockets. S: a process image
	 * follows the sockets (every TCP and UDP socket goes with the socket
	 * engine, every other fd with the checkpoint); the original is killed
	 * once D runs the process, resumed on any failure. D: the process is
	 * restored with its sockets at their numbers, held stopped until they
	 * are live; it is let run on COMMIT, once they are. */
	unsigned with_process;
	/* S, with_process: at most this many pre-copy rounds (memory sent
	 * while the process runs; the freeze then carries only what changed
	 * since); 0: none. Rounds stop early once what changed is small or
	 * stops shrinking. D: pre-copied pages are held in memory, at most
	 * precopy_max_bytes (0: half the node's RAM). */
	unsigned precopy_rounds;
	uint64_t precopy_max_bytes;
	/* D: how to restore it (NULL: defaults), and what was made */
	const struct sockmig_restore_opts *restore;
	struct sockmig_restored_proc *ret_proc;
	/* Routed flows (include/sockmig/route.h): with hooks, a socket whose
	 * local address is one of stay_addrs (S: the node's own addresses,
	 * which cannot leave it) or the wildcard does not move its address;
	 * the hooks make the wire deliver its flow to D instead (forward or
	 * peer rewrite). Without hooks every local address must move (ifname)
	 * or already be local on D. */
	const struct sockmig_image_addr *stay_addrs;
	size_t n_stay_addrs;
	const struct sockmig_move_hooks *hooks;
};

/*
 * Where the cluster layer joins a move. Each hook gets the routed flows (in
 * the sockets' terms, as S had them). Returning < 0 (with a sentence in
 * err) fails the move, which rolls back.
 *
 *   D  route_take   before ANNOUNCED: the flows are blocked (and captured)
 *                   here; let their packets in though their local address
 *                   is not this node's (accept routes). Restored sockets of
 *                   routed flows keep IP_TRANSPARENT.
 *   S  route_switch after ANNOUNCED, where addresses are released: point
 *                   the wire at D (the home node's forward rule, the peer
 *                   nodes' rewrites, D's own rewrite).
 *   S  route_back   rollback after route_switch was called (even if it
 *                   failed half-way): point the wire at S again.
 *   D  route_drop   D gives up after route_take: undo it.
 */
struct sockmig_flow;
struct sockmig_move_hooks {
	void *ctx;
	/* on failure: < 0, and one sentence in err */
	int (*route_take)(void *ctx, const struct sockmig_flow *flows, size_t n, char *err, size_t err_size);
	void (*route_drop)(void *ctx, const struct sockmig_flow *flows, size_t n);
	int (*route_switch)(void *ctx, const struct sockmig_flow *flows, size_t n, char *err, size_t err_size);
	void (*route_back)(void *ctx, const struct sockmig_flow *flows, size_t n);
};

struct sockmig_move_stats {
	uint32_t n_tcp;
	uint32_t n_udp;
	uint32_t udp_queued;   /* datagrams waiting in receive queues, carried over */
	uint32_t captured_src; /* packets captured on S during the freeze, replayed on D */
	uint32_t captured_dst; /* packets captured on D before its sockets were live */
	uint64_t frozen_ns;    /* S: flows frozen until D reported RUNNING (D
				* opens them after one more message) */
	uint64_t save_ns;      /* S: stop + reading (and sending) every socket */
	uint64_t restore_ns;   /* D: the process (or image 1) received until
				* the sockets are live */
	uint32_t precopy_rounds; /* S: pre-copy rounds sent */
	uint64_t precopy_bytes;  /* S: bytes they carried */
	uint64_t frozen_pages;   /* S: pages of tracked memory dumped in the freeze */
};

/* Source side. Returns 0 once D reported the sockets running and the
 * originals are gone; -errno (with the sentence) after a complete rollback. */
int sockmig_sockets_send(pid_t pid, const struct sockmig_move_opts *o, int chan,
			 struct sockmig_move_stats *ret_stats);

/* Snapshot: the same save, written to out_fd as one image (header, sockets,
 * captured packets), then rolled back: the process keeps its connections.
 * For inspection (sockmig sockets show) and for restoring a copy elsewhere. */
int sockmig_sockets_snapshot(pid_t pid, const struct sockmig_move_opts *o, int out_fd,
			     struct sockmig_move_stats *ret_stats);

struct sockmig_restored_sock {
	int target_fd; /* the fd number it had in the original process */
	int fd;        /* ours, O_CLOEXEC, live */
	uint8_t proto; /* IPPROTO_TCP or IPPROTO_UDP */
};

struct sockmig_restored {
	size_t n;
	struct sockmig_restored_sock socks[];
};

/* Destination side: answers S over chan until the sockets are live here. */
int sockmig_sockets_receive(int chan, const struct sockmig_move_opts *o, struct sockmig_restored **ret,
			    struct sockmig_move_stats *ret_stats);

/* Restore from one image (a snapshot), read from in_fd. */
int sockmig_sockets_restore_image(int in_fd, const struct sockmig_move_opts *o, struct sockmig_restored **ret,
				  struct sockmig_move_stats *ret_stats);

/* What an image holds, for `sockmig sockets show`. */
struct sockmig_image_sock {
	uint32_t fd; /* in the original process */
	uint8_t proto;
	struct sockmig_tcp_state tcp; /* IPPROTO_TCP */
	struct sockmig_udp_state udp; /* IPPROTO_UDP */
	uint32_t udp_queued;          /* datagrams in its receive queue */
	uint64_t udp_queued_bytes;
	uint32_t captured;            /* packets captured during the freeze */
	uint32_t backlog;             /* a listener's (tcp.state is LISTEN) */
};

struct sockmig_image_addr {
	uint8_t family;
	uint8_t prefixlen;
	uint8_t addr[16];
};

struct sockmig_sockets_image {
	uint32_t pid;
	uint32_t addresses_move; /* the addresses travel with the sockets */
	uint32_t n_addrs;
	struct sockmig_image_addr addrs[256];
	size_t n;
	struct sockmig_image_sock socks[];
};

/* Read and check a whole image from fd; free() the result. */
int sockmig_sockets_image_read(int fd, struct sockmig_sockets_image **ret);

/* Closes the fds still >= 0, then frees. */
void sockmig_restored_free(struct sockmig_restored *r);

#ifdef __cplusplus
}
#endif

#endif
