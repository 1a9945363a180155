/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image container: a versioned stream of typed sections, written to an fd as
 * it is produced (no temporary files, no seeking) and read back with every
 * byte checked. The byte-for-byte format is docs/image-format.md.
 *
 * The container knows nothing of what is inside a section: the socket engine,
 * the process checkpoint and so on each own their section types and encode
 * their payloads with sm_buf, decode them with sm_cursor.
 *
 * Readers of untrusted bytes: a section is handed out only once its integrity
 * has been verified; every failure records (sm_fail) a sentence with the byte
 * offset in the image and the cause.
 */
#ifndef SOCKMIG_LIB_IMAGE_H
#define SOCKMIG_LIB_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Format version written by this sockmig; a reader takes any 1.x image. */
#define SM_IMAGE_VERSION_MAJOR 1
#define SM_IMAGE_VERSION_MINOR 0

/* Largest section payload, in both directions. A reader refuses a bigger
 * section (-E2BIG) from its header alone, before allocating anything; bulk
 * state such as process memory must be cut into sections below this. */
#define SM_IMAGE_MAX_SECTION (64u << 20)

/* Section flag: a reader that does not know the type may skip the section
 * (an optional addition of a newer minor version). Without it, an unknown
 * type refuses the image. */
#define SM_SECTION_MAY_SKIP 0x0001u

/* ---- growable output buffer (little-endian encoders) ---- */

struct sm_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	int err; /* sticky: first allocation failure, -ENOMEM */
};

void sm_buf_init(struct sm_buf *b);
void sm_buf_free(struct sm_buf *b);
void sm_buf_put_u8(struct sm_buf *b, uint8_t v);
void sm_buf_put_u16(struct sm_buf *b, uint16_t v);
void sm_buf_put_u32(struct sm_buf *b, uint32_t v);
void sm_buf_put_u64(struct sm_buf *b, uint64_t v);
void sm_buf_put_bytes(struct sm_buf *b, const void *p, size_t n);
/* u32 length followed by the bytes */
void sm_buf_put_blob(struct sm_buf *b, const void *p, size_t n);

/* ---- bounds-checked input cursor over one section's payload ---- */

struct sm_cursor {
	const uint8_t *p;
	size_t len;
	size_t off;
	uint64_t image_off; /* offset of p[0] in the image, for error sentences */
	int err;            /* sticky: -EBADMSG once anything was out of bounds */
	int recorded;       /* the sentence for err is already recorded (sm_cur_fail) */
};

void sm_cursor_init(struct sm_cursor *c, const void *p, size_t len, uint64_t image_off);
uint8_t sm_cur_u8(struct sm_cursor *c);
uint16_t sm_cur_u16(struct sm_cursor *c);
uint32_t sm_cur_u32(struct sm_cursor *c);
uint64_t sm_cur_u64(struct sm_cursor *c);
/* Pointer to the next n bytes, or NULL (and the sticky error) if fewer remain. */
const uint8_t *sm_cur_bytes(struct sm_cursor *c, size_t n);
/* u32 length + bytes; *ret_len gets the length. NULL on error. */
const uint8_t *sm_cur_blob(struct sm_cursor *c, size_t *ret_len);
size_t sm_cur_remaining(const struct sm_cursor *c);
/* 0 if no error so far and, when require_end, everything was consumed;
 * otherwise records "<what> at image byte <offset>: <cause>" and returns -EBADMSG. */
int sm_cur_check(struct sm_cursor *c, const char *what, int require_end);
/* For a decoded value that is in bounds but invalid: records "<what> at image
 * byte <offset of the cursor>: <cause>", makes the error sticky and returns
 * -EBADMSG. */
int sm_cur_fail(struct sm_cursor *c, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- writer ---- */

struct sm_image_writer;

/* kind names what the image holds (SM_IMAGE_KIND_*), checked by readers. */
enum {
	SM_IMAGE_KIND_SOCKETS = 1, /* sockmig sockets save */
	SM_IMAGE_KIND_PROCESS = 2, /* sockmig checkpoint */
};

int sm_image_writer_new(int fd, uint32_t kind, struct sm_image_writer **ret);
/* Write one whole section (one writev; nothing is buffered, so a reader on
 * the other end gets it at once). type 0 is reserved for the trailer. */
int sm_image_write_section(struct sm_image_writer *w, uint16_t type, const void *data, size_t len);
/* Same, with SM_SECTION_* flags. */
int sm_image_write_section_flags(struct sm_image_writer *w, uint16_t type, uint16_t flags,
				 const void *data, size_t len);
/* Write b as one section, or return b's sticky encoding error. */
int sm_image_write_buf(struct sm_image_writer *w, uint16_t type, const struct sm_buf *b);
/* Close the stream with its trailer; after this only _free is allowed. */
int sm_image_writer_finish(struct sm_image_writer *w);
void sm_image_writer_free(struct sm_image_writer *w);

/* ---- reader ---- */

struct sm_image_reader;

/* Read from an fd (a pipe, a socket or a file: sequentially, no seeking).
 * The fd stays the caller's. The reader never reads past the trailer, so an
 * image can be followed by other data on the same stream. */
int sm_image_reader_new_fd(int fd, struct sm_image_reader **ret);
/* Read from memory (fuzzing, tests); the buffer must outlive the reader.
 * Bytes after the trailer are an error here: the buffer is the whole image. */
int sm_image_reader_new_mem(const void *p, size_t len, struct sm_image_reader **ret);
/* Kind from the header (valid after _new succeeded). */
uint32_t sm_image_reader_kind(const struct sm_image_reader *r);
/* Next verified section: returns 1 and fills the outputs (payload valid until
 * the next call; *ret_offset is the payload's offset in the image, ready for
 * sm_cursor_init), 0 at the verified end of the image, or -errno: -EBADMSG for
 * corrupt or truncated content, -E2BIG for a section over the limit,
 * -EPROTONOSUPPORT for a newer format, a read error as is. Errors are sticky.
 * It returns as soon as the section is in: it never waits for the next one. */
int sm_image_next_section(struct sm_image_reader *r, uint16_t *ret_type, const uint8_t **ret_data,
			  size_t *ret_len, uint64_t *ret_offset);
/* For the default branch of a consumer's switch on the section type: 0 if the
 * section last returned carries SM_SECTION_MAY_SKIP (skip it), otherwise
 * -EPROTONOSUPPORT with a sentence naming the section and its type. */
int sm_image_unknown_section(struct sm_image_reader *r);
void sm_image_reader_free(struct sm_image_reader *r);

#endif
