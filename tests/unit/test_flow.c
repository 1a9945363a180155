/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Flow control pieces that need no namespace: packet parsing, checksums,
 * the image sections of captured packets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "flow.h"
#include "image.h"
#include "util.h"

/* Ones' complement sum of a whole packet's transport part with its
 * pseudo-header: 0xffff when the checksum is right, computed differently
 * from the library (32-bit words, folded once at the end). */
static uint16_t verify_sum(const uint8_t *pkt, size_t len)
{
	struct sm_pkt_tuple t;
	uint64_t sum = 0;
	size_t alen, i;

	assert_int_equal(sm_pkt_parse(pkt, len, &t), 0);
	alen = t.family == AF_INET ? 4 : 16;
	for (i = 0; i < alen; i += 2) {
		sum += (uint64_t)(t.saddr[i] << 8 | t.saddr[i + 1]);
		sum += (uint64_t)(t.daddr[i] << 8 | t.daddr[i + 1]);
	}
	sum += t.proto + t.l4_len;
	for (i = 0; i < t.l4_len; i++)
		sum += (uint64_t)pkt[t.l4_off + i] << (i & 1 ? 0 : 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static size_t make_udp4(uint8_t *p, const char *payload)
{
	size_t plen = strlen(payload), len = 28 + plen;

	memset(p, 0, len);
	p[0] = 0x45;
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	p[8] = 64;
	p[9] = IPPROTO_UDP;
	inet_pton(AF_INET, "10.77.0.3", p + 12);
	inet_pton(AF_INET, "10.77.0.100", p + 16);
	p[20] = 0x9c; /* sport 40000 */
	p[21] = 0x40;
	p[22] = 0x23; /* dport 9000 */
	p[23] = 0x28;
	p[24] = (uint8_t)((8 + plen) >> 8);
	p[25] = (uint8_t)(8 + plen);
	p[26] = 0x12; /* an unfinished checksum, as CHECKSUM_PARTIAL leaves it */
	p[27] = 0x34;
	memcpy(p + 28, payload, plen);
	return len;
}

static size_t make_tcp6(uint8_t *p, uint32_t ack, uint16_t win)
{
	size_t len = 40 + 20 + 3;

	memset(p, 0, len);
	p[0] = 0x60;
	p[5] = 23;
	p[6] = IPPROTO_TCP;
	p[7] = 64;
	inet_pton(AF_INET6, "fd77::3", p + 8);
	inet_pton(AF_INET6, "fd77::100", p + 24);
	p[40] = 0x9c;
	p[41] = 0x40;
	p[42] = 0x1b;
	p[43] = 0x58; /* dport 7000 */
	p[48] = (uint8_t)(ack >> 24);
	p[49] = (uint8_t)(ack >> 16);
	p[50] = (uint8_t)(ack >> 8);
	p[51] = (uint8_t)ack;
	p[52] = 0x50;
	p[53] = 0x18; /* PSH ACK */
	p[54] = (uint8_t)(win >> 8);
	p[55] = (uint8_t)win;
	memcpy(p + 60, "abc", 3);
	return len;
}

static void test_parse(void **state)
{
	uint8_t p[128];
	struct sm_pkt_tuple t;
	size_t len;

	(void)state;
	len = make_udp4(p, "hello");
	assert_int_equal(sm_pkt_parse(p, len, &t), 0);
	assert_int_equal(t.family, AF_INET);
	assert_int_equal(t.proto, IPPROTO_UDP);
	assert_int_equal(t.sport, 40000);
	assert_int_equal(t.dport, 9000);
	assert_int_equal(t.l4_len, 13);
	/* truncated, a later fragment, a bad header length */
	assert_int_equal(sm_pkt_parse(p, len - 6, &t), -EINVAL);
	p[7] = 1;
	assert_int_equal(sm_pkt_parse(p, len, &t), -EINVAL);
	p[7] = 0;
	p[0] = 0x44;
	assert_int_equal(sm_pkt_parse(p, len, &t), -EINVAL);

	len = make_tcp6(p, 1, 2);
	assert_int_equal(sm_pkt_parse(p, len, &t), 0);
	assert_int_equal(t.family, AF_INET6);
	assert_int_equal(t.dport, 7000);
	assert_int_equal(t.l4_off, 40);
}

static void test_checksums(void **state)
{
	uint8_t p[128];
	size_t len;

	(void)state;
	len = make_udp4(p, "odd length");
	assert_int_not_equal(verify_sum(p, len), 0xffff);
	assert_int_equal(sockmig_packet_fix_checksums(p, len), 0);
	assert_int_equal(verify_sum(p, len), 0xffff);
	len = make_udp4(p, "even len");
	assert_int_equal(sockmig_packet_fix_checksums(p, len), 0);
	assert_int_equal(verify_sum(p, len), 0xffff);
	len = make_tcp6(p, 0x80000000u, 512);
	assert_int_equal(sockmig_packet_fix_checksums(p, len), 0);
	assert_int_equal(verify_sum(p, len), 0xffff);
}

static void test_image_roundtrip(void **state)
{
	uint8_t p1[128], p2[128];
	struct sockmig_packet pk[2] = {
		{ .time_ns = 11, .data = p1 },
		{ .time_ns = 22, .data = p2 },
	};
	struct sockmig_flow_capture fc = { .flow.proto = IPPROTO_TCP, .n_packets = 2, .packets = pk,
					   .has_ack = 1, .ack = 0xfffffff0u, .window = 512 };
	struct sockmig_flow_capture back;
	struct sm_buf b;

	(void)state;
	pk[0].len = (uint32_t)make_tcp6(p1, 0xfffffff0u, 1);
	pk[1].len = (uint32_t)make_tcp6(p2, 5, 512);
	fc.flow.local.family = AF_INET6;
	inet_pton(AF_INET6, "fd77::100", fc.flow.local.addr);
	fc.flow.local.port = 7000;
	fc.flow.remote.family = AF_INET6;
	inet_pton(AF_INET6, "fd77::3", fc.flow.remote.addr);
	fc.flow.remote.port = 40000;

	sm_buf_init(&b);
	sm_flow_capture_encode(&fc, &b);
	assert_int_equal(b.err, 0);
	assert_int_equal(sm_flow_capture_decode(b.data, b.len, 0, &back), 0);
	assert_memory_equal(&back.flow, &fc.flow, sizeof(fc.flow));
	assert_int_equal(back.n_packets, 2);
	assert_int_equal(back.packets[1].time_ns, 22);
	assert_int_equal(back.packets[1].len, pk[1].len);
	assert_memory_equal(back.packets[1].data, p2, pk[1].len);
	assert_int_equal(back.ack, 0xfffffff0u);
	sm_flow_capture_clear(&back);

	/* Every truncation is refused, and so is trailing garbage. */
	for (size_t cut = 0; cut < b.len; cut++)
		assert_int_equal(sm_flow_capture_decode(b.data, cut, 100, &back), -EBADMSG);
	sm_buf_put_u8(&b, 0);
	assert_int_equal(sm_flow_capture_decode(b.data, b.len, 0, &back), -EBADMSG);
	/* A packet count larger than the bytes could hold fails before any
	 * allocation: count is at offset 1+1+23+23+1+4+2. */
	b.data[55] = 0xff;
	b.data[56] = 0xff;
	b.data[57] = 0xff;
	b.data[58] = 0x7f;
	assert_int_equal(sm_flow_capture_decode(b.data, b.len, 0, &back), -EBADMSG);
	assert_non_null(strstr(sockmig_error(), "packets cannot fit"));
	sm_buf_free(&b);
}

static void test_image_rejects_foreign_packet(void **state)
{
	uint8_t p1[128];
	struct sockmig_packet pk = { .data = p1 };
	struct sockmig_flow_capture fc = { .flow.proto = IPPROTO_TCP, .n_packets = 1, .packets = &pk };
	struct sockmig_flow_capture back;
	struct sm_buf b;

	(void)state;
	/* A UDP packet in a TCP flow's record could not have been captured. */
	pk.len = (uint32_t)make_udp4(p1, "x");
	fc.flow.local.family = AF_INET;
	sm_buf_init(&b);
	sm_flow_capture_encode(&fc, &b);
	assert_int_equal(sm_flow_capture_decode(b.data, b.len, 0, &back), -EBADMSG);
	assert_non_null(strstr(sockmig_error(), "not a whole TCP packet"));
	sm_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_checksums),
		cmocka_unit_test(test_image_roundtrip),
		cmocka_unit_test(test_image_rejects_foreign_packet),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
