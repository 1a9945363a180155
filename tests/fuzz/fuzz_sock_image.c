/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness for the socket engine's section decoders: the first byte
 * picks the decoder (TCP or UDP socket section), the rest is the payload.
 * A decoded state must encode again to the very same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "sock.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockmig_tcp_state tst;
	struct sockmig_udp_state ust;
	struct sockmig_udp_queue *q;
	const uint8_t *sndq, *rcvq;
	struct sm_buf b;
	uint32_t id;

	if (size < 1)
		return 0;
	sm_buf_init(&b);
	if (data[0] & 1) {
		if (sm_sock_decode_udp(data + 1, size - 1, 0, &id, &ust, &q) == 0) {
			if (sm_sock_encode_udp(&b, id, &ust, q) == 0 &&
			    (b.len != size - 1 || memcmp(b.data, data + 1, b.len)))
				abort();
			sockmig_udp_queue_free(q);
		}
	} else {
		if (sm_sock_decode_tcp(data + 1, size - 1, 0, &id, &tst, &sndq, &rcvq) == 0) {
			if (sm_sock_encode_tcp(&b, id, &tst, sndq, rcvq) == 0 &&
			    (b.len != size - 1 || memcmp(b.data, data + 1, b.len)))
				abort();
		}
	}
	sm_buf_free(&b);
	return 0;
}
