/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Checkpoint and restore of a process's file descriptors, all but the TCP
 * and UDP sockets the socket engine moves. docs/ckpt-fds.md has the byte
 * layout of the sections, every kind and what it keeps, and the stdio policy.
 *
 * The model is the kernel's: fd numbers point at open file descriptions
 * (TABLE), and a description belongs to an object (a path, a memfd, a pipe,
 * a socketpair, ...). Objects that can have several descriptions (a memfd
 * reopened through /proc, both ends of a pipe) list them; those that cannot
 * (eventfd, epoll, a path reopened) are one description each. Descriptions
 * shared by several fds (dup, fork) are found with kcmp(KCMP_FILE).
 *
 * Nothing is taken from the process: queues are read with tee(2) and
 * MSG_PEEK through our own handles on its files (pidfd_getfd), and file
 * content through our own open of /proc/PID/fd/N, so the offsets the
 * process sees do not move.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/kcmp.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <time.h>

#include "ckpt_fd.h"
#include "util.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif
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

#define CHUNK_MAX (1u << 20) /* bytes per DATA section of a stream or a file */
#define MAX_DESCS 4096u      /* descriptions of one object */
#define MAX_MSGS 65536u      /* datagrams queued in one direction */
#define STR_MAX 4095u        /* a path */
#define MEMFD_NAME_MAX 249u  /* memfd_create's limit */

/* Flags a reopen may give a description; O_ASYNC needs an owner we do not
 * carry, O_CREAT/O_TRUNC/O_EXCL must never be replayed. */
#define REOPEN_FLAGS (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | O_DIRECT | O_NOATIME | O_LARGEFILE)
/* What F_SETFL changes on a description made by a syscall (pipe, socket). */
#define SETFL_FLAGS (O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME)

enum { PATH_FILE = 1, PATH_DIR = 2, PATH_CHR = 3, PATH_OPATH = 4, PATH_ELSEWHERE = 5 };
enum { MEM_MEMFD = 1, MEM_DELETED = 2 };
enum { PIPE_ANON = 1, PIPE_FIFO = 2 };
enum { EV_EVENTFD = 1, EV_TIMERFD = 2, EV_SIGNALFD = 3 };

/* ---- the decoded image: plain data ---- */

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

static void obj_clear(struct fd_obj *o)
{
	free(o->path);
	free(o->descs);
	free(o->epis);
	for (size_t i = 0; i < o->n_chunks; i++)
		free(o->chunks[i].bytes);
	free(o->chunks);
}

void ckpt_fds_free(struct ckpt_fds *fds)
{
	if (!fds)
		return;
	for (size_t i = 0; i < fds->n_objs; i++)
		obj_clear(&fds->objs[i]);
	free(fds->objs);
	free(fds->table);
	free(fds);
}

bool ckpt_fds_owns(uint32_t type)
{
	return type >= CKPT_SEC_FD_TABLE && type <= CKPT_SEC_FD_DATA;
}

int ckpt_fds_max_target(const struct ckpt_fds *fds)
{
	if (!fds || !fds->n_table)
		return -1;
	return (int)fds->table[fds->n_table - 1].fd;
}

static struct fd_obj *new_obj(struct ckpt_fds *f, uint16_t sec)
{
	struct fd_obj *o;

	if (f->n_objs == f->cap_objs) {
		size_t cap = f->cap_objs ? f->cap_objs * 2 : 16;
		struct fd_obj *n = realloc(f->objs, cap * sizeof(*n));

		if (!n)
			return NULL;
		f->objs = n;
		f->cap_objs = cap;
	}
	o = &f->objs[f->n_objs++];
	memset(o, 0, sizeof(*o));
	o->sec = sec;
	o->uend[0].peek_off = o->uend[1].peek_off = -1;
	return o;
}

/* Takes bytes (malloc'ed, or NULL for len 0) in all cases. */
static int obj_add_chunk(struct fd_obj *o, uint32_t stream, uint64_t off, uint8_t *bytes, size_t len)
{
	if (o->n_chunks == o->cap_chunks) {
		size_t cap = o->cap_chunks ? o->cap_chunks * 2 : 4;
		struct fd_chunk *n = realloc(o->chunks, cap * sizeof(*n));

		if (!n) {
			free(bytes);
			return -ENOMEM;
		}
		o->chunks = n;
		o->cap_chunks = cap;
	}
	o->chunks[o->n_chunks++] = (struct fd_chunk){ stream, off, len, bytes };
	if (stream < 2)
		o->stream_len[stream] += len;
	return 0;
}

/* ---- encoder ---- */

static void put_str(struct sm_buf *b, const char *s)
{
	sm_buf_put_blob(b, s, s ? strlen(s) : 0);
}

static void encode_obj(struct sm_buf *b, const struct fd_obj *o)
{
	switch (o->sec) {
	case CKPT_SEC_FD_PATH:
		sm_buf_put_u32(b, o->id);
		sm_buf_put_u32(b, o->kind);
		sm_buf_put_u32(b, o->descs[0].flags);
		sm_buf_put_u32(b, o->mode);
		sm_buf_put_u64(b, o->descs[0].pos);
		sm_buf_put_u64(b, o->size);
		sm_buf_put_u64(b, o->rdev);
		sm_buf_put_u64(b, (uint64_t)o->mtime_sec);
		sm_buf_put_u32(b, o->mtime_nsec);
		put_str(b, o->path);
		break;
	case CKPT_SEC_FD_MEMFILE:
		sm_buf_put_u32(b, o->id);
		sm_buf_put_u32(b, o->kind);
		sm_buf_put_u32(b, o->mode);
		sm_buf_put_u32(b, o->seals);
		sm_buf_put_u64(b, o->size);
		sm_buf_put_u64(b, o->ino);
		put_str(b, o->path);
		sm_buf_put_u32(b, o->n_descs);
		for (uint32_t i = 0; i < o->n_descs; i++) {
			sm_buf_put_u32(b, o->descs[i].file);
			sm_buf_put_u32(b, o->descs[i].flags);
			sm_buf_put_u64(b, o->descs[i].pos);
		}
		break;
	case CKPT_SEC_FD_PIPE:
		sm_buf_put_u32(b, o->id);
		sm_buf_put_u32(b, o->kind);
		sm_buf_put_u32(b, o->pipe_size);
		put_str(b, o->path);
		sm_buf_put_u32(b, o->n_descs);
		for (uint32_t i = 0; i < o->n_descs; i++) {
			sm_buf_put_u32(b, o->descs[i].file);
			sm_buf_put_u32(b, o->descs[i].flags);
		}
		break;
	case CKPT_SEC_FD_EVENT:
		sm_buf_put_u32(b, o->id);
		sm_buf_put_u32(b, o->kind);
		sm_buf_put_u32(b, o->descs[0].flags);
		if (o->kind == EV_EVENTFD) {
			sm_buf_put_u64(b, o->ev[0]);
			sm_buf_put_u32(b, (uint32_t)o->ev[1]);
		} else if (o->kind == EV_TIMERFD) {
			sm_buf_put_u32(b, (uint32_t)o->ev[0]);
			sm_buf_put_u64(b, o->ev[1]);
			sm_buf_put_u64(b, o->ev[2]);
			sm_buf_put_u64(b, o->ev[3]);
		} else {
			sm_buf_put_u64(b, o->ev[0]);
		}
		break;
	case CKPT_SEC_FD_EPOLL:
		sm_buf_put_u32(b, o->id);
		sm_buf_put_u32(b, o->descs[0].flags);
		sm_buf_put_u32(b, o->n_epis);
		for (uint32_t i = 0; i < o->n_epis; i++) {
			sm_buf_put_u32(b, o->epis[i].tfd);
			sm_buf_put_u32(b, o->epis[i].holder);
			sm_buf_put_u32(b, o->epis[i].events);
			sm_buf_put_u64(b, o->epis[i].data);
		}
		break;
	case CKPT_SEC_FD_UNIX:
		sm_buf_put_u32(b, o->id);
		sm_buf_put_u32(b, o->kind);
		for (int e = 0; e < 2; e++) {
			sm_buf_put_u32(b, o->descs[e].file);
			sm_buf_put_u32(b, o->descs[e].flags);
			sm_buf_put_u32(b, o->uend[e].sndbuf);
			sm_buf_put_u32(b, o->uend[e].rcvbuf);
			sm_buf_put_u32(b, (uint32_t)o->uend[e].peek_off);
			sm_buf_put_u32(b, o->uend[e].shutdown);
		}
		break;
	}
}

int ckpt_fds_write(const struct ckpt_fds *fds, struct sm_image_writer *w)
{
	struct sm_buf b;
	int r = 0;

	if (!fds)
		return 0;
	sm_buf_init(&b);
	if (fds->have_table) {
		sm_buf_put_u32(&b, (uint32_t)fds->n_table);
		for (size_t i = 0; i < fds->n_table; i++) {
			sm_buf_put_u32(&b, fds->table[i].fd);
			sm_buf_put_u32(&b, fds->table[i].file);
			sm_buf_put_u32(&b, fds->table[i].fdflags);
		}
		r = sm_image_write_buf(w, CKPT_SEC_FD_TABLE, &b);
	}
	for (size_t i = 0; i < fds->n_objs && r >= 0; i++) {
		const struct fd_obj *o = &fds->objs[i];

		sm_buf_free(&b);
		sm_buf_init(&b);
		encode_obj(&b, o);
		r = sm_image_write_buf(w, o->sec, &b);
		for (size_t k = 0; k < o->n_chunks && r >= 0; k++) {
			sm_buf_free(&b);
			sm_buf_init(&b);
			sm_buf_put_u32(&b, o->id);
			sm_buf_put_u32(&b, o->chunks[k].stream);
			sm_buf_put_u64(&b, o->chunks[k].off);
			sm_buf_put_bytes(&b, o->chunks[k].bytes, o->chunks[k].len);
			r = sm_image_write_buf(w, CKPT_SEC_FD_DATA, &b);
		}
	}
	sm_buf_free(&b);
	return r < 0 ? r : 0;
}

/* ---- decoder: every value untrusted ---- */

/* A string: at most STR_MAX bytes, no NUL; NULL when empty. */
static int cur_str(struct sm_cursor *c, const char *what, char **ret)
{
	size_t n;
	const uint8_t *p = sm_cur_blob(c, &n);

	*ret = NULL;
	if (!p)
		return sm_cur_check(c, what, 0);
	if (n > STR_MAX || memchr(p, 0, n))
		return sm_cur_fail(c, what, "a %zu-byte string is invalid here", n);
	if (!n)
		return 0;
	*ret = strndup((const char *)p, n);
	return *ret ? 0 : -ENOMEM;
}

static bool abs_path(const char *p)
{
	return p && p[0] == '/';
}

/* F_GETFL flags of a description that is opened for I/O (not O_PATH). */
static bool io_flags_ok(uint32_t fl)
{
	return (fl & O_ACCMODE) != O_ACCMODE && !(fl & O_PATH);
}

static int read_descs(struct sm_cursor *c, const char *what, struct fd_obj *o, bool with_pos)
{
	uint32_t n = sm_cur_u32(c);

	if (c->err)
		return sm_cur_check(c, what, 0);
	if (n == 0 || n > MAX_DESCS || (size_t)n * (with_pos ? 16 : 8) > sm_cur_remaining(c))
		return sm_cur_fail(c, what, "%u descriptions cannot be right", n);
	o->descs = calloc(n, sizeof(*o->descs));
	if (!o->descs)
		return -ENOMEM;
	o->n_descs = n;
	for (uint32_t i = 0; i < n; i++) {
		o->descs[i].file = sm_cur_u32(c);
		o->descs[i].flags = sm_cur_u32(c);
		if (with_pos)
			o->descs[i].pos = sm_cur_u64(c);
		if (!c->err && (!o->descs[i].file || !io_flags_ok(o->descs[i].flags)))
			return sm_cur_fail(c, what, "description %u (file %u, flags %#o) is invalid", i,
					   o->descs[i].file, o->descs[i].flags);
	}
	return 0;
}

static int one_desc(struct fd_obj *o, uint32_t file)
{
	o->descs = calloc(1, sizeof(*o->descs));
	if (!o->descs)
		return -ENOMEM;
	o->n_descs = 1;
	o->id = o->descs[0].file = file;
	return 0;
}

static int read_table(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd table";
	uint32_t n = sm_cur_u32(c);

	if (c->err)
		return sm_cur_check(c, what, 0);
	if (f->have_table)
		return sm_cur_fail(c, what, "a second table");
	if (n > CKPT_FD_NUM_MAX || (size_t)n * 12 != sm_cur_remaining(c))
		return sm_cur_fail(c, what, "%u fds cannot be right", n);
	f->table = calloc(n ? n : 1, sizeof(*f->table));
	if (!f->table)
		return -ENOMEM;
	f->have_table = true;
	for (uint32_t i = 0; i < n; i++) {
		struct fd_ent *e = &f->table[i];

		e->fd = sm_cur_u32(c);
		e->file = sm_cur_u32(c);
		e->fdflags = sm_cur_u32(c);
		f->n_table = i + 1;
		if (e->fd >= CKPT_FD_NUM_MAX || (i && e->fd <= f->table[i - 1].fd) || (e->fdflags & ~(uint32_t)FD_CLOEXEC))
			return sm_cur_fail(c, what, "entry %u (fd %u) is invalid or out of order", i, e->fd);
	}
	return sm_cur_check(c, what, 1);
}

static int read_path(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd path section";
	struct fd_obj *o = new_obj(f, CKPT_SEC_FD_PATH);
	uint32_t file;
	bool ok;
	int r;

	if (!o)
		return -ENOMEM;
	file = sm_cur_u32(c);
	if (one_desc(o, file) < 0)
		return -ENOMEM;
	o->kind = sm_cur_u32(c);
	o->descs[0].flags = sm_cur_u32(c);
	o->mode = sm_cur_u32(c);
	o->descs[0].pos = sm_cur_u64(c);
	o->size = sm_cur_u64(c);
	o->rdev = sm_cur_u64(c);
	o->mtime_sec = (int64_t)sm_cur_u64(c);
	o->mtime_nsec = sm_cur_u32(c);
	r = cur_str(c, what, &o->path);
	if (r < 0)
		return r;
	r = sm_cur_check(c, what, 1);
	if (r < 0)
		return r;
	switch (o->kind) {
	case PATH_FILE:
		ok = S_ISREG(o->mode) && io_flags_ok(o->descs[0].flags);
		break;
	case PATH_DIR:
		ok = S_ISDIR(o->mode) && io_flags_ok(o->descs[0].flags);
		break;
	case PATH_CHR:
		ok = S_ISCHR(o->mode) && io_flags_ok(o->descs[0].flags);
		break;
	case PATH_OPATH:
		ok = (o->descs[0].flags & O_PATH) != 0;
		break;
	case PATH_ELSEWHERE:
		ok = io_flags_ok(o->descs[0].flags);
		break;
	default:
		return sm_cur_fail(c, what, "unknown kind %u", o->kind);
	}
	if (!ok || !file || o->mtime_nsec >= 1000000000u || !o->path ||
	    (o->kind != PATH_ELSEWHERE && !abs_path(o->path)))
		return sm_cur_fail(c, what, "file %u (kind %u, mode %#o, flags %#o) is invalid", file, o->kind, o->mode,
				   o->descs[0].flags);
	return 0;
}

static int read_memfile(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd memfile section";
	struct fd_obj *o = new_obj(f, CKPT_SEC_FD_MEMFILE);
	int r;

	if (!o)
		return -ENOMEM;
	o->id = sm_cur_u32(c);
	o->kind = sm_cur_u32(c);
	o->mode = sm_cur_u32(c);
	o->seals = sm_cur_u32(c);
	o->size = sm_cur_u64(c);
	o->ino = sm_cur_u64(c);
	r = cur_str(c, what, &o->path);
	if (r < 0)
		return r;
	if ((r = read_descs(c, what, o, true)) < 0 || (r = sm_cur_check(c, what, 1)) < 0)
		return r;
	if (!o->id || (o->kind != MEM_MEMFD && o->kind != MEM_DELETED) || !S_ISREG(o->mode) ||
	    (o->seals & ~(uint32_t)SEALS_KNOWN) || o->size > (uint64_t)INT64_MAX || !o->path ||
	    (o->kind == MEM_MEMFD && strlen(o->path) > MEMFD_NAME_MAX) || (o->kind == MEM_DELETED && !abs_path(o->path)))
		return sm_cur_fail(c, what, "object %u (kind %u, mode %#o, seals %#x) is invalid", o->id, o->kind, o->mode,
				   o->seals);
	return 0;
}

static int read_pipe(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd pipe section";
	struct fd_obj *o = new_obj(f, CKPT_SEC_FD_PIPE);
	int r;

	if (!o)
		return -ENOMEM;
	o->id = sm_cur_u32(c);
	o->kind = sm_cur_u32(c);
	o->pipe_size = sm_cur_u32(c);
	r = cur_str(c, what, &o->path);
	if (r < 0)
		return r;
	if ((r = read_descs(c, what, o, false)) < 0 || (r = sm_cur_check(c, what, 1)) < 0)
		return r;
	if (!o->id || (o->kind != PIPE_ANON && o->kind != PIPE_FIFO) || (o->kind == PIPE_FIFO) != abs_path(o->path) ||
	    (o->kind == PIPE_ANON && o->path) || o->pipe_size == 0 || o->pipe_size % 4096 || o->pipe_size > (1u << 31))
		return sm_cur_fail(c, what, "object %u (kind %u, size %u) is invalid", o->id, o->kind, o->pipe_size);
	return 0;
}

static bool clock_ok(uint64_t clk)
{
	return clk == CLOCK_REALTIME || clk == CLOCK_MONOTONIC || clk == CLOCK_BOOTTIME || clk == CLOCK_REALTIME_ALARM ||
	       clk == CLOCK_BOOTTIME_ALARM;
}

static int read_event(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd event section";
	struct fd_obj *o = new_obj(f, CKPT_SEC_FD_EVENT);
	uint32_t file;
	bool ok = true;
	int r;

	if (!o)
		return -ENOMEM;
	file = sm_cur_u32(c);
	if (one_desc(o, file) < 0)
		return -ENOMEM;
	o->kind = sm_cur_u32(c);
	o->descs[0].flags = sm_cur_u32(c);
	switch (o->kind) {
	case EV_EVENTFD:
		o->ev[0] = sm_cur_u64(c);
		o->ev[1] = sm_cur_u32(c);
		ok = o->ev[0] < UINT64_MAX && o->ev[1] <= 1;
		break;
	case EV_TIMERFD:
		o->ev[0] = sm_cur_u32(c);
		o->ev[1] = sm_cur_u64(c);
		o->ev[2] = sm_cur_u64(c);
		o->ev[3] = sm_cur_u64(c);
		ok = clock_ok(o->ev[0]) && o->ev[1] <= (uint64_t)INT64_MAX && o->ev[2] <= (uint64_t)INT64_MAX;
		break;
	case EV_SIGNALFD:
		o->ev[0] = sm_cur_u64(c);
		break;
	default:
		return sm_cur_fail(c, what, "unknown kind %u", o->kind);
	}
	if ((r = sm_cur_check(c, what, 1)) < 0)
		return r;
	if (!ok || !file || !io_flags_ok(o->descs[0].flags))
		return sm_cur_fail(c, what, "file %u (kind %u) is invalid", file, o->kind);
	return 0;
}

static int read_epoll(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd epoll section";
	struct fd_obj *o = new_obj(f, CKPT_SEC_FD_EPOLL);
	uint32_t file, n;

	if (!o)
		return -ENOMEM;
	file = sm_cur_u32(c);
	if (one_desc(o, file) < 0)
		return -ENOMEM;
	o->descs[0].flags = sm_cur_u32(c);
	n = sm_cur_u32(c);
	if (c->err)
		return sm_cur_check(c, what, 0);
	if (!file || !io_flags_ok(o->descs[0].flags) || (size_t)n * 20 != sm_cur_remaining(c))
		return sm_cur_fail(c, what, "file %u with %u registrations is invalid", file, n);
	o->epis = calloc(n ? n : 1, sizeof(*o->epis));
	if (!o->epis)
		return -ENOMEM;
	o->n_epis = n;
	for (uint32_t i = 0; i < n; i++) {
		struct fd_epi *e = &o->epis[i];

		e->tfd = sm_cur_u32(c);
		e->holder = sm_cur_u32(c);
		e->events = sm_cur_u32(c);
		e->data = sm_cur_u64(c);
		if (e->tfd >= CKPT_FD_NUM_MAX || e->holder >= CKPT_FD_NUM_MAX)
			return sm_cur_fail(c, what, "registration %u (tfd %u, fd %u) is invalid", i, e->tfd, e->holder);
	}
	return sm_cur_check(c, what, 1);
}

static int read_unix(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd unix socketpair section";
	struct fd_obj *o = new_obj(f, CKPT_SEC_FD_UNIX);
	int r;

	if (!o)
		return -ENOMEM;
	o->descs = calloc(2, sizeof(*o->descs));
	if (!o->descs)
		return -ENOMEM;
	o->n_descs = 2;
	o->id = sm_cur_u32(c);
	o->kind = sm_cur_u32(c);
	for (int e = 0; e < 2; e++) {
		o->descs[e].file = sm_cur_u32(c);
		o->descs[e].flags = sm_cur_u32(c);
		o->uend[e].sndbuf = sm_cur_u32(c);
		o->uend[e].rcvbuf = sm_cur_u32(c);
		o->uend[e].peek_off = (int32_t)sm_cur_u32(c);
		o->uend[e].shutdown = sm_cur_u32(c);
	}
	if ((r = sm_cur_check(c, what, 1)) < 0)
		return r;
	if (!o->id || (o->kind != SOCK_STREAM && o->kind != SOCK_DGRAM && o->kind != SOCK_SEQPACKET))
		return sm_cur_fail(c, what, "object %u of socket type %u is invalid", o->id, o->kind);
	for (int e = 0; e < 2; e++)
		if (!o->descs[e].file || !io_flags_ok(o->descs[e].flags) || o->uend[e].sndbuf > INT_MAX ||
		    o->uend[e].rcvbuf > INT_MAX || o->uend[e].peek_off < -1 || o->uend[e].shutdown > 3)
			return sm_cur_fail(c, what, "end %d of object %u is invalid", e, o->id);
	return 0;
}

static int read_data(struct ckpt_fds *f, struct sm_cursor *c)
{
	static const char what[] = "fd data section";
	uint32_t id = sm_cur_u32(c), stream = sm_cur_u32(c);
	uint64_t off = sm_cur_u64(c);
	size_t len = sm_cur_remaining(c);
	struct fd_obj *o = NULL;
	const struct fd_chunk *last;
	uint8_t *bytes = NULL;
	bool ok;

	if (c->err)
		return sm_cur_check(c, what, 0);
	if (f->last_data_obj < f->n_objs && f->objs[f->last_data_obj].id == id &&
	    f->objs[f->last_data_obj].sec != CKPT_SEC_FD_PATH)
		o = &f->objs[f->last_data_obj];
	for (size_t i = f->n_objs; !o && i-- > 0;)
		if (f->objs[i].id == id && (f->objs[i].sec == CKPT_SEC_FD_MEMFILE || f->objs[i].sec == CKPT_SEC_FD_PIPE ||
					    f->objs[i].sec == CKPT_SEC_FD_UNIX)) {
			o = &f->objs[i];
			f->last_data_obj = i;
		}
	if (!o || o->sec == CKPT_SEC_FD_EVENT || o->sec == CKPT_SEC_FD_EPOLL)
		return sm_cur_fail(c, what, "bytes for object %u, which came before or does not exist", id);
	last = o->n_chunks ? &o->chunks[o->n_chunks - 1] : NULL;
	switch (o->sec) {
	case CKPT_SEC_FD_MEMFILE: /* extents of the file, ascending */
		ok = stream == 0 && len && off <= o->size && len <= o->size - off &&
		     (!last || off >= last->off + last->len);
		break;
	case CKPT_SEC_FD_PIPE:
		ok = stream == 0 && len && off == o->stream_len[0] && len <= o->pipe_size - o->stream_len[0];
		break;
	default: /* UNIX: a stream's bytes in order, or one datagram each */
		ok = stream < 2 && off == o->stream_len[stream] && (len || o->kind != SOCK_STREAM);
		if (ok && o->kind != SOCK_STREAM) {
			size_t msgs = 0;

			for (size_t i = 0; i < o->n_chunks; i++)
				msgs += o->chunks[i].stream == stream;
			ok = msgs < MAX_MSGS;
		}
		break;
	}
	if (!ok)
		return sm_cur_fail(c, what, "%zu bytes at %" PRIu64 " of object %u (stream %u) do not fit", len, off, id,
				   stream);
	if (len > CKPT_FD_DATA_MAX - f->data_total)
		return sm_cur_fail(c, what, "more than %llu MiB of file content", CKPT_FD_DATA_MAX >> 20);
	if (len) {
		bytes = malloc(len);
		if (!bytes)
			return -ENOMEM;
		memcpy(bytes, sm_cur_bytes(c, len), len);
	}
	f->data_total += len;
	return obj_add_chunk(o, stream, off, bytes, len);
}

int ckpt_fds_read_section(struct ckpt_fds **fds, uint32_t type, struct sm_cursor *c)
{
	if (!*fds) {
		*fds = calloc(1, sizeof(**fds));
		if (!*fds)
			return -ENOMEM;
	}
	switch (type) {
	case CKPT_SEC_FD_TABLE:
		return read_table(*fds, c);
	case CKPT_SEC_FD_PATH:
		return read_path(*fds, c);
	case CKPT_SEC_FD_MEMFILE:
		return read_memfile(*fds, c);
	case CKPT_SEC_FD_PIPE:
		return read_pipe(*fds, c);
	case CKPT_SEC_FD_EVENT:
		return read_event(*fds, c);
	case CKPT_SEC_FD_EPOLL:
		return read_epoll(*fds, c);
	case CKPT_SEC_FD_UNIX:
		return read_unix(*fds, c);
	case CKPT_SEC_FD_DATA:
		return read_data(*fds, c);
	}
	return sm_cur_fail(c, "fd section", "type %#x is not an fd section", type);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static const struct fd_ent *table_find(const struct ckpt_fds *f, uint32_t fd)
{
	size_t lo = 0, hi = f->n_table;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (f->table[mid].fd == fd)
			return &f->table[mid];
		if (f->table[mid].fd < fd)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Sorted file ids of every description; *ret_n of them. */
static int file_ids(const struct ckpt_fds *f, uint32_t **ret, size_t *ret_n)
{
	size_t n = 0;
	uint32_t *v;

	for (size_t i = 0; i < f->n_objs; i++)
		n += f->objs[i].n_descs;
	v = malloc((n ? n : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	n = 0;
	for (size_t i = 0; i < f->n_objs; i++)
		for (uint32_t k = 0; k < f->objs[i].n_descs; k++)
			v[n++] = f->objs[i].descs[k].file;
	qsort(v, n, sizeof(*v), cmp_u32);
	*ret = v;
	*ret_n = n;
	return 0;
}

int ckpt_fds_validate(const struct ckpt_fds *fds)
{
	_cleanup_free_ uint32_t *files = NULL, *ids = NULL;
	_cleanup_free_ uint8_t *used = NULL;
	size_t n_files = 0, n_ids = 0;
	int r;

	if (!fds)
		return 0;
	if (!fds->have_table)
		return sm_fail(-EBADMSG, "fd sections without an fd table");
	r = file_ids(fds, &files, &n_files);
	if (r < 0)
		return r;
	/* object ids share the space of file ids (DATA names objects) */
	ids = malloc((n_files + fds->n_objs + 1) * sizeof(*ids));
	used = calloc(n_files + 1, 1);
	if (!ids || !used)
		return -ENOMEM;
	memcpy(ids, files, n_files * sizeof(*ids));
	n_ids = n_files;
	for (size_t i = 0; i < fds->n_objs; i++)
		if (fds->objs[i].sec == CKPT_SEC_FD_MEMFILE || fds->objs[i].sec == CKPT_SEC_FD_PIPE ||
		    fds->objs[i].sec == CKPT_SEC_FD_UNIX)
			ids[n_ids++] = fds->objs[i].id;
	qsort(ids, n_ids, sizeof(*ids), cmp_u32);
	for (size_t i = 1; i < n_ids; i++)
		if (ids[i] == ids[i - 1])
			return sm_fail(-EBADMSG, "fd sections: id %u is used twice", ids[i]);
	for (size_t i = 0; i < fds->n_table; i++) {
		const struct fd_ent *e = &fds->table[i];
		uint32_t *hit;

		if (!e->file)
			continue;
		hit = bsearch(&e->file, files, n_files, sizeof(*files), cmp_u32);
		if (!hit)
			return sm_fail(-EBADMSG, "fd table: fd %u refers to file %u, which no section describes", e->fd,
				       e->file);
		used[hit - files] = 1;
	}
	for (size_t i = 0; i < n_files; i++)
		if (!used[i])
			return sm_fail(-EBADMSG, "fd sections: file %u is not at any fd", files[i]);
	for (size_t i = 0; i < fds->n_objs; i++) {
		const struct fd_obj *o = &fds->objs[i];

		for (uint32_t k = 0; k < o->n_epis; k++)
			if (!table_find(fds, o->epis[k].holder))
				return sm_fail(-EBADMSG, "fd sections: epoll file %u watches fd %u, which is not in the table",
					       o->id, o->epis[k].holder);
		if (o->sec == CKPT_SEC_FD_PIPE && o->kind == PIPE_ANON) {
			bool rd = false, wr = false;

			for (uint32_t k = 0; k < o->n_descs; k++) {
				uint32_t acc = o->descs[k].flags & O_ACCMODE;

				rd |= acc != O_WRONLY;
				wr |= acc != O_RDONLY;
			}
			if (!rd || !wr)
				return sm_fail(-EBADMSG, "fd sections: pipe %u lacks a read or a write end", o->id);
		}
		if (o->sec == CKPT_SEC_FD_UNIX && o->descs[0].file == o->descs[1].file)
			return sm_fail(-EBADMSG, "fd sections: socketpair %u has one file at both ends", o->id);
	}
	return 0;
}

/* ---- the live process: what each fd is ---- */

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

static void scan_free(struct scan *s)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].local >= 0)
			close(s->v[i].local);
		free(s->v[i].link);
		free(s->v[i].info);
	}
	free(s->v);
	if (s->diag_nl >= 0)
		close(s->diag_nl);
	s->v = NULL;
	s->n = 0;
	s->diag_nl = -1;
}

/* A small /proc file, whole, NUL-terminated (an epoll's fdinfo has a line
 * per registration, so it is not that small). */
static char *read_text(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 4096;
	char *buf;

	if (fd < 0)
		return NULL;
	buf = malloc(cap);
	while (buf) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *nb = cap < (16u << 20) ? realloc(buf, cap * 2) : NULL;

			if (!nb) {
				free(buf);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (buf)
		buf[len] = 0;
	return buf;
}

/* The value after "key" at the start of a line of an fdinfo, or NULL. */
static const char *info_field(const char *info, const char *key)
{
	size_t k = strlen(key);

	for (const char *p = info; p && *p;) {
		if (!strncmp(p, key, k))
			return p + k;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static bool in_list(const int *v, size_t n, int x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* running: the process is not stopped, so an fd may vanish between the
 * listing and the look (it is then left out: it is gone). */
static int scan_open(struct scan *s, struct sockmig_proc *p, const int *skip, size_t n_skip, bool running)
{
	_cleanup_free_ int *fds = NULL;
	size_t n = 0;
	int r;

	memset(s, 0, sizeof(*s));
	s->p = p;
	s->pid = sockmig_proc_pid(p);
	s->diag_nl = -1;
	s->running = running;
	r = sockmig_proc_fd_list(p, &fds, &n);
	if (r < 0)
		return r;
	s->v = calloc(n ? n : 1, sizeof(*s->v));
	if (!s->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct sfd *e = &s->v[s->n];
		char path[64], link[PATH_MAX + 32];
		const char *q;
		ssize_t len;
		uint32_t fl;

		*e = (struct sfd){ .fd = fds[i], .local = -1, .rep = s->n, .skip = in_list(skip, n_skip, fds[i]) };
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)s->pid, e->fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < 0 && running && errno == ENOENT)
			continue;
		if (len < 0)
			return sm_fail(-errno, "pid %d fd %d: cannot read what it is: %s", (int)s->pid, e->fd, strerror(errno));
		link[len] = 0;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)s->pid, e->fd);
		e->info = read_text(path);
		if (!e->info && running && errno == ENOENT)
			continue;
		e->link = strdup(link);
		if (!e->info || !e->link) {
			r = errno ? -errno : -ENOMEM;
			free(e->info);
			free(e->link);
			return sm_fail(r, "pid %d fd %d: cannot read its fdinfo: %s", (int)s->pid, e->fd, strerror(-r));
		}
		q = info_field(e->info, "flags:");
		fl = q ? (uint32_t)strtoul(q, NULL, 8) : 0;
		e->cloexec = (fl & O_CLOEXEC) != 0;
		e->flags = fl & ~(uint32_t)O_CLOEXEC;
		q = info_field(e->info, "pos:");
		e->pos = q ? strtoull(q, NULL, 10) : 0;
		s->n++;
		if (e->skip) {
			e->cls = CLS_EXTERNAL;
			continue;
		}
		r = sockmig_proc_fd_get(p, e->fd, &e->local);
		if (r == -EBADF && running) {
			s->n--;
			free(e->info);
			free(e->link);
			continue;
		}
		if (r < 0)
			return r;
		if (fstat(e->local, &e->st) < 0)
			return sm_fail(-errno, "pid %d fd %d: fstat: %s", (int)s->pid, e->fd, strerror(errno));
	}
	return 0;
}

static int kcmp_file(pid_t pid, int a, int b)
{
	return (int)syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);
}

/* Order of open file descriptions: kcmp's, or without kcmp the inode,
 * offset and flags (anonymous inodes are all one inode: each its own then). */
static int cmp_desc(const void *a, const void *b, void *arg)
{
	struct scan *s = arg;
	const struct sfd *x = &s->v[*(const size_t *)a], *y = &s->v[*(const size_t *)b];

	if (!s->no_kcmp) {
		switch (kcmp_file(s->pid, x->fd, y->fd)) {
		case 0:
			return 0;
		case 1:
			return -1;
		case 2:
			return 1;
		default: /* vanished meanwhile (the check runs on a live process) */
			return (x->fd > y->fd) - (x->fd < y->fd);
		}
	}
	if (x->st.st_dev != y->st.st_dev)
		return x->st.st_dev < y->st.st_dev ? -1 : 1;
	if (x->st.st_ino != y->st.st_ino)
		return x->st.st_ino < y->st.st_ino ? -1 : 1;
	if (!strncmp(x->link, "anon_inode:", 11) || x->pos != y->pos || x->flags != y->flags)
		return x->fd < y->fd ? -1 : x->fd > y->fd;
	return 0;
}

/* Every fd's rep: the lowest fd on the same open file description. */
static int scan_group(struct scan *s)
{
	_cleanup_free_ size_t *idx = malloc((s->n ? s->n : 1) * sizeof(size_t));
	size_t m = 0;

	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].skip)
			idx[m++] = i;
	if (m && kcmp_file(s->pid, s->v[idx[0]].fd, s->v[idx[0]].fd) != 0)
		s->no_kcmp = true; /* then inode + offset + flags, as fdinfo tells */
	qsort_r(idx, m, sizeof(*idx), cmp_desc, s);
	for (size_t g = 0; g < m;) {
		size_t end = g + 1, rep = idx[g];

		while (end < m && cmp_desc(&idx[end - 1], &idx[end], s) == 0)
			end++;
		for (size_t k = g; k < end; k++)
			rep = idx[k] < rep ? idx[k] : rep;
		for (size_t k = g; k < end; k++)
			s->v[idx[k]].rep = rep;
		g = end;
	}
	return 0;
}

static int refuse(struct scan *s, size_t i, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(struct scan *s, size_t i, const char *fmt, ...)
{
	char what[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return sm_fail(-EOPNOTSUPP, "pid %d fd %d: %s is not migratable", (int)s->pid, s->v[i].fd, what);
}

/* Whether every fd on rep i's description is 0, 1 or 2. */
static bool only_stdio(const struct scan *s, size_t i)
{
	for (size_t k = 0; k < s->n; k++)
		if (s->v[k].rep == i && !s->v[k].skip && s->v[k].fd > 2)
			return false;
	return true;
}

/* The restore reopens by path: that path must lead to this very file from
 * here (not renamed over, not in another mount namespace). */
static int reachable(struct scan *s, size_t i, bool nofollow)
{
	const struct sfd *e = &s->v[i];
	struct stat st;

	if ((nofollow ? lstat(e->link, &st) : stat(e->link, &st)) < 0 || st.st_dev != e->st.st_dev ||
	    st.st_ino != e->st.st_ino)
		return sm_fail(-EOPNOTSUPP,
			       "pid %d fd %d: %s is not reachable by its path from here (renamed over, or in another mount namespace), so it is not migratable",
			       (int)s->pid, e->fd, e->link);
	return 0;
}

static const char *anon_name(const char *k)
{
	static const struct {
		const char *link, *name;
	} names[] = {
		{ "[io_uring]", "io_uring" },         { "inotify", "an inotify instance" },
		{ "[fanotify]", "a fanotify instance" }, { "[pidfd]", "a pidfd" },
		{ "[userfaultfd]", "a userfaultfd" }, { "[perf_event]", "a perf event" },
		{ "[secretmem]", "a secretmem file" }, { "[signalfd]", "a signalfd" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(k, names[i].link))
			return names[i].name;
	if (!strncmp(k, "bpf", 3))
		return "a BPF object";
	return NULL;
}

/* ---- unix sockets: sock_diag tells the peer, the name, the shutdown ---- */

/* A NETLINK_SOCK_DIAG socket in the network namespace of socket fd (unix
 * sockets are looked up per namespace). */
static int diag_socket(struct scan *s, int fd)
{
	_cleanup_close_ int nsfd = -1, self = -1;
	struct stat a, b;
	int nl;

	nsfd = ioctl(fd, SIOCGSKNS);
	if (nsfd < 0 || fstat(nsfd, &a) < 0)
		return sm_fail(-errno, "cannot get the network namespace of a unix socket of pid %d: %s", (int)s->pid,
			       strerror(errno));
	if (s->diag_nl >= 0 && s->diag_ns == a.st_ino)
		return s->diag_nl;
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0 || fstat(self, &b) < 0)
		return sm_fail(-errno, "cannot open this thread's network namespace: %s", strerror(errno));
	if (a.st_ino != b.st_ino && setns(nsfd, CLONE_NEWNET) < 0)
		return sm_fail(-errno, "cannot enter the network namespace of pid %d's sockets: %s", (int)s->pid,
			       strerror(errno));
	nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		nl = sm_fail(-errno, "cannot open a sock_diag socket: %s", strerror(errno));
	if (a.st_ino != b.st_ino && setns(self, CLONE_NEWNET) < 0)
		abort(); /* never leave the thread in another namespace */
	if (nl >= 0) {
		if (s->diag_nl >= 0)
			close(s->diag_nl);
		s->diag_nl = nl;
		s->diag_ns = a.st_ino;
	}
	return nl;
}

static int unix_query(struct scan *s, struct sfd *e)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg = {
		.nlh = { .nlmsg_len = sizeof(msg), .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST },
		.req = { .sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = (uint32_t)e->st.st_ino,
			 .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER,
			 .udiag_cookie = { INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE } },
	};
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	uint8_t buf[8192] __attribute__((aligned(4)));
	int nl = diag_socket(s, e->local);
	ssize_t n;

	if (nl < 0)
		return nl;
	if (sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return sm_fail(-errno, "pid %d fd %d: sock_diag request: %s", (int)s->pid, e->fd, strerror(errno));
	do
		n = recv(nl, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return sm_fail(-errno, "pid %d fd %d: sock_diag answer: %s", (int)s->pid, e->fd, strerror(errno));
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		struct unix_diag_msg *m = NLMSG_DATA(h);
		struct rtattr *a = (struct rtattr *)(m + 1);
		int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));

		if (h->nlmsg_type == NLMSG_ERROR) {
			struct nlmsgerr *err = NLMSG_DATA(h);

			return sm_fail(err->error ? err->error : -EIO, "pid %d fd %d: sock_diag does not know the unix socket: %s",
				       (int)s->pid, e->fd, strerror(err->error ? -err->error : EIO));
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || m->udiag_ino != (uint32_t)e->st.st_ino)
			continue;
		e->listening = m->udiag_state == 10; /* TCP_LISTEN */
		for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
			size_t plen = RTA_PAYLOAD(a);
			const char *p = RTA_DATA(a);

			if (a->rta_type == UNIX_DIAG_PEER && plen >= 4)
				e->peer_ino = *(const uint32_t *)RTA_DATA(a);
			else if (a->rta_type == UNIX_DIAG_SHUTDOWN && plen >= 1)
				e->shutdown = *(const uint8_t *)RTA_DATA(a);
			else if (a->rta_type == UNIX_DIAG_NAME && plen > 0) {
				size_t k = plen < sizeof(e->name) - 2 ? plen : sizeof(e->name) - 2;

				if (p[0] == 0) {
					e->name[0] = '@';
					memcpy(e->name + 1, p + 1, k - 1);
					e->name[k] = 0;
				} else {
					memcpy(e->name, p, k);
					e->name[k] = 0;
				}
			}
		}
		return 0;
	}
	return sm_fail(-EIO, "pid %d fd %d: sock_diag gave no answer about the unix socket", (int)s->pid, e->fd);
}

static int classify_socket(struct scan *s, size_t i)
{
	struct sfd *e = &s->v[i];
	struct sockmig_fd_info info;
	const char *q;
	int r;

	r = sockmig_fd_describe(e->local, e->fd, &info);
	if (r < 0)
		return r;
	switch (info.kind) {
	case SOCKMIG_FD_TCP:
	case SOCKMIG_FD_UDP:
		return sm_fail(-EOPNOTSUPP, "pid %d fd %d: this %s is not among the sockets the socket engine moves",
			       (int)s->pid, e->fd, sockmig_fd_kind_name(info.kind));
	case SOCKMIG_FD_UNIX:
		break;
	default:
		return refuse(s, i, "a %s", sockmig_fd_kind_name(info.kind));
	}
	e->cls = CLS_UNIX;
	e->stype = info.type;
	if (info.type != SOCK_STREAM && info.type != SOCK_DGRAM && info.type != SOCK_SEQPACKET)
		return refuse(s, i, "a unix socket of type %d", info.type);
	q = info_field(e->info, "scm_fds:");
	if (q && strtoul(q, NULL, 10) > 0)
		return refuse(s, i, "a unix socket with file descriptors in flight");
	return unix_query(s, e);
}

/* Pass 1: what rep i is, from its link, fstat and fdinfo. */
static int classify(struct scan *s, size_t i)
{
	struct sfd *e = &s->v[i];
	const char *l = e->link;
	unsigned maj = major(e->st.st_rdev), min = minor(e->st.st_rdev);
	bool deleted = ends_with(l, " (deleted)");

	if (!strncmp(l, "anon_inode:", 11)) {
		const char *k = l + 11;

		if (!strcmp(k, "[eventfd]"))
			e->cls = CLS_EVENTFD;
		else if (!strcmp(k, "[timerfd]"))
			e->cls = CLS_TIMERFD;
		else if (!strcmp(k, "[signalfd]"))
			e->cls = CLS_SIGNALFD;
		else if (!strcmp(k, "[eventpoll]"))
			e->cls = CLS_EPOLL;
		else
			return anon_name(k) ? refuse(s, i, "%s", anon_name(k)) : refuse(s, i, "the kernel object %s", l);
		return 0;
	}
	if (e->flags & O_PATH) {
		if (l[0] != '/' || deleted)
			return refuse(s, i, "the O_PATH fd of %s", l);
		e->cls = CLS_OPATH;
		return reachable(s, i, S_ISLNK(e->st.st_mode));
	}
	switch (e->st.st_mode & S_IFMT) {
	case S_IFSOCK:
		return classify_socket(s, i);
	case S_IFIFO:
		if (!strncmp(l, "pipe:", 5)) {
			e->cls = CLS_PIPE;
			return 0;
		}
		if (l[0] != '/' || deleted)
			return refuse(s, i, "the deleted FIFO %s", l);
		e->cls = CLS_FIFO;
		return reachable(s, i, false);
	case S_IFREG:
		if (l[0] == '/' && deleted && reachable(s, i, false) < 0) {
			struct statfs sf;

			if (strncmp(l, "/memfd:", 7)) {
				e->cls = CLS_DELETED;
				return 0;
			}
			if (fstatfs(e->local, &sf) == 0 && sf.f_type == HUGETLBFS_MAGIC)
				return refuse(s, i, "the hugetlbfs memfd %s", l);
			e->cls = CLS_MEMFD;
			return 0;
		}
		if (l[0] != '/')
			return refuse(s, i, "the file %s", l);
		e->cls = CLS_FILE;
		return reachable(s, i, false);
	case S_IFDIR:
		if (l[0] != '/' || deleted)
			return refuse(s, i, "the deleted directory %s", l);
		e->cls = CLS_DIR;
		return reachable(s, i, false);
	case S_IFCHR:
		if (maj == 4 || maj == 5 || (maj >= 136 && maj <= 143) || isatty(e->local)) {
			e->cls = CLS_TTY;
			return 0;
		}
		/* null, zero, full, random, urandom: the same everywhere */
		if (maj == 1 && (min == 3 || min == 5 || min == 7 || min == 8 || min == 9) && l[0] == '/') {
			e->cls = CLS_CHR;
			return reachable(s, i, false);
		}
		return refuse(s, i, "the character device %s (%u:%u)", l, maj, min);
	case S_IFBLK:
		return refuse(s, i, "the block device %s (%u:%u)", l, maj, min);
	}
	return refuse(s, i, "%s", l);
}

/* Pass 2: what depends on the other fds: both ends of a pipe or a
 * socketpair in the process, or stdio leading elsewhere. */
static int classify_peers(struct scan *s, size_t i)
{
	struct sfd *e = &s->v[i];

	switch (e->cls) {
	case CLS_TTY:
		if (!only_stdio(s, i))
			return refuse(s, i, "the terminal %s", e->link);
		e->cls = CLS_ELSEWHERE;
		return 0;
	case CLS_PIPE: {
		bool rd = false, wr = false;

		for (size_t k = 0; k < s->n; k++) {
			const struct sfd *o = &s->v[k];

			if (o->rep != k || o->cls != CLS_PIPE || o->st.st_ino != e->st.st_ino || o->st.st_dev != e->st.st_dev)
				continue;
			rd |= (o->flags & O_ACCMODE) != O_WRONLY;
			wr |= (o->flags & O_ACCMODE) != O_RDONLY;
		}
		if (rd && wr)
			return 0;
		if (!only_stdio(s, i))
			return refuse(s, i, "a pipe whose other end is in another process");
		e->cls = CLS_ELSEWHERE;
		return 0;
	}
	case CLS_UNIX:
		if (e->listening)
			return refuse(s, i, "a listening unix socket (%s)", e->name[0] ? e->name : "unnamed");
		for (size_t k = 0; k < s->n && e->peer_ino; k++) {
			const struct sfd *o = &s->v[k];

			if (o->rep == k && k != i && o->cls == CLS_UNIX && o->st.st_ino == e->peer_ino &&
			    o->peer_ino == e->st.st_ino) {
				if (e->name[0])
					return refuse(s, i, "a unix socket bound to %s", e->name);
				e->peer = k;
				return 0;
			}
		}
		if (e->peer_ino && only_stdio(s, i)) {
			e->cls = CLS_ELSEWHERE;
			return 0;
		}
		if (!e->peer_ino)
			return refuse(s, i, "%s", e->name[0] ? "a unix socket bound to a name" : "an unconnected unix socket");
		return refuse(s, i, "a unix socket whose peer is in another process");
	}
	return 0;
}

/* ---- epoll registrations: the file behind each, by kcmp ---- */

/* 1: the registration's file is candidate's, 0: it is not, -1: there is no
 * such registration (any more). */
static int epoll_target_is(pid_t pid, int efd, uint32_t tfd, uint64_t toff, int candidate)
{
	struct kcmp_epoll_slot slot = { .efd = (uint32_t)efd, .tfd = tfd, .toff = toff };
	long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, candidate, &slot);

	return r == 0 ? 1 : r < 0 && errno == ENOENT ? -1 : 0;
}

static const struct sfd *scan_find(const struct scan *s, int fd)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].fd == fd)
			return &s->v[i];
	return NULL;
}

/* The registrations of epoll rep i, each with an fd of the process that
 * holds the watched file (the number it was registered with may have been
 * closed after a dup, or reused). */
static int epoll_regs(struct scan *s, size_t i, struct fd_epi **ret, uint32_t *ret_n)
{
	const struct sfd *e = &s->v[i];
	struct fd_epi *v = NULL;
	uint32_t n = 0, cap = 0;

	for (const char *p = info_field(e->info, "tfd:"); p; p = info_field(p, "tfd:")) {
		unsigned tfd, events;
		unsigned long long data, ino = 0;
		const struct sfd *h = NULL;
		uint64_t toff = 0;
		const char *q;

		if (sscanf(p, "%u events: %x data: %llx", &tfd, &events, &data) != 3) {
			free(v);
			return sm_fail(-EIO, "pid %d fd %d: unreadable epoll fdinfo", (int)s->pid, e->fd);
		}
		q = strstr(p, "ino:");
		if (q && q < strchr(p, '\n'))
			ino = strtoull(q + 4, NULL, 16);
		/* toff: which of the registrations made with this number (an
		 * fd number reused after a close can be in the tree twice) */
		for (const char *o = info_field(e->info, "tfd:"); o && o < p; o = info_field(strchr(o, '\n'), "tfd:"))
			toff += strtoul(o, NULL, 10) == tfd;
		if (!s->no_kcmp) {
			const struct sfd *t = scan_find(s, (int)tfd);
			int is = t ? epoll_target_is(s->pid, e->fd, tfd, toff, t->fd) : 0;

			if (is > 0)
				h = t;
			for (size_t k = 0; k < s->n && !h && is >= 0; k++)
				if ((is = epoll_target_is(s->pid, e->fd, tfd, toff, s->v[k].fd)) > 0)
					h = &s->v[k];
			/* A running process changes its registrations all the time
			 * (asyncio removes and adds a socket on every pause of its
			 * reading): one gone since its fdinfo was read is no refusal.
			 * The dump, on the stopped process, sees none go. */
			if (is < 0 && s->running) {
				p = strchr(p, '\n');
				continue;
			}
		} else {
			const struct sfd *t = scan_find(s, (int)tfd);

			if (t && (t->skip || t->st.st_ino == ino))
				h = t;
		}
		if (!h) {
			free(v);
			return sm_fail(-EOPNOTSUPP,
				       "pid %d fd %d: its epoll watches a file (registered as fd %u) that no fd of the process holds, which is not migratable",
				       (int)s->pid, e->fd, tfd);
		}
		if (n == cap) {
			struct fd_epi *nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof(*v));

			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (struct fd_epi){ tfd, (uint32_t)h->fd, events, data };
		p = strchr(p, '\n');
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Both passes, and the epoll registrations resolved: everything the dump
 * would refuse, refused now. */
static int scan_classify(struct scan *s)
{
	int r = scan_group(s);

	for (size_t i = 0; i < s->n && r >= 0; i++)
		if (s->v[i].rep == i && !s->v[i].skip)
			r = classify(s, i);
	for (size_t i = 0; i < s->n && r >= 0; i++)
		if (s->v[i].rep == i && !s->v[i].skip)
			r = classify_peers(s, i);
	for (size_t i = 0; i < s->n && r >= 0; i++) {
		struct fd_epi *v = NULL;
		uint32_t n = 0;

		if (s->v[i].rep != i || s->v[i].cls != CLS_EPOLL)
			continue;
		r = epoll_regs(s, i, &v, &n);
		free(v);
	}
	return r;
}

/* Bytes of file content from `from` on: the data extents only (a sparse
 * memfd carries what it holds, not its size). */
static int64_t extents_size(int fd, uint64_t size)
{
	uint64_t total = 0;
	off_t off = 0;

	for (int k = 0; k < 1 << 20 && (uint64_t)off < size; k++) {
		off_t d = lseek(fd, off, SEEK_DATA), h;

		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0)
			return (int64_t)size; /* no SEEK_DATA: all of it */
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			h = (off_t)size;
		total += (uint64_t)(h - d);
		off = h;
	}
	return (int64_t)total;
}

static int open_proc_fd(pid_t pid, int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	return open(path, flags | O_CLOEXEC);
}

/* What the dump would carry, roughly (the process still runs). */
static int estimate_data(struct scan *s)
{
	uint64_t total = 0;

	for (size_t i = 0; i < s->n; i++) {
		const struct sfd *e = &s->v[i];
		bool first = true;
		int q = 0;

		if (e->rep != i)
			continue;
		/* once per memfd, file or pipe */
		for (size_t k = 0; k < i && first; k++)
			first = !(s->v[k].rep == k && s->v[k].cls == e->cls && s->v[k].st.st_ino == e->st.st_ino &&
				  s->v[k].st.st_dev == e->st.st_dev);
		if (!first)
			continue;
		switch (e->cls) {
		case CLS_MEMFD:
		case CLS_DELETED: {
			_cleanup_close_ int fd = open_proc_fd(s->pid, e->fd, O_RDONLY);

			total += fd < 0 ? (uint64_t)e->st.st_size : (uint64_t)extents_size(fd, (uint64_t)e->st.st_size);
			break;
		}
		case CLS_PIPE:
		case CLS_FIFO:
			if (ioctl(e->local, FIONREAD, &q) == 0 && q > 0)
				total += (uint64_t)q;
			break;
		case CLS_UNIX:
			if (e->stype == SOCK_DGRAM)
				q = ioctl(s->v[e->peer].local, SIOCOUTQ, &q) == 0 ? q : 0;
			else if (ioctl(e->local, SIOCINQ, &q) < 0)
				q = 0;
			total += q > 0 ? (uint64_t)q : 0;
			break;
		}
	}
	if (total > CKPT_FD_DATA_MAX)
		return sm_fail(-EOPNOTSUPP,
			       "pid %d: its memfds, deleted files, pipes and unix sockets hold %" PRIu64 " MiB, more than the %llu MiB a checkpoint carries",
			       (int)s->pid, total >> 20, CKPT_FD_DATA_MAX >> 20);
	return 0;
}

int ckpt_fds_check(pid_t pid, const int *skip, size_t n_skip)
{
	struct sockmig_proc *p = NULL;
	struct scan s;
	int r;

	r = sockmig_proc_open(pid, &p);
	if (r < 0)
		return r;
	r = scan_open(&s, p, skip, n_skip, true);
	if (r >= 0)
		r = scan_classify(&s);
	if (r >= 0)
		r = estimate_data(&s);
	scan_free(&s);
	sockmig_proc_free(p);
	return r < 0 ? r : 0;
}

/* ---- dump: the process is stopped ---- */

struct dump {
	struct scan *s;
	struct ckpt_fds *f;
	uint32_t next_id;
};

static int budget(struct dump *d, size_t i, size_t len)
{
	if (len > CKPT_FD_DATA_MAX - d->f->data_total)
		return sm_fail(-EOPNOTSUPP,
			       "pid %d fd %d: its memfds, deleted files, pipes and unix sockets hold more than the %llu MiB a checkpoint carries",
			       (int)d->s->pid, d->s->v[i].fd, CKPT_FD_DATA_MAX >> 20);
	d->f->data_total += len;
	return 0;
}

static int add_desc(struct fd_obj *o, uint32_t file, uint32_t flags, uint64_t pos)
{
	struct fd_desc *n = realloc(o->descs, (o->n_descs + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	o->descs = n;
	o->descs[o->n_descs++] = (struct fd_desc){ file, flags, pos };
	return 0;
}

/* The object an earlier description of the same inode made (memfd, pipe). */
static struct fd_obj *find_inode_obj(struct dump *d, uint16_t sec, const struct stat *st)
{
	for (size_t k = 0; k < d->f->n_objs; k++) {
		struct fd_obj *o = &d->f->objs[k];

		/* rdev holds st_dev here: MEMFILE and PIPE do not encode it */
		if (o->sec == sec && o->ino == st->st_ino && o->rdev == st->st_dev)
			return o;
	}
	return NULL;
}

static int dump_path(struct dump *d, size_t i, uint32_t kind)
{
	const struct sfd *e = &d->s->v[i];
	struct fd_obj *o = new_obj(d->f, CKPT_SEC_FD_PATH);

	if (!o || one_desc(o, e->file) < 0 || !(o->path = strdup(e->link)))
		return -ENOMEM;
	o->kind = kind;
	o->descs[0].flags = e->flags;
	o->descs[0].pos = e->pos;
	o->mode = e->st.st_mode;
	if (kind == PATH_FILE) {
		o->size = (uint64_t)e->st.st_size;
		o->mtime_sec = e->st.st_mtim.tv_sec;
		o->mtime_nsec = (uint32_t)e->st.st_mtim.tv_nsec;
	}
	if (kind == PATH_CHR)
		o->rdev = e->st.st_rdev;
	return 0;
}

/* Content of a memfd or deleted file: its data extents, read through an
 * open file of our own (the process's offset stays where it is). */
static int memfile_content(struct dump *d, size_t i, struct fd_obj *o)
{
	_cleanup_close_ int fd = open_proc_fd(d->s->pid, d->s->v[i].fd, O_RDONLY);
	off_t off = 0;
	int r;

	if (fd < 0)
		return sm_fail(-errno, "pid %d fd %d: cannot open %s to copy it: %s", (int)d->s->pid, d->s->v[i].fd,
			       d->s->v[i].link, strerror(errno));
	while ((uint64_t)off < o->size) {
		off_t a = lseek(fd, off, SEEK_DATA), b;

		if (a < 0 && errno == ENXIO)
			break;
		if (a < 0)
			a = off;
		b = lseek(fd, a, SEEK_HOLE);
		if (b < 0 || (uint64_t)b > o->size)
			b = (off_t)o->size;
		for (off_t x = a; x < b;) {
			size_t len = (size_t)(b - x) < CHUNK_MAX ? (size_t)(b - x) : CHUNK_MAX;
			uint8_t *buf;
			ssize_t n;

			if ((r = budget(d, i, len)) < 0)
				return r;
			buf = malloc(len);
			if (!buf)
				return -ENOMEM;
			n = pread(fd, buf, len, x);
			if (n <= 0) {
				free(buf);
				/* shrunk meanwhile (a shared mapping's writer is stopped too, so: not by it) */
				if (n == 0)
					break;
				return sm_fail(-errno, "pid %d fd %d: cannot read %s: %s", (int)d->s->pid, d->s->v[i].fd,
					       d->s->v[i].link, strerror(errno));
			}
			r = obj_add_chunk(o, 0, (uint64_t)x, buf, (size_t)n);
			if (r < 0)
				return r;
			x += n;
		}
		off = b;
	}
	return 0;
}

static int dump_memfile(struct dump *d, size_t i)
{
	const struct sfd *e = &d->s->v[i];
	struct fd_obj *o = find_inode_obj(d, CKPT_SEC_FD_MEMFILE, &e->st);
	char *name;
	int seals;

	if (o)
		return add_desc(o, e->file, e->flags, e->pos);
	o = new_obj(d->f, CKPT_SEC_FD_MEMFILE);
	if (!o)
		return -ENOMEM;
	o->id = d->next_id++;
	o->kind = e->cls == CLS_MEMFD ? MEM_MEMFD : MEM_DELETED;
	o->mode = e->st.st_mode;
	o->size = (uint64_t)e->st.st_size;
	o->ino = e->st.st_ino;
	o->rdev = e->st.st_dev;
	seals = o->kind == MEM_MEMFD ? fcntl(e->local, F_GET_SEALS) : -1;
	o->seals = seals > 0 ? (uint32_t)seals & SEALS_KNOWN : 0;
	/* "/memfd:NAME (deleted)", "/dir/file (deleted)" */
	name = strndup(e->link + (o->kind == MEM_MEMFD ? 7 : 0),
		       strlen(e->link) - strlen(" (deleted)") - (o->kind == MEM_MEMFD ? 7 : 0));
	if (!name)
		return -ENOMEM;
	if (o->kind == MEM_MEMFD && strlen(name) > MEMFD_NAME_MAX)
		name[MEMFD_NAME_MAX] = 0;
	o->path = name;
	if (add_desc(o, e->file, e->flags, e->pos) < 0)
		return -ENOMEM;
	return memfile_content(d, i, o);
}

/* The bytes inside a pipe, duplicated with tee(2) into a scratch pipe of the
 * same size (tee copies buffers without consuming them, all in one call). */
static int pipe_content(struct dump *d, size_t i, struct fd_obj *o)
{
	const struct scan *s = d->s;
	const struct sfd *e = &s->v[i];
	_cleanup_close_ int own = -1, sr = -1, sw = -1;
	int q = 0, src = -1, sp[2];
	uint64_t off = 0;
	ssize_t t;

	if (ioctl(e->local, FIONREAD, &q) < 0 || q <= 0)
		return 0;
	if (budget(d, i, (size_t)q) < 0)
		return -EOPNOTSUPP;
	/* a description of ours that reads it */
	for (size_t k = 0; k < s->n && src < 0; k++) {
		const struct sfd *x = &s->v[k];

		if (x->rep == k && !x->skip && S_ISFIFO(x->st.st_mode) && x->st.st_ino == e->st.st_ino &&
		    x->st.st_dev == e->st.st_dev && (x->flags & O_ACCMODE) != O_WRONLY)
			src = x->local;
	}
	if (src < 0) {
		own = open_proc_fd(s->pid, e->fd, O_RDONLY | O_NONBLOCK);
		src = own;
	}
	if (src < 0 || pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0)
		return sm_fail(-errno, "pid %d fd %d: cannot open its pipe to copy its bytes: %s", (int)s->pid, e->fd,
			       strerror(errno));
	sr = sp[0];
	sw = sp[1];
	if (fcntl(sw, F_SETPIPE_SZ, (int)o->pipe_size) < 0 && o->pipe_size > 65536)
		return sm_fail(-errno, "pid %d fd %d: cannot make a pipe of %u bytes to copy its bytes: %s", (int)s->pid,
			       e->fd, o->pipe_size, strerror(errno));
	do
		t = tee(src, sw, (size_t)q, SPLICE_F_NONBLOCK);
	while (t < 0 && errno == EINTR);
	if (t != q)
		return sm_fail(t < 0 ? -errno : -EIO, "pid %d fd %d: copied %zd of the %d bytes inside its pipe: %s",
			       (int)s->pid, e->fd, t, q, t < 0 ? strerror(errno) : "short tee");
	while (off < (uint64_t)q) {
		size_t len = (uint64_t)q - off < CHUNK_MAX ? (size_t)((uint64_t)q - off) : CHUNK_MAX;
		uint8_t *buf = malloc(len);
		int r;

		if (!buf)
			return -ENOMEM;
		r = sm_read_full(sr, buf, len);
		if (r < 0) {
			free(buf);
			return sm_fail(r, "pid %d fd %d: cannot read back the bytes of its pipe: %s", (int)s->pid, e->fd,
				       strerror(-r));
		}
		r = obj_add_chunk(o, 0, off, buf, len);
		if (r < 0)
			return r;
		off += len;
	}
	return 0;
}

static int dump_pipe(struct dump *d, size_t i)
{
	const struct sfd *e = &d->s->v[i];
	struct fd_obj *o = find_inode_obj(d, CKPT_SEC_FD_PIPE, &e->st);
	int sz;

	if (o)
		return add_desc(o, e->file, e->flags, 0);
	o = new_obj(d->f, CKPT_SEC_FD_PIPE);
	if (!o)
		return -ENOMEM;
	o->id = d->next_id++;
	o->kind = e->cls == CLS_PIPE ? PIPE_ANON : PIPE_FIFO;
	o->ino = e->st.st_ino;
	o->rdev = e->st.st_dev;
	sz = fcntl(e->local, F_GETPIPE_SZ);
	if (sz <= 0)
		return sm_fail(-errno, "pid %d fd %d: F_GETPIPE_SZ: %s", (int)d->s->pid, e->fd, strerror(errno));
	o->pipe_size = (uint32_t)sz;
	if (o->kind == PIPE_FIFO && !(o->path = strdup(e->link)))
		return -ENOMEM;
	if (add_desc(o, e->file, e->flags, 0) < 0)
		return -ENOMEM;
	return pipe_content(d, i, o);
}

/* "it_value: (12, 345)" -> nanoseconds */
static uint64_t info_timespec(const char *info, const char *key)
{
	const char *q = info_field(info, key);
	unsigned long long sec = 0, nsec = 0;

	if (q && sscanf(q, " (%llu, %llu)", &sec, &nsec) == 2 && sec < (uint64_t)INT64_MAX / 1000000000ull)
		return sec * 1000000000ull + nsec;
	return 0;
}

static int dump_event(struct dump *d, size_t i)
{
	const struct sfd *e = &d->s->v[i];
	struct fd_obj *o = new_obj(d->f, CKPT_SEC_FD_EVENT);
	const char *q;

	if (!o || one_desc(o, e->file) < 0)
		return -ENOMEM;
	o->descs[0].flags = e->flags;
	switch (e->cls) {
	case CLS_EVENTFD:
		o->kind = EV_EVENTFD;
		q = info_field(e->info, "eventfd-count:");
		if (!q)
			return sm_fail(-EIO, "pid %d fd %d: its eventfd's fdinfo has no count", (int)d->s->pid, e->fd);
		o->ev[0] = strtoull(q, NULL, 16);
		/* before Linux 6.6 fdinfo does not say; such an eventfd counts as not a semaphore */
		q = info_field(e->info, "eventfd-semaphore:");
		o->ev[1] = q && strtoul(q, NULL, 10) ? 1 : 0;
		break;
	case CLS_TIMERFD:
		o->kind = EV_TIMERFD;
		q = info_field(e->info, "clockid:");
		if (!q)
			return sm_fail(-EIO, "pid %d fd %d: its timerfd's fdinfo has no clock", (int)d->s->pid, e->fd);
		o->ev[0] = strtoull(q, NULL, 10);
		o->ev[1] = info_timespec(e->info, "it_value:");
		o->ev[2] = info_timespec(e->info, "it_interval:");
		q = info_field(e->info, "ticks:");
		o->ev[3] = q ? strtoull(q, NULL, 10) : 0;
		if (!clock_ok(o->ev[0]))
			return sm_fail(-EOPNOTSUPP, "pid %d fd %d: a timerfd on clock %" PRIu64 " is not migratable",
				       (int)d->s->pid, e->fd, o->ev[0]);
		break;
	default:
		o->kind = EV_SIGNALFD;
		q = info_field(e->info, "sigmask:");
		if (!q)
			return sm_fail(-EIO, "pid %d fd %d: its signalfd's fdinfo has no mask", (int)d->s->pid, e->fd);
		o->ev[0] = strtoull(q, NULL, 16);
		break;
	}
	return 0;
}

static int dump_epoll(struct dump *d, size_t i)
{
	const struct sfd *e = &d->s->v[i];
	struct fd_obj *o = new_obj(d->f, CKPT_SEC_FD_EPOLL);

	if (!o || one_desc(o, e->file) < 0)
		return -ENOMEM;
	o->descs[0].flags = e->flags;
	return epoll_regs(d->s, i, &o->epis, &o->n_epis);
}

/* The bytes waiting to be read at a socket of ours (the process's, shared),
 * peeked with SO_PEEK_OFF walking the queue; datagrams one by one. */
static int unix_peek(struct dump *d, size_t i, struct fd_obj *o, int end)
{
	const struct sfd *e = &d->s->v[i];
	bool dgram = o->kind != SOCK_STREAM;
	_cleanup_free_ uint8_t *buf = NULL;
	size_t cap = CHUNK_MAX;
	uint64_t off = 0;
	int zero = 0, r = 0, fd = e->local;
	unsigned msgs = 0;

	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0)
		return sm_fail(-errno, "pid %d fd %d: SO_PEEK_OFF: %s", (int)d->s->pid, e->fd, strerror(errno));
	for (;;) {
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(int) * 253)];
		} ctl;
		struct iovec iov = { buf, cap };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
		int po = (int)off;
		uint8_t *copy = NULL;
		ssize_t n;

		if (dgram && setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &po, sizeof(po)) < 0) {
			r = sm_fail(-errno, "pid %d fd %d: SO_PEEK_OFF: %s", (int)d->s->pid, e->fd, strerror(errno));
			break;
		}
		n = recvmsg(fd, &mh, MSG_PEEK | MSG_DONTWAIT | (dgram ? MSG_TRUNC : 0));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			r = sm_fail(-errno, "pid %d fd %d: cannot read its queue: %s", (int)d->s->pid, e->fd, strerror(errno));
			break;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				int *fds = (int *)CMSG_DATA(c);

				for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++)
					close(fds[k]);
				r = refuse(d->s, i, "a unix socket with file descriptors in flight");
			}
		if (r < 0)
			break;
		/* end of a shut-down stream; for datagrams an empty one, unless shut down */
		if (n == 0 && (!dgram || (o->uend[end].shutdown & 1)))
			break;
		if (dgram && (size_t)n > cap) {
			uint8_t *nb;

			if ((uint64_t)n > CKPT_FD_DATA_MAX) {
				r = refuse(d->s, i, "a unix socket with a %zd-byte datagram queued", n);
				break;
			}
			nb = realloc(buf, (size_t)n);
			if (!nb) {
				r = -ENOMEM;
				break;
			}
			buf = nb;
			cap = (size_t)n;
			continue; /* the same datagram again, whole */
		}
		if (++msgs > MAX_MSGS && dgram) {
			r = refuse(d->s, i, "a unix socket with more than 65536 datagrams queued");
			break;
		}
		if ((r = budget(d, i, (size_t)n)) < 0)
			break;
		if (n > 0 && !(copy = malloc((size_t)n))) {
			r = -ENOMEM;
			break;
		}
		if (n > 0)
			memcpy(copy, buf, (size_t)n);
		r = obj_add_chunk(o, (uint32_t)end, off, copy, (size_t)n);
		if (r < 0)
			break;
		off += (uint64_t)n;
	}
	/* SO_PEEK_OFF is the description's: the process gets its own back */
	{
		int orig = o->uend[end].peek_off;

		if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &orig, sizeof(orig)) < 0 && r >= 0)
			r = sm_fail(-errno, "pid %d fd %d: cannot reset SO_PEEK_OFF: %s", (int)d->s->pid, e->fd,
				    strerror(errno));
	}
	return r;
}

static int dump_unix(struct dump *d, size_t i)
{
	const struct sfd *ends[2] = { &d->s->v[i], &d->s->v[d->s->v[i].peer] };
	struct fd_obj *o;
	int r;

	if (ends[1]->rep < i)
		return 0; /* the pair is made at its lower fd */
	o = new_obj(d->f, CKPT_SEC_FD_UNIX);
	if (!o)
		return -ENOMEM;
	o->descs = calloc(2, sizeof(*o->descs));
	if (!o->descs)
		return -ENOMEM;
	o->n_descs = 2;
	o->id = d->next_id++;
	o->kind = (uint32_t)ends[0]->stype;
	for (int k = 0; k < 2; k++) {
		socklen_t len = sizeof(int);
		int v = 0;

		o->descs[k] = (struct fd_desc){ ends[k]->file, ends[k]->flags, 0 };
		o->uend[k].shutdown = ends[k]->shutdown & 3;
		if (getsockopt(ends[k]->local, SOL_SOCKET, SO_SNDBUF, &v, &len) == 0)
			o->uend[k].sndbuf = (uint32_t)v;
		len = sizeof(int);
		if (getsockopt(ends[k]->local, SOL_SOCKET, SO_RCVBUF, &v, &len) == 0)
			o->uend[k].rcvbuf = (uint32_t)v;
		len = sizeof(int);
		if (getsockopt(ends[k]->local, SOL_SOCKET, SO_PEEK_OFF, &v, &len) == 0)
			o->uend[k].peek_off = v < -1 ? -1 : v;
	}
	for (int k = 0; k < 2; k++) {
		r = unix_peek(d, ends[k] == &d->s->v[i] ? i : d->s->v[i].peer, o, k);
		if (r < 0)
			return r;
	}
	return 0;
}

int ckpt_fds_dump(struct sockmig_proc *p, const int *skip, size_t n_skip, struct sm_image_writer *w)
{
	struct ckpt_fds *f = calloc(1, sizeof(*f));
	struct dump d = { .f = f, .next_id = 1 };
	struct scan s;
	int r;

	if (!f)
		return -ENOMEM;
	r = scan_open(&s, p, skip, n_skip, false);
	d.s = &s;
	if (r >= 0)
		r = scan_classify(&s);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < s.n; i++)
		if (s.v[i].rep == i && !s.v[i].skip)
			s.v[i].file = d.next_id++;
	f->table = calloc(s.n ? s.n : 1, sizeof(*f->table));
	if (!f->table) {
		r = -ENOMEM;
		goto out;
	}
	f->have_table = true;
	for (size_t i = 0; i < s.n; i++)
		f->table[f->n_table++] = (struct fd_ent){ (uint32_t)s.v[i].fd, s.v[i].skip ? 0 : s.v[s.v[i].rep].file,
							  s.v[i].cloexec ? FD_CLOEXEC : 0 };
	for (size_t i = 0; i < s.n && r >= 0; i++) {
		if (s.v[i].rep != i || s.v[i].skip)
			continue;
		switch (s.v[i].cls) {
		case CLS_FILE:
			r = dump_path(&d, i, PATH_FILE);
			break;
		case CLS_DIR:
			r = dump_path(&d, i, PATH_DIR);
			break;
		case CLS_CHR:
			r = dump_path(&d, i, PATH_CHR);
			break;
		case CLS_OPATH:
			r = dump_path(&d, i, PATH_OPATH);
			break;
		case CLS_ELSEWHERE:
			r = dump_path(&d, i, PATH_ELSEWHERE);
			break;
		case CLS_MEMFD:
		case CLS_DELETED:
			r = dump_memfile(&d, i);
			break;
		case CLS_PIPE:
		case CLS_FIFO:
			r = dump_pipe(&d, i);
			break;
		case CLS_EVENTFD:
		case CLS_TIMERFD:
		case CLS_SIGNALFD:
			r = dump_event(&d, i);
			break;
		case CLS_EPOLL:
			r = dump_epoll(&d, i);
			break;
		case CLS_UNIX:
			r = dump_unix(&d, i);
			break;
		default:
			r = sm_fail(-EIO, "pid %d fd %d: unclassified", (int)s.pid, s.v[i].fd);
			break;
		}
	}
	if (r >= 0)
		r = ckpt_fds_write(f, w);
out:
	scan_free(&s);
	ckpt_fds_free(f);
	return r < 0 ? r : 0;
}

/* ---- restore: the parent makes every object, the child places them ---- */

enum { KEY_DIRECT = 0, KEY_TEMP = 1, KEY_DUP = 2 };

struct plan_move {
	int target, src, cloexec;
	bool quiet; /* /dev/null for stdio elsewhere, or the caller's override */
};

struct plan_epi {
	int epfd;       /* target number of the epoll */
	int holder;     /* target number holding the watched file */
	int key;        /* the number to register it with */
	int mode;       /* KEY_* */
	bool optional;  /* watched file replaced (stdio): EPERM is no failure */
	uint32_t events;
	uint64_t data;
};

struct plan_file {
	uint32_t file;
	int fd;
	bool quiet;
};

struct ckpt_fd_plan {
	int floor;
	int *owned;
	size_t n_owned, cap_owned;
	struct plan_move *moves;
	size_t n_moves;
	int *targets;
	struct plan_epi *epis;
	size_t n_epis;
	struct {
		uint64_t ino;
		int fd;
	} *inos;
	size_t n_inos;
	struct plan_file *files;
	size_t n_files, cap_files;
};

void ckpt_fd_plan_free(struct ckpt_fd_plan *pl)
{
	if (!pl)
		return;
	for (size_t i = 0; i < pl->n_owned; i++)
		close(pl->owned[i]);
	free(pl->owned);
	free(pl->moves);
	free(pl->targets);
	free(pl->epis);
	free(pl->inos);
	free(pl->files);
	free(pl);
}

/* Record an fd of ours that is already >= floor. Closes it on failure. */
static int plan_keep(struct ckpt_fd_plan *pl, int fd)
{
	if (pl->n_owned == pl->cap_owned) {
		size_t cap = pl->cap_owned ? pl->cap_owned * 2 : 32;
		int *n = realloc(pl->owned, cap * sizeof(*n));

		if (!n) {
			close(fd);
			return -ENOMEM;
		}
		pl->owned = n;
		pl->cap_owned = cap;
	}
	pl->owned[pl->n_owned++] = fd;
	return fd;
}

/* Move fd (ours, consumed) to a number >= floor, O_CLOEXEC, owned by the
 * plan. A negative fd passes errno through. */
static int plan_own(struct ckpt_fd_plan *pl, int fd)
{
	int n, saved;

	if (fd < 0)
		return -errno;
	n = fcntl(fd, F_DUPFD_CLOEXEC, pl->floor);
	saved = errno;
	close(fd);
	if (n < 0)
		return sm_fail(-saved, "cannot move an fd to %d or above: %s", pl->floor, strerror(saved));
	return plan_keep(pl, n);
}

static int plan_add_file(struct ckpt_fd_plan *pl, uint32_t file, int fd, bool quiet)
{
	if (pl->n_files == pl->cap_files) {
		size_t cap = pl->cap_files ? pl->cap_files * 2 : 32;
		struct plan_file *n = realloc(pl->files, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		pl->files = n;
		pl->cap_files = cap;
	}
	pl->files[pl->n_files++] = (struct plan_file){ file, fd, quiet };
	return 0;
}

static int cmp_plan_file(const void *a, const void *b)
{
	return cmp_u32(&((const struct plan_file *)a)->file, &((const struct plan_file *)b)->file);
}

static int cmp_move(const void *a, const void *b)
{
	int x = ((const struct plan_move *)a)->target, y = ((const struct plan_move *)b)->target;

	return (x > y) - (x < y);
}

static const struct plan_move *plan_move_at(const struct ckpt_fd_plan *pl, int target)
{
	struct plan_move key = { .target = target };

	return bsearch(&key, pl->moves, pl->n_moves, sizeof(key), cmp_move);
}

static bool overridden(const int *ovr, uint32_t fd)
{
	return ovr && fd < 3 && ovr[fd] >= 0;
}

/* The lowest fd of the image on a file, for sentences. */
static int first_fd(const struct ckpt_fds *f, uint32_t file)
{
	for (size_t i = 0; i < f->n_table; i++)
		if (f->table[i].file == file)
			return (int)f->table[i].fd;
	return -1;
}

static bool file_needed(const struct ckpt_fds *f, uint32_t file, const int *ovr)
{
	for (size_t i = 0; i < f->n_table; i++)
		if (f->table[i].file == file && !overridden(ovr, f->table[i].fd))
			return true;
	return false;
}

/* O_NONBLOCK and the like on a description a syscall made. */
static int set_fl(int fd, uint32_t flags)
{
	int cur = fcntl(fd, F_GETFL);

	if (cur < 0)
		return -errno;
	if ((uint32_t)(cur & SETFL_FLAGS) == (flags & SETFL_FLAGS))
		return 0;
	return fcntl(fd, F_SETFL, (cur & ~SETFL_FLAGS) | (int)(flags & SETFL_FLAGS)) < 0 ? -errno : 0;
}

/* A new description of the file fd is open on, through /proc/self/fd. */
static int reopen_self(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags | O_CLOEXEC | O_NOCTTY);
}

static int make_path(struct ckpt_fd_plan *pl, const struct ckpt_fds *f, const struct fd_obj *o, const int *ovr)
{
	uint32_t fl = o->descs[0].flags;
	int n = first_fd(f, o->id), fd = -1;
	struct stat st;

	if (!file_needed(f, o->id, ovr))
		return 0;
	switch (o->kind) {
	case PATH_FILE:
	case PATH_CHR:
		/* never O_CREAT or O_TRUNC: the file is the one of the checkpoint */
		fd = open(o->path, (int)(fl & REOPEN_FLAGS) | O_CLOEXEC | O_NOCTTY);
		break;
	case PATH_DIR:
		fd = open(o->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (int)(fl & O_NONBLOCK));
		break;
	case PATH_OPATH:
		fd = open(o->path, O_PATH | O_CLOEXEC | (S_ISLNK(o->mode) ? O_NOFOLLOW : 0));
		break;
	default:
		fd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
		break;
	}
	if (fd < 0)
		return sm_fail(-errno, "fd %d: cannot reopen %s: %s", n, o->kind == PATH_ELSEWHERE ? "/dev/null" : o->path,
			       strerror(errno));
	if (fstat(fd, &st) < 0) {
		close(fd);
		return sm_fail(-errno, "fd %d: fstat of %s: %s", n, o->path, strerror(errno));
	}
	if (o->kind == PATH_FILE && (uint64_t)st.st_size != o->size) {
		close(fd);
		return sm_fail(-ESTALE, "fd %d: %s changed since the checkpoint (size %" PRIu64 " -> %lld)", n, o->path,
			       o->size, (long long)st.st_size);
	}
	if (o->kind == PATH_FILE && (st.st_mtim.tv_sec != o->mtime_sec || st.st_mtim.tv_nsec != (long)o->mtime_nsec)) {
		close(fd);
		return sm_fail(-ESTALE, "fd %d: %s changed since the checkpoint (modified at %lld.%09ld, was %" PRId64 ".%09u)",
			       n, o->path, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, o->mtime_sec, o->mtime_nsec);
	}
	if ((o->kind == PATH_CHR && (!S_ISCHR(st.st_mode) || st.st_rdev != o->rdev)) ||
	    (o->kind != PATH_ELSEWHERE && (st.st_mode & S_IFMT) != (o->mode & S_IFMT))) {
		close(fd);
		return sm_fail(-ESTALE, "fd %d: %s is not the %s it was at the checkpoint", n, o->path,
			       o->kind == PATH_CHR ? "device" : "kind of file");
	}
	/* A directory's offset is a cookie of its filesystem: kept where the
	 * filesystem takes it back, else the listing starts over. */
	if ((o->kind == PATH_FILE || o->kind == PATH_CHR) && lseek(fd, (off_t)o->descs[0].pos, SEEK_SET) < 0 &&
	    o->kind == PATH_FILE) {
		close(fd);
		return sm_fail(-errno, "fd %d: cannot seek %s to %" PRIu64 ": %s", n, o->path, o->descs[0].pos,
			       strerror(errno));
	}
	if (o->kind == PATH_DIR)
		(void)lseek(fd, (off_t)o->descs[0].pos, SEEK_SET);
	fd = plan_own(pl, fd);
	if (fd < 0)
		return fd;
	return plan_add_file(pl, o->id, fd, o->kind == PATH_ELSEWHERE);
}

static int pwrite_full(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int make_memfile(struct ckpt_fd_plan *pl, const struct ckpt_fds *f, const struct fd_obj *o)
{
	int n = first_fd(f, o->descs[0].file), c = -1, r;
	const char *base = strrchr(o->path, '/');

	if (o->kind == MEM_MEMFD) {
		c = memfd_create(o->path, MFD_CLOEXEC | (o->seals == F_SEAL_SEAL ? 0 : MFD_ALLOW_SEALING));
		if (c >= 0)
			(void)fchmod(c, o->mode & 07777);
	} else {
		/* an unlinked file where it was, else a memfd */
		_cleanup_free_ char *dir = strndup(o->path, base && base > o->path ? (size_t)(base - o->path) : 1);

		if (!dir)
			return -ENOMEM;
		c = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, o->mode & 07777);
		if (c < 0)
			c = memfd_create(base ? base + 1 : o->path, MFD_CLOEXEC);
	}
	if (c < 0)
		return sm_fail(-errno, "fd %d: cannot recreate %s%s: %s", n, o->kind == MEM_MEMFD ? "the memfd " : "",
			       o->path, strerror(errno));
	c = plan_own(pl, c);
	if (c < 0)
		return c;
	if (ftruncate(c, (off_t)o->size) < 0)
		return sm_fail(-errno, "fd %d: cannot size %s to %" PRIu64 " bytes: %s", n, o->path, o->size, strerror(errno));
	for (size_t k = 0; k < o->n_chunks; k++) {
		r = pwrite_full(c, o->chunks[k].bytes, o->chunks[k].len, o->chunks[k].off);
		if (r < 0)
			return sm_fail(r, "fd %d: cannot write the content of %s: %s", n, o->path, strerror(-r));
	}
	for (uint32_t k = 0; k < o->n_descs; k++) {
		const struct fd_desc *d = &o->descs[k];
		int fd = reopen_self(c, (int)(d->flags & REOPEN_FLAGS));

		if (fd < 0)
			return sm_fail(-errno, "fd %d: cannot reopen %s: %s", first_fd(f, d->file), o->path, strerror(errno));
		if (lseek(fd, (off_t)d->pos, SEEK_SET) < 0) {
			close(fd);
			return sm_fail(-errno, "fd %d: cannot seek %s: %s", first_fd(f, d->file), o->path, strerror(errno));
		}
		fd = plan_own(pl, fd);
		if (fd < 0 || (r = plan_add_file(pl, d->file, fd, false)) < 0)
			return fd < 0 ? fd : r;
	}
	/* seals last: they may forbid the writes above */
	if (o->kind == MEM_MEMFD && o->seals && o->seals != F_SEAL_SEAL && fcntl(c, F_ADD_SEALS, (int)o->seals) < 0)
		return sm_fail(-errno, "fd %d: cannot seal the memfd %s (%#x): %s", n, o->path, o->seals, strerror(errno));
	{
		void *m = realloc(pl->inos, (pl->n_inos + 1) * sizeof(*pl->inos));

		if (!m)
			return -ENOMEM;
		pl->inos = m;
		pl->inos[pl->n_inos].ino = o->ino;
		pl->inos[pl->n_inos++].fd = c;
	}
	return 0;
}

/* Write a stream of chunks to a non-blocking fd; all of it must fit. */
static int write_chunks(int fd, const struct fd_obj *o, uint32_t stream, bool messages)
{
	for (size_t k = 0; k < o->n_chunks; k++) {
		const struct fd_chunk *c = &o->chunks[k];
		size_t done = 0;

		if (c->stream != stream)
			continue;
		do {
			ssize_t n = messages ? send(fd, c->bytes, c->len, MSG_DONTWAIT | MSG_NOSIGNAL)
					     : write(fd, c->bytes + done, c->len - done);

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0)
				return -errno;
			if (messages && (size_t)n != c->len)
				return -EMSGSIZE;
			done += (size_t)n;
		} while (done < c->len);
	}
	return 0;
}

static int make_pipe(struct ckpt_fd_plan *pl, const struct ckpt_fds *f, const struct fd_obj *o)
{
	int n = first_fd(f, o->descs[0].file), p[2] = { -1, -1 }, r = 0, q = 0;
	bool direct = false, used_r = false, used_w = false;

	for (uint32_t k = 0; k < o->n_descs; k++)
		direct |= (o->descs[k].flags & O_DIRECT) != 0;
	if (o->kind == PIPE_ANON) {
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK | (direct ? O_DIRECT : 0)) < 0)
			return sm_fail(-errno, "fd %d: cannot make a pipe: %s", n, strerror(errno));
	} else {
		struct stat st;

		/* read-write first: opening a FIFO for one direction alone would
		 * wait for the other, or fail */
		p[0] = open(o->path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
		if (p[0] < 0)
			return sm_fail(-errno, "fd %d: cannot open the FIFO %s: %s", n, o->path, strerror(errno));
		if (fstat(p[0], &st) < 0 || !S_ISFIFO(st.st_mode)) {
			close(p[0]);
			return sm_fail(-ESTALE, "fd %d: %s is no longer a FIFO", n, o->path);
		}
		p[1] = dup(p[0]);
		if (p[1] < 0) {
			close(p[0]);
			return -errno;
		}
		/* someone else on this node holds it open: its bytes are still in */
		if (ioctl(p[0], FIONREAD, &q) == 0 && q > 0)
			q = -1;
	}
	if (fcntl(p[1], F_SETPIPE_SZ, (int)o->pipe_size) < 0 && o->stream_len[0] > 65536)
		r = sm_fail(-errno, "fd %d: cannot give the pipe its %u bytes of room: %s", n, o->pipe_size, strerror(errno));
	if (r >= 0 && q >= 0 && (r = write_chunks(p[1], o, 0, false)) < 0)
		r = sm_fail(r, "fd %d: cannot put the %" PRIu64 " bytes back into the pipe: %s", n, o->stream_len[0],
			    strerror(-r));
	for (uint32_t k = 0; k < o->n_descs && r >= 0; k++) {
		const struct fd_desc *d = &o->descs[k];
		int acc = (int)(d->flags & O_ACCMODE), fd;

		if (o->kind == PIPE_FIFO)
			fd = open(o->path, acc | O_NONBLOCK | O_CLOEXEC);
		else if (acc == O_RDONLY && !used_r && (used_r = true))
			fd = dup(p[0]);
		else if (acc == O_WRONLY && !used_w && (used_w = true))
			fd = dup(p[1]);
		else
			fd = reopen_self(acc == O_WRONLY ? p[1] : p[0], acc | O_NONBLOCK);
		if (fd < 0) {
			r = sm_fail(-errno, "fd %d: cannot open the pipe again: %s", first_fd(f, d->file), strerror(errno));
			break;
		}
		if ((r = set_fl(fd, d->flags)) < 0) {
			close(fd);
			r = sm_fail(r, "fd %d: cannot set the pipe's flags: %s", first_fd(f, d->file), strerror(-r));
			break;
		}
		fd = plan_own(pl, fd);
		if (fd < 0 || (r = plan_add_file(pl, d->file, fd, false)) < 0)
			r = fd < 0 ? fd : r;
	}
	close(p[0]);
	close(p[1]);
	return r;
}

static struct timespec ns_ts(uint64_t ns)
{
	return (struct timespec){ (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
}

static int make_event(struct ckpt_fd_plan *pl, const struct ckpt_fds *f, const struct fd_obj *o)
{
	bool nb = (o->descs[0].flags & O_NONBLOCK) != 0;
	int n = first_fd(f, o->id), fd = -1;

	switch (o->kind) {
	case EV_EVENTFD:
		fd = eventfd(o->ev[0] <= UINT_MAX ? (unsigned)o->ev[0] : 0,
			     EFD_CLOEXEC | (nb ? EFD_NONBLOCK : 0) | (o->ev[1] ? EFD_SEMAPHORE : 0));
		if (fd >= 0 && o->ev[0] > UINT_MAX && write(fd, &o->ev[0], 8) != 8) {
			close(fd);
			fd = -1;
		}
		break;
	case EV_TIMERFD: {
		struct itimerspec its = { .it_value = ns_ts(o->ev[1] ? o->ev[1] : o->ev[2]), .it_interval = ns_ts(o->ev[2]) };
		uint64_t ticks = o->ev[3];

		fd = timerfd_create((int)o->ev[0], TFD_CLOEXEC | (nb ? TFD_NONBLOCK : 0));
		/* an expired periodic timer goes on from one period now */
		if (fd >= 0 && (o->ev[1] || o->ev[2]) && timerfd_settime(fd, 0, &its, NULL) < 0) {
			close(fd);
			fd = -1;
		}
		/* expirations not read yet: TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE),
		 * else a disarmed timer fires once at once */
		if (fd >= 0 && ticks && ioctl(fd, TFD_IOC_SET_TICKS, &ticks) < 0 && !o->ev[1] && !o->ev[2]) {
			its = (struct itimerspec){ .it_value = { 0, 1 } };
			(void)timerfd_settime(fd, 0, &its, NULL);
		}
		break;
	}
	case EV_SIGNALFD: {
		uint64_t mask = o->ev[0]; /* bit n-1: signal n, the kernel's sigset */

		fd = (int)syscall(SYS_signalfd4, -1, &mask, sizeof(mask), SFD_CLOEXEC | (nb ? SFD_NONBLOCK : 0));
		break;
	}
	}
	if (fd < 0)
		return sm_fail(-errno, "fd %d: cannot make the %s: %s", n,
			       o->kind == EV_EVENTFD ? "eventfd" : o->kind == EV_TIMERFD ? "timerfd" : "signalfd",
			       strerror(errno));
	fd = plan_own(pl, fd);
	if (fd < 0)
		return fd;
	return plan_add_file(pl, o->id, fd, false);
}

static int make_epoll(struct ckpt_fd_plan *pl, const struct ckpt_fds *f, const struct fd_obj *o)
{
	int fd = epoll_create1(EPOLL_CLOEXEC), r;

	if (fd < 0)
		return sm_fail(-errno, "fd %d: cannot make an epoll: %s", first_fd(f, o->id), strerror(errno));
	if ((r = set_fl(fd, o->descs[0].flags)) < 0) {
		close(fd);
		return r;
	}
	fd = plan_own(pl, fd);
	if (fd < 0)
		return fd;
	return plan_add_file(pl, o->id, fd, false);
}

static void set_buf(int fd, int force, int plain, uint32_t doubled)
{
	int v = (int)(doubled / 2); /* the kernel doubles what it is given */

	if (v > 0 && setsockopt(fd, SOL_SOCKET, force, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, plain, &v, sizeof(v));
}

static int make_unix(struct ckpt_fd_plan *pl, const struct ckpt_fds *f, const struct fd_obj *o)
{
	int n = first_fd(f, o->descs[0].file), sv[2], r = 0;

	if (socketpair(AF_UNIX, (int)o->kind | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		return sm_fail(-errno, "fd %d: cannot make a unix socketpair: %s", n, strerror(errno));
	/* what waits at end e was sent by the other end; room for all of it */
	for (int e = 0; e < 2 && r >= 0; e++) {
		uint64_t room = o->stream_len[e] * 2 + 65536;

		set_buf(sv[1 - e], SO_SNDBUFFORCE, SO_SNDBUF, room > INT_MAX ? INT_MAX : (uint32_t)room * 2);
		r = write_chunks(sv[1 - e], o, (uint32_t)e, o->kind != SOCK_STREAM);
		if (r < 0)
			r = sm_fail(r, "fd %d: cannot queue %" PRIu64 " bytes in the socketpair again: %s",
				    first_fd(f, o->descs[e].file), o->stream_len[e], strerror(-r));
	}
	for (int e = 0; e < 2 && r >= 0; e++) {
		static const int how[4] = { -1, SHUT_RD, SHUT_WR, SHUT_RDWR };
		const struct fd_uend *u = &o->uend[e];

		set_buf(sv[e], SO_SNDBUFFORCE, SO_SNDBUF, u->sndbuf);
		set_buf(sv[e], SO_RCVBUFFORCE, SO_RCVBUF, u->rcvbuf);
		if (u->shutdown && shutdown(sv[e], how[u->shutdown & 3]) < 0 && errno != ENOTCONN)
			r = sm_fail(-errno, "fd %d: shutdown: %s", first_fd(f, o->descs[e].file), strerror(errno));
		if (r >= 0 && u->peek_off >= 0 &&
		    setsockopt(sv[e], SOL_SOCKET, SO_PEEK_OFF, &u->peek_off, sizeof(u->peek_off)) < 0)
			r = sm_fail(-errno, "fd %d: SO_PEEK_OFF: %s", first_fd(f, o->descs[e].file), strerror(errno));
		if (r >= 0 && (r = set_fl(sv[e], o->descs[e].flags)) < 0)
			r = sm_fail(r, "fd %d: cannot set its flags: %s", first_fd(f, o->descs[e].file), strerror(-r));
	}
	for (int e = 0; e < 2; e++) {
		int fd = r >= 0 ? plan_own(pl, sv[e]) : (close(sv[e]), -1);

		if (r >= 0 && fd < 0)
			r = fd;
		if (r >= 0)
			r = plan_add_file(pl, o->descs[e].file, fd, false);
	}
	return r;
}

static int plan_add_move(struct ckpt_fd_plan *pl, int target, int src, uint32_t fdflags, bool quiet)
{
	pl->moves[pl->n_moves++] = (struct plan_move){ target, src, (fdflags & FD_CLOEXEC) != 0, quiet };
	return 0;
}

/* Epoll registrations: made in the child once every fd is at its number;
 * the key is the number the original was registered with when that number
 * holds the same file again, or is free (a stale number: dup'ed there for
 * the call, then closed), else a fresh number. */
static int plan_epolls(struct ckpt_fd_plan *pl, const struct ckpt_fds *f)
{
	size_t total = 0;

	for (size_t i = 0; i < f->n_objs; i++)
		total += f->objs[i].sec == CKPT_SEC_FD_EPOLL ? f->objs[i].n_epis : 0;
	pl->epis = calloc(total ? total : 1, sizeof(*pl->epis));
	if (!pl->epis)
		return -ENOMEM;
	for (size_t i = 0; i < f->n_objs; i++) {
		const struct fd_obj *o = &f->objs[i];
		const struct plan_move *ep = NULL;

		if (o->sec != CKPT_SEC_FD_EPOLL)
			continue;
		for (size_t k = 0; k < f->n_table && !ep; k++)
			if (f->table[k].file == o->id)
				ep = plan_move_at(pl, (int)f->table[k].fd);
		if (!ep || ep->quiet)
			continue; /* the epoll's only fds were overridden */
		for (uint32_t k = 0; k < o->n_epis; k++) {
			const struct fd_epi *e = &o->epis[k];
			const struct plan_move *h = plan_move_at(pl, (int)e->holder), *t = plan_move_at(pl, (int)e->tfd);
			struct plan_epi *pe = &pl->epis[pl->n_epis];

			if (!h)
				return sm_fail(-EINVAL, "fd %d: its epoll watches fd %u, which the restore does not make", ep->target,
					       e->holder);
			*pe = (struct plan_epi){ ep->target, h->target, (int)e->tfd, KEY_DIRECT, h->quiet, e->events, e->data };
			if (!t)
				pe->mode = KEY_TEMP;
			else if (t->src != h->src)
				pe->mode = KEY_DUP;
			pl->n_epis++;
		}
	}
	return 0;
}

int ckpt_fds_prepare(const struct ckpt_fds *fds, const struct ckpt_fd_extra *extra, size_t n_extra,
		     const int stdio_override[3], int floor, struct ckpt_fd_plan **ret)
{
	struct ckpt_fd_plan *pl = calloc(1, sizeof(*pl));
	size_t n_table = fds ? fds->n_table : 0;
	int maxt = ckpt_fds_max_target(fds), r = 0;

	if (!pl)
		return -ENOMEM;
	for (size_t i = 0; i < n_extra; i++)
		maxt = extra[i].target > maxt ? extra[i].target : maxt;
	for (int i = 0; i < 3; i++)
		if (overridden(stdio_override, (uint32_t)i))
			maxt = i > maxt ? i : maxt;
	if (floor <= maxt) {
		free(pl);
		return sm_fail(-EINVAL, "the restore's fds must start above fd %d, not at %d", maxt, floor);
	}
	pl->floor = floor;
	pl->moves = calloc(n_table + n_extra + 4, sizeof(*pl->moves));
	if (!pl->moves) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; fds && i < fds->n_objs && r >= 0; i++) {
		const struct fd_obj *o = &fds->objs[i];

		switch (o->sec) {
		case CKPT_SEC_FD_PATH:
			r = make_path(pl, fds, o, stdio_override);
			break;
		case CKPT_SEC_FD_MEMFILE:
			r = make_memfile(pl, fds, o);
			break;
		case CKPT_SEC_FD_PIPE:
			r = make_pipe(pl, fds, o);
			break;
		case CKPT_SEC_FD_EVENT:
			r = make_event(pl, fds, o);
			break;
		case CKPT_SEC_FD_EPOLL:
			r = make_epoll(pl, fds, o);
			break;
		case CKPT_SEC_FD_UNIX:
			r = make_unix(pl, fds, o);
			break;
		}
	}
	if (r < 0)
		goto fail;
	qsort(pl->files, pl->n_files, sizeof(*pl->files), cmp_plan_file);

	for (size_t i = 0; i < n_table; i++) {
		const struct fd_ent *e = &fds->table[i];
		const struct plan_file *pf;
		struct plan_file key = { .file = e->file };
		size_t k;
		int src;

		if (overridden(stdio_override, e->fd))
			continue;
		if (e->file) {
			pf = bsearch(&key, pl->files, pl->n_files, sizeof(key), cmp_plan_file);
			if (!pf) {
				r = sm_fail(-EINVAL, "fd %u: the image's file %u was not made", e->fd, e->file);
				goto fail;
			}
			plan_add_move(pl, (int)e->fd, pf->fd, e->fdflags, pf->quiet);
			continue;
		}
		for (k = 0; k < n_extra && extra[k].target != (int)e->fd; k++)
			;
		if (k == n_extra) {
			r = sm_fail(-ENOENT, "fd %u: the image leaves it (a socket) to the socket engine, which gave no fd for it",
				    e->fd);
			goto fail;
		}
		src = fcntl(extra[k].fd, F_DUPFD_CLOEXEC, floor);
		if (src < 0 || (src = plan_keep(pl, src)) < 0) {
			r = sm_fail(-errno, "fd %u: cannot take the socket engine's fd %d: %s", e->fd, extra[k].fd,
				    strerror(errno));
			goto fail;
		}
		plan_add_move(pl, (int)e->fd, src, e->fdflags, false);
	}
	for (size_t k = 0; k < n_extra; k++) {
		int src;

		if (fds && table_find(fds, (uint32_t)extra[k].target))
			continue;
		if (extra[k].target < 0) {
			r = sm_fail(-EINVAL, "an extra fd for fd number %d", extra[k].target);
			goto fail;
		}
		src = fcntl(extra[k].fd, F_DUPFD_CLOEXEC, floor);
		if (src < 0 || (src = plan_keep(pl, src)) < 0) {
			r = sm_fail(-errno, "fd %d: cannot take the fd %d given for it: %s", extra[k].target, extra[k].fd,
				    strerror(errno));
			goto fail;
		}
		plan_add_move(pl, extra[k].target, src, 0, false);
	}
	for (int i = 0; i < 3; i++) {
		const struct fd_ent *e = fds ? table_find(fds, (uint32_t)i) : NULL;
		int src;

		if (!overridden(stdio_override, (uint32_t)i))
			continue;
		src = fcntl(stdio_override[i], F_DUPFD_CLOEXEC, floor);
		if (src < 0 || (src = plan_keep(pl, src)) < 0) {
			r = sm_fail(-errno, "fd %d: cannot take the fd %d given for it: %s", i, stdio_override[i],
				    strerror(errno));
			goto fail;
		}
		plan_add_move(pl, i, src, e ? e->fdflags : 0, true);
	}
	qsort(pl->moves, pl->n_moves, sizeof(*pl->moves), cmp_move);
	for (size_t i = 1; i < pl->n_moves; i++)
		if (pl->moves[i].target == pl->moves[i - 1].target) {
			r = sm_fail(-EINVAL, "fd %d is given twice", pl->moves[i].target);
			goto fail;
		}
	pl->targets = malloc((pl->n_moves ? pl->n_moves : 1) * sizeof(int));
	if (!pl->targets) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < pl->n_moves; i++)
		pl->targets[i] = pl->moves[i].target;
	if (fds && (r = plan_epolls(pl, fds)) < 0)
		goto fail;
	*ret = pl;
	return 0;
fail:
	ckpt_fd_plan_free(pl);
	return r;
}

size_t ckpt_fd_plan_targets(const struct ckpt_fd_plan *plan, const int **ret)
{
	*ret = plan->targets;
	return plan->n_moves;
}

int ckpt_fd_plan_file_by_ino(const struct ckpt_fd_plan *plan, uint64_t ino)
{
	for (size_t i = 0; plan && i < plan->n_inos; i++)
		if (plan->inos[i].ino == ino)
			return plan->inos[i].fd;
	return -1;
}

/* The forked child: no allocation, no stdio, nothing but system calls on
 * what the parent prepared. Targets are below floor and every source above,
 * so no dup3 can overwrite a source still to come. */
int ckpt_fd_plan_apply_child(const struct ckpt_fd_plan *plan, const char **ret_what)
{
	for (size_t i = 0; i < plan->n_moves; i++) {
		const struct plan_move *m = &plan->moves[i];

		if (dup3(m->src, m->target, m->cloexec ? O_CLOEXEC : 0) < 0) {
			*ret_what = "dup3 of an fd to its number";
			return -errno;
		}
	}
	for (size_t i = 0; i < plan->n_epis; i++) {
		const struct plan_epi *e = &plan->epis[i];
		struct epoll_event ev = { .events = e->events, .data.u64 = e->data };
		int mode = e->mode, r = -1, err = 0;

		if (mode == KEY_DIRECT) {
			r = epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->key, &ev);
			err = errno;
			if (r < 0 && err == EEXIST)
				mode = KEY_DUP;
		}
		if (mode == KEY_TEMP) {
			/* The original number is no target: the watched file goes there
			 * for the call, so the key is exactly the original's. Whatever
			 * the caller has at that number (the restorer's own fds lie
			 * above floor, where a stale number may fall) steps aside and
			 * comes back, FD_CLOEXEC and all. */
			int held = fcntl(e->key, F_GETFD), aside = -1;

			if (held >= 0)
				aside = fcntl(e->key, F_DUPFD_CLOEXEC, plan->floor);
			if ((held < 0 || aside >= 0) && dup3(e->holder, e->key, O_CLOEXEC) == e->key) {
				r = epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->key, &ev);
				err = errno;
			}
			if (aside >= 0) {
				if (dup3(aside, e->key, (held & FD_CLOEXEC) ? O_CLOEXEC : 0) != e->key) {
					*ret_what = "putting back an fd moved aside for an epoll registration";
					return -errno;
				}
				close(aside);
			} else if (held < 0) {
				close(e->key);
			}
			if (r < 0)
				mode = KEY_DUP;
		}
		if (mode == KEY_DUP) {
			int tmp = fcntl(e->holder, F_DUPFD_CLOEXEC, plan->floor);

			if (tmp < 0) {
				*ret_what = "dup of an epoll's watched fd";
				return -errno;
			}
			r = epoll_ctl(e->epfd, EPOLL_CTL_ADD, tmp, &ev);
			err = errno;
			close(tmp);
		}
		if (r < 0 && !(e->optional && err == EPERM)) {
			*ret_what = "epoll_ctl of a registration";
			return -err;
		}
	}
	return 0;
}
