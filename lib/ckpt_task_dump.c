/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Reading the per-process state of a process (ckpt_task.h): the pre-flight
 * ckpt_task_check(), and ckpt_task_collect() on the stopped process, which
 * ckpt_task_dump() writes out with ckpt_task_write() (ckpt_task.c).
 *
 * Read from outside where the kernel lets us: /proc/PID/{status, cwd, root,
 * personality, timers}, prlimit64 on the pid, PTRACE_PEEKSIGINFO for the
 * queues. What only the process itself can read (its sigactions, its
 * sigaltstack, getitimer, timer_gettime) is read by syscalls injected into
 * it (ckpt_inject.c), all in one session with one scratch page.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_inject.h"
#include "ckpt_task_internal.h"
#include "util.h"

#define CKPT_PEEKSIGINFO_SHARED 1u
#define SI_KERNEL_CODE 0x80

#define SIGBIT(s) (1ull << ((s) - 1))

/* ---- /proc ---- */

/* The text after "key:" and its blanks in a /proc status file, or NULL. */
static const char *status_field(const char *buf, const char *key)
{
	size_t klen = strlen(key);

	for (const char *p = buf; p && *p;) {
		if (!strncmp(p, key, klen) && p[klen] == ':')
			return p + klen + 1 + strspn(p + klen + 1, " \t");
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static bool status_hex(const char *buf, const char *key, uint64_t *ret)
{
	const char *v = status_field(buf, key);
	char *end;

	if (!v)
		return false;
	*ret = strtoull(v, &end, 16);
	return end != v;
}

/* Up to max numbers of a line ("Uid:\t0\t0\t0\t0", "Groups:\t4 24 "). */
static size_t status_u32s(const char *buf, const char *key, uint32_t *v, size_t max, bool *ret_more)
{
	const char *p = status_field(buf, key);
	size_t n = 0;

	*ret_more = false;
	if (!p)
		return 0;
	while (*p && *p != '\n') {
		char *end;
		unsigned long x;

		p += strspn(p, " \t");
		if (*p < '0' || *p > '9')
			break;
		x = strtoul(p, &end, 10);
		if (n == max) {
			*ret_more = true;
			break;
		}
		v[n++] = (uint32_t)x;
		p = end;
	}
	return n;
}

/* The pid the process has in its own pid namespace: the last number of
 * "NStgid:". */
static pid_t status_ns_pid(const char *st, pid_t fallback)
{
	uint32_t v[32];
	bool more;
	size_t n = status_u32s(st, "NStgid", v, ARRAY_SIZE(v), &more);

	return n && !more ? (pid_t)v[n - 1] : fallback;
}

/* /proc/PID/status, whole (Groups can be long): malloc'ed. */
static int read_status(pid_t pid, char **ret)
{
	size_t size = 64 * 1024;
	char path[64], *buf = malloc(size);
	int r;

	if (!buf)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	r = sm_read_file(path, buf, size);
	if (r < 0) {
		free(buf);
		return sm_fail(r == -ENOENT ? -ESRCH : r, "pid %d: cannot read its status: %s", (int)pid, strerror(-r));
	}
	*ret = buf;
	return 0;
}
/* /proc/PID/timers: "ID: 3", "signal: 14/00000000deadbeef",
 * "notify: signal/pid.123" (or none/..., .../tid.N), "ClockID: 1" per
 * timer, newest first. Sorted by id; times left 0. self: the pid in the
 * process's own namespace, which its CPU clock ids encode. */
static int parse_timers(pid_t pid, pid_t self, struct ckpt_ptimer **ret, uint32_t *ret_n)
{
	size_t size = 256 * 1024;
	_cleanup_free_ char *buf = malloc(size);
	struct ckpt_ptimer *v = NULL, *cur = NULL;
	uint32_t n = 0;
	char path[64], *line, *save = NULL;
	int r;

	if (!buf)
		return -ENOMEM;
	snprintf(path, sizeof(path), "/proc/%d/timers", (int)pid);
	r = sm_read_file(path, buf, size);
	if (r < 0)
		return sm_fail(r == -ENOENT ? -ESRCH : r, "pid %d: cannot read its POSIX timers: %s", (int)pid,
			       strerror(-r));
	if ((size_t)r == size - 1)
		return sm_fail(-EOPNOTSUPP, "pid %d has more than %u POSIX timers, which cannot be checkpointed", (int)pid,
			       CKPT_TASK_MAX_TIMERS);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int id, clock, target;
		unsigned signo;
		unsigned long long val;
		char how[16], whom[8];

		if (sscanf(line, "ID: %d", &id) == 1) {
			struct ckpt_ptimer *nv;

			if (n == CKPT_TASK_MAX_TIMERS) {
				free(v);
				return sm_fail(-EOPNOTSUPP, "pid %d has more than %u POSIX timers, which cannot be checkpointed",
					       (int)pid, CKPT_TASK_MAX_TIMERS);
			}
			nv = realloc(v, (n + 1) * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cur = &v[n++];
			*cur = (struct ckpt_ptimer){ .id = id };
		} else if (!cur) {
			continue;
		} else if (sscanf(line, "signal: %u/%llx", &signo, &val) == 2) {
			cur->signo = signo;
			cur->sigval = val;
		} else if (sscanf(line, "notify: %15[a-z]/%7[a-z].%d", how, whom, &target) == 3) {
			if (!strcmp(whom, "tid")) {
				free(v);
				return sm_fail(-EOPNOTSUPP, "pid %d: POSIX timer %d notifies one thread (SIGEV_THREAD_ID, or SIGEV_THREAD in glibc), which cannot be restored yet",
					       (int)pid, cur->id);
			}
			if (!strcmp(how, "none"))
				cur->notify = CKPT_TIMER_NONE;
			else if (!strcmp(how, "signal"))
				cur->notify = CKPT_TIMER_SIGNAL;
			else {
				free(v);
				return sm_fail(-EOPNOTSUPP, "pid %d: POSIX timer %d notifies by \"%s\", which cannot be restored",
					       (int)pid, cur->id, how);
			}
		} else if (sscanf(line, "ClockID: %d", &clock) == 1) {
			if (clock < 0 && (clock & 3) != 3 && ~(clock >> 3) == self)
				clock = (clock & 7) | -8; /* our own CPU clock: "self" */
			if (!ckpt_task_clock_storable(clock)) {
				free(v);
				return sm_fail(-EOPNOTSUPP, "pid %d: POSIX timer %d runs on clock %d (another process's CPU clock or a device), which cannot be restored",
					       (int)pid, cur->id, clock);
			}
			cur->clock = clock;
		}
	}
	/* newest first: reverse, then make sure */
	for (uint32_t i = 0; i < n / 2; i++) {
		struct ckpt_ptimer x = v[i];

		v[i] = v[n - 1 - i];
		v[n - 1 - i] = x;
	}
	for (uint32_t i = 1; i < n; i++)
		if (v[i].id <= v[i - 1].id) {
			free(v);
			return sm_fail(-EIO, "pid %d: cannot make sense of its POSIX timers list", (int)pid);
		}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* ---- pre-flight ---- */

static int check_status(pid_t pid, const char *st)
{
	_cleanup_free_ char *self = NULL;
	uint64_t seccomp = 0, eff = 0, prm = 0, bnd = 0, amb = 0, our_bnd = 0;
	uint32_t uid[4];
	bool more;
	int r;

	if (status_hex(st, "Seccomp", &seccomp) && seccomp != 0)
		return sm_fail(-EOPNOTSUPP, "pid %d runs under a seccomp %s, which cannot be restored", (int)pid,
			       seccomp == 1 ? "strict mode" : "filter");
	if (status_u32s(st, "Uid", uid, 4, &more) != 4 || !status_hex(st, "CapEff", &eff) ||
	    !status_hex(st, "CapPrm", &prm) || !status_hex(st, "CapBnd", &bnd))
		return sm_fail(-EIO, "pid %d: cannot read its credentials", (int)pid);
	status_hex(st, "CapAmb", &amb);
	r = read_status(getpid(), &self);
	if (r < 0)
		return r;
	status_hex(self, "CapBnd", &our_bnd);
	/* The restored process gets the restorer's bounding set and, through
	 * setresuid, the caps that go with its uid: all of them for root, none
	 * otherwise. Anything else would come back different. */
	if (bnd != our_bnd)
		return sm_fail(-EOPNOTSUPP, "pid %d has a reduced capability bounding set (%#" PRIx64 "), which cannot be restored yet",
			       (int)pid, bnd);
	if (uid[1] == 0 && (eff != bnd || prm != bnd))
		return sm_fail(-EOPNOTSUPP, "pid %d runs as root without all capabilities (CapEff %#" PRIx64 "), which cannot be restored yet",
			       (int)pid, eff);
	if (uid[1] != 0 && (eff || prm || amb))
		return sm_fail(-EOPNOTSUPP, "pid %d (uid %u) holds capabilities (CapEff %#" PRIx64 "), which cannot be restored yet",
			       (int)pid, uid[1], eff);
	{
		_cleanup_free_ uint32_t *g = malloc(CKPT_MAX_GROUPS * sizeof(*g));

		if (!g)
			return -ENOMEM;
		status_u32s(st, "Groups", g, CKPT_MAX_GROUPS, &more);
		if (more)
			return sm_fail(-EOPNOTSUPP, "pid %d belongs to more than %d groups, which cannot be checkpointed",
				       (int)pid, CKPT_MAX_GROUPS);
	}
	return 0;
}

static int read_cwd(pid_t pid, char *cwd, size_t size)
{
	char path[64], root[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	n = readlink(path, root, sizeof(root) - 1);
	if (n < 0)
		return sm_fail(errno == ENOENT ? -ESRCH : -errno, "pid %d: cannot read its root directory: %s", (int)pid,
			       strerror(errno));
	root[n] = 0;
	if (strcmp(root, "/"))
		return sm_fail(-EOPNOTSUPP, "pid %d runs chrooted in %s, which cannot be restored yet", (int)pid, root);
	snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
	n = readlink(path, cwd, size - 1);
	if (n < 0)
		return sm_fail(errno == ENOENT ? -ESRCH : -errno, "pid %d: cannot read its working directory: %s", (int)pid,
			       strerror(errno));
	cwd[n] = 0;
	if ((size_t)n >= size - 1 || cwd[0] != '/')
		return sm_fail(-EOPNOTSUPP, "pid %d: its working directory \"%.80s\" cannot be restored", (int)pid, cwd);
	if (n > 10 && !strcmp(cwd + n - 10, " (deleted)")) {
		cwd[n - 10] = 0;
		return sm_fail(-EOPNOTSUPP, "pid %d: its working directory %s was deleted, which cannot be restored", (int)pid,
			       cwd);
	}
	return 0;
}

int ckpt_task_check(pid_t pid)
{
	_cleanup_free_ char *st = NULL;
	_cleanup_free_ struct ckpt_ptimer *timers = NULL;
	char cwd[4096];
	uint32_t n;
	int r;

	r = read_status(pid, &st);
	if (r < 0)
		return r;
	r = check_status(pid, st);
	if (r < 0)
		return r;
	r = read_cwd(pid, cwd, sizeof(cwd));
	if (r < 0)
		return r;
	return parse_timers(pid, status_ns_pid(st, pid), &timers, &n);
}

/* ---- dump ---- */

struct peeksiginfo_args { /* struct ptrace_peeksiginfo_args */
	uint64_t off;
	uint32_t flags;
	int32_t nr;
};

static int queue_add(struct ckpt_sigqueue *q, const struct ckpt_siginfo *si)
{
	struct ckpt_siginfo *n;

	if (q->n >= CKPT_TASK_MAX_PENDING)
		return -E2BIG;
	n = realloc(q->info, (q->n + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	q->info = n;
	q->info[q->n++] = *si;
	return 0;
}

/* One queue, oldest first, then a siginfo for each signal of `pending` that
 * has none (a standard signal sent when the queue allocation failed is
 * pending without one; the kernel delivers it as SI_KERNEL). */
static int peek_queue(pid_t pid, bool shared, uint64_t pending, struct ckpt_sigqueue *q)
{
	struct ckpt_siginfo chunk[32];
	uint64_t seen = 0;
	int r;

	for (uint32_t round = 0; round <= CKPT_TASK_MAX_PENDING / 32 + 1; round++) {
		struct peeksiginfo_args a = { q->n, shared ? CKPT_PEEKSIGINFO_SHARED : 0, 32 };
		long n = ptrace(PTRACE_PEEKSIGINFO, pid, &a, chunk);

		if (n < 0)
			return sm_fail(-errno, "pid %d: cannot read its pending signals: %s", (int)pid, strerror(errno));
		if (n == 0)
			break;
		for (long i = 0; i < n; i++) {
			r = queue_add(q, &chunk[i]);
			if (r == -E2BIG)
				return sm_fail(r, "pid %d has more than %u signals pending, which cannot be checkpointed",
					       (int)pid, CKPT_TASK_MAX_PENDING);
			if (r < 0)
				return r;
			if (ckpt_siginfo_signo(&chunk[i]) >= 1 && ckpt_siginfo_signo(&chunk[i]) <= CKPT_TASK_NSIG)
				seen |= SIGBIT(ckpt_siginfo_signo(&chunk[i]));
		}
	}
	for (int sig = 1; sig <= CKPT_TASK_NSIG; sig++) {
		struct ckpt_siginfo si = { { 0 } };
		int32_t code = SI_KERNEL_CODE;

		if (!(pending & SIGBIT(sig)) || (seen & SIGBIT(sig)))
			continue;
		memcpy(si.b, &sig, 4);
		memcpy(si.b + 8, &code, 4);
		r = queue_add(q, &si);
		if (r < 0)
			return r == -E2BIG ? sm_fail(r, "pid %d has too many signals pending", (int)pid) : r;
	}
	for (uint32_t i = 0; i < q->n; i++) {
		uint32_t sig = ckpt_siginfo_signo(&q->info[i]);

		if (sig == SIGKILL)
			return sm_fail(-ESRCH, "pid %d is being killed", (int)pid);
		if (sig == SIGSTOP)
			return sm_fail(-EOPNOTSUPP, "pid %d has a SIGSTOP pending; it cannot be checkpointed until it has stopped and been continued",
				       (int)pid);
		if (sig < 1 || sig > CKPT_TASK_NSIG)
			return sm_fail(-EIO, "pid %d has a pending signal %u, which is not a signal", (int)pid, sig);
	}
	return 0;
}

/* Scratch layout of the injection session */
#define SCR_ACT 0        /* 64 x struct kernel_sigaction */
#define SCR_ALT 2048     /* stack_t */
#define SCR_ITIMER 2080  /* 3 x struct itimerval */
#define SCR_TIMERS 2176  /* n x struct itimerspec */

/* Everything only the process can tell, in one injection session: the
 * reads go into the scratch, in one batch (one round trip for all of them)
 * or, where the batch loop cannot be set up, one injected syscall each. */
static int inject_reads(pid_t pid, struct ckpt_task *t, struct ckpt_siginfo *ret_stop, bool *ret_have_stop)
{
	size_t len = SCR_TIMERS + 32 * (size_t)t->n_timers, n = 0, failed;
	_cleanup_free_ struct ckpt_inject_op *ops = calloc(CKPT_TASK_NSIG + 4 + t->n_timers, sizeof(*ops));
	_cleanup_free_ uint8_t *buf = malloc(len);
	_cleanup_free_ const char **what = calloc(CKPT_TASK_NSIG + 4 + t->n_timers, sizeof(*what));
	struct ckpt_inject *in;
	int64_t res = 0;
	uint64_t scr;
	siginfo_t stop;
	int r, q;

	if (!buf || !ops || !what)
		return -ENOMEM;
	r = ckpt_inject_begin(pid, pid, len, &in);
	if (r < 0)
		return sm_fail(r, "pid %d: cannot run a syscall in it to read its signal state: %s", (int)pid,
			       strerror(-r));
	scr = ckpt_inject_scratch(in);
	for (int sig = 1; sig <= CKPT_TASK_NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue; /* always SIG_DFL, nothing to read */
		what[n] = "rt_sigaction";
		ops[n++] = (struct ckpt_inject_op){ SYS_rt_sigaction, { (uint64_t)sig, 0, scr + SCR_ACT + 32 * (sig - 1), 8 } };
	}
	what[n] = "sigaltstack";
	ops[n++] = (struct ckpt_inject_op){ SYS_sigaltstack, { 0, scr + SCR_ALT } };
	for (int w = 0; w < 3; w++) {
		what[n] = "getitimer";
		ops[n++] = (struct ckpt_inject_op){ SYS_getitimer, { (uint64_t)w, scr + SCR_ITIMER + 32 * w } };
	}
	for (uint32_t i = 0; i < t->n_timers; i++) {
		what[n] = "timer_gettime";
		ops[n++] = (struct ckpt_inject_op){ SYS_timer_gettime,
						   { (uint64_t)t->timers[i].id, scr + SCR_TIMERS + 32 * i } };
	}
	r = ckpt_inject_batch(in, ops, n, &failed, &res);
	if (r == -EOPNOTSUPP) {
		r = 0;
		for (failed = 0; failed < n && r == 0; failed++) {
			r = ckpt_inject_syscall(in, ops[failed].nr, ops[failed].arg, &res);
			if (r == 0 && res != 0)
				break;
		}
	}
	if (r == 0 && failed == n)
		r = ckpt_inject_read(in, 0, buf, len);
	*ret_have_stop = ckpt_inject_stop_signal(in, &stop) == 1;
	if (*ret_have_stop)
		memcpy(ret_stop->b, &stop, sizeof(ret_stop->b));
	q = ckpt_inject_end(in);
	if (r < 0)
		return sm_fail(r, "pid %d: a syscall run in it to read its signal state failed: %s", (int)pid,
			       strerror(-r));
	if (failed < n)
		return sm_fail(res < 0 && res > -4096 ? (int)res : -EIO, "pid %d: %s run in it failed: %s", (int)pid,
			       what[failed], res < 0 && res > -4096 ? strerror((int)-res) : "unexpected result");
	if (q < 0)
		return sm_fail(q, "pid %d: could not put it back as it was after reading its signal state: %s", (int)pid,
			       strerror(-q));

	for (int sig = 1; sig <= CKPT_TASK_NSIG; sig++)
		memcpy(&t->act[sig - 1], buf + SCR_ACT + 32 * (sig - 1), 32);
	t->act[SIGKILL - 1] = (struct ckpt_sigact){ 0 };
	t->act[SIGSTOP - 1] = (struct ckpt_sigact){ 0 };
	{
		struct kstack ks;

		memcpy(&ks, buf + SCR_ALT, sizeof(ks));
		t->altstack = (struct ckpt_altstack){ ks.sp, ks.size, (uint32_t)ks.flags };
	}
	for (int w = 0; w < 3; w++)
		memcpy(&t->itimer[w], buf + SCR_ITIMER + 32 * w, 32);
	for (uint32_t i = 0; i < t->n_timers; i++) {
		uint64_t v[4];

		memcpy(v, buf + SCR_TIMERS + 32 * i, 32);
		t->timers[i].interval_sec = v[0];
		t->timers[i].interval_nsec = v[1];
		t->timers[i].value_sec = v[2];
		t->timers[i].value_nsec = v[3];
	}
	t->have |= CKPT_TASK_HAVE_SIGACTS | CKPT_TASK_HAVE_ALTSTACK | CKPT_TASK_HAVE_ITIMERS | CKPT_TASK_HAVE_TIMERS;
	return 0;
}

static int read_creds(pid_t pid, const char *st, struct ckpt_task *t)
{
	uint64_t nnp = 0, umask_v;
	const char *um;
	bool more;

	if (status_u32s(st, "Uid", t->creds.uid, 4, &more) != 4 || status_u32s(st, "Gid", t->creds.gid, 4, &more) != 4)
		return sm_fail(-EIO, "pid %d: cannot read its credentials", (int)pid);
	t->creds.n_groups = (uint32_t)status_u32s(st, "Groups", t->creds.groups, CKPT_MAX_GROUPS, &more);
	if (more)
		return sm_fail(-EOPNOTSUPP, "pid %d belongs to more than %d groups, which cannot be checkpointed",
			       (int)pid, CKPT_MAX_GROUPS);
	um = status_field(st, "Umask");
	if (!um)
		return sm_fail(-EIO, "pid %d: cannot read its umask", (int)pid);
	umask_v = strtoull(um, NULL, 8);
	t->umask = (uint32_t)umask_v & 0777;
	if (status_hex(st, "NoNewPrivs", &nnp) && nnp)
		t->flags |= CKPT_TASK_NO_NEW_PRIVS;
	t->have |= CKPT_TASK_HAVE_CREDS;
	return 0;
}

int ckpt_task_collect(struct sockmig_proc *p, struct ckpt_task **ret)
{
	pid_t pid = sockmig_proc_pid(p);
	_cleanup_free_ char *st = NULL;
	struct ckpt_task *t;
	struct ckpt_siginfo stop;
	bool have_stop = false;
	uint64_t sigpnd = 0, shdpnd = 0;
	char buf[64];
	int r;

	if (!sockmig_proc_is_stopped(p))
		return sm_fail(-EINVAL, "pid %d is not stopped; stop it before the checkpoint", (int)pid);
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->tid = (uint32_t)pid;
	/* the pre-flight again: things may have changed since */
	r = read_status(pid, &st);
	if (r < 0)
		goto fail;
	r = check_status(pid, st);
	if (r < 0)
		goto fail;
	r = read_creds(pid, st, t);
	if (r < 0)
		goto fail;
	r = read_cwd(pid, t->cwd, sizeof(t->cwd));
	if (r < 0)
		goto fail;
	snprintf(buf, sizeof(buf), "/proc/%d/personality", (int)pid);
	r = sm_read_file(buf, buf, sizeof(buf));
	if (r < 0) {
		r = sm_fail(r, "pid %d: cannot read its personality: %s", (int)pid, strerror(-r));
		goto fail;
	}
	t->personality = (uint32_t)strtoul(buf, NULL, 16);
	t->have |= CKPT_TASK_HAVE_PROC;
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++) {
		struct rlimit rl;

		if (prlimit(pid, i, NULL, &rl) < 0) {
			r = sm_fail(-errno, "pid %d: cannot read its RLIMIT_%s: %s", (int)pid, ckpt_task_rlimit_names[i],
				    strerror(errno));
			goto fail;
		}
		t->rlim[i][0] = rl.rlim_cur;
		t->rlim[i][1] = rl.rlim_max;
	}
	t->have |= CKPT_TASK_HAVE_RLIMITS;
	r = parse_timers(pid, status_ns_pid(st, pid), &t->timers, &t->n_timers);
	if (r < 0)
		goto fail;

	r = inject_reads(pid, t, &stop, &have_stop);
	if (r < 0)
		goto fail;

	/* The queues, after the injection, which queued back what it held. A
	 * signal whose delivery the stop had begun is dequeued already: it
	 * goes first, and the original gets it on resume (proc.c) as well. */
	free(st);
	st = NULL;
	r = read_status(pid, &st);
	if (r < 0)
		goto fail;
	status_hex(st, "SigPnd", &sigpnd);
	status_hex(st, "ShdPnd", &shdpnd);
	if (have_stop && (r = queue_add(&t->thread, &stop)) < 0)
		goto fail;
	r = peek_queue(pid, false, sigpnd, &t->thread);
	if (r < 0)
		goto fail;
	r = peek_queue(pid, true, shdpnd, &t->shared);
	if (r < 0)
		goto fail;
	t->have |= CKPT_TASK_HAVE_PENDING_THREAD | CKPT_TASK_HAVE_PENDING_SHARED;
	*ret = t;
	return 0;
fail:
	ckpt_task_free(t);
	return r;
}

int ckpt_task_dump(struct sockmig_proc *p, struct sm_image_writer *w)
{
	struct ckpt_task *t;
	int r = ckpt_task_collect(p, &t);

	if (r < 0)
		return r;
	r = ckpt_task_write(w, t);
	ckpt_task_free(t);
	return r;
}
