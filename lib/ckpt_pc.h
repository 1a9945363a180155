/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pre-copy internals (docs/checkpoint.md, "Pre-copy"). Not installed.
 *
 *   ckpt_precopy.c   S: the userfaultfd, the rounds, and the freeze's
 *                    delta that ckpt_dump.c writes (ckpt_pc_final_*)
 *   ckpt_pcstore.c   D: the page store (struct ckpt_pcs) that holds what
 *                    the rounds sent, and sockmig_precopy_store_* on it
 *   ckpt_restore.c   D: a restore takes the store's regions and moves
 *                    each into the new process with one mremap
 *
 * The contract between the two sides, round after round: the ranges a
 * round lists are the only addresses whose pages D keeps; a range flagged
 * NEW starts empty; every other listed range keeps what earlier rounds sent
 * for its addresses (empty where no round sent anything). A round's PAGES
 * overwrite, its DROPs forget (the page reads as zeros, or was given back).
 */
#ifndef SOCKMIG_LIB_CKPT_PC_H
#define SOCKMIG_LIB_CKPT_PC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ckpt.h"
#include "sockmig/ckpt.h"

/* ---- D: the page store ---- */

/* Process addresses [start, end) and our copy of their pages at base. The
 * copy lies inside one mapping of ours (never across two), so that a
 * restore moves it into the new process with a single mremap, which keeps
 * the target one VMA. base is congruent to start modulo 2 MiB where we
 * chose it, so that mremap moves whole page tables. */
struct ckpt_region {
	uint64_t start, end;
	uint8_t *base;
	uint64_t *bits; /* pages held: a page without its bit reads as zeros */
	uint64_t held;  /* bits set */
};

struct ckpt_pcs {
	struct ckpt_region *r; /* sorted by start, disjoint */
	size_t n, cap;
	uint64_t held, max_held; /* pages held, and the bound */
	uint64_t va, max_va;     /* bytes of our address space the regions take */
};

void ckpt_pcs_init(struct ckpt_pcs *s, uint64_t max_bytes, uint64_t max_va);
/* Make the regions exactly the ranges g[0..n) (sorted, disjoint): a range
 * with CKPT_PC_NEW starts empty, any other keeps the pages the store holds
 * at its addresses, moved (page tables only) or, where a range now spans
 * what were two regions, copied; everything outside the ranges is
 * forgotten. On failure the store must not be used again. */
int ckpt_pcs_layout(struct ckpt_pcs *s, const struct ckpt_pc_range *g, size_t n);
/* One more region, empty, exactly [start, end): it overlaps none. */
int ckpt_pcs_add(struct ckpt_pcs *s, uint64_t start, uint64_t end);
/* The region holding all of [addr, addr + len), or NULL. */
struct ckpt_region *ckpt_pcs_find(const struct ckpt_pcs *s, uint64_t addr, uint64_t len);
/* Pages into a region (all of [addr, addr + len) in one); -ENOSPC over the
 * bound. */
int ckpt_pcs_put(struct ckpt_pcs *s, uint64_t addr, const uint8_t *data, size_t len);
/* Forget the pages of [addr, addr + len) (the parts inside regions). */
int ckpt_pcs_drop(struct ckpt_pcs *s, uint64_t addr, uint64_t len);
/* Hand every region of src to dst (empty), src is left empty. */
void ckpt_pcs_move(struct ckpt_pcs *dst, struct ckpt_pcs *src);
/* Unmap our copies and forget every region. */
void ckpt_pcs_clear(struct ckpt_pcs *s);

struct sockmig_precopy_store {
	struct ckpt_pcs pcs;
	uint8_t id[CKPT_PC_ID_LEN];
	uint32_t round;  /* the last round applied whole; 0: none */
	uint32_t failed; /* a round that failed half-way (the store is unusable), or 0 */
	bool taken;      /* a restore took the pages */
};

/* ---- S: the freeze ---- */

/* The freeze's look at the tracked memory (the process is stopped): which
 * of the image's VMAs the store can give back, and what changed in them
 * since the last round. */
struct ckpt_pc_final;

int ckpt_pc_final_scan(struct sockmig_precopy *pc, pid_t pid, const struct ckpt_vma *v, size_t n,
		       struct ckpt_pc_final **ret);
/* The PRECOPY section: the mappings taken from the store. */
int ckpt_pc_final_write_ranges(const struct ckpt_pc_final *f, struct sm_image_writer *w);
/* 1 if the image's VMA i comes from the store (write its delta), else 0
 * (dump it whole). */
int ckpt_pc_final_tracked(const struct ckpt_pc_final *f, size_t i);
/* VMA i's pages written since the last round (PAGES) and those gone (DROP).
 * buf: CKPT_PAGES_HDR + CKPT_RUN_MAX_PAGES pages. */
int ckpt_pc_final_write_delta(struct ckpt_pc_final *f, size_t i, struct sm_image_writer *w, int mem_fd,
			      uint8_t *buf);
void ckpt_pc_final_stats(const struct ckpt_pc_final *f, struct sockmig_precopy_stats *ret);
void ckpt_pc_final_free(struct ckpt_pc_final *f);

/* What went into an image: pages with their bytes, pages dropped, and the
 * bytes of the sections written for them. */
struct ckpt_pc_count {
	uint64_t pages, dropped, bytes;
};

/* Shared by a round and the freeze: the npages at addr read from mem_fd
 * (the process's /proc/PID/mem) into buf + CKPT_PAGES_HDR and written as
 * PAGES sections; pages of zeros go as DROP runs when `drop_zeros`, are
 * left out otherwise (a region starts empty). -EFAULT: the memory is no
 * longer there. */
int ckpt_pc_copy_run(struct sm_image_writer *w, int mem_fd, uint64_t addr, uint64_t npages, uint8_t *buf,
		     bool drop_zeros, struct ckpt_pc_count *cnt);
/* A DROP run, counted. */
int ckpt_pc_drop_run(struct sm_image_writer *w, uint64_t addr, uint64_t npages, struct ckpt_pc_count *cnt);

#endif
