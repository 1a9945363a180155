/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ZDTM-style test program for the per-process state (docs/ckpt-task.md).
 *
 *   ckpt_signals [DIR]           build the state, cwd DIR (else a new temp
 *                                dir), print "ready pid=N", wait for SIGUSR1,
 *                                then check everything and print "pass" or
 *                                "fail: <what>"; exit 0 on pass
 *   ckpt_signals --seccomp       the same under an allow-all seccomp filter
 *                                (which a checkpoint must refuse)
 *
 * The state: handlers with distinct flags and masks (SA_SIGINFO, SA_RESTART,
 * SA_ONSTACK with an altstack, SA_NODEFER, SA_RESETHAND), SIG_IGN for one,
 * SIG_DFL with SA_NOCLDSTOP for SIGCHLD; blocked signals pending: a kill() to
 * itself, an rt signal queued twice with values, a thread-directed rt signal
 * with a value, a thread-directed SIGWINCH (default-ignored, kept because
 * blocked); ITIMER_REAL far in the future; POSIX timers with ids 2 (armed,
 * with an interval) and 3 (SIGEV_NONE, disarmed); RLIMIT_NOFILE soft 300;
 * umask 027; personality ADDR_NO_RANDOMIZE flipped.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

static char fail_what[16384];
static uint8_t altstack[65536] __attribute__((aligned(16)));
static pid_t orig_pid;
static timer_t tm_armed, tm_none;
static unsigned orig_pers;
static char dir[4096];

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond) && !fail_what[0])                                             \
			snprintf(fail_what, sizeof(fail_what), __VA_ARGS__);              \
	} while (0)

static void h_info(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
}

static void h_plain(int sig)
{
	(void)sig;
}

struct want_act {
	int sig;
	void *handler;
	int flags;
	int mask[3]; /* 0-terminated */
};

static struct want_act wants[6];

static void set_act(int i, int sig, void *handler, int flags, int m0, int m1)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	wants[i] = (struct want_act){ sig, handler, flags, { m0, m1, 0 } };
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))handler;
	else
		sa.sa_handler = (void (*)(int))handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	if (m0)
		sigaddset(&sa.sa_mask, m0);
	if (m1)
		sigaddset(&sa.sa_mask, m1);
	if (sigaction(sig, &sa, NULL) < 0) {
		perror("sigaction");
		exit(2);
	}
}

static void check_acts(void)
{
	for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
		const struct want_act *w = &wants[i];
		struct sigaction sa;

		sigaction(w->sig, NULL, &sa);
		CHECK((void *)sa.sa_handler == w->handler, "signal %d: handler %p, expected %p", w->sig,
		      (void *)sa.sa_handler, w->handler);
		CHECK((sa.sa_flags & ~SA_RESTORER) == w->flags, "signal %d: flags %#x, expected %#x", w->sig,
		      sa.sa_flags & ~SA_RESTORER, w->flags);
		for (int s = 1; s <= 64; s++) {
			int want = 0;

			for (int k = 0; w->mask[k]; k++)
				want |= w->mask[k] == s;
			/* SA_NODEFER aside, the kernel adds nothing to sa_mask */
			CHECK(sigismember(&sa.sa_mask, s) == want, "signal %d: mask bit %d is %d", w->sig, s,
			      sigismember(&sa.sa_mask, s));
		}
	}
}

/* Take one pending signal (all are blocked) and check its siginfo. */
static void take(int sig, int code, int value, pid_t from)
{
	struct timespec zero = { 0, 0 };
	sigset_t one;
	siginfo_t si;
	int got;

	sigemptyset(&one);
	sigaddset(&one, sig);
	got = sigtimedwait(&one, &si, &zero);
	CHECK(got == sig, "signal %d is not pending (%s)", sig, got < 0 ? strerror(errno) : "other");
	if (got != sig)
		return;
	/* tgkill gives SI_TKILL or SI_USER depending on the kernel version */
	CHECK(si.si_code == code || (code == SI_TKILL && si.si_code == SI_USER), "signal %d: si_code %d, expected %d",
	      sig, si.si_code, code);
	if (code == SI_QUEUE)
		CHECK(si.si_value.sival_int == value, "signal %d: value %d, expected %d (order lost?)", sig,
		      si.si_value.sival_int, value);
	CHECK(si.si_pid == from, "signal %d: from pid %d, expected %d", sig, (int)si.si_pid, (int)from);
}

/* /proc/self/timers: the timer's id, signal, value, notification, clock */
static void check_proc_timer(const char *buf, timer_t tm, const char *notify, int clock)
{
	char want[256], clk[64];
	const char *p, *q;

	/* (the pid after "pid." is in /proc's pid namespace, which need not
	 * be ours after a restore) */
	snprintf(want, sizeof(want), "ID: %ld\nsignal: %d/%016x\nnotify: %s/pid.", (long)(intptr_t)tm,
		 SIGRTMIN + 4, 77, notify);
	snprintf(clk, sizeof(clk), "ClockID: %d\n", clock);
	p = strstr(buf, want);
	q = p ? strchr(p + strlen(want), '\n') : NULL;
	CHECK(q && !strncmp(q + 1, clk, strlen(clk)), "/proc/self/timers lacks \"%s...%s\": %s", want, clk, buf);
}

static void check_proc_timers(void)
{
	char buf[4096], want[32];
	FILE *f = fopen("/proc/self/timers", "re");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

	if (f)
		fclose(f);
	buf[n] = 0;
	check_proc_timer(buf, tm_armed, "signal", CLOCK_MONOTONIC);
	check_proc_timer(buf, tm_none, "none", CLOCK_REALTIME);
	for (int id = 0; id < 2; id++) {
		snprintf(want, sizeof(want), "ID: %d\n", id);
		CHECK(strncmp(buf, want, strlen(want)) && !strstr(buf, (snprintf(want, sizeof(want), "\nID: %d\n", id), want)),
		      "deleted timer %d is back: %s", id, buf);
	}
}

static void check_all(void)
{
	struct itimerval itv;
	struct itimerspec its;
	struct rlimit rl;
	stack_t ss;
	sigset_t pend;
	char cwd[4096];
	mode_t um;
	unsigned pers;
	int expect[] = { SIGTERM, SIGWINCH, SIGRTMIN + 3, SIGRTMIN + 6 };

	sigset_t blocked;

	check_acts();
	sigprocmask(SIG_BLOCK, NULL, &blocked);
	for (int s = 1; s <= 64; s++) {
		int want = s == SIGUSR1 || s == SIGTERM || s == SIGWINCH || s == SIGRTMIN + 3 || s == SIGRTMIN + 6;

		CHECK(sigismember(&blocked, s) == want, "signal %d blocked: %d, expected %d", s,
		      sigismember(&blocked, s), want);
	}
	check_proc_timers();
	CHECK(sigaltstack(NULL, &ss) == 0 && ss.ss_sp == altstack && ss.ss_size == sizeof(altstack) &&
		      ss.ss_flags == 0,
	      "sigaltstack %p/%zu/%#x, expected %p/%zu/0", ss.ss_sp, ss.ss_size, ss.ss_flags, (void *)altstack,
	      sizeof(altstack));

	/* the pending set, exactly */
	sigpending(&pend);
	for (int s = 1; s <= 64; s++) {
		int want = 0;

		for (size_t k = 0; k < sizeof(expect) / sizeof(expect[0]); k++)
			want |= expect[k] == s;
		CHECK(sigismember(&pend, s) == want, "signal %d pending: %d, expected %d", s, sigismember(&pend, s),
		      want);
	}
	take(SIGTERM, SI_USER, 0, orig_pid);
	take(SIGWINCH, SI_TKILL, 0, orig_pid);
	take(SIGRTMIN + 3, SI_QUEUE, 11, orig_pid);
	take(SIGRTMIN + 3, SI_QUEUE, 22, orig_pid);
	take(SIGRTMIN + 6, SI_QUEUE, 33, orig_pid);
	sigpending(&pend);
	CHECK(!sigismember(&pend, SIGRTMIN + 3), "a third SIGRTMIN+3 is pending");

	CHECK(getitimer(ITIMER_REAL, &itv) == 0 && itv.it_value.tv_sec > 900 && itv.it_value.tv_sec <= 1000 &&
		      itv.it_interval.tv_sec == 0,
	      "ITIMER_REAL has %ld s left (interval %ld), expected 900..1000", (long)itv.it_value.tv_sec,
	      (long)itv.it_interval.tv_sec);
	CHECK(timer_gettime(tm_armed, &its) == 0 && its.it_value.tv_sec > 1900 && its.it_value.tv_sec <= 2000 &&
		      its.it_interval.tv_sec == 5 && its.it_interval.tv_nsec == 0,
	      "POSIX timer %ld: %ld s left, interval %ld s (%s)", (long)(intptr_t)tm_armed, (long)its.it_value.tv_sec,
	      (long)its.it_interval.tv_sec, strerror(errno));
	CHECK(timer_gettime(tm_none, &its) == 0 && its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0,
	      "POSIX timer %ld: not disarmed or gone (%s)", (long)(intptr_t)tm_none, strerror(errno));

	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur == 300, "RLIMIT_NOFILE is %llu, expected 300",
	      (unsigned long long)rl.rlim_cur);
	um = umask(0);
	umask(um);
	CHECK(um == 027, "umask %03o, expected 027", (unsigned)um);
	CHECK(getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, dir), "cwd %s, expected %s", cwd, dir);
	pers = (unsigned)personality(0xffffffff);
	CHECK((pers & ADDR_NO_RANDOMIZE) != (orig_pers & ADDR_NO_RANDOMIZE), "personality %#x, expected %#x", pers,
	      orig_pers ^ ADDR_NO_RANDOMIZE);
}

static void allow_all_seccomp(void)
{
	struct sock_filter f[] = { BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW) };
	struct sock_fprog prog = { 1, f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0) {
		perror("seccomp");
		exit(2);
	}
}

int main(int argc, char *argv[])
{
	struct itimerval itv = { { 0, 0 }, { 1000, 0 } };
	struct itimerspec its = { { 5, 0 }, { 2000, 0 } };
	struct sigevent sev;
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	struct rlimit rl;
	sigset_t block, wait_set;
	timer_t tmp[2];
	siginfo_t si;
	int got = -1;

	orig_pid = getpid();
	/* only fds 0..2, whatever the caller leaked into us */
	syscall(SYS_close_range, 3, ~0u, 0);
	if (argc > 1 && !strcmp(argv[1], "--seccomp")) {
		allow_all_seccomp();
		argc--;
		argv++;
	}
	if (argc > 1)
		snprintf(dir, sizeof(dir), "%s", argv[1]);
	else if (!mkdtemp(strcpy(dir, "/tmp/ckpt_signals.XXXXXX"))) {
		perror("mkdtemp");
		return 2;
	}
	if (chdir(dir) < 0 || !getcwd(dir, sizeof(dir))) {
		perror("chdir");
		return 2;
	}

	/* everything the checks expect is blocked first: nothing is delivered */
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGWINCH);
	sigaddset(&block, SIGRTMIN + 3);
	sigaddset(&block, SIGRTMIN + 6);
	sigprocmask(SIG_BLOCK, &block, NULL);

	if (sigaltstack(&ss, NULL) < 0) {
		perror("sigaltstack");
		return 2;
	}
	set_act(0, SIGUSR2, (void *)h_info, SA_SIGINFO | SA_RESTART, SIGINT, 0);
	set_act(1, SIGHUP, (void *)h_plain, SA_ONSTACK | SA_NODEFER, SIGQUIT, SIGRTMIN + 5);
	set_act(2, SIGRTMIN + 2, (void *)h_info, SA_SIGINFO | SA_ONSTACK | SA_RESETHAND, 0, 0);
	set_act(3, SIGPIPE, (void *)SIG_IGN, 0, 0, 0);
	set_act(4, SIGCHLD, (void *)SIG_DFL, SA_NOCLDSTOP, 0, 0);
	set_act(5, SIGRTMIN + 6, (void *)h_info, SA_SIGINFO | SA_RESTART, SIGRTMIN + 7, SIGUSR2);

	/* pending: process-wide and thread-directed, in a known order */
	kill(getpid(), SIGTERM);
	sigqueue(getpid(), SIGRTMIN + 3, (union sigval){ .sival_int = 11 });
	sigqueue(getpid(), SIGRTMIN + 3, (union sigval){ .sival_int = 22 });
	syscall(SYS_tgkill, getpid(), gettid(), SIGWINCH);
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGRTMIN + 6;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = 33;
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), SIGRTMIN + 6, &si) < 0) {
		perror("rt_tgsigqueueinfo");
		return 2;
	}

	if (setitimer(ITIMER_REAL, &itv, NULL) < 0) {
		perror("setitimer");
		return 2;
	}
	/* ids 0 and 1 made and deleted: the armed timer is id 2, with a gap */
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 4;
	sev.sigev_value.sival_int = 77;
	for (int i = 0; i < 2; i++)
		if (timer_create(CLOCK_MONOTONIC, &sev, &tmp[i]) < 0) {
			perror("timer_create");
			return 2;
		}
	if (timer_create(CLOCK_MONOTONIC, &sev, &tm_armed) < 0 || timer_settime(tm_armed, 0, &its, NULL) < 0) {
		perror("timer");
		return 2;
	}
	sev.sigev_notify = SIGEV_NONE;
	if (timer_create(CLOCK_REALTIME, &sev, &tm_none) < 0) {
		perror("timer_create");
		return 2;
	}
	timer_delete(tmp[0]);
	timer_delete(tmp[1]);

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = 300;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
		perror("setrlimit");
		return 2;
	}
	umask(027);
	orig_pers = (unsigned)personality(0xffffffff);
	personality(orig_pers ^ ADDR_NO_RANDOMIZE);

	/* the state as built must pass, or the test proves nothing */
	check_acts();
	if (fail_what[0]) {
		printf("fail: before the checkpoint: %s\n", fail_what);
		return 1;
	}
	printf("ready pid=%d timer=%ld\n", (int)orig_pid, (long)(intptr_t)tm_armed);
	fflush(stdout);

	/* sigwaitinfo fails with EINTR when a ptrace stop interrupts it */
	sigemptyset(&wait_set);
	sigaddset(&wait_set, SIGUSR1);
	for (int i = 0; i < 1000 && got != SIGUSR1; i++)
		got = sigwaitinfo(&wait_set, &si);
	if (got != SIGUSR1) {
		printf("fail: sigwaitinfo: %s\n", strerror(errno));
		return 1;
	}
	check_all();
	if (fail_what[0]) {
		printf("fail: %s\n", fail_what);
		return 1;
	}
	printf("pass\n");
	return 0;
}
