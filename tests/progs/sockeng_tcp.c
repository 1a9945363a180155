/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * sockeng_tcp: moves one live TCP connection from node A to node B with the
 * socket engine and checks, from the peer's side and from the kernel, that
 * nothing was lost, repeated or reordered.
 *
 *   sockeng_tcp --ns-peer P --ns-a A --ns-b B --family 4|6|mapped
 *               --peer ADDR --job ADDR [--dev eth0] [--port N]
 *
 * Namespaces P, A and B exist (tests/integration/sock_tcp.sh makes them): P
 * holds the peer, A the job's address at start, B nothing of the job. The
 * program plays every part; nft and ip run through `ip netns exec`.
 *
 *   1. peer <-> holder connected; holder tuned with non-default options
 *   2. peer sends R bytes the holder never reads (holder's receive queue);
 *      a holder thread writes as fast as it can, a peer thread reads and
 *      verifies (the holder's send queue: sent-unacked and unsent data)
 *   3. freeze (nft drop both ways in A, and on B), stop the writer, save,
 *      image round trip, close the original silently
 *   4. restore in B, then give B the address (never before the socket),
 *      unblock, resume
 *   5. checks: every byte exactly once, in order, both ways; the stream
 *      goes on both ways; options and MSS read back; no packet left B
 *      before resume; no RST anywhere; time to the first byte after resume
 *
 * Prints "PASS ..." lines and exits 0, or "FAIL: <why>" and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sockmig/socket.h"
#include "sockmig/sockmig.h"
#include "image.h"
#include "sock.h"
#include "sockeng_common.h"

#define HPORT 40123 /* holder's port: what the nft rules match */
#define PPORT 40124
#define R1 1000     /* read by the holder before the move */
#define R2 60000    /* left in the holder's receive queue */
#define TAIL 100000 /* sent each way after the move */

static const char *ns_p, *ns_a, *ns_b, *dev = "eth0", *peer_addr, *job_addr;
static int family_mode; /* 4, 6, 46 (dual-stack v4-mapped) */

/* ---- the peer's reader: verifies the holder's stream as it comes ---- */

struct reader {
	int fd;
	pthread_t th;
	atomic_uint_fast64_t got;
	atomic_uint_fast64_t expect; /* 0 = unknown yet */
	atomic_uint_fast64_t t_resume_ns;
	atomic_uint_fast64_t t_first_after_ns;
	atomic_uint_fast64_t held_at_resume; /* bytes the peer had received then */
	atomic_int err;
	char why[200];
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	uint8_t buf[65536];
	uint64_t deadline = now_ns() + 60ull * 1000000000;

	while (now_ns() < deadline) {
		struct pollfd pfd = { .fd = rd->fd, .events = POLLIN };
		uint64_t exp = atomic_load(&rd->expect);
		ssize_t n;

		if (exp && atomic_load(&rd->got) >= exp)
			return NULL;
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		n = recv(rd->fd, buf, atomic_load(&rd->t_resume_ns) ? sizeof(buf) : 4096, MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0) {
			snprintf(rd->why, sizeof(rd->why), "peer read: %s", n ? strerror(errno) : "EOF");
			atomic_store(&rd->err, 1);
			return NULL;
		}
		uint64_t off = atomic_load(&rd->got);
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != pattern(off + (uint64_t)i, 0x5a)) {
				snprintf(rd->why, sizeof(rd->why),
					 "peer: byte %" PRIu64 " of the holder's stream is 0x%02x, expected 0x%02x",
					 off + (uint64_t)i, buf[i], pattern(off + (uint64_t)i, 0x5a));
				atomic_store(&rd->err, 1);
				return NULL;
			}
		}
		uint64_t held = atomic_load(&rd->held_at_resume);
		if (held && off + (uint64_t)n > held && !atomic_load(&rd->t_first_after_ns))
			atomic_store(&rd->t_first_after_ns, now_ns());
		atomic_fetch_add(&rd->got, (uint64_t)n);
		/* Until the move, read slowly: the holder's send queue stays
		 * full and segments are always in flight (sent, not yet acked)
		 * when the freeze comes. */
		if (!atomic_load(&rd->t_resume_ns))
			usleep(300);
	}
	snprintf(rd->why, sizeof(rd->why), "peer reader timed out");
	atomic_store(&rd->err, 1);
	return NULL;
}

/* ---- the holder's writer: the application, until it is stopped ---- */

struct writer {
	int fd;
	pthread_t th;
	atomic_int stop;
	uint64_t sent;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[16384];

	while (!atomic_load(&w->stop)) {
		struct pollfd pfd = { .fd = w->fd, .events = POLLOUT };
		ssize_t n;

		fill_pattern(buf, sizeof(buf), w->sent, 0x5a);
		n = send(w->fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			w->sent += (uint64_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN)
			die("holder write: %s", strerror(errno));
		poll(&pfd, 1, 50);
	}
	return NULL;
}

/* Wait until the writer has filled the send buffer (SIOCOUTQ), bounded. */
static void wait_outq_full(int fd, int min)
{
	uint64_t deadline = now_ns() + 10ull * 1000000000;
	int q = 0;

	while (now_ns() < deadline) {
		if (ioctl(fd, SIOCOUTQ, &q) == 0 && q >= min)
			return;
		usleep(1000);
	}
	die("send queue reached only %d bytes", q);
}

static void check_established(int fd, const char *who)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_state != TCP_ESTABLISHED)
		die("%s is not ESTABLISHED (state %u)", who, ti.tcpi_state);
}

/* Encode the state as an image section payload and decode it again. */
static void image_roundtrip_tcp(const struct sockmig_tcp_state *st, const uint8_t *sndq,
				const uint8_t *rcvq, struct sockmig_tcp_state *ret)
{
	const uint8_t *s2, *r2;
	struct sm_buf b;
	uint32_t id;

	sm_buf_init(&b);
	if (sm_sock_encode_tcp(&b, 42, st, sndq, rcvq) < 0)
		die("encode: %s", sockmig_error());
	if (sm_sock_decode_tcp(b.data, b.len, 0, &id, ret, &s2, &r2) < 0)
		die("decode: %s", sockmig_error());
	if (id != 42 || memcmp(s2, sndq, st->sndq_len) || memcmp(r2, rcvq, st->rcvq_len))
		die("queues changed in the image round trip");
	printf("PASS image round trip (%zu bytes)\n", b.len);
	sm_buf_free(&b);
}

/* ---- options the application set, checked on the restored socket ---- */

struct optcheck {
	int level, name, val;
	const char *what;
};

static struct optcheck opts[] = {
	{ SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR" },
	{ SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT" },
	{ SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE" },
	{ IPPROTO_TCP, TCP_KEEPIDLE, 33, "TCP_KEEPIDLE" },
	{ IPPROTO_TCP, TCP_KEEPINTVL, 7, "TCP_KEEPINTVL" },
	{ IPPROTO_TCP, TCP_KEEPCNT, 4, "TCP_KEEPCNT" },
	{ IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY" },
	{ IPPROTO_TCP, TCP_USER_TIMEOUT, 12345, "TCP_USER_TIMEOUT" },
	{ IPPROTO_TCP, TCP_NOTSENT_LOWAT, 300000, "TCP_NOTSENT_LOWAT" },
	{ SOL_SOCKET, SO_SNDBUF, 150000, "SO_SNDBUF" }, /* read back doubled */
	{ 0, 0, 0x20, "TOS/TCLASS" }, /* level/name by family; before the
				       * priority, which IP_TOS overwrites */
	{ SOL_SOCKET, SO_PRIORITY, 3, "SO_PRIORITY" },
	{ SOL_SOCKET, SO_MARK, 7, "SO_MARK" },
	{ SOL_SOCKET, SO_RCVLOWAT, 5, "SO_RCVLOWAT" },
};

static void opt_resolve(struct optcheck *o, int fam)
{
	if (o->level == 0) {
		o->level = fam == AF_INET6 ? IPPROTO_IPV6 : IPPROTO_IP;
		o->name = fam == AF_INET6 ? IPV6_TCLASS : IP_TOS;
	}
}

static void set_opts(int fd, int fam)
{
	struct linger lg = { 1, 9 };

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		opt_resolve(&opts[i], fam);
		if (setsockopt(fd, opts[i].level, opts[i].name, &opts[i].val, sizeof(int)) < 0)
			die("set %s: %s", opts[i].what, strerror(errno));
	}
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, (socklen_t)strlen(dev)) < 0)
		die("set linger/congestion/bindtodevice: %s", strerror(errno));
	if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0)
		die("O_NONBLOCK: %s", strerror(errno));
}

static void check_opts(int fd, int fam)
{
	struct linger lg;
	char buf[32];
	socklen_t len;
	int v, fl;

	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		int want = opts[i].val;

		if (opts[i].name == SO_SNDBUF && opts[i].level == SOL_SOCKET)
			want *= 2;
		len = sizeof(v);
		if (getsockopt(fd, opts[i].level, opts[i].name, &v, &len) < 0)
			die("read back %s: %s", opts[i].what, strerror(errno));
		if (v != want)
			die("restored socket: %s is %d, the original had %d", opts[i].what, v, want);
	}
	len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_BUF_LOCK, &v, &len) < 0 || v != 1)
		die("restored socket: SO_BUF_LOCK is %d, want 1 (sndbuf locked, rcvbuf not)", v);
	len = sizeof(lg);
	if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) < 0 || lg.l_onoff != 1 || lg.l_linger != 9)
		die("restored socket: SO_LINGER is %d/%d, want 1/9", lg.l_onoff, lg.l_linger);
	len = sizeof(buf);
	memset(buf, 0, sizeof(buf));
	if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, buf, &len) < 0 || strcmp(buf, "reno"))
		die("restored socket: congestion control is %s, want reno", buf);
	len = sizeof(buf);
	memset(buf, 0, sizeof(buf));
	if (getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, buf, &len) < 0 || strcmp(buf, dev))
		die("restored socket: bound to device '%s', want %s", buf, dev);
	if (fam == AF_INET6) {
		len = sizeof(v);
		if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len) < 0 ||
		    v != (family_mode == 6))
			die("restored socket: IPV6_V6ONLY is %d", v);
		len = sizeof(v);
		getsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &v, &len);
	} else {
		len = sizeof(v);
		getsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &v, &len);
	}
	if (v != 0)
		die("restored socket: still transparent after resume");
	fl = fcntl(fd, F_GETFL);
	if (!(fl & O_NONBLOCK))
		die("restored socket: O_NONBLOCK lost");
	printf("PASS options read back equal (%zu + linger, congestion, device, v6only, buf lock, O_NONBLOCK)\n",
	       sizeof(opts) / sizeof(opts[0]));
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr, "usage: sockeng_tcp --ns-peer P --ns-a A --ns-b B --family 4|6|mapped --peer ADDR --job ADDR\n");
	exit(2);
}

int main(int argc, char *argv[])
{
	static const struct option lopts[] = {
		{ "ns-peer", 1, 0, 'p' }, { "ns-a", 1, 0, 'a' }, { "ns-b", 1, 0, 'b' },
		{ "family", 1, 0, 'f' },  { "peer", 1, 0, 'P' }, { "job", 1, 0, 'J' },
		{ "dev", 1, 0, 'd' },     {},
	};
	struct sockaddr_storage ss;
	struct sockmig_tcp_state st, st2;
	struct reader rd = { 0 };
	struct writer wr = { 0 };
	socklen_t sl;
	int c, fam, nsp, nsa, nsb, lfd, pfd, hfd, rfd, v, mss_before, r;
	uint8_t *sndq, *rcvq, buf[65536];
	uint64_t t0, t_save, t_restore;
	const char *pfx;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'p': ns_p = optarg; break;
		case 'a': ns_a = optarg; break;
		case 'b': ns_b = optarg; break;
		case 'P': peer_addr = optarg; break;
		case 'J': job_addr = optarg; break;
		case 'd': dev = optarg; break;
		case 'f':
			family_mode = !strcmp(optarg, "4") ? 4 : !strcmp(optarg, "6") ? 6 :
				      !strcmp(optarg, "mapped") ? 46 : 0;
			break;
		default: usage();
		}
	}
	if (!ns_p || !ns_a || !ns_b || !peer_addr || !job_addr || !family_mode)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	fam = family_mode == 4 ? AF_INET : AF_INET6;
	pfx = family_mode == 6 ? "/128" : "/32";
	nsp = ns_open(ns_p);
	nsa = ns_open(ns_a);
	nsb = ns_open(ns_b);

	/* 1. connect */
	ns_enter(nsp);
	lfd = socket(family_mode == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	v = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &v, sizeof(v));
	v = 8192; /* a small window so that the holder's send queue stays full */
	setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
	sl = make_addr(family_mode == 6 ? AF_INET6 : AF_INET, peer_addr, PPORT, &ss);
	if (bind(lfd, (struct sockaddr *)&ss, sl) < 0 || listen(lfd, 4) < 0)
		die("peer listen on %s: %s", peer_addr, strerror(errno));
	ns_enter(nsa);
	hfd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (hfd < 0)
		die("holder socket: %s", strerror(errno));
	if (fam == AF_INET6) {
		v = family_mode == 6;
		setsockopt(hfd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof(v));
	}
	sl = make_addr(fam, job_addr, HPORT, &ss);
	if (bind(hfd, (struct sockaddr *)&ss, sl) < 0)
		die("holder bind %s: %s", job_addr, strerror(errno));
	sl = make_addr(fam, peer_addr, PPORT, &ss);
	if (connect(hfd, (struct sockaddr *)&ss, sl) < 0)
		die("holder connect %s: %s", peer_addr, strerror(errno));
	set_opts(hfd, fam);
	pfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (pfd < 0)
		die("accept: %s", strerror(errno));
	sl = sizeof(v);
	getsockopt(hfd, IPPROTO_TCP, TCP_MAXSEG, &v, &sl);
	mss_before = v;

	/* 2. queues: peer -> holder, R1 read, R2 left unread */
	fill_pattern(buf, R1 + R2, 0, 0xa5);
	write_all(pfd, buf, R1 + R2);
	wait_inq(hfd, R1 + R2);
	read_expect(hfd, R1, 0, 0xa5);
	rd.fd = pfd;
	wr.fd = hfd;
	pthread_create(&rd.th, NULL, reader_main, &rd);
	pthread_create(&wr.th, NULL, writer_main, &wr);
	/* let the stream run until the holder's send buffer is full */
	wait_outq_full(hfd, 150000);

	/* 3. freeze: the flow blocked both ways in A; in B too, with a counter
	 * that proves the restored socket sends nothing before resume */
	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; tcp dport %d drop; }\n"
	    "chain o { type filter hook output priority -300; tcp sport %d drop; }\n}\nEOF", ns_a, HPORT, HPORT);
	run("ip netns exec %s nft -f - <<'EOF'\ntable inet sockeng {\nchain i { type filter hook input priority -300; tcp dport %d counter drop; }\n"
	    "chain o { type filter hook output priority -300; tcp sport %d counter drop; }\n}\nEOF", ns_b, HPORT, HPORT);
	atomic_store(&wr.stop, 1); /* the application is stopped */
	pthread_join(wr.th, NULL);

	t0 = now_ns();
	r = sockmig_tcp_save(hfd, &st);
	if (r < 0)
		die("save: %s", sockmig_error());
	sndq = malloc(st.sndq_len + 1);
	rcvq = malloc(st.rcvq_len + 1);
	r = sockmig_tcp_save_queues(hfd, &st, sndq, rcvq);
	if (r < 0)
		die("save queues: %s", sockmig_error());
	t_save = now_ns() - t0;
	printf("saved: sndq %u (unsent %u) rcvq %u mss_clamp %u snd_mss %u wscale %u/%u opts 0x%x, %" PRIu64 " bytes written\n",
	       st.sndq_len, st.sndq_unsent, st.rcvq_len, st.mss_clamp, st.snd_mss, st.snd_wscale,
	       st.rcv_wscale, st.opts, wr.sent);
	if (st.rcvq_len != R2)
		die("saved receive queue is %u bytes, the peer sent %u unread", st.rcvq_len, R2);
	if (st.sndq_len == 0 || st.sndq_unsent == st.sndq_len)
		die("send queue %u / unsent %u: the test wants both sent-unacked and unsent data",
		    st.sndq_len, st.sndq_unsent);
	/* the queues are the streams' bytes at the right offsets */
	for (uint32_t i = 0; i < st.rcvq_len; i++)
		if (rcvq[i] != pattern(R1 + i, 0xa5))
			die("saved receive queue byte %u is wrong", i);
	for (uint32_t i = 0; i < st.sndq_len; i++)
		if (sndq[i] != pattern(wr.sent - st.sndq_len + i, 0x5a))
			die("saved send queue byte %u is wrong", i);

	/* the state travels through the image encoding */
	image_roundtrip_tcp(&st, sndq, rcvq, &st2);
	if (memcmp(&st, &st2, sizeof(st)))
		die("TCP state changed in the image round trip");

	r = sockmig_tcp_discard(hfd); /* commit on the source: nothing sent */
	if (r < 0)
		die("discard: %s", sockmig_error());
	run("ip netns exec %s ip addr del %s%s dev %s", ns_a, job_addr, pfx, dev);

	/* 4. restore in B, before B has the address */
	ns_enter(nsb);
	t0 = now_ns();
	r = sockmig_tcp_restore(&st2, sndq, rcvq, st2.snd_una, &rfd);
	t_restore = now_ns() - t0;
	if (r < 0)
		die("restore: %s", sockmig_error());
	printf("save %.1f us, restore %.1f us\n", t_save / 1e3, t_restore / 1e3);
	if (getenv("SOCKENG_DEBUG"))
		printf("after restore: %ld packets left B\n", nft_counter(ns_b, "o"));
	run("ip netns exec %s ip addr add %s%s dev %s %s", ns_b, job_addr, pfx, dev,
	    family_mode == 6 ? "nodad" : "");
	/* the address moved: the peer must not use A's MAC (sockmig's address
	 * mode announces it; here the peer just forgets) */
	run("ip netns exec %s ip neigh flush to %s", ns_p, job_addr);
	long leaked = nft_counter(ns_b, "o");
	if (leaked != 0)
		die("the restored socket sent %ld packets before resume", leaked);
	printf("PASS nothing left B before resume\n");
	run("ip netns exec %s nft delete table inet sockeng", ns_b);
	ioctl(pfd, SIOCINQ, &v);
	atomic_store(&rd.held_at_resume, atomic_load(&rd.got) + (uint64_t)v + 1);
	atomic_store(&rd.t_resume_ns, now_ns());
	r = sockmig_tcp_resume(rfd, &st2);
	if (r < 0)
		die("resume: %s", sockmig_error());

	if (getenv("SOCKENG_DEBUG")) {
		usleep(100000);
		run("ip netns exec %s ss -tinoe; ip netns exec %s ss -tinoe; ip netns exec %s ip neigh; ip netns exec %s nstat -a | grep -i -e tcp -e ip", ns_b, ns_p, ns_p, ns_b);
	}
	/* 5. checks */
	/* the holder's stream: everything written before the freeze, once */
	atomic_store(&rd.expect, wr.sent);
	pthread_join(rd.th, NULL);
	if (atomic_load(&rd.err))
		die("%s", rd.why);
	uint64_t t_first = atomic_load(&rd.t_first_after_ns) - atomic_load(&rd.t_resume_ns);
	uint64_t t_all = now_ns() - atomic_load(&rd.t_resume_ns);
	printf("PASS peer got all %" PRIu64 " bytes of the holder's stream exactly once, in order; "
	       "first new byte %.2f ms after resume, all %.2f ms\n", wr.sent, t_first / 1e6, t_all / 1e6);
	if (!atomic_load(&rd.t_first_after_ns) || t_first > 500000000ull)
		die("the send queue waited more than 500 ms after resume (an RTO?)");

	/* the old receive queue, then the stream goes on both ways */
	read_expect(rfd, R2, R1, 0xa5);
	printf("PASS restored socket read the old receive queue (%u bytes)\n", R2);
	fill_pattern(buf, sizeof(buf), R1 + R2, 0xa5);
	write_all(pfd, buf, sizeof(buf));
	read_expect(rfd, sizeof(buf), R1 + R2, 0xa5);
	fill_pattern(buf, sizeof(buf), wr.sent, 0x5a);
	write_all(rfd, buf, sizeof(buf));
	read_expect(pfd, sizeof(buf), wr.sent, 0x5a);
	printf("PASS stream continues both ways\n");

	sl = sizeof(v);
	getsockopt(rfd, IPPROTO_TCP, TCP_MAXSEG, &v, &sl);
	if (v != mss_before)
		die("restored MSS (TCP_MAXSEG) is %d, the original had %d", v, mss_before);
	printf("PASS MSS %d\n", v);
	check_opts(rfd, fam);
	check_established(pfd, "peer");
	check_established(rfd, "restored socket");
	check_no_rst(nsp, "peer", 0);
	check_no_rst(nsa, "node A", 1); /* the silent close */
	check_no_rst(nsb, "node B", 0);
	printf("PASS no RST: both ends ESTABLISHED, no RST sent by P, A or B, no reset seen by P or B\n");

	run("ip netns exec %s nft delete table inet sockeng", ns_a);
	close(rfd);
	close(pfd);
	close(lfd);
	free(sndq);
	free(rcvq);
	printf("PASS sockeng_tcp family %s\n", family_mode == 46 ? "mapped" : family_mode == 4 ? "4" : "6");
	return 0;
}
