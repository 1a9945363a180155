/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A process that never stops changing its memory, for pre-copy tests
 * (ZDTM style: it checks itself).
 *
 *   ckpt_dirty [--mib N] [--rate PAGES_PER_S] [--ops-ms MS] [--selftest]
 *
 * It keeps up to 48 mappings ("slots") of private anonymous memory: a base
 * one of N MiB (default 8), a heap area grown with sbrk, and others it
 * creates, grows (mremap, in place or moved), moves (mremap to a fixed
 * address), shrinks (munmap of the tail), removes (munmap), splits and joins
 * again (mprotect), and partly gives back (MADV_DONTNEED: zeros). In between
 * it writes pages all the time (--rate pages a second, default 2000): each
 * write bumps the page's version, and the page's 512 words are a function of
 * (slot, page, version); version 0 means the page holds zeros. The versions
 * live in a ledger mapping of their own, with a running additive checksum
 * over every (slot, page, version) and counters.
 *
 * On SIGUSR1 it finishes the step it is in, checks every page of every slot
 * against the ledger and the ledger against its checksum, and prints one
 * line:
 *
 *   pass writes=W ops=O slots=S pages=P pid=PID
 *   fail slot=S page=P version=V word=K ... (the first difference)
 *
 * A page that went back to an older state, or a mapping that lost pages or
 * moved without its content, fails it (unless both a page and its ledger
 * entry, and the checksum, went back together: the tests also compare the
 * counters with what the original printed last). It prints "ready pid=P"
 * once set up, and "progress writes=W ops=O" every second. --selftest
 * changes one byte behind the ledger's back and exits 0 only if the check
 * catches it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ul
#define WORDS (PAGE / 8)
#define MAX_SLOTS 48
#define MAX_PAGES 2048 /* per slot but the base one */
#define BASE_SLOT 0
#define HEAP_SLOT 1
#define HEAP_MAX_PAGES 1024

struct slot {
	uint8_t *addr; /* NULL: unused */
	uint32_t npages;
	uint32_t id;   /* changes when the slot is reused: new content */
	uint32_t *ver; /* in the ledger */
};

/* The ledger: its own mapping, so that it is tracked like the data. */
struct ledger {
	uint64_t writes, ops, sum, rng;
	uint32_t next_id;
	struct slot slot[MAX_SLOTS];
	uint32_t *vers; /* MAX_SLOTS x MAX_PAGES, the base slot's after */
	uint32_t base_pages;
};

static struct ledger *L;
static volatile sig_atomic_t check_now;

static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0 && write(1, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) < 0)
		_exit(3);
}

static uint64_t rnd(void)
{
	uint64_t x = L->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	L->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint64_t mix(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ a;

	h = (h ^ b) * 0xff51afd7ed558ccdull;
	h = (h ^ c) * 0xc4ceb9fe1a85ec53ull;
	h = (h ^ d) * 0xff51afd7ed558ccdull;
	return h ^ (h >> 33);
}

/* the ledger's term for one page */
static uint64_t term(uint32_t id, uint32_t page, uint32_t ver)
{
	return ver ? mix(id, page, ver, 0xabcdef) : 0;
}

static void fill(uint64_t *p, uint32_t id, uint32_t page, uint32_t ver)
{
	for (size_t k = 0; k < WORDS; k++)
		p[k] = ver ? mix(id, page, ver, k) : 0;
}

static void set_version(struct slot *s, uint32_t page, uint32_t ver)
{
	L->sum -= term(s->id, page, s->ver[page]);
	/* the ledger first: a stop between the two leaves the page behind
	 * its entry, which the restored process then completes, as the
	 * original would have */
	s->ver[page] = ver;
	L->sum += term(s->id, page, ver);
	fill((uint64_t *)(s->addr + page * PAGE), s->id, page, ver);
}

static void write_page(struct slot *s, uint32_t page)
{
	set_version(s, page, s->ver[page] + 1);
	L->writes++;
}

/* Forget pages [from, npages) of s in the ledger (unmapped or zeroed). */
static void forget(struct slot *s, uint32_t from, uint32_t to)
{
	for (uint32_t p = from; p < to; p++) {
		L->sum -= term(s->id, p, s->ver[p]);
		s->ver[p] = 0;
	}
}

static struct slot *free_slot(void)
{
	for (int i = HEAP_SLOT + 1; i < MAX_SLOTS; i++)
		if (!L->slot[i].addr)
			return &L->slot[i];
	return NULL;
}

static struct slot *some_slot(bool movable)
{
	for (int tries = 0; tries < 8; tries++) {
		int i = (int)(rnd() % MAX_SLOTS);

		if (L->slot[i].addr && L->slot[i].npages && (!movable || i > HEAP_SLOT))
			return &L->slot[i];
	}
	return NULL;
}

static void op_new(void)
{
	struct slot *s = free_slot();
	uint32_t n = 1 + (uint32_t)(rnd() % (rnd() % 4 ? 64 : 512));
	void *m;

	if (!s)
		return;
	m = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return;
	s->addr = m;
	s->npages = n;
	s->id = ++L->next_id;
	for (uint32_t p = 0; p < n; p++)
		if (rnd() % 2)
			write_page(s, p);
}

static void op_remove(void)
{
	struct slot *s = some_slot(true);

	if (!s)
		return;
	forget(s, 0, s->npages);
	munmap(s->addr, s->npages * PAGE);
	s->addr = NULL;
	s->npages = 0;
}

static void op_shrink(void)
{
	struct slot *s = some_slot(true);
	uint32_t keep;

	if (!s || s->npages < 2)
		return;
	keep = 1 + (uint32_t)(rnd() % (s->npages - 1));
	forget(s, keep, s->npages);
	munmap(s->addr + keep * PAGE, (s->npages - keep) * PAGE);
	s->npages = keep;
}

static void op_grow(void)
{
	struct slot *s = some_slot(true);
	uint32_t n;
	void *m;

	if (!s)
		return;
	n = s->npages + 1 + (uint32_t)(rnd() % 64);
	if (n > MAX_PAGES)
		return;
	m = mremap(s->addr, s->npages * PAGE, n * PAGE, MREMAP_MAYMOVE);
	if (m == MAP_FAILED)
		return;
	s->addr = m;
	for (uint32_t p = s->npages; p < n; p++)
		s->ver[p] = 0;
	s->npages = n;
	write_page(s, n - 1);
}

static void op_move(void)
{
	struct slot *s = some_slot(true);
	void *to, *m;

	if (!s)
		return;
	/* a free place of the right size, then the mapping over it */
	to = mmap(NULL, s->npages * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (to == MAP_FAILED)
		return;
	m = mremap(s->addr, s->npages * PAGE, s->npages * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (m == MAP_FAILED) {
		munmap(to, s->npages * PAGE);
		return;
	}
	s->addr = m;
	write_page(s, (uint32_t)(rnd() % s->npages));
}

static void op_zero(void)
{
	struct slot *s = some_slot(false);
	uint32_t p, n;

	if (!s)
		return;
	p = (uint32_t)(rnd() % s->npages);
	n = 1 + (uint32_t)(rnd() % 8);
	if (p + n > s->npages)
		n = s->npages - p;
	forget(s, p, p + n);
	madvise(s->addr + p * PAGE, n * PAGE, MADV_DONTNEED);
}

static void op_split(void)
{
	struct slot *s = some_slot(false);
	uint32_t p;

	if (!s || s->npages < 3)
		return;
	p = 1 + (uint32_t)(rnd() % (s->npages - 2));
	/* two VMAs become three and then one again: the tracking must follow */
	mprotect(s->addr + p * PAGE, PAGE, PROT_READ);
	write_page(s, p - 1);
	mprotect(s->addr + p * PAGE, PAGE, PROT_READ | PROT_WRITE);
	write_page(s, p);
}

static void op_heap(void)
{
	struct slot *s = &L->slot[HEAP_SLOT];
	uint32_t n = 1 + (uint32_t)(rnd() % 16);

	if (s->npages + n > HEAP_MAX_PAGES)
		return;
	if (sbrk((intptr_t)(n * PAGE)) == (void *)-1)
		return;
	for (uint32_t p = s->npages; p < s->npages + n; p++)
		s->ver[p] = 0;
	s->npages += n;
	write_page(s, s->npages - 1);
}

static void step(void)
{
	switch (rnd() % 16) {
	case 0:
	case 1:
		op_new();
		break;
	case 2:
		op_remove();
		break;
	case 3:
		op_shrink();
		break;
	case 4:
	case 5:
		op_grow();
		break;
	case 6:
	case 7:
		op_move();
		break;
	case 8:
	case 9:
		op_zero();
		break;
	case 10:
	case 11:
		op_split();
		break;
	default:
		op_heap();
		break;
	}
	L->ops++;
}

static int check(void)
{
	uint64_t sum = 0, pages = 0;
	int slots = 0;

	for (int i = 0; i < MAX_SLOTS; i++) {
		const struct slot *s = &L->slot[i];

		if (!s->addr)
			continue;
		slots++;
		for (uint32_t p = 0; p < s->npages; p++) {
			const uint64_t *w = (const uint64_t *)(s->addr + p * PAGE);

			sum += term(s->id, p, s->ver[p]);
			pages++;
			for (size_t k = 0; k < WORDS; k++) {
				uint64_t want = s->ver[p] ? mix(s->id, p, s->ver[p], k) : 0;

				if (w[k] != want) {
					say("fail slot=%d page=%u version=%u word=%zu has=%016" PRIx64 " want=%016" PRIx64 "\n", i, p,
					    s->ver[p], k, w[k], want);
					return 1;
				}
			}
		}
	}
	if (sum != L->sum) {
		say("fail ledger checksum %016" PRIx64 ", recomputed %016" PRIx64 "\n", L->sum, sum);
		return 1;
	}
	say("pass writes=%" PRIu64 " ops=%" PRIu64 " slots=%d pages=%" PRIu64 " pid=%d\n", L->writes, L->ops, slots, pages,
	    (int)syscall(SYS_getpid));
	return 0;
}

static void on_usr1(int sig)
{
	(void)sig;
	check_now = 1;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "mib", required_argument, NULL, 'm' },   { "rate", required_argument, NULL, 'r' },
		{ "ops-ms", required_argument, NULL, 'o' }, { "selftest", no_argument, NULL, 's' },
		{}
	};
	unsigned long mib = 8, rate = 2000, ops_ms = 20;
	struct sigaction sa = { .sa_handler = on_usr1 };
	uint64_t last_report, last_op, budget_at;
	double carry = 0;
	bool selftest = false;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mib = strtoul(optarg, NULL, 10);
			break;
		case 'r':
			rate = strtoul(optarg, NULL, 10);
			break;
		case 'o':
			ops_ms = strtoul(optarg, NULL, 10);
			break;
		case 's':
			selftest = true;
			break;
		default:
			fprintf(stderr, "usage: ckpt_dirty [--mib N] [--rate PAGES_PER_S] [--ops-ms MS] [--selftest]\n");
			return 2;
		}
	}
	if (mib < 1 || mib > 4096 || ops_ms < 1) {
		fprintf(stderr, "ckpt_dirty: --mib takes 1..4096 and --ops-ms at least 1\n");
		return 2;
	}
	/* only fds 0..2: a checkpoint refuses what a shell may leak */
	syscall(SYS_close_range, 3, ~0u, 0);

	L = mmap(NULL, sizeof(*L), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (L == MAP_FAILED)
		return 1;
	L->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	L->base_pages = (uint32_t)(mib * 256);
	L->vers = mmap(NULL, (MAX_SLOTS * MAX_PAGES + L->base_pages) * sizeof(uint32_t), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (L->vers == MAP_FAILED)
		return 1;
	for (int i = 0; i < MAX_SLOTS; i++)
		L->slot[i].ver = L->vers + (size_t)i * MAX_PAGES;
	L->slot[BASE_SLOT].ver = L->vers + (size_t)MAX_SLOTS * MAX_PAGES;
	L->slot[BASE_SLOT].addr = mmap(NULL, L->base_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				       -1, 0);
	if (L->slot[BASE_SLOT].addr == MAP_FAILED)
		return 1;
	L->slot[BASE_SLOT].npages = L->base_pages;
	L->slot[BASE_SLOT].id = ++L->next_id;
	for (uint32_t p = 0; p < L->base_pages; p++)
		write_page(&L->slot[BASE_SLOT], p);
	L->slot[HEAP_SLOT].addr = sbrk(0);
	L->slot[HEAP_SLOT].id = ++L->next_id;
	/* page-align the break so that the heap slot holds whole pages */
	if (sbrk((intptr_t)((PAGE - (uintptr_t)L->slot[HEAP_SLOT].addr % PAGE) % PAGE)) == (void *)-1)
		return 1;
	L->slot[HEAP_SLOT].addr = sbrk(0);
	for (int i = 0; i < 8; i++)
		op_new();

	if (selftest) {
		struct slot *s = &L->slot[BASE_SLOT];

		for (int i = 0; i < 200; i++)
			step();
		if (check())
			return 1;
		/* a write the ledger does not know of: a page gone stale */
		s->addr[7 * PAGE + 100] ^= 1;
		return check() ? 0 : 1;
	}
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return 1;
	say("ready pid=%d base=%lu MiB\n", (int)syscall(SYS_getpid), mib);
	last_report = last_op = budget_at = now_us();
	for (;;) {
		struct timespec ts = { 0, 500000 };
		uint64_t t = now_us();
		uint64_t n;

		if (check_now) {
			check_now = 0;
			check();
		}
		/* writes at --rate, spread over every slot but mostly the base */
		carry += (double)(t - budget_at) * (double)rate / 1e6;
		budget_at = t;
		n = (uint64_t)carry;
		carry -= (double)n;
		for (uint64_t i = 0; i < n; i++) {
			struct slot *s = rnd() % 4 ? &L->slot[BASE_SLOT] : some_slot(false);

			if (s && s->npages)
				write_page(s, (uint32_t)(rnd() % s->npages));
		}
		if (t - last_op >= ops_ms * 1000) {
			last_op = t;
			step();
		}
		if (t - last_report >= 1000000) {
			last_report = t;
			say("progress writes=%" PRIu64 " ops=%" PRIu64 "\n", L->writes, L->ops);
		}
		nanosleep(&ts, NULL);
	}
}
