/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The per-process state (ckpt_task.c) and the syscall injection under it
 * (ckpt_inject.c):
 *
 *  - sections: a model with every field set encodes and decodes to the same
 *    values; damaged payloads of every type are refused with -EBADMSG;
 *  - injection: on a forked child stopped inside read() (rax = -ERESTARTSYS)
 *    or in user code, getpid run inside it gives its pid, the scratch memory
 *    works, and afterwards its registers, xstate and /proc/PID/maps are what
 *    they were, and its read() restarts and gets the byte we then send;
 *  - a child found in a signal-delivery stop goes back to that stop, same
 *    siginfo; a signal that arrives while stopped is held during the
 *    injection and queued again; both are then delivered to its handler;
 *  - collect on a child with known handlers, altstack, timers, pending
 *    signals, umask, cwd, rlimit and personality reads back exactly those.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sockmig/proc.h"
#include "sockmig/sockmig.h"
#include "ckpt_inject.h"
#include "ckpt_task.h"
#include "image.h"

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif
#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif

/* ---- sections ---- */

static struct ckpt_task *sample_task(void)
{
	struct ckpt_task *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	for (int i = 0; i < CKPT_TASK_NSIG; i++)
		if (i + 1 != SIGKILL && i + 1 != SIGSTOP)
			t->act[i] = (struct ckpt_sigact){ 0x401000 + i, 0x14000000u | (unsigned)i, 0x402000, 1ull << i };
	t->altstack = (struct ckpt_altstack){ 0x7f0000001000, 65536, 0 };
	t->itimer[0] = (struct ckpt_itimer){ 1, 2, 3, 4 };
	t->itimer[2] = (struct ckpt_itimer){ 0, 999999, 5, 0 };
	t->n_timers = 2;
	t->timers = calloc(2, sizeof(*t->timers));
	assert_non_null(t->timers);
	t->timers[0] = (struct ckpt_ptimer){ 3, CLOCK_MONOTONIC, CKPT_TIMER_SIGNAL, 36, 0xdeadbeef, 1, 2, 3, 4 };
	t->timers[1] = (struct ckpt_ptimer){ 1000, -6, CKPT_TIMER_NONE, 14, 7, 0, 0, 9, 999999999 };
	t->tid = 4242;
	t->thread.n = 1;
	t->thread.info = calloc(1, sizeof(*t->thread.info));
	t->shared.n = 2;
	t->shared.info = calloc(2, sizeof(*t->shared.info));
	assert_true(t->thread.info && t->shared.info);
	t->thread.info[0].b[0] = SIGUSR1;
	t->shared.info[0].b[0] = SIGRTMIN + 1;
	t->shared.info[0].b[40] = 11;
	t->shared.info[1].b[0] = SIGRTMIN + 1;
	t->shared.info[1].b[40] = 22;
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++) {
		t->rlim[i][0] = 100 + i;
		t->rlim[i][1] = i == 3 ? RLIM_INFINITY : 200 + (uint64_t)i;
	}
	t->umask = 027;
	t->personality = ADDR_NO_RANDOMIZE;
	t->flags = CKPT_TASK_NO_NEW_PRIVS;
	snprintf(t->cwd, sizeof(t->cwd), "/tmp/some dir");
	t->creds = (struct ckpt_creds){ { 1, 2, 3, 4 }, { 5, 6, 7, 8 }, 3, { 10, 20, 30 } };
	t->have = CKPT_TASK_HAVE_ALL;
	return t;
}

/* Write t as sections into a memfd and read them back the way a restore
 * does: every section owned by ckpt_task goes to read_section. */
static int roundtrip(const struct ckpt_task *t, struct ckpt_task **ret)
{
	struct sm_image_writer *w;
	struct sm_image_reader *r;
	int fd = memfd_create("task", MFD_CLOEXEC), err = 0;

	assert_true(fd >= 0);
	assert_int_equal(sm_image_writer_new(fd, SM_IMAGE_KIND_PROCESS, &w), 0);
	assert_int_equal(ckpt_task_write(w, t), 0);
	assert_int_equal(sm_image_writer_finish(w), 0);
	sm_image_writer_free(w);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sm_image_reader_new_fd(fd, &r), 0);
	*ret = NULL;
	for (;;) {
		const uint8_t *data;
		struct sm_cursor c;
		uint64_t off;
		uint16_t type;
		size_t len;
		int n = sm_image_next_section(r, &type, &data, &len, &off);

		assert_true(n >= 0);
		if (n == 0)
			break;
		assert_true(ckpt_task_owns(type));
		sm_cursor_init(&c, data, len, off);
		err = ckpt_task_read_section(ret, type, &c);
		if (err < 0)
			break;
	}
	sm_image_reader_free(r);
	close(fd);
	return err < 0 ? err : ckpt_task_validate(*ret);
}

static void test_roundtrip(void **state)
{
	struct ckpt_task *t = sample_task(), *u = NULL;
	(void)state;

	assert_int_equal(roundtrip(t, &u), 0);
	assert_non_null(u);
	assert_int_equal(u->have, CKPT_TASK_HAVE_ALL);
	assert_memory_equal(u->act, t->act, sizeof(t->act));
	assert_memory_equal(&u->altstack, &t->altstack, sizeof(t->altstack));
	assert_memory_equal(u->itimer, t->itimer, sizeof(t->itimer));
	assert_int_equal(u->n_timers, 2);
	assert_memory_equal(u->timers, t->timers, 2 * sizeof(*t->timers));
	assert_int_equal(u->tid, 4242);
	assert_int_equal(u->thread.n, 1);
	assert_int_equal(u->shared.n, 2);
	assert_memory_equal(u->thread.info, t->thread.info, sizeof(*t->thread.info));
	assert_memory_equal(u->shared.info, t->shared.info, 2 * sizeof(*t->shared.info));
	assert_memory_equal(u->rlim, t->rlim, sizeof(t->rlim));
	assert_int_equal(u->umask, 027);
	assert_int_equal(u->personality, ADDR_NO_RANDOMIZE);
	assert_int_equal(u->flags, CKPT_TASK_NO_NEW_PRIVS);
	assert_string_equal(u->cwd, "/tmp/some dir");
	assert_memory_equal(ckpt_task_creds(u), &t->creds, sizeof(t->creds));
	ckpt_task_free(t);
	ckpt_task_free(u);
}

static void test_missing_section(void **state)
{
	struct ckpt_task *t = sample_task(), *u = NULL;
	(void)state;

	t->have &= ~CKPT_TASK_HAVE_ITIMERS;
	assert_int_equal(roundtrip(t, &u), -EBADMSG);
	assert_non_null(strstr(sockmig_error(), "interval timers"));
	assert_null(ckpt_task_creds(NULL));
	assert_int_equal(ckpt_task_validate(NULL), 0);
	ckpt_task_free(t);
	ckpt_task_free(u);
}

/* Little-endian payload builder for the damaged sections. */
struct pl {
	uint8_t b[8192];
	size_t n;
};

static void p32(struct pl *p, uint32_t v)
{
	memcpy(p->b + p->n, &v, 4);
	p->n += 4;
}

static void p64(struct pl *p, uint64_t v)
{
	memcpy(p->b + p->n, &v, 8);
	p->n += 8;
}

static int feed(struct ckpt_task **t, uint32_t type, const struct pl *p)
{
	struct sm_cursor c;

	sm_cursor_init(&c, p->b, p->n, 1000);
	return ckpt_task_read_section(t, type, &c);
}

/* One damaged payload of `type`: refused, with a sentence. */
static void refused(uint32_t type, const struct pl *p, const char *why)
{
	struct ckpt_task *t = NULL;
	int r;

	sockmig_error_clear();
	r = feed(&t, type, p);
	if (r != -EBADMSG)
		fail_msg("%s: got %d", why, r);
	assert_true(strlen(sockmig_error()) > 0);
	ckpt_task_free(t);
}

static void sigacts(struct pl *p, uint32_t n, int kill_handler)
{
	p->n = 0;
	p32(p, n);
	for (int i = 0; i < CKPT_TASK_NSIG; i++) {
		p64(p, i + 1 == SIGKILL ? (uint64_t)kill_handler : 0);
		p64(p, 0);
		p64(p, 0);
		p64(p, 0);
	}
}

static void timer(struct pl *p, int32_t id, int32_t clock, uint32_t notify, uint32_t signo, uint64_t nsec)
{
	p32(p, (uint32_t)id);
	p32(p, (uint32_t)clock);
	p32(p, notify);
	p32(p, signo);
	p64(p, 0);
	p64(p, 0);
	p64(p, 0);
	p64(p, 1);
	p64(p, nsec);
}

static void proc_section(struct pl *p, uint32_t umask_v, uint32_t flags, const char *cwd, size_t cwd_len)
{
	p->n = 0;
	p32(p, umask_v);
	p32(p, 0);
	p32(p, flags);
	p32(p, (uint32_t)cwd_len);
	memcpy(p->b + p->n, cwd, cwd_len);
	p->n += cwd_len;
}

static void test_corrupt(void **state)
{
	struct pl p;
	struct ckpt_task *t = NULL;
	(void)state;

	/* sanity: the good forms are taken */
	sigacts(&p, 64, 0);
	assert_int_equal(feed(&t, CKPT_SEC_TASK_SIGACTS, &p), 0);
	assert_int_equal(feed(&t, CKPT_SEC_TASK_SIGACTS, &p), -EBADMSG); /* not twice */
	ckpt_task_free(t);
	t = NULL;

	sigacts(&p, 63, 0);
	refused(CKPT_SEC_TASK_SIGACTS, &p, "63 signals");
	sigacts(&p, 64, 1);
	refused(CKPT_SEC_TASK_SIGACTS, &p, "SIGKILL handler");
	sigacts(&p, 64, 0);
	p.n -= 1;
	refused(CKPT_SEC_TASK_SIGACTS, &p, "truncated SIGACTS");
	sigacts(&p, 64, 0);
	p32(&p, 0);
	refused(CKPT_SEC_TASK_SIGACTS, &p, "trailing bytes");

	p.n = 0;
	p64(&p, 0x1000);
	p64(&p, 4096);
	p32(&p, 0x10);
	refused(CKPT_SEC_TASK_ALTSTACK, &p, "altstack flags");
	p.n = 0;
	p64(&p, 0x1000);
	p64(&p, 0);
	p32(&p, 0);
	refused(CKPT_SEC_TASK_ALTSTACK, &p, "empty altstack");
	p.n = 0;
	p64(&p, UINT64_MAX - 10);
	p64(&p, 4096);
	p32(&p, 0);
	refused(CKPT_SEC_TASK_ALTSTACK, &p, "altstack wraps");

	p.n = 0;
	p32(&p, 1);
	p32(&p, CKPT_TASK_MAX_PENDING + 1);
	refused(CKPT_SEC_TASK_PENDING, &p, "too many pending");
	p.n = 0;
	p32(&p, 1);
	p32(&p, 2);
	memset(p.b + p.n, 0, 128);
	p.b[p.n] = SIGUSR1;
	p.n += 128;
	refused(CKPT_SEC_TASK_PENDING, &p, "count beyond the bytes");
	p.n = 0;
	p32(&p, 0);
	p32(&p, 1);
	memset(p.b + p.n, 0, 128);
	p.n += 128;
	refused(CKPT_SEC_TASK_PENDING, &p, "signal 0");
	p.b[8] = SIGKILL;
	refused(CKPT_SEC_TASK_PENDING, &p, "SIGKILL pending");
	p.b[8] = 65;
	refused(CKPT_SEC_TASK_PENDING, &p, "signal 65");
	p.b[8] = SIGUSR2;
	assert_int_equal(feed(&t, CKPT_SEC_TASK_PENDING, &p), 0);
	assert_int_equal(feed(&t, CKPT_SEC_TASK_PENDING, &p), -EBADMSG); /* second shared queue */
	p.b[0] = 7;
	assert_int_equal(feed(&t, CKPT_SEC_TASK_PENDING, &p), 0);
	p.b[0] = 8;
	assert_int_equal(feed(&t, CKPT_SEC_TASK_PENDING, &p), -EBADMSG); /* second thread */
	ckpt_task_free(t);
	t = NULL;

	p.n = 0;
	for (int i = 0; i < 12; i++)
		p64(&p, i == 5 ? 1000000 : 1);
	refused(CKPT_SEC_TASK_ITIMERS, &p, "usec 1e6");
	p.n = 0;
	for (int i = 0; i < 12; i++)
		p64(&p, i == 2 ? UINT64_MAX : 1);
	refused(CKPT_SEC_TASK_ITIMERS, &p, "negative seconds");

	p.n = 0;
	p32(&p, 2);
	timer(&p, 5, CLOCK_MONOTONIC, 0, 14, 0);
	timer(&p, 5, CLOCK_MONOTONIC, 0, 14, 0);
	refused(CKPT_SEC_TASK_TIMERS, &p, "duplicate timer ids");
	p.n = 0;
	p32(&p, 1);
	timer(&p, 1, CLOCK_MONOTONIC_RAW, 0, 14, 0);
	refused(CKPT_SEC_TASK_TIMERS, &p, "monotonic raw clock");
	p.n = 0;
	p32(&p, 1);
	timer(&p, 1, -48550, 0, 14, 0); /* another pid's CPU clock */
	refused(CKPT_SEC_TASK_TIMERS, &p, "foreign CPU clock");
	p.n = 0;
	p32(&p, 1);
	timer(&p, 1, -5, 0, 14, 0); /* ~0 << 3 | 3: a clock fd */
	refused(CKPT_SEC_TASK_TIMERS, &p, "clock fd");
	p.n = 0;
	p32(&p, 1);
	timer(&p, 1, CLOCK_REALTIME, 4, 14, 0);
	refused(CKPT_SEC_TASK_TIMERS, &p, "SIGEV_THREAD_ID");
	p.n = 0;
	p32(&p, 1);
	timer(&p, 1, CLOCK_REALTIME, 0, 0, 0);
	refused(CKPT_SEC_TASK_TIMERS, &p, "signal 0");
	p.n = 0;
	p32(&p, 1);
	timer(&p, 1, CLOCK_REALTIME, 0, 14, 1000000000);
	refused(CKPT_SEC_TASK_TIMERS, &p, "nsec 1e9");
	p.n = 0;
	p32(&p, 1);
	timer(&p, -1, CLOCK_REALTIME, 0, 14, 0);
	refused(CKPT_SEC_TASK_TIMERS, &p, "negative id");
	p.n = 0;
	p32(&p, 3);
	timer(&p, 1, CLOCK_REALTIME, 0, 14, 0);
	refused(CKPT_SEC_TASK_TIMERS, &p, "count beyond the bytes");
	p.n = 0;
	p32(&p, 0x40000000);
	refused(CKPT_SEC_TASK_TIMERS, &p, "huge count");

	p.n = 0;
	p32(&p, 17);
	refused(CKPT_SEC_TASK_RLIMITS, &p, "17 limits");
	p.n = 0;
	p32(&p, 16);
	for (int i = 0; i < 16; i++) {
		p64(&p, i == 7 ? 10 : 1);
		p64(&p, i == 7 ? 5 : 1);
	}
	refused(CKPT_SEC_TASK_RLIMITS, &p, "soft above hard");

	proc_section(&p, 01000, 0, "/tmp", 4);
	refused(CKPT_SEC_TASK_PROC, &p, "umask 01000");
	proc_section(&p, 022, 2, "/tmp", 4);
	refused(CKPT_SEC_TASK_PROC, &p, "unknown flag");
	proc_section(&p, 022, 0, "tmp", 3);
	refused(CKPT_SEC_TASK_PROC, &p, "relative cwd");
	proc_section(&p, 022, 0, "/t\0p", 4);
	refused(CKPT_SEC_TASK_PROC, &p, "NUL in cwd");
	proc_section(&p, 022, 0, "", 0);
	refused(CKPT_SEC_TASK_PROC, &p, "empty cwd");
	proc_section(&p, 022, 0, "/tmp", 4);
	p.b[12] = 200; /* length beyond the section */
	refused(CKPT_SEC_TASK_PROC, &p, "cwd length");

	p.n = 0;
	for (int i = 0; i < 8; i++)
		p32(&p, 0);
	p32(&p, CKPT_MAX_GROUPS + 1);
	refused(CKPT_SEC_TASK_CREDS, &p, "too many groups");
	p.n = 0;
	for (int i = 0; i < 8; i++)
		p32(&p, 0);
	p32(&p, 2);
	p32(&p, 1);
	refused(CKPT_SEC_TASK_CREDS, &p, "truncated groups");

	p.n = 0;
	refused(0x1018, &p, "a type that is not ours");
	assert_false(ckpt_task_owns(0x1018));
	assert_false(ckpt_task_owns(0x100f));
}

/* ---- a child to inject into ---- */

struct kid {
	pid_t pid;
	int cmd; /* we write */
	int res; /* we read */
};

enum { KID_READ = 0, KID_SPIN = 1, KID_STATE = 2 };

static volatile sig_atomic_t got_usr1;
static int kid_res_fd = -1;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	char c = 'h';

	(void)sig;
	(void)si;
	(void)uc;
	got_usr1++;
	if (write(kid_res_fd, &c, 1) != 1)
		_exit(3);
}

static void on_rt(int sig)
{
	(void)sig;
}

static uint8_t altstack_mem[65536] __attribute__((aligned(16)));
static struct sigaction expect_usr1, expect_pipe, expect_chld;

/* The state the collect test expects; set up in the child. */
static void kid_state(void)
{
	struct sigaction sa;
	stack_t ss = { .ss_sp = altstack_mem, .ss_size = sizeof(altstack_mem) };
	struct itimerval itv = { { 0, 0 }, { 1000, 0 } };
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGRTMIN + 4 };
	struct itimerspec its = { { 7, 0 }, { 500, 0 } };
	struct rlimit rl;
	sigset_t block;
	timer_t tm;

	sigaction(SIGUSR1, &expect_usr1, NULL);
	sigaction(SIGPIPE, &expect_pipe, NULL);
	sigaction(SIGCHLD, &expect_chld, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGUSR2, &sa, NULL);
	if (sigaltstack(&ss, NULL) < 0)
		_exit(10);
	if (setitimer(ITIMER_REAL, &itv, NULL) < 0)
		_exit(11);
	sev.sigev_value.sival_int = 1234;
	if (timer_create(CLOCK_MONOTONIC, &sev, &tm) < 0 || timer_settime(tm, 0, &its, NULL) < 0)
		_exit(12);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGRTMIN + 3);
	sigprocmask(SIG_BLOCK, &block, NULL);
	kill(getpid(), SIGTERM);
	sigqueue(getpid(), SIGRTMIN + 3, (union sigval){ .sival_int = 11 });
	sigqueue(getpid(), SIGRTMIN + 3, (union sigval){ .sival_int = 22 });
	umask(027);
	if (chdir("/tmp") < 0)
		_exit(13);
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = 321;
	setrlimit(RLIMIT_NOFILE, &rl);
	personality(ADDR_NO_RANDOMIZE);
}

static void kid_main(int mode, int cmd, int res)
{
	struct sigaction sa = { .sa_sigaction = on_usr1, .sa_flags = SA_SIGINFO | SA_RESTART };

	kid_res_fd = res;
	if (mode == KID_STATE)
		kid_state();
	else
		sigaction(SIGUSR1, &sa, NULL);
	if (write(res, "r", 1) != 1)
		_exit(2);
	if (mode == KID_SPIN)
		fcntl(cmd, F_SETFL, O_NONBLOCK);
	for (;;) {
		char c, out[64];
		ssize_t n;
		int e;

		if (mode == KID_SPIN) {
			/* mostly in user code: the stop lands here */
			for (volatile unsigned i = 0; i < 1000000; i++)
				;
		}
		n = read(cmd, &c, 1);
		e = errno;
		if (n < 0 && e == EAGAIN)
			continue;
		if (n == 1 && c == 'p') { /* report the pending set */
			sigset_t s;
			unsigned long long m = 0;

			sigpending(&s);
			for (int sig = 1; sig <= 64; sig++)
				if (sigismember(&s, sig))
					m |= 1ull << (sig - 1);
			snprintf(out, sizeof(out), "p%016llx\n", m);
		} else {
			snprintf(out, sizeof(out), "n=%zd e=%d c=%c\n", n, n < 0 ? e : 0, n == 1 ? c : '-');
		}
		if (write(res, out, strlen(out)) < 0)
			_exit(4);
	}
}

static void kid_start(struct kid *k, int mode)
{
	int c[2], r[2];
	char ch;

	assert_int_equal(pipe2(c, O_CLOEXEC), 0);
	assert_int_equal(pipe2(r, O_CLOEXEC), 0);
	k->pid = fork();
	assert_true(k->pid >= 0);
	if (k->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(c[1]);
		close(r[0]);
		kid_main(mode, c[0], r[1]);
	}
	close(c[0]);
	close(r[1]);
	k->cmd = c[1];
	k->res = r[0];
	assert_int_equal(read(k->res, &ch, 1), 1);
	assert_int_equal(ch, 'r');
}

static void kid_end(struct kid *k)
{
	kill(k->pid, SIGKILL);
	waitpid(k->pid, NULL, 0);
	close(k->cmd);
	close(k->res);
}

/* One line from the child (blocking: it answers every command). */
static void kid_line(struct kid *k, char *buf, size_t size)
{
	size_t n = 0;

	while (n + 1 < size) {
		assert_int_equal(read(k->res, buf + n, 1), 1);
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = 0;
}

/* Wait until the child is blocked in a syscall (state S), from its stat:
 * the kernel publishes it; this is the event we need, bounded. */
static void kid_wait_sleeping(struct kid *k)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)k->pid);
	for (int i = 0; i < 100000; i++) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n = read(fd, buf, sizeof(buf) - 1);

		close(fd);
		assert_true(n > 0);
		buf[n] = 0;
		p = strrchr(buf, ')');
		if (p && p[2] == 'S')
			return;
		sched_yield();
	}
	fail_msg("child never blocked");
}

struct snap {
	struct user_regs_struct regs;
	uint8_t xstate[16384];
	size_t xlen;
	char maps[16384];
	uint64_t mask;
};

static void snapshot(pid_t pid, struct snap *s)
{
	struct iovec iov = { s->xstate, sizeof(s->xstate) };
	char path[64];
	int fd;
	ssize_t n;

	memset(s, 0, sizeof(*s));
	assert_int_equal(ptrace(PTRACE_GETREGS, pid, 0, &s->regs), 0);
	assert_int_equal(ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov), 0);
	s->xlen = iov.iov_len;
	assert_int_equal(ptrace(PTRACE_GETSIGMASK, pid, (void *)8, &s->mask), 0);
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = read(fd, s->maps, sizeof(s->maps) - 1);
	close(fd);
	assert_true(n > 0 && (size_t)n < sizeof(s->maps) - 1);
}

static void same_as(pid_t pid, const struct snap *before)
{
	static struct snap after;

	snapshot(pid, &after);
	assert_memory_equal(&after.regs, &before->regs, sizeof(before->regs));
	assert_int_equal(after.xlen, before->xlen);
	assert_memory_equal(after.xstate, before->xstate, before->xlen);
	assert_string_equal(after.maps, before->maps);
	assert_int_equal(after.mask, before->mask);
}

/* Still (again) in the PTRACE_EVENT_STOP of the interrupt, not in the
 * syscall-exit stop of the last injected syscall. */
static void in_event_stop(pid_t pid)
{
	siginfo_t si;

	assert_int_equal(ptrace(PTRACE_GETSIGINFO, pid, 0, &si), 0);
	assert_int_equal(si.si_code >> 8, PTRACE_EVENT_STOP);
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* getpid and the scratch memory inside a stopped child; then it must be
 * exactly as before and go on. */
static void inject_and_check(int mode)
{
	static struct snap before, during;
	struct sockmig_proc *p;
	struct ckpt_inject *in;
	struct kid k;
	int64_t res = 0;
	const uint64_t none[6] = { 0 };
	char buf[64], back[64] = { 0 };

	kid_start(&k, mode);
	if (mode == KID_READ)
		kid_wait_sleeping(&k);
	assert_int_equal(sockmig_proc_open(k.pid, &p), 0);
	assert_int_equal(sockmig_proc_stop(p), 0);
	snapshot(k.pid, &before);
	if (mode == KID_READ) { /* stopped inside read(): restart pending */
		assert_int_equal(before.regs.orig_rax, SYS_read);
		assert_int_equal((int64_t)before.regs.rax, -512);
	}

	assert_int_equal(ckpt_inject_begin(k.pid, k.pid, 8192, &in), 0);
	assert_int_equal(ckpt_inject_stop_signal(in, NULL), 0);
	assert_int_equal(ckpt_inject_syscall(in, SYS_getpid, none, &res), 0);
	assert_int_equal(res, k.pid);
	assert_int_equal(ckpt_inject_scratch_len(in), 8192);
	snprintf(buf, sizeof(buf), "scratch of %d", (int)k.pid);
	assert_int_equal(ckpt_inject_write(in, 4000, buf, sizeof(buf)), 0);
	assert_int_equal(ckpt_inject_read(in, 4000, back, sizeof(back)), 0);
	assert_string_equal(back, buf);
	assert_int_equal(ckpt_inject_write(in, 8190, buf, 4), -EINVAL);
	{
		/* the child's own view: write(2) from the scratch to /dev/null */
		const uint64_t a[6] = { 1 << 20, ckpt_inject_scratch(in) + 4000, 5 };

		assert_int_equal(ckpt_inject_syscall(in, SYS_write, a, &res), 0);
		assert_int_equal(res, -EBADF);
	}
	{
		/* a batch: two reads, then getpid stops it at index 2 */
		uint64_t scr = ckpt_inject_scratch(in);
		const struct ckpt_inject_op ops[] = {
			{ SYS_rt_sigaction, { SIGUSR1, 0, scr, 8 } },
			{ SYS_getitimer, { ITIMER_REAL, scr + 64 } },
			{ SYS_getpid, { 0 } },
			{ SYS_rt_sigaction, { SIGUSR2, 0, scr + 128, 8 } },
		};
		uint64_t act[4], itv[4] = { 1, 1, 1, 1 };
		size_t idx;

		assert_int_equal(ckpt_inject_batch(in, ops, 2, &idx, &res), 0);
		assert_int_equal(idx, 2);
		assert_int_equal(res, 0);
		assert_int_equal(ckpt_inject_batch(in, ops, 4, &idx, &res), 0);
		assert_int_equal(idx, 2);
		assert_int_equal(res, k.pid);
		assert_int_equal(ckpt_inject_read(in, 0, act, sizeof(act)), 0);
		assert_int_equal(act[0], (uintptr_t)on_usr1);
		assert_int_equal(act[1] & (SA_SIGINFO | SA_RESTART), SA_SIGINFO | SA_RESTART);
		assert_int_equal(ckpt_inject_read(in, 64, itv, sizeof(itv)), 0);
		assert_int_equal(itv[0] | itv[1] | itv[2] | itv[3], 0);
		/* a single syscall after a batch */
		assert_int_equal(ckpt_inject_syscall(in, SYS_getppid, none, &res), 0);
		assert_int_equal(res, getpid());
	}
	snapshot(k.pid, &during);
	/* the scratch and the batch loop's mapping (the scratch may merge
	 * with a neighbour, the loop's read+exec mapping does not) */
	assert_true(count_lines(during.maps) > count_lines(before.maps));
	assert_int_equal(during.mask, ~0ull & ~((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1))));
	assert_int_equal(ckpt_inject_end(in), 0);

	same_as(k.pid, &before);
	in_event_stop(k.pid);
	assert_int_equal(sockmig_proc_resume(p), 0);
	sockmig_proc_free(p);
	/* its read() restarts and gets our byte, not EINTR or errno 512 */
	assert_int_equal(write(k.cmd, "x", 1), 1);
	kid_line(&k, buf, sizeof(buf));
	assert_string_equal(buf, "n=1 e=0 c=x\n");
	kid_end(&k);
}

static void test_inject_in_syscall(void **state)
{
	(void)state;
	inject_and_check(KID_READ);
}

static void test_inject_in_user_code(void **state)
{
	(void)state;
	inject_and_check(KID_SPIN);
}

/* Found in a signal-delivery stop: back in the same stop, same siginfo;
 * the signal then reaches its handler and read() restarts. */
static void test_inject_delivery_stop(void **state)
{
	static struct snap before;
	struct ckpt_inject *in;
	struct kid k;
	siginfo_t si, si2;
	int64_t res;
	const uint64_t none[6] = { 0 };
	int status;
	char buf[64];
	(void)state;

	kid_start(&k, KID_READ);
	kid_wait_sleeping(&k);
	assert_int_equal(ptrace(PTRACE_SEIZE, k.pid, 0, 0), 0);
	assert_int_equal(kill(k.pid, SIGUSR1), 0);
	assert_int_equal(waitpid(k.pid, &status, __WALL), k.pid);
	assert_true(WIFSTOPPED(status) && WSTOPSIG(status) == SIGUSR1 && (status >> 16) == 0);
	snapshot(k.pid, &before);
	assert_int_equal(ptrace(PTRACE_GETSIGINFO, k.pid, 0, &si), 0);

	assert_int_equal(ckpt_inject_begin(k.pid, k.pid, 0, &in), 0);
	assert_int_equal(ckpt_inject_stop_signal(in, &si2), 1);
	assert_int_equal(si2.si_signo, SIGUSR1);
	assert_int_equal(ckpt_inject_syscall(in, SYS_getppid, none, &res), 0);
	assert_int_equal(res, getpid());
	assert_int_equal(ckpt_inject_end(in), 0);

	same_as(k.pid, &before);
	memset(&si2, 0, sizeof(si2));
	assert_int_equal(ptrace(PTRACE_GETSIGINFO, k.pid, 0, &si2), 0);
	assert_int_equal(si2.si_signo, SIGUSR1);
	assert_int_equal(si2.si_code, si.si_code);
	assert_int_equal(si2.si_pid, getpid());
	assert_int_equal(ptrace(PTRACE_DETACH, k.pid, 0, (void *)SIGUSR1), 0);
	assert_int_equal(read(k.res, buf, 1), 1);
	assert_int_equal(buf[0], 'h');
	assert_int_equal(write(k.cmd, "y", 1), 1);
	kid_line(&k, buf, sizeof(buf));
	assert_string_equal(buf, "n=1 e=0 c=y\n");
	kid_end(&k);
}

/* A signal sent while the child sits in its event stop is dequeued when the
 * injection resumes it: held, queued again, delivered after the resume. */
static void test_inject_holds_signal(void **state)
{
	static struct snap before;
	struct sockmig_proc *p;
	struct ckpt_inject *in;
	struct kid k;
	struct { uint64_t off; uint32_t flags; int32_t nr; } args = { 0, 1, 8 };
	siginfo_t q[8];
	int64_t res;
	const uint64_t none[6] = { 0 };
	char buf[64];
	(void)state;

	kid_start(&k, KID_READ);
	kid_wait_sleeping(&k);
	assert_int_equal(sockmig_proc_open(k.pid, &p), 0);
	assert_int_equal(sockmig_proc_stop(p), 0);
	snapshot(k.pid, &before);
	assert_int_equal(kill(k.pid, SIGUSR1), 0); /* pending, the child is stopped */

	assert_int_equal(ckpt_inject_begin(k.pid, k.pid, 0, &in), 0);
	assert_int_equal(ckpt_inject_syscall(in, SYS_getpid, none, &res), 0);
	assert_int_equal(res, k.pid);
	assert_int_equal(ckpt_inject_end(in), 0);

	same_as(k.pid, &before);
	in_event_stop(k.pid);
	/* queued again (to the thread), with our pid as the sender */
	args.flags = 0;
	assert_int_equal(ptrace(PTRACE_PEEKSIGINFO, k.pid, &args, q), 1);
	assert_int_equal(q[0].si_signo, SIGUSR1);
	assert_int_equal(q[0].si_code, SI_USER);
	assert_int_equal(q[0].si_pid, getpid());
	assert_int_equal(sockmig_proc_resume(p), 0);
	sockmig_proc_free(p);
	assert_int_equal(read(k.res, buf, 1), 1);
	assert_int_equal(buf[0], 'h');
	assert_int_equal(write(k.cmd, "z", 1), 1);
	kid_line(&k, buf, sizeof(buf));
	assert_string_equal(buf, "n=1 e=0 c=z\n");
	kid_end(&k);
}

static void test_collect(void **state)
{
	static struct snap before;
	struct sockmig_proc *p;
	struct ckpt_task *t = NULL;
	struct kid k;
	const struct ckpt_ptimer *pt;
	int32_t v0, v1;
	char buf[64];
	(void)state;

	memset(&expect_usr1, 0, sizeof(expect_usr1));
	expect_usr1.sa_sigaction = on_usr1;
	expect_usr1.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaddset(&expect_usr1.sa_mask, SIGUSR2);
	sigaddset(&expect_usr1.sa_mask, SIGRTMIN + 1);
	memset(&expect_pipe, 0, sizeof(expect_pipe));
	expect_pipe.sa_handler = on_rt;
	expect_pipe.sa_flags = SA_ONSTACK | SA_NODEFER;
	memset(&expect_chld, 0, sizeof(expect_chld));
	expect_chld.sa_handler = SIG_DFL;
	expect_chld.sa_flags = SA_NOCLDSTOP;

	kid_start(&k, KID_STATE);
	kid_wait_sleeping(&k);
	assert_int_equal(ckpt_task_check(k.pid), 0);
	assert_int_equal(sockmig_proc_open(k.pid, &p), 0);
	assert_int_equal(ckpt_task_collect(p, &t), -EINVAL); /* not stopped */
	assert_int_equal(sockmig_proc_stop(p), 0);
	snapshot(k.pid, &before);
	if (ckpt_task_collect(p, &t) < 0)
		fail_msg("collect: %s", sockmig_error());
	same_as(k.pid, &before);

	assert_int_equal(t->have, CKPT_TASK_HAVE_ALL);
	assert_int_equal(t->act[SIGUSR1 - 1].handler, (uintptr_t)on_usr1);
	assert_int_equal(t->act[SIGUSR1 - 1].flags & ~(uint64_t)SA_RESTORER, SA_SIGINFO | SA_RESTART);
	assert_true(t->act[SIGUSR1 - 1].restorer != 0);
	assert_int_equal(t->act[SIGUSR1 - 1].mask, (1ull << (SIGUSR2 - 1)) | (1ull << (SIGRTMIN + 1 - 1)));
	assert_int_equal(t->act[SIGPIPE - 1].handler, (uintptr_t)on_rt);
	assert_int_equal(t->act[SIGPIPE - 1].flags & ~(uint64_t)SA_RESTORER, SA_ONSTACK | SA_NODEFER);
	assert_int_equal(t->act[SIGUSR2 - 1].handler, (uintptr_t)SIG_IGN);
	assert_int_equal(t->act[SIGCHLD - 1].handler, 0);
	assert_int_equal(t->act[SIGCHLD - 1].flags & ~(uint64_t)SA_RESTORER, SA_NOCLDSTOP);
	assert_int_equal(t->act[SIGHUP - 1].handler, 0);
	assert_int_equal(t->altstack.sp, (uintptr_t)altstack_mem);
	assert_int_equal(t->altstack.size, sizeof(altstack_mem));
	assert_int_equal(t->altstack.flags, 0);
	assert_true(t->itimer[ITIMER_REAL].value_sec > 990 && t->itimer[ITIMER_REAL].value_sec <= 1000);
	assert_int_equal(t->itimer[ITIMER_VIRTUAL].value_sec | t->itimer[ITIMER_VIRTUAL].value_usec, 0);
	assert_int_equal(t->n_timers, 1);
	pt = &t->timers[0];
	assert_int_equal(pt->id, 0);
	assert_int_equal(pt->clock, CLOCK_MONOTONIC);
	assert_int_equal(pt->notify, CKPT_TIMER_SIGNAL);
	assert_int_equal(pt->signo, SIGRTMIN + 4);
	assert_int_equal((int32_t)pt->sigval, 1234);
	assert_int_equal(pt->interval_sec, 7);
	assert_true(pt->value_sec > 490 && pt->value_sec <= 500);
	/* kill() and sigqueue() to itself are process-wide */
	assert_int_equal(t->thread.n, 0);
	assert_int_equal(t->shared.n, 3);
	assert_int_equal(t->shared.info[0].b[0], SIGTERM);
	assert_int_equal(t->shared.info[1].b[0], SIGRTMIN + 3);
	assert_int_equal(t->shared.info[2].b[0], SIGRTMIN + 3);
	memcpy(&v0, t->shared.info[1].b + offsetof(siginfo_t, si_value), 4);
	memcpy(&v1, t->shared.info[2].b + offsetof(siginfo_t, si_value), 4);
	assert_int_equal(v0, 11);
	assert_int_equal(v1, 22);
	assert_int_equal(t->rlim[RLIMIT_NOFILE][0], 321);
	assert_int_equal(t->umask, 027);
	assert_string_equal(t->cwd, "/tmp");
	assert_int_equal(t->personality, ADDR_NO_RANDOMIZE);
	assert_int_equal(ckpt_task_creds(t)->uid[0], getuid());
	assert_int_equal(ckpt_task_creds(t)->gid[1], getegid());
	assert_int_equal(ckpt_task_prepare(t), 0);

	assert_int_equal(sockmig_proc_resume(p), 0);
	sockmig_proc_free(p);
	/* it goes on with the same pending set */
	assert_int_equal(write(k.cmd, "p", 1), 1);
	kid_line(&k, buf, sizeof(buf));
	{
		char want[32];

		snprintf(want, sizeof(want), "p%016llx\n",
			 (1ull << (SIGTERM - 1)) | (1ull << (SIGRTMIN + 3 - 1)));
		assert_string_equal(buf, want);
	}
	ckpt_task_free(t);
	kid_end(&k);
}

/* A child that is pid 1 of a pid namespace of its own (as a restored
 * process may be): the batch's signal and the held signals go to the ids it
 * has in there. */
static void test_inject_pid_namespace(void **state)
{
	static struct snap before;
	struct sockmig_proc *p;
	struct ckpt_inject *in;
	struct ckpt_task *t = NULL;
	struct kid k;
	int64_t res;
	const uint64_t none[6] = { 0 };
	int old = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	char buf[64];
	(void)state;

	assert_true(old >= 0);
	assert_int_equal(unshare(CLONE_NEWPID), 0);
	kid_start(&k, KID_READ);
	assert_int_equal(setns(old, CLONE_NEWPID), 0);
	close(old);
	kid_wait_sleeping(&k);
	assert_int_equal(sockmig_proc_open(k.pid, &p), 0);
	assert_int_equal(sockmig_proc_stop(p), 0);
	snapshot(k.pid, &before);
	assert_int_equal(kill(k.pid, SIGUSR1), 0); /* held, queued again in there */
	if (ckpt_task_collect(p, &t) < 0)
		fail_msg("collect: %s", sockmig_error());
	assert_int_equal(t->act[SIGUSR1 - 1].handler, (uintptr_t)on_usr1);
	assert_int_equal(ckpt_inject_begin(k.pid, k.pid, 0, &in), 0);
	assert_int_equal(ckpt_inject_syscall(in, SYS_getpid, none, &res), 0);
	assert_int_equal(res, 1);
	assert_int_equal(ckpt_inject_end(in), 0);
	same_as(k.pid, &before);
	in_event_stop(k.pid);
	assert_int_equal(sockmig_proc_resume(p), 0);
	sockmig_proc_free(p);
	assert_int_equal(read(k.res, buf, 1), 1);
	assert_int_equal(buf[0], 'h');
	assert_int_equal(write(k.cmd, "w", 1), 1);
	kid_line(&k, buf, sizeof(buf));
	assert_string_equal(buf, "n=1 e=0 c=w\n");
	ckpt_task_free(t);
	kid_end(&k);
}

/* The pre-flight refuses a seccomp filter. */
static void test_check_seccomp(void **state)
{
	int c[2], w[2];
	pid_t pid;
	char ch;
	(void)state;

	assert_int_equal(pipe2(c, O_CLOEXEC), 0);
	assert_int_equal(pipe2(w, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		if (prctl(PR_SET_SECCOMP, 1 /* strict */, 0, 0, 0) == 0) {
			/* strict mode: read, write, exit only; wait on w */
			if (write(c[1], "s", 1) != 1)
				syscall(SYS_exit, 1);
			for (;;)
				if (read(w[0], &ch, 1) <= 0)
					syscall(SYS_exit, 1);
		}
		syscall(SYS_exit, 2);
	}
	assert_int_equal(read(c[0], &ch, 1), 1);
	assert_int_equal(ckpt_task_check(pid), -EOPNOTSUPP);
	assert_non_null(strstr(sockmig_error(), "seccomp"));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(c[0]);
	close(c[1]);
	close(w[0]);
	close(w[1]);
}

/* ... and a working directory that was deleted. */
static void test_check_deleted_cwd(void **state)
{
	char dir[] = "/tmp/test_ckpt_task.XXXXXX", want[128];
	struct kid k;
	(void)state;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(chdir(dir), 0);
	kid_start(&k, KID_READ); /* inherits the cwd */
	assert_int_equal(chdir("/"), 0);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(ckpt_task_check(k.pid), -EOPNOTSUPP);
	snprintf(want, sizeof(want), "its working directory %s was deleted", dir);
	assert_non_null(strstr(sockmig_error(), want));
	kid_end(&k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_missing_section),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_inject_in_syscall),
		cmocka_unit_test(test_inject_in_user_code),
		cmocka_unit_test(test_inject_delivery_stop),
		cmocka_unit_test(test_inject_holds_signal),
		cmocka_unit_test(test_collect),
		cmocka_unit_test(test_inject_pid_namespace),
		cmocka_unit_test(test_check_seccomp),
		cmocka_unit_test(test_check_deleted_cwd),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
