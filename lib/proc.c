/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#include "sockmig/proc.h"
#include "util.h"

#ifndef PF_KTHREAD
#define PF_KTHREAD 0x00200000
#endif

struct thread_stop {
	pid_t tid;
	int pending_sig; /* a signal that arrived while we stopped it, given back on resume */
};

struct sockmig_proc {
	pid_t pid;
	int pidfd;
	struct thread_stop *threads; /* non-NULL while stopped */
	size_t n_threads;
};

/* /proc/PID/stat: "pid (comm) S ppid ... flags ..."; comm may hold spaces and
 * parentheses, so fields are counted from the last ')'. */
static int read_stat(pid_t pid, char *ret_state, unsigned long *ret_flags)
{
	char path[64], buf[1024];
	unsigned long flags;
	char state;
	char *p;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	r = sm_read_file(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2)
		return -EIO;
	*ret_state = state;
	*ret_flags = flags;
	return 0;
}

int sockmig_proc_open(pid_t pid, struct sockmig_proc **ret)
{
	struct sockmig_proc *p;
	unsigned long flags;
	char state;
	int pidfd, r;

	if (pid <= 0)
		return sm_fail(-EINVAL, "%d is not a process id", (int)pid);
	if (pid == getpid())
		return sm_fail(-EINVAL, "pid %d is sockmig itself", (int)pid);
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		if (errno == ESRCH)
			return sm_fail(-ESRCH, "pid %d does not exist", (int)pid);
		return sm_fail(-errno, "pid %d: pidfd_open: %s", (int)pid, strerror(errno));
	}
	/* The pidfd pins the process: what /proc says now is about this one. */
	r = read_stat(pid, &state, &flags);
	if (r < 0) {
		close(pidfd);
		return sm_fail(r == -ENOENT ? -ESRCH : r, "pid %d does not exist", (int)pid);
	}
	if (flags & PF_KTHREAD) {
		close(pidfd);
		return sm_fail(-EPERM, "pid %d is a kernel thread, which cannot be moved", (int)pid);
	}
	if (state == 'Z' || state == 'X') {
		close(pidfd);
		return sm_fail(-ESRCH, "pid %d has exited (it is a zombie)", (int)pid);
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		close(pidfd);
		return -ENOMEM;
	}
	p->pid = pid;
	p->pidfd = pidfd;
	*ret = p;
	return 0;
}

void sockmig_proc_free(struct sockmig_proc *p)
{
	if (!p)
		return;
	if (p->threads)
		sockmig_proc_resume(p);
	close(p->pidfd);
	free(p);
}

pid_t sockmig_proc_pid(const struct sockmig_proc *p)
{
	return p->pid;
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* Numeric entries of a /proc directory, sorted. */
static int list_numeric_dir(const char *path, int **ret, size_t *ret_n)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int *v = NULL;
	size_t n = 0, cap = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *end;
		long x = strtol(de->d_name, &end, 10);

		if (de->d_name[0] < '0' || de->d_name[0] > '9' || *end)
			continue;
		if (n == cap) {
			int *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		v[n++] = (int)x;
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_int);
	*ret = v;
	*ret_n = n;
	return 0;
}

int sockmig_proc_fd_list(struct sockmig_proc *p, int **ret_fds, size_t *ret_n)
{
	char path[64];
	int r;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)p->pid);
	r = list_numeric_dir(path, ret_fds, ret_n);
	if (r == -EACCES || r == -EPERM)
		return sm_fail(r, "pid %d: not allowed to list its fds (not your process?)", (int)p->pid);
	if (r == -ENOENT)
		return sm_fail(-ESRCH, "pid %d has exited", (int)p->pid);
	if (r < 0)
		return sm_fail(r, "pid %d: cannot list its fds: %s", (int)p->pid, strerror(-r));
	return 0;
}

int sockmig_proc_fd_get(struct sockmig_proc *p, int fd, int *ret_fd)
{
	int r = (int)syscall(SYS_pidfd_getfd, p->pidfd, fd, 0);

	if (r >= 0) {
		*ret_fd = r;
		return 0;
	}
	switch (errno) {
	case EBADF:
		return sm_fail(-EBADF, "pid %d has no fd %d", (int)p->pid, fd);
	case EPERM:
		return sm_fail(-EPERM, "pid %d fd %d: not allowed to take it (not your process?)", (int)p->pid, fd);
	case ESRCH:
		return sm_fail(-ESRCH, "pid %d has exited", (int)p->pid);
	default:
		return sm_fail(-errno, "pid %d fd %d: pidfd_getfd: %s", (int)p->pid, fd, strerror(errno));
	}
}

/* How long a thread may take to reach its stop: a thread in uninterruptible
 * sleep (D state, e.g. on a hung NFS server) stops only when it wakes. */
#define STOP_TIMEOUT_NS (5ull * 1000000000ull)

/* Wait until a seized thread reports a stop. A signal that arrives first
 * shows as a signal-delivery stop: keep it to hand back on resume, the thread
 * is stopped all the same. There is no fd that becomes ready on a ptrace
 * stop, so this polls waitpid with a short sleep, bounded by the deadline. */
static int wait_stopped(struct thread_stop *t, uint64_t deadline)
{
	for (;;) {
		struct timespec pause = { 0, 200000 };
		int status;
		pid_t w = waitpid(t->tid, &status, __WALL | WNOHANG);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0) {
			if (sm_now_ns() > deadline)
				return -ETIMEDOUT;
			nanosleep(&pause, NULL);
			continue;
		}
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return -ESRCH;
		if (!WIFSTOPPED(status))
			continue;
		if ((status >> 16) == PTRACE_EVENT_STOP)
			return 0;
		/* signal-delivery stop: the signal is not delivered until we say */
		t->pending_sig = WSTOPSIG(status);
		return 0;
	}
}

static bool thread_known(const struct sockmig_proc *p, pid_t tid)
{
	for (size_t i = 0; i < p->n_threads; i++)
		if (p->threads[i].tid == tid)
			return true;
	return false;
}

/* Seize and stop one thread, appended to p->threads (room is there). */
static int stop_thread(struct sockmig_proc *p, pid_t tid, uint64_t deadline)
{
	struct thread_stop *t = &p->threads[p->n_threads];
	int r;

	*t = (struct thread_stop){ .tid = tid };
	if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0) {
		r = -errno;
		if (r == -ESRCH)
			return 0; /* the thread ended meanwhile */
		if (r == -EPERM)
			return sm_fail(r, "pid %d: not allowed to stop it (not your process, or already traced)",
				       (int)p->pid);
		return sm_fail(r, "pid %d thread %d: cannot stop it: %s", (int)p->pid, (int)tid, strerror(-r));
	}
	p->n_threads++;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
		return sm_fail(-errno, "pid %d thread %d: did not stop: %s", (int)p->pid, (int)tid, strerror(errno));
	r = wait_stopped(t, deadline);
	if (r == -ETIMEDOUT)
		return sm_fail(r, "pid %d thread %d did not stop within 5 s (uninterruptible sleep?)", (int)p->pid,
			       (int)tid);
	if (r < 0)
		return sm_fail(r, "pid %d thread %d: did not stop: %s", (int)p->pid, (int)tid, strerror(-r));
	return 0;
}

int sockmig_proc_stop(struct sockmig_proc *p)
{
	uint64_t deadline = sm_now_ns() + STOP_TIMEOUT_NS;
	char path[64];
	size_t cap = 0;
	int r;

	if (p->threads)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)p->pid);
	/* A running thread may create threads while we seize the others: list
	 * again until a listing shows nothing new (all known ones are stopped
	 * then, so none can create more). */
	for (int round = 0; round < 16; round++) {
		_cleanup_free_ int *tids = NULL;
		size_t n = 0, fresh = 0;

		r = list_numeric_dir(path, &tids, &n);
		if (r < 0) {
			sm_fail(r == -ENOENT ? -ESRCH : r, "pid %d: cannot list its threads: %s", (int)p->pid,
				strerror(-r));
			goto out_detach;
		}
		if (n == 0 && round == 0) {
			r = sm_fail(-ESRCH, "pid %d has exited", (int)p->pid);
			goto out_detach;
		}
		for (size_t i = 0; i < n; i++)
			fresh += !thread_known(p, tids[i]);
		if (fresh == 0)
			return 0;
		if (p->n_threads + fresh > cap) {
			struct thread_stop *nt = realloc(p->threads, (p->n_threads + fresh) * sizeof(*nt));

			if (!nt) {
				r = sm_fail(-ENOMEM, "pid %d: out of memory while stopping its threads", (int)p->pid);
				goto out_detach;
			}
			p->threads = nt;
			cap = p->n_threads + fresh;
		}
		for (size_t i = 0; i < n; i++) {
			if (thread_known(p, tids[i]))
				continue;
			r = stop_thread(p, tids[i], deadline);
			if (r < 0)
				goto out_detach;
		}
	}
	r = sm_fail(-EAGAIN, "pid %d keeps creating threads; it could not be stopped", (int)p->pid);

out_detach:
	if (!p->threads) /* resume keys on threads != NULL */
		p->threads = calloc(1, sizeof(*p->threads));
	sockmig_proc_resume(p);
	return r;
}

int sockmig_proc_resume(struct sockmig_proc *p)
{
	int r = 0;

	if (!p->threads)
		return 0;
	for (size_t i = 0; i < p->n_threads; i++) {
		struct thread_stop *t = &p->threads[i];

		if (ptrace(PTRACE_DETACH, t->tid, 0, (void *)(long)t->pending_sig) < 0 && errno != ESRCH && !r)
			r = sm_fail(-errno, "pid %d thread %d: cannot resume it: %s", (int)p->pid, (int)t->tid,
				    strerror(errno));
	}
	free(p->threads);
	p->threads = NULL;
	p->n_threads = 0;
	return r;
}

int sockmig_fd_describe(int local_fd, int fd, struct sockmig_fd_info *ret)
{
	struct sockmig_fd_info info = { .fd = fd, .tcp_state = -1 };
	socklen_t len = sizeof(int);
	struct stat st;
	int fl;

	if (fstat(local_fd, &st) < 0)
		return sm_fail(-errno, "fd %d: fstat: %s", fd, strerror(errno));
	fl = fcntl(local_fd, F_GETFL);
	info.status_flags = fl < 0 ? 0 : fl;
	if (!S_ISSOCK(st.st_mode)) {
		info.kind = SOCKMIG_FD_NOT_SOCKET;
		*ret = info;
		return 0;
	}
	if (getsockopt(local_fd, SOL_SOCKET, SO_DOMAIN, &info.family, &len) < 0 ||
	    (len = sizeof(int), getsockopt(local_fd, SOL_SOCKET, SO_TYPE, &info.type, &len) < 0) ||
	    (len = sizeof(int), getsockopt(local_fd, SOL_SOCKET, SO_PROTOCOL, &info.protocol, &len) < 0))
		return sm_fail(-errno, "fd %d: cannot tell what socket it is: %s", fd, strerror(errno));

	switch (info.family) {
	case AF_INET:
	case AF_INET6:
		if (info.type == SOCK_RAW)
			info.kind = SOCKMIG_FD_RAW;
		else if (info.type == SOCK_STREAM && info.protocol == IPPROTO_TCP)
			info.kind = SOCKMIG_FD_TCP;
		else if (info.type == SOCK_DGRAM && info.protocol == IPPROTO_UDP)
			info.kind = SOCKMIG_FD_UDP;
		else
			info.kind = SOCKMIG_FD_OTHER_SOCKET;
		break;
	case AF_UNIX:
		info.kind = SOCKMIG_FD_UNIX;
		break;
	case AF_NETLINK:
		info.kind = SOCKMIG_FD_NETLINK;
		break;
	case AF_PACKET:
		info.kind = SOCKMIG_FD_PACKET;
		break;
	default:
		info.kind = SOCKMIG_FD_OTHER_SOCKET;
		break;
	}
	if (info.kind == SOCKMIG_FD_TCP) {
		struct tcp_info ti;
		socklen_t tlen = sizeof(ti);

		if (getsockopt(local_fd, IPPROTO_TCP, TCP_INFO, &ti, &tlen) < 0)
			return sm_fail(-errno, "fd %d: TCP_INFO: %s", fd, strerror(errno));
		info.tcp_state = ti.tcpi_state;
	}
	*ret = info;
	return 0;
}

const char *sockmig_fd_kind_name(enum sockmig_fd_kind kind)
{
	switch (kind) {
	case SOCKMIG_FD_NOT_SOCKET:
		return "not a socket";
	case SOCKMIG_FD_TCP:
		return "TCP socket";
	case SOCKMIG_FD_UDP:
		return "UDP socket";
	case SOCKMIG_FD_UNIX:
		return "unix socket";
	case SOCKMIG_FD_NETLINK:
		return "netlink socket";
	case SOCKMIG_FD_RAW:
		return "raw socket";
	case SOCKMIG_FD_PACKET:
		return "packet socket";
	case SOCKMIG_FD_OTHER_SOCKET:
		break;
	}
	return "socket of an unsupported protocol";
}

const char *sockmig_tcp_state_name(int state)
{
	static const char *const names[] = {
		[TCP_ESTABLISHED] = "ESTABLISHED", [TCP_SYN_SENT] = "SYN_SENT",
		[TCP_SYN_RECV] = "SYN_RECV",       [TCP_FIN_WAIT1] = "FIN_WAIT1",
		[TCP_FIN_WAIT2] = "FIN_WAIT2",     [TCP_TIME_WAIT] = "TIME_WAIT",
		[TCP_CLOSE] = "CLOSE",             [TCP_CLOSE_WAIT] = "CLOSE_WAIT",
		[TCP_LAST_ACK] = "LAST_ACK",       [TCP_LISTEN] = "LISTEN",
		[TCP_CLOSING] = "CLOSING",
	};

	if (state >= 0 && (size_t)state < ARRAY_SIZE(names) && names[state])
		return names[state];
	return "UNKNOWN";
}

/* Whether sockmig_proc_stop() holds the process stopped: the checkpoint reads
 * registers only from a process it knows to be frozen. */
int sockmig_proc_is_stopped(const struct sockmig_proc *p)
{
	return p->threads != NULL;
}
