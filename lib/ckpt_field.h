/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A section payload described once, used both ways. A codec writes one
 * function per section that lists its fields in the order of the docs'
 * table (field_u32(io, &o->id); field_u64(io, &o->size); ...); with io->out
 * set the function writes them, with io->in set it reads them into the same
 * places. So the writer and the reader of a section cannot drift apart, and
 * the list reads like the byte layout in docs/.
 *
 * Reading: the bytes are untrusted. A cursor that runs past the end reads
 * zeros and stays in error (image.h), which the caller's sm_cur_check()
 * reports once the list is done, as before. A refusal in the middle (a bad
 * count before an allocation) goes into io->r with its sentence, and every
 * field after it is skipped, so the cursor stays where the refusal was.
 * Checks that need the whole payload come after the list, in the codec.
 *
 * Used by ckpt_fd.c and ckpt_task.c. (Its natural home is image.h, next to
 * sm_buf and sm_cursor.)
 */
#ifndef SOCKMIG_LIB_CKPT_FIELD_H
#define SOCKMIG_LIB_CKPT_FIELD_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

struct field_io {
	struct sm_buf *out;   /* writing: fields are appended here */
	struct sm_cursor *in; /* reading: fields come from here */
	const char *what;     /* reading: the section, for sentences */
	int r;                /* reading: the first refusal or -ENOMEM */
};

static inline bool field_reading(const struct field_io *io)
{
	return io->in != NULL;
}

static inline void field_u32(struct field_io *io, uint32_t *v)
{
	if (io->r < 0)
		return;
	if (io->out)
		sm_buf_put_u32(io->out, *v);
	else
		*v = sm_cur_u32(io->in);
}

static inline void field_u64(struct field_io *io, uint64_t *v)
{
	if (io->r < 0)
		return;
	if (io->out)
		sm_buf_put_u64(io->out, *v);
	else
		*v = sm_cur_u64(io->in);
}

static inline void field_i32(struct field_io *io, int32_t *v)
{
	uint32_t u = (uint32_t)*v;

	field_u32(io, &u);
	if (io->in)
		*v = (int32_t)u;
}

static inline void field_i64(struct field_io *io, int64_t *v)
{
	uint64_t u = (uint64_t)*v;

	field_u64(io, &u);
	if (io->in)
		*v = (int64_t)u;
}

/* A u32 in the image that the model keeps in a u64. */
static inline void field_u32_in_u64(struct field_io *io, uint64_t *v)
{
	uint32_t u = (uint32_t)*v;

	field_u32(io, &u);
	if (io->in)
		*v = u;
}

#endif
