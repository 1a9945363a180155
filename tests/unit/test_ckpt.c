/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The checkpoint side, read back: a child builds known state (a sparse
 * anonymous mapping with a pattern, a PROT_NONE guard, known registers in its
 * stopped frame); the dump goes to a memfd and is read back with the checked
 * reader; every section must say what the kernel says about the child. Also:
 * the pre-flight refusals, and damaged images refused before anything runs.
 * The restore itself is tests/integration/ckpt_counter.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sockmig/ckpt.h"
#include "sockmig/proc.h"
#include "sockmig/sockmig.h"
#include "ckpt.h"
#include "image.h"

#define PAT_PAGES 64
static uint8_t *pattern; /* mapped before fork: the child has it at the same address */
static uint8_t *guard;

static uint8_t pat_byte(size_t page, size_t i)
{
	return (uint8_t)(page * 17 + i * 3 + 1);
}

static void setup_pattern(void)
{
	if (pattern)
		return;
	pattern = mmap(NULL, PAT_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(pattern != MAP_FAILED);
	guard = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(guard != MAP_FAILED);
}

static void *pause_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/* A child that writes every other page of the pattern and waits, with
 * only fds 0..2. It says "ready" on a pipe that it then closes. */
static pid_t spawn_child(int mode)
{
	int p[2];
	pid_t pid;
	char c;

	setup_pattern();
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		pthread_t t;
		int w;

		prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed assert must not leak it */
		for (size_t pg = 0; pg < PAT_PAGES; pg += 2)
			for (size_t i = 0; i < 4096; i++)
				pattern[pg * 4096 + i] = pat_byte(pg, i);
		if (mode == 1)
			pthread_create(&t, NULL, pause_thread, NULL);
		/* Only fds 0..2 (+ a netlink socket as 3 in mode 2) once the parent
		 * reads EOF: the ready pipe's write end goes last. */
		w = fcntl(p[1], F_DUPFD_CLOEXEC, 500);
		syscall(SYS_close_range, 3, 499, 0);
		syscall(SYS_close_range, 501, ~0u, 0);
		if (w != 500 || (mode == 2 && socket(AF_NETLINK, SOCK_RAW, 0) != 3) || write(w, "r", 1) != 1)
			_exit(1);
		close(w);
		for (;;)
			pause();
	}
	close(p[1]);
	assert_int_equal(read(p[0], &c, 1), 1);
	assert_int_equal(read(p[0], &c, 1), 0);
	close(p[0]);
	return pid;
}

static void end_child(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

struct seen {
	size_t pages, pattern_pages, bad;
};

static int count_pages(uint64_t addr, const uint8_t *data, size_t len, void *userdata)
{
	struct seen *s = userdata;
	uint64_t base = (uint64_t)(uintptr_t)pattern;

	for (size_t off = 0; off < len; off += 4096) {
		uint64_t a = addr + off;

		s->pages++;
		if (a >= base && a < base + PAT_PAGES * 4096) {
			size_t pg = (a - base) / 4096;

			s->pattern_pages++;
			if (pg % 2)
				s->bad++; /* never written: must not be in the image */
			for (size_t i = 0; i < 4096; i++)
				if (data[off + i] != pat_byte(pg, i)) {
					s->bad++;
					break;
				}
		}
	}
	return 0;
}

static int dump_child(pid_t pid, int *ret_memfd)
{
	struct sockmig_proc *p;
	int fd, r;

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	r = sockmig_ckpt_check(p, NULL);
	if (r < 0) {
		sockmig_proc_free(p);
		return r;
	}
	assert_int_equal(sockmig_proc_stop(p), 0);
	fd = (int)syscall(SYS_memfd_create, "img", MFD_CLOEXEC);
	assert_true(fd >= 0);
	r = sockmig_ckpt_dump(p, fd, NULL);
	sockmig_proc_free(p);
	*ret_memfd = fd;
	return r;
}

static void test_dump_sections(void **state)
{
	pid_t pid = spawn_child(0);
	struct sm_image_reader *rd;
	struct ckpt_image im;
	struct seen seen = { 0 };
	int fd, found_pattern = 0, found_guard = 0, found_vdso = 0, found_stack = 0;
	(void)state;

	if (dump_child(pid, &fd) < 0)
		fail_msg("dump: %s", sockmig_error());
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sm_image_reader_new_fd(fd, &rd), 0);
	assert_int_equal(ckpt_read_image(rd, &im, count_pages, &seen), 0);

	assert_int_equal(im.info.pid, pid);
	assert_memory_equal(im.info.comm, "test_ckpt", 9);
	assert_true(im.info.xfeatures & 3); /* x87 + SSE at least */
	assert_true(im.mm.start_code < im.mm.end_code);
	assert_true(im.mm.start_brk <= im.mm.brk);
	assert_true(im.mm.arg_start < im.mm.arg_end);
	assert_true(im.mm.auxv_len >= 16 && im.mm.auxv_len % 16 == 0);
	assert_non_null(strstr(im.mm.exe, "test_ckpt"));
	/* rip inside executable memory of the child (libc's pause) */
	for (size_t i = 0; i < im.n_vmas; i++) {
		const struct ckpt_vma *v = &im.vmas[i];

		/* it may have merged with a neighbour of the same kind */
		if (v->start <= (uintptr_t)pattern && v->end >= (uintptr_t)pattern + PAT_PAGES * 4096)
			found_pattern = v->prot == (PROT_READ | PROT_WRITE) && (v->flags & CKPT_VMA_ANON);
		if (v->start == (uintptr_t)guard)
			found_guard = v->prot == 0;
		if (v->flags & CKPT_VMA_VDSO)
			found_vdso = v->prot == (PROT_READ | PROT_EXEC);
		if (v->flags & CKPT_VMA_GROWSDOWN)
			found_stack = im.thread.regs[19] >= v->start && im.thread.regs[19] < v->end; /* rsp */
	}
	assert_true(found_pattern);
	assert_true(found_guard);
	assert_true(found_vdso);
	assert_true(found_stack);
	assert_int_equal(im.thread.tid, pid);
	assert_int_equal(im.thread.regs[17], 0x33); /* cs */
	assert_true(im.thread.xstate_len >= 576);
	/* the child was forked from us: same vdso bytes */
	assert_true(im.vdso_len >= 4096);
	/* half the pattern pages were written, only those came, each exact */
	assert_int_equal(seen.pattern_pages, PAT_PAGES / 2);
	assert_int_equal(seen.bad, 0);
	assert_true(seen.pages > seen.pattern_pages);
	ckpt_image_free(&im);
	sm_image_reader_free(rd);

	/* damaged: one byte flipped in the middle: refused, by sentence */
	{
		off_t len = lseek(fd, 0, SEEK_END);
		uint8_t b;
		pid_t rpid = 0;

		assert_int_equal(pread(fd, &b, 1, len / 2), 1);
		b ^= 0x40;
		assert_int_equal(pwrite(fd, &b, 1, len / 2), 1);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		assert_int_equal(sockmig_restore(fd, NULL, &rpid), -EBADMSG);
		assert_int_equal(rpid, 0);
		assert_non_null(strstr(sockmig_error(), "checksum mismatch"));
		/* truncated */
		assert_int_equal(ftruncate(fd, len - 20), 0);
		assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
		assert_int_equal(sockmig_restore(fd, NULL, &rpid), -EBADMSG);
		assert_int_equal(rpid, 0);
	}
	close(fd);
	/* the dump resumed the child: it is still there and not a zombie */
	assert_int_equal(kill(pid, 0), 0);
	end_child(pid);
}

static void test_refuse_thread(void **state)
{
	pid_t pid = spawn_child(1);
	char want[128];
	int fd = -1;
	(void)state;

	assert_int_equal(dump_child(pid, &fd), -EOPNOTSUPP);
	snprintf(want, sizeof(want), "pid %d has 2 threads; only single-threaded processes can be checkpointed yet",
		 (int)pid);
	assert_string_equal(sockmig_error(), want);
	end_child(pid);
}

static void test_refuse_fd(void **state)
{
	pid_t pid = spawn_child(2);
	int fd = -1;
	(void)state;

	assert_int_equal(dump_child(pid, &fd), -EOPNOTSUPP);
	assert_non_null(strstr(sockmig_error(), "fd 3: a netlink socket is not migratable"));
	end_child(pid);
}

/* The image re-encoded with one thing changed, as a node with another kernel
 * or another CPU would have written it: the restore refuses it with its
 * sentence before anything is made. */
static void reencode_and_refuse(int (*change)(struct ckpt_image *), const char *want)
{
	pid_t pid = spawn_child(0), rpid = 0;
	struct sm_image_reader *rd;
	struct sm_image_writer *w;
	struct ckpt_image im;
	int fd, out;

	if (dump_child(pid, &fd) < 0)
		fail_msg("dump: %s", sockmig_error());
	end_child(pid);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(sm_image_reader_new_fd(fd, &rd), 0);
	assert_int_equal(ckpt_read_image(rd, &im, NULL, NULL), 0);
	sm_image_reader_free(rd);
	close(fd);
	assert_int_equal(change(&im), 0);
	out = (int)syscall(SYS_memfd_create, "img2", MFD_CLOEXEC);
	assert_true(out >= 0);
	assert_int_equal(sm_image_writer_new(out, SM_IMAGE_KIND_PROCESS, &w), 0);
	assert_int_equal(ckpt_write_info(w, &im.info), 0);
	assert_int_equal(ckpt_write_mm(w, &im.mm), 0);
	assert_int_equal(ckpt_write_vdso(w, im.vdso, im.vdso_len), 0);
	assert_int_equal(ckpt_write_vmas(w, im.vmas, im.n_vmas), 0);
	assert_int_equal(ckpt_write_thread(w, &im.thread), 0);
	assert_int_equal(sm_image_writer_finish(w), 0);
	sm_image_writer_free(w);
	ckpt_image_free(&im);
	assert_int_equal(lseek(out, 0, SEEK_SET), 0);
	assert_int_equal(sockmig_restore(out, NULL, &rpid), -EOPNOTSUPP);
	assert_int_equal(rpid, 0);
	if (!strstr(sockmig_error(), want))
		fail_msg("refused with \"%s\", not \"%s\"", sockmig_error(), want);
	close(out);
}

static int other_kernel(struct ckpt_image *im)
{
	im->vdso[im->vdso_len / 2] ^= 0xff;
	return 0;
}

static int other_cpu(struct ckpt_image *im)
{
	uint64_t bv;

	/* a state component this CPU's XCR0 does not enable (bit 62 is
	 * reserved everywhere) marked in use in the xsave header */
	memcpy(&bv, im->thread.xstate + 512, 8);
	bv |= 1ull << 62;
	memcpy(im->thread.xstate + 512, &bv, 8);
	return 0;
}

static void test_refuse_other_kernel(void **state)
{
	(void)state;
	reencode_and_refuse(other_kernel, "the image's vdso differs from this node's (another kernel?)");
}

static void test_refuse_other_cpu(void **state)
{
	(void)state;
	reencode_and_refuse(other_cpu, "the image's FPU state uses CPU features 0x4000000000000000 that this CPU lacks");
}

static void test_not_stopped(void **state)
{
	pid_t pid = spawn_child(0);
	struct sockmig_proc *p;
	(void)state;

	assert_int_equal(sockmig_proc_open(pid, &p), 0);
	assert_int_equal(sockmig_ckpt_dump(p, 1, NULL), -EINVAL);
	assert_non_null(strstr(sockmig_error(), "is not stopped"));
	sockmig_proc_free(p);
	end_child(pid);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dump_sections),
		cmocka_unit_test(test_refuse_thread),
		cmocka_unit_test(test_refuse_fd),
		cmocka_unit_test(test_refuse_other_kernel),
		cmocka_unit_test(test_refuse_other_cpu),
		cmocka_unit_test(test_not_stopped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
