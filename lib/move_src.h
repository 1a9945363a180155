/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The source side of a socket move, shared by lib/move_src.c and
 * lib/move_src_end.c (COMMIT and what follows it). Not installed. */
#ifndef SOCKMIG_LIB_MOVE_SRC_H
#define SOCKMIG_LIB_MOVE_SRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "move.h"
#include "sockmig/ckpt.h"
#include "sockmig/flow.h"
#include "sockmig/proc.h"
#include "sockmig/sockets.h"

struct src {
	const struct sockmig_move_opts *o;
	unsigned timeout_ms;
	struct sockmig_proc *proc;
	struct sm_move_sock *socks;
	size_t n;
	struct sockmig_flow *flows;
	struct sm_move_header hdr;
	struct sockmig_capture *cap;
	struct sockmig_flowlock *lock;
	struct sockmig_flow_capture *sent_caps; /* handed to D, kept for rollback */
	size_t n_sent_caps;
	bool split; /* SOCKMIG_FAULT=src-tail-split: the newer half of each
		     * flow's sent_caps goes with COMMIT, as if it came late */
	uint32_t held; /* packets split off so */
	struct sockmig_flow_capture *dst_caps;  /* what D caught before it gave up */
	size_t n_dst_caps;
	struct sockmig_flow_capture *pre_back;  /* caught here before taking back */
	bool dst_aborted;
	bool released;
	uint64_t t_frozen;
	struct sockmig_move_stats st;
	struct sockmig_flow *routed; /* flows whose address stays (o->hooks) */
	size_t n_routed;
	bool switched; /* route_switch was called */
	struct sockmig_precopy *pc; /* with_process and precopy_rounds */
	struct sockmig_precopy_stats frozen_pc;
	int *skip; /* with_process: the sockets' fds, which the checkpoint skips */
	struct sockmig_ckpt_opts ckpt;
};

/* The captures that caught something, packed (sm_move_write_captures);
 * with split (a test's fault) only the older half of each. */
int sm_src_write_captures(struct sm_image_writer *w, const struct sockmig_flow_capture *fc, size_t n, bool split);
uint32_t sm_src_count_packets(const struct sockmig_flow_capture *fc, size_t n);
/* PTRACE_O_EXITKILL on every thread of the stopped original; false if it
 * could not be set (then it must be killed before COMMIT goes out). */
bool sm_src_exit_kills(struct src *s);
/* COMMIT, with what S caught since image 2. */
void sm_src_send_commit(struct src *s, int chan);
/* The originals destroyed (their flows still blocked), the lock removed,
 * a process that stays (sockets only) resumed. */
void sm_src_commit(struct src *s);

#endif
