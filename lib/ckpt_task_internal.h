/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Inside the per-process state (ckpt_task.h is its interface and holds the
 * model; docs/ckpt-task.md the byte layout). Which file holds what:
 *
 *   ckpt_task.c          the sections: writer, reader of untrusted bytes,
 *                        ckpt_task_validate(), the model's lifetime
 *   ckpt_task_dump.c     reading a process: /proc, prlimit, the pending
 *                        queues and the injected reads; ckpt_task_check(),
 *                        ckpt_task_collect(), ckpt_task_dump()
 *   ckpt_task_restore.c  ckpt_task_prepare(), ckpt_task_apply_child() (raw
 *                        syscalls in the forked child),
 *                        ckpt_task_apply_parent()
 *
 * Nothing here is part of the library's interface.
 */
#ifndef SOCKMIG_LIB_CKPT_TASK_INTERNAL_H
#define SOCKMIG_LIB_CKPT_TASK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "ckpt_task.h"

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1u << 31)
#endif

/* RLIMIT_* by number, for sentences ("RLIMIT_NOFILE"). */
extern const char *const ckpt_task_rlimit_names[CKPT_TASK_NRLIMITS];

struct kstack { /* stack_t */
	uint64_t sp;
	int32_t flags;
	int32_t pad;
	uint64_t size;
};

static inline uint32_t ckpt_siginfo_signo(const struct ckpt_siginfo *si)
{
	uint32_t v;

	memcpy(&v, si->b, 4);
	return v;
}

/* A timer's clock: the fixed clocks timer_create takes, or a CPU clock,
 * which encodes a pid as ~pid << 3 | type (kernel CPUCLOCK_*). Only the
 * process's own CPU clocks can be restored; they are stored as "self"
 * (pid 0), which the new process reads as its own. */
static inline bool ckpt_task_clock_storable(int32_t c)
{
	if (c < 0)
		return (c & 3) != 3 && ~(c >> 3) == 0;
	return c == CLOCK_REALTIME || c == CLOCK_MONOTONIC || c == CLOCK_PROCESS_CPUTIME_ID ||
	       c == CLOCK_THREAD_CPUTIME_ID || c == CLOCK_BOOTTIME || c == CLOCK_REALTIME_ALARM ||
	       c == CLOCK_BOOTTIME_ALARM || c == CLOCK_TAI;
}

#endif
