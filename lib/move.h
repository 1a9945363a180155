/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Socket moves: the messages between S and D (docs/socket-move.md) and the
 * pieces move_src.c and move_dst.c share. Not installed. */
#ifndef SOCKMIG_LIB_MOVE_H
#define SOCKMIG_LIB_MOVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "sockmig/flow.h"
#include "sockmig/socket.h"
#include "sockmig/sockets.h"

enum {
	SM_SEC_MOVE_HEADER = 0x0401,
	SM_SEC_MOVE_STATUS = 0x0402,
	SM_SEC_MOVE_CAPTURES = 0x0403, /* many flows' captures in one section */
};

enum {
	SM_IMAGE_KIND_CONTROL = 3, /* D's answers: one status section */
};

enum sm_move_status {
	SM_MOVE_ANNOUNCED = 1, /* D: flows blocked, addresses taken and announced */
	SM_MOVE_CONTINUE = 2,  /* S: here are the captured packets, go on */
	SM_MOVE_RUNNING = 3,   /* D: everything is restored (and S's packets
				* replayed) here, nothing can fail any more
				* before the flows open; they open on COMMIT */
	SM_MOVE_ABORT = 4,     /* either: roll back; the reason says why */
	SM_MOVE_BACK = 5,      /* S, after D's ABORT: the addresses are back on
				* S; D answers with an ABORT that carries the
				* packets it caught meanwhile */
	SM_MOVE_COMMIT = 6,    /* S, after RUNNING: the original can never
				* run again; with it, what S caught since
				* image 2. D opens the flows, lets the process
				* run */
	SM_MOVE_PRECOPY = 7,   /* S, before image 1: a pages image follows
				* (docs/checkpoint.md, pre-copy) */
	SM_MOVE_PRECOPY_DONE = 8, /* S: the last pre-copy round went out;
				   * answer once every round is stored */
	SM_MOVE_PRECOPY_HELD = 9, /* D: every pre-copy round is stored */
};

#define SM_MOVE_VERSION 3
#define SM_MOVE_MAX_ADDRS 256
#define SM_MOVE_MAX_SOCKETS 65536
#define SM_MOVE_REASON_MAX 512

enum {
	SM_MOVE_F_ADDRESSES = 1u << 0, /* the addresses move with the sockets */
	SM_MOVE_F_PROCESS = 1u << 1,   /* a process image follows image 1 */
};

struct sm_move_addr {
	uint8_t family;
	uint8_t prefixlen;
	uint8_t addr[16];
};

struct sm_move_header {
	uint32_t version;
	uint32_t pid;
	uint32_t n_sockets;
	uint32_t flags;
	uint32_t n_addrs;
	struct sm_move_addr addrs[SM_MOVE_MAX_ADDRS];
};

struct sm_move_sock {
	uint8_t proto;
	uint32_t id; /* the fd number in the original process */
	struct sockmig_flow flow;
	struct sockmig_tcp_state tcp;
	uint8_t *sndq; /* owned */
	uint8_t *rcvq; /* owned */
	struct sockmig_udp_state udp;
	struct sockmig_udp_queue *udpq; /* owned */
	bool listener;                  /* TCP LISTEN: lst, not tcp */
	struct sockmig_tcp_listener_state lst;
	int fd;        /* S: our handle on the original; D: the restored socket */
	int rcvbuf;    /* D, UDP: the restored socket's SO_RCVBUF before the
			* replay made room */
	uint32_t given; /* D, UDP: datagrams put in its queue so far */
};

/* One decoded message (image). Everything is owned by it. */
struct sm_move_msg {
	uint32_t kind;
	bool has_header;
	struct sm_move_header hdr;
	struct sm_move_sock *socks;
	size_t n_socks, cap_socks;
	struct sockmig_flow_capture *caps;
	size_t n_caps, cap_caps;
	bool has_status;
	uint32_t status;
	char reason[SM_MOVE_REASON_MAX];
};

void sm_move_msg_clear(struct sm_move_msg *m);
/* Read and check every section of one image (untrusted bytes). */
int sm_move_msg_read(struct sm_image_reader *r, struct sm_move_msg *ret);
/* The same a section at a time, for a reader that acts on each socket as
 * it comes (D restores while S still saves): _begin once, then _next until
 * it returns 0 (the whole image checked) or < 0; 1 for each section, whose
 * content is in m (a socket is m->socks[m->n_socks - 1] if the count grew).
 * On failure m keeps what was read: the caller clears it (and whatever it
 * made of it). */
int sm_move_msg_begin(struct sm_image_reader *r, struct sm_move_msg *m);
int sm_move_msg_next(struct sm_image_reader *r, struct sm_move_msg *m);
/* Read one message from a channel fd; timeout_ms bounds each wait for bytes
 * (for sockets; pipes and files wait as long as it takes). */
int sm_move_recv(int fd, unsigned timeout_ms, struct sm_move_msg *ret);
/* Its first part: the reader of the next message, and m begun with its kind
 * (then sm_move_recv_next until 0; free the reader). */
int sm_move_recv_begin(int fd, unsigned timeout_ms, struct sm_image_reader **ret_r, struct sm_move_msg *m);
int sm_move_recv_next(struct sm_image_reader *r, unsigned timeout_ms, struct sm_move_msg *m);

int sm_move_write_header(struct sm_image_writer *w, const struct sm_move_header *h);
/* The non-empty captures of fc, packed many to a section (0x0403): one
 * section (one write, one hash) per flow cost 18 us each, 18 ms of the
 * freeze at 1,000 flows. */
int sm_move_write_captures(struct sm_image_writer *w, const struct sockmig_flow_capture *fc, size_t n);
int sm_move_write_status(struct sm_image_writer *w, uint32_t code, const char *reason);
/* A whole control image with one status. */
int sm_move_send_status(int fd, uint32_t code, const char *reason);

/* Same protocol, addresses and ports (addresses compared to their length). */
bool sm_move_flow_eq(const struct sockmig_flow *a, const struct sockmig_flow *b);

/* The flow of a socket as the wire carries it, from the socket's names. */
int sm_move_flow_of_fd(int fd, uint8_t proto, struct sockmig_flow *ret);

/* Close a socket for good from outside its owner (sock_diag SOCK_DESTROY):
 * its users see ECONNABORTED. Whatever it sends on the way out must be
 * dropped by the caller's flow lock. */
int sm_sock_destroy(int fd, uint8_t proto);

const char *sm_move_status_name(uint32_t code);

#endif
