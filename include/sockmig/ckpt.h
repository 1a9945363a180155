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
 *
 * With pre-copy, memory moves while the process runs, and the freeze
 * carries only what changed since the last round:
 *
 *   S                                         D
 *   sockmig_ckpt_check(p, o)
 *   sockmig_precopy_start(p, &pc)             sockmig_precopy_store_new(max, &ps)
 *   repeat: sockmig_precopy_round(pc, fd)  -> sockmig_precopy_store_read(ps, fd)
 *   sockmig_proc_stop(p)
 *   o.precopy = pc; sockmig_ckpt_dump(p, fd, o)
 *                                          -> sockmig_restore_prepare2(fd, {.precopy = ps}, &rs)
 *                                             sockmig_precopy_store_free(ps)
 *                                             sockmig_restore_run(rs), _release(rs)
 *   commit: kill p; sockmig_precopy_free(pc)
 *   rollback: sockmig_proc_resume(p); sockmig_precopy_free(pc)  (this order:
 *             the kernel's unregistering walks the tracked memory, a few
 *             ms per 100 MiB, during which only the process's page faults
 *             wait: better than a stop)
 *
 * Each round is one self-contained image ("pages image", kind 4) on fd: the
 * mappings tracked, and the pages written since the round before (all of
 * them the first time, and whole for a mapping that appeared, moved or grew
 * since). The rounds must reach D in order and whole; a store that missed
 * one, or read one that failed half-way, refuses the restore.
 */
#ifndef SOCKMIG_CKPT_H
#define SOCKMIG_CKPT_H

#include <stdint.h>
#include <sys/types.h>

#include "sockmig/proc.h"

#ifdef __cplusplus
extern "C" {
#endif

struct sockmig_precopy;
struct sockmig_precopy_stats;

struct sockmig_ckpt_opts {
	/* fds the caller moves by other means (the TCP and UDP sockets the
	 * socket engine carries): left out of the image, handed to the restore
	 * in sockmig_restore_opts.extra */
	const int *skip_fds;
	size_t n_skip_fds;
	/* the dump only: pre-copy of this process (sockmig_precopy_start).
	 * The image then carries the pages of the tracked mappings written
	 * since the last round, and names those mappings (section PRECOPY):
	 * the restore takes the rest from the store that read the rounds.
	 * Mappings not tracked since their last copy are dumped whole. */
	struct sockmig_precopy *precopy;
	/* if not NULL: what the dump wrote of the tracked mappings (pages
	 * = their pages in this image, ns = the dump's whole time) */
	struct sockmig_precopy_stats *precopy_stats;
};

/* Pre-flight: refuse, with one sentence naming the object, anything outside
 * what this sockmig checkpoints (a second thread, an fd of a kind it cannot
 * move, System V shared memory, a seccomp filter, ...). Call it before
 * sockmig_proc_stop(), so that nothing is frozen in vain. o may be NULL. */
int sockmig_ckpt_check(struct sockmig_proc *p, const struct sockmig_ckpt_opts *o);

/* Write the image of a process stopped with sockmig_proc_stop(). The process
 * stays stopped; the caller ends it or resumes it. o may be NULL.
 *
 * What sockmig_ckpt_check() refuses is refused here too, but only what can
 * change between the two is looked at again (threads, mappings; fds and
 * task state as the dump reads them): call the check first. */
int sockmig_ckpt_dump(struct sockmig_proc *p, int image_fd, const struct sockmig_ckpt_opts *o);

/* ---- pre-copy, on S ----
 *
 * Dirty pages are tracked with a userfaultfd in asynchronous write-protect
 * mode (the kernel clears a page's protection on its first write, the
 * process never waits) read with the PAGEMAP_SCAN ioctl. The userfaultfd is
 * made inside the process by an injected syscall (while
 * sockmig_precopy_start holds it stopped: a few hundred microseconds), taken
 * with pidfd_getfd and closed in the process again before it runs on: its
 * fd table never shows it, and ours is the file's only reference. The
 * tracked memory is the process's private anonymous mappings (heap, mmap'ed
 * memory; not the stack, shared memory or file mappings, which the freeze
 * dumps whole: they are small or cannot be tracked). */

struct sockmig_precopy_stats {
	uint64_t pages;   /* pages whose bytes went into the image */
	uint64_t bytes;   /* bytes written to fd (the whole image) */
	uint64_t ns;      /* how long it took */
	uint64_t dropped; /* pages D must forget (now zeros, or given back) */
	uint64_t tracked; /* bytes of address space tracked after it */
	uint32_t round;   /* the round's number (1 for the first) */
	uint32_t ranges;  /* mappings tracked */
	uint32_t fresh;   /* of which copied whole in this round (new, moved, grown) */
};

/* Begin tracking a process opened with sockmig_proc_open. It is stopped
 * (unless the caller holds it stopped already) for the injection and
 * resumed. Nothing is written yet: the first round copies everything. */
int sockmig_precopy_start(struct sockmig_proc *p, struct sockmig_precopy **ret);

/* One round, the process running: write-protect again what was written
 * since the last round and write it to fd as one pages image (everything
 * the first time). A page written after the round read it is caught by the
 * next round or by the dump. 0 or -errno; after a failure (e.g. fd
 * closed) the pre-copy cannot go on: free it. ret may be NULL. */
int sockmig_precopy_round(struct sockmig_precopy *pc, int fd, struct sockmig_precopy_stats *ret);

/* End the tracking; NULL is fine. After a rollback the process is exactly as
 * before sockmig_precopy_start: dropping our reference to the userfaultfd
 * unregisters every mapping and clears the page protections (the kernel
 * does both on the file's release), and its fd table held the userfaultfd
 * only while sockmig_precopy_start had it stopped. After a commit (the
 * process killed) it only frees. */
void sockmig_precopy_free(struct sockmig_precopy *pc);

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

/* ---- pre-copy, on D ---- */

struct sockmig_precopy_store;

/* A store for the rounds of one pre-copy. max_bytes bounds the pages it
 * holds (what the peer sends beyond it is refused, -ENOSPC); the address
 * space it reserves for them is bounded to 64 x max_bytes. */
int sockmig_precopy_store_new(uint64_t max_bytes, struct sockmig_precopy_store **ret);
/* Read exactly one pages image from fd (a stream: nothing past its trailer
 * is read). Untrusted bytes: checked before use. A round out of order or of
 * another pre-copy is refused; one that fails half-way leaves the store
 * unusable (every later call refuses). */
int sockmig_precopy_store_read(struct sockmig_precopy_store *ps, int fd);
struct sockmig_precopy_store_info {
	uint32_t round;  /* rounds read */
	uint32_t ranges; /* mappings held */
	uint64_t bytes;  /* bytes of pages held */
};
void sockmig_precopy_store_info(const struct sockmig_precopy_store *ps, struct sockmig_precopy_store_info *ret);
void sockmig_precopy_store_free(struct sockmig_precopy_store *ps);

struct sockmig_prepare_opts {
	/* the store that read this process's rounds, or NULL. An image that
	 * names pre-copied mappings needs it (else it is refused); the
	 * restore takes the store's pages (no copy: they move into the new
	 * process with mremap), after which the store is empty and only
	 * good for sockmig_precopy_store_free. */
	struct sockmig_precopy_store *precopy;
};

/* Phase 1: read and check a whole image from image_fd (pages staged in
 * memory), refusing what this node cannot run (CPU features, vdso, files)
 * before anything is made. Nothing runs yet. */
int sockmig_restore_prepare(int image_fd, struct sockmig_restore **ret);
/* The same with options; o may be NULL (then it is sockmig_restore_prepare). */
int sockmig_restore_prepare2(int image_fd, const struct sockmig_prepare_opts *o, struct sockmig_restore **ret);
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
