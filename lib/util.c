/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static __thread char error_buf[512];

static sockmig_log_fn log_fn;
static enum sockmig_log_level log_max = SOCKMIG_LOG_ERR;
static void *log_userdata;

const char *sockmig_error(void)
{
	return error_buf;
}

void sockmig_error_clear(void)
{
	error_buf[0] = '\0';
}

int sm_fail(int err, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	char tmp[sizeof(error_buf)];

	/* Callers add context to the sentence they got: the arguments may
	 * point into error_buf itself. */
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	memcpy(error_buf, tmp, sizeof(error_buf));
	errno = saved;
	return err;
}

void sockmig_set_log(sockmig_log_fn fn, enum sockmig_log_level max_level, void *userdata)
{
	log_fn = fn;
	log_max = max_level;
	log_userdata = userdata;
}

void sm_log(enum sockmig_log_level level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int saved = errno;

	if (!log_fn || level > log_max)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_fn(level, msg, log_userdata);
	errno = saved;
}

int sm_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = read(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EPIPE;
		done += (size_t)n;
	}
	return 0;
}

int sm_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

int sm_read_file(const char *path, char *buf, size_t size)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t done = 0;

	if (fd < 0)
		return -errno;
	if (size == 0)
		return -EINVAL;
	while (done < size - 1) {
		ssize_t n = read(fd, buf + done, size - 1 - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	buf[done] = '\0';
	return (int)done;
}

int sm_write_file(const char *path, const char *s)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return sm_write_full(fd, s, strlen(s));
}

uint64_t sm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool sm_fault(const char *point)
{
	const char *f = getenv("SOCKMIG_FAULT");

	return f && !strcmp(f, point);
}

void sm_fault_stall(const char *point)
{
	struct timespec ts = { .tv_nsec = 100000000 };
	const char *ms = getenv("SOCKMIG_FAULT_STALL_MS");
	long n = ms ? strtol(ms, NULL, 10) / 100 : 1200;

	if (!sm_fault(point))
		return;
	/* Test only: the harness waits for this line in the program's
	 * stderr (a daemon's log), then kills it or cuts its link. */
	dprintf(2, "sockmig: fault %s: stalling\n", point);
	for (long i = 0; i < n && i < 1200; i++)
		nanosleep(&ts, NULL);
}
