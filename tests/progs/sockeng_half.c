/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sockeng_half: moves one half-closed TCP connection from node A to node B
 * and checks, from the peer and from the kernel, that the remaining data
 * and both FINs are exchanged exactly once after the move.
 *
 *   sockeng_half --ns-peer P --ns-a A --ns-b B --family 4|6 --peer ADDR
 *                --job ADDR --case close_wait|fin_wait1|fin_wait2|last_ack|closing
 *
 *   close_wait  the peer sent D1 and shut down; the holder has not read D1
 *               and still has H to send (part of it unsent: the peer does
 *               not read before the move)
 *   fin_wait1   the holder wrote H and shut down, its FIN still queued
 *               behind unsent data; D1 from the peer unread
 *   fin_wait2   the holder wrote H (all read by the peer) and shut down,
 *               the FIN acked; D1 unread; the peer keeps sending (D2)
 *   last_ack    the peer sent D1 and shut down; the holder wrote H and shut
 *               down too
 *   closing     both shut down at once: the holder's data and FIN never
 *               reached the peer (dropped), the peer's D1 and FIN reached
 *               the holder
 *
 * Checks: the state saved and the state read back (TCP_INFO) after resume;
 * the peer reads all of H exactly once then EOF; the restored socket reads
 * D1 (+ D2) then EOF; no RST sent or received anywhere.
 * Prints "PASS ..." lines and exits 0, or "FAIL: <why>" and exits 1.
 */
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <linux/tcp.h>

#include "sockmig/socket.h"
#include "sockmig/sockmig.h"
#include "image.h"
#include "sock.h"
#include "sockeng_common.h"

#define HPORT 40123
#define PPORT 40124
#define D1_CLOSING 5000 /* the peer gets no ACK: within its first window */
#define D2 20000
#define HMAX 400000

static uint32_t D1 = 30000;
static const char *ns_p, *ns_a, *ns_b, *peer_addr, *job_addr, *tcase;

static unsigned tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		die("TCP_INFO: %s", strerror(errno));
	return ti.tcpi_state;
}

static void wait_state(int fd, unsigned want, const char *who)
{
	uint64_t deadline = now_ns() + 5ull * 1000000000;

	while (tcp_state(fd) != want) {
		if (now_ns() > deadline)
			die("%s: state %u, want %u", who, tcp_state(fd), want);
		usleep(1000);
	}
}

/* EOF within 10 s, nothing more before it; a reset fails. */
static void expect_eof(int fd, const char *who)
{
	uint64_t deadline = now_ns() + 10ull * 1000000000;
	uint8_t b;

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t k = recv(fd, &b, 1, MSG_DONTWAIT);

		if (k == 0)
			return;
		if (k > 0)
			die("%s: a byte after the expected end of the stream", who);
		if (errno != EAGAIN && errno != EINTR)
			die("%s: %s instead of EOF", who, strerror(errno));
		if (now_ns() > deadline)
			die("%s: no EOF within 10 s", who);
		poll(&pfd, 1, 100);
	}
}

/* Write the holder's stream until the socket refuses more (or HMAX). */
static uint64_t fill(int fd)
{
	static uint8_t buf[16384];
	uint64_t sent = 0;

	while (sent < HMAX) {
		ssize_t n;

		fill_pattern(buf, sizeof(buf), sent, 0x5a);
		n = send(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN)
				break;
			die("holder write: %s", strerror(errno));
		}
		sent += (uint64_t)n;
	}
	return sent;
}

static void send_stream(int fd, size_t n, uint64_t off, uint8_t seed)
{
	uint8_t *buf = malloc(n);

	fill_pattern(buf, n, off, seed);
	write_all(fd, buf, n);
	free(buf);
}

static void nft_block(const char *ns, int counter, int input)
{
	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; %s }\n"
	    "chain o { type filter hook output priority -300; tcp sport %d %s drop; }\n}\nEOF",
	    ns, input ? (counter ? "tcp dport 40123 counter drop;" : "tcp dport 40123 drop;") : "",
	    HPORT, counter ? "counter" : "");
}

int main(int argc, char *argv[])
{
	static const struct option lopts[] = {
		{ "ns-peer", 1, 0, 'p' }, { "ns-a", 1, 0, 'a' }, { "ns-b", 1, 0, 'b' },
		{ "family", 1, 0, 'f' },  { "peer", 1, 0, 'P' }, { "job", 1, 0, 'J' },
		{ "case", 1, 0, 'c' },    {},
	};
	struct sockaddr_storage ss;
	struct sockmig_tcp_state st, st2;
	socklen_t sl;
	int c, fam = 0, nsp, nsa, nsb, lfd, pfd, hfd, rfd, v, r;
	unsigned want, got;
	uint8_t *sndq, *rcvq;
	uint64_t hsent = 0, d_in;
	const uint8_t *s2, *r2;
	struct sm_buf b;
	uint32_t id;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': ns_p = optarg; break;
		case 'a': ns_a = optarg; break;
		case 'b': ns_b = optarg; break;
		case 'P': peer_addr = optarg; break;
		case 'J': job_addr = optarg; break;
		case 'c': tcase = optarg; break;
		case 'f': fam = !strcmp(optarg, "6") ? AF_INET6 : AF_INET; break;
		default: exit(2);
		}
	}
	if (!ns_p || !ns_a || !ns_b || !peer_addr || !job_addr || !tcase || !fam)
		die("usage: sockeng_half --ns-peer P --ns-a A --ns-b B --family 4|6 --peer ADDR --job ADDR --case C");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(tcase, "close_wait"))
		want = SOCKMIG_TCP_CLOSE_WAIT;
	else if (!strcmp(tcase, "fin_wait1"))
		want = SOCKMIG_TCP_FIN_WAIT1;
	else if (!strcmp(tcase, "fin_wait2"))
		want = SOCKMIG_TCP_FIN_WAIT2;
	else if (!strcmp(tcase, "last_ack"))
		want = SOCKMIG_TCP_LAST_ACK;
	else if (!strcmp(tcase, "closing"))
		want = SOCKMIG_TCP_CLOSING, D1 = D1_CLOSING;
	else
		die("unknown case %s", tcase);
	d_in = D1;
	nsp = ns_open(ns_p);
	nsa = ns_open(ns_a);
	nsb = ns_open(ns_b);

	ns_enter(nsp);
	lfd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	v = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v));
	v = 8192; /* a small window: the holder's data stays queued */
	setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	sl = make_addr(fam, peer_addr, PPORT, &ss);
	if (bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, 4) < 0)
		die("peer listen: %s", strerror(errno));
	ns_enter(nsa);
	hfd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sl = make_addr(fam, job_addr, HPORT, &ss);
	if (bind(hfd, (struct sockaddr *)&ss, sl) < 0)
		die("holder bind: %s", strerror(errno));
	sl = make_addr(fam, peer_addr, PPORT, &ss);
	if (connect(hfd, (struct sockaddr *)&ss, sl) < 0)
		die("holder connect: %s", strerror(errno));
	pfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (pfd < 0)
		die("accept: %s", strerror(errno));

	/* build the state; the flow is blocked both ways in A at the end */
	if (want == SOCKMIG_TCP_CLOSE_WAIT || want == SOCKMIG_TCP_LAST_ACK) {
		send_stream(pfd, D1, 0, 0xa5);
		shutdown(pfd, SHUT_WR);
		wait_state(hfd, SOCKMIG_TCP_CLOSE_WAIT, "holder");
		wait_inq(hfd, D1);
		hsent = fill(hfd);
		if (want == SOCKMIG_TCP_LAST_ACK) {
			shutdown(hfd, SHUT_WR);
			wait_state(hfd, SOCKMIG_TCP_LAST_ACK, "holder");
		}
		nft_block(ns_a, 0, 1);
	} else if (want == SOCKMIG_TCP_FIN_WAIT1) {
		send_stream(pfd, D1, 0, 0xa5);
		wait_inq(hfd, D1);
		hsent = fill(hfd);
		shutdown(hfd, SHUT_WR);
		wait_state(hfd, SOCKMIG_TCP_FIN_WAIT1, "holder");
		nft_block(ns_a, 0, 1);
	} else if (want == SOCKMIG_TCP_FIN_WAIT2) {
		hsent = 50000;
		send_stream(hfd, hsent, 0, 0x5a);
		read_expect(pfd, hsent, 0, 0x5a);
		shutdown(hfd, SHUT_WR);
		wait_state(hfd, SOCKMIG_TCP_FIN_WAIT2, "holder");
		send_stream(pfd, D1, 0, 0xa5);
		wait_inq(hfd, D1);
		nft_block(ns_a, 0, 1);
	} else { /* closing: the holder's packets are dropped from here on */
		nft_block(ns_a, 0, 0);
		hsent = 3000;
		send_stream(hfd, hsent, 0, 0x5a);
		shutdown(hfd, SHUT_WR);
		send_stream(pfd, D1, 0, 0xa5);
		shutdown(pfd, SHUT_WR);
		wait_state(hfd, SOCKMIG_TCP_CLOSING, "holder");
		wait_inq(hfd, D1);
		run("ip netns exec %s nft add rule inet sockeng i tcp dport %d drop", ns_a, HPORT);
	}
	nft_block(ns_b, 1, 1);

	r = sockmig_tcp_save(hfd, &st);
	if (r < 0)
		die("save: %s", sockmig_error());
	sndq = malloc(st.sndq_len + 1);
	rcvq = malloc(st.rcvq_len + 1);
	r = sockmig_tcp_save_queues(hfd, &st, sndq, rcvq);
	if (r < 0)
		die("save queues: %s", sockmig_error());
	printf("saved: state %u flags 0x%x sndq %u (unsent %u) rcvq %u, holder wrote %" PRIu64 "\n",
	       st.state, st.flags, st.sndq_len, st.sndq_unsent, st.rcvq_len, hsent);
	if (st.state != want)
		die("saved state %u, want %u", st.state, want);
	if (st.rcvq_len != D1)
		die("saved receive queue %u bytes, want %u", st.rcvq_len, D1);
	for (uint32_t i = 0; i < st.rcvq_len; i++)
		if (rcvq[i] != pattern(i, 0xa5))
			die("saved receive queue byte %u is wrong", i);
	for (uint32_t i = 0; i < st.sndq_len; i++)
		if (sndq[i] != pattern(hsent - st.sndq_len + i, 0x5a))
			die("saved send queue byte %u is wrong", i);
	if ((want == SOCKMIG_TCP_CLOSE_WAIT || want == SOCKMIG_TCP_LAST_ACK ||
	     want == SOCKMIG_TCP_FIN_WAIT1) && !st.sndq_unsent)
		die("the test wants unsent data in the send queue");

	sm_buf_init(&b);
	if (sm_sock_encode_tcp(&b, 7, &st, sndq, rcvq) < 0 ||
	    sm_sock_decode_tcp(b.data, b.len, 0, &id, &st2, &s2, &r2) < 0)
		die("image round trip: %s", sockmig_error());
	if (memcmp(&st, &st2, sizeof(st)))
		die("TCP state changed in the image round trip");
	if (sockmig_tcp_discard(hfd) < 0)
		die("discard: %s", sockmig_error());
	run("ip netns exec %s ip addr del %s/%d dev eth0", ns_a, job_addr, fam == AF_INET6 ? 128 : 32);

	ns_enter(nsb);
	r = sockmig_tcp_restore(&st2, s2, r2, st2.snd_una, &rfd);
	if (r < 0)
		die("restore: %s", sockmig_error());
	run("ip netns exec %s ip addr add %s/%d dev eth0 %s", ns_b, job_addr, fam == AF_INET6 ? 128 : 32,
	    fam == AF_INET6 ? "nodad" : "");
	run("ip netns exec %s ip neigh flush to %s", ns_p, job_addr);
	if (nft_counter(ns_b, "o") != 0)
		die("the restored socket sent packets before resume");
	run("ip netns exec %s nft delete table inet sockeng", ns_b);
	r = sockmig_tcp_resume(rfd, &st2);
	if (r < 0)
		die("resume: %s", sockmig_error());
	got = tcp_state(rfd);
	printf("restored state after resume: %u\n", got);
	if (got != want && !(want == SOCKMIG_TCP_CLOSING && got == SOCKMIG_TCP_CLOSE))
		die("restored socket is in state %u, the original was in %u", got, want);
	printf("PASS state %u read back\n", got);

	/* the peer: all of H once, then EOF once the holder has shut down */
	read_expect(pfd, hsent - (want == SOCKMIG_TCP_FIN_WAIT2 ? hsent : 0),
		    want == SOCKMIG_TCP_FIN_WAIT2 ? hsent : 0, 0x5a);
	if (want == SOCKMIG_TCP_CLOSE_WAIT)
		shutdown(rfd, SHUT_WR); /* the application closes after the move */
	expect_eof(pfd, "peer");
	printf("PASS peer read the holder's %" PRIu64 " bytes exactly once, then EOF\n", hsent);

	/* the restored socket: D1 (+ what the peer sends now), then EOF */
	if (want == SOCKMIG_TCP_FIN_WAIT1 || want == SOCKMIG_TCP_FIN_WAIT2) {
		send_stream(pfd, D2, D1, 0xa5);
		d_in += D2;
		shutdown(pfd, SHUT_WR);
	}
	read_expect(rfd, d_in, 0, 0xa5);
	expect_eof(rfd, "restored socket");
	printf("PASS restored socket read %" PRIu64 " bytes of the peer, then EOF\n", d_in);

	check_no_rst(nsp, "peer", 0);
	check_no_rst(nsa, "node A", 1);
	check_no_rst(nsb, "node B", 0);
	printf("PASS no RST sent by P, A or B, none seen by P or B\n");
	ns_enter(nsb);
	printf("final states: restored %u, peer %u\n", tcp_state(rfd), tcp_state(pfd));
	run("ip netns exec %s nft delete table inet sockeng", ns_a);
	close(rfd);
	close(pfd);
	close(lfd);
	sm_buf_free(&b);
	free(sndq);
	free(rcvq);
	printf("PASS sockeng_half %s family %d\n", tcase, fam == AF_INET6 ? 6 : 4);
	return 0;
}
