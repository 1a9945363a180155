/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sockeng_listen: moves a TCP listener from node A to node B. Before the
 * move a client's connection waits in the accept queue: the queue length and
 * backlog are read with sockmig_tcp_listener_queue() and the queue drained
 * (as the caller does through the application). After the move the backlog,
 * SO_REUSEADDR, SO_REUSEPORT, TCP_DEFER_ACCEPT, TCP_FASTOPEN and O_NONBLOCK
 * are read back from the kernel, and a new client connects to the job's
 * address, is accepted by the restored listener, and exchanges bytes.
 *
 *   sockeng_listen --ns-peer P --ns-a A --ns-b B --family 4|6 --peer ADDR --job ADDR
 */
#include <getopt.h>
#include <netinet/in.h>
#include <linux/tcp.h>

#include "sockmig/socket.h"
#include "sockmig/sockmig.h"
#include "sockeng_common.h"

#define LPORT 40123
#define BACKLOG 37

static int geti(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	if (getsockopt(fd, level, name, &v, &len) < 0)
		die("getsockopt %d/%d: %s", level, name, strerror(errno));
	return v;
}

static int client(int fam, const char *job)
{
	struct sockaddr_storage ss;
	socklen_t sl = make_addr(fam, job, LPORT, &ss);
	int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (connect(fd, (struct sockaddr *)&ss, sl) < 0)
		die("client connect: %s", strerror(errno));
	return fd;
}

static int accept_wait(int lfd)
{
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int fd;

	if (poll(&p, 1, 10000) != 1)
		die("nothing to accept within 10 s");
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		die("accept: %s", strerror(errno));
	return fd;
}

int main(int argc, char *argv[])
{
	static const struct option lopts[] = {
		{ "ns-peer", 1, 0, 'p' }, { "ns-a", 1, 0, 'a' }, { "ns-b", 1, 0, 'b' },
		{ "family", 1, 0, 'f' },  { "peer", 1, 0, 'P' }, { "job", 1, 0, 'J' }, {},
	};
	const char *ns_p = NULL, *ns_a = NULL, *ns_b = NULL, *peer_addr = NULL, *job = NULL;
	struct sockmig_tcp_listener_state st;
	struct sockaddr_storage ss;
	socklen_t sl;
	int c, fam = 0, nsp, nsa, nsb, lfd, rfd, cfd, afd, v, r;
	uint32_t q, b;
	uint8_t buf[5000];

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': ns_p = optarg; break;
		case 'a': ns_a = optarg; break;
		case 'b': ns_b = optarg; break;
		case 'P': peer_addr = optarg; break;
		case 'J': job = optarg; break;
		case 'f': fam = !strcmp(optarg, "6") ? AF_INET6 : AF_INET; break;
		default: exit(2);
		}
	}
	if (!ns_p || !ns_a || !ns_b || !peer_addr || !job || !fam)
		die("usage: sockeng_listen --ns-peer P --ns-a A --ns-b B --family 4|6 --peer ADDR --job ADDR");
	setvbuf(stdout, NULL, _IOLBF, 0);
	nsp = ns_open(ns_p);
	nsa = ns_open(ns_a);
	nsb = ns_open(ns_b);

	ns_enter(nsa);
	lfd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	v = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v));
	setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &v, sizeof(v));
	v = 5;
	setsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &v, sizeof(v));
	v = 16;
	if (setsockopt(lfd, IPPROTO_TCP, TCP_FASTOPEN, &v, sizeof(v)) < 0)
		die("TCP_FASTOPEN: %s", strerror(errno));
	sl = make_addr(fam, job, LPORT, &ss);
	if (bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, BACKLOG) < 0)
		die("listen: %s", strerror(errno));
	int want_defer = geti(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT);

	/* a pending connection (with data: TCP_DEFER_ACCEPT waits for it) */
	ns_enter(nsp);
	cfd = client(fam, job);
	write_all(cfd, (const uint8_t *)"x", 1);
	ns_enter(nsa);
	for (int i = 0; i < 1000; i++) {
		r = sockmig_tcp_listener_queue(lfd, &q, &b);
		if (r < 0)
			die("listener_queue: %s", sockmig_error());
		if (q)
			break;
		usleep(1000);
	}
	if (q != 1 || b != BACKLOG)
		die("listener_queue: accept queue %u, backlog %u; want 1, %d", q, b, BACKLOG);
	printf("PASS listener_queue: accept queue 1, backlog %u\n", b);
	afd = accept_wait(lfd); /* the drain */
	sockmig_tcp_listener_queue(lfd, &q, NULL);
	if (q)
		die("accept queue %u after the drain", q);

	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; tcp dport %d drop; }\n}\nEOF", ns_a, LPORT);
	r = sockmig_tcp_listener_save(lfd, &st);
	if (r < 0)
		die("save: %s", sockmig_error());
	printf("saved: backlog %u acceptq %u defer %u fastopen %u\n", st.backlog, st.acceptq, st.defer_accept,
	       st.fastopen_qlen);
	close(lfd); /* commit: an empty listener sends nothing */
	run("ip netns exec %s ip addr del %s/%d dev eth0", ns_a, job, fam == AF_INET6 ? 128 : 32);

	ns_enter(nsb);
	r = sockmig_tcp_listener_restore(&st, &rfd);
	if (r < 0)
		die("restore: %s", sockmig_error());
	run("ip netns exec %s ip addr add %s/%d dev eth0 %s", ns_b, job, fam == AF_INET6 ? 128 : 32,
	    fam == AF_INET6 ? "nodad" : "");
	run("ip netns exec %s ip neigh flush to %s", ns_p, job);
	sockmig_tcp_listener_queue(rfd, &q, &b);
	if (b != BACKLOG || geti(rfd, SOL_SOCKET, SO_REUSEADDR) != 1 || geti(rfd, SOL_SOCKET, SO_REUSEPORT) != 1 ||
	    geti(rfd, IPPROTO_TCP, TCP_DEFER_ACCEPT) != want_defer || geti(rfd, IPPROTO_TCP, TCP_FASTOPEN) != 16 ||
	    !(fcntl(rfd, F_GETFL) & O_NONBLOCK) || geti(rfd, SOL_SOCKET, SO_ACCEPTCONN) != 1)
		die("restored listener: backlog %u, reuseaddr %d, reuseport %d, defer %d, fastopen %d",
		    b, geti(rfd, SOL_SOCKET, SO_REUSEADDR), geti(rfd, SOL_SOCKET, SO_REUSEPORT),
		    geti(rfd, IPPROTO_TCP, TCP_DEFER_ACCEPT), geti(rfd, IPPROTO_TCP, TCP_FASTOPEN));
	printf("PASS restored listener: backlog %u, SO_REUSEADDR, SO_REUSEPORT, TCP_DEFER_ACCEPT %d, TCP_FASTOPEN 16, O_NONBLOCK\n",
	       b, want_defer);

	/* a new client reaches the restored listener through the moved address */
	ns_enter(nsp);
	int c2 = client(fam, job);
	fill_pattern(buf, sizeof(buf), 0, 0xa5);
	write_all(c2, buf, sizeof(buf));
	ns_enter(nsb);
	int s2 = accept_wait(rfd);
	read_expect(s2, sizeof(buf), 0, 0xa5);
	fill_pattern(buf, sizeof(buf), 0, 0x5a);
	write_all(s2, buf, sizeof(buf));
	read_expect(c2, sizeof(buf), 0, 0x5a);
	printf("PASS a new client was accepted by the restored listener; %zu bytes each way\n", sizeof(buf));
	/* the drained connection lives on in A, untouched */
	(void)afd;
	check_no_rst(nsp, "peer", 0);
	check_no_rst(nsb, "node B", 0);
	printf("PASS no RST\n");
	run("ip netns exec %s nft delete table inet sockeng", ns_a);
	close(s2);
	close(c2);
	close(rfd);
	printf("PASS sockeng_listen family %d\n", fam == AF_INET6 ? 6 : 4);
	(void)cfd;
	(void)peer_addr;
	return 0;
}
