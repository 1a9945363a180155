/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Named network namespaces, compatible with iproute2: a namespace NAME is the
 * file /run/netns/NAME with the namespace bind-mounted on it, so `ip netns
 * list` and `ip netns exec` see ours and we see theirs.
 *
 * Entering: setns(CLONE_NEWNET) changes only the calling thread, and a socket
 * keeps the namespace it was created in for its whole life. So "a socket in
 * namespace X" is: enter X, socket(), go back (sm_netns_socket()). Anything
 * that must run longer inside X runs in a forked child (sm_netns_run()).
 */
#ifndef SOCKMIG_LIB_NETNS_H
#define SOCKMIG_LIB_NETNS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SM_NETNS_RUN_DIR "/run/netns"
/* iproute2 accepts longer names, but ours end up in messages and paths. */
#define SM_NETNS_NAME_MAX 64

/* true if name is usable as a file name under /run/netns. */
bool sm_netns_name_valid(const char *name);

/* Create the named namespace NAME (a fresh, empty one: only lo, down).
 * -EEXIST if /run/netns/NAME exists already. On failure nothing is left. */
int sm_netns_create(const char *name);

/* Open the named namespace; returns an O_CLOEXEC fd usable with setns().
 * -ENOENT if there is no such namespace, -ENOMEDIUM if the file exists but
 * no namespace is mounted on it. */
int sm_netns_open(const char *name);

/* Unmount (lazily: processes inside keep running) and unlink
 * /run/netns/NAME. Also removes a file that was never mounted (what a
 * crash between the two steps of sm_netns_create() leaves). -ENOENT if
 * there is nothing to remove. */
int sm_netns_delete(const char *name);

/* Inode number identifying the namespace behind nsfd: equal for two fds
 * exactly when they are the same namespace (as /proc/PID/ns/net shows). */
int sm_netns_inode(int nsfd, uint64_t *ret_ino);

/* Move the calling thread into the namespace nsfd; *ret_saved gets an fd of
 * the namespace it was in, to be handed to sm_netns_leave(). */
int sm_netns_enter(int nsfd, int *ret_saved);
/* Return to the saved namespace and close saved. */
int sm_netns_leave(int saved);

/* socket(2) created inside the namespace nsfd; the calling thread stays
 * where it is. SOCK_CLOEXEC is added. Returns the fd. */
int sm_netns_socket(int nsfd, int domain, int type, int protocol);

/* Write a sysctl of the namespace nsfd, e.g. path
 * "net/ipv6/conf/default/accept_dad" (relative to /proc/sys). */
int sm_netns_sysctl_write(int nsfd, const char *path, const char *value);

/* Run fn(arg) in a forked child that has entered nsfd; returns what fn
 * returned (a -errno or 0..255 is passed through the exit status). fn must
 * only use what is safe after fork() in the caller's program. */
int sm_netns_run(int nsfd, int (*fn)(void *arg), void *arg);

/* Prepare the calling process to exec a program inside the namespace the
 * way `ip netns exec` does: enter nsfd, take a private mount namespace and
 * mount a /sys that shows the namespace's interfaces. name labels that
 * sysfs mount. Not undoable: meant to be followed by exec. */
int sm_netns_enter_for_exec(int nsfd, const char *name);

/* End every process that has a thread inside the namespace nsfd (except the
 * caller): SIGTERM, then after term_ms SIGKILL, scanning /proc again after
 * each round until a scan finds nobody. Signals go through pidfds only, so a
 * reused pid is never hit. Returns the number of processes signalled (one
 * signalled in two rounds counts twice), or -errno: -EBUSY if some process
 * is still inside kill_ms after SIGKILL (e.g. stuck in D state); then the
 * namespace must not be deleted, or that process lives on invisibly. */
int sm_netns_kill_all(int nsfd, int term_ms, int kill_ms);

#endif
