/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sockeng_syn: moves a TCP socket whose non-blocking connect() is in
 * progress (SYN_SENT) from node A to node B; the connection must complete
 * with the peer after the move and carry data both ways.
 *
 *   sockeng_syn --ns-peer P --ns-a A --ns-b B --family 4|6 --peer ADDR
 *               --job ADDR --case unseen|seen
 *
 *   unseen  the freeze dropped the SYN: the peer never saw it
 *   seen    the SYN reached the peer (a request waits in its listener),
 *           the freeze dropped the SYN-ACK
 *
 * Checks: state SYN_SENT saved; after resume the restored socket connects
 * (SO_ERROR 0, ESTABLISHED), the peer accepts it, the local port and the
 * ISN are the original ones, bytes flow both ways, no reset seen by the
 * peer's application. Prints the time from resume to connected.
 */
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <linux/tcp.h>

#include "sockmig/socket.h"
#include "sockmig/sockmig.h"
#include "sock.h"
#include "sockeng_common.h"

#define HPORT 40123
#define PPORT 40124

static unsigned tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		die("TCP_INFO: %s", strerror(errno));
	return ti.tcpi_state;
}

int main(int argc, char *argv[])
{
	static const struct option lopts[] = {
		{ "ns-peer", 1, 0, 'p' }, { "ns-a", 1, 0, 'a' }, { "ns-b", 1, 0, 'b' },
		{ "family", 1, 0, 'f' },  { "peer", 1, 0, 'P' }, { "job", 1, 0, 'J' },
		{ "case", 1, 0, 'c' },    {},
	};
	const char *ns_p = NULL, *ns_a = NULL, *ns_b = NULL, *peer_addr = NULL, *job_addr = NULL, *tcase = NULL;
	struct sockaddr_storage ss;
	struct sockmig_tcp_state st;
	socklen_t sl;
	int c, fam = 0, nsp, nsa, nsb, lfd, pfd, hfd, rfd, v, r, seen;
	uint8_t buf[20000];
	uint64_t t0, t_conn;

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
		die("usage: sockeng_syn --ns-peer P --ns-a A --ns-b B --family 4|6 --peer ADDR --job ADDR --case unseen|seen");
	setvbuf(stdout, NULL, _IOLBF, 0);
	seen = !strcmp(tcase, "seen");
	nsp = ns_open(ns_p);
	nsa = ns_open(ns_a);
	nsb = ns_open(ns_b);

	ns_enter(nsp);
	lfd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	sl = make_addr(fam, peer_addr, PPORT, &ss);
	if (bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, 4) < 0)
		die("peer listen: %s", strerror(errno));

	/* the freeze comes first: only the SYN-ACK is dropped ("seen"), or
	 * the SYN too */
	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; tcp dport %d drop; }\n"
	    "chain o { type filter hook output priority -300; %s }\n}\nEOF", ns_a, HPORT,
	    seen ? "" : "tcp sport 40123 drop;");
	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; tcp dport %d counter drop; }\n"
	    "chain o { type filter hook output priority -300; tcp sport %d counter drop; }\n}\nEOF", ns_b, HPORT, HPORT);
	ns_enter(nsa);
	hfd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	sl = make_addr(fam, job_addr, HPORT, &ss);
	if (bind(hfd, (struct sockaddr *)&ss, sl) < 0)
		die("holder bind: %s", strerror(errno));
	sl = make_addr(fam, peer_addr, PPORT, &ss);
	if (connect(hfd, (struct sockaddr *)&ss, sl) == 0 || errno != EINPROGRESS)
		die("holder connect: want EINPROGRESS, got %s", strerror(errno));
	if (seen) {
		/* the peer's listener holds the request (its SYN-ACK dropped) */
		char cmd[256], line[256];
		uint64_t deadline = now_ns() + 5ull * 1000000000;
		int found = 0;

		snprintf(cmd, sizeof(cmd), "ip netns exec %s ss -Htn state syn-recv", ns_p);
		while (!found && now_ns() < deadline) {
			FILE *f = popen(cmd, "r");
			while (f && fgets(line, sizeof(line), f))
				found = 1;
			if (f)
				pclose(f);
			if (!found)
				usleep(10000);
		}
		if (!found)
			die("the peer holds no request for the SYN");
		printf("the peer holds a SYN_RECV request\n");
	}
	if (tcp_state(hfd) != SOCKMIG_TCP_SYN_SENT)
		die("holder is in state %u, not SYN_SENT", tcp_state(hfd));

	r = sockmig_tcp_save(hfd, &st);
	if (r < 0)
		die("save: %s", sockmig_error());
	printf("saved: state %u ISN %u port %u\n", st.state, st.snd_seq, st.local.port);
	if (st.state != SOCKMIG_TCP_SYN_SENT || st.sndq_len || st.rcvq_len)
		die("saved state %u, queues %u/%u", st.state, st.sndq_len, st.rcvq_len);
	if (sockmig_tcp_discard(hfd) < 0)
		die("discard: %s", sockmig_error());
	run("ip netns exec %s ip addr del %s/%d dev eth0", ns_a, job_addr, fam == AF_INET6 ? 128 : 32);

	ns_enter(nsb);
	r = sockmig_tcp_restore(&st, NULL, NULL, st.snd_una, &rfd);
	if (r < 0)
		die("restore: %s", sockmig_error());
	run("ip netns exec %s ip addr add %s/%d dev eth0 %s", ns_b, job_addr, fam == AF_INET6 ? 128 : 32,
	    fam == AF_INET6 ? "nodad" : "");
	run("ip netns exec %s ip neigh flush to %s", ns_p, job_addr);
	if (nft_counter(ns_b, "o") != 0)
		die("the restored socket sent packets before resume");
	run("ip netns exec %s nft delete table inet sockeng", ns_b);
	t0 = now_ns();
	r = sockmig_tcp_resume(rfd, &st);
	if (r < 0)
		die("resume: %s", sockmig_error());
	{
		struct pollfd p = { .fd = rfd, .events = POLLOUT };
		int err = 0;

		if (poll(&p, 1, 5000) != 1)
			die("the restored connect() did not complete within 5 s (state %u)", tcp_state(rfd));
		t_conn = now_ns() - t0;
		sl = sizeof(err);
		getsockopt(rfd, SOL_SOCKET, SO_ERROR, &err, &sl);
		if (err)
			die("the restored connect() failed: %s", strerror(err));
	}
	if (tcp_state(rfd) != SOCKMIG_TCP_ESTABLISHED)
		die("restored socket in state %u after connect", tcp_state(rfd));
	sl = sizeof(ss);
	getsockname(rfd, (struct sockaddr *)&ss, &sl);
	if (ntohs(((struct sockaddr_in *)&ss)->sin_port) != HPORT)
		die("restored socket connected from another port");
	printf("PASS connected %.2f ms after resume\n", t_conn / 1e6);

	ns_enter(nsp);
	{
		struct pollfd p = { .fd = lfd, .events = POLLIN };

		if (poll(&p, 1, 5000) != 1)
			die("the peer accepted nothing");
	}
	pfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (pfd < 0)
		die("accept: %s", strerror(errno));
	{
		struct tcp_repair_window w;
		int on = 1, q = TCP_RECV_QUEUE;
		uint32_t rseq;

		/* the peer's rcv_nxt - 1 is the ISN it saw: ours */
		sl = sizeof(rseq);
		if (setsockopt(pfd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) < 0 ||
		    setsockopt(pfd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)) < 0 ||
		    getsockopt(pfd, IPPROTO_TCP, TCP_QUEUE_SEQ, &rseq, &sl) < 0)
			die("peer: read rcv_nxt: %s", strerror(errno));
		(void)w;
		on = TCP_REPAIR_OFF_NO_WP;
		setsockopt(pfd, IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on));
		if (rseq - 1 != st.snd_seq)
			die("the peer saw ISN %u, the original was %u", rseq - 1, st.snd_seq);
		printf("PASS the peer accepted the connection with the original ISN %u\n", st.snd_seq);
	}
	fill_pattern(buf, sizeof(buf), 0, 0x5a);
	write_all(rfd, buf, sizeof(buf));
	read_expect(pfd, sizeof(buf), 0, 0x5a);
	fill_pattern(buf, sizeof(buf), 0, 0xa5);
	write_all(pfd, buf, sizeof(buf));
	read_expect(rfd, sizeof(buf), 0, 0xa5);
	printf("PASS %zu bytes each way\n", sizeof(buf));
	check_no_rst(nsp, "peer", 0);
	ns_enter(nsb);
	{
		long er, orst;

		tcp_counters(&er, &orst);
		printf("node B: EstabResets %ld, OutRsts %ld\n", er, orst);
		if (!seen && orst)
			die("node B sent %ld RSTs", orst);
	}
	printf("PASS no reset seen by the peer\n");
	(void)v;
	run("ip netns exec %s nft delete table inet sockeng", ns_a);
	close(rfd);
	close(pfd);
	close(lfd);
	printf("PASS sockeng_syn %s family %d\n", tcase, fam == AF_INET6 ? 6 : 4);
	return 0;
}
