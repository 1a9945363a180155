/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Socket engine image sections: round trips, and every damaged payload
 * refused with a sentence (truncation at every length, wrong family, a queue
 * that disagrees with its sequence numbers, a lying datagram count).
 *
 * With SOCK_SEED_DIR set, also writes fuzzer seeds there (the first byte
 * picks the decoder, as in tests/fuzz/fuzz_sock_image.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "image.h"
#include "sock.h"
#include "sockmig/sockmig.h"

static const uint8_t sndq[] = "send queue bytes, 0123456789";
static const uint8_t rcvq[] = "receive";

static void tcp_sample(struct sockmig_tcp_state *st)
{
	memset(st, 0, sizeof(*st));
	st->flags = SOCKMIG_TCP_HAS_WINDOW | SOCKMIG_TCP_HAS_TIMESTAMP;
	st->family = AF_INET6;
	st->state = 1;
	st->opts = 7;
	st->snd_wscale = 7;
	st->rcv_wscale = 10;
	st->local.family = AF_INET6;
	st->local.addr[15] = 1;
	st->local.port = 80;
	st->remote.family = AF_INET6;
	st->remote.addr[0] = 0xfd;
	st->remote.port = 40000;
	st->mss_clamp = 1440;
	st->snd_mss = 1428;
	st->sndq_len = sizeof(sndq);
	st->snd_seq = 5; /* wraps: snd_una is just below 2^32 */
	st->snd_una = st->snd_seq - st->sndq_len;
	st->sndq_unsent = 3;
	st->rcv_seq = 123456;
	st->rcvq_len = sizeof(rcvq);
	st->ts_now = 999;
	st->snd_wnd = 65535;
	st->max_window = 65535;
	st->sockopts.present = SOCKMIG_OPT_CONGESTION | SOCKMIG_OPT_SNDBUF;
	st->sockopts.sndbuf = 4096;
	strcpy(st->sockopts.congestion, "reno");
}

static void write_seed(const char *name, uint8_t kind, const struct sm_buf *b)
{
	const char *dir = getenv("SOCK_SEED_DIR");
	char path[512];
	FILE *f;

	if (!dir)
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	assert_non_null(f);
	fputc(kind, f);
	fwrite(b->data, 1, b->len, f);
	fclose(f);
}

static void test_tcp_roundtrip(void **state)
{
	struct sockmig_tcp_state st, st2;
	const uint8_t *s2, *r2;
	struct sm_buf b;
	uint32_t id;

	(void)state;
	tcp_sample(&st);
	sm_buf_init(&b);
	assert_int_equal(sm_sock_encode_tcp(&b, 77, &st, sndq, rcvq), 0);
	assert_int_equal(sm_sock_decode_tcp(b.data, b.len, 0, &id, &st2, &s2, &r2), 0);
	assert_int_equal(id, 77);
	assert_memory_equal(&st, &st2, sizeof(st));
	assert_memory_equal(s2, sndq, sizeof(sndq));
	assert_memory_equal(r2, rcvq, sizeof(rcvq));
	write_seed("tcp-v6", 0, &b);

	/* every truncation is refused, with a sentence */
	for (size_t n = 0; n < b.len; n++) {
		sockmig_error_clear();
		assert_int_equal(sm_sock_decode_tcp(b.data, n, 1000, &id, &st2, &s2, &r2), -EBADMSG);
		assert_non_null(strstr(sockmig_error(), "TCP socket section"));
	}
	sm_buf_free(&b);
}

static void test_tcp_inconsistent(void **state)
{
	struct sockmig_tcp_state st, st2;
	const uint8_t *s2, *r2;
	struct sm_buf b;
	uint32_t id;

	(void)state;
	/* a send queue that does not span snd_una..snd_seq */
	tcp_sample(&st);
	st.snd_seq += 1;
	sm_buf_init(&b);
	assert_int_equal(sm_sock_encode_tcp(&b, 1, &st, sndq, rcvq), 0);
	assert_int_equal(sm_sock_decode_tcp(b.data, b.len, 0, &id, &st2, &s2, &r2), -EBADMSG);
	assert_non_null(strstr(sockmig_error(), "sequence numbers"));
	sm_buf_free(&b);

	/* an endpoint of another family than the socket's */
	tcp_sample(&st);
	st.remote.family = AF_INET;
	sm_buf_init(&b);
	assert_int_equal(sm_sock_encode_tcp(&b, 1, &st, sndq, rcvq), 0);
	assert_int_equal(sm_sock_decode_tcp(b.data, b.len, 0, &id, &st2, &s2, &r2), -EBADMSG);
	sm_buf_free(&b);

	/* a congestion name without its NUL */
	tcp_sample(&st);
	memset(st.sockopts.congestion, 'x', sizeof(st.sockopts.congestion));
	sm_buf_init(&b);
	assert_int_equal(sm_sock_encode_tcp(&b, 1, &st, sndq, rcvq), 0);
	assert_int_equal(sm_sock_decode_tcp(b.data, b.len, 0, &id, &st2, &s2, &r2), -EBADMSG);
	sm_buf_free(&b);
}

static void test_udp_roundtrip(void **state)
{
	struct sockmig_udp_state st = { 0 }, st2;
	struct sockmig_udp_dgram dg[3] = { 0 };
	struct sockmig_udp_queue *q, *q2;
	struct sm_buf b;
	uint32_t id;

	(void)state;
	st.family = AF_INET;
	st.local.family = AF_INET;
	st.local.port = 53;
	for (int i = 0; i < 3; i++) {
		dg[i].src.family = AF_INET;
		dg[i].src.addr[0] = 10;
		dg[i].src.addr[3] = (uint8_t)i;
		dg[i].src.port = (uint16_t)(1000 + i);
		dg[i].data = sndq;
		dg[i].len = (uint32_t)i * 5; /* an empty datagram too */
	}
	dg[2].dst.family = AF_INET;
	assert_int_equal(sockmig_udp_queue_new(dg, 3, &q), 0);
	sm_buf_init(&b);
	assert_int_equal(sm_sock_encode_udp(&b, 9, &st, q), 0);
	assert_int_equal(sm_sock_decode_udp(b.data, b.len, 0, &id, &st2, &q2), 0);
	assert_int_equal(id, 9);
	assert_memory_equal(&st, &st2, sizeof(st));
	assert_int_equal(q2->count, 3);
	for (int i = 0; i < 3; i++) {
		assert_memory_equal(&q2->dgrams[i].src, &dg[i].src, sizeof(dg[i].src));
		assert_memory_equal(&q2->dgrams[i].dst, &dg[i].dst, sizeof(dg[i].dst));
		assert_int_equal(q2->dgrams[i].len, dg[i].len);
		assert_memory_equal(q2->dgrams[i].data, sndq, dg[i].len);
	}
	write_seed("udp-v4", 1, &b);
	sockmig_udp_queue_free(q2);

	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(sm_sock_decode_udp(b.data, n, 0, &id, &st2, &q2), -EBADMSG);

	/* a count that promises more datagrams than there are bytes */
	size_t count_off = b.len - (3 * (2 * 23 + 4) + 0 + 5 + 10) - 4;
	b.data[count_off + 3] = 0x7f;
	assert_int_equal(sm_sock_decode_udp(b.data, b.len, 0, &id, &st2, &q2), -EBADMSG);
	assert_non_null(strstr(sockmig_error(), "more datagrams than bytes"));
	sm_buf_free(&b);
	sockmig_udp_queue_free(q);
}

/* Version 2: the multicast trailer (memberships, IPv6 multicast interface). */
static void test_udp_multicast(void **state)
{
	struct sockmig_udp_state st = { 0 }, st2;
	struct sockmig_udp_queue *q2;
	struct sm_buf b;
	uint32_t id;

	(void)state;
	st.family = AF_INET6;
	st.local.family = AF_INET6;
	st.local.port = 5353;
	st.flags = SOCKMIG_UDP_MC_PROBED;
	st.sockopts.present = SOCKMIG_OPT_MC;
	st.sockopts.mc_ifindex = 4;
	strcpy(st.mc_ifname, "eth0");
	st.mc_count = 2;
	st.mc[0].family = AF_INET6;
	st.mc[0].ifindex = 4;
	strcpy(st.mc[0].ifname, "eth0");
	st.mc[0].group[0] = 0xff;
	st.mc[0].group[1] = 0x15;
	st.mc[0].group[15] = 1;
	st.mc[1].family = AF_INET; /* an IPv4 group on a dual-stack socket */
	st.mc[1].ifindex = 4;
	strcpy(st.mc[1].ifname, "eth0");
	st.mc[1].group[0] = 239;
	st.mc[1].group[3] = 1;
	sm_buf_init(&b);
	assert_int_equal(sm_sock_encode_udp(&b, 3, &st, NULL), 0);
	assert_int_equal(b.data[0], 2);
	assert_int_equal(sm_sock_decode_udp(b.data, b.len, 0, &id, &st2, &q2), 0);
	assert_memory_equal(&st, &st2, sizeof(st));
	assert_int_equal(q2->count, 0);
	sockmig_udp_queue_free(q2);
	write_seed("udp-v6-mc", 1, &b);

	for (size_t n = 0; n < b.len; n++)
		assert_int_equal(sm_sock_decode_udp(b.data, n, 0, &id, &st2, &q2), -EBADMSG);

	/* the last membership's group made unicast: refused */
	b.data[b.len - 16] = 10;
	assert_int_equal(sm_sock_decode_udp(b.data, b.len, 0, &id, &st2, &q2), -EBADMSG);
	assert_non_null(strstr(sockmig_error(), "non-multicast"));
	sm_buf_free(&b);

	/* nothing multicast: version 1, as before */
	memset(&st.mc, 0, sizeof(st.mc));
	st.mc_count = 0;
	memset(st.mc_ifname, 0, sizeof(st.mc_ifname));
	sm_buf_init(&b);
	assert_int_equal(sm_sock_encode_udp(&b, 3, &st, NULL), 0);
	assert_int_equal(b.data[0], 1);
	sm_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_roundtrip),
		cmocka_unit_test(test_tcp_inconsistent),
		cmocka_unit_test(test_udp_roundtrip),
		cmocka_unit_test(test_udp_multicast),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
