/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The checkpoint library from the shell, for tests and benches:
 *
 *   ckpt_tool check PID
 *   ckpt_tool dump PID IMAGE [kill|resume]     default: kill the original
 *   ckpt_tool dump-precopy PID IMAGE ROUNDS [kill|resume] [PAUSE_MS] [mark]
 *       pre-copy: ROUNDS rounds while the process runs (PAUSE_MS between
 *       them and before the freeze, default 0), then the dump of the
 *       stopped process with the pre-copy; IMAGE holds the rounds' pages
 *       images and then the process image, one after the other. Prints a
 *       line per round ("round N pages=P bytes=B dropped=D ranges=R
 *       fresh=F tracked_mib=T ms=M"), then "final pages=P dropped=D
 *       dump_ms=M frozen_ms=F" (frozen: stop to kill or resume). "mark"
 *       sends the process SIGUSR1 PAUSE_MS before the freeze (a bench's
 *       target reports its longest pause so far then)
 *   ckpt_tool precopy-rollback PID ROUNDS [wait]
 *       pre-copy started, ROUNDS rounds to /dev/null, then given up: the
 *       process must go on exactly as before. With "wait" it prints
 *       "tracking" after the rounds and gives up only once a line (or EOF)
 *       comes on stdin, so that a test can look at the process meanwhile
 *   ckpt_tool restore IMAGE [STDOUT-FILE]      prints "restored pid N";
 *       pages images before the process image go through a pre-copy
 *       store first. Timings on stderr: "store rounds=N mib=M ms=T",
 *       "prepare_ms=.. run_ms=.. release_ms=.."
 *   ckpt_tool time-check PID N                 median microseconds of
 *       sockmig_ckpt_check over N calls (what a dump no longer repeats)
 *
 * Errors: the library's sentence on stderr, exit 1.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sockmig/ckpt.h"
#include "sockmig/proc.h"
#include "sockmig/sockmig.h"

static int fail(const char *what)
{
	fprintf(stderr, "ckpt_tool: %s: %s\n", what, sockmig_error());
	return 1;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	if (ms > 0)
		nanosleep(&ts, NULL);
}

static int open_checked(pid_t pid, struct sockmig_proc **p)
{
	if (sockmig_proc_open(pid, p) < 0)
		return fail("open");
	if (sockmig_ckpt_check(*p, NULL) < 0) {
		fail("check");
		sockmig_proc_free(*p);
		return 1;
	}
	return 0;
}

static int cmd_dump(int argc, char *argv[])
{
	struct sockmig_proc *p = NULL;
	pid_t pid = (pid_t)atoi(argv[2]);
	int fd, r;

	if (open_checked(pid, &p))
		return 1;
	if (!strcmp(argv[1], "check")) {
		sockmig_proc_free(p);
		return 0;
	}
	if (argc < 4)
		return 2;
	fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(argv[3]);
		return 1;
	}
	if (sockmig_proc_stop(p) < 0)
		return fail("stop");
	r = sockmig_ckpt_dump(p, fd, NULL);
	close(fd);
	if (r < 0) {
		fail("dump");
		sockmig_proc_free(p); /* resumes it: a failed dump costs nothing */
		return 1;
	}
	if (argc < 5 || strcmp(argv[4], "resume"))
		kill(pid, SIGKILL); /* still stopped: it never runs again */
	sockmig_proc_free(p);
	return 0;
}

static void print_round(const struct sockmig_precopy_stats *st)
{
	printf("round %u pages=%llu bytes=%llu dropped=%llu ranges=%u fresh=%u tracked_mib=%.1f ms=%.2f\n", st->round,
	       (unsigned long long)st->pages, (unsigned long long)st->bytes, (unsigned long long)st->dropped,
	       st->ranges, st->fresh, (double)st->tracked / 1048576.0, (double)st->ns / 1e6);
	fflush(stdout);
}

static int cmd_dump_precopy(int argc, char *argv[])
{
	struct sockmig_proc *p = NULL;
	struct sockmig_precopy *pc = NULL;
	struct sockmig_precopy_stats st;
	struct sockmig_ckpt_opts o = { .precopy_stats = &st };
	pid_t pid = (pid_t)atoi(argv[2]);
	int rounds = atoi(argv[4]), fd, r;
	bool resume = argc >= 6 && !strcmp(argv[5], "resume");
	long pause = argc >= 7 ? atol(argv[6]) : 0;
	bool mark = argc >= 8 && !strcmp(argv[7], "mark");
	uint64_t t_stop, t_end;

	if (rounds < 1)
		return 2;
	if (open_checked(pid, &p))
		return 1;
	fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(argv[3]);
		return 1;
	}
	if (sockmig_precopy_start(p, &pc) < 0)
		return fail("precopy start");
	for (int i = 0; i < rounds; i++) {
		if (i)
			sleep_ms(pause);
		if (sockmig_precopy_round(pc, fd, &st) < 0) {
			fail("precopy round");
			sockmig_precopy_free(pc);
			return 1;
		}
		print_round(&st);
	}
	if (mark)
		kill(pid, SIGUSR1);
	sleep_ms(pause);
	t_stop = now_ns();
	if (sockmig_proc_stop(p) < 0) {
		fail("stop");
		sockmig_precopy_free(pc);
		return 1;
	}
	o.precopy = pc;
	r = sockmig_ckpt_dump(p, fd, &o);
	if (r < 0) {
		fail("dump");
		sockmig_proc_free(p);     /* resumes it */
		sockmig_precopy_free(pc); /* rollback: tracking off */
		return 1;
	}
	if (resume) {
		/* then the tracking off (its walk over the memory) while it runs */
		sockmig_proc_resume(p);
	} else {
		kill(pid, SIGKILL);
	}
	t_end = now_ns();
	sockmig_precopy_free(pc);
	sockmig_proc_free(p);
	close(fd);
	printf("final pages=%llu dropped=%llu ranges=%u dump_ms=%.2f frozen_ms=%.2f\n", (unsigned long long)st.pages,
	       (unsigned long long)st.dropped, st.ranges, (double)st.ns / 1e6, (double)(t_end - t_stop) / 1e6);
	return 0;
}

static int cmd_rollback(int argc, char *argv[])
{
	struct sockmig_proc *p = NULL;
	struct sockmig_precopy *pc = NULL;
	struct sockmig_precopy_stats st;
	pid_t pid = (pid_t)atoi(argv[2]);
	int rounds = atoi(argv[3]), fd;

	if (open_checked(pid, &p))
		return 1;
	fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || sockmig_precopy_start(p, &pc) < 0)
		return fail("precopy start");
	for (int i = 0; i < rounds; i++) {
		if (sockmig_precopy_round(pc, fd, &st) < 0) {
			fail("precopy round");
			break;
		}
		print_round(&st);
	}
	if (argc >= 5 && !strcmp(argv[4], "wait")) {
		char line[16];

		printf("tracking\n");
		fflush(stdout);
		if (!fgets(line, sizeof(line), stdin))
			line[0] = 0;
	}
	sockmig_precopy_free(pc);
	sockmig_proc_free(p);
	close(fd);
	printf("rolled back\n");
	return 0;
}

/* The kind of the image that starts at fd's offset (bytes 12..15 of its
 * header), without moving the offset; 0 at the end of the file. */
static uint32_t next_kind(int fd)
{
	uint8_t h[16];
	off_t at = lseek(fd, 0, SEEK_CUR);

	if (at < 0 || pread(fd, h, sizeof(h), at) != (ssize_t)sizeof(h))
		return 0;
	return (uint32_t)h[12] | (uint32_t)h[13] << 8 | (uint32_t)h[14] << 16 | (uint32_t)h[15] << 24;
}

static int cmd_restore(int argc, char *argv[])
{
	struct sockmig_restore_opts o = { .stdio_fd = { -1, -1, -1 } };
	struct sockmig_precopy_store *ps = NULL;
	struct sockmig_prepare_opts po = { 0 };
	struct sockmig_restore *rs = NULL;
	struct sockmig_restored_proc rp;
	uint64_t t0, t1, t2, t3;
	int fd = open(argv[2], O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (argc >= 4) {
		o.stdio_fd[1] = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (o.stdio_fd[1] < 0) {
			perror(argv[3]);
			return 1;
		}
	}
	t0 = now_ns();
	while (next_kind(fd) == 4 /* pages image */) {
		if (!ps && sockmig_precopy_store_new(8ull << 30, &ps) < 0)
			return fail("precopy store");
		if (sockmig_precopy_store_read(ps, fd) < 0)
			return fail("precopy store read");
	}
	if (ps) {
		struct sockmig_precopy_store_info in;

		sockmig_precopy_store_info(ps, &in);
		fprintf(stderr, "store rounds=%u mappings=%u mib=%.1f ms=%.2f\n", in.round, in.ranges,
			(double)in.bytes / 1048576.0, (double)(now_ns() - t0) / 1e6);
	}
	po.precopy = ps;
	t0 = now_ns();
	if (sockmig_restore_prepare2(fd, &po, &rs) < 0)
		return fail("restore");
	sockmig_precopy_store_free(ps);
	t1 = now_ns();
	if (sockmig_restore_run(rs, &o, &rp) < 0)
		return fail("restore");
	t2 = now_ns();
	if (sockmig_restore_release(rs) < 0)
		return fail("restore");
	t3 = now_ns();
	sockmig_restore_free(rs);
	printf("restored pid %d\n", (int)rp.pid);
	fflush(stdout);
	fprintf(stderr, "prepare_ms=%.2f run_ms=%.2f release_ms=%.2f\n", (double)(t1 - t0) / 1e6,
		(double)(t2 - t1) / 1e6, (double)(t3 - t2) / 1e6);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int cmd_time_check(char *argv[])
{
	struct sockmig_proc *p = NULL;
	int n = atoi(argv[3]);
	uint64_t *t;

	if (n < 1 || n > 10000 || sockmig_proc_open((pid_t)atoi(argv[2]), &p) < 0)
		return n < 1 || n > 10000 ? 2 : fail("open");
	t = calloc((size_t)n, sizeof(*t));
	for (int i = 0; t && i < n; i++) {
		uint64_t a = now_ns();

		if (sockmig_ckpt_check(p, NULL) < 0)
			return fail("check");
		t[i] = now_ns() - a;
	}
	if (!t)
		return 1;
	qsort(t, (size_t)n, sizeof(*t), cmp_u64);
	printf("check_us median=%.1f min=%.1f max=%.1f\n", (double)t[n / 2] / 1e3, (double)t[0] / 1e3,
	       (double)t[n - 1] / 1e3);
	free(t);
	sockmig_proc_free(p);
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc >= 3 && (!strcmp(argv[1], "check") || !strcmp(argv[1], "dump")))
		return cmd_dump(argc, argv);
	if (argc >= 5 && !strcmp(argv[1], "dump-precopy"))
		return cmd_dump_precopy(argc, argv);
	if (argc >= 4 && !strcmp(argv[1], "precopy-rollback"))
		return cmd_rollback(argc, argv);
	if (argc >= 3 && !strcmp(argv[1], "restore"))
		return cmd_restore(argc, argv);
	if (argc >= 4 && !strcmp(argv[1], "time-check"))
		return cmd_time_check(argv);
	fprintf(stderr, "usage: ckpt_tool check PID | dump PID IMAGE [kill|resume] |\n"
			"       dump-precopy PID IMAGE ROUNDS [kill|resume] [PAUSE_MS] [mark] | precopy-rollback PID ROUNDS [wait] |\n"
			"       restore IMAGE [STDOUT] | time-check PID N\n");
	return 2;
}
