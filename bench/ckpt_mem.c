/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ckpt_mem: the process bench/ckpt.sh checkpoints and restores. Not a bench
 * by itself (it prints no table): a target with a chosen amount of memory
 * and a chosen number of mappings, which can tell whether its memory came
 * back intact and how long it was frozen.
 *
 *   ckpt_mem [--mem MIB] [--maps N] [--interval-us U] [--dirty-pages D]
 *
 * --mem MIB: one anonymous mapping of MIB MiB, every 8-byte word written
 * with a non-zero pseudo-random value (zero pages are left out of an image,
 * so they would make the copy look cheaper than it is). --maps N: N more
 * one-page mappings, each written, alternately left read-write and made
 * read-only so that neighbours never merge into one VMA. Only fds 0-2 stay
 * open (what the checkpoint supports today); one thread.
 *
 * Then it prints, with write(2), one line
 *
 *   ready pid=P sum=S vmas=V rss_kb=R
 *
 * (S: a hash of all that memory; V: lines of /proc/self/maps; R: VmRSS) and
 * sleeps U us (1000) at a time, forever, noting the longest time between two
 * wake-ups. SIGUSR1 prints that gap and starts over:
 *
 *   gap n=K max_us=G
 *
 * A checkpoint that leaves the process running (--leave-running) stops it
 * between two wake-ups, so G - U is how long it was frozen, as the process
 * saw it. A restored copy is a new process that wakes up in the same loop:
 * it notices that its pid or its pid namespace changed (a restore that keeps
 * the pid does so in a pid namespace of its own), hashes its memory again,
 * prints
 *
 *   restored pid=P pidns=same|changed sum=S
 *
 * and exits 0. Nothing that a restore might carry over (a signal handler, a
 * file) is used to tell it that it was restored.
 *
 * --dirty-pages D (for pre-copy): after each wake-up it changes one word in
 * each of D pseudo-randomly chosen pages of the --mem mapping, so that it
 * keeps dirtying about D pages every U us. Its memory then has no fixed
 * hash: it keeps an additive checksum of every word up to date instead
 * (sum over i of mix(i, word i)), and a restored copy prints
 *
 *   restored pid=P pidns=same|changed sum=S want=W
 *
 * with S computed again over its memory and W the running checksum it
 * carried: equal when every page came back as it was at the freeze.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u

static volatile sig_atomic_t report_gap;

static void on_usr1(int sig)
{
	(void)sig;
	report_gap = 1;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The line goes out with one write(2): no stdio buffer whose state a
 * checkpoint could catch half flushed. */
static void __attribute__((format(printf, 1, 2))) say(const char *fmt, ...)
{
	char line[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0 && write(1, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) < 0)
		exit(3);
}

/* xorshift64*: never 0 from a non-zero state */
static uint64_t next_word(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void fill(uint64_t *p, size_t words, uint64_t *state)
{
	for (size_t i = 0; i < words; i++) {
		uint64_t w = next_word(state);

		p[i] = w ? w : 1;
	}
}

/* A word at a time: 1 GiB in a fraction of a second, and any changed,
 * moved or missing word changes the result. */
static uint64_t hash(uint64_t h, const uint64_t *p, size_t words)
{
	for (size_t i = 0; i < words; i++)
		h = (h ^ p[i] ^ (h >> 29)) * 0x100000001b3ull;
	return h;
}

static uint64_t mix(uint64_t i, uint64_t w)
{
	uint64_t h = (i ^ 0x9e3779b97f4a7c15ull) * 0xff51afd7ed558ccdull;

	h = (h ^ w ^ (h >> 31)) * 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 29);
}

static uint64_t add_sum(const uint64_t *p, size_t words)
{
	uint64_t s = 0;

	for (size_t i = 0; i < words; i++)
		s += mix(i, p[i]);
	return s;
}

/* The inode of our pid namespace, 0 if it cannot be read. */
static ino_t pidns_ino(void)
{
	struct stat st;

	return stat("/proc/self/ns/pid", &st) == 0 ? st.st_ino : 0;
}

static long count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || !*s || *end || s[0] == '-' || v > max)
		return false;
	*ret = v;
	return true;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: ckpt_mem [--mem MIB] [--maps N] [--interval-us U] [--dirty-pages D]\n");
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "mem", required_argument, NULL, 'm' },
		{ "maps", required_argument, NULL, 'n' },
		{ "interval-us", required_argument, NULL, 'i' },
		{ "dirty-pages", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	unsigned long mib = 0, nmaps = 0, interval = 1000, dirty = 0;
	uint64_t running = 0, rng = 0x2545f4914f6cdd1dull;
	uint64_t *mem = NULL, state = 0x9e3779b97f4a7c15ull, sum, last, max_gap = 0;
	uint8_t *maps = NULL;
	unsigned long gaps = 0;
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct timespec ts;
	ino_t ns;
	pid_t pid;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (!parse_ulong(optarg, 1ul << 20, &mib)) {
				fprintf(stderr, "ckpt_mem: --mem takes MiB, not %s\n", optarg);
				return 2;
			}
			break;
		case 'n':
			if (!parse_ulong(optarg, 1ul << 20, &nmaps)) {
				fprintf(stderr, "ckpt_mem: --maps takes a count, not %s\n", optarg);
				return 2;
			}
			break;
		case 'i':
			if (!parse_ulong(optarg, 10000000, &interval) || !interval) {
				fprintf(stderr, "ckpt_mem: --interval-us takes 1..10000000, not %s\n", optarg);
				return 2;
			}
			break;
		case 'd':
			if (!parse_ulong(optarg, 1ul << 20, &dirty)) {
				fprintf(stderr, "ckpt_mem: --dirty-pages takes a count, not %s\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	/* what the shell leaked to us is not ours, and the checkpoint would refuse it */
	syscall(SYS_close_range, 3, ~0u, 0);

	if (mib) {
		mem = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED) {
			fprintf(stderr, "ckpt_mem: cannot map %lu MiB: %s\n", mib, strerror(errno));
			return 1;
		}
		fill(mem, (mib << 20) / 8, &state);
	}
	if (nmaps) {
		maps = mmap(NULL, nmaps * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (maps == MAP_FAILED) {
			fprintf(stderr, "ckpt_mem: cannot map %lu pages: %s\n", nmaps, strerror(errno));
			return 1;
		}
		fill((uint64_t *)maps, nmaps * PAGE / 8, &state);
		for (unsigned long i = 1; i < nmaps; i += 2)
			if (mprotect(maps + i * PAGE, PAGE, PROT_READ) < 0) {
				fprintf(stderr, "ckpt_mem: mprotect: %s (vm.max_map_count?)\n", strerror(errno));
				return 1;
			}
	}
	sum = hash(0xcbf29ce484222325ull, mem, (mib << 20) / 8);
	sum = hash(sum, (const uint64_t *)maps, nmaps * PAGE / 8);
	if (dirty && !mib) {
		fprintf(stderr, "ckpt_mem: --dirty-pages needs --mem\n");
		return 2;
	}
	if (dirty)
		running = add_sum(mem, (mib << 20) / 8);

	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		return 1;
	/* glibc no longer caches the pid, but the raw call leaves no doubt */
	pid = (pid_t)syscall(SYS_getpid);
	ns = pidns_ino();
	say("ready pid=%d sum=%016" PRIx64 " vmas=%ld rss_kb=%ld\n", (int)pid, sum, count_maps(), rss_kb());

	ts.tv_sec = (time_t)(interval / 1000000);
	ts.tv_nsec = (long)(interval % 1000000) * 1000;
	last = now_us();
	for (;;) {
		uint64_t t;

		nanosleep(&ts, NULL); /* EINTR (SIGUSR1) only makes a shorter gap */
		/* one look per wake-up: a freeze between two looks would make
		 * the restored copy take the wrong branch */
		if ((pid_t)syscall(SYS_getpid) != pid || pidns_ino() != ns) {
			uint64_t s;

			if (dirty) {
				say("restored pid=%d pidns=%s sum=%016" PRIx64 " want=%016" PRIx64 "\n",
				    (int)syscall(SYS_getpid), pidns_ino() != ns ? "changed" : "same",
				    add_sum(mem, (mib << 20) / 8), running);
				return 0;
			}
			s = hash(0xcbf29ce484222325ull, mem, (mib << 20) / 8);
			s = hash(s, (const uint64_t *)maps, nmaps * PAGE / 8);
			say("restored pid=%d pidns=%s sum=%016" PRIx64 "\n", (int)syscall(SYS_getpid),
			    pidns_ino() != ns ? "changed" : "same", s);
			return 0;
		}
		for (unsigned long k = 0; k < dirty; k++) {
			size_t i;
			uint64_t w;

			/* the new value first, then the checksum: a stop between
			 * the two is completed by whichever copy runs on */
			i = (size_t)(next_word(&rng) % ((mib << 20) / 8));
			w = next_word(&rng);
			running -= mix(i, mem[i]);
			mem[i] = w ? w : 1;
			running += mix(i, mem[i]);
		}
		t = now_us();
		if (t - last > max_gap)
			max_gap = t - last;
		last = t;
		if (report_gap) {
			report_gap = 0;
			say("gap n=%lu max_us=%" PRIu64 "\n", ++gaps, max_gap);
			max_gap = 0;
			last = now_us();
		}
	}
}
