/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * peer: the traffic program of the migration tests and benchmarks.
 * The echo servers are what gets migrated; the clients stay put and judge.
 *
 *   peer tcp-echo (--listen ADDR:PORT | --fd N)... [--corrupt-after N]
 *	Echoes every byte back, in order, on any number of connections. --fd
 *	takes an inherited socket: a connected one, or a listening one
 *	(SO_ACCEPTCONN) to accept on. With only --fd connections it exits 0
 *	once they have all closed. --corrupt-after N (self-check only) flips
 *	the byte at offset N of the first connection that gets that far.
 *   peer udp-echo (--bind ADDR:PORT | --fd N)... [--drop-after N]
 *	(--fd env, for either echo: every fd listed in $SOCKMIG_FDS, as
 *	`sockmig sockets restore` sets it; TCP and UDP alike. Either echo takes
 *	--listen for TCP and --bind for UDP, so one process can serve both.)
 *	Sends every datagram back to its sender. --drop-after N (self-check
 *	only) silently drops datagram number N (from 0) of a socket.
 *	Both echo servers print "ready" once serving. SIGUSR1 quiesces (a
 *	second SIGUSR1 serves again and prints "serving"): stop
 *	reading and accepting, write back what was already read, then never
 *	touch the sockets again (they stay open; new data waits in the kernel's
 *	queues) and print "quiesced". SIGTERM/SIGINT: exit 0.
 *
 *   peer tcp-stream --connect ADDR:PORT [--conns K] [--chunk B] [--rate B/s]
 *		     [--window B] [--bytes N] [--drain-timeout S]
 *	K connections (default 1); on connection c, the byte at offset i is a
 *	hash of (i, c). Sends chunks of at most B (64k), at most --rate bytes
 *	a second per connection (default: as fast as possible), never more than
 *	--window (4m) not yet echoed per connection, and verifies every echoed
 *	byte. "ready" once every connection is up and has sent. Stops sending
 *	on SIGUSR2 or once each connection has sent --bytes N, waits at most S
 *	seconds (20) for the rest of the echo, and prints
 *	  done conns=K sent=TOTAL verified=TOTAL max_gap_ms=X.XXX errors=0
 *	max_gap_ms: the longest time without echo data on any connection while
 *	some was awaited. At the first fault it prints and exits 1:
 *	  error conn=C offset=X: CAUSE   (mismatch, EOF, reset, timeout...)
 *	SIGUSR1 sets a mark: each connection remembers how much it has sent,
 *	and "mark n=M" is printed. From then on the progress lines end with
 *	"progressed=P min_bytes=B" and the done line has them before errors=0:
 *	P connections have had bytes sent after the mark echoed and verified,
 *	B is the fewest such bytes of any connection (a test marks after a
 *	move, then waits for progressed=K: every connection works there).
 *   peer tcp-pingpong --connect ADDR:PORT [--interval-us U] [--count N]
 *		       [--drain-timeout S]
 *	Sends an 8-byte sequence number every U us (1000) and checks that each
 *	comes back once and in order. "ready" after the first ping. On SIGUSR2
 *	or after N pings, waits for the replies and prints
 *	  done count=N max_rtt_ms=X p50_rtt_ms=X max_gap_ms=X
 *	(max_gap_ms: longest time between two consecutive replies), or
 *	  error seq=S: CAUSE   and exits 1.
 *   peer udp-stream --connect ADDR:PORT [--interval-us U] [--count N]
 *		     [--size B] [--drain-timeout S]
 *	Sends a datagram of B bytes (64: an 8-byte sequence number and a
 *	payload that is a hash of it) every U us (1000), checks every echo.
 *	"ready" after the first datagram. On SIGUSR2 or after N datagrams,
 *	waits at most S seconds (20) for missing echoes and prints
 *	  done sent=N received=N lost=0 dup=0 reordered=0 max_gap_ms=X corrupt=0
 *	or the same line starting with "error" (exit 1) if any count but
 *	sent and received is not 0. reordered: echoes that came after one with
 *	a higher number; corrupt: wrong size or payload. With datagrams lost,
 *	stderr gets "peer: missing: A-B C ..." (the first 20 ranges).
 *
 * ADDR is an IPv4 literal or an IPv6 literal in brackets ([::1]:5000).
 * Sizes take a k, m or g suffix (binary). stdout carries only the ready,
 * quiesced, done and error lines (line-buffered); the clients print
 * "progress sent=N verified|received=N" to stderr once a second. Bad usage
 * exits 2. Signals are read from a signalfd in the epoll loop.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define IO_BUF (256 * 1024)

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double ns_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("peer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* splitmix64's finaliser: cheap, and every input bit moves every output bit. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static inline uint64_t pattern_word(uint64_t block, uint64_t stream)
{
	return mix64(block ^ (stream + 1) * 0x9e3779b97f4a7c15ull);
}

/* Byte at stream offset i of stream s: byte (i % 8) of the word for i / 8. */
static void pattern_fill(uint8_t *buf, uint64_t off, size_t len, uint64_t stream)
{
	size_t i = 0;

	while (i < len && ((off + i) & 7)) {
		buf[i] = (uint8_t)(pattern_word((off + i) >> 3, stream) >> (8 * ((off + i) & 7)));
		i++;
	}
	for (; i + 8 <= len; i += 8) {
		uint64_t w = htole64(pattern_word((off + i) >> 3, stream));

		memcpy(buf + i, &w, 8);
	}
	for (; i < len; i++)
		buf[i] = (uint8_t)(pattern_word((off + i) >> 3, stream) >> (8 * ((off + i) & 7)));
}

/* Returns the index of the first byte of buf that differs from the pattern, or -1. */
static long pattern_check(const uint8_t *buf, uint64_t off, size_t len, uint64_t stream)
{
	uint8_t exp[4096];
	size_t done = 0;

	while (done < len) {
		size_t n = len - done < sizeof(exp) ? len - done : sizeof(exp);

		pattern_fill(exp, off + done, n, stream);
		if (memcmp(exp, buf + done, n)) {
			for (size_t i = 0; i < n; i++)
				if (exp[i] != buf[done + i])
					return (long)(done + i);
		}
		done += n;
	}
	return -1;
}

/* Sizes: a number with an optional binary suffix k, m or g. */
static uint64_t parse_size(const char *opt, const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		die("%s: '%s' is not a number", opt, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end)
		die("%s: '%s' is not a size (digits with an optional k, m or g)", opt, s);
	return v;
}

static double parse_secs(const char *opt, const char *s)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < 0 || v > 86400)
		die("%s: '%s' is not a number of seconds", opt, s);
	return v;
}

/* ADDR:PORT with ADDR an IPv4 literal or an IPv6 literal in brackets. */
static void parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *port, *colon = strrchr(s, ':');
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *res;
	size_t hl;
	int r;

	if (!colon || !colon[1])
		die("'%s' is not ADDR:PORT", s);
	port = colon + 1;
	if (s[0] == '[') {
		if (colon == s || colon[-1] != ']')
			die("'%s' is not [IPV6]:PORT", s);
		hl = (size_t)(colon - 1 - (s + 1));
		s++;
	} else {
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		die("'%s' has no usable address", s);
	memcpy(host, s, hl);
	host[hl] = 0;
	r = getaddrinfo(host, port, &hints, &res);
	if (r)
		die("cannot parse address '%s' port '%s': %s", host, port, gai_strerror(r));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
}

static void set_nonblock_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fd %d: cannot make it non-blocking: %m", fd);
	fl = fcntl(fd, F_GETFD);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		die("fd %d: cannot set FD_CLOEXEC: %m", fd);
}

static int sock_int(int fd, int level, int opt)
{
	int v = 0;
	socklen_t l = sizeof(v);

	if (getsockopt(fd, level, opt, &v, &l) < 0)
		return -errno;
	return v;
}

static void set_nodelay(int fd)
{
	int one = 1;

	/* Pingpong needs it on both ends (Nagle + delayed ACK = 40 ms stalls). */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* The loop's shared parts: epoll, a signalfd, and stdout for the harness. */
static int epfd = -1, sigfd = -1;

static void loop_init(void)
{
	sigset_t set;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		die("sigprocmask: %m");
	sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sigfd < 0 || epfd < 0)
		die("signalfd/epoll: %m");
}

static void ep_ctl(int op, int fd, uint32_t events, void *ptr)
{
	struct epoll_event ev = { .events = events, .data.ptr = ptr };

	if (epoll_ctl(epfd, op, fd, &ev) < 0)
		die("epoll_ctl(%d) on fd %d: %m", op, fd);
}

/* Returns the next pending signal number, or 0. */
static int next_signal(void)
{
	struct signalfd_siginfo si;

	if (read(sigfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}

static int epoll_timeout_ms(uint64_t now, uint64_t deadline)
{
	uint64_t d;

	if (deadline <= now)
		return 0;
	d = (deadline - now + 999999) / 1000000;
	return d > INT_MAX ? INT_MAX : (int)d;
}

/* Tags that tell epoll events apart: signalfd, timerfd, or a socket object. */
static char tag_signal, tag_timer;

/* ---- tcp-echo / udp-echo ------------------------------------------------ */

enum { EK_LISTEN, EK_TCP, EK_UDP };

struct echo {
	int fd;
	int kind;
	uint32_t events;	/* what epoll watches now */
	uint8_t *pend;		/* bytes read but not yet written back */
	size_t pend_off, pend_len;
	struct sockaddr_storage pend_to;	/* UDP: the datagram's sender */
	socklen_t pend_tolen;
	uint64_t count;		/* TCP: bytes read; UDP: datagrams read */
	bool registered;
};

static struct {
	bool quiescing, quiesced;
	uint64_t corrupt_after, drop_after;
	bool corrupt_done, drop_done;
	int n_conns;		/* live TCP connections and UDP sockets */
	int n_listen;
	struct echo **all;
	int n_all, cap_all;
} es = { .corrupt_after = UINT64_MAX, .drop_after = UINT64_MAX };

static uint8_t iobuf[IO_BUF];

static struct echo *echo_add(int fd, int kind)
{
	struct echo *e = calloc(1, sizeof(*e));

	if (!e)
		die("out of memory");
	set_nonblock_cloexec(fd);
	e->fd = fd;
	e->kind = kind;
	if (kind == EK_TCP)
		set_nodelay(fd);
	if (kind == EK_LISTEN)
		es.n_listen++;
	else
		es.n_conns++;
	if (es.n_all == es.cap_all) {
		es.cap_all = es.cap_all ? 2 * es.cap_all : 64;
		es.all = realloc(es.all, (size_t)es.cap_all * sizeof(*es.all));
		if (!es.all)
			die("out of memory");
	}
	es.all[es.n_all++] = e;
	e->events = EPOLLIN;
	ep_ctl(EPOLL_CTL_ADD, fd, e->events, e);
	e->registered = true;
	return e;
}

static void echo_watch(struct echo *e, uint32_t events)
{
	if (e->events == events || !e->registered)
		return;
	ep_ctl(EPOLL_CTL_MOD, e->fd, events, e);
	e->events = events;
}

static void echo_close(struct echo *e, const char *why)
{
	if (why)
		fprintf(stderr, "peer: fd %d: %s\n", e->fd, why);
	if (e->registered)
		epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
	close(e->fd);
	e->fd = -1;
	e->registered = false;
	free(e->pend);
	e->pend = NULL;
	e->pend_len = 0;
	es.n_conns--;
	for (int i = 0; i < es.n_all; i++)
		if (es.all[i] == e) {
			es.all[i] = es.all[--es.n_all];
			break;
		}
	free(e);
}

/* Sends as much of buf as the socket takes now: bytes sent, or -errno. */
static ssize_t send_some(int fd, const uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = send(fd, buf + done, len - done, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? (ssize_t)done : -errno;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/* Write back what e holds; returns false if e was closed. */
static bool echo_flush_tcp(struct echo *e)
{
	ssize_t n = send_some(e->fd, e->pend + e->pend_off, e->pend_len);

	if (n < 0) {
		echo_close(e, strerror((int)-n));
		return false;
	}
	e->pend_off += (size_t)n;
	e->pend_len -= (size_t)n;
	if (!e->pend_len) {
		free(e->pend);
		e->pend = NULL;
		e->pend_off = 0;
	}
	return true;
}

static bool echo_flush_udp(struct echo *e)
{
	if (!e->pend_len)
		return true;
	if (sendto(e->fd, e->pend, e->pend_len, MSG_NOSIGNAL,
		   (struct sockaddr *)&e->pend_to, e->pend_tolen) < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS)
			return true;
		/* ICMP errors of earlier datagrams land here; the echo goes on. */
		fprintf(stderr, "peer: fd %d: sendto: %m\n", e->fd);
	}
	free(e->pend);
	e->pend = NULL;
	e->pend_len = 0;
	return true;
}

static void echo_keep(struct echo *e, const uint8_t *buf, size_t len)
{
	e->pend = malloc(len);
	if (!e->pend)
		die("out of memory");
	memcpy(e->pend, buf, len);
	e->pend_off = 0;
	e->pend_len = len;
}

/* Returns false if e was closed. */
static bool echo_tcp_readable(struct echo *e)
{
	ssize_t sent, n = recv(e->fd, iobuf, sizeof(iobuf), 0);

	if (n == 0) {
		echo_close(e, NULL);
		return false;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return true;
		echo_close(e, strerror(errno));
		return false;
	}
	if (!es.corrupt_done && es.corrupt_after >= e->count &&
	    es.corrupt_after < e->count + (uint64_t)n) {
		iobuf[es.corrupt_after - e->count] ^= 0x5a;
		es.corrupt_done = true;
	}
	e->count += (uint64_t)n;
	sent = send_some(e->fd, iobuf, (size_t)n);
	if (sent < 0) {
		echo_close(e, strerror((int)-sent));
		return false;
	}
	if (sent < n)
		echo_keep(e, iobuf + sent, (size_t)(n - sent));
	return true;
}

static void echo_udp_readable(struct echo *e)
{
	/* Bounded so that one busy socket cannot starve the others. */
	for (int i = 0; i < 64 && !e->pend_len; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(e->fd, iobuf, sizeof(iobuf), 0, (struct sockaddr *)&from, &fl);

		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fprintf(stderr, "peer: fd %d: recvfrom: %m\n", e->fd);
			return;
		}
		if (!es.drop_done && e->count++ == es.drop_after) {
			es.drop_done = true;
			continue;
		}
		if (sendto(e->fd, iobuf, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&from, fl) < 0) {
			if (errno == EAGAIN || errno == ENOBUFS) {
				echo_keep(e, iobuf, (size_t)n);
				memcpy(&e->pend_to, &from, fl);
				e->pend_tolen = fl;
			} else {
				/* ICMP errors of earlier datagrams land here; the echo goes on. */
				fprintf(stderr, "peer: fd %d: sendto: %m\n", e->fd);
			}
		}
	}
}

static void echo_accept(struct echo *l)
{
	for (int i = 0; i < 64; i++) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				fprintf(stderr, "peer: accept: %m\n");
			return;
		}
		echo_add(fd, EK_TCP);
	}
}

/*
 * Quiesce: stop reading and accepting, write back what is held, and once
 * nothing is held take every socket out of epoll so this process never
 * touches them again. The sockets stay open for whoever takes them over.
 */
static void echo_quiesce_step(void)
{
	for (int i = 0; i < es.n_all; i++) {
		struct echo *e = es.all[i];

		if (e->pend_len)
			return;
	}
	for (int i = 0; i < es.n_all; i++) {
		struct echo *e = es.all[i];

		if (e->registered)
			epoll_ctl(epfd, EPOLL_CTL_DEL, e->fd, NULL);
		e->registered = false;
	}
	es.quiesced = true;
	printf("quiesced\n");
}

static void echo_rearm(struct echo *e)
{
	if (es.quiescing)
		echo_watch(e, e->pend_len ? EPOLLOUT : 0);
	else
		echo_watch(e, e->pend_len ? EPOLLOUT : EPOLLIN);
}

static int echo_main(int argc, char **argv, bool udp)
{
	struct epoll_event evs[MAX_EVENTS];
	int n_src = 0;

	loop_init();
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!v)
			die("%s needs a value", o);
		i++;
		if (!strcmp(o, "--listen") || !strcmp(o, "--bind")) {
			/* Either echo serves both: --listen is TCP, --bind UDP, so
			 * one process can hold both kinds. */
			bool dgram = !strcmp(o, "--bind");
			struct sockaddr_storage ss;
			socklen_t sl;
			int one = 1, fd;

			parse_addr(v, &ss, &sl);
			fd = socket(ss.ss_family, (dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
			if (fd < 0)
				die("socket: %m");
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
				die("cannot bind %s: %m", v);
			if (!dgram && listen(fd, 4096) < 0)
				die("cannot listen on %s: %m", v);
			echo_add(fd, dgram ? EK_UDP : EK_LISTEN);
		} else if (!strcmp(o, "--fd") && !strcmp(v, "env")) {
			/* every fd that sockmig sockets restore handed over */
			const char *list = getenv("SOCKMIG_FDS");
			char *end;

			if (!list)
				die("--fd env: SOCKMIG_FDS is not set");
			for (const char *q = list; *q; q = end) {
				int fd = (int)strtol(q, &end, 10), type;

				if (end == q)
					die("--fd env: bad SOCKMIG_FDS '%s'", list);
				while (*end == ' ')
					end++;
				type = sock_int(fd, SOL_SOCKET, SO_TYPE);
				if (type == SOCK_DGRAM)
					echo_add(fd, EK_UDP);
				else if (type == SOCK_STREAM)
					echo_add(fd, sock_int(fd, SOL_SOCKET, SO_ACCEPTCONN) > 0 ? EK_LISTEN : EK_TCP);
				else
					die("--fd env: fd %d is not a TCP or UDP socket", fd);
			}
		} else if (!strcmp(o, "--fd")) {
			int fd = (int)parse_size(o, v), type = sock_int(fd, SOL_SOCKET, SO_TYPE);

			if (type < 0)
				die("--fd %d is not a socket: %s", fd, strerror(-type));
			if (type != (udp ? SOCK_DGRAM : SOCK_STREAM))
				die("--fd %d is not a %s socket", fd, udp ? "UDP" : "TCP");
			if (udp)
				echo_add(fd, EK_UDP);
			else
				echo_add(fd, sock_int(fd, SOL_SOCKET, SO_ACCEPTCONN) > 0 ? EK_LISTEN : EK_TCP);
		} else if (!udp && !strcmp(o, "--corrupt-after")) {
			es.corrupt_after = parse_size(o, v);
		} else if (udp && !strcmp(o, "--drop-after")) {
			es.drop_after = parse_size(o, v);
		} else {
			die("unknown option %s", o);
		}
		n_src++;
	}
	if (!n_src)
		die("%s needs %s ADDR:PORT or --fd N", argv[1], udp ? "--bind" : "--listen");
	ep_ctl(EPOLL_CTL_ADD, sigfd, EPOLLIN, &tag_signal);
	printf("ready\n");

	/* With only inherited connections, the job is over when they all are. */
	while (es.n_listen || es.n_conns || es.quiesced) {
		int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %m");
		for (int i = 0; i < n; i++) {
			struct echo *e = evs[i].data.ptr;
			int sig;

			if (evs[i].data.ptr == &tag_signal) {
				while ((sig = next_signal())) {
					if (sig == SIGINT || sig == SIGTERM)
						return 0;
					if (sig == SIGUSR1 && es.quiesced) {
						/* Again: serve again (after a move
						 * that was rolled back). */
						es.quiescing = es.quiesced = false;
						for (int j = 0; j < es.n_all; j++) {
							struct echo *x = es.all[j];

							ep_ctl(EPOLL_CTL_ADD, x->fd, EPOLLIN, x);
							x->events = EPOLLIN;
							x->registered = true;
						}
						printf("serving\n");
					} else if (sig == SIGUSR1 && !es.quiescing) {
						es.quiescing = true;
						for (int j = 0; j < es.n_all; j++)
							echo_rearm(es.all[j]);
					}
				}
				continue;
			}
			/* Each object only ever closes itself, so no later event
			 * of this batch points to freed memory. */
			if (e->kind == EK_LISTEN) {
				if (!es.quiescing)
					echo_accept(e);
				continue;
			}
			if (e->kind == EK_TCP) {
				if (e->pend_len) {
					if (!echo_flush_tcp(e))
						continue;
				} else if (!es.quiescing && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
					if (!echo_tcp_readable(e))
						continue;
				}
			} else {
				if (e->pend_len)
					echo_flush_udp(e);
				else if (!es.quiescing)
					echo_udp_readable(e);
			}
			echo_rearm(e);
		}
		if (es.quiescing && !es.quiesced)
			echo_quiesce_step();
	}
	return 0;
}
/* ---- the clients' common parts ------------------------------------------ */

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("out of memory");
	return p;
}

/* Longest time without an echo while one was awaited. */
struct gap {
	uint64_t since;		/* waiting since; 0: not waiting */
	uint64_t max;
};

static void gap_start(struct gap *g, uint64_t now)
{
	if (!g->since)
		g->since = now;
}

static void gap_got(struct gap *g, uint64_t now, bool still_waiting)
{
	if (g->since && now - g->since > g->max)
		g->max = now - g->since;
	g->since = still_waiting ? now : 0;
}

struct client {
	struct sockaddr_storage addr;
	socklen_t alen;
	uint64_t conns, chunk, rate, window, bytes, interval_us, count, size;
	double drain;
	bool stopping;
	uint64_t now, stop_deadline, next_progress;
	struct gap gap;
	bool mark_req;		/* SIGUSR1 came (tcp-stream's mark) */
	char progress_extra[64]; /* appended to the progress lines */
};

static void client_init(struct client *c, int argc, char **argv, const char *allowed)
{
	bool have_addr = false;

	*c = (struct client){ .conns = 1, .chunk = 64 << 10, .window = 4 << 20, .interval_us = 1000,
			      .size = 64, .drain = 20, .stop_deadline = UINT64_MAX };
	for (int i = 2; i < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		char key[64];
		uint64_t n;

		snprintf(key, sizeof(key), " %s ", k);
		if (strncmp(k, "--", 2) || !strstr(allowed, key))
			die("%s: unknown option %s", argv[1], k);
		if (!v)
			die("%s needs a value", k);
		if (!strcmp(k, "--connect")) {
			parse_addr(v, &c->addr, &c->alen);
			have_addr = true;
			continue;
		}
		if (!strcmp(k, "--drain-timeout")) {
			c->drain = parse_secs(k, v);
			continue;
		}
		n = parse_size(k, v);
		if (!strcmp(k, "--conns")) c->conns = n;
		else if (!strcmp(k, "--chunk")) c->chunk = n;
		else if (!strcmp(k, "--rate")) c->rate = n;
		else if (!strcmp(k, "--window")) c->window = n;
		else if (!strcmp(k, "--bytes")) c->bytes = n;
		else if (!strcmp(k, "--interval-us")) c->interval_us = n;
		else if (!strcmp(k, "--count")) c->count = n;
		else if (!strcmp(k, "--size")) c->size = n;
	}
	if (!have_addr)
		die("%s needs --connect ADDR:PORT", argv[1]);
	if (c->conns < 1 || c->conns > 100000)
		die("--conns must be 1 to 100000");
	if (c->chunk < 1 || c->chunk > IO_BUF)
		die("--chunk must be 1 to %d", IO_BUF);
	if (c->window < 1)
		die("--window must be at least 1");
	if (c->interval_us < 1 || c->interval_us > 60000000)
		die("--interval-us must be 1 to 60000000");
	if (c->size < 8 || c->size > 65507)
		die("--size must be 8 to 65507 (8 bytes of sequence number, then payload)");
	loop_init();
	ep_ctl(EPOLL_CTL_ADD, sigfd, EPOLLIN, &tag_signal);
	c->now = now_ns();
	c->next_progress = c->now + 1000000000ull;
}

static void client_stop(struct client *c)
{
	if (!c->stopping) {
		c->stopping = true;
		c->stop_deadline = c->now + (uint64_t)(c->drain * 1e9);
	}
}

/*
 * One turn of a client's loop: wait for events until deadline (or the drain
 * deadline, or the next progress line), take the signals, and return the
 * other events, or -signo for SIGINT and SIGTERM.
 */
static int client_wait(struct client *c, struct epoll_event *evs, int max, uint64_t deadline)
{
	int n, m = 0, sig;

	if (c->stop_deadline < deadline)
		deadline = c->stop_deadline;
	if (c->next_progress < deadline)
		deadline = c->next_progress;
	n = epoll_wait(epfd, evs, max, epoll_timeout_ms(now_ns(), deadline));
	if (n < 0 && errno != EINTR)
		die("epoll_wait: %m");
	c->now = now_ns();
	for (int i = 0; i < n; i++) {
		if (evs[i].data.ptr != &tag_signal) {
			evs[m++] = evs[i];
			continue;
		}
		while ((sig = next_signal())) {
			if (sig == SIGINT || sig == SIGTERM)
				return -sig;
			if (sig == SIGUSR2)
				client_stop(c);
			if (sig == SIGUSR1)
				c->mark_req = true;
		}
	}
	return m;
}

static void client_progress(struct client *c, const char *what, uint64_t sent, uint64_t got)
{
	if (c->now < c->next_progress)
		return;
	fprintf(stderr, "progress sent=%" PRIu64 " %s=%" PRIu64 "%s\n", sent, what, got, c->progress_extra);
	c->next_progress = c->now + 1000000000ull;
}

static int timer_make(uint64_t interval_us)
{
	struct itimerspec its = {
		.it_value = { .tv_nsec = 1 },	/* the first tick at once */
		.it_interval = { .tv_sec = (time_t)(interval_us / 1000000),
				 .tv_nsec = (long)(interval_us % 1000000) * 1000 },
	};
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) < 0)
		die("timerfd: %m");
	ep_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, &tag_timer);
	return fd;
}

/* Ticks since the last call; a client sends one message per tick, also for
 * ticks it missed while it was late, so its rate holds on average. */
static uint64_t timer_ticks(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n < 1000 ? n : 1000;
}

static int connect_one(const struct client *c, int type, bool block)
{
	int fd = socket(c->addr.ss_family, type | SOCK_CLOEXEC | (block ? 0 : SOCK_NONBLOCK), 0);

	if (fd < 0)
		die("socket: %m");
	if (type == SOCK_STREAM)
		set_nodelay(fd);
	if (connect(fd, (const struct sockaddr *)&c->addr, c->alen) < 0 && errno != EINPROGRESS)
		return -errno;
	if (block)
		set_nonblock_cloexec(fd);
	return fd;
}

/* ---- tcp-stream --------------------------------------------------------- */

struct sconn {
	int fd, idx;
	bool up;
	uint32_t events;
	uint64_t t0;		/* when it connected: the start of its rate */
	uint64_t sent, verified;
	uint64_t mark;		/* sent at the last mark (SIGUSR1) */
};

static struct client S;
static uint64_t st_sent, st_verified;

static void stream_fail(int idx, uint64_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
static void stream_fail(int idx, uint64_t off, const char *fmt, ...)
{
	va_list ap;

	printf("error conn=%d offset=%" PRIu64 ": ", idx, off);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* How many bytes conn c may send now (window, --bytes and --rate). */
static uint64_t stream_budget(const struct sconn *c)
{
	uint64_t b = c->sent - c->verified >= S.window ? 0 : S.window - (c->sent - c->verified);

	if (S.bytes)
		b = c->sent >= S.bytes ? 0 : min_u64(b, S.bytes - c->sent);
	if (S.rate) {
		/* +1: the first byte goes at once, so "ready" comes at once. */
		unsigned __int128 allow = (unsigned __int128)S.rate * (S.now - c->t0) / 1000000000u + 1;

		b = allow <= c->sent ? 0 : min_u64(b, (uint64_t)min_u64(allow - c->sent, UINT64_MAX));
	}
	return min_u64(b, S.chunk);
}

/* When a rate-limited conn c has budget for a worthwhile send (~5 ms of data). */
static uint64_t stream_rate_wake(const struct sconn *c)
{
	uint64_t q = min_u64(S.rate / 200 ? S.rate / 200 : 1, S.chunk);

	return c->t0 + (uint64_t)((unsigned __int128)(c->sent + q - 1) * 1000000000u / S.rate);
}

static void stream_send(struct sconn *c)
{
	static uint8_t buf[IO_BUF];

	for (int i = 0; i < 4; i++) {
		uint64_t len = stream_budget(c);
		ssize_t n;

		if (!len)
			return;
		pattern_fill(buf, c->sent, len, (uint64_t)c->idx);
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			stream_fail(c->idx, c->verified, "send: %s", strerror(errno));
		}
		if (st_sent == st_verified)
			gap_start(&S.gap, S.now);
		c->sent += (uint64_t)n;
		st_sent += (uint64_t)n;
	}
}

static void stream_recv(struct sconn *c)
{
	ssize_t n = recv(c->fd, iobuf, sizeof(iobuf), 0);
	uint64_t want = c->sent - c->verified;
	long bad;
	uint8_t exp;

	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return;
		stream_fail(c->idx, c->verified, "recv: %s", strerror(errno));
	}
	if (n == 0)
		stream_fail(c->idx, c->verified, "unexpected EOF with %" PRIu64 " bytes not echoed", want);
	bad = pattern_check(iobuf, c->verified, min_u64((uint64_t)n, want), (uint64_t)c->idx);
	if (bad >= 0) {
		pattern_fill(&exp, c->verified + (uint64_t)bad, 1, (uint64_t)c->idx);
		stream_fail(c->idx, c->verified + (uint64_t)bad, "mismatch: got 0x%02x, expected 0x%02x",
			    iobuf[bad], exp);
	}
	if ((uint64_t)n > want)
		stream_fail(c->idx, c->sent, "%" PRIu64 " bytes echoed beyond the %" PRIu64 " sent",
			    (uint64_t)n - want, c->sent);
	c->verified += (uint64_t)n;
	st_verified += (uint64_t)n;
	gap_got(&S.gap, S.now, st_sent != st_verified);
}

static void stream_watch(struct sconn *c)
{
	uint32_t ev = c->up ? EPOLLIN : EPOLLOUT;

	if (c->up && !S.stopping && stream_budget(c))
		ev |= EPOLLOUT;
	if (ev != c->events) {
		ep_ctl(EPOLL_CTL_MOD, c->fd, ev, c);
		c->events = ev;
	}
}

/* " progressed=P min_bytes=B" since the last mark (see the top). */
static void stream_marked(const struct sconn *sc, int k, char *buf, size_t size)
{
	uint64_t least = UINT64_MAX;
	int n = 0;

	for (int i = 0; i < k; i++) {
		uint64_t after = sc[i].verified > sc[i].mark ? sc[i].verified - sc[i].mark : 0;

		n += after > 0;
		least = min_u64(least, after);
	}
	snprintf(buf, size, " progressed=%d min_bytes=%" PRIu64, n, k ? least : 0);
}

static int tcp_stream_main(int argc, char **argv)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t connect_deadline;
	int k, n_up = 0, n_started = 0, n_finished = 0;
	unsigned n_marks = 0;
	struct sconn *sc;
	bool ready = false;

	client_init(&S, argc, argv, " --connect --conns --chunk --rate --window --bytes --drain-timeout ");
	k = (int)S.conns;
	sc = xrealloc(NULL, (size_t)k * sizeof(*sc));
	connect_deadline = S.now + 10000000000ull;
	for (int i = 0; i < k; i++) {
		sc[i] = (struct sconn){ .idx = i, .events = EPOLLOUT };
		sc[i].fd = connect_one(&S, SOCK_STREAM, false);
		if (sc[i].fd < 0)
			stream_fail(i, 0, "connect: %s", strerror(-sc[i].fd));
		ep_ctl(EPOLL_CTL_ADD, sc[i].fd, sc[i].events, &sc[i]);
	}

	for (;;) {
		uint64_t deadline = n_up < k ? connect_deadline : UINT64_MAX;
		int n;

		for (int i = 0; S.rate && !S.stopping && i < k; i++)
			if (sc[i].up && !(sc[i].events & EPOLLOUT))
				deadline = min_u64(deadline, stream_rate_wake(&sc[i]));
		n = client_wait(&S, evs, MAX_EVENTS, deadline);
		if (n < 0)
			stream_fail(-1, 0, "terminated by %s", strsignal(-n));
		if (S.mark_req) {
			S.mark_req = false;
			for (int i = 0; i < k; i++)
				sc[i].mark = sc[i].sent;
			printf("mark n=%u\n", ++n_marks);
		}
		for (int i = 0; i < n; i++) {
			struct sconn *c = evs[i].data.ptr;

			if (!c->up) {
				int err = sock_int(c->fd, SOL_SOCKET, SO_ERROR);

				if (err)
					stream_fail(c->idx, 0, "connect: %s", strerror(err < 0 ? -err : err));
				c->up = true;
				c->t0 = S.now;
				n_up++;
			} else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				stream_recv(c);
			}
			if (!S.stopping && c->up && (evs[i].events & EPOLLOUT)) {
				bool had = c->sent > 0, fin = S.bytes && c->sent == S.bytes;

				stream_send(c);
				n_started += !had && c->sent > 0;
				n_finished += !fin && S.bytes && c->sent == S.bytes;
			}
			stream_watch(c);
		}
		if (!ready && n_started == k) {
			ready = true;
			printf("ready\n");
		}
		if (S.bytes && n_finished == k)
			client_stop(&S);
		if (S.stopping && n_up == k && st_sent == st_verified)
			break;
		for (int i = 0; S.now >= S.stop_deadline && i < k; i++)
			if (sc[i].sent != sc[i].verified || !sc[i].up)
				stream_fail(i, sc[i].verified, "drain timeout: %" PRIu64
					    " bytes not echoed after %.1f s", sc[i].sent - sc[i].verified, S.drain);
		for (int i = 0; n_up < k && S.now >= connect_deadline && i < k; i++)
			if (!sc[i].up)
				stream_fail(i, 0, "connect timeout");
		for (int i = 0; S.rate && !S.stopping && i < k; i++)
			if (sc[i].up)
				stream_watch(&sc[i]);
		if (n_marks && S.now >= S.next_progress)
			stream_marked(sc, k, S.progress_extra, sizeof(S.progress_extra));
		client_progress(&S, "verified", st_sent, st_verified);
	}
	if (n_marks)
		stream_marked(sc, k, S.progress_extra, sizeof(S.progress_extra));
	printf("done conns=%d sent=%" PRIu64 " verified=%" PRIu64 " max_gap_ms=%.3f%s errors=0\n",
	       k, st_sent, st_verified, ns_ms(S.gap.max), S.progress_extra);
	return 0;
}

/* ---- tcp-pingpong ------------------------------------------------------- */

#define PP_RING 65536	/* pings that may be outstanding at once */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int tcp_pingpong_main(int argc, char **argv)
{
	static uint64_t sent_at[PP_RING];
	static uint8_t out[PP_RING * 8];
	struct client c;
	struct epoll_event evs[8];
	uint64_t sent = 0, got = 0, last_reply = 0, max_rtt = 0, *rtts = NULL, v;
	size_t out_off = 0, out_len = 0, rtt_cap = 0, part_len = 0;
	uint8_t part[8];
	bool ready = false;
	int fd, tfd, n;
	ssize_t r;

	client_init(&c, argc, argv, " --connect --interval-us --count --drain-timeout ");
	fd = connect_one(&c, SOCK_STREAM, true);
	if (fd < 0) {
		printf("error seq=0: connect: %s\n", strerror(-fd));
		return 1;
	}
	ep_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, &fd);
	tfd = timer_make(c.interval_us);

	while (!(c.stopping && got == sent && !out_len)) {
		if (c.now >= c.stop_deadline) {
			printf("error seq=%" PRIu64 ": drain timeout: %" PRIu64 " of %" PRIu64
			       " replies after %.1f s\n", got, got, sent, c.drain);
			return 1;
		}
		n = client_wait(&c, evs, 8, UINT64_MAX);
		if (n < 0) {
			printf("error seq=%" PRIu64 ": terminated by %s\n", got, strsignal(-n));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &tag_timer) {
				for (uint64_t t = timer_ticks(tfd); t && !c.stopping; t--) {
					uint64_t be = htobe64(sent);

					if (sent - got >= PP_RING) {
						printf("error seq=%" PRIu64 ": %d pings outstanding\n", got, PP_RING);
						return 1;
					}
					if (out_off + out_len + 8 > sizeof(out)) {
						memmove(out, out + out_off, out_len);
						out_off = 0;
					}
					memcpy(out + out_off + out_len, &be, 8);
					out_len += 8;
					sent_at[sent++ % PP_RING] = c.now;
					if (c.count && sent == c.count)
						client_stop(&c);
				}
				continue;
			}
			r = recv(fd, iobuf, sizeof(iobuf), 0);
			if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
				printf("error seq=%" PRIu64 ": %s\n", got, r ? strerror(errno) : "unexpected EOF");
				return 1;
			}
			for (ssize_t j = 0; j < r; j++) {
				part[part_len++] = iobuf[j];
				if (part_len < 8)
					continue;
				part_len = 0;
				memcpy(&v, part, 8);
				v = be64toh(v);
				if (v != got || got >= sent) {
					printf("error seq=%" PRIu64 ": reply %" PRIu64 " where %" PRIu64
					       " was expected (%" PRIu64 " sent)\n", got, v, got, sent);
					return 1;
				}
				if (got == rtt_cap) {
					rtt_cap = rtt_cap ? 2 * rtt_cap : 4096;
					rtts = xrealloc(rtts, rtt_cap * sizeof(*rtts));
				}
				rtts[got] = c.now - sent_at[got % PP_RING];
				max_rtt = rtts[got] > max_rtt ? rtts[got] : max_rtt;
				/* Here max_gap is between consecutive replies. */
				if (got && c.now - last_reply > c.gap.max)
					c.gap.max = c.now - last_reply;
				last_reply = c.now;
				got++;
			}
		}
		r = send_some(fd, out + out_off, out_len);
		if (r < 0) {
			printf("error seq=%" PRIu64 ": send: %s\n", got, strerror((int)-r));
			return 1;
		}
		out_off += (size_t)r;
		out_len -= (size_t)r;
		if (!ready && sent) {
			ready = true;
			printf("ready\n");
		}
		client_progress(&c, "received", sent, got);
	}
	qsort(rtts, got, sizeof(*rtts), cmp_u64);
	printf("done count=%" PRIu64 " max_rtt_ms=%.3f p50_rtt_ms=%.3f max_gap_ms=%.3f\n",
	       got, ns_ms(max_rtt), got ? ns_ms(rtts[(got - 1) / 2]) : 0.0, ns_ms(c.gap.max));
	free(rtts);
	return 0;
}

/* ---- udp-stream --------------------------------------------------------- */

/*
 * A datagram is its sequence number (8 bytes, big-endian) and then a payload
 * whose bytes are the pattern of stream "seq", so a datagram that is cut,
 * altered or carries another's payload is caught.
 */
/* On stderr, the first ranges of sequence numbers never echoed: a test
 * puts them beside the times of its moves (a datagram a tick). */
static void udp_print_missing(const uint8_t *seen, uint64_t sent)
{
	int ranges = 0;

	fprintf(stderr, "peer: missing:");
	for (uint64_t i = 0; i < sent && ranges < 20; i++) {
		uint64_t j = i;

		if (seen[i / 8] & (1u << (i % 8)))
			continue;
		while (j + 1 < sent && !(seen[(j + 1) / 8] & (1u << ((j + 1) % 8))))
			j++;
		if (j > i)
			fprintf(stderr, " %" PRIu64 "-%" PRIu64, i, j);
		else
			fprintf(stderr, " %" PRIu64, i);
		ranges++;
		i = j;
	}
	fprintf(stderr, "\n");
}

static int udp_stream_main(int argc, char **argv)
{
	struct client c;
	struct epoll_event evs[8];
	uint64_t sent = 0, got = 0, dup = 0, reord = 0, corrupt = 0, refused = 0, high = 0, seq;
	uint8_t *seen = NULL, *dg;
	size_t seen_cap = 0;
	bool ready = false, ok;
	int fd, tfd, n, rcvbuf = 4 << 20;
	ssize_t r;

	client_init(&c, argc, argv, " --connect --interval-us --count --size --drain-timeout ");
	fd = connect_one(&c, SOCK_DGRAM, false);
	if (fd < 0)
		die("cannot connect the UDP socket: %s", strerror(-fd));
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	ep_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, &fd);
	dg = xrealloc(NULL, c.size);
	tfd = timer_make(c.interval_us);

	/* Lost datagrams never come: the drain deadline ends the wait. */
	while (!(c.stopping && got == sent) && c.now < c.stop_deadline) {
		n = client_wait(&c, evs, 8, UINT64_MAX);
		if (n < 0) {
			printf("error sent=%" PRIu64 ": terminated by %s\n", sent, strsignal(-n));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == &tag_timer) {
				for (uint64_t t = timer_ticks(tfd); t && !c.stopping; t--) {
					seq = htobe64(sent);
					memcpy(dg, &seq, 8);
					pattern_fill(dg + 8, 0, c.size - 8, sent);
					/* A pending ICMP error fails a send without sending it: retry once. */
					r = send(fd, dg, c.size, MSG_NOSIGNAL);
					if (r < 0 && errno == ECONNREFUSED) {
						refused++;
						r = send(fd, dg, c.size, MSG_NOSIGNAL);
					}
					if (r < 0 && errno != EAGAIN && errno != ENOBUFS && errno != ECONNREFUSED)
						die("send: %m");
					if (r < 0) {
						fprintf(stderr, "peer: datagram %" PRIu64 " not sent: %m\n", sent);
						break;	/* the next tick sends it */
					}
					if (sent >= seen_cap * 8) {
						seen = xrealloc(seen, seen_cap ? 2 * seen_cap : 4096);
						memset(seen + seen_cap, 0, seen_cap ? seen_cap : 4096);
						seen_cap = seen_cap ? 2 * seen_cap : 4096;
					}
					gap_start(&c.gap, c.now);
					if (++sent == c.count)
						client_stop(&c);
				}
				continue;
			}
			for (int j = 0; j < 256; j++) {
				r = recv(fd, iobuf, sizeof(iobuf), 0);
				if (r < 0 && errno == ECONNREFUSED) {
					refused++;
					continue;
				}
				if (r < 0 && errno != EAGAIN && errno != EINTR)
					die("recv: %m");
				if (r < 0)
					break;
				seq = 0;
				memcpy(&seq, iobuf, r >= 8 ? 8 : 0);
				seq = be64toh(seq);
				if ((uint64_t)r != c.size || seq >= sent ||
				    pattern_check(iobuf + 8, 0, c.size - 8, seq) >= 0) {
					fprintf(stderr, "peer: corrupt datagram (%zd bytes, seq %" PRIu64 ")\n", r, seq);
					corrupt++;
				} else if (seen[seq / 8] & (1u << (seq % 8))) {
					dup++;
				} else {
					seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
					reord += got && seq < high;
					high = seq > high ? seq : high;
					got++;
					gap_got(&c.gap, c.now, got != sent);
				}
			}
		}
		if (!ready && sent) {
			ready = true;
			printf("ready\n");
		}
		client_progress(&c, "received", sent, got);
	}
	if (refused)
		fprintf(stderr, "peer: %" PRIu64 " ICMP port-unreachable errors\n", refused);
	if (got != sent)
		udp_print_missing(seen, sent);
	ok = got == sent && !dup && !reord && !corrupt;
	printf("%s sent=%" PRIu64 " received=%" PRIu64 " lost=%" PRIu64 " dup=%" PRIu64
	       " reordered=%" PRIu64 " max_gap_ms=%.3f corrupt=%" PRIu64 "\n", ok ? "done" : "error",
	       sent, got, sent - got, dup, reord, ns_ms(c.gap.max), corrupt);
	free(seen);
	free(dg);
	return ok ? 0 : 1;
}

/* ---- main --------------------------------------------------------------- */

static int tcp_echo_main(int argc, char **argv)
{
	return echo_main(argc, argv, false);
}

static int udp_echo_main(int argc, char **argv)
{
	return echo_main(argc, argv, true);
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} modes[] = {
	{ "tcp-echo", tcp_echo_main },
	{ "tcp-stream", tcp_stream_main },
	{ "tcp-pingpong", tcp_pingpong_main },
	{ "udp-echo", udp_echo_main },
	{ "udp-stream", udp_stream_main },
};

int main(int argc, char **argv)
{
	for (size_t i = 0; argc > 1 && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name))
			return modes[i].fn(argc, argv);
	fprintf(stderr, "usage: peer tcp-echo|tcp-stream|tcp-pingpong|udp-echo|udp-stream [OPTION VALUE]...\n"
		"(the options are described at the top of tests/progs/peer.c)\n");
	return 2;
}
