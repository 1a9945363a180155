/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A handle on a live process: its pidfd, the fds it holds, and a stop that
 * it cannot see (ptrace seize + interrupt).
 *
 *   sockmig_proc_open(pid)            pidfd; refuses kernel threads, zombies, ourselves
 *   sockmig_proc_fd_list()            the fd numbers, ascending
 *   sockmig_proc_fd_get(fd)           our own handle on the process's open file
 *   sockmig_fd_describe()             what that file is, and whether sockmig moves it
 *   sockmig_proc_stop() / _resume()   freeze while its state is read
 *   sockmig_proc_free()               resumes it if it is still stopped
 *
 * Permission is the kernel's: pidfd_getfd and ptrace need the right to
 * ptrace the process (PTRACE_MODE_ATTACH_REALCREDS), so an unprivileged user
 * acts on their own processes only.
 */
#ifndef SOCKMIG_PROC_H
#define SOCKMIG_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct sockmig_proc;

int sockmig_proc_open(pid_t pid, struct sockmig_proc **ret);
void sockmig_proc_free(struct sockmig_proc *p);
pid_t sockmig_proc_pid(const struct sockmig_proc *p);

/* The process's open fd numbers in ascending order; *ret_fds is malloc'ed. */
int sockmig_proc_fd_list(struct sockmig_proc *p, int **ret_fds, size_t *ret_n);

/* A new fd (O_CLOEXEC) of ours on the same open file as the process's fd. */
int sockmig_proc_fd_get(struct sockmig_proc *p, int fd, int *ret_fd);

/* Stop the process (every thread) without a signal it could observe, and
 * wait until it is stopped. Resume lets it go on exactly where it was. */
int sockmig_proc_stop(struct sockmig_proc *p);
int sockmig_proc_resume(struct sockmig_proc *p);

enum sockmig_fd_kind {
	SOCKMIG_FD_NOT_SOCKET = 0, /* a file, pipe, ... (process checkpoint's business) */
	SOCKMIG_FD_TCP,
	SOCKMIG_FD_UDP,
	SOCKMIG_FD_UNIX,
	SOCKMIG_FD_NETLINK,
	SOCKMIG_FD_RAW,
	SOCKMIG_FD_PACKET,
	SOCKMIG_FD_OTHER_SOCKET, /* SCTP, UDP-lite, vsock, ... */
};

struct sockmig_fd_info {
	int fd;              /* the number in the process */
	enum sockmig_fd_kind kind;
	int family;          /* socket: SO_DOMAIN */
	int type;            /* socket: SO_TYPE */
	int protocol;        /* socket: SO_PROTOCOL */
	int tcp_state;       /* TCP: TCP_ESTABLISHED ... (netinet/tcp.h numbering) */
	int status_flags;    /* F_GETFL: O_NONBLOCK, O_APPEND, ... */
};

/* Describe our handle `local_fd` on the process's fd number `fd`. */
int sockmig_fd_describe(int local_fd, int fd, struct sockmig_fd_info *ret);

/* "TCP", "UDP", "unix socket", "netlink socket", ... for sentences. */
const char *sockmig_fd_kind_name(enum sockmig_fd_kind kind);
/* "ESTABLISHED", "LISTEN", ... */
const char *sockmig_tcp_state_name(int state);

/* 1 while sockmig_proc_stop() holds the process stopped, else 0. */
int sockmig_proc_is_stopped(const struct sockmig_proc *p);

#ifdef __cplusplus
}
#endif

#endif
