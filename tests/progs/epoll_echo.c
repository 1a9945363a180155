/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * epoll_echo: a plain single-threaded epoll TCP echo server, written the
 * way an ordinary program is: it knows nothing about sockmig. It is what a
 * migration test moves when it wants "some unmodified server" rather than
 * peer (tests/progs/peer.c), which was written for the tests.
 *
 *   epoll_echo ADDR PORT [--ballast MIB] [--udp] [--rcvbuf BYTES]
 *
 * --ballast MIB (for benchmarks) first allocates MIB MiB and writes every
 * word of it with a non-zero value, so that a checkpoint has that much
 * resident memory to carry (zero pages would be left out of an image).
 * ADDR is a numeric IPv4 or IPv6 address. It listens (SO_REUSEADDR), prints
 * "listening" on stdout once connections can be made, then accepts any
 * number of clients, non-blocking, and sends every byte back in order. A
 * write that takes only part of the data keeps the rest in the client's
 * buffer and waits for EPOLLOUT; while more than BUF_MAX bytes wait, it
 * stops reading that client (the kernel's queues then push back on the
 * sender). On EOF it sends what is still buffered, then closes. A reset or
 * other error closes that client only. Level-triggered epoll throughout.
 * SIGINT/SIGTERM end it (default action). Exit status 1 if it cannot listen.
 * --udp (for tests that move UDP flows too) also binds a UDP socket to ADDR
 * PORT and sends every datagram back to its sender; one that cannot be
 * sent within 100 ms (a full send buffer) is dropped, and said on stderr.
 * --rcvbuf BYTES gives that UDP socket a receive buffer of BYTES
 * (SO_RCVBUFFORCE, so root may exceed rmem_max; the kernel doubles it): a
 * test sizes it for the datagrams of a long freeze, so that a datagram lost
 * is one that the move lost, not one the buffer could not hold.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_MAX (4u << 20) /* per client, before it stops reading */
#define READ_CHUNK 65536
#define MAX_EVENTS 64

struct client {
	int fd;
	char *buf; /* bytes read, not yet written back: buf[off .. len) */
	size_t off, len, cap;
	bool eof; /* the client sent FIN: close once buf is empty */
	uint32_t events; /* what epoll watches now */
};

static int epfd = -1;
static int listen_fd = -1;
static int udp_fd = -1;
static char udp_tag; /* epoll's data.ptr for udp_fd; NULL is the listener */
static bool listener_paused; /* out of fds: accept again once a client closes */

static void client_close(struct client *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->buf);
	free(c);
	if (listener_paused) {
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) == 0)
			listener_paused = false;
	}
}

/* Watch for input unless the buffer is full or the client is done
 * sending, and for output while anything waits. */
static int client_update(struct client *c)
{
	uint32_t want = 0;
	struct epoll_event ev;

	if (!c->eof && c->len - c->off < BUF_MAX)
		want |= EPOLLIN;
	if (c->len > c->off)
		want |= EPOLLOUT;
	if (want == c->events)
		return 0;
	ev.events = want;
	ev.data.ptr = c;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
		return -1;
	c->events = want;
	return 0;
}

/* Write what is buffered; 0 when done or when the socket is full, -1 on an
 * error of the connection. */
static int client_flush(struct client *c)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		c->off += (size_t)n;
	}
	c->off = c->len = 0;
	return 0;
}

static int client_append(struct client *c, const char *data, size_t n)
{
	if (c->off > 0 && c->len + n > c->cap) {
		memmove(c->buf, c->buf + c->off, c->len - c->off);
		c->len -= c->off;
		c->off = 0;
	}
	if (c->len + n > c->cap) {
		size_t cap = c->cap ? c->cap : READ_CHUNK;
		char *nb;

		while (cap < c->len + n)
			cap *= 2;
		nb = realloc(c->buf, cap);
		if (!nb)
			return -1;
		c->buf = nb;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, data, n);
	c->len += n;
	return 0;
}

/* Readable: echo what came, directly when nothing is queued before it. */
static int client_read(struct client *c)
{
	char data[READ_CHUNK];
	ssize_t n;

	n = recv(c->fd, data, sizeof(data), 0);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	if (n == 0) {
		c->eof = true;
		return 0;
	}
	if (c->off == c->len) {
		ssize_t w = send(c->fd, data, (size_t)n, MSG_NOSIGNAL);

		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (w < 0)
			w = 0;
		if (w == n)
			return 0;
		return client_append(c, data + w, (size_t)(n - w));
	}
	return client_append(c, data, (size_t)n);
}

static void on_client(struct client *c, uint32_t events)
{
	/* an error or hang-up with nothing left to read: nothing more can
	 * come in or go out (with EPOLLIN, the read finds the EOF or error) */
	if ((events & (EPOLLERR | EPOLLHUP)) && !(events & EPOLLIN))
		goto drop;
	if (events & EPOLLIN) {
		if (client_read(c) < 0)
			goto drop;
	}
	if (c->len > c->off && client_flush(c) < 0)
		goto drop;
	if (c->eof && c->off == c->len)
		goto drop;
	if (client_update(c) < 0)
		goto drop;
	return;
drop:
	client_close(c);
}

static void on_listener(void)
{
	for (;;) {
		struct epoll_event ev;
		struct client *c;
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* level-triggered: it would wake us at once again */
				fprintf(stderr, "epoll_echo: accept: %s; waiting for a client to close\n", strerror(errno));
				epoll_ctl(epfd, EPOLL_CTL_DEL, listen_fd, NULL);
				listener_paused = true;
			}
			return; /* EAGAIN: all taken */
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->events = EPOLLIN;
		ev.events = EPOLLIN;
		ev.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			fprintf(stderr, "epoll_echo: epoll_ctl: %s\n", strerror(errno));
			close(fd);
			free(c);
		}
	}
}

/* Datagrams back to their senders; at most 64 a wake-up, so that the TCP
 * clients are served too (level-triggered: the rest wakes us again). */
static void on_udp(void)
{
	char data[65536];

	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(udp_fd, data, sizeof(data), 0, (struct sockaddr *)&from, &fl);

		if (n < 0)
			return; /* EAGAIN: all read; an ICMP error of an earlier echo: nothing to do */
		while (sendto(udp_fd, data, (size_t)n, 0, (struct sockaddr *)&from, fl) < 0) {
			struct pollfd p = { .fd = udp_fd, .events = POLLOUT };

			if (errno == EINTR)
				continue;
			if ((errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) && poll(&p, 1, 100) > 0)
				continue;
			fprintf(stderr, "epoll_echo: udp: a datagram of %zd bytes not echoed: %s\n", n, strerror(errno));
			break;
		}
	}
}

static int open_udp(const char *addr, const char *port, int rcvbuf)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
	struct addrinfo *res;
	int fd, r;

	r = getaddrinfo(addr, port, &hints, &res);
	if (r) {
		fprintf(stderr, "epoll_echo: %s port %s: %s\n", addr, port, gai_strerror(r));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0 && rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0 &&
	    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) < 0)
		fprintf(stderr, "epoll_echo: --rcvbuf %d: %s\n", rcvbuf, strerror(errno));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
		fprintf(stderr, "epoll_echo: cannot bind UDP %s port %s: %s\n", addr, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* MIB MiB of non-zero, touched memory, kept for the process's lifetime. */
static int ballast(const char *arg)
{
	char *end;
	unsigned long mib;
	uint64_t *p, x = 0x9e3779b97f4a7c15ull;
	size_t words;

	errno = 0;
	mib = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || mib > (1ul << 20)) {
		fprintf(stderr, "epoll_echo: --ballast takes a number of MiB, not '%s'\n", arg);
		return -1;
	}
	if (!mib)
		return 0;
	p = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "epoll_echo: --ballast %lu: %s\n", mib, strerror(errno));
		return -1;
	}
	words = (mib << 20) / sizeof(*p);
	for (size_t i = 0; i < words; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64: never 0 */
		p[i] = x;
	}
	return 0;
}

static int open_listener(const char *addr, const char *port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE };
	struct addrinfo *res;
	int fd, one = 1, r;

	r = getaddrinfo(addr, port, &hints, &res);
	if (r) {
		fprintf(stderr, "epoll_echo: %s port %s: %s\n", addr, port, gai_strerror(r));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
		fprintf(stderr, "epoll_echo: cannot listen on %s port %s: %s\n", addr, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int main(int argc, char *argv[])
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, events[MAX_EVENTS];
	const char *mib = NULL;
	bool udp = false;
	long rcvbuf = 0;

	for (int i = 3; argc >= 3 && i < argc; i++) {
		char *end;

		if (!strcmp(argv[i], "--ballast") && i + 1 < argc && !mib) {
			mib = argv[++i];
		} else if (!strcmp(argv[i], "--udp") && !udp) {
			udp = true;
		} else if (!strcmp(argv[i], "--rcvbuf") && i + 1 < argc && !rcvbuf) {
			errno = 0;
			rcvbuf = strtol(argv[++i], &end, 10);
			if (errno || *end || rcvbuf < 1 || rcvbuf > (1l << 30))
				argc = 0;
		} else {
			argc = 0; /* the usage below */
		}
	}
	if (argc < 3 || (rcvbuf && !udp)) {
		fprintf(stderr, "usage: epoll_echo ADDR PORT [--ballast MIB] [--udp [--rcvbuf BYTES]]\n");
		return 2;
	}
	if (mib && ballast(mib) < 0)
		return 2;
	listen_fd = open_listener(argv[1], argv[2]);
	if (listen_fd < 0)
		return 1;
	if (udp) {
		udp_fd = open_udp(argv[1], argv[2], (int)rcvbuf);
		if (udp_fd < 0)
			return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
		fprintf(stderr, "epoll_echo: epoll: %s\n", strerror(errno));
		return 1;
	}
	ev.data.ptr = &udp_tag;
	if (udp_fd >= 0 && epoll_ctl(epfd, EPOLL_CTL_ADD, udp_fd, &ev) < 0) {
		fprintf(stderr, "epoll_echo: epoll: %s\n", strerror(errno));
		return 1;
	}
	printf("listening\n");
	fflush(stdout);

	for (;;) {
		int n = epoll_wait(epfd, events, MAX_EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "epoll_echo: epoll_wait: %s\n", strerror(errno));
			return 1;
		}
		for (int i = 0; i < n; i++) {
			if (!events[i].data.ptr)
				on_listener();
			else if (events[i].data.ptr == &udp_tag)
				on_udp();
			else
				on_client(events[i].data.ptr, events[i].events);
		}
	}
}
