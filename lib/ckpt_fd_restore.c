/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The restore of the fds (ckpt_fds_prepare(), ckpt_fd_plan_*()): the parent
 * makes every object of the model again as fds of its own at or above
 * floor, with the bytes that were inside; the forked child dup3()s each to
 * its number and then registers the epoll interests, which name target
 * numbers. ckpt_fd.h states the child's side of the contract.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "ckpt_fd_internal.h"
#include "util.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

/* Flags a reopen may give a description; O_ASYNC needs an owner we do not
 * carry, O_CREAT/O_TRUNC/O_EXCL must never be replayed. */
#define REOPEN_FLAGS (O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | O_DIRECT | O_NOATIME | O_LARGEFILE)
/* What F_SETFL changes on a description made by a syscall (pipe, socket). */
#define SETFL_FLAGS (O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME)

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

/* A dup of a caller's fd, >= floor and owned by the plan; < 0 with errno. */
static int plan_take(struct ckpt_fd_plan *pl, int fd)
{
	int n = fcntl(fd, F_DUPFD_CLOEXEC, pl->floor);

	return n < 0 ? n : plan_keep(pl, n);
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
	return ckpt_fd_cmp_u32(&((const struct plan_file *)a)->file, &((const struct plan_file *)b)->file);
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
		src = plan_take(pl, extra[k].fd);
		if (src < 0) {
			r = sm_fail(-errno, "fd %u: cannot take the socket engine's fd %d: %s", e->fd, extra[k].fd,
				    strerror(errno));
			goto fail;
		}
		plan_add_move(pl, (int)e->fd, src, e->fdflags, false);
	}
	for (size_t k = 0; k < n_extra; k++) {
		int src;

		if (fds && ckpt_fds_table_find(fds, (uint32_t)extra[k].target))
			continue;
		if (extra[k].target < 0) {
			r = sm_fail(-EINVAL, "an extra fd for fd number %d", extra[k].target);
			goto fail;
		}
		src = plan_take(pl, extra[k].fd);
		if (src < 0) {
			r = sm_fail(-errno, "fd %d: cannot take the fd %d given for it: %s", extra[k].target, extra[k].fd,
				    strerror(errno));
			goto fail;
		}
		plan_add_move(pl, extra[k].target, src, 0, false);
	}
	for (int i = 0; i < 3; i++) {
		const struct fd_ent *e = fds ? ckpt_fds_table_find(fds, (uint32_t)i) : NULL;
		int src;

		if (!overridden(stdio_override, (uint32_t)i))
			continue;
		src = plan_take(pl, stdio_override[i]);
		if (src < 0) {
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
