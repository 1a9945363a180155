/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Inside the fd checkpoint; ckpt_fd.h is its interface, docs/ckpt-fds.md
 * the byte layout and what each kind keeps. Which file holds what:
 *
 *   ckpt_fd.c          the model below (the sections decoded: plain data)
 *                      and the sections themselves: the writer, the reader
 *                      of untrusted bytes, ckpt_fds_validate()
 *   ckpt_fd_scan.c     what each fd of a live process is (classified from
 *                      /proc, fstat, kcmp and sock_diag), every refusal,
 *                      the epoll registrations; ckpt_fds_check()
 *   ckpt_fd_dump.c     the stopped process's fds into the model: the bytes
 *                      of memfds, deleted files, pipes and socketpairs read
 *                      without taking them; ckpt_fds_dump()
 *   ckpt_fd_restore.c  the plan: the parent makes every object again as fds
 *                      of its own, the child puts them at their numbers and
 *                      registers the epoll interests; ckpt_fds_prepare(),
 *                      ckpt_fd_plan_*()
 *
 * Nothing here is part of the library's interface.
 */
#ifndef SOCKMIG_LIB_CKPT_FD_INTERNAL_H
#define SOCKMIG_LIB_CKPT_FD_INTERNAL_H

#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "ckpt_fd.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif
#ifndef SO_PEEK_OFF
#define SO_PEEK_OFF 42
#endif
#define SEALS_KNOWN (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC)

#define MAX_MSGS 65536u     /* datagrams queued in one direction */
#define MEMFD_NAME_MAX 249u /* memfd_create's limit */

enum { PATH_FILE = 1, PATH_DIR = 2, PATH_CHR = 3, PATH_OPATH = 4, PATH_ELSEWHERE = 5 };
enum { MEM_MEMFD = 1, MEM_DELETED = 2 };
enum { PIPE_ANON = 1, PIPE_FIFO = 2 };
enum { EV_EVENTFD = 1, EV_TIMERFD = 2, EV_SIGNALFD = 3 };

/* ---- the decoded image: plain data (ckpt_fd.c) ---- */

struct fd_desc {
	uint32_t file;  /* id the TABLE refers to */
	uint32_t flags; /* F_GETFL */
	uint64_t pos;
};

struct fd_chunk {
	uint32_t stream;
	uint64_t off;
	size_t len;
	uint8_t *bytes;
};

struct fd_epi {
	uint32_t tfd;    /* the number the registration was made with (may be stale) */
	uint32_t holder; /* an fd of the process on the watched file */
	uint32_t events;
	uint64_t data;
};

struct fd_uend {
	uint32_t sndbuf, rcvbuf; /* as getsockopt reports them (doubled) */
	int32_t peek_off;        /* SO_PEEK_OFF, -1 off */
	uint32_t shutdown;       /* 1 receive, 2 send shut down */
};

struct fd_obj {
	uint16_t sec;    /* CKPT_SEC_FD_* */
	uint32_t id;     /* PATH, EVENT, EPOLL: the description's file id; else the object's */
	uint32_t kind;   /* PATH_*, MEM_*, PIPE_*, EV_*; UNIX: SOCK_STREAM/DGRAM/SEQPACKET */
	uint32_t mode;   /* PATH, MEMFILE: st_mode */
	uint32_t seals;  /* MEMFILE */
	uint32_t pipe_size;
	uint64_t size, ino, rdev;
	int64_t mtime_sec;
	uint32_t mtime_nsec;
	/* EVENT: eventfd count, semaphore | timerfd clockid, value ns, interval
	 * ns, ticks | signalfd mask */
	uint64_t ev[4];
	char *path; /* PATH, FIFO; MEMFILE: memfd name or the deleted file's path */
	struct fd_desc *descs;
	uint32_t n_descs;
	struct fd_uend uend[2];
	struct fd_epi *epis;
	uint32_t n_epis;
	struct fd_chunk *chunks;
	size_t n_chunks, cap_chunks;
	uint64_t stream_len[2];
};

struct fd_ent {
	uint32_t fd, file, fdflags; /* file 0: restored by the caller */
};

struct ckpt_fds {
	struct fd_ent *table;
	size_t n_table;
	bool have_table;
	struct fd_obj *objs;
	size_t n_objs, cap_objs;
	uint64_t data_total;
	size_t last_data_obj; /* DATA lookup cache */
};

/* A new object at the end of f->objs, zeroed but for its section and its
 * ends' SO_PEEK_OFF (-1: off), with n_descs zeroed descriptions; NULL when
 * out of memory. Pointers into f->objs do not survive it. */
struct fd_obj *ckpt_fd_obj_new(struct ckpt_fds *f, uint16_t sec, uint32_t n_descs);
/* Takes bytes (malloc'ed, or NULL for len 0) in all cases. */
int ckpt_fd_obj_add_chunk(struct fd_obj *o, uint32_t stream, uint64_t off, uint8_t *bytes, size_t len);
/* The entry of fd number fd in the table, or NULL. */
const struct fd_ent *ckpt_fds_table_find(const struct ckpt_fds *f, uint32_t fd);

static inline int ckpt_fd_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The clocks a timerfd may run on (the image's and the dump's rule). */
static inline bool ckpt_fd_timerfd_clock_ok(uint64_t clk)
{
	return clk == CLOCK_REALTIME || clk == CLOCK_MONOTONIC || clk == CLOCK_BOOTTIME || clk == CLOCK_REALTIME_ALARM ||
	       clk == CLOCK_BOOTTIME_ALARM;
}

/* ---- the live process: what each fd is (ckpt_fd_scan.c) ---- */

enum {
	CLS_NONE = 0,
	CLS_EXTERNAL, /* in skip[]: the caller restores it */
	CLS_FILE,
	CLS_DIR,
	CLS_CHR,
	CLS_OPATH,
	CLS_TTY,       /* becomes CLS_ELSEWHERE at fds 0..2, refused above */
	CLS_ELSEWHERE, /* stdio leading out of the process */
	CLS_MEMFD,
	CLS_DELETED,
	CLS_PIPE,
	CLS_FIFO,
	CLS_EVENTFD,
	CLS_TIMERFD,
	CLS_SIGNALFD,
	CLS_EPOLL,
	CLS_UNIX,
};

struct sfd {
	int fd;         /* its number in the process */
	int local;      /* our handle on the same open file; -1 for skipped fds */
	bool skip, cloexec;
	uint32_t flags; /* F_GETFL */
	uint64_t pos;
	struct stat st;
	char *link;     /* /proc/PID/fd/N */
	char *info;     /* /proc/PID/fdinfo/N */
	size_t rep;     /* index of the lowest fd on the same open file */
	int cls;        /* at rep */
	/* unix sockets, at rep */
	int stype;
	uint64_t peer_ino;
	uint32_t shutdown;
	bool listening;
	char name[112]; /* bound name, "@..." for an abstract one */
	size_t peer;    /* the other end's rep (a pair within the process) */
	uint32_t file;  /* dump: the description's file id, at rep */
};

struct scan {
	struct sockmig_proc *p;
	pid_t pid;
	struct sfd *v;
	size_t n;
	bool no_kcmp;
	bool running;     /* the check: the process is not stopped */
	int diag_nl;      /* NETLINK_SOCK_DIAG socket, or -1 */
	uint64_t diag_ns; /* the network namespace it was made in */
};

/* Every fd of p: its link, fdinfo, flags, offset and a handle of ours on
 * its file (none for skip[]). running: the process is not stopped, so an fd
 * may vanish between the listing and the look (it is then left out). */
int ckpt_fd_scan_open(struct scan *s, struct sockmig_proc *p, const int *skip, size_t n_skip, bool running);
/* Group the fds by open file description, classify each description and
 * resolve the epoll registrations: everything the dump would refuse,
 * refused now, one sentence naming the fd. */
int ckpt_fd_scan_classify(struct scan *s);
void ckpt_fd_scan_free(struct scan *s);
/* The value after "key" at the start of a line of an fdinfo, or NULL. */
const char *ckpt_fd_info_field(const char *info, const char *key);
/* -EOPNOTSUPP with "pid P fd N: <what> is not migratable". */
int ckpt_fd_refuse(struct scan *s, size_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The registrations of epoll rep i, each with an fd of the process that
 * holds the watched file; *ret is malloc'ed. */
int ckpt_fd_epoll_regs(struct scan *s, size_t i, struct fd_epi **ret, uint32_t *ret_n);
/* An open file of our own on fd of pid, through /proc/PID/fd (its offset
 * is not the process's). */
int ckpt_fd_open_proc(pid_t pid, int fd, int flags);

#endif
