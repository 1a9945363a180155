/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libsockmig: move live TCP/UDP sockets and the processes that own them
 * between the nodes of a cluster.
 *
 * Conventions of the whole API:
 *
 *  - Functions that can fail return int: >= 0 on success, -errno on failure.
 *    Output parameters are named ret_* and are left untouched on failure.
 *  - The library never prints and never exits. When it fails it records one
 *    sentence that names the object and the cause (the fd, the flow, the byte
 *    offset in an image ...), readable with sockmig_error() until the next
 *    failing call on the same thread. The program that consumes the error
 *    prints it once.
 *  - Debug messages go to a log callback the program sets; none by default.
 *  - Every fd the library creates is O_CLOEXEC.
 */
#ifndef SOCKMIG_SOCKMIG_H
#define SOCKMIG_SOCKMIG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOCKMIG_VERSION "0.1.0"

/* The sentence recorded by the last failing library call on this thread,
 * or "" if there is none. Never NULL. */
const char *sockmig_error(void);

/* Forget the recorded sentence. */
void sockmig_error_clear(void);

enum sockmig_log_level {
	SOCKMIG_LOG_ERR = 3,
	SOCKMIG_LOG_WARNING = 4,
	SOCKMIG_LOG_INFO = 6,
	SOCKMIG_LOG_DEBUG = 7,
};

typedef void (*sockmig_log_fn)(enum sockmig_log_level level, const char *msg, void *userdata);

/* Install the callback that receives the library's debug and info messages
 * (NULL to silence them, the default). Messages above max_level are not built. */
void sockmig_set_log(sockmig_log_fn fn, enum sockmig_log_level max_level, void *userdata);

#ifdef __cplusplus
}
#endif

#endif
