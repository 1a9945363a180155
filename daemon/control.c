/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control socket: the local CLI's requests (docs/cluster.md, "Control
 * protocol"). One request per connection: a line "VERB [ARG...]"; the answer
 * is lines of key=value, and a last line "ok" or "error SENTENCE".
 *
 * The caller is who the kernel says it is (SO_PEERCRED), recorded with every
 * request. A request whose table entry has CTL_PID names a process in its
 * first argument: before its handler runs, the dispatcher opens a pidfd on
 * it and checks that the caller is root or owns the process (every uid of
 * it is the caller's); the handler gets req->target and req->pidfd.
 *
 * Adding a request: a function int fn(struct ctl_req *) that prints its
 * lines with ctl_send() and returns 0, or -errno after ctl_fail() (or with
 * the library's sentence), and a line in ctl_requests[].
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "daemon.h"
#include "routes.h"
#include "sockmig/proc.h"
#include "sockmig/sockmig.h"

#define CTL_LINE_MAX 4096
#define CTL_IO_TIMEOUT_MS 5000

enum {
	CTL_PID = 1u << 0, /* argv[1] is a pid the caller must be allowed to act on */
};

int ctl_send(struct ctl_req *r, const char *fmt, ...)
{
	char line[CTL_LINE_MAX];
	size_t off = 0;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	while (off < (size_t)n) {
		ssize_t k = send(r->fd, line + off, (size_t)n - off, MSG_NOSIGNAL);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		off += (size_t)k;
	}
	return 0;
}

int ctl_fail(struct ctl_req *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	return err;
}

/* ---- requests ---- */

struct ping_job {
	struct daemon *d;
	const struct sockmig_member *m;
	struct ping_result res;
	pthread_t thread;
	bool started;
};

static void *ping_thread(void *arg)
{
	struct ping_job *j = arg;
	unsigned t = j->d->cfg->timeout_ms < DAEMON_PING_TIMEOUT_MS ? j->d->cfg->timeout_ms : DAEMON_PING_TIMEOUT_MS;

	peer_ping(j->d, j->m, t, &j->res);
	return NULL;
}

static void send_member(struct ctl_req *r, const struct sockmig_member *m, const struct ping_result *res, bool self)
{
	char name[80], q[700];

	kv_quote(m->name, name, sizeof(name));
	if (self)
		ctl_send(r, "member name=%s address=%s port=%u self=yes state=self", name, m->addr_text, m->port);
	else if (res->up)
		ctl_send(r, "member name=%s address=%s port=%u self=no state=up rtt_us=%llu connect_us=%llu", name,
			 m->addr_text, m->port, (unsigned long long)(res->rtt_ns / 1000),
			 (unsigned long long)(res->connect_ns / 1000));
	else
		ctl_send(r, "member name=%s address=%s port=%u self=no state=down error=%s", name, m->addr_text, m->port,
			 kv_quote(res->error, q, sizeof(q)));
}

/* Every member, and whether its daemon answers an authenticated ping now:
 * all pinged at once (at most 32 at a time), so the answer takes one
 * round trip, or the ping timeout for a node that does not answer. */
static int req_nodes(struct ctl_req *r)
{
	const struct sockmig_config *cfg = r->d->cfg;
	struct ping_job *jobs = calloc(cfg->n_members, sizeof(*jobs));
	char cl[80];

	if (!jobs)
		return ctl_fail(r, -ENOMEM, "out of memory");
	for (size_t base = 0; base < cfg->n_members; base += 32) {
		size_t end = base + 32 < cfg->n_members ? base + 32 : cfg->n_members;

		for (size_t i = base; i < end; i++) {
			jobs[i].d = r->d;
			jobs[i].m = &cfg->members[i];
			if (!strcmp(cfg->members[i].name, cfg->node))
				continue;
			if (pthread_create(&jobs[i].thread, NULL, ping_thread, &jobs[i]) == 0)
				jobs[i].started = true;
			else
				snprintf(jobs[i].res.error, sizeof(jobs[i].res.error), "cannot start a thread to ping it");
		}
		for (size_t i = base; i < end; i++) {
			if (jobs[i].started)
				pthread_join(jobs[i].thread, NULL);
		}
	}
	ctl_send(r, "cluster name=%s node=%s members=%zu", kv_quote(cfg->cluster, cl, sizeof(cl)), cfg->node,
		 cfg->n_members);
	for (size_t i = 0; i < cfg->n_members; i++)
		send_member(r, &cfg->members[i], &jobs[i].res, !strcmp(cfg->members[i].name, cfg->node));
	free(jobs);
	return 0;
}

static int req_ping(struct ctl_req *r)
{
	const struct sockmig_config *cfg = r->d->cfg;
	const struct sockmig_member *m = sockmig_config_member(cfg, r->argv[1]);
	struct ping_result res;

	if (!m)
		return ctl_fail(r, -ENOENT, "'%.63s' is not a member of cluster '%s'", r->argv[1], cfg->cluster);
	if (!strcmp(m->name, cfg->node)) {
		send_member(r, m, NULL, true);
		return 0;
	}
	peer_ping(r->d, m, cfg->timeout_ms < DAEMON_PING_TIMEOUT_MS ? cfg->timeout_ms : DAEMON_PING_TIMEOUT_MS, &res);
	if (!res.up)
		return ctl_fail(r, -EHOSTUNREACH, "%s", res.error);
	send_member(r, m, &res, false);
	return 0;
}

/* What sockmig would see of a process: its owner and its sockets. */
static int req_inspect(struct ctl_req *r)
{
	struct sockmig_proc *p;
	unsigned counts[SOCKMIG_FD_OTHER_SOCKET + 1] = { 0 };
	char path[64], comm[64] = "?", q[80];
	int *fds = NULL, k;
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)r->target);
	f = fopen(path, "re");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	k = sockmig_proc_open(r->target, &p);
	if (k < 0)
		return k;
	k = sockmig_proc_fd_list(p, &fds, &n);
	for (size_t i = 0; k >= 0 && i < n; i++) {
		struct sockmig_fd_info info;
		int local;

		if (sockmig_proc_fd_get(p, fds[i], &local) < 0)
			continue;
		if (sockmig_fd_describe(local, fds[i], &info) == 0 && info.kind <= SOCKMIG_FD_OTHER_SOCKET)
			counts[info.kind]++;
		close(local);
	}
	free(fds);
	sockmig_proc_free(p);
	if (k < 0)
		return k;
	ctl_send(r, "process pid=%d comm=%s fds=%zu tcp=%u udp=%u other_sockets=%u", (int)r->target,
		 kv_quote(comm, q, sizeof(q)), n, counts[SOCKMIG_FD_TCP], counts[SOCKMIG_FD_UDP],
		 counts[SOCKMIG_FD_UNIX] + counts[SOCKMIG_FD_NETLINK] + counts[SOCKMIG_FD_RAW] +
			 counts[SOCKMIG_FD_PACKET] + counts[SOCKMIG_FD_OTHER_SOCKET]);
	return 0;
}

static const struct ctl_request {
	const char *verb;
	int min_args, max_args; /* after the verb */
	unsigned flags;
	const char *usage;
	int (*fn)(struct ctl_req *r);
} ctl_requests[] = {
	{ "nodes", 0, 0, 0, "nodes", req_nodes },
	{ "ping", 1, 1, 0, "ping NODE", req_ping },
	{ "inspect", 1, 1, CTL_PID, "inspect PID", req_inspect },
	{ "migrate", 2, 3, CTL_PID, "migrate PID NODE [auto|move|forward|rewrite]", ctl_migrate },
	{ "run", 4, CTL_ARGS_MAX - 1, 0, "run NAME|- ADDRESS|- CWD ARG...", ctl_run },
	{ "ps", 0, 1, 0, "ps [all]", ctl_ps },
	{ "flows", 0, 1, 0, "flows [all]", ctl_flows },
};

/* ---- the caller and its target ---- */

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Root may act on any process, anyone else on processes whose every uid
 * (real, effective, saved, filesystem) is theirs: the rule of ptrace, which
 * is what a move does to the process. */
static int check_target(struct ctl_req *r)
{
	char path[64], line[256], *end;
	unsigned long uids[4] = { 0 };
	bool found = false;
	long v;
	FILE *f;

	errno = 0;
	v = strtol(r->argv[1], &end, 10);
	if (errno || end == r->argv[1] || *end || v <= 0 || v > INT_MAX)
		return ctl_fail(r, -EINVAL, "'%.40s' is not a process id", r->argv[1]);
	r->target = (pid_t)v;
	r->pidfd = pidfd_open_(r->target);
	if (r->pidfd < 0)
		return ctl_fail(r, -errno, errno == ESRCH ? "there is no process %d" : "cannot open process %d: %s",
				(int)r->target, strerror(errno));
	/* Read after the pidfd is open: if the pid was reused since, the
	 * check below finds the pidfd's process gone. */
	snprintf(path, sizeof(path), "/proc/%d/status", (int)r->target);
	f = fopen(path, "re");
	if (!f)
		return ctl_fail(r, -ESRCH, "there is no process %d", (int)r->target);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Uid: %lu %lu %lu %lu", &uids[0], &uids[1], &uids[2], &uids[3]) == 4) {
			found = true;
			break;
		}
	}
	fclose(f);
	if (!found)
		return ctl_fail(r, -EIO, "cannot read the owner of process %d", (int)r->target);
	if (syscall(SYS_pidfd_send_signal, r->pidfd, 0, NULL, 0) < 0)
		return ctl_fail(r, -ESRCH, "process %d exited", (int)r->target);
	if (r->uid == 0)
		return 0;
	for (int i = 0; i < 4; i++) {
		if (uids[i] != r->uid)
			return ctl_fail(r, -EPERM,
					"uid %u may not act on process %d, which belongs to uid %lu: only root or the "
					"process's owner may",
					(unsigned)r->uid, (int)r->target, uids[i]);
	}
	return 0;
}

/* One line, bounded in length and time. */
static int read_request(int fd, char *buf, size_t size)
{
	size_t got = 0;

	for (;;) {
		ssize_t n = recv(fd, buf + got, size - 1 - got, 0);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -EPIPE;
		got += (size_t)n;
		buf[got] = '\0';
		nl = memchr(buf, '\n', got);
		if (nl) {
			*nl = '\0';
			if (nl > buf && nl[-1] == '\r')
				nl[-1] = '\0';
			return 0;
		}
		if (got == size - 1)
			return -EMSGSIZE;
	}
}

void control_serve(struct conn *c)
{
	struct ctl_req r = { .d = c->d, .fd = c->fd, .pidfd = -1 };
	struct timeval tv = { .tv_sec = CTL_IO_TIMEOUT_MS / 1000 };
	const struct ctl_request *h = NULL;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char line[CTL_LINE_MAX], q[700], reqq[200], *save = NULL, *tok;
	int k;

	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_kv("err", "event=refuse via=control reason=%s", kv_quote(strerror(errno), q, sizeof(q)));
		return;
	}
	r.uid = cred.uid;
	r.gid = cred.gid;
	r.pid = cred.pid;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	k = read_request(c->fd, line, sizeof(line));
	if (k < 0) {
		log_kv("warn", "event=bad-request via=control uid=%u pid=%d reason=%s", (unsigned)r.uid, (int)r.pid,
		       kv_quote(k == -EMSGSIZE ? "request line too long"
				: k == -ETIMEDOUT ? "no request line in time"
				: k == -EPIPE ? "closed before a whole request line" : strerror(-k),
				q, sizeof(q)));
		if (k == -EMSGSIZE)
			ctl_send(&r, "error a request is one line of at most %d bytes", CTL_LINE_MAX - 1);
		return;
	}
	kv_quote(line, reqq, sizeof(reqq));
	for (tok = strtok_r(line, " \t", &save); tok && r.argc < CTL_ARGS_MAX; tok = strtok_r(NULL, " \t", &save))
		r.argv[r.argc++] = tok;
	log_kv("info", "event=request via=control uid=%u pid=%d request=%s", (unsigned)r.uid, (int)r.pid, reqq);
	if (r.argc == 0) {
		k = ctl_fail(&r, -EINVAL, "empty request");
		goto answer;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ctl_requests); i++) {
		if (!strcmp(ctl_requests[i].verb, r.argv[0]))
			h = &ctl_requests[i];
	}
	if (!h) {
		k = ctl_fail(&r, -EOPNOTSUPP, "'%.40s' is not a request this daemon knows", r.argv[0]);
		goto answer;
	}
	if (tok || r.argc - 1 < h->min_args || r.argc - 1 > h->max_args) {
		k = ctl_fail(&r, -EINVAL, "usage: %s", h->usage);
		goto answer;
	}
	if (h->flags & CTL_PID) {
		k = check_target(&r);
		if (k < 0) {
			log_kv("warn", "event=deny via=control uid=%u pid=%d request=%s reason=%s", (unsigned)r.uid,
			       (int)r.pid, reqq, kv_quote(r.error, q, sizeof(q)));
			goto answer;
		}
	}
	sockmig_error_clear();
	k = h->fn(&r);
	if (k < 0 && !r.error[0])
		snprintf(r.error, sizeof(r.error), "%s", sockmig_error()[0] ? sockmig_error() : strerror(-k));
answer:
	if (r.pidfd >= 0)
		close(r.pidfd);
	if (k < 0) {
		/* The sentence is a whole line: no newline may cut it. */
		for (char *p = r.error; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
		ctl_send(&r, "error %s", r.error);
	} else {
		ctl_send(&r, "ok");
	}
}
