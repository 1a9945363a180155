/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The sections of the per-process state (0x1010..0x1017): their writer,
 * their reader of untrusted bytes, and the check that an image has them
 * all. The model is struct ckpt_task (ckpt_task.h); the byte layout is
 * docs/ckpt-task.md, keep the two in step. ckpt_task_internal.h says where
 * the dump and the restore are.
 *
 * Each section's fields are listed once (ckpt_field.h) and serve both the
 * writer and the reader; what a reader must refuse is checked after the
 * list, or in it where a count must be bounded first.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt_field.h"
#include "ckpt_task_internal.h"
#include "util.h"

#define NSEC_PER_SEC 1000000000ull
#define USEC_PER_SEC 1000000ull

const char *const ckpt_task_rlimit_names[CKPT_TASK_NRLIMITS] = {
	"CPU",    "FSIZE", "DATA",  "STACK",      "CORE",     "RSS",  "NPROC",  "NOFILE",
	"MEMLOCK", "AS",   "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME",
};

/* ---- the payloads, field by field, both ways ---- */

/* SIGACTS: u32 n (64); n × (u64 handler, u64 flags, u64 restorer, u64 mask) */
static void sigacts_fields(struct field_io *io, struct ckpt_task *t)
{
	uint32_t n = CKPT_TASK_NSIG;

	field_u32(io, &n);
	if (field_reading(io) && !io->in->err && n != CKPT_TASK_NSIG) {
		io->r = sm_cur_fail(io->in, io->what, "%u signals, expected %d", n, CKPT_TASK_NSIG);
		return;
	}
	for (int i = 0; i < CKPT_TASK_NSIG; i++) {
		field_u64(io, &t->act[i].handler);
		field_u64(io, &t->act[i].flags);
		field_u64(io, &t->act[i].restorer);
		field_u64(io, &t->act[i].mask);
	}
}

/* ALTSTACK: u64 sp, u64 size, u32 flags */
static void altstack_fields(struct field_io *io, struct ckpt_task *t)
{
	field_u64(io, &t->altstack.sp);
	field_u64(io, &t->altstack.size);
	field_u32(io, &t->altstack.flags);
}

/* ITIMERS: 3 × (u64 interval s, u64 interval µs, u64 value s, u64 value µs) */
static void itimers_fields(struct field_io *io, struct ckpt_task *t)
{
	for (int i = 0; i < 3; i++) {
		struct ckpt_itimer *it = &t->itimer[i];

		field_u64(io, &it->interval_sec);
		field_u64(io, &it->interval_usec);
		field_u64(io, &it->value_sec);
		field_u64(io, &it->value_usec);
	}
}

/* A timer as the reader takes it, right after its 56 bytes. */
static int timer_check(struct sm_cursor *c, const char *what, const struct ckpt_task *t, uint32_t i)
{
	const struct ckpt_ptimer *pt = &t->timers[i];

	if (pt->id < 0 || (i && pt->id <= t->timers[i - 1].id))
		return sm_cur_fail(c, what, "timer ids are not ascending (%d)", pt->id);
	if (!ckpt_task_clock_storable(pt->clock))
		return sm_cur_fail(c, what, "timer %d: clock %d cannot be restored", pt->id, pt->clock);
	if (pt->notify > CKPT_TIMER_NONE || pt->signo < 1 || pt->signo > CKPT_TASK_NSIG)
		return sm_cur_fail(c, what, "timer %d: notification %u with signal %u is invalid", pt->id, pt->notify,
				   pt->signo);
	if (pt->interval_nsec >= NSEC_PER_SEC || pt->value_nsec >= NSEC_PER_SEC || pt->interval_sec > INT64_MAX ||
	    pt->value_sec > INT64_MAX)
		return sm_cur_fail(c, what, "timer %d holds an invalid time", pt->id);
	return 0;
}

/* TIMERS: u32 n; n × (s32 id, s32 clock id, u32 notify, u32 signal,
 * u64 sigev_value, u64 interval s, u64 interval ns, u64 value s, u64 value ns) */
static void timers_fields(struct field_io *io, struct ckpt_task *t)
{
	uint32_t n = t->n_timers;

	field_u32(io, &n);
	if (field_reading(io)) {
		if (io->in->err) {
			io->r = sm_cur_check(io->in, io->what, 1);
			return;
		}
		if (n > CKPT_TASK_MAX_TIMERS) {
			io->r = sm_cur_fail(io->in, io->what, "%u timers, more than %u", n, CKPT_TASK_MAX_TIMERS);
			return;
		}
		/* 56 bytes each: bound n by the section before allocating */
		if (sm_cur_remaining(io->in) != (size_t)n * 56) {
			io->r = sm_cur_fail(io->in, io->what, "%u timers in %zu bytes", n, sm_cur_remaining(io->in));
			return;
		}
		if (n && !(t->timers = calloc(n, sizeof(*t->timers)))) {
			io->r = -ENOMEM;
			return;
		}
		t->n_timers = n;
	}
	for (uint32_t i = 0; i < n && io->r >= 0; i++) {
		struct ckpt_ptimer *pt = &t->timers[i];

		field_i32(io, &pt->id);
		field_i32(io, &pt->clock);
		field_u32(io, &pt->notify);
		field_u32(io, &pt->signo);
		field_u64(io, &pt->sigval);
		field_u64(io, &pt->interval_sec);
		field_u64(io, &pt->interval_nsec);
		field_u64(io, &pt->value_sec);
		field_u64(io, &pt->value_nsec);
		if (field_reading(io) && !io->in->err)
			io->r = timer_check(io->in, io->what, t, i);
	}
}

/* RLIMITS: u32 n (16); n × (u64 soft, u64 hard) */
static void rlimits_fields(struct field_io *io, struct ckpt_task *t)
{
	uint32_t n = CKPT_TASK_NRLIMITS;

	field_u32(io, &n);
	if (field_reading(io) && !io->in->err && n != CKPT_TASK_NRLIMITS) {
		io->r = sm_cur_fail(io->in, io->what, "%u limits, this sockmig knows %d", n, CKPT_TASK_NRLIMITS);
		return;
	}
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++) {
		field_u64(io, &t->rlim[i][0]);
		field_u64(io, &t->rlim[i][1]);
	}
}

/* str: the working directory. Reading keeps it only if it is an absolute
 * path that fits, else leaves it empty, which proc_check() refuses. */
static void field_cwd(struct field_io *io, char *cwd, size_t size)
{
	const uint8_t *p;
	size_t n = 0;

	if (io->r < 0)
		return;
	if (!field_reading(io)) {
		sm_buf_put_blob(io->out, cwd, strnlen(cwd, size));
		return;
	}
	p = sm_cur_blob(io->in, &n);
	cwd[0] = 0;
	if (p && n && n < size && p[0] == '/' && !memchr(p, 0, n)) {
		memcpy(cwd, p, n);
		cwd[n] = 0;
	}
}

/* PROC: u32 umask, u32 personality, u32 flags, str cwd */
static void proc_fields(struct field_io *io, struct ckpt_task *t)
{
	field_u32(io, &t->umask);
	field_u32(io, &t->personality);
	field_u32(io, &t->flags);
	field_cwd(io, t->cwd, sizeof(t->cwd));
}

/* CREDS: u32 uid × 4, u32 gid × 4, u32 n; n × u32 group */
static void creds_fields(struct field_io *io, struct ckpt_task *t)
{
	for (int i = 0; i < 4; i++)
		field_u32(io, &t->creds.uid[i]);
	for (int i = 0; i < 4; i++)
		field_u32(io, &t->creds.gid[i]);
	field_u32(io, &t->creds.n_groups);
	if (field_reading(io) && !io->in->err && t->creds.n_groups > CKPT_MAX_GROUPS) {
		uint32_t n = t->creds.n_groups;

		t->creds.n_groups = 0;
		io->r = sm_cur_fail(io->in, io->what, "%u groups, more than %d", n, CKPT_MAX_GROUPS);
		return;
	}
	for (uint32_t i = 0; i < t->creds.n_groups && i < CKPT_MAX_GROUPS; i++)
		field_u32(io, &t->creds.groups[i]);
}

/* ---- what a reader refuses once a payload is in ---- */

static int sigacts_check(struct sm_cursor *c, const char *what, const struct ckpt_task *t)
{
	if (t->act[SIGKILL - 1].handler || t->act[SIGSTOP - 1].handler)
		return sm_cur_fail(c, what, "SIGKILL or SIGSTOP has a handler");
	return 0;
}

static int altstack_check(struct sm_cursor *c, const char *what, const struct ckpt_task *t)
{
	if (t->altstack.flags & ~(uint32_t)(SS_ONSTACK | SS_DISABLE | SS_AUTODISARM))
		return sm_cur_fail(c, what, "flags %#x are invalid", t->altstack.flags);
	if (!(t->altstack.flags & SS_DISABLE) &&
	    (t->altstack.size == 0 || t->altstack.sp + t->altstack.size < t->altstack.sp))
		return sm_cur_fail(c, what, "a stack of %" PRIu64 " bytes at %#" PRIx64 " is invalid", t->altstack.size,
				   t->altstack.sp);
	return 0;
}

static int itimers_check(struct sm_cursor *c, const char *what, const struct ckpt_task *t)
{
	for (int i = 0; i < 3; i++) {
		const struct ckpt_itimer *it = &t->itimer[i];

		if (it->interval_usec >= USEC_PER_SEC || it->value_usec >= USEC_PER_SEC ||
		    it->interval_sec > INT64_MAX || it->value_sec > INT64_MAX)
			return sm_cur_fail(c, what, "timer %d holds an invalid time", i);
	}
	return 0;
}

static int rlimits_check(struct sm_cursor *c, const char *what, const struct ckpt_task *t)
{
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++)
		if (t->rlim[i][0] > t->rlim[i][1])
			return sm_cur_fail(c, what, "RLIMIT_%s: soft limit above the hard one", ckpt_task_rlimit_names[i]);
	return 0;
}

static int proc_check(struct sm_cursor *c, const char *what, const struct ckpt_task *t)
{
	if (t->umask & ~0777u)
		return sm_cur_fail(c, what, "umask %#o is invalid", t->umask);
	if (t->personality == 0xffffffffu)
		return sm_cur_fail(c, what, "personality 0xffffffff is invalid");
	if (t->flags & ~(uint32_t)CKPT_TASK_NO_NEW_PRIVS)
		return sm_cur_fail(c, what, "unknown flags %#x", t->flags);
	if (t->cwd[0] != '/')
		return sm_cur_fail(c, what, "the working directory is not an absolute path");
	return 0;
}

/* Every section type, in the order they are written: the name in
 * sentences, the have bit of the model, the fields, what the reader checks
 * once the payload is in. PENDING holds two queues under one type, each
 * with a have bit of its own: write_queue() and read_pending(). */
static const struct task_section {
	uint16_t type;
	const char *what;
	uint32_t have;
	void (*fields)(struct field_io *io, struct ckpt_task *t);
	int (*check)(struct sm_cursor *c, const char *what, const struct ckpt_task *t);
} task_sections[] = {
	{ CKPT_SEC_TASK_SIGACTS, "signal handlers", CKPT_TASK_HAVE_SIGACTS, sigacts_fields, sigacts_check },
	{ CKPT_SEC_TASK_ALTSTACK, "alternate signal stack", CKPT_TASK_HAVE_ALTSTACK, altstack_fields, altstack_check },
	{ CKPT_SEC_TASK_PENDING, "pending signals", 0, NULL, NULL },
	{ CKPT_SEC_TASK_ITIMERS, "interval timers", CKPT_TASK_HAVE_ITIMERS, itimers_fields, itimers_check },
	{ CKPT_SEC_TASK_TIMERS, "POSIX timers", CKPT_TASK_HAVE_TIMERS, timers_fields, NULL },
	{ CKPT_SEC_TASK_RLIMITS, "resource limits", CKPT_TASK_HAVE_RLIMITS, rlimits_fields, rlimits_check },
	{ CKPT_SEC_TASK_PROC, "process attributes", CKPT_TASK_HAVE_PROC, proc_fields, proc_check },
	{ CKPT_SEC_TASK_CREDS, "credentials", CKPT_TASK_HAVE_CREDS, creds_fields, NULL },
};

/* ---- writer ---- */

/* PENDING: u32 tid (0: the process-wide queue), u32 n; n × 128-byte siginfo */
static int write_queue(struct sm_image_writer *w, uint32_t tid, const struct ckpt_sigqueue *q)
{
	struct sm_buf b;
	int r;

	sm_buf_init(&b);
	sm_buf_put_u32(&b, tid);
	sm_buf_put_u32(&b, q->n);
	for (uint32_t i = 0; i < q->n; i++)
		sm_buf_put_bytes(&b, q->info[i].b, CKPT_SIGINFO_SIZE);
	r = sm_image_write_buf(w, CKPT_SEC_TASK_PENDING, &b);
	sm_buf_free(&b);
	return r;
}

int ckpt_task_write(struct sm_image_writer *w, const struct ckpt_task *t)
{
	int r = 0;

	for (size_t i = 0; i < ARRAY_SIZE(task_sections) && r >= 0; i++) {
		const struct task_section *s = &task_sections[i];
		struct sm_buf b;
		struct field_io io = { .out = &b };

		if (s->type == CKPT_SEC_TASK_PENDING) {
			if (t->have & CKPT_TASK_HAVE_PENDING_THREAD)
				r = write_queue(w, t->tid, &t->thread);
			if (r >= 0 && (t->have & CKPT_TASK_HAVE_PENDING_SHARED))
				r = write_queue(w, 0, &t->shared);
			continue;
		}
		if (!(t->have & s->have))
			continue;
		sm_buf_init(&b);
		/* the field lists only read the model when they write */
		s->fields(&io, (struct ckpt_task *)t);
		r = sm_image_write_buf(w, s->type, &b);
		sm_buf_free(&b);
	}
	return r < 0 ? r : 0;
}

/* ---- reader: every value untrusted ---- */

bool ckpt_task_owns(uint32_t type)
{
	return type >= CKPT_SEC_TASK_SIGACTS && type <= CKPT_SEC_TASK_CREDS;
}

static int read_pending(struct sm_cursor *c, struct ckpt_task *t)
{
	static const char what[] = "pending signals";
	uint32_t tid = sm_cur_u32(c), n = sm_cur_u32(c);
	struct ckpt_sigqueue *q = tid ? &t->thread : &t->shared;
	uint32_t bit = tid ? CKPT_TASK_HAVE_PENDING_THREAD : CKPT_TASK_HAVE_PENDING_SHARED;
	const uint8_t *p;

	if (c->err)
		return sm_cur_check(c, what, 1);
	if (t->have & bit)
		return sm_cur_fail(c, what, tid ? "a second thread's queue (only single-threaded images are supported)"
						: "a second process-wide queue");
	if (n > CKPT_TASK_MAX_PENDING)
		return sm_cur_fail(c, what, "%u signals, more than %u", n, CKPT_TASK_MAX_PENDING);
	p = sm_cur_bytes(c, (size_t)n * CKPT_SIGINFO_SIZE);
	if (sm_cur_check(c, what, 1) < 0)
		return c->err;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t sig;

		memcpy(&sig, p + (size_t)i * CKPT_SIGINFO_SIZE, 4);
		if (sig < 1 || sig > CKPT_TASK_NSIG || sig == SIGKILL || sig == SIGSTOP)
			return sm_cur_fail(c, what, "entry %u is signal %u", i, sig);
	}
	if (n) {
		q->info = malloc((size_t)n * sizeof(*q->info));
		if (!q->info)
			return -ENOMEM;
		memcpy(q->info, p, (size_t)n * CKPT_SIGINFO_SIZE);
	}
	q->n = n;
	if (tid)
		t->tid = tid;
	t->have |= bit;
	return 0;
}

int ckpt_task_read_section(struct ckpt_task **tp, uint32_t type, struct sm_cursor *c)
{
	const struct task_section *s;
	struct field_io io = { .in = c };
	struct ckpt_task *t;
	int r;

	if (!ckpt_task_owns(type))
		return sm_cur_fail(c, "process state", "section type %#x is not a process state section", type);
	if (!*tp) {
		*tp = calloc(1, sizeof(**tp));
		if (!*tp)
			return -ENOMEM;
	}
	t = *tp;
	if (type == CKPT_SEC_TASK_PENDING)
		return read_pending(c, t);
	for (s = task_sections; s->type != type; s++) /* every type owned has its row */
		;
	if (t->have & s->have)
		return sm_cur_fail(c, "process state", "a second section of type %#x", type);
	io.what = s->what;
	s->fields(&io, t);
	if (io.r < 0)
		return io.r;
	r = sm_cur_check(c, s->what, 1);
	if (r == 0 && s->check)
		r = s->check(c, s->what, t);
	if (r == 0)
		t->have |= s->have;
	return r;
}

/* ---- the model ---- */

int ckpt_task_validate(const struct ckpt_task *t)
{
	static const char *const names[] = { "signal handlers", "alternate signal stack", "thread's pending signals",
					     "process-wide pending signals", "interval timers", "POSIX timers",
					     "resource limits", "process attributes", "credentials" };
	uint32_t missing;

	if (!t) /* an image of the first slice: nothing of ours */
		return 0;
	missing = CKPT_TASK_HAVE_ALL & ~t->have;
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++)
		if (missing & (1u << i))
			return sm_fail(-EBADMSG, "the image's process state is incomplete: it has no %s", names[i]);
	return 0;
}

void ckpt_task_free(struct ckpt_task *t)
{
	if (!t)
		return;
	free(t->timers);
	free(t->thread.info);
	free(t->shared.info);
	free(t);
}

const struct ckpt_creds *ckpt_task_creds(const struct ckpt_task *t)
{
	return t && (t->have & CKPT_TASK_HAVE_CREDS) ? &t->creds : NULL;
}
