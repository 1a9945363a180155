/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pp_trace: the ping-pong of `peer tcp-pingpong` (an 8-byte sequence number
 * every U us, echoed back), that prints every pause longer than G ms between
 * two replies with its CLOCK_MONOTONIC start and end -- the clock of
 * SOCKMIG_DEBUG's stamps -- so a pause can be placed among the move's phases.
 *
 *   pp_trace ADDR PORT [U=1000] [G=5] [SECS=10]
 *
 * Prints "ready" after connecting, then "gap START END MS last_seq", and at
 * the end (SECS passed, or SIGUSR2 as `peer tcp-pingpong` takes it) waits
 * up to 5 s for the answers still due and prints "done count=N
 * answered=N max_gap_ms=X", or "error: ..." if some never came. IPv4 only;
 * bench/migrate.sh --debug uses it as its judge, to place each pause among
 * the daemons' phase stamps.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_usr2(int sig)
{
	(void)sig;
	stop = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char *argv[])
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	double interval, gap_min, secs, t0, next, last, maxgap = 0;
	uint64_t sent = 0, got = 0, v;
	int fd, one = 1;
	size_t have = 0;
	unsigned char buf[8];

	if (argc < 3 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "usage: pp_trace ADDR PORT [INTERVAL_US] [GAP_MS] [SECS]\n");
		return 2;
	}
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	interval = (argc > 3 ? atof(argv[3]) : 1000) / 1e6;
	gap_min = (argc > 4 ? atof(argv[4]) : 5) / 1e3;
	secs = argc > 5 ? atof(argv[5]) : 10;
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("pp_trace: connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	signal(SIGUSR2, on_usr2);
	printf("ready\n");
	fflush(stdout);
	t0 = last = next = now();
	for (;;) {
		double t = now();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ms = next > t ? (int)((next - t) * 1000) : 0;

		if (stop || t - t0 >= secs) {
			/* no more pings: the answers still due, bounded */
			if (got == sent)
				break;
			if (!stop) {
				stop = 1;
				next = t;
			}
			if (t - next > 5) {
				printf("error: %llu of %llu pings not answered\n", (unsigned long long)(sent - got),
				       (unsigned long long)sent);
				return 1;
			}
			ms = 100;
		} else if (t >= next) {
			v = sent++;
			if (write(fd, &v, sizeof(v)) != sizeof(v)) {
				perror("pp_trace: write");
				return 1;
			}
			next += interval;
			continue;
		}
		if (poll(&p, 1, ms) > 0 && !(p.revents & POLLIN)) {
			printf("error: connection: revents 0x%x\n", (unsigned)p.revents);
			return 1;
		}
		if (p.revents & POLLIN) {
			ssize_t n = read(fd, buf + have, sizeof(buf) - have);

			if (n <= 0) {
				printf("error: read %zd\n", n);
				return 1;
			}
			have += (size_t)n;
			if (have == sizeof(buf)) {
				memcpy(&v, buf, sizeof(v));
				have = 0;
				if (v != got) {
					printf("error seq=%llu expected %llu\n", (unsigned long long)v,
					       (unsigned long long)got);
					return 1;
				}
				got++;
				t = now();
				if (t - last > gap_min)
					printf("gap %.6f %.6f %.3f seq=%llu\n", last, t, (t - last) * 1e3,
					       (unsigned long long)v);
				if (t - last > maxgap)
					maxgap = t - last;
				last = t;
				fflush(stdout);
			}
		}
	}
	printf("done count=%llu answered=%llu max_gap_ms=%.3f\n", (unsigned long long)sent,
	       (unsigned long long)got, maxgap * 1e3);
	return 0;
}
