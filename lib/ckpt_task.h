/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The per-process state around the memory and registers: signal handlers,
 * pending signals, the alternate signal stack, interval and POSIX timers,
 * rlimits, cwd, umask, personality, credentials. Sections 0x1010..0x101f,
 * docs/ckpt-task.md. Reading handlers, the altstack and timers needs
 * syscalls run inside the stopped process (ckpt_inject.c).
 *
 *   ckpt_task_check()        pre-flight, before the freeze
 *   ckpt_task_dump()         process stopped (ptrace-seized): sections out;
 *                            the process is left exactly as it was
 *   ckpt_task_read_section() for every type ckpt_task_owns()
 *   ckpt_task_apply_child()  in the forked child, all signals blocked,
 *                            before it jumps to the restorer blob
 *   ckpt_task_apply_parent() after the blob, before PTRACE_DETACH
 *
 * Order that matters to the caller:
 *  - dump: read the blocked mask (SigBlk / PTRACE_GETSIGMASK) after
 *    ckpt_task_dump(). A process stopped in sigsuspend/ppoll/pselect has a
 *    temporary mask until its syscall restarts; the injection drops it the
 *    way the kernel does on a restart (the restarted call sets it again), so
 *    afterwards the mask is the process's real one.
 *  - restore: call ckpt_task_apply_child() after the child has reset its own
 *    handlers (a reset to SIG_DFL of a default-ignored signal, or SIG_IGN,
 *    discards pending signals of that number) and before anything unblocks a
 *    signal. The blocked mask must stay full until the blob has mapped the
 *    handlers' code; the final mask goes in with PTRACE_SETSIGMASK.
 *
 * The code is in ckpt_task*.c; ckpt_task_internal.h says which file holds
 * what.
 */
#ifndef SOCKMIG_LIB_CKPT_TASK_H
#define SOCKMIG_LIB_CKPT_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"
#include "sockmig/proc.h"

struct ckpt_task;

/* Credentials: the blob sets them after PR_SET_MM_MAP (which needs
 * CAP_SYS_RESOURCE). */
#define CKPT_MAX_GROUPS 256
struct ckpt_creds {
	uint32_t uid[4]; /* real, effective, saved, fs */
	uint32_t gid[4];
	uint32_t n_groups;
	uint32_t groups[CKPT_MAX_GROUPS];
};

int ckpt_task_check(pid_t pid);
int ckpt_task_dump(struct sockmig_proc *p, struct sm_image_writer *w);

bool ckpt_task_owns(uint32_t type);
int ckpt_task_read_section(struct ckpt_task **t, uint32_t type, struct sm_cursor *c);
int ckpt_task_validate(const struct ckpt_task *t);
void ckpt_task_free(struct ckpt_task *t);
/* NULL when t is NULL or the image carries no credentials. */
const struct ckpt_creds *ckpt_task_creds(const struct ckpt_task *t);

/* Parent, before the fork: what can be refused without touching anything
 * (the cwd is missing, ...), one sentence. */
int ckpt_task_prepare(const struct ckpt_task *t);
/* Child: async-signal-safe, raw syscalls; 0 or -errno with a short static
 * reason in *ret_what. */
int ckpt_task_apply_child(const struct ckpt_task *t, const char **ret_what);
/* Parent, the child stopped after the blob: rlimits (prlimit) and the like. */
int ckpt_task_apply_parent(const struct ckpt_task *t, pid_t child);

/* ---- the model, for tests and the fuzzer (byte layout: docs/ckpt-task.md) ---- */

enum {
	CKPT_SEC_TASK_SIGACTS = 0x1010,  /* the 64 signal dispositions */
	CKPT_SEC_TASK_ALTSTACK = 0x1011, /* sigaltstack */
	CKPT_SEC_TASK_PENDING = 0x1012,  /* one queue of pending signals */
	CKPT_SEC_TASK_ITIMERS = 0x1013,  /* ITIMER_REAL, _VIRTUAL, _PROF */
	CKPT_SEC_TASK_TIMERS = 0x1014,   /* POSIX timers */
	CKPT_SEC_TASK_RLIMITS = 0x1015,
	CKPT_SEC_TASK_PROC = 0x1016,     /* umask, personality, flags, cwd */
	CKPT_SEC_TASK_CREDS = 0x1017,
};

#define CKPT_TASK_NSIG 64
#define CKPT_TASK_NRLIMITS 16 /* RLIM_NLIMITS */
#define CKPT_TASK_MAX_TIMERS 1024u
#define CKPT_TASK_MAX_PENDING 4096u /* per queue */
#define CKPT_SIGINFO_SIZE 128

/* struct kernel_sigaction (rt_sigaction's, not libc's) */
struct ckpt_sigact {
	uint64_t handler; /* SIG_DFL 0, SIG_IGN 1, else an address */
	uint64_t flags;   /* SA_* */
	uint64_t restorer;
	uint64_t mask;    /* bit n-1 for signal n */
};

struct ckpt_altstack {
	uint64_t sp, size;
	uint32_t flags; /* SS_DISABLE, SS_AUTODISARM, SS_ONSTACK (as read; not restored) */
};

struct ckpt_itimer { /* struct itimerval */
	uint64_t interval_sec, interval_usec, value_sec, value_usec;
};

enum { CKPT_TIMER_SIGNAL = 0, CKPT_TIMER_NONE = 1 }; /* SIGEV_SIGNAL, SIGEV_NONE */

struct ckpt_ptimer {
	int32_t id;
	int32_t clock;   /* clockid_t; a CPU clock of the process itself is "self" (pid 0) */
	uint32_t notify; /* CKPT_TIMER_* */
	uint32_t signo;
	uint64_t sigval; /* sigev_value */
	uint64_t interval_sec, interval_nsec, value_sec, value_nsec; /* remaining; 0/0: disarmed */
};

struct ckpt_siginfo {
	uint8_t b[CKPT_SIGINFO_SIZE]; /* siginfo_t as PTRACE_PEEKSIGINFO gives it */
};

struct ckpt_sigqueue {
	uint32_t n;
	struct ckpt_siginfo *info; /* oldest first */
};

enum { CKPT_TASK_NO_NEW_PRIVS = 1u << 0 };

/* have bits: one per section read (PENDING: the thread queue and the shared one) */
enum {
	CKPT_TASK_HAVE_SIGACTS = 1u << 0,
	CKPT_TASK_HAVE_ALTSTACK = 1u << 1,
	CKPT_TASK_HAVE_PENDING_THREAD = 1u << 2,
	CKPT_TASK_HAVE_PENDING_SHARED = 1u << 3,
	CKPT_TASK_HAVE_ITIMERS = 1u << 4,
	CKPT_TASK_HAVE_TIMERS = 1u << 5,
	CKPT_TASK_HAVE_RLIMITS = 1u << 6,
	CKPT_TASK_HAVE_PROC = 1u << 7,
	CKPT_TASK_HAVE_CREDS = 1u << 8,
};
#define CKPT_TASK_HAVE_ALL 0x1ffu

struct ckpt_task {
	uint32_t have; /* CKPT_TASK_HAVE_* */
	struct ckpt_sigact act[CKPT_TASK_NSIG]; /* act[n-1]: signal n */
	struct ckpt_altstack altstack;
	struct ckpt_itimer itimer[3];
	struct ckpt_ptimer *timers; /* ascending ids */
	uint32_t n_timers;
	uint32_t tid; /* whose queue `thread` is */
	struct ckpt_sigqueue thread, shared;
	uint64_t rlim[CKPT_TASK_NRLIMITS][2]; /* cur, max */
	uint32_t umask, personality, flags; /* CKPT_TASK_NO_NEW_PRIVS */
	char cwd[4096];
	struct ckpt_creds creds;
};

/* The dump in two halves: read the stopped process into a model (*ret is
 * allocated), and write a model as sections. */
int ckpt_task_collect(struct sockmig_proc *p, struct ckpt_task **ret);
int ckpt_task_write(struct sm_image_writer *w, const struct ckpt_task *t);

#endif
