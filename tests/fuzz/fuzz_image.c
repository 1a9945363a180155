/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer harness for the image reader and the section cursors.
 *
 * Beyond "no crash", it checks what must hold for any input:
 *  - a refused image has a sentence naming an image byte;
 *  - a handed-out payload is exactly the input's bytes at the reported offset;
 *  - the fd reader agrees with the memory reader section for section;
 *  - whatever was accepted, written again by the writer, reads back the same.
 * Each section is also decoded as a little program of cursor reads, so the
 * cursor's bounds are exercised with lengths the fuzzer controls.
 *
 * A mutation almost never keeps a BLAKE2b checksum right, so on its own the
 * fuzzer would stay at the first check. Every input is therefore also run
 * with its checksums repaired (walking it as an image, as docs/image-format.md
 * lays it out), which lets it reach the sequence, length, trailer and cursor
 * logic behind them.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "image.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_SECTIONS 256

struct section {
	uint16_t type;
	int skippable;
	uint64_t off;
	size_t len;
};

static void check(int ok)
{
	if (!ok)
		__builtin_trap();
}

static void check_sentence(int err)
{
	if (err == -EBADMSG || err == -E2BIG || err == -EPROTONOSUPPORT)
		check(strstr(sockmig_error(), "image byte ") != NULL);
}

static void decode(const uint8_t *p, size_t len, uint64_t off)
{
	struct sm_cursor c;
	size_t n;
	int ops = 0;

	sm_cursor_init(&c, p, len, off);
	while (sm_cur_remaining(&c) && ops++ < 64) {
		uint8_t op = sm_cur_u8(&c);

		switch (op % 7) {
		case 0: sm_cur_u8(&c); break;
		case 1: sm_cur_u16(&c); break;
		case 2: sm_cur_u32(&c); break;
		case 3: sm_cur_u64(&c); break;
		case 4: sm_cur_bytes(&c, op >> 3); break;
		case 5:
			if (sm_cur_blob(&c, &n))
				check(n <= len);
			break;
		case 6:
			if (op & 0x80)
				sm_cur_fail(&c, "fuzz field", "value %u refused", op);
			break;
		}
		check(c.off <= c.len);
	}
	if (sm_cur_check(&c, "fuzz section", ops & 1) < 0)
		check(strstr(sockmig_error(), "fuzz ") == sockmig_error());
}

/* Reads every section; returns the final status and fills secs (offsets
 * and lengths only: the payloads are the input's bytes, checked here). */
static int read_all(struct sm_image_reader *r, const uint8_t *in, size_t size, struct section *secs, int *ret_n)
{
	const uint8_t *p;
	uint16_t type;
	size_t len;
	uint64_t off;
	int ret, n = 0;

	while ((ret = sm_image_next_section(r, &type, &p, &len, &off)) > 0) {
		check(off <= size && len <= size - off);
		check(memcmp(p, in + off, len) == 0);
		if (n < MAX_SECTIONS)
			secs[n] = (struct section){ type, sm_image_unknown_section(r) == 0, off, len };
		n++;
		decode(p, len, off);
	}
	check_sentence(ret);
	/* errors and the end are sticky */
	check(sm_image_next_section(r, &type, &p, &len, &off) == ret);
	*ret_n = n;
	return ret;
}

static int mem_fd(const void *p, size_t len)
{
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	if (fd < 0)
		abort();
	if (len && sm_write_full(fd, p, len) < 0)
		abort();
	if (lseek(fd, 0, SEEK_SET) != 0)
		abort();
	return fd;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void repair(uint8_t *p, size_t size)
{
	uint8_t chain[16], sum[16];
	crypto_generichash_state st;
	size_t pos = 40;

	if (size < 40)
		return;
	crypto_generichash(p + 24, 16, p, 24, NULL, 0);
	memcpy(chain, p + 24, 16);
	while (size - pos >= 16) {
		uint32_t len = le32(p + pos + 8);

		crypto_generichash(sum, 16, p + pos, 12, NULL, 0);
		memcpy(p + pos + 12, sum, 4);
		if (len > size - pos - 16 || size - pos - 16 - len < 16)
			break;
		crypto_generichash_init(&st, NULL, 0, 16);
		crypto_generichash_update(&st, chain, 16);
		crypto_generichash_update(&st, p + pos, 16 + (size_t)len);
		crypto_generichash_final(&st, p + pos + 16 + len, 16);
		memcpy(chain, p + pos + 16 + len, 16);
		pos += 32 + (size_t)len;
	}
}

static void one_input(const uint8_t *data, size_t size)
{
	static struct section secs[MAX_SECTIONS], secs_fd[MAX_SECTIONS];
	struct sm_image_reader *r;
	struct sm_image_writer *w;
	int ret, ret_fd, n = 0, n_fd = 0, fd, trailing;
	uint32_t kind;

	ret = sm_image_reader_new_mem(data, size, &r);
	if (ret < 0) {
		check_sentence(ret);
		return;
	}
	kind = sm_image_reader_kind(r);
	ret = read_all(r, data, size, secs, &n);
	trailing = ret < 0 && strstr(sockmig_error(), "after the trailer") != NULL;
	sm_image_reader_free(r);

	/* The fd reader reads in other steps and ignores what follows the
	 * trailer; otherwise it must agree. */
	fd = mem_fd(data, size);
	check(sm_image_reader_new_fd(fd, &r) == 0);
	ret_fd = read_all(r, data, size, secs_fd, &n_fd);
	sm_image_reader_free(r);
	close(fd);
	check(n_fd == n);
	for (int i = 0; i < n && i < MAX_SECTIONS; i++)
		check(secs[i].type == secs_fd[i].type && secs[i].skippable == secs_fd[i].skippable &&
		      secs[i].off == secs_fd[i].off && secs[i].len == secs_fd[i].len);
	if (ret_fd != ret)
		check(ret_fd == 0 && trailing);

	if (ret < 0 || n > MAX_SECTIONS)
		return;

	/* Accepted: write it again and read it back. */
	fd = mem_fd(NULL, 0);
	check(sm_image_writer_new(fd, kind, &w) == 0);
	for (int i = 0; i < n; i++)
		check(sm_image_write_section_flags(w, secs[i].type, secs[i].skippable ? SM_SECTION_MAY_SKIP : 0,
						   data + secs[i].off, secs[i].len) == 0);
	check(sm_image_writer_finish(w) == 0);
	sm_image_writer_free(w);
	check(lseek(fd, 0, SEEK_SET) == 0);
	check(sm_image_reader_new_fd(fd, &r) == 0);
	check(sm_image_reader_kind(r) == kind);
	for (int i = 0; i < n; i++) {
		const uint8_t *p;
		uint16_t type;
		size_t len;
		uint64_t off;

		check(sm_image_next_section(r, &type, &p, &len, &off) == 1);
		check(type == secs[i].type && len == secs[i].len);
		check(memcmp(p, data + secs[i].off, len) == 0);
		check((sm_image_unknown_section(r) == 0) == secs[i].skippable);
	}
	check(sm_image_next_section(r, &(uint16_t){ 0 }, &(const uint8_t *){ NULL }, &(size_t){ 0 },
				    &(uint64_t){ 0 }) == 0);
	sm_image_reader_free(r);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *fixed;

	if (sodium_init() < 0)
		abort();
	one_input(data, size);
	fixed = malloc(size ? size : 1);
	if (!fixed)
		abort();
	memcpy(fixed, data, size);
	repair(fixed, size);
	one_input(fixed, size);
	free(fixed);
	return 0;
}
