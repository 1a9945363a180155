/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A process to checkpoint and restore (ZDTM style): it builds state in every
 * kind of memory the first checkpoint slice handles, then counts forever.
 *
 *   - anonymous memory: 8 MiB mapped, one page in four written (sparse);
 *   - heap: small mallocs on the brk heap, one large malloc (mmap'ed);
 *   - stack: a 64 KiB array in main's frame;
 *   - a private file mapping of its own executable, one page written (COW);
 *   - AVX: each round spins in assembly on ymm registers only, so a stop
 *     lands there most of the time; if the ymm state were lost or corrupted
 *     across a checkpoint the round's result is wrong and it says so.
 *
 * Every PRINT_EVERY rounds it writes one line to fd 1 (write(2): nothing
 * buffered in memory that could be lost or doubled):
 *
 *   count=<rounds done> sum=<checksum of all that memory> avx=ok pid=<getpid()>
 *
 * The counter lives in the anonymous mapping (excluded from the checksum), so
 * a restored copy goes on from where the original stopped; the checksum is the
 * same before and after only if every byte came back. Exits 1 on "avx=BAD".
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ANON_LEN (8u << 20)
#define PRINT_EVERY 100
#define SPIN 200000

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ull;
	return h;
}

/* ymm0 = seed in every lane; SPIN times ymm0 += ymm1 (ones); returns lane 3.
 * Nothing but registers between the loads and the store. */
static uint64_t avx_spin(uint64_t seed)
{
	uint64_t out[4] __attribute__((aligned(32)));
	uint64_t one[4] __attribute__((aligned(32))) = { 1, 1, 1, 1 };
	uint64_t s[4] __attribute__((aligned(32))) = { seed, seed, seed, seed };
	uint64_t n = SPIN;

	__asm__ volatile("vmovdqa %[s], %%ymm0\n"
			 "vmovdqa %[one], %%ymm1\n"
			 "1: vpaddq %%ymm1, %%ymm0, %%ymm0\n"
			 "dec %[n]\n"
			 "jnz 1b\n"
			 "vmovdqa %%ymm0, %[out]\n"
			 : [out] "=m"(out), [n] "+r"(n)
			 : [s] "m"(s), [one] "m"(one)
			 : "xmm0", "xmm1", "cc");
	return (out[0] == out[3] && out[1] == out[2] && out[0] == out[1]) ? out[3] : 0;
}

int main(void)
{
	uint8_t stack_buf[65536];
	uint8_t *anon, *big, *small[16], *file;
	volatile uint64_t *counter;
	long page = sysconf(_SC_PAGESIZE);
	int fd;

	/* whatever the harness leaked to us is outside this test's state */
	syscall(SYS_close_range, 3, ~0u, 0);
	anon = mmap(NULL, ANON_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		return 2;
	for (size_t off = 0; off < ANON_LEN; off += 4 * (size_t)page)
		for (long i = 0; i < page; i++)
			anon[off + (size_t)i] = (uint8_t)(off / (size_t)page * 31 + (size_t)i * 7);
	counter = (volatile uint64_t *)(anon + ANON_LEN - 8); /* on an unwritten page: sums skip it */

	for (int i = 0; i < 16; i++) {
		small[i] = malloc(4096);
		if (!small[i])
			return 2;
		memset(small[i], 0x40 + i, 4096);
	}
	big = malloc(1 << 20);
	if (!big)
		return 2;
	for (size_t i = 0; i < (1 << 20); i++)
		big[i] = (uint8_t)(i * 13 + 5);
	for (size_t i = 0; i < sizeof(stack_buf); i++)
		stack_buf[i] = (uint8_t)(i ^ 0xa5);

	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 2;
	file = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (file == MAP_FAILED)
		return 2;
	memset(file + page, 0x5a, (size_t)page); /* the COW page; the first stays the file's */

	for (;;) {
		uint64_t c = *counter;
		char line[160];
		int n;

		if (avx_spin(c) != c + SPIN) {
			n = snprintf(line, sizeof(line), "count=%" PRIu64 " avx=BAD pid=%d\n", c, (int)getpid());
			if (write(1, line, (size_t)n) < 0)
				return 3;
			return 1;
		}
		*counter = c + 1;
		if ((c + 1) % PRINT_EVERY == 0) {
			uint64_t h = 0xcbf29ce484222325ull;

			h = fnv(h, anon, ANON_LEN - (size_t)page);
			for (int i = 0; i < 16; i++)
				h = fnv(h, small[i], 4096);
			h = fnv(h, big, 1 << 20);
			h = fnv(h, stack_buf, sizeof(stack_buf));
			h = fnv(h, file, 2 * (size_t)page);
			n = snprintf(line, sizeof(line), "count=%" PRIu64 " sum=%016" PRIx64 " avx=ok pid=%d\n", c + 1,
				     h, (int)getpid());
			if (write(1, line, (size_t)n) < 0)
				return 3;
		}
	}
}
