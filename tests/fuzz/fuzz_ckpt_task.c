/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The process-state section reader (ckpt_task_read_section) on payloads it
 * did not write. The input is a list of sections: u8 selector (low 3 bits:
 * type 0x1010 + n; 0x08 set: a type outside the range, which must be
 * refused), u16 length (little-endian), payload. They go one after another
 * into one model, as a restore's reader feeds them, until one is refused.
 *
 * What the reader promises is checked, not only that it does not crash:
 * a refusal comes with a sentence; what it accepted holds the invariants
 * the restore relies on (signals 1..64 and never SIGKILL/SIGSTOP queued,
 * timer ids ascending with valid times, an absolute cwd, at most 256
 * groups); and the model, written and read back, comes out the same.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sockmig/sockmig.h"
#include "ckpt_task.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_queue(const struct ckpt_sigqueue *q)
{
	if (q->n > CKPT_TASK_MAX_PENDING || (q->n && !q->info))
		abort();
	for (uint32_t i = 0; i < q->n; i++) {
		uint32_t sig;

		memcpy(&sig, q->info[i].b, 4);
		if (sig < 1 || sig > 64 || sig == 9 || sig == 19)
			abort();
	}
}

static void check_invariants(const struct ckpt_task *t)
{
	if (t->have & ~CKPT_TASK_HAVE_ALL)
		abort();
	check_queue(&t->thread);
	check_queue(&t->shared);
	if (t->n_timers > CKPT_TASK_MAX_TIMERS)
		abort();
	for (uint32_t i = 0; i < t->n_timers; i++) {
		const struct ckpt_ptimer *pt = &t->timers[i];

		if (pt->id < 0 || (i && pt->id <= t->timers[i - 1].id) || pt->value_nsec >= 1000000000ull ||
		    pt->interval_nsec >= 1000000000ull || pt->signo < 1 || pt->signo > 64 || pt->notify > 1)
			abort();
	}
	if ((t->have & CKPT_TASK_HAVE_PROC) &&
	    (t->cwd[0] != '/' || !memchr(t->cwd, 0, sizeof(t->cwd)) || t->umask > 0777))
		abort();
	if (t->creds.n_groups > CKPT_MAX_GROUPS)
		abort();
	if ((t->have & CKPT_TASK_HAVE_SIGACTS) && (t->act[8].handler || t->act[18].handler))
		abort();
	for (int i = 0; i < 3; i++)
		if (t->itimer[i].value_usec >= 1000000 || t->itimer[i].interval_usec >= 1000000)
			abort();
	for (int i = 0; i < CKPT_TASK_NRLIMITS; i++)
		if (t->rlim[i][0] > t->rlim[i][1])
			abort();
}

static void same_queue(const struct ckpt_sigqueue *a, const struct ckpt_sigqueue *b)
{
	if (a->n != b->n || (a->n && memcmp(a->info, b->info, a->n * sizeof(*a->info))))
		abort();
}

/* Write what was accepted, read it back: the same model. */
static void check_roundtrip(const struct ckpt_task *t)
{
	struct sm_image_writer *w;
	struct sm_image_reader *r;
	struct ckpt_task *u = NULL;
	int fd = memfd_create("fuzz-task", MFD_CLOEXEC);

	if (fd < 0)
		return;
	if (sm_image_writer_new(fd, SM_IMAGE_KIND_PROCESS, &w) < 0 || ckpt_task_write(w, t) < 0 ||
	    sm_image_writer_finish(w) < 0)
		abort();
	sm_image_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	if (sm_image_reader_new_fd(fd, &r) < 0)
		abort();
	for (;;) {
		const uint8_t *p;
		struct sm_cursor c;
		uint64_t off;
		uint16_t type;
		size_t len;
		int n = sm_image_next_section(r, &type, &p, &len, &off);

		if (n < 0)
			abort();
		if (n == 0)
			break;
		sm_cursor_init(&c, p, len, off);
		if (ckpt_task_read_section(&u, type, &c) < 0)
			abort();
	}
	sm_image_reader_free(r);
	close(fd);
	if (!u) {
		if (t->have)
			abort();
		return;
	}
	if (u->have != t->have || memcmp(u->act, t->act, sizeof(t->act)) ||
	    memcmp(&u->altstack, &t->altstack, sizeof(t->altstack)) || memcmp(u->itimer, t->itimer, sizeof(t->itimer)) ||
	    u->n_timers != t->n_timers || (t->n_timers && memcmp(u->timers, t->timers, t->n_timers * sizeof(*t->timers))) ||
	    memcmp(u->rlim, t->rlim, sizeof(t->rlim)) || u->umask != t->umask || u->personality != t->personality ||
	    u->flags != t->flags || strcmp(u->cwd, t->cwd) ||
	    memcmp(&u->creds, &t->creds, offsetof(struct ckpt_creds, groups) + t->creds.n_groups * 4))
		abort();
	if ((t->have & CKPT_TASK_HAVE_PENDING_THREAD) && u->tid != t->tid)
		abort();
	same_queue(&u->thread, &t->thread);
	same_queue(&u->shared, &t->shared);
	ckpt_task_free(u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_task *t = NULL;
	int r = 0;

	while (size >= 3 && r == 0) {
		uint32_t type = data[0] & 0x08 ? 0x1018u + (data[0] & 7) : 0x1010u + (data[0] & 7);
		size_t len = (size_t)data[1] | (size_t)data[2] << 8;
		struct sm_cursor c;

		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		/* a copy of just the payload: ASan sees any read past it */
		{
			uint8_t *p = malloc(len ? len : 1);

			if (!p)
				break;
			memcpy(p, data, len);
			sockmig_error_clear();
			sm_cursor_init(&c, p, len, 0);
			r = ckpt_task_read_section(&t, type, &c);
			if (r < 0 && r != -ENOMEM && !sockmig_error()[0])
				abort(); /* refused without a sentence */
			if (type > 0x1017 && r != -EBADMSG)
				abort();
			free(p);
		}
		data += len;
		size -= len;
	}
	/* after a refusal the model is only freed, as the restore does */
	if (t && r == 0) {
		check_invariants(t);
		{
			check_roundtrip(t);
			if (ckpt_task_validate(t) == 0 && t->have != CKPT_TASK_HAVE_ALL)
				abort();
		}
	}
	ckpt_task_free(t);
	return 0;
}
