/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The per-process state around memory and registers (ckpt_task.h); the byte
 * layout is docs/ckpt-task.md, keep the two in step.
 *
 * Read from outside where the kernel lets us: /proc/PID/{status, cwd, root,
 * personality, timers}, prlimit64 on the pid, PTRACE_PEEKSIGINFO for the
 * queues. What only the process itself can read (its sigactions, its
 * sigaltstack, getitimer, timer_gettime) is read by syscalls injected into
 * it (ckpt_inject.c), all in one session with one scratch page.
 *
 * Restore: the forked child installs everything on itself with raw
 * syscalls while all its signals are blocked; only the rlimits wait for the
 * parent (after the blob: a small RLIMIT_AS or RLIMIT_NOFILE must not make
 * the restorer's own mappings and fds fail).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include "ckpt_inject.h"
#include "ckpt_task.h"
#include "util.h"

#ifndef PR_TIMER_CREATE_RESTORE_IDS /* Linux 6.17 */
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define PR_TIMER_CREATE_RESTORE_IDS_ON 1
#endif
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1u << 31)
#endif
#define CKPT_PEEKSIGINFO_SHARED 1u
#define SI_KERNEL_CODE 0x80

#define SIGBIT(s) (1ull << ((s) - 1))
#define NSEC_PER_SEC 1000000000ull
#define USEC_PER_SEC 1000000ull
/* The fallback that walks timer ids (kernels without the prctl): how many
 * throw-away timers it may create. */
#define TIMER_WALK_MAX 65536

static const char *const rlimit_names[CKPT_TASK_NRLIMITS] = {
	"CPU",    "FSIZE", "DATA",  "STACK",      "CORE",     "RSS",  "NPROC",  "NOFILE",
	"MEMLOCK", "AS",   "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
};

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

/* A timer's clock: the fixed clocks timer_create takes, or a CPU clock,
 * which encodes a pid as ~pid << 3 | type (kernel CPUCLOCK_*). Only the
 * process's own CPU clocks can be restored; they are stored as "self"
 * (pid 0), which the new process reads as its own. */
static bool clock_fixed_ok(int32_t c)
{
	return c == CLOCK_REALTIME || c == CLOCK_MONOTONIC || c == CLOCK_PROCESS_CPUTIME_ID ||
	       c == CLOCK_THREAD_CPUTIME_ID || c == CLOCK_BOOTTIME || c == CLOCK_REALTIME_ALARM ||
	       c == CLOCK_BOOTTIME_ALARM || c == CLOCK_TAI;
}

static bool clock_storable(int32_t c)
{
	return c >= 0 ? clock_fixed_ok(c) : (c & 3) != 3 && ~(c >> 3) == 0;
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
			if (!clock_storable(clock)) {
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

static uint32_t siginfo_signo(const struct ckpt_siginfo *si)
{
	uint32_t v;

	memcpy(&v, si->b, 4);
	return v;
}

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
			if (siginfo_signo(&chunk[i]) >= 1 && siginfo_signo(&chunk[i]) <= CKPT_TASK_NSIG)
				seen |= SIGBIT(siginfo_signo(&chunk[i]));
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
		uint32_t sig = siginfo_signo(&q->info[i]);

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

struct kstack { /* stack_t */
	uint64_t sp;
	int32_t flags;
	int32_t pad;
	uint64_t size;
};

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
			r = sm_fail(-errno, "pid %d: cannot read its RLIMIT_%s: %s", (int)pid, rlimit_names[i],
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

/* ---- sections ---- */

static int write_queue(struct sm_image_writer *w, uint32_t tid, const struct ckpt_sigqueue *q)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_u32(&b, tid);
	sm_buf_put_u32(&b, q->n);
	for (uint32_t i = 0; i < q->n; i++)
		sm_buf_put_bytes(&b, q->info[i].b, CKPT_SIGINFO_SIZE);
	r = sm_image_write_buf(w, CKPT_SEC_TASK_PENDING, &b);
	sm_buf_free(&b);
	return r;
}

int ckpt_task_write(struct sm_image_writer *w, const struct ckpt_task *t)
{
	struct sm_buf b;
	int r = 0;

	for (uint32_t type = CKPT_SEC_TASK_SIGACTS; type <= CKPT_SEC_TASK_CREDS && r >= 0; type++) {
		sm_buf_init(&b);
		switch (type) {
		case CKPT_SEC_TASK_SIGACTS:
			if (!(t->have & CKPT_TASK_HAVE_SIGACTS))
				break;
			sm_buf_put_u32(&b, CKPT_TASK_NSIG);
			for (int i = 0; i < CKPT_TASK_NSIG; i++) {
				sm_buf_put_u64(&b, t->act[i].handler);
				sm_buf_put_u64(&b, t->act[i].flags);
				sm_buf_put_u64(&b, t->act[i].restorer);
				sm_buf_put_u64(&b, t->act[i].mask);
			}
			r = sm_image_write_buf(w, (uint16_t)type, &b);
			break;
		case CKPT_SEC_TASK_ALTSTACK:
			if (!(t->have & CKPT_TASK_HAVE_ALTSTACK))
				break;
			sm_buf_put_u64(&b, t->altstack.sp);
			sm_buf_put_u64(&b, t->altstack.size);
			sm_buf_put_u32(&b, t->altstack.flags);
			r = sm_image_write_buf(w, (uint16_t)type, &b);
			break;
		case CKPT_SEC_TASK_PENDING:
			if (t->have & CKPT_TASK_HAVE_PENDING_THREAD)
				r = write_queue(w, t->tid, &t->thread);
			if (r >= 0 && (t->have & CKPT_TASK_HAVE_PENDING_SHARED))
				r = write_queue(w, 0, &t->shared);
			break;
		case CKPT_SEC_TASK_ITIMERS:
			if (!(t->have & CKPT_TASK_HAVE_ITIMERS))
				break;
			for (int i = 0; i < 3; i++) {
				sm_buf_put_u64(&b, t->itimer[i].interval_sec);
				sm_buf_put_u64(&b, t->itimer[i].interval_usec);
				sm_buf_put_u64(&b, t->itimer[i].value_sec);
				sm_buf_put_u64(&b, t->itimer[i].value_usec);
			}
			r = sm_image_write_buf(w, (uint16_t)type, &b);
			break;
		case CKPT_SEC_TASK_TIMERS:
			if (!(t->have & CKPT_TASK_HAVE_TIMERS))
				break;
			sm_buf_put_u32(&b, t->n_timers);
			for (uint32_t i = 0; i < t->n_timers; i++) {
				const struct ckpt_ptimer *pt = &t->timers[i];

				sm_buf_put_u32(&b, (uint32_t)pt->id);
				sm_buf_put_u32(&b, (uint32_t)pt->clock);
				sm_buf_put_u32(&b, pt->notify);
				sm_buf_put_u32(&b, pt->signo);
				sm_buf_put_u64(&b, pt->sigval);
				sm_buf_put_u64(&b, pt->interval_sec);
				sm_buf_put_u64(&b, pt->interval_nsec);
				sm_buf_put_u64(&b, pt->value_sec);
				sm_buf_put_u64(&b, pt->value_nsec);
			}
			r = sm_image_write_buf(w, (uint16_t)type, &b);
			break;
		case CKPT_SEC_TASK_RLIMITS:
			if (!(t->have & CKPT_TASK_HAVE_RLIMITS))
				break;
			sm_buf_put_u32(&b, CKPT_TASK_NRLIMITS);
			for (int i = 0; i < CKPT_TASK_NRLIMITS; i++) {
				sm_buf_put_u64(&b, t->rlim[i][0]);
				sm_buf_put_u64(&b, t->rlim[i][1]);
			}
			r = sm_image_write_buf(w, (uint16_t)type, &b);
			break;
		case CKPT_SEC_TASK_PROC:
			if (!(t->have & CKPT_TASK_HAVE_PROC))
				break;
			sm_buf_put_u32(&b, t->umask);
			sm_buf_put_u32(&b, t->personality);
			sm_buf_put_u32(&b, t->flags);
			sm_buf_put_blob(&b, t->cwd, strnlen(t->cwd, sizeof(t->cwd)));
			r = sm_image_write_buf(w, (uint16_t)type, &b);
			break;
		case CKPT_SEC_TASK_CREDS:
			if (!(t->have & CKPT_TASK_HAVE_CREDS))
				break;
			for (int i = 0; i < 4; i++)
				sm_buf_put_u32(&b, t->creds.uid[i]);
			for (int i = 0; i < 4; i++)
				sm_buf_put_u32(&b, t->creds.gid[i]);
			sm_buf_put_u32(&b, t->creds.n_groups);
			for (uint32_t i = 0; i < t->creds.n_groups && i < CKPT_MAX_GROUPS; i++)
				sm_buf_put_u32(&b, t->creds.groups[i]);
			r = sm_image_write_buf(w, (uint16_t)type, &b);
			break;
		}
		sm_buf_free(&b);
	}
	return r < 0 ? r : 0;
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

bool ckpt_task_owns(uint32_t type)
{
	return type >= CKPT_SEC_TASK_SIGACTS && type <= CKPT_SEC_TASK_CREDS;
}

static int read_sigacts(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "signal handlers";
	uint32_t n = sm_cur_u32(c);

	if (!c->err && n != CKPT_TASK_NSIG)
		return sm_cur_fail(c, what, "%u signals, expected %d", n, CKPT_TASK_NSIG);
	for (int i = 0; i < CKPT_TASK_NSIG; i++) {
		t->act[i].handler = sm_cur_u64(c);
		t->act[i].flags = sm_cur_u64(c);
		t->act[i].restorer = sm_cur_u64(c);
		t->act[i].mask = sm_cur_u64(c);
	}
	if (sm_cur_check(c, what, 1) < 0)
		return c->err;
	if (t->act[SIGKILL - 1].handler || t->act[SIGSTOP - 1].handler)
		return sm_cur_fail(c, what, "SIGKILL or SIGSTOP has a handler");
	return 0;
}

static int read_altstack(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "alternate signal stack";

	t->altstack.sp = sm_cur_u64(c);
	t->altstack.size = sm_cur_u64(c);
	t->altstack.flags = sm_cur_u32(c);
	if (sm_cur_check(c, what, 1) < 0)
		return c->err;
	if (t->altstack.flags & ~(uint32_t)(SS_ONSTACK | SS_DISABLE | SS_AUTODISARM))
		return sm_cur_fail(c, what, "flags %#x are invalid", t->altstack.flags);
	if (!(t->altstack.flags & SS_DISABLE) &&
	    (t->altstack.size == 0 || t->altstack.sp + t->altstack.size < t->altstack.sp))
		return sm_cur_fail(c, what, "a stack of %" PRIu64 " bytes at %#" PRIx64 " is invalid", t->altstack.size,
				   t->altstack.sp);
	return 0;
}

static int read_pending(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "pending signals";
	uint32_t tid = sm_cur_u32(c), n = sm_cur_u32(c);
	struct ckpt_sigqueue *q = tid ? &t->thread : &t->shared;
	uint32_t bit = tid ? CKPT_TASK_HAVE_PENDING_THREAD : CKPT_TASK_HAVE_PENDING_SHARED;
	const uint8_t *p;

	if (c->err)
		return sm_cur_check(c, what, 1);
	if (t->have & bit)
		return sm_cur_fail(c, what, tid ? "a second thread's queue (only single-threaded images are supported)"
						: "a second process-wide queue");
	if (n > CKPT_TASK_MAX_PENDING)
		return sm_cur_fail(c, what, "%u signals, more than %u", n, CKPT_TASK_MAX_PENDING);
	p = sm_cur_bytes(c, (size_t)n * CKPT_SIGINFO_SIZE);
	if (sm_cur_check(c, what, 1) < 0)
		return c->err;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t sig;

		memcpy(&sig, p + (size_t)i * CKPT_SIGINFO_SIZE, 4);
		if (sig < 1 || sig > CKPT_TASK_NSIG || sig == SIGKILL || sig == SIGSTOP)
			return sm_cur_fail(c, what, "entry %u is signal %u", i, sig);
	}
	if (n) {
		q->info = malloc((size_t)n * sizeof(*q->info));
		if (!q->info)
			return -ENOMEM;
		memcpy(q->info, p, (size_t)n * CKPT_SIGINFO_SIZE);
	}
	q->n = n;
	if (tid)
		t->tid = tid;
	t->have |= bit;
	return 0;
}

static int read_itimers(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "interval timers";

	for (int i = 0; i < 3; i++) {
		struct ckpt_itimer *it = &t->itimer[i];

		it->interval_sec = sm_cur_u64(c);
		it->interval_usec = sm_cur_u64(c);
		it->value_sec = sm_cur_u64(c);
		it->value_usec = sm_cur_u64(c);
	}
	if (sm_cur_check(c, what, 1) < 0)
		return c->err;
	for (int i = 0; i < 3; i++) {
		const struct ckpt_itimer *it = &t->itimer[i];

		if (it->interval_usec >= USEC_PER_SEC || it->value_usec >= USEC_PER_SEC ||
		    it->interval_sec > INT64_MAX || it->value_sec > INT64_MAX)
			return sm_cur_fail(c, what, "timer %d holds an invalid time", i);
	}
	return 0;
}

static int read_timers(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "POSIX timers";
	uint32_t n = sm_cur_u32(c);

	if (c->err)
		return sm_cur_check(c, what, 1);
	if (n > CKPT_TASK_MAX_TIMERS)
		return sm_cur_fail(c, what, "%u timers, more than %u", n, CKPT_TASK_MAX_TIMERS);
	/* 56 bytes each: bound n by the section before allocating */
	if (sm_cur_remaining(c) != (size_t)n * 56)
		return sm_cur_fail(c, what, "%u timers in %zu bytes", n, sm_cur_remaining(c));
	if (n) {
		t->timers = calloc(n, sizeof(*t->timers));
		if (!t->timers)
			return -ENOMEM;
	}
	t->n_timers = n;
	for (uint32_t i = 0; i < n; i++) {
		struct ckpt_ptimer *pt = &t->timers[i];

		pt->id = (int32_t)sm_cur_u32(c);
		pt->clock = (int32_t)sm_cur_u32(c);
		pt->notify = sm_cur_u32(c);
		pt->signo = sm_cur_u32(c);
		pt->sigval = sm_cur_u64(c);
		pt->interval_sec = sm_cur_u64(c);
		pt->interval_nsec = sm_cur_u64(c);
		pt->value_sec = sm_cur_u64(c);
		pt->value_nsec = sm_cur_u64(c);
		if (c->err)
			break;
		if (pt->id < 0 || (i && pt->id <= t->timers[i - 1].id))
			return sm_cur_fail(c, what, "timer ids are not ascending (%d)", pt->id);
		if (!clock_storable(pt->clock))
			return sm_cur_fail(c, what, "timer %d: clock %d cannot be restored", pt->id, pt->clock);
		if (pt->notify > CKPT_TIMER_NONE || pt->signo < 1 || pt->signo > CKPT_TASK_NSIG)
			return sm_cur_fail(c, what, "timer %d: notification %u with signal %u is invalid", pt->id,
					   pt->notify, pt->signo);
		if (pt->interval_nsec >= NSEC_PER_SEC || pt->value_nsec >= NSEC_PER_SEC ||
		    pt->interval_sec > INT64_MAX || pt->value_sec > INT64_MAX)
			return sm_cur_fail(c, what, "timer %d holds an invalid time", pt->id);
	}
	return sm_cur_check(c, what, 1);
}

static int read_rlimits(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "resource limits";
	uint32_t n = sm_cur_u32(c);

	if (!c->err && n != CKPT_TASK_NRLIMITS)
		return sm_cur_fail(c, what, "%u limits, this sockmig knows %d", n, CKPT_TASK_NRLIMITS);
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++) {
		t->rlim[i][0] = sm_cur_u64(c);
		t->rlim[i][1] = sm_cur_u64(c);
	}
	if (sm_cur_check(c, what, 1) < 0)
		return c->err;
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++)
		if (t->rlim[i][0] > t->rlim[i][1])
			return sm_cur_fail(c, what, "RLIMIT_%s: soft limit above the hard one", rlimit_names[i]);
	return 0;
}

static int read_proc(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "process attributes";
	const uint8_t *p;
	size_t n;

	t->umask = sm_cur_u32(c);
	t->personality = sm_cur_u32(c);
	t->flags = sm_cur_u32(c);
	p = sm_cur_blob(c, &n);
	if (sm_cur_check(c, what, 1) < 0)
		return c->err;
	if (t->umask & ~0777u)
		return sm_cur_fail(c, what, "umask %#o is invalid", t->umask);
	if (t->personality == 0xffffffffu)
		return sm_cur_fail(c, what, "personality 0xffffffff is invalid");
	if (t->flags & ~(uint32_t)CKPT_TASK_NO_NEW_PRIVS)
		return sm_cur_fail(c, what, "unknown flags %#x", t->flags);
	if (n == 0 || n >= sizeof(t->cwd) || p[0] != '/' || memchr(p, 0, n))
		return sm_cur_fail(c, what, "the working directory is not an absolute path");
	memcpy(t->cwd, p, n);
	t->cwd[n] = 0;
	return 0;
}

static int read_creds_section(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "credentials";

	for (int i = 0; i < 4; i++)
		t->creds.uid[i] = sm_cur_u32(c);
	for (int i = 0; i < 4; i++)
		t->creds.gid[i] = sm_cur_u32(c);
	t->creds.n_groups = sm_cur_u32(c);
	if (!c->err && t->creds.n_groups > CKPT_MAX_GROUPS) {
		uint32_t n = t->creds.n_groups;

		t->creds.n_groups = 0;
		return sm_cur_fail(c, what, "%u groups, more than %d", n, CKPT_MAX_GROUPS);
	}
	for (uint32_t i = 0; i < t->creds.n_groups && !c->err; i++)
		t->creds.groups[i] = sm_cur_u32(c);
	return sm_cur_check(c, what, 1);
}

int ckpt_task_read_section(struct ckpt_task **tp, uint32_t type, struct sm_cursor *c)
{
	static const uint32_t bits[] = {
		[CKPT_SEC_TASK_SIGACTS - CKPT_SEC_TASK_SIGACTS] = CKPT_TASK_HAVE_SIGACTS,
		[CKPT_SEC_TASK_ALTSTACK - CKPT_SEC_TASK_SIGACTS] = CKPT_TASK_HAVE_ALTSTACK,
		[CKPT_SEC_TASK_PENDING - CKPT_SEC_TASK_SIGACTS] = 0, /* per queue, in read_pending */
		[CKPT_SEC_TASK_ITIMERS - CKPT_SEC_TASK_SIGACTS] = CKPT_TASK_HAVE_ITIMERS,
		[CKPT_SEC_TASK_TIMERS - CKPT_SEC_TASK_SIGACTS] = CKPT_TASK_HAVE_TIMERS,
		[CKPT_SEC_TASK_RLIMITS - CKPT_SEC_TASK_SIGACTS] = CKPT_TASK_HAVE_RLIMITS,
		[CKPT_SEC_TASK_PROC - CKPT_SEC_TASK_SIGACTS] = CKPT_TASK_HAVE_PROC,
		[CKPT_SEC_TASK_CREDS - CKPT_SEC_TASK_SIGACTS] = CKPT_TASK_HAVE_CREDS,
	};
	struct ckpt_task *t;
	uint32_t bit;
	int r;

	if (!ckpt_task_owns(type))
		return sm_cur_fail(c, "process state", "section type %#x is not a process state section", type);
	if (!*tp) {
		*tp = calloc(1, sizeof(**tp));
		if (!*tp)
			return -ENOMEM;
	}
	t = *tp;
	bit = bits[type - CKPT_SEC_TASK_SIGACTS];
	if (t->have & bit)
		return sm_cur_fail(c, "process state", "a second section of type %#x", type);
	switch (type) {
	case CKPT_SEC_TASK_SIGACTS:
		r = read_sigacts(c, t);
		break;
	case CKPT_SEC_TASK_ALTSTACK:
		r = read_altstack(c, t);
		break;
	case CKPT_SEC_TASK_PENDING:
		return read_pending(c, t);
	case CKPT_SEC_TASK_ITIMERS:
		r = read_itimers(c, t);
		break;
	case CKPT_SEC_TASK_TIMERS:
		r = read_timers(c, t);
		break;
	case CKPT_SEC_TASK_RLIMITS:
		r = read_rlimits(c, t);
		break;
	case CKPT_SEC_TASK_PROC:
		r = read_proc(c, t);
		break;
	default:
		r = read_creds_section(c, t);
		break;
	}
	if (r == 0)
		t->have |= bit;
	return r;
}

int ckpt_task_validate(const struct ckpt_task *t)
{
	static const char *const names[] = { "signal handlers", "alternate signal stack", "thread's pending signals",
					     "process-wide pending signals", "interval timers", "POSIX timers",
					     "resource limits", "process attributes", "credentials" };
	uint32_t missing;

	if (!t) /* an image of the first slice: nothing of ours */
		return 0;
	missing = CKPT_TASK_HAVE_ALL & ~t->have;
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
		if (missing & (1u << i))
			return sm_fail(-EBADMSG, "the image's process state is incomplete: it has no %s", names[i]);
	return 0;
}

void ckpt_task_free(struct ckpt_task *t)
{
	if (!t)
		return;
	free(t->timers);
	free(t->thread.info);
	free(t->shared.info);
	free(t);
}

const struct ckpt_creds *ckpt_task_creds(const struct ckpt_task *t)
{
	return t && (t->have & CKPT_TASK_HAVE_CREDS) ? &t->creds : NULL;
}

/* ---- restore ---- */

int ckpt_task_prepare(const struct ckpt_task *t)
{
	struct stat st;

	if (!t)
		return 0;
	if (stat(t->cwd, &st) < 0)
		return sm_fail(-errno, "the image's working directory %s: %s", t->cwd, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return sm_fail(-ENOTDIR, "the image's working directory %s is not a directory", t->cwd);
	return 0;
}

/* The child may not touch errno, malloc or locks: plain syscalls. */
static long sys6(long nr, long a, long b, long c, long d, long e, long f)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define sys(nr, a, b, c, d) sys6((nr), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

struct ksigevent { /* the kernel's struct sigevent, 64 bytes */
	uint64_t value;
	int32_t signo;
	int32_t notify;
	int32_t pad[12];
};

static long create_timer(const struct ckpt_ptimer *pt, int32_t *id)
{
	struct ksigevent sev = { .value = pt->sigval, .signo = (int32_t)pt->signo, .notify = (int32_t)pt->notify };

	return sys(SYS_timer_create, pt->clock, &sev, id, 0);
}

/* Each timer with its id: the kernel takes the id we ask for once
 * PR_TIMER_CREATE_RESTORE_IDS is on (6.17+). Before that, ids are handed out
 * in increasing order from 0 in a new process: create and delete timers until
 * the next one gets the id. */
static long create_timers(const struct ckpt_task *t, const char **ret_what)
{
	bool by_id = sys(SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0) == 0;
	long r = 0;

	for (uint32_t i = 0; i < t->n_timers && r == 0; i++) {
		const struct ckpt_ptimer *pt = &t->timers[i];
		int32_t id = pt->id;

		*ret_what = "timer_create";
		if (by_id) {
			r = create_timer(pt, &id);
			if (r == 0 && id != pt->id)
				r = -EINVAL;
		} else {
			for (int k = 0;; k++) {
				id = -1;
				r = create_timer(pt, &id);
				if (r < 0 || id == pt->id)
					break;
				sys(SYS_timer_delete, id, 0, 0, 0);
				if (id > pt->id || k == TIMER_WALK_MAX) {
					*ret_what = "timer_create: the timer id cannot be reached";
					r = -EBUSY;
					break;
				}
			}
		}
		if (r == 0 && (pt->value_sec || pt->value_nsec)) {
			struct itimerspec its = {
				.it_interval = { (time_t)pt->interval_sec, (long)pt->interval_nsec },
				.it_value = { (time_t)pt->value_sec, (long)pt->value_nsec },
			};

			*ret_what = "timer_settime";
			r = sys(SYS_timer_settime, id, 0, &its, 0);
		}
	}
	if (by_id)
		sys(SYS_prctl, PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_OFF, 0, 0);
	return r;
}

int ckpt_task_apply_child(const struct ckpt_task *t, const char **ret_what)
{
	long pid, r = 0;

	if (!t)
		return 0;
	/* Handlers first: setting SIG_IGN would discard a pending signal. The
	 * handlers' code is mapped later by the blob; no signal can be
	 * delivered before, all are blocked. */
	*ret_what = "rt_sigaction";
	for (int sig = 1; sig <= CKPT_TASK_NSIG && r == 0; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			r = sys(SYS_rt_sigaction, sig, &t->act[sig - 1], 0, 8);
	if (r == 0) {
		struct kstack ks = { 0, SS_DISABLE, 0, 0 };

		if (!(t->altstack.flags & SS_DISABLE))
			ks = (struct kstack){ t->altstack.sp, (int32_t)(t->altstack.flags & SS_AUTODISARM), 0,
					      t->altstack.size };
		*ret_what = "sigaltstack";
		r = sys(SYS_sigaltstack, &ks, 0, 0, 0);
	}
	if (r == 0) {
		sys(SYS_umask, t->umask, 0, 0, 0);
		*ret_what = "chdir to the working directory";
		r = sys(SYS_chdir, t->cwd, 0, 0, 0);
	}
	if (r == 0) {
		*ret_what = "personality";
		r = sys(SYS_personality, t->personality, 0, 0, 0);
		r = r < 0 ? r : 0;
	}
	if (r == 0 && (t->flags & CKPT_TASK_NO_NEW_PRIVS)) {
		*ret_what = "PR_SET_NO_NEW_PRIVS";
		r = sys(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0);
	}
	for (int w = 0; w < 3 && r == 0; w++) {
		const struct ckpt_itimer *it = &t->itimer[w];
		struct itimerval v = {
			.it_interval = { (time_t)it->interval_sec, (suseconds_t)it->interval_usec },
			.it_value = { (time_t)it->value_sec, (suseconds_t)it->value_usec },
		};

		*ret_what = "setitimer";
		if (it->value_sec || it->value_usec) /* a fork starts with none */
			r = sys(SYS_setitimer, w, &v, 0, 0);
	}
	if (r == 0)
		r = create_timers(t, ret_what);
	/* Pending signals last, in their order, to itself: the kernel lets a
	 * process queue any siginfo to itself. */
	pid = sys(SYS_getpid, 0, 0, 0, 0);
	*ret_what = "rt_tgsigqueueinfo";
	for (uint32_t i = 0; i < t->thread.n && r == 0; i++)
		r = sys6(SYS_rt_tgsigqueueinfo, pid, pid, (long)siginfo_signo(&t->thread.info[i]),
			 (long)t->thread.info[i].b, 0, 0);
	*ret_what = "rt_sigqueueinfo";
	for (uint32_t i = 0; i < t->shared.n && r == 0; i++)
		r = sys(SYS_rt_sigqueueinfo, pid, siginfo_signo(&t->shared.info[i]), t->shared.info[i].b, 0);
	if (r == 0)
		*ret_what = NULL;
	return (int)r;
}

int ckpt_task_apply_parent(const struct ckpt_task *t, pid_t child)
{
	if (!t)
		return 0;
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++) {
		struct rlimit rl = { t->rlim[i][0], t->rlim[i][1] };

		if (prlimit(child, i, &rl, NULL) < 0)
			return sm_fail(-errno, "restored process %d: cannot set its RLIMIT_%s to %" PRIu64 "/%" PRIu64 ": %s",
				       (int)child, rlimit_names[i], t->rlim[i][0], t->rlim[i][1], strerror(errno));
	}
	return 0;
}
