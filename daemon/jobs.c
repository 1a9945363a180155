/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What runs on this node under sockmig: jobs started by `sockmig run` (each
 * with an address of its own on the cluster segment, so that its flows can
 * move with it) and processes moved here from another node. The daemon is
 * the parent of every one of them (the job itself, or the init of the pid
 * namespace a moved process was restored in) and reaps them: a pidfd per
 * child in the main loop's epoll, so the reaper never waits for anything
 * but an exit (a waitpid(-1) would steal the ptrace stops a migration waits
 * for on another thread).
 *
 * The list is this daemon's own, in memory: the truth about a job lives on
 * the node that runs it, and its record (name, address, where it started)
 * travels with it in the migrate request (migrate.c). `ps all` asks every
 * member (the peer request `jobs`).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "routes.h"
#include "sockmig/flow.h"
#include "sockmig/sockmig.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif


/* ---- the cluster interface ---- */

static size_t alen_of(int family)
{
	return family == AF_INET ? 4 : 16;
}

static unsigned prefix_of_mask(const struct sockaddr *sa)
{
	const uint8_t *m = sa->sa_family == AF_INET ? (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr
						    : (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	unsigned n = 0;

	for (size_t i = 0; i < alen_of(sa->sa_family); i++)
		n += (unsigned)__builtin_popcount(m[i]);
	return n;
}

static const uint8_t *sa_addr(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET ? (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr
					: (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
}

/* No `interface` line in the config: the member address tells which one it
 * is, on every node alike. */
int cluster_iface(struct daemon *d, char *ifname, size_t size, unsigned *ret_prefixlen, char *err, size_t esize)
{
	const struct sockmig_member *self = sockmig_config_self(d->cfg);
	struct ifaddrs *ifa, *i;
	int r = -ENODEV;

	if (getifaddrs(&ifa) < 0) {
		r = -errno;
		snprintf(err, esize, "cannot list this node's addresses: %s", strerror(errno));
		return r;
	}
	for (i = ifa; i; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != self->family || !i->ifa_netmask)
			continue;
		if (memcmp(sa_addr(i->ifa_addr), self->addr, alen_of(self->family)))
			continue;
		snprintf(ifname, size, "%s", i->ifa_name);
		*ret_prefixlen = prefix_of_mask(i->ifa_netmask);
		r = 0;
		break;
	}
	freeifaddrs(ifa);
	if (r < 0)
		snprintf(err, esize, "this node's member address %s is on none of its interfaces", self->addr_text);
	return r;
}

bool addr_is_local(int family, const uint8_t *addr)
{
	struct ifaddrs *ifa, *i;
	bool found = false;

	if (getifaddrs(&ifa) < 0)
		return false;
	for (i = ifa; i && !found; i = i->ifa_next) {
		if (i->ifa_addr && i->ifa_addr->sa_family == family &&
		    !memcmp(sa_addr(i->ifa_addr), addr, alen_of(family)))
			found = true;
	}
	freeifaddrs(ifa);
	return found;
}

const char *job_addr_text(const struct job *j, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN];

	if (!j->has_addr) {
		snprintf(buf, size, "-");
		return buf;
	}
	inet_ntop(j->family, j->addr, a, sizeof(a));
	snprintf(buf, size, "%s/%u", a, j->prefixlen);
	return buf;
}

/* Beside the control socket: the lab keeps its directory flat, and there
 * the nodes share it, so a job's log stays one file wherever it runs. */
void job_log_path(const struct daemon *d, const char *name, char *buf, size_t size)
{
	const char *slash = strrchr(d->cfg->control, '/');
	int dir = slash ? (int)(slash - d->cfg->control) : 0;

	snprintf(buf, size, "%.*s/job-%s.log", dir, d->cfg->control, name);
}

int job_log_open(const struct daemon *d, const char *name, uid_t uid)
{
	char path[SOCKMIG_PATH_SIZE];
	int fd;

	job_log_path(d, name, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0640);
	if (fd < 0)
		return -errno;
	if (fchown(fd, uid, (gid_t)-1) < 0) {
		/* the job could not write its own log: not a log then */
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* ---- the list ---- */

struct job *jobs_find_pid(struct daemon *d, pid_t pid)
{
	for (struct job *j = d->jobs; j; j = j->next)
		if (j->pid == pid && pid > 0)
			return j;
	return NULL;
}

struct job *jobs_find_name(struct daemon *d, const char *name)
{
	for (struct job *j = d->jobs; j; j = j->next)
		if (j->name[0] && !strcmp(j->name, name))
			return j;
	return NULL;
}

struct job *jobs_find_addr(struct daemon *d, int family, const uint8_t *addr)
{
	for (struct job *j = d->jobs; j; j = j->next)
		if (j->has_addr && j->family == family && !memcmp(j->addr, addr, alen_of(family)))
			return j;
	return NULL;
}

int jobs_add(struct daemon *d, struct job *j)
{
	if (d->n_jobs >= DAEMON_MAX_JOBS)
		return -ENOSPC;
	j->next = d->jobs;
	d->jobs = j;
	d->n_jobs++;
	return 0;
}

void jobs_remove(struct daemon *d, struct job *j)
{
	for (struct job **p = &d->jobs; *p; p = &(*p)->next) {
		if (*p == j) {
			*p = j->next;
			d->n_jobs--;
			break;
		}
	}
	free(j->routed);
	free(j);
}

/* ---- children ---- */

struct child_watch {
	pid_t pid;
	int pidfd;
};

int daemon_watch_child(struct daemon *d, pid_t pid)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct child_watch *w = calloc(1, sizeof(*w));
	int r;

	if (!w)
		return -ENOMEM;
	w->pid = pid;
	w->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (w->pidfd < 0) {
		r = -errno;
		free(w);
		return r;
	}
	ev.data.ptr = w;
	if (epoll_ctl(d->epoll_fd, EPOLL_CTL_ADD, w->pidfd, &ev) < 0) {
		r = -errno;
		close(w->pidfd);
		free(w);
		return r;
	}
	return 0;
}

static const char *status_text(const siginfo_t *si, char *buf, size_t size)
{
	if (si->si_code == CLD_EXITED)
		snprintf(buf, size, "exit-%d", si->si_status);
	else
		snprintf(buf, size, "%s", sigabbrev_np(si->si_status) ? sigabbrev_np(si->si_status) : "signal");
	return buf;
}

/* A job ended: its address goes with it. One that is leaving ended because
 * the move committed (the original is killed): migrate.c finishes it. */
static void job_ended(struct daemon *d, pid_t child, const siginfo_t *si)
{
	char st[32], a[64], ifname[IF_NAMESIZE], err[300], q[340];
	unsigned plen;
	struct job *j;

	pthread_mutex_lock(&d->jobs_lock);
	for (j = d->jobs; j; j = j->next)
		if (j->child == child)
			break;
	if (!j) {
		pthread_mutex_unlock(&d->jobs_lock);
		return;
	}
	if (j->state == JOB_LEAVING) {
		j->exited = true;
		pthread_mutex_unlock(&d->jobs_lock);
		return;
	}
	log_kv("info", "event=exit job=%s pid=%d status=%s address=%s", j->name[0] ? j->name : "-", (int)j->pid,
	       status_text(si, st, sizeof(st)), job_addr_text(j, a, sizeof(a)));
	if (j->has_addr && cluster_iface(d, ifname, sizeof(ifname), &plen, err, sizeof(err)) == 0 &&
	    sockmig_addr_release(ifname, j->family, j->addr, j->prefixlen) < 0 && sockmig_error()[0])
		log_kv("warn", "event=address-release job=%s address=%s msg=%s", j->name[0] ? j->name : "-", a,
		       kv_quote(sockmig_error(), q, sizeof(q)));
	routes_forget(d, j);
	jobs_remove(d, j);
	pthread_mutex_unlock(&d->jobs_lock);
}

void daemon_child_ended(struct daemon *d, void *watch)
{
	struct child_watch *w = watch;
	siginfo_t si = { 0 };

	if (syscall(SYS_waitid, P_PIDFD, w->pidfd, &si, WEXITED | WNOHANG, NULL) == 0 && si.si_pid == 0)
		return; /* not yet (spurious) */
	/* Reaped now, or by someone else (ECHILD): either way done. */
	epoll_ctl(d->epoll_fd, EPOLL_CTL_DEL, w->pidfd, NULL);
	close(w->pidfd);
	if (si.si_pid)
		job_ended(d, w->pid, &si);
	free(w);
}

void jobs_stop(struct daemon *d)
{
	/* The children run on; the pidfds close with us. */
	pthread_mutex_lock(&d->jobs_lock);
	while (d->jobs)
		jobs_remove(d, d->jobs);
	pthread_mutex_unlock(&d->jobs_lock);
}

/* ---- ps ---- */

static int count_sockets(pid_t pid)
{
	char path[64], link[64];
	struct dirent *de;
	int n = 0;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((de = readdir(dir))) {
		ssize_t k = readlinkat(dirfd(dir), de->d_name, link, sizeof(link) - 1);
		if (k > 0) {
			link[k] = '\0';
			n += !strncmp(link, "socket:", 7);
		}
	}
	closedir(dir);
	return n;
}

static const char *state_name(enum job_state s)
{
	switch (s) {
	case JOB_RUNNING:
		return "running";
	case JOB_LEAVING:
		return "leaving";
	case JOB_ARRIVING:
		return "arriving";
	case JOB_STARTING:
		break;
	}
	return "starting";
}

void job_line(struct daemon *d, const struct job *j, char *buf, size_t size)
{
	char a[64], cmd[140], comm[64], sock[16];
	bool live = j->pid > 0 && j->state != JOB_ARRIVING && j->state != JOB_STARTING;
	int n = live ? count_sockets(j->pid) : -1;

	/* what it runs now (a job may have exec'ed since it started) */
	snprintf(comm, sizeof(comm), "%s", j->cmd[0] ? j->cmd : "-");
	if (live) {
		char path[64];
		FILE *f;

		snprintf(path, sizeof(path), "/proc/%d/comm", (int)j->pid);
		f = fopen(path, "re");
		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
	}
	if (n >= 0)
		snprintf(sock, sizeof(sock), "%d", n);
	else
		snprintf(sock, sizeof(sock), "-");
	snprintf(buf, size,
		 "job name=%s node=%s pid=%d own_pid=%d address=%s state=%s kind=%s sockets=%s uid=%u origin=%s from=%s "
		 "moves=%u cmd=%s",
		 j->name[0] ? j->name : "-", d->cfg->node, (int)j->pid, (int)j->own_pid, job_addr_text(j, a, sizeof(a)),
		 state_name(j->state), j->kind == JOB_RUN ? "job" : "adopted", sock, (unsigned)j->uid,
		 j->origin[0] ? j->origin : "-", j->from[0] ? j->from : "-", j->moves, kv_quote(comm, cmd, sizeof(cmd)));
}

/* Every job line of ours, after the first line head ("" for none). */
static char *jobs_text(struct daemon *d, const char *head)
{
	size_t cap, len;
	char *buf;

	pthread_mutex_lock(&d->jobs_lock);
	cap = strlen(head) + 1 + (size_t)(d->n_jobs + 1) * JOB_LINE_MAX;
	buf = malloc(cap);
	if (buf) {
		len = (size_t)snprintf(buf, cap, "%s", head);
		for (struct job *j = d->jobs; j; j = j->next) {
			if (len)
				buf[len++] = '\n';
			job_line(d, j, buf + len, cap - len);
			len += strlen(buf + len);
		}
	}
	pthread_mutex_unlock(&d->jobs_lock);
	return buf;
}

int peer_jobs(struct peer_req *r)
{
	char head[32], *text;
	int k;

	pthread_mutex_lock(&r->d->jobs_lock);
	snprintf(head, sizeof(head), "ok %u", r->d->n_jobs);
	pthread_mutex_unlock(&r->d->jobs_lock);
	text = jobs_text(r->d, head);
	if (!text) {
		snprintf(r->error, sizeof(r->error), "out of memory");
		return -ENOMEM;
	}
	k = peer_reply_raw(r, text, strlen(text));
	free(text);
	return k;
}

static void *remote_thread(void *arg)
{
	struct remote *x = arg;
	unsigned t = x->d->cfg->timeout_ms < DAEMON_PING_TIMEOUT_MS ? x->d->cfg->timeout_ms : DAEMON_PING_TIMEOUT_MS;
	struct peer_link l;
	char err[480];

	if (peer_open(x->d, x->m, t, &l, x->error, sizeof(x->error)) < 0)
		return NULL;
	if (peer_request_long(&l, "jobs", &x->text, err, sizeof(err)) < 0)
		snprintf(x->error, sizeof(x->error), "node '%s': %.400s", x->m->name, err);
	peer_close(x->d, &l);
	return NULL;
}

struct remote *remotes_ask(struct daemon *d)
{
	const struct sockmig_config *cfg = d->cfg;
	struct remote *x = calloc(cfg->n_members, sizeof(*x));

	if (!x)
		return NULL;
	for (size_t base = 0; base < cfg->n_members; base += 32) {
		size_t end = base + 32 < cfg->n_members ? base + 32 : cfg->n_members;

		for (size_t i = base; i < end; i++) {
			x[i].d = d;
			x[i].m = &cfg->members[i];
			if (!strcmp(cfg->members[i].name, cfg->node))
				continue;
			if (pthread_create(&x[i].thread, NULL, remote_thread, &x[i]) == 0)
				x[i].started = true;
			else
				snprintf(x[i].error, sizeof(x[i].error), "cannot start a thread to ask node '%s'",
					 x[i].m->name);
		}
		for (size_t i = base; i < end; i++)
			if (x[i].started)
				pthread_join(x[i].thread, NULL);
	}
	return x;
}

void remotes_free(struct daemon *d, struct remote *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < d->cfg->n_members; i++)
		free(x[i].text);
	free(x);
}

void remote_each(char *text, void (*fn)(struct kv_args *a, void *userdata), void *userdata)
{
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct kv_args a;
		char copy[JOB_LINE_MAX];

		if (strncmp(line, "job ", 4) || strlen(line) >= sizeof(copy))
			continue;
		memcpy(copy, line + 4, strlen(line + 4) + 1);
		if (kv_split(copy, &a))
			fn(&a, userdata);
	}
}

static void send_remote_line(struct kv_args *a, void *userdata)
{
	struct ctl_req *r = userdata;
	char line[JOB_LINE_MAX + 16], q[JOB_LINE_MAX];
	size_t len = (size_t)snprintf(line, sizeof(line), "job");

	/* Re-quoted from the parsed pairs: what a member sends cannot inject
	 * a line or a pair into our answer. */
	for (size_t i = 0; i < a->n && len < sizeof(line); i++)
		len += (size_t)snprintf(line + len, sizeof(line) - len, " %s=%s", a->key[i],
					kv_quote(a->val[i], q, sizeof(q)));
	ctl_send(r, "%s", line);
}

int ctl_ps(struct ctl_req *r)
{
	struct remote *x = NULL;
	char *text;

	if (r->argc > 1) {
		if (strcmp(r->argv[1], "all"))
			return ctl_fail(r, -EINVAL, "usage: ps [all]");
		x = remotes_ask(r->d);
		if (!x)
			return ctl_fail(r, -ENOMEM, "out of memory");
	}
	text = jobs_text(r->d, "");
	if (!text) {
		remotes_free(r->d, x);
		return ctl_fail(r, -ENOMEM, "out of memory");
	}
	if (text[0])
		ctl_send(r, "%s", text);
	free(text);
	for (size_t i = 0; x && i < r->d->cfg->n_members; i++) {
		char q[600];

		if (!strcmp(x[i].m->name, r->d->cfg->node))
			continue;
		if (x[i].text)
			remote_each(x[i].text, send_remote_line, r);
		else
			ctl_send(r, "node name=%s state=down error=%s", x[i].m->name,
				 kv_quote(x[i].error, q, sizeof(q)));
	}
	remotes_free(r->d, x);
	return 0;
}
