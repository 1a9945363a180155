/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * udp_trace: the datagram stream of `peer udp-stream` (an 8-byte sequence
 * number every U us, echoed back) that prints every echo that comes out of
 * order, and every pause longer than G ms between two echoes, with
 * CLOCK_MONOTONIC stamps -- the clock of SOCKMIG_DEBUG's phase lines -- so
 * that a reordered or lost datagram can be placed among a move's phases.
 *
 *   udp_trace ADDR PORT [U=1000] [G=5] [SECS=10]
 *
 * Prints "ready" after the first send, then lines
 *   gap START END MS seq=S             no echo for MS ms, S came after it
 *   late T seq=S high=H sent_at=T0     S came after H > S (reordered)
 * and at the end (SECS, or SIGUSR2) waits up to 5 s for the echoes still
 * due and prints "done sent=N received=N lost=N reordered=N max_gap_ms=X",
 * then "missing S sent_at=T0" for each datagram that never came (at most
 * 50). IPv4 only; a helper to look closer by hand, not a test.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <netinet/in.h>
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
	double interval, gap_min, secs, t0, next, last, maxgap = 0, t_stop = 0;
	uint64_t sent = 0, got = 0, high = 0, reord = 0, cap = 1 << 20;
	double *sent_at = malloc(cap * sizeof(double));
	uint8_t *seen = calloc(cap, 1);
	int fd, rcvbuf = 4 << 20, missing = 0;

	if (argc < 3 || inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1) {
		fprintf(stderr, "usage: udp_trace ADDR PORT [INTERVAL_US] [GAP_MS] [SECS]\n");
		return 2;
	}
	if (!sent_at || !seen)
		return 1;
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	interval = (argc > 3 ? atof(argv[3]) : 1000) / 1e6;
	gap_min = (argc > 4 ? atof(argv[4]) : 5) / 1e3;
	secs = argc > 5 ? atof(argv[5]) : 10;
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("udp_trace: connect");
		return 1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	signal(SIGUSR2, on_usr2);
	t0 = last = next = now();
	for (;;) {
		double t = now();
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ms = next > t ? (int)((next - t) * 1000) : 0;

		if (stop || t - t0 >= secs || sent == cap) {
			if (!t_stop)
				t_stop = t;
			if (got == sent || t - t_stop > 5)
				break;
			ms = 100;
		} else if (t >= next) {
			uint64_t v = htobe64(sent);

			if (send(fd, &v, sizeof(v), 0) == sizeof(v)) {
				sent_at[sent++] = t;
				if (sent == 1) {
					printf("ready\n");
					fflush(stdout);
				}
			}
			next += interval;
			continue;
		}
		if (poll(&p, 1, ms) <= 0 || !(p.revents & POLLIN))
			continue;
		for (;;) {
			uint64_t v;
			ssize_t n = recv(fd, &v, sizeof(v), MSG_DONTWAIT);

			if (n != sizeof(v))
				break;
			v = be64toh(v);
			if (v >= sent || seen[v])
				continue;
			seen[v] = 1;
			t = now();
			if (got && v < high) {
				reord++;
				printf("late %.6f seq=%llu high=%llu sent_at=%.6f\n", t, (unsigned long long)v,
				       (unsigned long long)high, sent_at[v]);
			}
			if (v > high)
				high = v;
			if (t - last > gap_min)
				printf("gap %.6f %.6f %.3f seq=%llu\n", last, t, (t - last) * 1e3, (unsigned long long)v);
			if (t - last > maxgap)
				maxgap = t - last;
			last = t;
			got++;
		}
		fflush(stdout);
	}
	printf("done sent=%llu received=%llu lost=%llu reordered=%llu max_gap_ms=%.3f\n", (unsigned long long)sent,
	       (unsigned long long)got, (unsigned long long)(sent - got), (unsigned long long)reord, maxgap * 1e3);
	for (uint64_t i = 0; i < sent && missing < 50; i++)
		if (!seen[i]) {
			printf("missing %llu sent_at=%.6f\n", (unsigned long long)i, sent_at[i]);
			missing++;
		}
	return 0;
}
