/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal helpers shared by the library's modules. Not installed. */
#ifndef SOCKMIG_LIB_UTIL_H
#define SOCKMIG_LIB_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "sockmig/sockmig.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Record the sentence for sockmig_error() and return err (a -errno).
 * The sentence names the object and the cause, without a trailing period. */
int sm_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log through the callback set with sockmig_set_log(). */
void sm_log(enum sockmig_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sm_debug(...) sm_log(SOCKMIG_LOG_DEBUG, __VA_ARGS__)
#define sm_info(...) sm_log(SOCKMIG_LOG_INFO, __VA_ARGS__)

/* Cleanup attributes for plain memory and fds. */
static inline void sm_freep(void *p) { free(*(void **)p); }
static inline void sm_closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
#define _cleanup_free_ __attribute__((cleanup(sm_freep)))
#define _cleanup_close_ __attribute__((cleanup(sm_closep)))

/* Hand an fd out of a _cleanup_close_ variable. */
static inline int sm_take_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

/* read/write loops that handle EINTR and short transfers; return -errno. */
int sm_read_full(int fd, void *buf, size_t len);
int sm_write_full(int fd, const void *buf, size_t len);

/* Read a small file completely into buf (NUL-terminated); returns length. */
int sm_read_file(const char *path, char *buf, size_t size);
/* Write a string to an existing file, e.g. a sysctl. */
int sm_write_file(const char *path, const char *s);

/* Fault injection for tests: true when SOCKMIG_FAULT names this point.
 * The points are listed in docs/socket-move.md. */
bool sm_fault(const char *point);
/* SOCKMIG_FAULT=POINT: write "sockmig: fault POINT: stalling" to stderr and
 * sleep SOCKMIG_FAULT_STALL_MS (default and at most 120 s), for tests that
 * kill or cut off a side there. */
void sm_fault_stall(const char *point);

/* Monotonic clock in nanoseconds. */
uint64_t sm_now_ns(void);

#endif
