/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Captured packets in the image: one section SM_SECTION_FLOW_CAPTURE (0x0301)
 * per flow, little-endian, field by field (docs/flow-control.md):
 *
 *   u8 version (1) | u8 proto | endpoint local | endpoint remote
 *   u8 has_ack | u32 ack | u16 window
 *   u32 n_packets | n x (u64 time_ns | u32 len | len bytes: the IP packet)
 *
 *   endpoint: u8 family | u32 scope_id | 16 bytes addr | u16 port
 *
 * The decoder trusts nothing: every count is checked against the bytes that
 * remain before anything is allocated, and every packet must parse as the
 * flow's own TCP/UDP packet, so that replay never sends what the capture
 * could not have produced.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "flow.h"
#include "util.h"

#define PACKET_MIN_ENCODED 12 /* time + length */
#define PACKET_MAX_LEN 0xffffu

static void put_endpoint(struct sm_buf *b, const struct sockmig_endpoint *e)
{
	sm_buf_put_u8(b, e->family);
	sm_buf_put_u32(b, e->scope_id);
	sm_buf_put_bytes(b, e->addr, 16);
	sm_buf_put_u16(b, e->port);
}

void sm_flow_capture_encode(const struct sockmig_flow_capture *fc, struct sm_buf *b)
{
	sm_buf_put_u8(b, SM_FLOW_CAPTURE_VERSION);
	sm_buf_put_u8(b, fc->flow.proto);
	put_endpoint(b, &fc->flow.local);
	put_endpoint(b, &fc->flow.remote);
	sm_buf_put_u8(b, fc->has_ack);
	sm_buf_put_u32(b, fc->ack);
	sm_buf_put_u16(b, fc->window);
	sm_buf_put_u32(b, fc->n_packets);
	for (uint32_t i = 0; i < fc->n_packets; i++) {
		sm_buf_put_u64(b, fc->packets[i].time_ns);
		sm_buf_put_blob(b, fc->packets[i].data, fc->packets[i].len);
	}
}

static int get_endpoint(struct sm_cursor *c, struct sockmig_endpoint *e, bool may_be_none)
{
	const uint8_t *a;

	e->family = sm_cur_u8(c);
	e->scope_id = sm_cur_u32(c);
	a = sm_cur_bytes(c, 16);
	if (a)
		memcpy(e->addr, a, 16);
	e->port = sm_cur_u16(c);
	if (c->err)
		return c->err;
	if (e->family == AF_INET || e->family == AF_INET6 || (may_be_none && e->family == 0))
		return 0;
	return sm_cur_fail(c, "flow capture", "endpoint family %u is not IPv4 or IPv6", e->family);
}

int sm_flow_capture_decode(const uint8_t *p, size_t len, uint64_t image_off, struct sockmig_flow_capture *ret)
{
	struct sockmig_flow_capture fc = { 0 };
	struct sm_cursor c;
	uint8_t version;
	int r;

	sm_cursor_init(&c, p, len, image_off);
	version = sm_cur_u8(&c);
	if (!c.err && version != SM_FLOW_CAPTURE_VERSION)
		return sm_cur_fail(&c, "flow capture", "version %u is not %u", version, SM_FLOW_CAPTURE_VERSION);
	fc.flow.proto = sm_cur_u8(&c);
	if (!c.err && fc.flow.proto != IPPROTO_TCP && fc.flow.proto != IPPROTO_UDP)
		return sm_cur_fail(&c, "flow capture", "protocol %u is not TCP or UDP", fc.flow.proto);
	r = get_endpoint(&c, &fc.flow.local, false);
	if (r == 0)
		r = get_endpoint(&c, &fc.flow.remote, true);
	if (r < 0)
		return sm_cur_check(&c, "flow capture", 0) ?: r;
	fc.has_ack = sm_cur_u8(&c);
	fc.ack = sm_cur_u32(&c);
	fc.window = sm_cur_u16(&c);
	fc.n_packets = sm_cur_u32(&c);
	r = sm_cur_check(&c, "flow capture", 0);
	if (r < 0)
		return r;
	if (fc.has_ack > 1)
		return sm_cur_fail(&c, "flow capture", "has_ack is %u, not 0 or 1", fc.has_ack);
	/* Before allocating: each packet takes at least its 12-byte header. */
	if (fc.n_packets > sm_cur_remaining(&c) / PACKET_MIN_ENCODED)
		return sm_cur_fail(&c, "flow capture", "%u packets cannot fit in the %zu bytes left", fc.n_packets,
				   sm_cur_remaining(&c));
	if (fc.n_packets) {
		fc.packets = calloc(fc.n_packets, sizeof(*fc.packets));
		if (!fc.packets)
			return sm_fail(-ENOMEM, "cannot allocate %u captured packets", fc.n_packets);
	}
	for (uint32_t i = 0; i < fc.n_packets; i++) {
		struct sockmig_packet *pk = &fc.packets[i];
		struct sm_pkt_tuple t;
		const uint8_t *data;
		size_t dlen;

		pk->time_ns = sm_cur_u64(&c);
		data = sm_cur_blob(&c, &dlen);
		if (!data) {
			r = sm_cur_check(&c, "flow capture packet", 0);
			goto fail;
		}
		if (dlen > PACKET_MAX_LEN || sm_pkt_parse(data, dlen, &t) < 0 || t.proto != fc.flow.proto) {
			r = sm_cur_fail(&c, "flow capture packet", "packet %u is not a whole %s packet", i,
					fc.flow.proto == IPPROTO_TCP ? "TCP" : "UDP");
			goto fail;
		}
		pk->data = malloc(dlen ? dlen : 1);
		if (!pk->data) {
			r = sm_fail(-ENOMEM, "cannot allocate a captured packet of %zu bytes", dlen);
			goto fail;
		}
		memcpy(pk->data, data, dlen);
		pk->len = (uint32_t)dlen;
	}
	r = sm_cur_check(&c, "flow capture", 1);
	if (r < 0)
		goto fail;
	*ret = fc;
	return 0;
fail:
	sm_flow_capture_clear(&fc);
	return r;
}

int sm_flow_captures_write(struct sm_image_writer *w, const struct sockmig_flow_capture *fc, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sm_buf b;
		int r;

		sm_buf_init(&b);
		sm_flow_capture_encode(&fc[i], &b);
		r = sm_image_write_buf(w, SM_SECTION_FLOW_CAPTURE, &b);
		sm_buf_free(&b);
		if (r < 0)
			return r;
	}
	return 0;
}
