/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The process handle: the pid checks, the fd inventory (every kind of fd a
 * process may hold, classified by reading the kernel), and the invisible stop.
 * Runs in a network namespace of its own (loopback only).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sockmig/proc.h"
#include "sockmig/sockmig.h"

static void lo_up(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, SIOCGIFFLAGS, &ifr), 0);
	ifr.ifr_flags |= IFF_UP;
	assert_int_equal(ioctl(fd, SIOCSIFFLAGS, &ifr), 0);
	close(fd);
}

static int group_setup(void **state)
{
	(void)state;
	if (unshare(CLONE_NEWNET) < 0)
		return -1;
	lo_up();
	return 0;
}

static pid_t spawn_pausing(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assert must not leak it */
		for (;;)
			pause();
	}
	return pid;
}

static void reap(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void test_open_nonexistent(void **state)
{
	struct sockmig_proc *p = NULL;
	pid_t pid = fork();
	char want[64];

	(void)state;
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0); /* reaped: the pid is free now */
	assert_int_equal(sockmig_proc_open(pid, &p), -ESRCH);
	assert_null(p);
	snprintf(want, sizeof(want), "pid %d does not exist", (int)pid);
	assert_string_equal(sockmig_error(), want);
}

static void test_open_refuses(void **state)
{
	struct sockmig_proc *p = NULL;
	char buf[512];
	FILE *f;

	(void)state;
	assert_int_equal(sockmig_proc_open(getpid(), &p), -EINVAL);
	assert_non_null(strstr(sockmig_error(), "is sockmig itself"));
	assert_int_equal(sockmig_proc_open(-3, &p), -EINVAL);

	/* pid 2 is kthreadd in the initial pid namespace */
	f = fopen("/proc/2/stat", "re");
	if (f && fgets(buf, sizeof(buf), f) && strstr(buf, "(kthreadd)")) {
		assert_int_equal(sockmig_proc_open(2, &p), -EPERM);
		assert_non_null(strstr(sockmig_error(), "kernel thread"));
	}
	if (f)
		fclose(f);
	assert_null(p);
}

/* The child builds one fd of each kind at known numbers, then waits. */
enum { FD_TCP_LISTEN = 40, FD_TCP_CONN, FD_TCP_ACCEPTED, FD_UDP, FD_UNIX, FD_NETLINK, FD_RAW, FD_PIPE, FD_FILE };

static void child_make_fds(int ready_fd)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int sv[2], pfd[2];

	if (dup2(socket(AF_INET, SOCK_STREAM, 0), FD_TCP_LISTEN) < 0 ||
	    bind(FD_TCP_LISTEN, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(FD_TCP_LISTEN, 4) < 0 ||
	    getsockname(FD_TCP_LISTEN, (struct sockaddr *)&a, &alen) < 0)
		_exit(10);
	if (dup2(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), FD_TCP_CONN) < 0)
		_exit(11);
	connect(FD_TCP_CONN, (struct sockaddr *)&a, sizeof(a)); /* EINPROGRESS on loopback is fine */
	if (dup2(accept(FD_TCP_LISTEN, NULL, NULL), FD_TCP_ACCEPTED) < 0)
		_exit(12);
	if (dup2(socket(AF_INET6, SOCK_DGRAM, 0), FD_UDP) < 0)
		_exit(13);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || dup2(sv[0], FD_UNIX) < 0)
		_exit(14);
	if (dup2(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), FD_NETLINK) < 0)
		_exit(15);
	if (dup2(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), FD_RAW) < 0)
		_exit(16);
	if (pipe(pfd) < 0 || dup2(pfd[0], FD_PIPE) < 0)
		_exit(17);
	if (dup2(open("/dev/null", O_RDWR | O_APPEND), FD_FILE) < 0)
		_exit(18);
	if (write(ready_fd, "r", 1) != 1)
		_exit(19);
	for (;;)
		pause();
}

static void test_fd_inventory(void **state)
{
	static const struct {
		int fd;
		enum sockmig_fd_kind kind;
		int tcp_state;
	} want[] = {
		{ FD_TCP_LISTEN, SOCKMIG_FD_TCP, TCP_LISTEN },
		{ FD_TCP_CONN, SOCKMIG_FD_TCP, TCP_ESTABLISHED },
		{ FD_TCP_ACCEPTED, SOCKMIG_FD_TCP, TCP_ESTABLISHED },
		{ FD_UDP, SOCKMIG_FD_UDP, -1 },
		{ FD_UNIX, SOCKMIG_FD_UNIX, -1 },
		{ FD_NETLINK, SOCKMIG_FD_NETLINK, -1 },
		{ FD_RAW, SOCKMIG_FD_RAW, -1 },
		{ FD_PIPE, SOCKMIG_FD_NOT_SOCKET, -1 },
		{ FD_FILE, SOCKMIG_FD_NOT_SOCKET, -1 },
	};
	struct sockmig_proc *p = NULL;
	int ready[2], *fds = NULL;
	size_t n = 0, found = 0;
	pid_t pid;
	char c;

	(void)state;
	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	pid = fork();
	if (pid == 0)
		child_make_fds(ready[1]);
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_proc_fd_list(p, &fds, &n), 0);
	for (size_t i = 1; i < n; i++)
		assert_true(fds[i - 1] < fds[i]);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct sockmig_fd_info info;
		int local = -1;

		for (size_t j = 0; j < n; j++)
			found += fds[j] == want[i].fd;
		assert_int_equal(sockmig_proc_fd_get(p, want[i].fd, &local), 0);
		assert_true(fcntl(local, F_GETFD) & FD_CLOEXEC);
		assert_int_equal(sockmig_fd_describe(local, want[i].fd, &info), 0);
		assert_int_equal(info.fd, want[i].fd);
		assert_int_equal(info.kind, want[i].kind);
		assert_int_equal(info.tcp_state, want[i].tcp_state);
		close(local);
	}
	assert_int_equal(found, sizeof(want) / sizeof(want[0]));

	/* the status flags of the process's own file description */
	{
		struct sockmig_fd_info info;
		int local;

		assert_int_equal(sockmig_proc_fd_get(p, FD_TCP_CONN, &local), 0);
		assert_int_equal(sockmig_fd_describe(local, FD_TCP_CONN, &info), 0);
		assert_true(info.status_flags & O_NONBLOCK);
		close(local);
		assert_int_equal(sockmig_proc_fd_get(p, FD_FILE, &local), 0);
		assert_int_equal(sockmig_fd_describe(local, FD_FILE, &info), 0);
		assert_true(info.status_flags & O_APPEND);
		close(local);
	}

	/* an fd the process does not have */
	{
		int local = -1;
		char msg[64];

		assert_int_equal(sockmig_proc_fd_get(p, 977, &local), -EBADF);
		snprintf(msg, sizeof(msg), "pid %d has no fd 977", (int)pid);
		assert_string_equal(sockmig_error(), msg);
		assert_int_equal(local, -1);
	}
	free(fds);
	sockmig_proc_free(p);
	reap(pid);
}

static char proc_state(pid_t pid)
{
	char path[64], buf[512], st = '?';
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f && fgets(buf, sizeof(buf), f)) {
		char *q = strrchr(buf, ')');
		if (q)
			st = q[2];
	}
	if (f)
		fclose(f);
	return st;
}

static void test_stop_resume(void **state)
{
	volatile uint64_t *counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct sockmig_proc *p = NULL;
	uint64_t before, after;
	pid_t pid;

	(void)state;
	assert_true(counter != MAP_FAILED);
	pid = fork();
	if (pid == 0) {
		for (;;)
			(*counter)++;
	}
	while (*counter == 0) /* bounded by the test's timeout */
		sched_yield();

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_proc_stop(p), 0);
	assert_int_equal(proc_state(pid), 't'); /* the kernel says: tracing stop */
	before = *counter;
	for (int i = 0; i < 1000; i++)
		sched_yield();
	assert_true(*counter == before);

	assert_int_equal(sockmig_proc_resume(p), 0);
	after = *counter;
	for (int i = 0; i < 1000000 && *counter == after; i++)
		sched_yield();
	assert_true(*counter > after);
	assert_true(proc_state(pid) == 'R' || proc_state(pid) == 'S');

	/* a SIGUSR1 sent while stopped is delivered after resume, not lost */
	assert_int_equal(sockmig_proc_stop(p), 0);
	kill(pid, SIGUSR1);
	assert_int_equal(sockmig_proc_resume(p), 0);
	{
		int status;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGUSR1);
	}
	sockmig_proc_free(p);
	munmap((void *)counter, 4096);
}

static volatile uint64_t *thread_counters;

static void *count_forever(void *arg)
{
	volatile uint64_t *c = &thread_counters[(uintptr_t)arg];

	for (;;)
		(*c)++;
	return NULL;
}

/* Every thread is stopped, not just the main one. */
static void test_stop_all_threads(void **state)
{
	enum { N = 4 };
	uint64_t snap[N];
	struct sockmig_proc *p = NULL;
	pid_t pid;

	(void)state;
	thread_counters = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(thread_counters != MAP_FAILED);
	pid = fork();
	if (pid == 0) {
		pthread_t th;

		for (uintptr_t i = 1; i < N; i++)
			if (pthread_create(&th, NULL, count_forever, (void *)i) != 0)
				_exit(1);
		count_forever((void *)0);
	}
	for (int i = 0; i < N; i++)
		while (thread_counters[i] == 0) /* bounded by the test's timeout */
			sched_yield();

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_proc_stop(p), 0);
	for (int i = 0; i < N; i++)
		snap[i] = thread_counters[i];
	for (int i = 0; i < 1000; i++)
		sched_yield();
	for (int i = 0; i < N; i++)
		assert_true(thread_counters[i] == snap[i]);
	assert_int_equal(sockmig_proc_resume(p), 0);
	for (int i = 0; i < N; i++) {
		for (int k = 0; k < 1000000 && thread_counters[i] == snap[i]; k++)
			sched_yield();
		assert_true(thread_counters[i] > snap[i]);
	}
	sockmig_proc_free(p);
	reap(pid);
	munmap((void *)thread_counters, 4096);
}

static void test_free_resumes(void **state)
{
	struct sockmig_proc *p = NULL;
	pid_t pid = spawn_pausing();

	(void)state;
	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_proc_stop(p), 0);
	assert_int_equal(proc_state(pid), 't');
	sockmig_proc_free(p);
	/* running again: back to pause() (S), or on its way there (R); the
	 * detach wakes it, which may take a moment to show (bounded) */
	for (int k = 0; k < 1000000 && proc_state(pid) == 't'; k++)
		sched_yield();
	assert_true(proc_state(pid) == 'S' || proc_state(pid) == 'R');
	reap(pid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_nonexistent),
		cmocka_unit_test(test_open_refuses),
		cmocka_unit_test(test_fd_inventory),
		cmocka_unit_test(test_stop_resume),
		cmocka_unit_test(test_stop_all_threads),
		cmocka_unit_test(test_free_resumes),
	};

	return cmocka_run_group_tests_name("proc", tests, group_setup, NULL);
}
