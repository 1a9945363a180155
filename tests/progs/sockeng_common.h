/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the socket engine's test programs (header only: each
 * .c file under tests/progs is a program of its own). */
#ifndef SOCKENG_COMMON_H
#define SOCKENG_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void die(const char *fmt, ...)
{
	va_list ap;

	fputs("FAIL: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	exit(1);
}

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Every byte a function of its offset in the stream: a lost, repeated or
 * reordered byte shows as a mismatch at a known offset. */
static inline uint8_t pattern(uint64_t off, uint8_t seed)
{
	uint64_t x = off * 0x9e3779b97f4a7c15ull + seed;

	return (uint8_t)(x >> 56 ^ x >> 29 ^ off >> 12);
}

static inline void fill_pattern(uint8_t *p, size_t n, uint64_t off, uint8_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = pattern(off + i, seed);
}

static inline void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void run(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = system(cmd);
	if (r != 0)
		die("command failed (%d): %s", r, cmd);
}

static inline int ns_open(const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	return fd;
}

/* Only this thread moves; sockets keep the namespace they were made in. */
static inline void ns_enter(int nsfd)
{
	if (setns(nsfd, CLONE_NEWNET) < 0)
		die("setns: %s", strerror(errno));
}

/* "10.0.0.1" on an AF_INET6 socket becomes ::ffff:10.0.0.1 (dual stack). */
static inline socklen_t make_addr(int fam, const char *text, int port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (fam == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, text, &s->sin_addr) != 1)
			die("bad IPv4 address %s", text);
		return sizeof(*s);
	}
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	char mapped[64];

	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons((uint16_t)port);
	if (!strchr(text, ':')) {
		snprintf(mapped, sizeof(mapped), "::ffff:%s", text);
		text = mapped;
	}
	if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
		die("bad IPv6 address %s", text);
	return sizeof(*s6);
}

static inline void write_all(int fd, const uint8_t *p, size_t n)
{
	uint64_t deadline = now_ns() + 20ull * 1000000000;

	while (n) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t k = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno != EAGAIN && errno != EINTR)
			die("write: %s", strerror(errno));
		if (now_ns() > deadline)
			die("write: timed out with %zu bytes left", n);
		poll(&pfd, 1, 100);
	}
}

/* Read exactly n bytes and check them against the pattern from off. */
static inline void read_expect(int fd, size_t n, uint64_t off, uint8_t seed)
{
	uint64_t deadline = now_ns() + 20ull * 1000000000;
	uint8_t buf[16384];

	while (n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t k = recv(fd, buf, n < sizeof(buf) ? n : sizeof(buf), MSG_DONTWAIT);

		if (k > 0) {
			for (ssize_t i = 0; i < k; i++)
				if (buf[i] != pattern(off + (uint64_t)i, seed))
					die("stream byte %llu is 0x%02x, expected 0x%02x",
					    (unsigned long long)(off + (uint64_t)i), buf[i],
					    pattern(off + (uint64_t)i, seed));
			off += (uint64_t)k;
			n -= (size_t)k;
			continue;
		}
		if (k == 0)
			die("read: EOF with %zu bytes missing", n);
		if (errno != EAGAIN && errno != EINTR)
			die("read: %s (%zu bytes missing)", strerror(errno), n);
		if (now_ns() > deadline)
			die("read: timed out with %zu bytes missing", n);
		poll(&pfd, 1, 100);
	}
}

static inline void wait_inq(int fd, int n)
{
	uint64_t deadline = now_ns() + 10ull * 1000000000;
	int q = 0;

	while (now_ns() < deadline) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };

		if (ioctl(fd, SIOCINQ, &q) == 0 && q >= n)
			return;
		poll(&pfd, 1, 10);
		/* POLLIN stays set once anything is queued: pace the checks */
		usleep(1000);
	}
	die("receive queue reached %d of %d bytes", q, n);
}

/* Tcp counters of this thread's namespace (/proc/net follows the process,
 * /proc/thread-self/net the thread, which setns() moved). */
static inline void tcp_counters(long *estab_resets, long *out_rsts)
{
	char line[1024], vals[1024];
	FILE *f = fopen("/proc/thread-self/net/snmp", "re");

	*estab_resets = *out_rsts = -1;
	if (!f)
		die("open snmp: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Tcp: RtoAlgorithm", 17))
			continue;
		if (!fgets(vals, sizeof(vals), f))
			break;
		char *sn, *sv, *n = strtok_r(line, " \n", &sn), *v = strtok_r(vals, " \n", &sv);
		while (n && v) {
			if (!strcmp(n, "EstabResets"))
				*estab_resets = atol(v);
			if (!strcmp(n, "OutRsts"))
				*out_rsts = atol(v);
			n = strtok_r(NULL, " \n", &sn);
			v = strtok_r(NULL, " \n", &sv);
		}
	}
	fclose(f);
}

/* max_estab_resets: closing a socket in repair mode goes through
 * tcp_disconnect(), which counts an EstabReset on the source although
 * nothing is sent: allow the source that many. */
static inline void check_no_rst(int nsfd, const char *who, long max_estab_resets)
{
	long er, orst;

	ns_enter(nsfd);
	tcp_counters(&er, &orst);
	if (er > max_estab_resets || orst != 0)
		die("%s: EstabResets %ld, OutRsts %ld (want <= %ld, 0)", who, er, orst,
		    max_estab_resets);
}

static inline long nft_counter(const char *ns, const char *chain)
{
	char cmd[256], line[512];
	long packets = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ip netns exec %s nft list chain inet sockeng %s", ns, chain);
	f = popen(cmd, "r");
	if (!f)
		die("popen nft: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "packets ");
		if (p)
			packets = atol(p + 8);
	}
	pclose(f);
	if (packets < 0)
		die("no counter in %s", cmd);
	return packets;
}

#endif
