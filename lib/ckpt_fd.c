/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fd sections of a process image (0x1008..0x100f): the model they decode
 * into, their writer, their reader of untrusted bytes and the checks across
 * sections. docs/ckpt-fds.md has the byte layout: keep the two in step.
 * ckpt_fd_internal.h says where the dump and the restore are.
 *
 * The model is the kernel's: fd numbers point at open file descriptions
 * (TABLE), and a description belongs to an object (a path, a memfd, a pipe,
 * a socketpair, ...). Objects that can have several descriptions (a memfd
 * reopened through /proc, both ends of a pipe) list them; those that cannot
 * (eventfd, epoll, a path reopened) are one description each.
 *
 * Each section's fields are listed once (ckpt_field.h) and serve both the
 * writer and the reader; what a reader must refuse is checked after the
 * list, or in it where a count must be bounded before an allocation.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "ckpt_fd_internal.h"
#include "ckpt_field.h"
#include "util.h"

#define MAX_DESCS 4096u /* descriptions of one object */
#define STR_MAX 4095u   /* a path */

/* ---- the model ---- */

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

struct fd_obj *ckpt_fd_obj_new(struct ckpt_fds *f, uint16_t sec, uint32_t n_descs)
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
	if (n_descs) {
		o->descs = calloc(n_descs, sizeof(*o->descs));
		if (!o->descs)
			return NULL;
		o->n_descs = n_descs;
	}
	return o;
}

int ckpt_fd_obj_add_chunk(struct fd_obj *o, uint32_t stream, uint64_t off, uint8_t *bytes, size_t len)
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

const struct fd_ent *ckpt_fds_table_find(const struct ckpt_fds *f, uint32_t fd)
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

/* ---- what a reader takes ---- */

static bool abs_path(const char *p)
{
	return p && p[0] == '/';
}

/* F_GETFL flags of a description that is opened for I/O (not O_PATH). */
static bool io_flags_ok(uint32_t fl)
{
	return (fl & O_ACCMODE) != O_ACCMODE && !(fl & O_PATH);
}

/* ---- the payloads, field by field, both ways ---- */

/* str: a u32 length and the bytes; reading: at most STR_MAX, no NUL, NULL
 * when empty. */
static void field_str(struct field_io *io, char **s)
{
	const uint8_t *p;
	size_t n;

	if (io->r < 0)
		return;
	if (!field_reading(io)) {
		sm_buf_put_blob(io->out, *s, *s ? strlen(*s) : 0);
		return;
	}
	*s = NULL;
	p = sm_cur_blob(io->in, &n);
	if (!p)
		io->r = sm_cur_check(io->in, io->what, 0);
	else if (n > STR_MAX || memchr(p, 0, n))
		io->r = sm_cur_fail(io->in, io->what, "a %zu-byte string is invalid here", n);
	else if (n && !(*s = strndup((const char *)p, n)))
		io->r = -ENOMEM;
}

/* u32 n; n × (u32 file id, u32 F_GETFL flags[, u64 offset]) */
static void field_descs(struct field_io *io, struct fd_obj *o, bool with_pos)
{
	uint32_t n = o->n_descs;

	field_u32(io, &n);
	if (field_reading(io) && io->r >= 0) {
		/* bounded by the section before anything is allocated */
		if (io->in->err) {
			io->r = sm_cur_check(io->in, io->what, 0);
			return;
		}
		if (n == 0 || n > MAX_DESCS || (size_t)n * (with_pos ? 16 : 8) > sm_cur_remaining(io->in)) {
			io->r = sm_cur_fail(io->in, io->what, "%u descriptions cannot be right", n);
			return;
		}
		o->descs = calloc(n, sizeof(*o->descs));
		if (!o->descs) {
			io->r = -ENOMEM;
			return;
		}
		o->n_descs = n;
	}
	for (uint32_t i = 0; i < n && io->r >= 0; i++) {
		struct fd_desc *d = &o->descs[i];

		field_u32(io, &d->file);
		field_u32(io, &d->flags);
		if (with_pos)
			field_u64(io, &d->pos);
		if (field_reading(io) && !io->in->err && (!d->file || !io_flags_ok(d->flags)))
			io->r = sm_cur_fail(io->in, io->what, "description %u (file %u, flags %#o) is invalid", i, d->file,
					    d->flags);
	}
}

/* TABLE: u32 n; n × (u32 fd, u32 file id, u32 fd flags) */
static void table_fields(struct field_io *io, struct ckpt_fds *f)
{
	uint32_t n = (uint32_t)f->n_table;

	field_u32(io, &n);
	if (field_reading(io)) {
		if (io->in->err) {
			io->r = sm_cur_check(io->in, io->what, 0);
			return;
		}
		if (f->have_table) {
			io->r = sm_cur_fail(io->in, io->what, "a second table");
			return;
		}
		if (n > CKPT_FD_NUM_MAX || (size_t)n * 12 != sm_cur_remaining(io->in)) {
			io->r = sm_cur_fail(io->in, io->what, "%u fds cannot be right", n);
			return;
		}
		f->table = calloc(n ? n : 1, sizeof(*f->table));
		if (!f->table) {
			io->r = -ENOMEM;
			return;
		}
		f->have_table = true;
	}
	for (uint32_t i = 0; i < n && io->r >= 0; i++) {
		struct fd_ent *e = &f->table[i];

		field_u32(io, &e->fd);
		field_u32(io, &e->file);
		field_u32(io, &e->fdflags);
		if (!field_reading(io))
			continue;
		f->n_table = i + 1;
		if (e->fd >= CKPT_FD_NUM_MAX || (i && e->fd <= f->table[i - 1].fd) || (e->fdflags & ~(uint32_t)FD_CLOEXEC))
			io->r = sm_cur_fail(io->in, io->what, "entry %u (fd %u) is invalid or out of order", i, e->fd);
	}
}

/* PATH: file id, kind, flags, st_mode, offset, size, rdev, mtime, path */
static void path_fields(struct field_io *io, struct fd_obj *o)
{
	field_u32(io, &o->id);
	field_u32(io, &o->kind);
	field_u32(io, &o->descs[0].flags);
	field_u32(io, &o->mode);
	field_u64(io, &o->descs[0].pos);
	field_u64(io, &o->size);
	field_u64(io, &o->rdev);
	field_i64(io, &o->mtime_sec);
	field_u32(io, &o->mtime_nsec);
	field_str(io, &o->path);
}

/* MEMFILE: object id, kind, st_mode, seals, size, inode, name, descriptions */
static void memfile_fields(struct field_io *io, struct fd_obj *o)
{
	field_u32(io, &o->id);
	field_u32(io, &o->kind);
	field_u32(io, &o->mode);
	field_u32(io, &o->seals);
	field_u64(io, &o->size);
	field_u64(io, &o->ino);
	field_str(io, &o->path);
	field_descs(io, o, true);
}

/* PIPE: object id, kind, pipe size, FIFO path, descriptions */
static void pipe_fields(struct field_io *io, struct fd_obj *o)
{
	field_u32(io, &o->id);
	field_u32(io, &o->kind);
	field_u32(io, &o->pipe_size);
	field_str(io, &o->path);
	field_descs(io, o, false);
}

/* EVENT: file id, kind, flags, then what the kind has */
static void event_fields(struct field_io *io, struct fd_obj *o)
{
	field_u32(io, &o->id);
	field_u32(io, &o->kind);
	field_u32(io, &o->descs[0].flags);
	switch (o->kind) {
	case EV_EVENTFD: /* count, semaphore */
		field_u64(io, &o->ev[0]);
		field_u32_in_u64(io, &o->ev[1]);
		break;
	case EV_TIMERFD: /* clock, remaining ns, interval ns, ticks */
		field_u32_in_u64(io, &o->ev[0]);
		field_u64(io, &o->ev[1]);
		field_u64(io, &o->ev[2]);
		field_u64(io, &o->ev[3]);
		break;
	case EV_SIGNALFD: /* mask */
		field_u64(io, &o->ev[0]);
		break;
	default: /* only a reader meets one */
		if (field_reading(io))
			io->r = sm_cur_fail(io->in, io->what, "unknown kind %u", o->kind);
		break;
	}
}

/* EPOLL: file id, flags, u32 n; n × (u32 tfd, u32 holder, u32 events, u64 data) */
static void epoll_fields(struct field_io *io, struct fd_obj *o)
{
	uint32_t n = o->n_epis;

	field_u32(io, &o->id);
	field_u32(io, &o->descs[0].flags);
	field_u32(io, &n);
	if (field_reading(io)) {
		if (io->in->err) {
			io->r = sm_cur_check(io->in, io->what, 0);
			return;
		}
		if (!o->id || !io_flags_ok(o->descs[0].flags) || (size_t)n * 20 != sm_cur_remaining(io->in)) {
			io->r = sm_cur_fail(io->in, io->what, "file %u with %u registrations is invalid", o->id, n);
			return;
		}
		o->epis = calloc(n ? n : 1, sizeof(*o->epis));
		if (!o->epis) {
			io->r = -ENOMEM;
			return;
		}
		o->n_epis = n;
	}
	for (uint32_t i = 0; i < n && io->r >= 0; i++) {
		struct fd_epi *e = &o->epis[i];

		field_u32(io, &e->tfd);
		field_u32(io, &e->holder);
		field_u32(io, &e->events);
		field_u64(io, &e->data);
		if (field_reading(io) && (e->tfd >= CKPT_FD_NUM_MAX || e->holder >= CKPT_FD_NUM_MAX))
			io->r = sm_cur_fail(io->in, io->what, "registration %u (tfd %u, fd %u) is invalid", i, e->tfd,
					    e->holder);
	}
}

/* UNIX: object id, socket type, 2 × (file id, flags, SO_SNDBUF, SO_RCVBUF,
 * SO_PEEK_OFF, shutdown) */
static void unix_fields(struct field_io *io, struct fd_obj *o)
{
	field_u32(io, &o->id);
	field_u32(io, &o->kind);
	for (int e = 0; e < 2; e++) {
		field_u32(io, &o->descs[e].file);
		field_u32(io, &o->descs[e].flags);
		field_u32(io, &o->uend[e].sndbuf);
		field_u32(io, &o->uend[e].rcvbuf);
		field_i32(io, &o->uend[e].peek_off);
		field_u32(io, &o->uend[e].shutdown);
	}
}

/* ---- what a reader refuses once a payload is in ---- */

static int path_check(struct sm_cursor *c, const char *what, const struct fd_obj *o)
{
	uint32_t fl = o->descs[0].flags;
	bool ok;

	switch (o->kind) {
	case PATH_FILE:
		ok = S_ISREG(o->mode) && io_flags_ok(fl);
		break;
	case PATH_DIR:
		ok = S_ISDIR(o->mode) && io_flags_ok(fl);
		break;
	case PATH_CHR:
		ok = S_ISCHR(o->mode) && io_flags_ok(fl);
		break;
	case PATH_OPATH:
		ok = (fl & O_PATH) != 0;
		break;
	case PATH_ELSEWHERE:
		ok = io_flags_ok(fl);
		break;
	default:
		return sm_cur_fail(c, what, "unknown kind %u", o->kind);
	}
	if (!ok || !o->id || o->mtime_nsec >= 1000000000u || !o->path ||
	    (o->kind != PATH_ELSEWHERE && !abs_path(o->path)))
		return sm_cur_fail(c, what, "file %u (kind %u, mode %#o, flags %#o) is invalid", o->id, o->kind, o->mode,
				   fl);
	return 0;
}

static int memfile_check(struct sm_cursor *c, const char *what, const struct fd_obj *o)
{
	if (!o->id || (o->kind != MEM_MEMFD && o->kind != MEM_DELETED) || !S_ISREG(o->mode) ||
	    (o->seals & ~(uint32_t)SEALS_KNOWN) || o->size > (uint64_t)INT64_MAX || !o->path ||
	    (o->kind == MEM_MEMFD && strlen(o->path) > MEMFD_NAME_MAX) || (o->kind == MEM_DELETED && !abs_path(o->path)))
		return sm_cur_fail(c, what, "object %u (kind %u, mode %#o, seals %#x) is invalid", o->id, o->kind, o->mode,
				   o->seals);
	return 0;
}

static int pipe_check(struct sm_cursor *c, const char *what, const struct fd_obj *o)
{
	if (!o->id || (o->kind != PIPE_ANON && o->kind != PIPE_FIFO) || (o->kind == PIPE_FIFO) != abs_path(o->path) ||
	    (o->kind == PIPE_ANON && o->path) || o->pipe_size == 0 || o->pipe_size % 4096 || o->pipe_size > (1u << 31))
		return sm_cur_fail(c, what, "object %u (kind %u, size %u) is invalid", o->id, o->kind, o->pipe_size);
	return 0;
}

/* (an unknown kind is refused by event_fields) */
static int event_check(struct sm_cursor *c, const char *what, const struct fd_obj *o)
{
	bool ok = true;

	if (o->kind == EV_EVENTFD)
		ok = o->ev[0] < UINT64_MAX && o->ev[1] <= 1;
	else if (o->kind == EV_TIMERFD)
		ok = ckpt_fd_timerfd_clock_ok(o->ev[0]) && o->ev[1] <= (uint64_t)INT64_MAX &&
		     o->ev[2] <= (uint64_t)INT64_MAX;
	if (!ok || !o->id || !io_flags_ok(o->descs[0].flags))
		return sm_cur_fail(c, what, "file %u (kind %u) is invalid", o->id, o->kind);
	return 0;
}

static int unix_check(struct sm_cursor *c, const char *what, const struct fd_obj *o)
{
	if (!o->id || (o->kind != SOCK_STREAM && o->kind != SOCK_DGRAM && o->kind != SOCK_SEQPACKET))
		return sm_cur_fail(c, what, "object %u of socket type %u is invalid", o->id, o->kind);
	for (int e = 0; e < 2; e++)
		if (!o->descs[e].file || !io_flags_ok(o->descs[e].flags) || o->uend[e].sndbuf > INT_MAX ||
		    o->uend[e].rcvbuf > INT_MAX || o->uend[e].peek_off < -1 || o->uend[e].shutdown > 3)
			return sm_cur_fail(c, what, "end %d of object %u is invalid", e, o->id);
	return 0;
}

/* The object sections: the name in sentences; how many descriptions the
 * object has before its fields are read (0: a list in the payload; 1: the
 * description is the object, its file id the object's id); the fields;
 * what the reader checks once the payload is in. */
static const struct obj_section {
	uint16_t sec;
	const char *what;
	uint32_t n_descs;
	void (*fields)(struct field_io *io, struct fd_obj *o);
	int (*check)(struct sm_cursor *c, const char *what, const struct fd_obj *o);
} obj_sections[] = {
	{ CKPT_SEC_FD_PATH, "fd path section", 1, path_fields, path_check },
	{ CKPT_SEC_FD_MEMFILE, "fd memfile section", 0, memfile_fields, memfile_check },
	{ CKPT_SEC_FD_PIPE, "fd pipe section", 0, pipe_fields, pipe_check },
	{ CKPT_SEC_FD_EVENT, "fd event section", 1, event_fields, event_check },
	{ CKPT_SEC_FD_EPOLL, "fd epoll section", 1, epoll_fields, NULL },
	{ CKPT_SEC_FD_UNIX, "fd unix socketpair section", 2, unix_fields, unix_check },
};

/* NULL for TABLE, DATA and what is not an fd section */
static const struct obj_section *obj_section(uint32_t sec)
{
	for (size_t i = 0; i < ARRAY_SIZE(obj_sections); i++)
		if (obj_sections[i].sec == sec)
			return &obj_sections[i];
	return NULL;
}

/* ---- writer ---- */

int ckpt_fds_write(const struct ckpt_fds *fds, struct sm_image_writer *w)
{
	struct sm_buf b;
	struct field_io io = { .out = &b };
	int r = 0;

	if (!fds)
		return 0;
	sm_buf_init(&b);
	/* the field lists only read the model when they write: the casts
	 * below drop a const that holds */
	if (fds->have_table) {
		table_fields(&io, (struct ckpt_fds *)fds);
		r = sm_image_write_buf(w, CKPT_SEC_FD_TABLE, &b);
	}
	for (size_t i = 0; i < fds->n_objs && r >= 0; i++) {
		const struct fd_obj *o = &fds->objs[i];

		sm_buf_free(&b);
		sm_buf_init(&b);
		obj_section(o->sec)->fields(&io, (struct fd_obj *)o);
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

/* ---- reader: every value untrusted ---- */

static int read_table(struct ckpt_fds *f, struct sm_cursor *c)
{
	struct field_io io = { .in = c, .what = "fd table" };

	table_fields(&io, f);
	return io.r < 0 ? io.r : sm_cur_check(c, io.what, 1);
}

static int read_obj(struct ckpt_fds *f, const struct obj_section *s, struct sm_cursor *c)
{
	struct field_io io = { .in = c, .what = s->what };
	struct fd_obj *o = ckpt_fd_obj_new(f, s->sec, s->n_descs);
	int r;

	if (!o)
		return -ENOMEM;
	s->fields(&io, o);
	if (s->n_descs == 1)
		o->descs[0].file = o->id;
	if (io.r < 0)
		return io.r;
	r = sm_cur_check(c, s->what, 1);
	if (r < 0 || !s->check)
		return r;
	return s->check(c, s->what, o);
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
	return ckpt_fd_obj_add_chunk(o, stream, off, bytes, len);
}

int ckpt_fds_read_section(struct ckpt_fds **fds, uint32_t type, struct sm_cursor *c)
{
	const struct obj_section *s = obj_section(type);

	if (!*fds) {
		*fds = calloc(1, sizeof(**fds));
		if (!*fds)
			return -ENOMEM;
	}
	if (type == CKPT_SEC_FD_TABLE)
		return read_table(*fds, c);
	if (type == CKPT_SEC_FD_DATA)
		return read_data(*fds, c);
	if (s)
		return read_obj(*fds, s, c);
	return sm_cur_fail(c, "fd section", "type %#x is not an fd section", type);
}

/* ---- checks across sections ---- */

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
	qsort(v, n, sizeof(*v), ckpt_fd_cmp_u32);
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
	qsort(ids, n_ids, sizeof(*ids), ckpt_fd_cmp_u32);
	for (size_t i = 1; i < n_ids; i++)
		if (ids[i] == ids[i - 1])
			return sm_fail(-EBADMSG, "fd sections: id %u is used twice", ids[i]);
	for (size_t i = 0; i < fds->n_table; i++) {
		const struct fd_ent *e = &fds->table[i];
		uint32_t *hit;

		if (!e->file)
			continue;
		hit = bsearch(&e->file, files, n_files, sizeof(*files), ckpt_fd_cmp_u32);
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
			if (!ckpt_fds_table_find(fds, o->epis[k].holder))
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
