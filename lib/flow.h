/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Flow control internals shared by lib/flow_*.c. Not installed. */
#ifndef SOCKMIG_LIB_FLOW_H
#define SOCKMIG_LIB_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "sockmig/flow.h"

/* Image section of one flow's captured packets (docs/flow-control.md). */
#define SM_SECTION_FLOW_CAPTURE 0x0301
#define SM_FLOW_CAPTURE_VERSION 1

/* The 5-tuple of an IP packet, seen from the receiver: addresses as 16 bytes
 * (IPv4 in the first 4), ports in host order. */
struct sm_pkt_tuple {
	uint8_t family;
	uint8_t proto;
	uint8_t saddr[16];
	uint8_t daddr[16];
	uint16_t sport;
	uint16_t dport;
	size_t l4_off; /* offset of the TCP/UDP header in the packet */
	size_t l4_len; /* bytes from there to the end of the IP payload */
};

/* Parse an IPv4/IPv6 packet carrying TCP or UDP (IPv6 extension headers are
 * walked; a non-first fragment has no ports and fails). 0 or -EINVAL. */
int sm_pkt_parse(const uint8_t *pkt, size_t len, struct sm_pkt_tuple *ret);

/* Flow normalised for matching: a v4-mapped IPv6 address is an IPv4 one. */
int sm_flow_family(const struct sockmig_endpoint *e);
bool sm_addr_is_any(const struct sockmig_endpoint *e);
/* Take an address for valid_s seconds only (the kernel removes it then),
 * or make one taken so permanent: a destination that dies in the middle of
 * a move must not keep the job's address for ever. */
int sm_addr_add_for(const char *ifname, int family, const void *addr, unsigned prefixlen, unsigned valid_s);
int sm_addr_keep(const char *ifname, int family, const void *addr, unsigned prefixlen);

/* Encode one flow's capture as the payload of SM_SECTION_FLOW_CAPTURE. */
void sm_flow_capture_encode(const struct sockmig_flow_capture *fc, struct sm_buf *b);
/* Decode such a payload into *ret, which then owns freshly allocated
 * packets (sm_flow_capture_clear). Untouched on failure. */
int sm_flow_capture_decode(const uint8_t *p, size_t len, uint64_t image_off, struct sockmig_flow_capture *ret);
/* Free what a capture record owns, not the record. */
void sm_flow_capture_clear(struct sockmig_flow_capture *fc);
/* Write n captures as n sections. */
int sm_flow_captures_write(struct sm_image_writer *w, const struct sockmig_flow_capture *fc, size_t n);

#endif
