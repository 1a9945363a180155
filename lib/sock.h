/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Socket engine internals shared by sock_tcp.c, sock_udp.c, sock_opts.c and
 * sock_image.c. Not installed. */
#ifndef SOCKMIG_LIB_SOCK_H
#define SOCKMIG_LIB_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "sockmig/socket.h"

/* Section types of the socket engine (docs/socket-engine.md). */
enum {
	SM_SEC_TCP_SOCKET = 0x0101,
	SM_SEC_TCP_LISTENER = 0x0102,
	SM_SEC_UDP_SOCKET = 0x0201,
};

/* sockaddr <-> endpoint, as the socket sees it (v4-mapped stays v6). */
void sm_sockaddr_to_ep(const struct sockaddr_storage *ss, struct sockmig_endpoint *ret);
/* Returns the sockaddr length, or -EAFNOSUPPORT. */
int sm_ep_to_sockaddr(const struct sockmig_endpoint *ep, struct sockaddr_storage *ret);
/* true for ::ffff:a.b.c.d */
int sm_ep_is_v4mapped(const struct sockmig_endpoint *ep);
/* The endpoint as on the wire: v4-mapped -> AF_INET. */
void sm_ep_wire(const struct sockmig_endpoint *ep, struct sockmig_endpoint *ret);
/* "1.2.3.4:80" / "[::1]:80" for error sentences; buf of 64 bytes. */
const char *sm_ep_str(const struct sockmig_endpoint *ep, char *buf, size_t size);
int sm_ep_is_any(const struct sockmig_endpoint *ep);

/* Options that must be in place before bind() (reuse, device, v6only,
 * freebind/transparent as saved). */
int sm_sock_opts_restore_early(int fd, int family, int proto, const struct sockmig_sock_opts *o);
/* Everything else, after the socket is connected and its queues are back.
 * Buffers are set last: restoring the queues needed larger ones. */
int sm_sock_opts_restore_late(int fd, int family, int proto, const struct sockmig_sock_opts *o);
/* The same without F_GETFL, for a socket the caller made: cur_file_flags
 * are its F_GETFL & settable flags (the socket()'s SOCK_NONBLOCK). bufs_set:
 * SM_BUF_* the caller changed (room for the queues), which must be put back;
 * unlocked buffers the caller did not touch are left to the kernel. */
enum { SM_BUF_SND = 1, SM_BUF_RCV = 2 }; /* = SOCK_SNDBUF_LOCK, SOCK_RCVBUF_LOCK */
int sm_sock_opts_restore_late_known(int fd, int family, int proto, const struct sockmig_sock_opts *o,
				    unsigned bufs_set, uint32_t cur_file_flags);
/* fcntl flags a socket created with SOCK_NONBLOCK or without has: file_flags
 * of o that socket() can give (SOCK_NONBLOCK), 0 otherwise. */
int sm_sock_opts_nonblock(const struct sockmig_sock_opts *o);

/* ---- image sections (sock_image.c, docs/socket-engine.md) ---- */

struct sm_buf;
struct sm_image_writer;

/* Encode one socket as a section payload; id is the caller's name for the
 * socket (e.g. its index in the job's fd table), given back by the decoder. */
int sm_sock_encode_tcp(struct sm_buf *b, uint32_t id, const struct sockmig_tcp_state *st,
		       const void *sndq, const void *rcvq);
int sm_sock_encode_udp(struct sm_buf *b, uint32_t id, const struct sockmig_udp_state *st,
		       const struct sockmig_udp_queue *q);

/* Decode a section payload (untrusted). The TCP queues point into data;
 * the UDP queue is allocated (sockmig_udp_queue_free). image_off names the
 * section in error sentences. */
int sm_sock_decode_tcp(const uint8_t *data, size_t len, uint64_t image_off, uint32_t *ret_id,
		       struct sockmig_tcp_state *ret, const uint8_t **ret_sndq, const uint8_t **ret_rcvq);
int sm_sock_decode_udp(const uint8_t *data, size_t len, uint64_t image_off, uint32_t *ret_id,
		       struct sockmig_udp_state *ret, struct sockmig_udp_queue **ret_q);

/* Encode and write a whole section (SM_SEC_TCP_SOCKET / SM_SEC_UDP_SOCKET). */
int sm_sock_image_write_tcp(struct sm_image_writer *w, uint32_t id, const struct sockmig_tcp_state *st,
			    const void *sndq, const void *rcvq);
int sm_sock_image_write_udp(struct sm_image_writer *w, uint32_t id, const struct sockmig_udp_state *st,
			    const struct sockmig_udp_queue *q);

/* The peer of fd (TCP, in one of states, bound to local_port) by sock_diag,
 * in fd's own network namespace: for SYN_SENT, where getpeername() fails. */
int sm_diag_tcp_peer(int fd, int family, uint16_t local_port, uint32_t states,
		     struct sockmig_endpoint *ret);

/* Listener sections (SM_SEC_TCP_LISTENER). */
int sm_sock_encode_listener(struct sm_buf *b, uint32_t id, const struct sockmig_tcp_listener_state *st);
int sm_sock_decode_listener(const uint8_t *data, size_t len, uint64_t image_off, uint32_t *ret_id,
			    struct sockmig_tcp_listener_state *ret);

/* setsockopt of an int; -errno with the sentence recorded. */
int sm_setsockopt_int(int fd, int level, int name, int val, const char *what);

#endif
