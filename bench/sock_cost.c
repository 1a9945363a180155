/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Per-socket cost of the TCP socket engine: save (sockmig_tcp_save +
 * sockmig_tcp_save_queues) and restore (sockmig_tcp_restore +
 * sockmig_tcp_resume), in microseconds and in syscalls, for n ESTABLISHED
 * loopback connections, with empty queues and with Q bytes in each queue.
 * Never passes or fails on time; fails if a restored connection does not
 * carry its queues and a few new bytes both ways (a broken path is not
 * measured).
 *
 *   sock_cost [RUNS] [QBYTES]     (as root: each run unshare(CLONE_NEWNET)s
 *                                  in a child; the machine's namespace is
 *                                  never touched)
 *
 * One run, in a fresh network namespace: n connections to a listener on
 * 127.0.0.1, Q bytes sent by the peer (the job's receive queue); flows
 * blocked with the flow lock (sockmig_flow_freeze); Q bytes written by the
 * job (dropped on the way: its send queue); save all; discard all
 * (sockmig_tcp_discard, silent); restore all in the same namespace; thaw;
 * resume all; then every connection must deliver both queues and 4 new
 * bytes each way.
 *
 * Syscalls are counted in one extra run per row, traced with ptrace
 * (PTRACE_GET_SYSCALL_INFO on every syscall entry of the child; the timed
 * runs are not traced). The child marks its phases with getppid(MAGIC),
 * which the tracer takes as a phase boundary and does not count.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sockmig/flow.h"
#include "sockmig/socket.h"
#include "sockmig/sockmig.h"

#define MAX_RUNS 15
#define MARK_MAGIC 0x50c4c057ul
#define PORT 5000

/* Phases of a run, separated by marks. */
enum { PH_SETUP, PH_SAVE, PH_DISCARD, PH_RESTORE, PH_THAW, PH_RESUME, PH_CHECK, PH_N };

struct result {
	double save_us, restore_us; /* per socket, wall clock */
	double save_cpu, restore_cpu; /* per socket, this thread's CPU time */
	int ok;
	char err[200];
};

static void mark(void)
{
	syscall(SYS_getppid, MARK_MAGIC);
}

static double clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static double now_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

/* CPU time of this thread (user + system): what the calls cost us, less
 * sensitive than the wall clock to other load on the machine. */
static double cpu_us(void)
{
	return clock_us(CLOCK_THREAD_CPUTIME_ID);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int lo_up(void)
{
	struct ifreq ifr = { 0 };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		r = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!r && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Read exactly len bytes within 10 s; 0 or -1. */
static int read_full(int fd, uint8_t *p, size_t len)
{
	while (len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t k;

		if (poll(&pfd, 1, 10000) <= 0)
			return -1;
		k = recv(fd, p, len, MSG_DONTWAIT);
		if (k < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (k <= 0)
			return -1;
		p += k;
		len -= (size_t)k;
	}
	return 0;
}

static void pattern(uint8_t *p, size_t len, size_t i, uint8_t salt)
{
	for (size_t k = 0; k < len; k++)
		p[k] = (uint8_t)(i * 7 + k + salt);
}

static void ep_of(int fd, int peer, struct sockmig_endpoint *ep)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (peer)
		getpeername(fd, (struct sockaddr *)&sin, &len);
	else
		getsockname(fd, (struct sockaddr *)&sin, &len);
	memset(ep, 0, sizeof(*ep));
	ep->family = AF_INET;
	memcpy(ep->addr, &sin.sin_addr, 4);
	ep->port = ntohs(sin.sin_port);
}

#define FAIL(...)                                                              \
	do {                                                                   \
		snprintf(res->err, sizeof(res->err), __VA_ARGS__);             \
		return -1;                                                     \
	} while (0)

/* One run in the calling process's (fresh) namespace. Leaks on failure: the
 * child exits right after. */
static int run(size_t n, size_t q, struct result *res)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(PORT) };
	struct rlimit rl = { 4 * n + 256, 4 * n + 256 };
	struct sockmig_tcp_state *st = calloc(n, sizeof(*st));
	struct sockmig_flow *flows = calloc(n, sizeof(*flows));
	int *c = calloc(n, sizeof(int)), *p = calloc(n, sizeof(int));
	uint8_t *sndq = malloc(n * q + 1), *rcvq = malloc(n * q + 1);
	uint8_t buf[4096 + 8], want[4096 + 8];
	struct sockmig_flowlock *lock = NULL;
	double t0, t1, t2, t3, c0, c1, c2, c3;
	int lfd, one = 1, v;

	if (!st || !flows || !c || !p || !sndq || !rcvq || q > 4096)
		FAIL("out of memory");
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		FAIL("setrlimit: %s", strerror(errno));
	if (lo_up() < 0)
		FAIL("cannot bring lo up");
	/* The lock's netlink socket first: libnftables select()s on it, which
	 * aborts for an fd above FD_SETSIZE. */
	if (sockmig_flowlock_new(0, NULL, &lock) < 0)
		FAIL("flow lock: %s", sockmig_error());
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 4096) < 0)
		FAIL("listener: %s", strerror(errno));
	for (size_t i = 0; i < n; i++) {
		c[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c[i] < 0 || connect(c[i], (struct sockaddr *)&sin, sizeof(sin)) < 0)
			FAIL("connect %zu: %s", i, strerror(errno));
		p[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (p[i] < 0)
			FAIL("accept %zu: %s", i, strerror(errno));
		if (q) {
			pattern(buf, q, i, 1);
			if (send(p[i], buf, q, 0) != (ssize_t)q)
				FAIL("peer send %zu", i);
		}
		flows[i].proto = IPPROTO_TCP;
		ep_of(c[i], 0, &flows[i].local);
		ep_of(c[i], 1, &flows[i].remote);
	}
	/* the peer's bytes are in the job's receive queue (loopback delivers
	 * in the sender's softirq), and acked */
	for (size_t i = 0; q && i < n; i++)
		if (ioctl(c[i], SIOCINQ, &v) < 0 || v != (int)q)
			FAIL("receive queue %zu holds %d bytes", i, v);

	if (sockmig_flow_freeze(lock, flows, n) < 0)
		FAIL("flow lock: %s", sockmig_error());
	for (size_t i = 0; q && i < n; i++) {
		pattern(buf, q, i, 2);
		if (send(c[i], buf, q, MSG_DONTWAIT) != (ssize_t)q)
			FAIL("job send %zu", i);
		if (ioctl(c[i], SIOCOUTQ, &v) < 0 || v != (int)q)
			FAIL("send queue %zu holds %d bytes", i, v);
	}

	c0 = cpu_us(); /* outside the marks: not counted as the library's */
	mark(); /* -> save */
	t0 = now_us();
	for (size_t i = 0; i < n; i++) {
		if (sockmig_tcp_save(c[i], &st[i]) < 0)
			FAIL("save %zu: %s", i, sockmig_error());
		if (st[i].sndq_len > q || st[i].rcvq_len > q)
			FAIL("save %zu: queues %u/%u", i, st[i].sndq_len, st[i].rcvq_len);
		if (sockmig_tcp_save_queues(c[i], &st[i], sndq + i * q, rcvq + i * q) < 0)
			FAIL("save queues %zu: %s", i, sockmig_error());
	}
	t1 = now_us();
	mark(); /* -> discard */
	c1 = cpu_us();
	for (size_t i = 0; i < n; i++)
		if (sockmig_tcp_discard(c[i]) < 0)
			FAIL("discard %zu: %s", i, sockmig_error());
	c2 = cpu_us();
	mark(); /* -> restore */
	t2 = now_us();
	for (size_t i = 0; i < n; i++)
		if (sockmig_tcp_restore(&st[i], sndq + i * q, rcvq + i * q, st[i].snd_una, &c[i]) < 0)
			FAIL("restore %zu: %s", i, sockmig_error());
	t3 = now_us();
	mark(); /* -> thaw */
	c3 = cpu_us();
	/* open before resume: its window probe must reach the peer */
	if (sockmig_flow_thaw(lock, flows, n) < 0)
		FAIL("thaw: %s", sockmig_error());
	c3 -= cpu_us();
	mark(); /* -> resume */
	t3 -= now_us();
	for (size_t i = 0; i < n; i++)
		if (sockmig_tcp_resume(c[i], &st[i]) < 0)
			FAIL("resume %zu: %s", i, sockmig_error());
	t3 += now_us();
	mark(); /* -> check */
	c3 += cpu_us();

	res->save_us = (t1 - t0) / (double)n;
	res->restore_us = (t3 - t2) / (double)n;
	res->save_cpu = (c1 - c0) / (double)n;
	res->restore_cpu = (c3 - c2) / (double)n;

	for (size_t i = 0; i < n; i++) {
		if (q) {
			pattern(want, q, i, 1);
			if (read_full(c[i], buf, q) < 0 || memcmp(buf, want, q))
				FAIL("connection %zu: the restored receive queue did not arrive", i);
			pattern(want, q, i, 2);
			if (read_full(p[i], buf, q) < 0 || memcmp(buf, want, q))
				FAIL("connection %zu: the peer did not get the restored send queue", i);
		}
		if (send(c[i], "ping", 4, MSG_NOSIGNAL) != 4 || read_full(p[i], buf, 4) < 0 || memcmp(buf, "ping", 4))
			FAIL("connection %zu: no bytes from the restored socket to the peer", i);
		if (send(p[i], "pong", 4, MSG_NOSIGNAL) != 4 || read_full(c[i], buf, 4) < 0 || memcmp(buf, "pong", 4))
			FAIL("connection %zu: no bytes from the peer to the restored socket", i);
	}
	sockmig_flowlock_free(lock);
	res->ok = 1;
	return 0;
}

/* Run in a child with its own namespace. counts: NULL for a timed run, else
 * syscalls per phase (traced run). */
static int run_child(size_t n, size_t q, struct result *res, unsigned long *counts)
{
	int pfd[2], st;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct result r = { 0 };

		close(pfd[0]);
		if (counts && (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0 || raise(SIGSTOP) < 0))
			_exit(2);
		if (unshare(CLONE_NEWNET) < 0)
			snprintf(r.err, sizeof(r.err), "cannot create a network namespace: %s (run as root)",
				 strerror(errno));
		else
			run(n, q, &r);
		if (write(pfd[1], &r, sizeof(r)) != sizeof(r))
			_exit(3);
		_exit(r.ok ? 0 : 1);
	}
	close(pfd[1]);
	if (counts) {
		int phase = PH_SETUP, sig = 0;

		memset(counts, 0, PH_N * sizeof(*counts));
		if (waitpid(pid, &st, 0) < 0 || !WIFSTOPPED(st))
			goto out_wait;
		ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)(PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL));
		for (;;) {
			if (ptrace(PTRACE_SYSCALL, pid, NULL, (void *)(long)sig) < 0 || waitpid(pid, &st, 0) < 0)
				break;
			sig = 0;
			if (WIFEXITED(st) || WIFSIGNALED(st))
				goto out_read;
			if (WSTOPSIG(st) == (SIGTRAP | 0x80)) {
				struct __ptrace_syscall_info si;

				if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, (void *)sizeof(si), &si) <= 0 ||
				    si.op != PTRACE_SYSCALL_INFO_ENTRY)
					continue;
				if (si.entry.nr == SYS_getppid && si.entry.args[0] == MARK_MAGIC)
					phase += phase < PH_N - 1;
				else
					counts[phase]++;
			} else if (WSTOPSIG(st) != SIGTRAP) {
				sig = WSTOPSIG(st);
			}
		}
	}
out_wait:
	waitpid(pid, &st, 0);
out_read:
	if (read(pfd[0], res, sizeof(*res)) != sizeof(*res) && !res->err[0])
		snprintf(res->err, sizeof(res->err), "the run ended without a result");
	close(pfd[0]);
	return res->ok ? 0 : -1;
}

static void cpu_model(char *buf, size_t size)
{
	FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];

	snprintf(buf, size, "unknown");
	while (f && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');

		if (!strncmp(line, "model name", 10) && colon) {
			snprintf(buf, size, "%s", colon + 2);
			buf[strcspn(buf, "\n")] = '\0';
			break;
		}
	}
	if (f)
		fclose(f);
}

int main(int argc, char *argv[])
{
	static const size_t ns[] = { 1, 100, 1000 };
	int runs = argc > 1 ? atoi(argv[1]) : 5;
	size_t qfull = argc > 2 ? (size_t)atoi(argv[2]) : 4096;
	size_t qs[2] = { 0, qfull };
	struct utsname u;
	char cpu[128];

	if (runs < 1 || runs > MAX_RUNS || qfull < 1 || qfull > 4096) {
		fprintf(stderr, "usage: sock_cost [RUNS 1..%d] [QBYTES 1..4096]\n", MAX_RUNS);
		return 2;
	}
	uname(&u);
	cpu_model(cpu, sizeof(cpu));
	printf("TCP socket engine cost per socket, loopback, private network namespace\n");
	printf("kernel %s, CPU %s, %ld online CPUs\n", u.release, cpu, sysconf(_SC_NPROCESSORS_ONLN));
	printf("time: median of %d runs, wall clock and (cpu) this thread's CPU time, per socket;\n"
	       "save = sockmig_tcp_save + _save_queues, restore = sockmig_tcp_restore + _resume\n", runs);
	printf("syscalls: counted with ptrace in one extra run per row (total of the phase / sockets)\n\n");
	printf("| sockets | queues   | save us (cpu)   | restore us (cpu) | save syscalls | restore syscalls |\n");
	printf("| ------- | -------- | --------------- | ---------------- | ------------- | ---------------- |\n");
	for (size_t qi = 0; qi < 2; qi++) {
		for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
			double sv[MAX_RUNS], rv[MAX_RUNS], sc[MAX_RUNS], rcpu[MAX_RUNS];
			unsigned long counts[PH_N];
			struct result res;
			size_t n = ns[ni];

			for (int k = 0; k < runs; k++) {
				if (run_child(n, qs[qi], &res, NULL) < 0) {
					fprintf(stderr, "sock_cost: %zu sockets, queues %zu: %s\n", n, qs[qi], res.err);
					return 1;
				}
				sv[k] = res.save_us;
				rv[k] = res.restore_us;
				sc[k] = res.save_cpu;
				rcpu[k] = res.restore_cpu;
			}
			if (run_child(n, qs[qi], &res, counts) < 0) {
				fprintf(stderr, "sock_cost: traced run, %zu sockets, queues %zu: %s\n", n, qs[qi], res.err);
				return 1;
			}
			printf("| %7zu | %4zu B   | %6.2f (%6.2f) | %7.2f (%6.2f) | %13.2f | %16.2f |\n", n, qs[qi],
			       median(sv, runs), median(sc, runs), median(rv, runs), median(rcpu, runs),
			       (double)counts[PH_SAVE] / (double)n,
			       (double)(counts[PH_RESTORE] + counts[PH_RESUME]) / (double)n);
		}
	}
	printf("\nevery restored connection delivered both queues and 4 bytes each way\n");
	return 0;
}
