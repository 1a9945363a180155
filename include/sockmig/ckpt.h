/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Process checkpoint and restore (first slice: one single-threaded x86-64
 * process, its memory, registers, FPU/AVX state and its fds 0, 1 and 2).
 *
 * Two phases, so that a failed restore never costs the original:
 *
 *   sockmig_proc_open(pid, &p)
 *   sockmig_ckpt_check(p)          refuse what cannot be moved, BEFORE freezing
 *   sockmig_proc_stop(p)
 *   sockmig_ckpt_dump(p, fd)       image to fd (a file, a pipe, a socket)
 *      ... sockmig_restore(fd, ...) on the destination ...
 *   confirmed: kill the original (it is still stopped)
 *   failed:    sockmig_proc_resume(p); it goes on as if nothing happened
 *
 * The restored process is a NEW process (a new pid), a child of the thread
 * that called sockmig_restore(); that thread must reap it (waitpid). It
 * continues at the instruction where the original was stopped, with the same
 * memory at the same addresses, the same registers and the vdso at the same
 * address. docs/checkpoint.md has the design and the image sections.
 */
#ifndef SOCKMIG_CKPT_H
#define SOCKMIG_CKPT_H

#include <sys/types.h>

#include "sockmig/proc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pre-flight: refuse, with one sentence naming the object, anything outside
 * what this sockmig checkpoints (a second thread, an fd other than 0..2, a
 * shared mapping, a non-x86-64 process). Call it before sockmig_proc_stop(). */
int sockmig_ckpt_check(struct sockmig_proc *p);

/* Write the image of a process stopped with sockmig_proc_stop(). The process
 * stays stopped; the caller ends it or resumes it. */
int sockmig_ckpt_dump(struct sockmig_proc *p, int image_fd);

struct sockmig_restore_opts {
	/* What the restored process gets as fds 0, 1, 2: an fd of the caller's
	 * (dup'ed), or -1 for the default: the same path reopened (same flags,
	 * same offset) if the original's fd was a regular file, else /dev/null. */
	int stdio_fd[3];
};

/* Read an image from image_fd and restore it as a new process, running when
 * this returns. opts may be NULL (all defaults). *ret_pid is the new pid. */
int sockmig_restore(int image_fd, const struct sockmig_restore_opts *opts, pid_t *ret_pid);

#ifdef __cplusplus
}
#endif

#endif
