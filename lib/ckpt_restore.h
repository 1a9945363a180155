/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The restore's state, shared by ckpt_restore.c (image, blob) and
 * ckpt_spawn.c (the child, its driver, the pid namespace). Not installed. */
#ifndef SOCKMIG_LIB_CKPT_RESTORE_H
#define SOCKMIG_LIB_CKPT_RESTORE_H

#include <stdint.h>
#include <sys/types.h>

#include "ckpt.h"
#include "ckpt_pc.h"
#include "sockmig/ckpt.h"

/* The highest user address a mapping can have without an explicit hint
 * (47 bits, also with 5-level paging). */
#define TASK_END 0x7ffffffff000ull

struct mm_map { /* struct prctl_mm_map, linux/prctl.h */
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

struct run {
	uint64_t addr, len, off; /* off: in the memfd */
};

#define CKPT_CHILD_ERR 256

struct sockmig_restore {
	struct ckpt_image im;
	/* the pages of private anonymous mappings: one region each, moved
	 * into the child by mremap (the pre-copy store's, or filled from
	 * the image); the others' pages are staged in the memfd */
	struct ckpt_pcs pcs;
	struct sockmig_precopy_store *store; /* while prepare reads, or NULL */
	int memfd;
	uint64_t memfd_len;
	struct run *runs;
	size_t n_runs, cap_runs;
	bool runs_sorted; /* by address, none overlapping: as a dump writes them */
	struct { uint64_t start, end; } *keep_va; /* the regions in our address space, sorted */
	size_t n_keep_va;
	uint64_t vdso_start, vdso_end; /* ours: [vvar] .. [vdso] */
	int *file_fds;   /* per vma, -1 for anonymous */
	char *file_own;  /* per vma: 1 if file_fds[i] is ours to close */
	int exe_fd;
	struct ckpt_fd_plan *plan;
	/* the blob */
	uint8_t *blob;
	uint64_t blob_base, blob_len, code_len;
	struct ckpt_op *ops;
	const char **op_what; /* for the sentence when an op fails */
	uint64_t *op_addr;
	size_t n_ops, max_ops;
	/* fds the child keeps (sorted): the plan's targets and the blob's */
	int *keep;
	size_t n_keep;
	/* MAP_SHARED page: the child's reason when it fails before the blob */
	char *child_err;
	/* ckpt_spawn.c: the process made, held until released */
	pid_t held;    /* in our pid namespace; 0: none held */
	pid_t init;    /* its namespace's init, 0 without one */
	int report_fd; /* init -> us */
	int go_fd;     /* us -> init: "g" lets the process run */
};

/* ckpt_spawn.c: make the process from a prepared restore (blob built). */
int ckpt_spawn(struct sockmig_restore *rs, const struct sockmig_restore_opts *o,
	       struct sockmig_restored_proc *ret);
void ckpt_spawn_cleanup(struct sockmig_restore *rs);

/* Our copies of the regions, once the process runs with its own: unmapped
 * (raw munmap only: also in a forked child of a threaded caller), so that
 * its first write to each page no longer copies it. */
void ckpt_restore_drop_regions(struct sockmig_restore *rs);

#endif
