/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The fd sections' reader (ckpt_fds_read_section, ckpt_fds_validate), as
 * sockmig restore runs it on an image it did not write. The input is a list
 * of sections: u8 selector (low 3 bits: type 0x1008 + selector), u16 length
 * (little-endian), payload. Each is handed to the reader in order, straight
 * from the input (the container's hashes are not in the way); the first
 * refusal ends the run.
 *
 * What the reader promises is checked, not only that it does not crash: a
 * set that validates is written out by ckpt_fds_write(), read back through a
 * real image, validates again and writes out to the very same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt_fd.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ckpt_fds_write() into a memfd image; returns the memfd or -1. */
static int write_image(const struct ckpt_fds *f)
{
	struct sm_image_writer *w;
	int fd = memfd_create("fuzz-fd", MFD_CLOEXEC);

	if (fd < 0)
		return -1;
	if (sm_image_writer_new(fd, SM_IMAGE_KIND_PROCESS, &w) < 0) {
		close(fd);
		return -1;
	}
	if (ckpt_fds_write(f, w) < 0 || sm_image_writer_finish(w) < 0)
		abort(); /* what was read must write */
	sm_image_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	return fd;
}

static struct ckpt_fds *read_image(int fd)
{
	struct sm_image_reader *r;
	struct ckpt_fds *f = NULL;

	if (sm_image_reader_new_fd(fd, &r) < 0)
		abort();
	for (;;) {
		const uint8_t *p;
		struct sm_cursor c;
		uint64_t off;
		uint16_t type;
		size_t len;
		int n = sm_image_next_section(r, &type, &p, &len, &off);

		if (n < 0 || (n > 0 && !ckpt_fds_owns(type)))
			abort();
		if (n == 0)
			break;
		sm_cursor_init(&c, p, len, off);
		if (ckpt_fds_read_section(&f, type, &c) < 0)
			abort(); /* our own encoding refused */
	}
	sm_image_reader_free(r);
	return f;
}

static void same_bytes(int a, int b)
{
	struct stat sa, sb;
	uint8_t *pa, *pb;

	if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0 || sa.st_size != sb.st_size)
		abort();
	if (!sa.st_size)
		return;
	pa = mmap(NULL, (size_t)sa.st_size, PROT_READ, MAP_PRIVATE, a, 0);
	pb = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, b, 0);
	if (pa == MAP_FAILED || pb == MAP_FAILED || memcmp(pa, pb, (size_t)sa.st_size))
		abort();
	munmap(pa, (size_t)sa.st_size);
	munmap(pb, (size_t)sb.st_size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ckpt_fds *f = NULL, *g;
	int r = 0, fa, fb;

	while (size >= 3 && r == 0) {
		uint32_t type = CKPT_SEC_FD_TABLE + (data[0] & 7);
		size_t len = (size_t)data[1] | (size_t)data[2] << 8;
		struct sm_cursor c;

		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		sm_cursor_init(&c, data, len, 0);
		r = ckpt_fds_read_section(&f, type, &c);
		data += len;
		size -= len;
	}
	if (r < 0 || ckpt_fds_validate(f) < 0) {
		ckpt_fds_free(f);
		return 0;
	}
	fa = write_image(f);
	if (fa < 0) {
		ckpt_fds_free(f);
		return 0;
	}
	g = read_image(fa);
	if (ckpt_fds_validate(g) < 0 || ckpt_fds_max_target(g) != ckpt_fds_max_target(f))
		abort();
	fb = write_image(g);
	if (fb >= 0) {
		same_bytes(fa, fb);
		close(fb);
	}
	close(fa);
	ckpt_fds_free(g);
	ckpt_fds_free(f);
	return 0;
}
