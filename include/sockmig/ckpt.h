/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Process checkpoint and restore: one single-threaded x86-64 process, its
 * memory (private, shared, memfd), registers and FPU/AVX state, signal
 * handlers, pending signals, timers, credentials and every fd except TCP
 * and UDP sockets, which the socket engine carries (sockmig/sockets.h,
 * with_process). What cannot be moved is refused before the freeze.
 *
 * Two phases, so that a failed restore never costs the original:
 *
 *   sockmig_proc_open(pid, &p)
 *   sockmig_ckpt_check(p, o)       refuse what cannot be moved, BEFORE freezing
 *   sockmig_proc_stop(p)
 *   sockmig_ckpt_dump(p, fd, o)    image to fd (a file, a pipe, a socket)
 *      ... on the destination: sockmig_restore_prepare(fd), _run (made,
 *          held stopped), _release (it runs) ...
 *   confirmed: kill the original (it is still stopped)
 *   failed:    sockmig_proc_resume(p); it goes on as if nothing happened
 *
 * The restored process keeps its pid in a pid namespace of its own (its
 * init, the caller's child, is to be reaped by the caller). It continues at
 * the instruction where the original was stopped, with the same memory at
 * the same addresses, the same registers and the vdso at the same address.
 * docs/checkpoint.md has the design and the image sections.
 */
#ifndef SOCKMIG_CKPT_H
#define SOCKMIG_CKPT_H

#include <sys/types.h>

#include "sockmig/proc.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sockmig_ckpt_opts {
	/* fds the caller moves by other means (the TCP and UDP sockets the
	 * socket engine carries): left out of the image, handed to the restore
	 * in sockmig_restore_opts.extra */
	const int *skip_fds;
	size_t n_skip_fds;
};

/* Pre-flight: refuse, with one sentence naming the object, anything outside
 * what this sockmig checkpoints (a second thread, an fd of a kind it cannot
 * move, System V shared memory, a seccomp filter, ...). Call it before
 * sockmig_proc_stop(), so that nothing is frozen in vain. o may be NULL. */
int sockmig_ckpt_check(struct sockmig_proc *p, const struct sockmig_ckpt_opts *o);

/* Write the image of a process stopped with sockmig_proc_stop(). The process
 * stays stopped; the caller ends it or resumes it. o may be NULL. */
int sockmig_ckpt_dump(struct sockmig_proc *p, int image_fd, const struct sockmig_ckpt_opts *o);

/* An fd the caller restored by other means, e.g. a socket of the engine. */
struct sockmig_restore_fd {
	int target; /* its number in the process */
	int fd;     /* the caller's; dup'ed, the caller still owns it */
};

struct sockmig_restore_opts {
	/* What the restored process gets as fds 0, 1, 2 instead of what the
	 * image says: an fd of the caller's (dup'ed), or -1. A standard fd
	 * that led to a terminal or a pipe left behind becomes /dev/null
	 * unless overridden here (docs/ckpt-fds.md). */
	int stdio_fd[3];
	const struct sockmig_restore_fd *extra;
	size_t n_extra;
	/* 0 (default): the process keeps its pid, in a pid namespace of its
	 * own whose init is a small sockmig process (the caller's child) that
	 * exits with the process's status. 1: a new pid, the caller's child. */
	unsigned no_pidns;
};

struct sockmig_restored_proc {
	pid_t pid;      /* in the caller's pid namespace */
	pid_t own_pid;  /* as the process sees itself (getpid()) */
	pid_t init_pid; /* the caller's child to reap: the namespace's init, or pid */
};

struct sockmig_restore;

/* Phase 1: read and check a whole image from image_fd (pages staged in
 * memory), refusing what this node cannot run (CPU features, vdso, files)
 * before anything is made. Nothing runs yet. */
int sockmig_restore_prepare(int image_fd, struct sockmig_restore **ret);
/* Phase 2: make the process, every part of it in place, held stopped (so
 * that a caller can first bring its sockets live). opts may be NULL. */
int sockmig_restore_run(struct sockmig_restore *rs, const struct sockmig_restore_opts *opts,
			struct sockmig_restored_proc *ret);
/* Phase 3: let it run. */
int sockmig_restore_release(struct sockmig_restore *rs);
/* A process made but not released is killed (it never ran). */
void sockmig_restore_free(struct sockmig_restore *rs);

/* Both phases; *ret_pid is the new process's pid in the caller's namespace. */
int sockmig_restore(int image_fd, const struct sockmig_restore_opts *opts, pid_t *ret_pid);

#ifdef __cplusplus
}
#endif

#endif
