/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Syscalls run inside a stopped process, for the state that only the process
 * itself can read (its signal handlers, its alternate stack, its timers).
 * docs/ckpt-task.md explains the kernel paths this relies on.
 *
 *   ckpt_inject_begin(pid, tid, len)   the thread must be in a ptrace-stop of
 *                                      ours: the PTRACE_EVENT_STOP of a
 *                                      seize + interrupt (sockmig_proc_stop),
 *                                      or a signal-delivery stop. Saves its
 *                                      registers; maps `len` bytes of scratch
 *                                      memory in it (0: none)
 *   ckpt_inject_syscall()              one syscall there; its raw result
 *   ckpt_inject_write() / _read()      the scratch memory, through /proc/PID/mem
 *   ckpt_inject_end()                  unmaps the scratch, gives back any
 *                                      signal it held, puts every register
 *                                      back and returns the thread to the same
 *                                      kind of stop it was found in
 *
 * While a session runs, every signal of the thread is blocked (a handler
 * must never run on the borrowed registers); a signal that was being
 * delivered is queued again, with its siginfo, at the end. A syscall that
 * the stop interrupted (rax = -ERESTART*) restarts as it would have.
 *
 * Not thread-safe for one tid; the caller owns the ptrace relation.
 */
#ifndef SOCKMIG_LIB_CKPT_INJECT_H
#define SOCKMIG_LIB_CKPT_INJECT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ckpt_inject;

int ckpt_inject_begin(pid_t pid, pid_t tid, size_t scratch_len, struct ckpt_inject **ret);

/* Run syscall nr with args (unused ones 0). 0 and the syscall's raw result
 * (a value, or -errno) in *ret_result; or -errno if the injection itself
 * failed (-ESRCH: the process died). */
int ckpt_inject_syscall(struct ckpt_inject *in, uint64_t nr, const uint64_t args[6], int64_t *ret_result);

/* Many syscalls for one round trip: ops run in order inside the process
 * (by a small loop in a read+exec mapping of its own, made on first use)
 * until one returns non-zero. *ret_index is that op's index and *ret_result
 * its result, or n and 0 when every op returned 0. Results other than the
 * first non-zero one are not kept: meant for reads into the scratch by
 * syscalls that return 0 (rt_sigaction, getitimer, ...). The loop stops
 * by a signal it sends itself, open in the mask for that moment only: one
 * that is not pending. -EOPNOTSUPP: nothing ran, the loop could not be set
 * up (every candidate signal pending, or /proc/PID/mem may not write code);
 * ckpt_inject_syscall() still works. */
struct ckpt_inject_op {
	uint64_t nr;
	uint64_t arg[6];
};
int ckpt_inject_batch(struct ckpt_inject *in, const struct ckpt_inject_op *ops, size_t n, size_t *ret_index,
		      int64_t *ret_result);

/* Address of the scratch memory in the process, and its length. */
uint64_t ckpt_inject_scratch(const struct ckpt_inject *in);
size_t ckpt_inject_scratch_len(const struct ckpt_inject *in);
int ckpt_inject_write(struct ckpt_inject *in, size_t off, const void *p, size_t len);
int ckpt_inject_read(struct ckpt_inject *in, size_t off, void *p, size_t len);

/* The signal that was being delivered when the session began (a
 * signal-delivery stop): 1 and its siginfo; 0 for a PTRACE_EVENT_STOP. */
int ckpt_inject_stop_signal(const struct ckpt_inject *in, siginfo_t *ret_info);

/* Always frees in. 0 if the thread is back exactly as it was found. */
int ckpt_inject_end(struct ckpt_inject *in);

#endif
