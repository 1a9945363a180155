/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ZDTM-style test of the fd checkpoint: builds one of every kind of fd that
 * sockmig moves, at fixed numbers, says "ready", waits for SIGUSR1 (the
 * harness checkpoints and restores it meanwhile), then checks that every fd
 * survived with its number, flags, FD_CLOEXEC, offset, content and state,
 * and prints "pass" or "fail: <what>".
 *
 *   ckpt_fds DIR      DIR: an empty directory for its files and FIFO
 *
 * tests/unit/test_ckpt_fd.c includes this file (CKPT_FDS_NO_MAIN) to run
 * fds_build() and fds_verify() around its own dump and restore.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* The fixed numbers. */
enum {
	FD_A = 10,       /* file a, O_RDONLY, offset 5, FD_CLOEXEC */
	FD_B1 = 11,      /* file b, O_RDWR, offset 3 ... */
	FD_B2 = 12,      /* ... the same description (dup), FD_CLOEXEC */
	FD_APP = 13,     /* file app, O_WRONLY | O_APPEND */
	FD_TRUNC = 14,   /* file trunc, opened O_WRONLY | O_TRUNC, "hello" written */
	FD_DEL = 15,     /* deleted file, 20000 bytes, offset 100 */
	FD_MEMFD = 16,   /* memfd, sparse 1 MiB, offset 7, F_SEAL_SHRINK */
	FD_DIR = 17,     /* the directory */
	FD_NULL = 18,    /* /dev/null, O_WRONLY */
	FD_URANDOM = 19, /* /dev/urandom, O_NONBLOCK */
	FD_PIPE_R = 20,  /* pipe with bytes inside, 128 KiB, read end O_NONBLOCK, FD_CLOEXEC */
	FD_PIPE_W = 21,
	FD_FIFO_R = 22,  /* FIFO with bytes inside */
	FD_FIFO_W = 23,
	FD_EVENT = 24,   /* eventfd, count 7, FD_CLOEXEC */
	FD_SEM = 25,     /* eventfd semaphore, count 3 */
	FD_TIMER = 26,   /* timerfd armed 30 s */
	FD_PERIOD = 27,  /* timerfd every 100 ms */
	FD_FIRED = 28,   /* timerfd fired, not read */
	FD_SIGNAL = 29,  /* signalfd SIGUSR2 */
	FD_SP_A = 30,    /* stream socketpair, bytes queued both ways */
	FD_SP_B = 31,    /* (dup'ed here from fd 40 after fd 40 was registered in the epoll) */
	FD_DG_A = 32,    /* datagram socketpair: "" and "back" queued at A */
	FD_DG_B = 33,    /* "m1" and "msg-two" queued at B */
	FD_EP = 34,      /* epoll: eventfd, pipe, socket (stale number 40), nested epoll; FD_CLOEXEC */
	FD_EP2 = 35,     /* epoll: the semaphore eventfd */
	FD_OPATH = 36,   /* O_PATH of file a */
	FD_MEMFD_RO = 37, /* the memfd again, its own description, O_RDONLY, offset 1 */
	FD_STALE = 40,   /* closed; the epoll still knows the socket by this number */
};

#define DEL_LEN 20000
#define MEMFD_LEN (1u << 20)

static const struct {
	int fd;
	int fl; /* F_GETFL & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_PATH) */
	int cloexec;
} fds_expect[] = {
	{ FD_A, O_RDONLY, 1 },
	{ FD_B1, O_RDWR, 0 },
	{ FD_B2, O_RDWR, 1 },
	{ FD_APP, O_WRONLY | O_APPEND, 0 },
	{ FD_TRUNC, O_WRONLY, 0 },
	{ FD_DEL, O_RDWR, 0 },
	{ FD_MEMFD, O_RDWR, 0 },
	{ FD_DIR, O_RDONLY, 0 },
	{ FD_NULL, O_WRONLY, 0 },
	{ FD_URANDOM, O_RDONLY | O_NONBLOCK, 0 },
	{ FD_PIPE_R, O_RDONLY | O_NONBLOCK, 1 },
	{ FD_PIPE_W, O_WRONLY, 0 },
	{ FD_FIFO_R, O_RDONLY | O_NONBLOCK, 0 },
	{ FD_FIFO_W, O_WRONLY, 0 },
	{ FD_EVENT, O_RDWR | O_NONBLOCK, 1 },
	{ FD_SEM, O_RDWR | O_NONBLOCK, 0 },
	{ FD_TIMER, O_RDWR, 0 },
	{ FD_PERIOD, O_RDWR, 0 },
	{ FD_FIRED, O_RDWR | O_NONBLOCK, 0 },
	{ FD_SIGNAL, O_RDWR | O_NONBLOCK, 0 },
	{ FD_SP_A, O_RDWR | O_NONBLOCK, 0 },
	{ FD_SP_B, O_RDWR | O_NONBLOCK, 0 },
	{ FD_DG_A, O_RDWR | O_NONBLOCK, 0 },
	{ FD_DG_B, O_RDWR | O_NONBLOCK, 0 },
	{ FD_EP, O_RDWR, 1 },
	{ FD_EP2, O_RDWR, 0 },
	{ FD_OPATH, O_PATH, 0 },
	{ FD_MEMFD_RO, O_RDONLY, 0 },
};

static uint8_t fds_pat(size_t i)
{
	return (uint8_t)(i * 7 + 3);
}

static int fds_why(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fds_why(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	if (saved && strlen(why) + 3 < n)
		snprintf(why + strlen(why), n - strlen(why), " (%s)", strerror(saved));
	return -1;
}

#define FAIL(...) return fds_why(why, n_why, __VA_ARGS__)
#define CHECK(cond, ...)                 \
	do {                             \
		errno = 0;               \
		if (!(cond))             \
			FAIL(__VA_ARGS__); \
	} while (0)

/* Put fd at number `at` (closing the old number). */
static int fds_place(int fd, int at)
{
	if (fd < 0)
		return -1;
	if (fd == at)
		return 0;
	if (dup2(fd, at) != at)
		return -1;
	close(fd);
	return 0;
}

static int fds_write_file(const char *dir, const char *name, const char *s)
{
	char path[4096];
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

static int fds_open_at(const char *dir, const char *name, int flags, int at)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return fds_place(open(path, flags, 0644), at);
}

static int fds_build(const char *dir, char *why, size_t n_why)
{
	char path[4096];
	uint8_t *buf;
	int p[2], sv[2], fd;
	struct itimerspec its = { 0 };
	struct epoll_event ev;
	sigset_t ss;

	CHECK(fds_write_file(dir, "a", "0123456789abcdef") == 0 && fds_write_file(dir, "b", "ABCDEFGHIJ") == 0 &&
		      fds_write_file(dir, "app", "x") == 0,
	      "cannot write the files in %s", dir);
	CHECK(fds_open_at(dir, "a", O_RDONLY | O_CLOEXEC, FD_A) == 0 && lseek(FD_A, 5, SEEK_SET) == 5, "file a");
	CHECK(fcntl(FD_A, F_SETFD, FD_CLOEXEC) == 0, "cloexec a");
	CHECK(fds_open_at(dir, "b", O_RDWR, FD_B1) == 0 && lseek(FD_B1, 3, SEEK_SET) == 3 &&
		      dup3(FD_B1, FD_B2, O_CLOEXEC) == FD_B2,
	      "file b");
	CHECK(fds_open_at(dir, "app", O_WRONLY | O_APPEND, FD_APP) == 0, "file app");
	CHECK(fds_open_at(dir, "trunc", O_WRONLY | O_CREAT | O_TRUNC, FD_TRUNC) == 0 && write(FD_TRUNC, "hello", 5) == 5,
	      "file trunc");

	buf = malloc(DEL_LEN);
	CHECK(buf, "malloc");
	for (size_t i = 0; i < DEL_LEN; i++)
		buf[i] = fds_pat(i);
	snprintf(path, sizeof(path), "%s/del", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, buf, DEL_LEN) != DEL_LEN || unlink(path) < 0 || lseek(fd, 100, SEEK_SET) != 100 ||
	    fds_place(fd, FD_DEL) < 0) {
		free(buf);
		FAIL("deleted file");
	}
	fd = memfd_create("ckptfds", MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, MEMFD_LEN) < 0 || pwrite(fd, buf, 8192, 0) != 8192 ||
	    pwrite(fd, buf, 100, MEMFD_LEN / 2) != 100 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0 ||
	    lseek(fd, 7, SEEK_SET) != 7 || fds_place(fd, FD_MEMFD) < 0) {
		free(buf);
		FAIL("memfd");
	}
	free(buf);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", FD_MEMFD);
	CHECK(fds_place(open(path, O_RDONLY), FD_MEMFD_RO) == 0 && lseek(FD_MEMFD_RO, 1, SEEK_SET) == 1, "memfd reopened");
	CHECK(fds_place(open(dir, O_RDONLY | O_DIRECTORY), FD_DIR) == 0, "directory");
	CHECK(fds_place(open("/dev/null", O_WRONLY), FD_NULL) == 0, "/dev/null");
	CHECK(fds_place(open("/dev/urandom", O_RDONLY | O_NONBLOCK), FD_URANDOM) == 0, "/dev/urandom");
	CHECK(fds_open_at(dir, "a", O_PATH, FD_OPATH) == 0, "O_PATH");

	CHECK(pipe(p) == 0 && fds_place(p[0], FD_PIPE_R) == 0 && fds_place(p[1], FD_PIPE_W) == 0, "pipe");
	CHECK(fcntl(FD_PIPE_W, F_SETPIPE_SZ, 131072) == 131072 && write(FD_PIPE_W, "pipe-bytes", 10) == 10 &&
		      fcntl(FD_PIPE_R, F_SETFL, O_NONBLOCK) == 0 && fcntl(FD_PIPE_R, F_SETFD, FD_CLOEXEC) == 0,
	      "pipe setup");
	snprintf(path, sizeof(path), "%s/fifo", dir);
	CHECK(mkfifo(path, 0600) == 0, "mkfifo %s", path);
	CHECK(fds_place(open(path, O_RDONLY | O_NONBLOCK), FD_FIFO_R) == 0 && fds_place(open(path, O_WRONLY), FD_FIFO_W) == 0 &&
		      write(FD_FIFO_W, "fifo-bytes", 10) == 10,
	      "fifo");

	CHECK(fds_place(eventfd(7, EFD_NONBLOCK | EFD_CLOEXEC), FD_EVENT) == 0 && fcntl(FD_EVENT, F_SETFD, FD_CLOEXEC) == 0,
	      "eventfd");
	CHECK(fds_place(eventfd(3, EFD_NONBLOCK | EFD_SEMAPHORE), FD_SEM) == 0, "semaphore eventfd");
	its.it_value.tv_sec = 30;
	CHECK(fds_place(timerfd_create(CLOCK_MONOTONIC, 0), FD_TIMER) == 0 && timerfd_settime(FD_TIMER, 0, &its, NULL) == 0,
	      "timerfd");
	its.it_value = (struct timespec){ 0, 100000000 };
	its.it_interval = its.it_value;
	CHECK(fds_place(timerfd_create(CLOCK_MONOTONIC, 0), FD_PERIOD) == 0 && timerfd_settime(FD_PERIOD, 0, &its, NULL) == 0,
	      "interval timerfd");
	its = (struct itimerspec){ .it_value = { 0, 1 } };
	CHECK(fds_place(timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK), FD_FIRED) == 0 &&
		      timerfd_settime(FD_FIRED, 0, &its, NULL) == 0,
	      "fired timerfd");
	{
		struct pollfd pf = { FD_FIRED, POLLIN, 0 };

		CHECK(poll(&pf, 1, 5000) == 1, "the 1 ns timer did not fire");
	}
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR2);
	CHECK(fds_place(signalfd(-1, &ss, SFD_NONBLOCK), FD_SIGNAL) == 0, "signalfd");

	/* the socket is registered in the epoll as fd 40, then lives on as 31 only */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0 && fds_place(sv[0], FD_SP_A) == 0 &&
		      fds_place(sv[1], FD_STALE) == 0,
	      "stream socketpair");
	CHECK(fds_place(epoll_create1(0), FD_EP) == 0 && fds_place(epoll_create1(0), FD_EP2) == 0 &&
		      fcntl(FD_EP, F_SETFD, FD_CLOEXEC) == 0,
	      "epoll");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0x3333 };
	CHECK(epoll_ctl(FD_EP, EPOLL_CTL_ADD, FD_STALE, &ev) == 0, "epoll_ctl stale");
	CHECK(fds_place(FD_STALE, FD_SP_B) == 0, "dup of the registered socket");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0x1111 };
	CHECK(epoll_ctl(FD_EP, EPOLL_CTL_ADD, FD_EVENT, &ev) == 0, "epoll_ctl eventfd");
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 0x2222 };
	CHECK(epoll_ctl(FD_EP, EPOLL_CTL_ADD, FD_PIPE_R, &ev) == 0, "epoll_ctl pipe");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0x5555 };
	CHECK(epoll_ctl(FD_EP2, EPOLL_CTL_ADD, FD_SEM, &ev) == 0, "epoll_ctl semaphore");
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0x4444 };
	CHECK(epoll_ctl(FD_EP, EPOLL_CTL_ADD, FD_EP2, &ev) == 0, "epoll_ctl nested epoll");
	CHECK(send(FD_SP_A, "to-31", 5, 0) == 5 && send(FD_SP_B, "to-30", 5, 0) == 5, "stream socketpair bytes");

	CHECK(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv) == 0 && fds_place(sv[0], FD_DG_A) == 0 &&
		      fds_place(sv[1], FD_DG_B) == 0,
	      "datagram socketpair");
	CHECK(send(FD_DG_A, "m1", 2, 0) == 2 && send(FD_DG_A, "msg-two", 7, 0) == 7 && send(FD_DG_B, "", 0, 0) == 0 &&
		      send(FD_DG_B, "back", 4, 0) == 4,
	      "datagrams");
	return 0;
}

static int fds_same_file(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int fds_read_is(int fd, const char *want, size_t len)
{
	char buf[64];

	return read(fd, buf, sizeof(buf)) == (ssize_t)len && !memcmp(buf, want, len);
}

static int fds_recv_is(int fd, const char *want, size_t len)
{
	char buf[64];

	return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == (ssize_t)len && !memcmp(buf, want, len);
}

static int fds_link_is(int fd, const char *want)
{
	char path[64], buf[4096];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, sizeof(buf) - 1);
	if (n < 0)
		return 0;
	buf[n] = 0;
	return strstr(buf, want) != NULL;
}

static int fds_verify(const char *dir, char *why, size_t n_why)
{
	char path[4096], buf[128];
	struct epoll_event evs[8];
	struct itimerspec its;
	struct stat st;
	uint64_t v;
	unsigned seen = 0;
	int k;

	for (size_t i = 0; i < sizeof(fds_expect) / sizeof(fds_expect[0]); i++) {
		int fl = fcntl(fds_expect[i].fd, F_GETFL), fdf = fcntl(fds_expect[i].fd, F_GETFD);

		CHECK(fl >= 0 && fdf >= 0, "fd %d is gone", fds_expect[i].fd);
		CHECK((fl & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_PATH)) == fds_expect[i].fl, "fd %d has flags %#o, not %#o",
		      fds_expect[i].fd, fl & (O_ACCMODE | O_APPEND | O_NONBLOCK | O_PATH), fds_expect[i].fl);
		CHECK(!!(fdf & FD_CLOEXEC) == fds_expect[i].cloexec, "fd %d: FD_CLOEXEC is %d", fds_expect[i].fd,
		      fdf & FD_CLOEXEC);
	}
	CHECK(fcntl(FD_STALE, F_GETFD) < 0, "fd %d exists", FD_STALE);

	/* epoll first: reading the fds would change what is ready */
	k = epoll_wait(FD_EP, evs, 8, 0);
	CHECK(k == 4, "the epoll reports %d fds ready, not 4", k);
	for (int i = 0; i < k; i++)
		seen |= evs[i].data.u64 == 0x1111 ? 1 : evs[i].data.u64 == 0x2222 ? 2 : evs[i].data.u64 == 0x3333 ? 4 :
				evs[i].data.u64 == 0x4444 ? 8 : 16;
	CHECK(seen == 15, "the epoll reports the wrong data (%#x)", seen);
	k = epoll_wait(FD_EP, evs, 8, 0);
	CHECK(k == 3, "edge-triggered pipe registration reported again (%d ready)", k);
	k = epoll_wait(FD_EP2, evs, 8, 0);
	CHECK(k == 1 && evs[0].data.u64 == 0x5555, "the nested epoll reports %d fds", k);
	/* the socket is registered under its old number 40, exactly */
	CHECK(dup2(FD_SP_B, FD_STALE) == FD_STALE && epoll_ctl(FD_EP, EPOLL_CTL_DEL, FD_STALE, NULL) == 0 &&
		      close(FD_STALE) == 0,
	      "the registration of the socket is not under its old number %d", FD_STALE);

	CHECK(lseek(FD_A, 0, SEEK_CUR) == 5 && fds_read_is(FD_A, "56789abcdef", 11), "file a: wrong offset or content");
	CHECK(lseek(FD_B1, 0, SEEK_CUR) == 3 && fds_read_is(FD_B2, "DEFGHIJ", 7) && lseek(FD_B1, 0, SEEK_CUR) == 10,
	      "fds %d and %d do not share one offset", FD_B1, FD_B2);
	CHECK(write(FD_APP, "y", 1) == 1, "write to app");
	snprintf(path, sizeof(path), "%s/app", dir);
	CHECK(stat(path, &st) == 0 && st.st_size == 2, "O_APPEND lost: app has %lld bytes", (long long)st.st_size);
	snprintf(path, sizeof(path), "%s/trunc", dir);
	CHECK(stat(path, &st) == 0 && st.st_size == 5 && lseek(FD_TRUNC, 0, SEEK_CUR) == 5,
	      "the O_TRUNC file was truncated again (%lld bytes)", (long long)st.st_size);
	CHECK(fds_link_is(FD_DEL, " (deleted)") && lseek(FD_DEL, 0, SEEK_CUR) == 100 && fstat(FD_DEL, &st) == 0 &&
		      st.st_size == DEL_LEN,
	      "the deleted file");
	for (size_t i = 0; i < DEL_LEN; i += sizeof(buf)) {
		size_t len = DEL_LEN - i < sizeof(buf) ? DEL_LEN - i : sizeof(buf);

		CHECK(pread(FD_DEL, buf, len, (off_t)i) == (ssize_t)len, "read of the deleted file");
		for (size_t j = 0; j < len; j++)
			CHECK((uint8_t)buf[j] == fds_pat(i + j), "deleted file byte %zu", i + j);
	}
	CHECK(fds_link_is(FD_MEMFD, "/memfd:ckptfds") && lseek(FD_MEMFD, 0, SEEK_CUR) == 7 && fstat(FD_MEMFD, &st) == 0 &&
		      st.st_size == MEMFD_LEN && (fcntl(FD_MEMFD, F_GET_SEALS) & F_SEAL_SHRINK),
	      "the memfd");
	for (size_t i = 0; i < 8192; i += sizeof(buf)) {
		CHECK(pread(FD_MEMFD_RO, buf, sizeof(buf), (off_t)i) == sizeof(buf), "read of the memfd");
		for (size_t j = 0; j < sizeof(buf); j++)
			CHECK((uint8_t)buf[j] == fds_pat(i + j), "memfd byte %zu", i + j);
	}
	CHECK(pread(FD_MEMFD, buf, 100, MEMFD_LEN / 2) == 100 && (uint8_t)buf[99] == fds_pat(99) &&
		      pread(FD_MEMFD, buf, 4, MEMFD_LEN / 4) == 4 && !buf[0] && !buf[3],
	      "memfd second extent or hole");
	{
		struct stat a, b;

		CHECK(fstat(FD_MEMFD, &a) == 0 && fstat(FD_MEMFD_RO, &b) == 0 && a.st_ino == b.st_ino &&
			      lseek(FD_MEMFD_RO, 0, SEEK_CUR) == 1,
		      "the memfd's second description");
	}
	CHECK(fstat(FD_DIR, &st) == 0 && S_ISDIR(st.st_mode) && fds_same_file(FD_DIR, dir), "the directory");
	CHECK(fstat(FD_NULL, &st) == 0 && st.st_rdev == makedev(1, 3) && write(FD_NULL, "x", 1) == 1, "/dev/null");
	CHECK(fstat(FD_URANDOM, &st) == 0 && st.st_rdev == makedev(1, 9) && read(FD_URANDOM, buf, 16) == 16, "/dev/urandom");
	snprintf(path, sizeof(path), "%s/a", dir);
	CHECK(fds_same_file(FD_OPATH, path), "the O_PATH fd");

	CHECK(fcntl(FD_PIPE_R, F_GETPIPE_SZ) == 131072, "pipe size %d", fcntl(FD_PIPE_R, F_GETPIPE_SZ));
	CHECK(fds_read_is(FD_PIPE_R, "pipe-bytes", 10), "the pipe's bytes");
	CHECK(read(FD_PIPE_R, buf, 1) < 0 && errno == EAGAIN, "the pipe has more bytes");
	CHECK(write(FD_PIPE_W, "z", 1) == 1 && fds_read_is(FD_PIPE_R, "z", 1), "the pipe's ends are not one pipe");
	CHECK(fds_read_is(FD_FIFO_R, "fifo-bytes", 10), "the FIFO's bytes");
	CHECK(write(FD_FIFO_W, "f", 1) == 1 && fds_read_is(FD_FIFO_R, "f", 1), "the FIFO's ends are not one FIFO");

	CHECK(read(FD_EVENT, &v, 8) == 8 && v == 7, "eventfd count");
	for (int i = 0; i < 3; i++)
		CHECK(read(FD_SEM, &v, 8) == 8 && v == 1, "semaphore eventfd read %d", i);
	CHECK(read(FD_SEM, &v, 8) < 0 && errno == EAGAIN, "semaphore eventfd count above 3");
	CHECK(timerfd_gettime(FD_TIMER, &its) == 0 && (its.it_value.tv_sec || its.it_value.tv_nsec) &&
		      its.it_value.tv_sec < 30 && !its.it_interval.tv_sec && !its.it_interval.tv_nsec,
	      "the armed timer (%lld s left)", (long long)its.it_value.tv_sec);
	CHECK(timerfd_gettime(FD_PERIOD, &its) == 0 && its.it_interval.tv_sec == 0 && its.it_interval.tv_nsec == 100000000,
	      "the interval timer's interval");
	{
		struct pollfd pf = { FD_PERIOD, POLLIN, 0 };

		CHECK(poll(&pf, 1, 3000) == 1 && read(FD_PERIOD, &v, 8) == 8 && v >= 1, "the interval timer did not fire");
	}
	CHECK(read(FD_FIRED, &v, 8) == 8 && v >= 1, "the fired timer's tick is lost");
	{
		struct signalfd_siginfo si;

		CHECK(raise(SIGUSR2) == 0 && read(FD_SIGNAL, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR2,
		      "signalfd");
	}
	CHECK(fds_recv_is(FD_SP_B, "to-31", 5) && fds_recv_is(FD_SP_A, "to-30", 5), "the stream socketpair's bytes");
	CHECK(send(FD_SP_A, "ping", 4, 0) == 4 && fds_recv_is(FD_SP_B, "ping", 4), "the stream socketpair is not connected");
	CHECK(fds_recv_is(FD_DG_B, "m1", 2) && fds_recv_is(FD_DG_B, "msg-two", 7), "the datagrams at %d", FD_DG_B);
	CHECK(fds_recv_is(FD_DG_A, "", 0) && fds_recv_is(FD_DG_A, "back", 4), "the datagrams at %d", FD_DG_A);
	CHECK(recv(FD_DG_A, buf, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "extra datagrams");
	return 0;
}

#ifndef CKPT_FDS_NO_MAIN
int main(int argc, char *argv[])
{
	char why[512];
	sigset_t ss;
	int sig;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR1);
	sigaddset(&ss, SIGUSR2);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	if (fds_build(argv[1], why, sizeof(why)) < 0) {
		printf("fail: build: %s\n", why);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR1);
	do
		sig = sigwaitinfo(&ss, NULL);
	while (sig < 0 && errno == EINTR);
	if (fds_verify(argv[1], why, sizeof(why)) < 0) {
		printf("fail: %s\n", why);
		return 1;
	}
	printf("pass\n");
	return 0;
}
#endif
