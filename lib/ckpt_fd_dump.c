/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The dump of a stopped process's fds (ckpt_fds_dump()): every description
 * the scan classified (ckpt_fd_scan.c) becomes an object of the model
 * (ckpt_fd_internal.h), written out by ckpt_fds_write().
 *
 * Nothing is taken from the process: queues are read with tee(2) and
 * MSG_PEEK through our own handles on its files (pidfd_getfd), and file
 * content through our own open of /proc/PID/fd/N, so the offsets the
 * process sees do not move.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_fd_internal.h"
#include "util.h"

#define CHUNK_MAX (1u << 20) /* bytes per DATA section of a stream or a file */

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

/* An object that is one description of e's (PATH, EVENT, EPOLL). */
static struct fd_obj *new_single(struct dump *d, uint16_t sec, const struct sfd *e)
{
	struct fd_obj *o = ckpt_fd_obj_new(d->f, sec, 1);

	if (o) {
		o->id = o->descs[0].file = e->file;
		o->descs[0].flags = e->flags;
	}
	return o;
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
	struct fd_obj *o = new_single(d, CKPT_SEC_FD_PATH, e);

	if (!o || !(o->path = strdup(e->link)))
		return -ENOMEM;
	o->kind = kind;
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
	_cleanup_close_ int fd = ckpt_fd_open_proc(d->s->pid, d->s->v[i].fd, O_RDONLY);
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
			r = ckpt_fd_obj_add_chunk(o, 0, (uint64_t)x, buf, (size_t)n);
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
	o = ckpt_fd_obj_new(d->f, CKPT_SEC_FD_MEMFILE, 0);
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
		own = ckpt_fd_open_proc(s->pid, e->fd, O_RDONLY | O_NONBLOCK);
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
		r = ckpt_fd_obj_add_chunk(o, 0, off, buf, len);
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
	o = ckpt_fd_obj_new(d->f, CKPT_SEC_FD_PIPE, 0);
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
	const char *q = ckpt_fd_info_field(info, key);
	unsigned long long sec = 0, nsec = 0;

	if (q && sscanf(q, " (%llu, %llu)", &sec, &nsec) == 2 && sec < (uint64_t)INT64_MAX / 1000000000ull)
		return sec * 1000000000ull + nsec;
	return 0;
}

static int dump_event(struct dump *d, size_t i)
{
	const struct sfd *e = &d->s->v[i];
	struct fd_obj *o = new_single(d, CKPT_SEC_FD_EVENT, e);
	const char *q;

	if (!o)
		return -ENOMEM;
	switch (e->cls) {
	case CLS_EVENTFD:
		o->kind = EV_EVENTFD;
		q = ckpt_fd_info_field(e->info, "eventfd-count:");
		if (!q)
			return sm_fail(-EIO, "pid %d fd %d: its eventfd's fdinfo has no count", (int)d->s->pid, e->fd);
		o->ev[0] = strtoull(q, NULL, 16);
		/* before Linux 6.6 fdinfo does not say; such an eventfd counts as not a semaphore */
		q = ckpt_fd_info_field(e->info, "eventfd-semaphore:");
		o->ev[1] = q && strtoul(q, NULL, 10) ? 1 : 0;
		break;
	case CLS_TIMERFD:
		o->kind = EV_TIMERFD;
		q = ckpt_fd_info_field(e->info, "clockid:");
		if (!q)
			return sm_fail(-EIO, "pid %d fd %d: its timerfd's fdinfo has no clock", (int)d->s->pid, e->fd);
		o->ev[0] = strtoull(q, NULL, 10);
		o->ev[1] = info_timespec(e->info, "it_value:");
		o->ev[2] = info_timespec(e->info, "it_interval:");
		q = ckpt_fd_info_field(e->info, "ticks:");
		o->ev[3] = q ? strtoull(q, NULL, 10) : 0;
		if (!ckpt_fd_timerfd_clock_ok(o->ev[0]))
			return sm_fail(-EOPNOTSUPP, "pid %d fd %d: a timerfd on clock %" PRIu64 " is not migratable",
				       (int)d->s->pid, e->fd, o->ev[0]);
		break;
	default:
		o->kind = EV_SIGNALFD;
		q = ckpt_fd_info_field(e->info, "sigmask:");
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
	struct fd_obj *o = new_single(d, CKPT_SEC_FD_EPOLL, e);

	if (!o)
		return -ENOMEM;
	return ckpt_fd_epoll_regs(d->s, i, &o->epis, &o->n_epis);
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
				r = ckpt_fd_refuse(d->s, i, "a unix socket with file descriptors in flight");
			}
		if (r < 0)
			break;
		/* end of a shut-down stream; for datagrams an empty one, unless shut down */
		if (n == 0 && (!dgram || (o->uend[end].shutdown & 1)))
			break;
		if (dgram && (size_t)n > cap) {
			uint8_t *nb;

			if ((uint64_t)n > CKPT_FD_DATA_MAX) {
				r = ckpt_fd_refuse(d->s, i, "a unix socket with a %zd-byte datagram queued", n);
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
			r = ckpt_fd_refuse(d->s, i, "a unix socket with more than 65536 datagrams queued");
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
		r = ckpt_fd_obj_add_chunk(o, (uint32_t)end, off, copy, (size_t)n);
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
	o = ckpt_fd_obj_new(d->f, CKPT_SEC_FD_UNIX, 2);
	if (!o)
		return -ENOMEM;
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
	r = ckpt_fd_scan_open(&s, p, skip, n_skip, false);
	d.s = &s;
	if (r >= 0)
		r = ckpt_fd_scan_classify(&s);
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
	ckpt_fd_scan_free(&s);
	ckpt_fds_free(f);
	return r < 0 ? r : 0;
}
