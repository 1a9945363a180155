/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Restore, second half: the child that becomes the process, the parent that
 * drives it with ptrace, and the pid namespace that lets it keep its pid.
 *
 * The pid: on D the original may still hold it (a two-phase move keeps the
 * original frozen until the restore is confirmed, and lab nodes share one pid
 * namespace), and any pid may be taken by something else. So, by default,
 * the process gets a pid namespace of its own: the caller clone3()s an init
 * (CLONE_NEWPID), which clone3()s the process with set_tid = its old pid,
 * drives the restore (it is the tracer: PTRACE_TRACEME goes to the parent)
 * and reports the result over a pipe. Then the init closes everything and
 * only reaps, exiting with the process's status when it ends. getpid() in the
 * process returns what it returned on S; from outside it has another pid.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

#include "ckpt_fd.h"
#include "ckpt_restore.h"
#include "ckpt_task.h"
#include "util.h"

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef PTRACE_SETSIGMASK
#define PTRACE_SETSIGMASK 0x420b
#endif

/* How long the caller waits for the init's report (the whole restore). */
#define SPAWN_TIMEOUT_MS 60000

/* The child's reason, for the parent: no stdio in the child. */
static void child_fail(struct sockmig_restore *rs, const char *what, int err)
{
	char *p = rs->child_err, *end = rs->child_err + CKPT_CHILD_ERR - 16;
	const char *e = strerrorname_np(err > 0 ? err : -err);

	for (const char *q = what ? what : "setup"; *q && p < end; q++)
		*p++ = *q;
	if (e && p < end) {
		*p++ = ':';
		*p++ = ' ';
		for (const char *q = e; *q && p < end; q++)
			*p++ = *q;
	}
	*p = 0;
	_exit(126);
}

/* In the child, before it jumps: only async-signal-safe calls (the caller may
 * have threads). Never returns. */
static void __attribute__((noreturn)) child_run(struct sockmig_restore *rs)
{
	uint64_t all = ~0ull;
	struct sigaction sa = { .sa_handler = SIG_DFL };
	stack_t ss = { .ss_flags = SS_DISABLE };
	const char *what = NULL;
	int lo = 0, r;

	if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
		child_fail(rs, "PTRACE_TRACEME", errno);
	/* every signal blocked until the parent sets the image's mask: the
	 * handlers point into memory the blob has yet to map */
	if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8) < 0)
		child_fail(rs, "rt_sigprocmask", errno);
	for (int sig = 1; sig < 65; sig++)
		sigaction(sig, &sa, NULL);
	sigaltstack(&ss, NULL);
	if (rs->im.task && (r = ckpt_task_apply_child(rs->im.task, &what)) < 0)
		child_fail(rs, what, r);
	if ((r = ckpt_fd_plan_apply_child(rs->plan, &what)) < 0)
		child_fail(rs, what, r);
	/* keep[] is sorted: close every gap */
	for (size_t i = 0; i < rs->n_keep; i++) {
		if (rs->keep[i] > lo)
			syscall(SYS_close_range, lo, rs->keep[i] - 1, 0);
		lo = rs->keep[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0u, 0);
	raise(SIGSTOP);
	__asm__ volatile("jmp *%2" : : "D"(rs->blob_base + rs->code_len), "S"(rs->n_ops), "r"(rs->blob_base) : "memory");
	__builtin_unreachable();
}

static int wait_trap(pid_t pid, int *ret_sig)
{
	int status;

	for (;;) {
		pid_t w = waitpid(pid, &status, __WALL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		break;
	}
	if (!WIFSTOPPED(status))
		return WIFSIGNALED(status) ? -WTERMSIG(status) - 1000 : -ECHILD;
	*ret_sig = WSTOPSIG(status);
	return 0;
}

/* The general registers: the saved ones, with a syscall that the stop
 * interrupted made to start again (the kernel would have done it on resume;
 * -ERESTART_RESTARTBLOCK has no restart block in the new process, so the
 * original syscall is issued again with its arguments, which are still in
 * the registers: a nanosleep sleeps its whole interval again). */
static void final_regs(const struct ckpt_thread *t, struct user_regs_struct *regs)
{
	memcpy(regs, t->regs, sizeof(*regs));
	if ((int64_t)regs->orig_rax >= 0) {
		switch ((int64_t)regs->rax) {
		case -512: /* ERESTARTSYS */
		case -513: /* ERESTARTNOINTR */
		case -514: /* ERESTARTNOHAND */
		case -516: /* ERESTART_RESTARTBLOCK */
			regs->rax = regs->orig_rax;
			regs->rip -= 2;
			break;
		}
	}
	regs->orig_rax = (unsigned long long)-1;
}

static int drive_child(struct sockmig_restore *rs, pid_t pid)
{
	uint64_t base = rs->blob_base;
	struct user_regs_struct regs;
	struct iovec iov;
	uint64_t rseq_cfg[3] = { 0 };
	int sig, r;

	r = wait_trap(pid, &sig);
	if (r < 0 || sig != SIGSTOP)
		return sm_fail(-ECHILD, "the restored process could not be set up: %s",
			       rs->child_err[0] ? rs->child_err : "it died");
	/* op 0: the child inherited our rseq registration; it points into TLS
	 * that the blob unmaps, so it must go first */
	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, (void *)sizeof(rseq_cfg), rseq_cfg) >= 0 && rseq_cfg[0]) {
		struct ckpt_op o = { SYS_rseq, { rseq_cfg[0], (uint32_t)rseq_cfg[1], 1 /* RSEQ_FLAG_UNREGISTER */,
						 rseq_cfg[1] >> 32, 0, 0 }, 0, CKPT_OP_EQ };
		uint64_t addr = base + rs->code_len;

		for (size_t i = 0; i < sizeof(o) / 8; i++)
			if (ptrace(PTRACE_POKEDATA, pid, (void *)(addr + i * 8), (void *)((uint64_t *)&o)[i]) < 0)
				return sm_fail(-errno, "restorer process %d: cannot patch it: %s", (int)pid, strerror(errno));
	}
	if (ptrace(PTRACE_CONT, pid, 0, 0) < 0)
		return sm_fail(-errno, "restorer process %d: cannot continue it: %s", (int)pid, strerror(errno));
	r = wait_trap(pid, &sig);
	if (r < 0)
		return sm_fail(-ECHILD, "the restorer process %d died (signal %d) while it rebuilt the memory",
			       (int)pid, r <= -1000 ? -r - 1000 : 0);
	if (sig != SIGTRAP || ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0)
		return sm_fail(-EIO, "the restorer process %d stopped with signal %d", (int)pid, sig);
	if (regs.r15 != 0) {
		size_t i = regs.r14 < rs->n_ops ? regs.r14 : 0;
		int64_t res = (int64_t)regs.rax;

		return sm_fail(res < 0 && res > -4096 ? (int)res : -EIO,
			       "restore failed at step %zu (%s at %#" PRIx64 "): %s", i, rs->op_what[i], rs->op_addr[i],
			       res < 0 && res > -4096 ? strerror((int)-res) : "unexpected result");
	}
	/* the blob unmaps itself: rip to its syscall instruction, stop at the exit */
	regs.rax = SYS_munmap;
	regs.rdi = base;
	regs.rsi = rs->blob_len;
	regs.orig_rax = (unsigned long long)-1;
	regs.rip = base + (uint64_t)(ckpt_blob_syscall - ckpt_blob_start);
	if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0 || ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0 ||
	    wait_trap(pid, &sig) < 0 || ptrace(PTRACE_SYSCALL, pid, 0, 0) < 0 || wait_trap(pid, &sig) < 0 ||
	    ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0 || regs.rax != 0)
		return sm_fail(-EIO, "the restorer process %d could not drop the restorer", (int)pid);

	final_regs(&rs->im.thread, &regs);
	iov = (struct iovec){ rs->im.thread.xstate, rs->im.thread.xstate_len };
	if (ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov) < 0)
		return sm_fail(-errno, "restored process %d: cannot set its FPU/AVX state: %s", (int)pid, strerror(errno));
	if (ptrace(PTRACE_SETREGS, pid, 0, &regs) < 0)
		return sm_fail(-errno, "restored process %d: cannot set its registers: %s", (int)pid, strerror(errno));
	if (rs->im.task) {
		r = ckpt_task_apply_parent(rs->im.task, pid);
		if (r < 0)
			return r;
	}
	/* the blocked mask last: the child ran with every signal blocked, so
	 * the pending ones it queued to itself arrive only now, after DETACH */
	if (ptrace(PTRACE_SETSIGMASK, pid, (void *)8, &rs->im.thread.sigmask) < 0)
		return sm_fail(-errno, "restored process %d: cannot set its blocked signals: %s", (int)pid,
			       strerror(errno));
	return 0;
}

static int let_run(pid_t pid)
{
	if (ptrace(PTRACE_DETACH, pid, 0, 0) < 0)
		return sm_fail(-errno, "restored process %d: cannot let it run: %s", (int)pid, strerror(errno));
	return 0;
}


static pid_t sys_clone3(struct clone_args *a)
{
	return (pid_t)syscall(SYS_clone3, a, sizeof(*a));
}

struct spawn_report {
	int32_t err; /* 0 or -errno */
	int32_t own_pid;
	char sentence[512];
};

static void report(int fd, struct spawn_report *rep)
{
	if (rep->err < 0)
		snprintf(rep->sentence, sizeof(rep->sentence), "%s", sockmig_error());
	(void)!write(fd, rep, sizeof(*rep));
}

/* The namespace's init: make the process with its pid, drive its restore,
 * report, wait for the word to let it run (anything else, or the caller
 * gone: kill it), report again, then reap until it ends. Never returns. */
static void __attribute__((noreturn)) ns_init(struct sockmig_restore *rs, int report_fd, int go_fd)
{
	struct spawn_report rep = { 0 };
	pid_t own = (pid_t)rs->im.info.pid, child;
	struct clone_args a = { .exit_signal = SIGCHLD };
	char go = 0;
	int status;

	prctl(PR_SET_NAME, "sockmig-init");
	/* pid 1 is ours; an image of a namespace's init gets the next free */
	if (own > 1) {
		a.set_tid = (uint64_t)(uintptr_t)&own;
		a.set_tid_size = 1;
	}
	child = sys_clone3(&a);
	if (child == 0)
		child_run(rs);
	if (child < 0) {
		rep.err = sm_fail(-errno, "cannot give the restored process its pid %d: %s", (int)own, strerror(errno));
	} else {
		rep.own_pid = child;
		rep.err = drive_child(rs, child);
	}
	report(report_fd, &rep);
	if (rep.err >= 0 && (sm_read_full(go_fd, &go, 1) < 0 || go != 'g'))
		rep.err = -ECANCELED;
	if (rep.err >= 0) {
		rep.err = let_run(child);
		report(report_fd, &rep);
	}
	/* Our copy of the process's pages (it has its own, moved into place
	 * by the blob): gone now that it runs, not before, so that the
	 * unmapping (~0.1 s a GiB here) is never part of the freeze. Until
	 * then its first write to a page copies it. */
	ckpt_restore_drop_regions(rs);
	if (rep.err < 0) {
		if (child > 0) {
			kill(child, SIGKILL);
			waitpid(child, &status, __WALL);
		}
		_exit(1);
	}
	syscall(SYS_close_range, 0, ~0u, 0);
	for (;;) {
		pid_t w = waitpid(-1, &status, __WALL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			_exit(0);
		if (w == child)
			_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	}
}

/* The caller's pid of the init's only child. */
static pid_t child_of(pid_t init)
{
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)init, (int)init);
	if (sm_read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	return (pid_t)atoi(buf);
}

static int read_report(struct sockmig_restore *rs, struct spawn_report *rep)
{
	struct pollfd pfd = { .fd = rs->report_fd, .events = POLLIN };

	if (poll(&pfd, 1, SPAWN_TIMEOUT_MS) <= 0 || sm_read_full(rs->report_fd, rep, sizeof(*rep)) < 0)
		return sm_fail(-ETIMEDOUT, "the restore did not finish within %d s", SPAWN_TIMEOUT_MS / 1000);
	rep->sentence[sizeof(rep->sentence) - 1] = 0;
	if (rep->err < 0)
		return sm_fail(rep->err, "%s", rep->sentence);
	return 0;
}

int ckpt_spawn(struct sockmig_restore *rs, const struct sockmig_restore_opts *o, struct sockmig_restored_proc *ret)
{
	struct clone_args a = { .flags = CLONE_NEWPID, .exit_signal = SIGCHLD };
	struct spawn_report rep;
	int rp[2], gp[2], r;
	pid_t init, pid;

	rs->child_err[0] = 0;
	if (o->no_pidns) {
		pid = fork();
		if (pid < 0)
			return sm_fail(-errno, "cannot fork the restorer: %s", strerror(errno));
		if (pid == 0)
			child_run(rs);
		rs->held = pid;
		r = drive_child(rs, pid);
		if (r < 0)
			return r; /* sockmig_restore_free() kills it */
		*ret = (struct sockmig_restored_proc){ pid, pid, pid };
		return 0;
	}

	if (pipe2(rp, O_CLOEXEC) < 0)
		return sm_fail(-errno, "cannot make a pipe: %s", strerror(errno));
	if (pipe2(gp, O_CLOEXEC) < 0) {
		close(rp[0]);
		close(rp[1]);
		return sm_fail(-errno, "cannot make a pipe: %s", strerror(errno));
	}
	init = sys_clone3(&a);
	if (init == 0) {
		close(rp[0]);
		close(gp[1]);
		ns_init(rs, rp[1], gp[0]);
	}
	close(rp[1]);
	close(gp[0]);
	rs->report_fd = rp[0];
	rs->go_fd = gp[1];
	if (init < 0)
		return sm_fail(-errno, "cannot make a pid namespace for the restored process: %s", strerror(errno));
	rs->init = init;
	r = read_report(rs, &rep);
	if (r < 0) {
		/* it ends by itself after a failure it reported; not after a
		 * timeout */
		if (r == -ETIMEDOUT)
			kill(init, SIGKILL);
		waitpid(init, NULL, 0);
		rs->init = 0;
		return r;
	}
	pid = child_of(init);
	if (pid <= 0)
		return sm_fail(-ESRCH, "the restored process ended at once");
	rs->held = pid;
	*ret = (struct sockmig_restored_proc){ pid, rep.own_pid, init };
	return 0;
}

int sockmig_restore_release(struct sockmig_restore *rs)
{
	struct spawn_report rep;
	int r;

	if (rs->held <= 0)
		return sm_fail(-EINVAL, "no restored process is waiting to run");
	if (!rs->init) {
		r = let_run(rs->held);
	} else {
		r = sm_write_full(rs->go_fd, "g", 1);
		if (r >= 0)
			r = read_report(rs, &rep);
	}
	if (r >= 0)
		rs->held = 0;
	/* our copies of the pages go in sockmig_restore_free(), after the
	 * process runs (ckpt_restore_drop_regions) */
	return r;
}

/* sockmig_restore_free(): a process made but not let run dies unseen. */
void ckpt_spawn_cleanup(struct sockmig_restore *rs)
{
	int status;

	if (rs->held > 0 && !rs->init) {
		kill(rs->held, SIGKILL);
		waitpid(rs->held, &status, __WALL);
	}
	if (rs->go_fd >= 0)
		close(rs->go_fd); /* the init kills a process still held */
	if (rs->report_fd >= 0)
		close(rs->report_fd);
	if (rs->init > 0 && rs->held > 0)
		waitpid(rs->init, &status, 0);
	rs->go_fd = rs->report_fd = -1;
	rs->held = 0;
}
