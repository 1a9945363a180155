/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer harness for the decoder of captured-packet sections (0x0301):
 * the input is one section payload. Whatever decodes must re-encode to the
 * very same bytes, and every packet must be one a replay would accept. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockmig_flow_capture fc;
	struct sm_buf b;

	if (sm_flow_capture_decode(data, size, 0, &fc) < 0)
		return 0;
	sm_buf_init(&b);
	sm_flow_capture_encode(&fc, &b);
	if (b.err == 0 && (b.len != size || memcmp(b.data, data, size)))
		abort();
	for (uint32_t i = 0; i < fc.n_packets; i++)
		if (sockmig_packet_fix_checksums(fc.packets[i].data, fc.packets[i].len) < 0)
			abort();
	sm_buf_free(&b);
	sm_flow_capture_clear(&fc);
	return 0;
}
