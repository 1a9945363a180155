/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Putting the per-process state back (ckpt_task.h): the forked child
 * installs everything on itself with raw syscalls while all its signals are
 * blocked; only the rlimits wait for the parent (after the blob: a small
 * RLIMIT_AS or RLIMIT_NOFILE must not make the restorer's own mappings and
 * fds fail).
 */
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include "ckpt_task_internal.h"
#include "util.h"

#ifndef PR_TIMER_CREATE_RESTORE_IDS /* Linux 6.17 */
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define PR_TIMER_CREATE_RESTORE_IDS_ON 1
#endif
/* The fallback that walks timer ids (kernels without the prctl): how many
 * throw-away timers it may create. */
#define TIMER_WALK_MAX 65536

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
		r = sys6(SYS_rt_tgsigqueueinfo, pid, pid, (long)ckpt_siginfo_signo(&t->thread.info[i]),
			 (long)t->thread.info[i].b, 0, 0);
	*ret_what = "rt_sigqueueinfo";
	for (uint32_t i = 0; i < t->shared.n && r == 0; i++)
		r = sys(SYS_rt_sigqueueinfo, pid, ckpt_siginfo_signo(&t->shared.info[i]), t->shared.info[i].b, 0);
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
				       (int)child, ckpt_task_rlimit_names[i], t->rlim[i][0], t->rlim[i][1], strerror(errno));
	}
	return 0;
}
