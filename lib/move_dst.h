/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The destination side of a socket move, shared by lib/move_dst.c (up to
 * RUNNING) and lib/move_dst_live.c (after COMMIT). Not installed. */
#ifndef SOCKMIG_LIB_MOVE_DST_H
#define SOCKMIG_LIB_MOVE_DST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "move.h"
#include "sockmig/ckpt.h"
#include "sockmig/flow.h"
#include "sockmig/sockets.h"

/* Room for the replay: the saved queue and everything caught during the
 * freeze arrive at once, and a long freeze catches more than the default
 * buffer holds (about 230 small datagrams). */
#define REPLAY_RCVBUF (16 << 20)

struct dst {
	const struct sockmig_move_opts *o;
	unsigned timeout_ms;
	struct sm_move_msg m; /* header and sockets */
	struct sockmig_flow *flows;
	struct sockmig_capture *cap;
	struct sockmig_flowlock *lock;
	uint32_t n_took;
	bool frozen;
	struct sockmig_flow *routed; /* o->hooks: flows whose address does not move */
	size_t n_routed;
	bool routes_taken;
	bool replay_failed; /* a replay after COMMIT failed: counts are off */
	struct sockmig_move_stats st;
	struct sockmig_restore *proc; /* with_process: prepared, then held */
	pid_t proc_pid;               /* what it became, once made */
	struct sockmig_precopy_store *pcs; /* pre-copied pages, until prepared */
	bool proc_running;
};


/* Block (on) or unblock the flows of every socket: connections whole,
 * listeners only for SYNs (as on S). */
int sm_dst_block(struct dst *d, bool on);

/* A flow's packets in caps, however many sections carry them. */
uint32_t sm_dst_packets_for(const struct sockmig_flow_capture *caps, size_t n, const struct sockmig_flow *f);

/* After COMMIT: S's last packets (tail), then what D caught, replayed; the
 * flows unblocked, UDP datagrams caught as they open put in order, buffers
 * back, repair mode off. Nothing in it may undo the move. */
void sm_dst_go_live(struct dst *d, const struct sockmig_flow_capture *tail, size_t n_tail);

#endif
