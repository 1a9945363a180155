/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Replay of captured packets: sent through raw sockets with the IP header
 * as captured, so the peer's source address is kept. The destination is a
 * local address, so the kernel loops the packet through "lo" and it reaches
 * the socket by the normal receive path (prerouting and input hooks run with
 * iif "lo", which is what a SOCKMIG_FLOWLOCK_PASS_LOCAL lock lets through).
 *
 * Checksums: the capture may hold packets whose transport checksum the
 * sender left unfinished (CHECKSUM_PARTIAL across a veth: only the
 * pseudo-header sum is in the field). A raw socket's packet is not offloaded,
 * so the receiver verifies it: every checksum is recomputed here. The IPv4
 * header checksum is rewritten by the kernel for IP_HDRINCL anyway.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "flow.h"
#include "util.h"

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int sockmig_packet_fix_checksums(uint8_t *pkt, size_t len)
{
	struct sm_pkt_tuple t;
	uint8_t *l4;
	size_t csum_off;
	uint32_t sum = 0;
	uint16_t c;
	int r;

	r = sm_pkt_parse(pkt, len, &t);
	if (r < 0)
		return r;
	if (t.family == AF_INET) {
		size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;

		pkt[10] = pkt[11] = 0;
		c = csum_fold(csum_add(0, pkt, ihl));
		pkt[10] = (uint8_t)(c >> 8);
		pkt[11] = (uint8_t)c;
		/* A first fragment's checksum covers the whole datagram, which
		 * we do not have: leave it. */
		if (pkt[6] & 0x20)
			return 0;
	}
	l4 = pkt + t.l4_off;
	csum_off = t.proto == IPPROTO_TCP ? 16 : 6;
	l4[csum_off] = l4[csum_off + 1] = 0;
	if (t.family == AF_INET) {
		sum = csum_add(sum, t.saddr, 4);
		sum = csum_add(sum, t.daddr, 4);
	} else {
		sum = csum_add(sum, t.saddr, 16);
		sum = csum_add(sum, t.daddr, 16);
	}
	sum += t.proto;
	sum += (uint32_t)(t.l4_len & 0xffff) + (uint32_t)(t.l4_len >> 16);
	c = csum_fold(csum_add(sum, l4, t.l4_len));
	/* UDP: 0 means "no checksum", so a computed 0 is sent as 0xffff. */
	if (t.proto == IPPROTO_UDP && c == 0)
		c = 0xffff;
	l4[csum_off] = (uint8_t)(c >> 8);
	l4[csum_off + 1] = (uint8_t)c;
	return 0;
}

static int replay_one(int fd4, int fd6, const struct sockmig_flow_capture *fc, const struct sockmig_packet *p,
		      uint8_t *copy)
{
	union {
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} dst = { 0 };
	struct sm_pkt_tuple t;
	socklen_t dlen;
	ssize_t n;
	int r, fd;

	memcpy(copy, p->data, p->len);
	r = sockmig_packet_fix_checksums(copy, p->len);
	if (r < 0)
		return r;
	(void)sm_pkt_parse(copy, p->len, &t);
	if (t.family == AF_INET) {
		dst.in.sin_family = AF_INET;
		memcpy(&dst.in.sin_addr, t.daddr, 4);
		dlen = sizeof(dst.in);
		fd = fd4;
	} else {
		dst.in6.sin6_family = AF_INET6;
		memcpy(&dst.in6.sin6_addr, t.daddr, 16);
		/* A link-local destination needs its interface. */
		dst.in6.sin6_scope_id = fc->flow.local.scope_id;
		dlen = sizeof(dst.in6);
		fd = fd6;
	}
	do
		n = sendto(fd, copy, p->len, 0, (struct sockaddr *)&dst, dlen);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)p->len ? 0 : -EMSGSIZE;
}

int sockmig_flow_replay(const struct sockmig_flow_capture *fc, size_t n)
{
	_cleanup_close_ int fd4 = -1, fd6 = -1;
	_cleanup_free_ uint8_t *copy = NULL;
	size_t max = 0, i, j;
	bool v4 = false, v6 = false;
	int sent = 0, r;

	for (i = 0; i < n; i++)
		for (j = 0; j < fc[i].n_packets; j++) {
			const struct sockmig_packet *p = &fc[i].packets[j];
			if (p->len > max)
				max = p->len;
			if (p->len && p->data[0] >> 4 == 6)
				v6 = true;
			else
				v4 = true;
		}
	if (!max)
		return 0;
	copy = malloc(max);
	if (!copy)
		return sm_fail(-ENOMEM, "cannot allocate a replay buffer of %zu bytes", max);
	/* IPPROTO_RAW: the packet carries its own IP header (IPv4: implied
	 * IP_HDRINCL; IPv6: the kernel takes the header as given too). */
	if (v4) {
		fd4 = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
		if (fd4 < 0)
			return sm_fail(-errno, "cannot open a raw IPv4 socket for replay: %m");
	}
	if (v6) {
		fd6 = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
		if (fd6 < 0)
			return sm_fail(-errno, "cannot open a raw IPv6 socket for replay: %m");
	}
	for (i = 0; i < n; i++)
		for (j = 0; j < fc[i].n_packets; j++) {
			r = replay_one(fd4, fd6, &fc[i], &fc[i].packets[j], copy);
			if (r < 0) {
				char s[128];
				return sm_fail(r, "cannot replay packet %zu of flow %s: %s", j,
					       sockmig_flow_str(&fc[i].flow, s, sizeof(s)), strerror(-r));
			}
			sent++;
		}
	return sent;
}
