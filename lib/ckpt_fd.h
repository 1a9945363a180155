/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The file descriptors of a checkpointed process, other than the TCP and UDP
 * sockets the socket engine moves (those reach the restore as "extra" fds
 * from the caller). Sections 0x1008..0x100f, docs/ckpt-fds.md (byte layout,
 * what each kind keeps and what it loses, the stdio policy).
 *
 *   dump (process stopped):   ckpt_fds_check() before the freeze, then
 *                             ckpt_fds_dump() into the image
 *   read:                     ckpt_fds_read_section() for every section type
 *                             ckpt_fds_owns(), then ckpt_fds_validate()
 *   restore, in the parent:   ckpt_fds_prepare() makes every object (files,
 *                             pipes with their bytes, eventfd, ...) as fds of
 *                             ours >= floor, O_CLOEXEC
 *   restore, in the child:    ckpt_fd_plan_apply_child() puts each at its
 *                             number with its FD_CLOEXEC, then registers the
 *                             epoll interests (which name target numbers)
 *
 * What the file model keeps: one open file description per set of fds that
 * share one (dup, fork), so two fds on one description share their offset
 * and flags again after the restore; every fd keeps its number, its F_GETFL
 * flags (O_ASYNC excepted) and its FD_CLOEXEC.
 *
 * The child's side of the contract: in the forked child every number below
 * `floor` that is not a target may be used as scratch and the plan's own fds
 * (>= floor) must still be open when ckpt_fd_plan_apply_child() runs; fds the
 * caller needs in the child must sit at numbers >= floor (they are never
 * touched: the plan only dup3()s onto targets and onto numbers it found free).
 *
 * The code is in ckpt_fd*.c; ckpt_fd_internal.h says which file holds what.
 */
#ifndef SOCKMIG_LIB_CKPT_FD_H
#define SOCKMIG_LIB_CKPT_FD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"
#include "sockmig/proc.h"

/* Section types (docs/ckpt-fds.md). */
enum {
	CKPT_SEC_FD_TABLE = 0x1008,   /* fd number -> open file, FD_CLOEXEC */
	CKPT_SEC_FD_PATH = 0x1009,    /* reopened by path: file, dir, device, O_PATH, stdio elsewhere */
	CKPT_SEC_FD_MEMFILE = 0x100a, /* memfd or deleted file: content carried */
	CKPT_SEC_FD_PIPE = 0x100b,    /* pipe or FIFO, with the bytes inside */
	CKPT_SEC_FD_EVENT = 0x100c,   /* eventfd, timerfd, signalfd */
	CKPT_SEC_FD_EPOLL = 0x100d,   /* epoll instance and its registrations */
	CKPT_SEC_FD_UNIX = 0x100e,    /* AF_UNIX socketpair, both ends */
	CKPT_SEC_FD_DATA = 0x100f,    /* bytes of a MEMFILE, PIPE or UNIX object */
};

/* Everything carried as bytes (memfd and deleted-file content, pipe and
 * socket queues) together; more is refused before the freeze. */
#define CKPT_FD_DATA_MAX (64ull << 20)
/* fd numbers of an image are below this (the kernel's default nr_open). */
#define CKPT_FD_NUM_MAX (1u << 20)

struct ckpt_fds;     /* decoded from the image */
struct ckpt_fd_plan; /* the restore's live objects */

/* An fd the caller restored by other means (a socket of the engine). */
struct ckpt_fd_extra {
	int target; /* its number in the process */
	int fd;     /* ours; the plan dups it, the caller still owns it */
};

/* Pre-flight, before the process is stopped: every fd not in skip[] must be a
 * kind this code moves; else -EOPNOTSUPP with one sentence naming it
 * ("pid 4121 fd 9: io_uring is not migratable"). Also refuses more than
 * CKPT_FD_DATA_MAX bytes to carry, and an epoll watching a file that no fd
 * of the process holds. */
int ckpt_fds_check(pid_t pid, const int *skip, size_t n_skip);

/* Write the sections for every fd of the stopped process except skip[]
 * (those are listed as restored by the caller). The process is left as it
 * was: queues are read without consuming them (tee, MSG_PEEK). */
int ckpt_fds_dump(struct sockmig_proc *p, const int *skip, size_t n_skip, struct sm_image_writer *w);

bool ckpt_fds_owns(uint32_t type);
/* *fds is allocated on the first call; untrusted bytes, fuzzed. */
int ckpt_fds_read_section(struct ckpt_fds **fds, uint32_t type, struct sm_cursor *c);
/* Checks once every section is read (references resolve, no fd twice). */
int ckpt_fds_validate(const struct ckpt_fds *fds);
void ckpt_fds_free(struct ckpt_fds *fds);
/* Highest fd number the image restores (-1: none). */
int ckpt_fds_max_target(const struct ckpt_fds *fds);
/* Write decoded sections out again (the dump's own encoder; the tests and the
 * fuzzer check that decode + encode gives the same bytes). */
int ckpt_fds_write(const struct ckpt_fds *fds, struct sm_image_writer *w);

/* stdio_override[i] >= 0: fd i of the process becomes that fd of the caller's
 * (dup'ed) whatever the image says. stdio_override may be NULL. All fds the
 * plan makes are >= floor, and floor must be above every target. Refuses,
 * naming the fd, a file that changed since the checkpoint, a device that is
 * another one, a missing path, a socket of the image with no extra. */
int ckpt_fds_prepare(const struct ckpt_fds *fds, const struct ckpt_fd_extra *extra, size_t n_extra,
		     const int stdio_override[3], int floor, struct ckpt_fd_plan **ret);
/* The target numbers, ascending (the child keeps them, closes the rest). */
size_t ckpt_fd_plan_targets(const struct ckpt_fd_plan *plan, const int **ret);
/* Our fd of a memfd or deleted file of the image by its original inode
 * number (a shared mapping of the same file must map this one), or -1.
 * Opened O_RDWR; it stays the plan's. */
int ckpt_fd_plan_file_by_ino(const struct ckpt_fd_plan *plan, uint64_t ino);
/* In the forked child: async-signal-safe, raw syscalls only. 0, or -errno
 * with a short static reason in *ret_what. */
int ckpt_fd_plan_apply_child(const struct ckpt_fd_plan *plan, const char **ret_what);
void ckpt_fd_plan_free(struct ckpt_fd_plan *plan);

#endif
