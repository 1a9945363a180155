/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The messages of a socket move: encoding, and the checked decoding of bytes
 * that come from the other node (docs/socket-move.md). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "flow.h"
#include "move.h"
#include "sock.h"
#include "util.h"

const char *sm_move_status_name(uint32_t code)
{
	switch (code) {
	case SM_MOVE_ANNOUNCED:
		return "ANNOUNCED";
	case SM_MOVE_CONTINUE:
		return "CONTINUE";
	case SM_MOVE_RUNNING:
		return "RUNNING";
	case SM_MOVE_ABORT:
		return "ABORT";
	case SM_MOVE_BACK:
		return "BACK";
	case SM_MOVE_COMMIT:
		return "COMMIT";
	case SM_MOVE_PRECOPY:
		return "PRECOPY";
	case SM_MOVE_PRECOPY_DONE:
		return "PRECOPY_DONE";
	case SM_MOVE_PRECOPY_HELD:
		return "PRECOPY_HELD";
	}
	return "unknown";
}

static void move_sock_clear(struct sm_move_sock *s)
{
	free(s->sndq);
	free(s->rcvq);
	sockmig_udp_queue_free(s->udpq);
	s->sndq = s->rcvq = NULL;
	s->udpq = NULL;
}

void sm_move_msg_clear(struct sm_move_msg *m)
{
	for (size_t i = 0; i < m->n_socks; i++)
		move_sock_clear(&m->socks[i]);
	free(m->socks);
	sockmig_flow_captures_free(m->caps, m->n_caps);
	memset(m, 0, sizeof(*m));
}

int sm_move_write_header(struct sm_image_writer *w, const struct sm_move_header *h)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_u32(&b, h->version);
	sm_buf_put_u32(&b, h->pid);
	sm_buf_put_u32(&b, h->n_sockets);
	sm_buf_put_u32(&b, h->flags);
	sm_buf_put_u32(&b, h->n_addrs);
	for (uint32_t i = 0; i < h->n_addrs; i++) {
		sm_buf_put_u8(&b, h->addrs[i].family);
		sm_buf_put_u8(&b, h->addrs[i].prefixlen);
		sm_buf_put_bytes(&b, h->addrs[i].addr, 16);
	}
	r = sm_image_write_buf(w, SM_SEC_MOVE_HEADER, &b);
	sm_buf_free(&b);
	return r;
}

/* A section's worth: big enough that 1,000 flows go in a few, small
 * enough that D starts on them early (and far below the 64 MiB limit). */
#define CAPTURES_SECTION (256u << 10)

static int flush_captures(struct sm_image_writer *w, struct sm_buf *b, uint32_t count)
{
	int r;

	if (!count)
		return 0;
	if (b->err)
		return b->err;
	/* the count goes first: patched in now that it is known */
	b->data[0] = (uint8_t)count;
	b->data[1] = (uint8_t)(count >> 8);
	b->data[2] = (uint8_t)(count >> 16);
	b->data[3] = (uint8_t)(count >> 24);
	r = sm_image_write_buf(w, SM_SEC_MOVE_CAPTURES, b);
	b->len = 0;
	sm_buf_put_u32(b, 0);
	return r;
}

int sm_move_write_captures(struct sm_image_writer *w, const struct sockmig_flow_capture *fc, size_t n)
{
	struct sm_buf b, one;
	uint32_t count = 0;
	int r = 0;

	sm_buf_init(&b);
	sm_buf_init(&one);
	sm_buf_put_u32(&b, 0);
	for (size_t i = 0; r >= 0 && i < n; i++) {
		if (!fc[i].n_packets)
			continue;
		one.len = 0;
		sm_flow_capture_encode(&fc[i], &one);
		if (one.err) {
			r = one.err;
			break;
		}
		if (count && b.len + 4 + one.len > CAPTURES_SECTION) {
			r = flush_captures(w, &b, count);
			count = 0;
		}
		sm_buf_put_blob(&b, one.data, one.len);
		count++;
	}
	if (r >= 0)
		r = flush_captures(w, &b, count);
	sm_buf_free(&b);
	sm_buf_free(&one);
	return r;
}

int sm_move_write_status(struct sm_image_writer *w, uint32_t code, const char *reason)
{
	size_t len = reason ? strnlen(reason, SM_MOVE_REASON_MAX - 1) : 0;
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_u32(&b, code);
	sm_buf_put_blob(&b, reason ? reason : "", len);
	r = sm_image_write_buf(w, SM_SEC_MOVE_STATUS, &b);
	sm_buf_free(&b);
	return r;
}

int sm_move_send_status(int fd, uint32_t code, const char *reason)
{
	struct sm_image_writer *w;
	int r;

	r = sm_image_writer_new(fd, SM_IMAGE_KIND_CONTROL, &w);
	if (r < 0)
		return r;
	r = sm_move_write_status(w, code, reason);
	if (r >= 0)
		r = sm_image_writer_finish(w);
	sm_image_writer_free(w);
	return r;
}

static int decode_header(const uint8_t *p, size_t len, uint64_t off, struct sm_move_header *h)
{
	struct sm_cursor c;

	sm_cursor_init(&c, p, len, off);
	h->version = sm_cur_u32(&c);
	h->pid = sm_cur_u32(&c);
	h->n_sockets = sm_cur_u32(&c);
	h->flags = sm_cur_u32(&c);
	h->n_addrs = sm_cur_u32(&c);
	if (c.err)
		return sm_cur_check(&c, "move header", 0);
	if (h->version != SM_MOVE_VERSION)
		return sm_cur_fail(&c, "move header", "protocol version %u, this sockmig speaks %u", h->version,
				   SM_MOVE_VERSION);
	if (h->n_sockets > SM_MOVE_MAX_SOCKETS)
		return sm_cur_fail(&c, "move header", "%u sockets, at most %u", h->n_sockets, SM_MOVE_MAX_SOCKETS);
	if (h->n_addrs > SM_MOVE_MAX_ADDRS)
		return sm_cur_fail(&c, "move header", "%u addresses, at most %u", h->n_addrs, SM_MOVE_MAX_ADDRS);
	for (uint32_t i = 0; i < h->n_addrs; i++) {
		struct sm_move_addr *a = &h->addrs[i];
		const uint8_t *bytes;

		a->family = sm_cur_u8(&c);
		a->prefixlen = sm_cur_u8(&c);
		bytes = sm_cur_bytes(&c, 16);
		if (c.err)
			break;
		memcpy(a->addr, bytes, 16);
		if ((a->family != AF_INET && a->family != AF_INET6) ||
		    a->prefixlen > (a->family == AF_INET ? 32 : 128))
			return sm_cur_fail(&c, "move header", "address %u has family %u and prefix length %u", i,
					   a->family, a->prefixlen);
	}
	return sm_cur_check(&c, "move header", 1);
}

static int decode_status(const uint8_t *p, size_t len, uint64_t off, struct sm_move_msg *m)
{
	struct sm_cursor c;
	const uint8_t *reason;
	size_t rlen = 0;

	sm_cursor_init(&c, p, len, off);
	m->status = sm_cur_u32(&c);
	reason = sm_cur_blob(&c, &rlen);
	if (c.err)
		return sm_cur_check(&c, "move status", 0);
	if (m->status < SM_MOVE_ANNOUNCED || m->status > SM_MOVE_PRECOPY_HELD)
		return sm_cur_fail(&c, "move status", "unknown status %u", m->status);
	if (rlen >= SM_MOVE_REASON_MAX)
		return sm_cur_fail(&c, "move status", "reason of %zu bytes, at most %d", rlen, SM_MOVE_REASON_MAX - 1);
	/* Printed to a terminal later: keep printable ASCII only. */
	for (size_t i = 0; i < rlen; i++)
		m->reason[i] = (reason[i] >= 0x20 && reason[i] < 0x7f) ? (char)reason[i] : '?';
	m->reason[rlen] = '\0';
	m->has_status = true;
	return sm_cur_check(&c, "move status", 1);
}

static int dup_bytes(const uint8_t *p, size_t n, uint8_t **ret)
{
	*ret = NULL;
	if (!n)
		return 0;
	*ret = malloc(n);
	if (!*ret)
		return -ENOMEM;
	memcpy(*ret, p, n);
	return 0;
}

static int add_sock(struct sm_move_msg *m, uint16_t type, const uint8_t *p, size_t len, uint64_t off)
{
	struct sm_move_sock *s, *ns;
	int r;

	if (m->n_socks >= SM_MOVE_MAX_SOCKETS)
		return sm_fail(-EBADMSG, "image byte %llu: more than %u sockets", (unsigned long long)off,
			       SM_MOVE_MAX_SOCKETS);
	/* doubling: one realloc a socket copied the whole array each time
	 * (a quarter of a second of memcpy at 1,000 sockets) */
	if (m->n_socks == m->cap_socks) {
		size_t cap = m->cap_socks ? 2 * m->cap_socks : 16;

		ns = realloc(m->socks, cap * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		m->socks = ns;
		m->cap_socks = cap;
	}
	s = &m->socks[m->n_socks];
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (type == SM_SEC_TCP_LISTENER) {
		r = sm_sock_decode_listener(p, len, off, &s->id, &s->lst);
		if (r < 0)
			return r;
		s->proto = IPPROTO_TCP;
		s->listener = true;
		s->flow.proto = IPPROTO_TCP;
		sm_ep_wire(&s->lst.local, &s->flow.local);
	} else if (type == SM_SEC_TCP_SOCKET) {
		const uint8_t *sndq, *rcvq;

		r = sm_sock_decode_tcp(p, len, off, &s->id, &s->tcp, &sndq, &rcvq);
		if (r < 0)
			return r;
		s->proto = IPPROTO_TCP;
		if (dup_bytes(sndq, s->tcp.sndq_len, &s->sndq) < 0 || dup_bytes(rcvq, s->tcp.rcvq_len, &s->rcvq) < 0) {
			move_sock_clear(s);
			return -ENOMEM;
		}
		sockmig_tcp_flow(&s->tcp, &s->flow);
	} else {
		r = sm_sock_decode_udp(p, len, off, &s->id, &s->udp, &s->udpq);
		if (r < 0)
			return r;
		s->proto = IPPROTO_UDP;
		s->flow.proto = IPPROTO_UDP;
		sm_ep_wire(&s->udp.local, &s->flow.local);
		sm_ep_wire(&s->udp.remote, &s->flow.remote);
	}
	for (size_t i = 0; i < m->n_socks; i++) {
		if (m->socks[i].id == s->id) {
			move_sock_clear(s);
			return sm_fail(-EBADMSG, "image byte %llu: fd %u appears twice", (unsigned long long)off, s->id);
		}
	}
	m->n_socks++;
	return 0;
}

static int add_capture(struct sm_move_msg *m, const uint8_t *p, size_t len, uint64_t off)
{
	struct sockmig_flow_capture fc, *nc;
	int r;

	if (m->n_caps >= SM_MOVE_MAX_SOCKETS)
		return sm_fail(-EBADMSG, "image byte %llu: more than %u flow captures", (unsigned long long)off,
			       SM_MOVE_MAX_SOCKETS);
	r = sm_flow_capture_decode(p, len, off, &fc);
	if (r < 0)
		return r;
	if (m->n_caps == m->cap_caps) {
		size_t cap = m->cap_caps ? 2 * m->cap_caps : 16;

		nc = realloc(m->caps, cap * sizeof(*nc));
		if (!nc) {
			sm_flow_capture_clear(&fc);
			return -ENOMEM;
		}
		m->caps = nc;
		m->cap_caps = cap;
	}
	m->caps[m->n_caps++] = fc;
	return 0;
}

/* 0x0403: u32 count, then count x (u32 length, a 0x0301 payload). */
static int add_captures(struct sm_move_msg *m, const uint8_t *p, size_t len, uint64_t off)
{
	struct sm_cursor c;
	uint32_t count;

	sm_cursor_init(&c, p, len, off);
	count = sm_cur_u32(&c);
	if (c.err)
		return sm_cur_check(&c, "flow captures", 0);
	/* before anything is made: each takes at least its length */
	if (count > sm_cur_remaining(&c) / 4)
		return sm_cur_fail(&c, "flow captures", "%u captures cannot fit in the %zu bytes left", count,
				   sm_cur_remaining(&c));
	for (uint32_t i = 0; i < count; i++) {
		uint64_t at = off + c.off + 4;
		size_t n;
		const uint8_t *one = sm_cur_blob(&c, &n);
		int r;

		if (!one)
			return sm_cur_check(&c, "flow captures", 0);
		r = add_capture(m, one, n, at);
		if (r < 0)
			return r;
	}
	return sm_cur_check(&c, "flow captures", 1);
}

int sm_move_msg_begin(struct sm_image_reader *r, struct sm_move_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->kind = sm_image_reader_kind(r);
	if (m->kind != SM_IMAGE_KIND_SOCKETS && m->kind != SM_IMAGE_KIND_CONTROL)
		return sm_fail(-EBADMSG, "image byte 12: an image of kind %u, not a socket move", m->kind);
	return 0;
}

static int msg_section(struct sm_image_reader *r, struct sm_move_msg *m)
{
	const uint8_t *data;
	uint16_t type;
	size_t len;
	uint64_t off;
	int k;

	k = sm_image_next_section(r, &type, &data, &len, &off);
	if (k <= 0)
		return k;
	switch (type) {
	case SM_SEC_MOVE_HEADER:
		if (m->has_header)
			return sm_fail(-EBADMSG, "image byte %llu: a second move header", (unsigned long long)off);
		k = decode_header(data, len, off, &m->hdr);
		m->has_header = true;
		break;
	case SM_SEC_MOVE_STATUS:
		if (m->has_status)
			return sm_fail(-EBADMSG, "image byte %llu: a second status", (unsigned long long)off);
		k = decode_status(data, len, off, m);
		break;
	case SM_SEC_TCP_SOCKET:
	case SM_SEC_TCP_LISTENER:
	case SM_SEC_UDP_SOCKET:
		k = add_sock(m, type, data, len, off);
		break;
	case SM_SECTION_FLOW_CAPTURE:
		k = add_capture(m, data, len, off);
		break;
	case SM_SEC_MOVE_CAPTURES:
		k = add_captures(m, data, len, off);
		break;
	default:
		k = sm_image_unknown_section(r);
		break;
	}
	return k < 0 ? k : 1;
}

int sm_move_msg_next(struct sm_image_reader *r, struct sm_move_msg *m)
{
	int k = msg_section(r, m);

	if (k != 0)
		return k;
	/* the end: what the whole must satisfy (a source that gave up in the
	 * middle of image 1 says so with a status instead) */
	if (m->has_header && m->hdr.n_sockets != m->n_socks && !(m->has_status && m->status == SM_MOVE_ABORT))
		return sm_fail(-EBADMSG, "the move header announces %u sockets, the image holds %zu", m->hdr.n_sockets,
			       m->n_socks);
	if (m->kind == SM_IMAGE_KIND_CONTROL && (!m->has_status || m->n_socks || m->has_header ||
						  (m->n_caps && m->status != SM_MOVE_ABORT)))
		return sm_fail(-EBADMSG, "a control message must hold exactly one status (and captures only with ABORT)");
	return 0;
}

int sm_move_msg_read(struct sm_image_reader *r, struct sm_move_msg *ret)
{
	struct sm_move_msg m;
	int k = sm_move_msg_begin(r, &m);

	while (k >= 0 && (k = sm_move_msg_next(r, &m)) > 0)
		;
	if (k < 0) {
		sm_move_msg_clear(&m);
		return k;
	}
	*ret = m;
	return 0;
}

int sm_move_recv_begin(int fd, unsigned timeout_ms, struct sm_image_reader **ret_r, struct sm_move_msg *m)
{
	struct sm_image_reader *r;
	struct stat st;
	int k;

	/* A socket gets a receive timeout, so that a peer that stops in the
	 * middle of a message cannot hold us either. */
	if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
		struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	k = sm_image_reader_new_fd(fd, &r);
	if (k == -EAGAIN || k == -EWOULDBLOCK)
		return sm_fail(-ETIMEDOUT, "the other node did not answer within %u ms", timeout_ms);
	if (k == -EPIPE)
		return sm_fail(-EPIPE, "the other node closed the connection");
	if (k < 0)
		return k;
	k = sm_move_msg_begin(r, m);
	if (k < 0) {
		sm_image_reader_free(r);
		return k;
	}
	*ret_r = r;
	return 0;
}

int sm_move_recv_next(struct sm_image_reader *r, unsigned timeout_ms, struct sm_move_msg *m)
{
	int k = sm_move_msg_next(r, m);

	if (k == -EAGAIN || k == -EWOULDBLOCK)
		return sm_fail(-ETIMEDOUT, "the other node stopped in the middle of a message for %u ms", timeout_ms);
	return k;
}

int sm_move_recv(int fd, unsigned timeout_ms, struct sm_move_msg *ret)
{
	struct sm_image_reader *r;
	struct sm_move_msg m;
	int k;

	k = sm_move_recv_begin(fd, timeout_ms, &r, &m);
	if (k < 0)
		return k;
	while ((k = sm_move_recv_next(r, timeout_ms, &m)) > 0)
		;
	sm_image_reader_free(r);
	if (k < 0) {
		sm_move_msg_clear(&m);
		return k;
	}
	*ret = m;
	return 0;
}

bool sm_move_flow_eq(const struct sockmig_flow *a, const struct sockmig_flow *b)
{
	const struct sockmig_endpoint *e[4] = { &a->local, &b->local, &a->remote, &b->remote };

	if (a->proto != b->proto)
		return false;
	for (int i = 0; i < 4; i += 2) {
		if (e[i]->family != e[i + 1]->family || e[i]->port != e[i + 1]->port ||
		    memcmp(e[i]->addr, e[i + 1]->addr, e[i]->family == AF_INET ? 4 : 16))
			return false;
	}
	return true;
}

int sm_move_flow_of_fd(int fd, uint8_t proto, struct sockmig_flow *ret)
{
	struct sockaddr_storage ss;
	struct sockmig_endpoint ep;
	socklen_t len = sizeof(ss);

	memset(ret, 0, sizeof(*ret));
	ret->proto = proto;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	sm_sockaddr_to_ep(&ss, &ep);
	sm_ep_wire(&ep, &ret->local);
	len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		sm_sockaddr_to_ep(&ss, &ep);
		sm_ep_wire(&ep, &ret->remote);
	} else if (errno != ENOTCONN) {
		return -errno;
	}
	return 0;
}

int sockmig_sockets_image_read(int fd, struct sockmig_sockets_image **ret)
{
	struct sockmig_sockets_image *img;
	struct sm_image_reader *r;
	struct sm_move_msg m;
	int k;

	k = sm_image_reader_new_fd(fd, &r);
	if (k < 0)
		return k;
	k = sm_move_msg_read(r, &m);
	sm_image_reader_free(r);
	if (k < 0)
		return k;
	if (!m.has_header) {
		sm_move_msg_clear(&m);
		return sm_fail(-EBADMSG, "the image has no move header: not a sockets image");
	}
	img = calloc(1, sizeof(*img) + m.n_socks * sizeof(img->socks[0]));
	if (!img) {
		sm_move_msg_clear(&m);
		return -ENOMEM;
	}
	img->pid = m.hdr.pid;
	img->addresses_move = !!(m.hdr.flags & SM_MOVE_F_ADDRESSES);
	img->n_addrs = m.hdr.n_addrs;
	for (uint32_t i = 0; i < m.hdr.n_addrs; i++) {
		img->addrs[i].family = m.hdr.addrs[i].family;
		img->addrs[i].prefixlen = m.hdr.addrs[i].prefixlen;
		memcpy(img->addrs[i].addr, m.hdr.addrs[i].addr, 16);
	}
	img->n = m.n_socks;
	for (size_t i = 0; i < m.n_socks; i++) {
		struct sockmig_image_sock *o = &img->socks[i];
		const struct sm_move_sock *s = &m.socks[i];

		o->fd = s->id;
		o->proto = s->proto;
		o->tcp = s->tcp;
		if (s->listener) {
			o->tcp.state = 10; /* TCP_LISTEN */
			o->tcp.family = s->lst.family;
			o->tcp.local = s->lst.local;
			o->backlog = s->lst.backlog;
		}
		o->udp = s->udp;
		if (s->udpq) {
			o->udp_queued = s->udpq->count;
			o->udp_queued_bytes = s->udpq->bytes;
		}
		for (size_t k2 = 0; k2 < m.n_caps; k2++)
			if (sm_move_flow_eq(&m.caps[k2].flow, &s->flow))
				o->captured += m.caps[k2].n_packets;
	}
	sm_move_msg_clear(&m);
	*ret = img;
	return 0;
}
