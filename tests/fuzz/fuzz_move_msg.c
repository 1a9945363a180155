/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The messages of a socket move, as D and S decode them from the other node.
 * Random bytes almost never carry valid BLAKE2b links, so the input is read
 * as a list of sections (u8 type selector, u16 length, payload) that are
 * written through the real writer: every decoder behind the container is
 * reached with arbitrary payloads, in arbitrary orders and numbers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image.h"
#include "move.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint16_t types[] = {
	0x0401, 0x0402, 0x0403, 0x0101, 0x0102, 0x0201, 0x0301, 0x0999,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sm_image_writer *w;
	struct sm_image_reader *r;
	struct sm_move_msg m;
	uint32_t kind;
	int fd;

	if (size < 1)
		return 0;
	kind = data[0] & 1 ? SM_IMAGE_KIND_SOCKETS : SM_IMAGE_KIND_CONTROL;
	data++;
	size--;
	fd = memfd_create("fuzz", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (sm_image_writer_new(fd, kind, &w) < 0) {
		close(fd);
		return 0;
	}
	while (size >= 3) {
		uint16_t type = types[(data[0] & 0x7f) % (sizeof(types) / sizeof(types[0]))];
		size_t len = (size_t)data[1] | (size_t)data[2] << 8;

		data += 3;
		size -= 3;
		if (len > size)
			len = size;
		if (sm_image_write_section_flags(w, type, data[-3] & 0x80 ? SM_SECTION_MAY_SKIP : 0, data, len) < 0)
			break;
		data += len;
		size -= len;
	}
	sm_image_writer_finish(w);
	sm_image_writer_free(w);
	lseek(fd, 0, SEEK_SET);
	if (sm_image_reader_new_fd(fd, &r) == 0) {
		if (sm_move_msg_read(r, &m) == 0)
			sm_move_msg_clear(&m);
		sm_image_reader_free(r);
	}
	close(fd);
	return 0;
}
