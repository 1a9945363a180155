/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Flows: a socket's identity on the wire, and the control of its packets
 * while the socket moves.
 */
#ifndef SOCKMIG_FLOW_H
#define SOCKMIG_FLOW_H

#include <netinet/in.h>
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

#ifdef __cplusplus
}
#endif

#endif
