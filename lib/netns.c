/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <linux/magic.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "netns.h"
#include "util.h"

bool sm_netns_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > SM_NETNS_NAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	return !strchr(name, '/');
}

static int netns_path(const char *name, char *buf, size_t size)
{
	if (!sm_netns_name_valid(name))
		return sm_fail(-EINVAL, "'%s' is not a valid network namespace name", name);
	snprintf(buf, size, "%s/%s", SM_NETNS_RUN_DIR, name);
	return 0;
}

/*
 * Like `ip netns add`: make /run/netns a shared mount point, so that when a
 * namespace file is unmounted here the copies that other mount namespaces
 * (e.g. those of `ip netns exec`) inherited go too, and the namespace can be
 * freed. The first time, /run/netns is not a mount point and MS_SHARED fails
 * with EINVAL; bind-mounting it onto itself makes it one.
 */
static int netns_run_dir_prepare(void)
{
	bool made_mount = false;

	if (mkdir(SM_NETNS_RUN_DIR, 0755) < 0 && errno != EEXIST)
		return sm_fail(-errno, "cannot create %s: %s", SM_NETNS_RUN_DIR, strerror(errno));
	for (int i = 0; i < 2; i++) {
		if (mount("", SM_NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
			return 0;
		if (errno != EINVAL || made_mount)
			break;
		if (mount(SM_NETNS_RUN_DIR, SM_NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
			break;
		made_mount = true;
	}
	return sm_fail(-errno, "cannot make %s a shared mount point: %s", SM_NETNS_RUN_DIR, strerror(errno));
}

int sm_netns_create(const char *name)
{
	char path[sizeof(SM_NETNS_RUN_DIR) + SM_NETNS_NAME_MAX + 2];
	int fd, status, r;
	pid_t pid;

	r = netns_path(name, path, sizeof(path));
	if (r < 0)
		return r;
	r = netns_run_dir_prepare();
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		if (r == -EEXIST)
			return sm_fail(r, "network namespace '%s' exists already", name);
		return sm_fail(r, "cannot create %s: %s", path, strerror(errno));
	}
	close(fd);

	/* A child unshares, so the caller's threads never change namespace;
	 * the bind mount keeps the namespace alive after the child is gone. */
	pid = fork();
	if (pid < 0) {
		r = -errno;
		unlink(path);
		return sm_fail(r, "cannot create network namespace '%s': fork: %s", name, strerror(-r));
	}
	if (pid == 0) {
		if (unshare(CLONE_NEWNET) < 0)
			_exit(errno & 0xff);
		if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0)
			_exit(errno & 0xff);
		_exit(0);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			r = -errno;
			unlink(path);
			return sm_fail(r, "cannot create network namespace '%s': waitpid: %s", name, strerror(-r));
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		r = WIFEXITED(status) ? -WEXITSTATUS(status) : -ECHILD;
		unlink(path);
		return sm_fail(r, "cannot create network namespace '%s': %s", name, strerror(-r));
	}
	return 0;
}

int sm_netns_open(const char *name)
{
	char path[sizeof(SM_NETNS_RUN_DIR) + SM_NETNS_NAME_MAX + 2];
	struct statfs sfs;
	int fd, r;

	r = netns_path(name, path, sizeof(path));
	if (r < 0)
		return r;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		if (r == -ENOENT)
			return sm_fail(r, "network namespace '%s' does not exist", name);
		return sm_fail(r, "cannot open network namespace '%s': %s", name, strerror(-r));
	}
	/* A plain file: a crash came between creating it and the bind mount. */
	if (fstatfs(fd, &sfs) < 0 || sfs.f_type != NSFS_MAGIC) {
		close(fd);
		return sm_fail(-ENOMEDIUM, "network namespace '%s' is not mounted on %s", name, path);
	}
	return fd;
}

int sm_netns_delete(const char *name)
{
	char path[sizeof(SM_NETNS_RUN_DIR) + SM_NETNS_NAME_MAX + 2];
	int r;

	r = netns_path(name, path, sizeof(path));
	if (r < 0)
		return r;
	/* EINVAL: not a mount point, i.e. a file left by a crash before the
	 * bind mount; it is still ours to unlink. */
	if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return sm_fail(-errno, "cannot unmount network namespace '%s': %s", name, strerror(errno));
	if (unlink(path) < 0) {
		r = -errno;
		if (r == -ENOENT)
			return sm_fail(r, "network namespace '%s' does not exist", name);
		return sm_fail(r, "cannot remove %s: %s", path, strerror(-r));
	}
	return 0;
}

int sm_netns_inode(int nsfd, uint64_t *ret_ino)
{
	struct stat st;

	if (fstat(nsfd, &st) < 0)
		return sm_fail(-errno, "cannot stat network namespace fd %d: %s", nsfd, strerror(errno));
	*ret_ino = (uint64_t)st.st_ino;
	return 0;
}

int sm_netns_enter(int nsfd, int *ret_saved)
{
	int saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);

	if (saved < 0)
		return sm_fail(-errno, "cannot open this thread's network namespace: %s", strerror(errno));
	if (setns(nsfd, CLONE_NEWNET) < 0) {
		int r = -errno;
		close(saved);
		return sm_fail(r, "cannot enter network namespace (fd %d): %s", nsfd, strerror(-r));
	}
	*ret_saved = saved;
	return 0;
}

int sm_netns_leave(int saved)
{
	int r = 0;

	if (setns(saved, CLONE_NEWNET) < 0)
		r = sm_fail(-errno, "cannot return to the original network namespace: %s", strerror(errno));
	close(saved);
	return r;
}

int sm_netns_socket(int nsfd, int domain, int type, int protocol)
{
	int saved, fd, r, err = 0;

	r = sm_netns_enter(nsfd, &saved);
	if (r < 0)
		return r;
	fd = socket(domain, type | SOCK_CLOEXEC, protocol);
	if (fd < 0)
		err = -errno;
	r = sm_netns_leave(saved);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	if (fd < 0)
		return sm_fail(err, "cannot create a socket (family %d) in a network namespace: %s", domain,
			       strerror(-err));
	return fd;
}

int sm_netns_sysctl_write(int nsfd, const char *path, const char *value)
{
	char full[256];
	int saved, r, w;

	snprintf(full, sizeof(full), "/proc/sys/%s", path);
	/* /proc/sys/net shows the namespace of the thread that opens the
	 * file, so opening it while inside is enough. */
	r = sm_netns_enter(nsfd, &saved);
	if (r < 0)
		return r;
	w = sm_write_file(full, value);
	r = sm_netns_leave(saved);
	if (r < 0)
		return r;
	if (w < 0)
		return sm_fail(w, "cannot set sysctl %s to %s: %s", path, value, strerror(-w));
	return 0;
}

int sm_netns_run(int nsfd, int (*fn)(void *arg), void *arg)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return sm_fail(-errno, "cannot fork to run in a network namespace: %s", strerror(errno));
	if (pid == 0) {
		int r;
		if (setns(nsfd, CLONE_NEWNET) < 0)
			_exit(errno & 0xff);
		r = fn(arg);
		_exit(r < 0 ? (-r) & 0xff : r & 0xff);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return sm_fail(-errno, "cannot wait for child %d: %s", (int)pid, strerror(errno));
	}
	if (!WIFEXITED(status))
		return sm_fail(-ECHILD, "child %d running in a network namespace died of signal %d", (int)pid,
			       WTERMSIG(status));
	/* A nonzero status is fn's -errno folded into 8 bits. */
	return -WEXITSTATUS(status);
}

int sm_netns_enter_for_exec(int nsfd, const char *name)
{
	unsigned long flags = 0;
	struct statvfs sv;

	if (setns(nsfd, CLONE_NEWNET) < 0)
		return sm_fail(-errno, "cannot enter network namespace '%s': %s", name, strerror(errno));
	if (unshare(CLONE_NEWNS) < 0)
		return sm_fail(-errno, "cannot make a mount namespace for '%s': %s", name, strerror(errno));
	/* Keep our /sys remount from propagating back to the machine. */
	if (mount("", "/", "none", MS_SLAVE | MS_REC, NULL) < 0)
		return sm_fail(-errno, "cannot make / a slave mount for '%s': %s", name, strerror(errno));
	/* sysfs shows the interfaces of the namespace current at mount time.
	 * If the old one cannot be detached, overlay it (read-only if it was,
	 * since a read-write sysfs cannot shadow a read-only one). */
	if (umount2("/sys", MNT_DETACH) < 0 && statvfs("/sys", &sv) == 0 && (sv.f_flag & ST_RDONLY))
		flags = MS_RDONLY;
	if (mount(name, "/sys", "sysfs", flags, NULL) < 0)
		return sm_fail(-errno, "cannot mount /sys for network namespace '%s': %s", name, strerror(errno));
	/* The fresh sysfs has an empty /sys/fs/cgroup; tools such as ss look
	 * for cgroup2 there. Best effort: a machine without cgroup2 still works. */
	mount("cgroup2", "/sys/fs/cgroup", "cgroup2", flags, NULL);
	return 0;
}

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static bool pid_in_netns(const char *pid, uint64_t ino)
{
	char path[600];
	struct dirent *de;
	struct stat st;
	bool found = false;
	DIR *d;

	/* setns() is per thread, so every thread has to be looked at. */
	snprintf(path, sizeof(path), "/proc/%s/task", pid);
	d = opendir(path);
	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/task/%s/ns/net", pid, de->d_name);
		if (stat(path, &st) == 0 && (uint64_t)st.st_ino == ino)
			found = true;
	}
	closedir(d);
	return found;
}

/* The pids found by one scan, with a pidfd each. */
struct netns_procs {
	int *fds;
	pid_t *pids;
	size_t n, cap;
};

static void netns_procs_close(struct netns_procs *p)
{
	for (size_t i = 0; i < p->n; i++)
		close(p->fds[i]);
	p->n = 0;
}

static int netns_procs_add(struct netns_procs *p, int fd, pid_t pid)
{
	if (p->n == p->cap) {
		size_t cap = p->cap ? p->cap * 2 : 64;
		int *fds = realloc(p->fds, cap * sizeof(*fds));
		pid_t *pids;

		if (!fds)
			return -ENOMEM;
		p->fds = fds;
		pids = realloc(p->pids, cap * sizeof(*pids));
		if (!pids)
			return -ENOMEM;
		p->pids = pids;
		p->cap = cap;
	}
	p->fds[p->n] = fd;
	p->pids[p->n] = pid;
	p->n++;
	return 0;
}

/*
 * Send sig to every process with a thread inside the namespace; p gets their
 * pidfds. The pidfd is opened before the namespace is checked: from then on
 * it names that one process, so if the pid is reused meanwhile the check
 * sees the new process, and the signal (sent through the pidfd only) can
 * never reach a process that was not checked.
 */
static int netns_signal_all(uint64_t ino, int sig, struct netns_procs *p)
{
	struct dirent *de;
	pid_t self = getpid();
	int r = 0;
	DIR *d = opendir("/proc");

	if (!d)
		return sm_fail(-errno, "cannot read /proc: %s", strerror(errno));
	while ((de = readdir(d))) {
		pid_t pid;
		int fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (pid == self)
			continue;
		fd = pidfd_open_(pid);
		if (fd < 0)
			continue; /* gone already */
		if (!pid_in_netns(de->d_name, ino) || (pidfd_signal(fd, sig) < 0 && errno == ESRCH)) {
			close(fd);
			continue;
		}
		r = netns_procs_add(p, fd, pid);
		if (r < 0) {
			close(fd);
			r = sm_fail(r, "out of memory listing processes");
			break;
		}
	}
	closedir(d);
	return r;
}

/* Wait until every pidfd is readable (its process ended) or the deadline. */
static int wait_pidfds(const int *fds, size_t n, uint64_t deadline)
{
	struct pollfd pfd;

	for (size_t i = 0; i < n; i++) {
		pfd.fd = fds[i];
		pfd.events = POLLIN;
		for (;;) {
			uint64_t now = sm_now_ns();
			int left = now >= deadline ? 0 : (int)((deadline - now + 999999ull) / 1000000ull);
			int r = poll(&pfd, 1, left);
			if (r > 0)
				break;
			if (r == 0)
				return -ETIMEDOUT;
			if (errno != EINTR)
				return -errno;
		}
	}
	return 0;
}

/*
 * Scan, signal, wait, and scan again until a scan finds nobody: processes
 * may fork while we look, and a scan only sees who existed when it read
 * /proc. SIGTERM until term_ms have passed, SIGKILL after that.
 */
int sm_netns_kill_all(int nsfd, int term_ms, int kill_ms)
{
	struct netns_procs p = { 0 };
	uint64_t ino, start, term_end, end;
	int total = 0, r;

	r = sm_netns_inode(nsfd, &ino);
	if (r < 0)
		return r;
	start = sm_now_ns();
	term_end = start + (uint64_t)term_ms * 1000000ull;
	end = term_end + (uint64_t)kill_ms * 1000000ull;
	for (;;) {
		uint64_t now = sm_now_ns();
		bool late = now >= end;

		r = netns_signal_all(ino, now < term_end ? SIGTERM : SIGKILL, &p);
		if (r < 0)
			break;
		if (p.n == 0)
			break;
		if (late) {
			char path[64], comm[64] = "";
			pid_t pid = p.pids[0];

			snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
			if (sm_read_file(path, comm, sizeof(comm)) < 0)
				snprintf(comm, sizeof(comm), "?");
			comm[strcspn(comm, "\n")] = '\0';
			r = sm_fail(-EBUSY, "process %d (%s) in a network namespace is still running %d ms after SIGKILL",
				    (int)pid, comm, kill_ms);
			break;
		}
		total += (int)p.n;
		r = wait_pidfds(p.fds, p.n, now < term_end ? term_end : end);
		netns_procs_close(&p);
		if (r < 0 && r != -ETIMEDOUT) {
			r = sm_fail(r, "cannot wait for processes in a network namespace: %s", strerror(-r));
			break;
		}
		r = 0;
	}
	netns_procs_close(&p);
	free(p.fds);
	free(p.pids);
	return r < 0 ? r : total;
}
