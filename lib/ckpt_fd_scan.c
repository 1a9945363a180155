/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What each fd of a live process is: the part of the fd checkpoint that
 * both the pre-flight (ckpt_fds_check(), the process running) and the dump
 * (ckpt_fd_dump.c, the process stopped) stand on. Every refusal is made
 * here, in one sentence naming the fd; docs/ckpt-fds.md lists them.
 *
 * Descriptions shared by several fds (dup, fork) are found with
 * kcmp(KCMP_FILE); what a file is comes from its /proc link, fstat of a
 * handle of ours (pidfd_getfd), its fdinfo and, for unix sockets, sock_diag.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/inet_diag.h>
#include <linux/kcmp.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ckpt_fd_internal.h"
#include "util.h"

void ckpt_fd_scan_free(struct scan *s)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].local >= 0)
			close(s->v[i].local);
		free(s->v[i].link);
		free(s->v[i].info);
	}
	free(s->v);
	if (s->diag_nl >= 0)
		close(s->diag_nl);
	s->v = NULL;
	s->n = 0;
	s->diag_nl = -1;
}

/* A small /proc file, whole, NUL-terminated (an epoll's fdinfo has a line
 * per registration, so it is not that small). */
static char *read_text(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t len = 0, cap = 4096;
	char *buf;

	if (fd < 0)
		return NULL;
	buf = malloc(cap);
	while (buf) {
		ssize_t n;

		if (len + 1 >= cap) {
			char *nb = cap < (16u << 20) ? realloc(buf, cap * 2) : NULL;

			if (!nb) {
				free(buf);
				errno = ENOMEM;
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (buf)
		buf[len] = 0;
	return buf;
}

/* The value after "key" at the start of a line of an fdinfo, or NULL. */
const char *ckpt_fd_info_field(const char *info, const char *key)
{
	size_t k = strlen(key);

	for (const char *p = info; p && *p;) {
		if (!strncmp(p, key, k))
			return p + k;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static bool in_list(const int *v, size_t n, int x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/* running: the process is not stopped, so an fd may vanish between the
 * listing and the look (it is then left out: it is gone). */
int ckpt_fd_scan_open(struct scan *s, struct sockmig_proc *p, const int *skip, size_t n_skip, bool running)
{
	_cleanup_free_ int *fds = NULL;
	size_t n = 0;
	int r;

	memset(s, 0, sizeof(*s));
	s->p = p;
	s->pid = sockmig_proc_pid(p);
	s->diag_nl = -1;
	s->running = running;
	r = sockmig_proc_fd_list(p, &fds, &n);
	if (r < 0)
		return r;
	s->v = calloc(n ? n : 1, sizeof(*s->v));
	if (!s->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct sfd *e = &s->v[s->n];
		char path[64], link[PATH_MAX + 32];
		const char *q;
		ssize_t len;
		uint32_t fl;

		*e = (struct sfd){ .fd = fds[i], .local = -1, .rep = s->n, .skip = in_list(skip, n_skip, fds[i]) };
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)s->pid, e->fd);
		len = readlink(path, link, sizeof(link) - 1);
		if (len < 0 && running && errno == ENOENT)
			continue;
		if (len < 0)
			return sm_fail(-errno, "pid %d fd %d: cannot read what it is: %s", (int)s->pid, e->fd, strerror(errno));
		link[len] = 0;
		snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)s->pid, e->fd);
		e->info = read_text(path);
		if (!e->info && running && errno == ENOENT)
			continue;
		e->link = strdup(link);
		if (!e->info || !e->link) {
			r = errno ? -errno : -ENOMEM;
			free(e->info);
			free(e->link);
			return sm_fail(r, "pid %d fd %d: cannot read its fdinfo: %s", (int)s->pid, e->fd, strerror(-r));
		}
		q = ckpt_fd_info_field(e->info, "flags:");
		fl = q ? (uint32_t)strtoul(q, NULL, 8) : 0;
		e->cloexec = (fl & O_CLOEXEC) != 0;
		e->flags = fl & ~(uint32_t)O_CLOEXEC;
		q = ckpt_fd_info_field(e->info, "pos:");
		e->pos = q ? strtoull(q, NULL, 10) : 0;
		s->n++;
		if (e->skip) {
			e->cls = CLS_EXTERNAL;
			continue;
		}
		r = sockmig_proc_fd_get(p, e->fd, &e->local);
		if (r == -EBADF && running) {
			s->n--;
			free(e->info);
			free(e->link);
			continue;
		}
		if (r < 0)
			return r;
		if (fstat(e->local, &e->st) < 0)
			return sm_fail(-errno, "pid %d fd %d: fstat: %s", (int)s->pid, e->fd, strerror(errno));
	}
	return 0;
}

static int kcmp_file(pid_t pid, int a, int b)
{
	return (int)syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);
}

/* Order of open file descriptions: kcmp's, or without kcmp the inode,
 * offset and flags (anonymous inodes are all one inode: each its own then). */
static int cmp_desc(const void *a, const void *b, void *arg)
{
	struct scan *s = arg;
	const struct sfd *x = &s->v[*(const size_t *)a], *y = &s->v[*(const size_t *)b];

	if (!s->no_kcmp) {
		switch (kcmp_file(s->pid, x->fd, y->fd)) {
		case 0:
			return 0;
		case 1:
			return -1;
		case 2:
			return 1;
		default: /* vanished meanwhile (the check runs on a live process) */
			return (x->fd > y->fd) - (x->fd < y->fd);
		}
	}
	if (x->st.st_dev != y->st.st_dev)
		return x->st.st_dev < y->st.st_dev ? -1 : 1;
	if (x->st.st_ino != y->st.st_ino)
		return x->st.st_ino < y->st.st_ino ? -1 : 1;
	if (!strncmp(x->link, "anon_inode:", 11) || x->pos != y->pos || x->flags != y->flags)
		return x->fd < y->fd ? -1 : x->fd > y->fd;
	return 0;
}

/* Every fd's rep: the lowest fd on the same open file description. */
static int scan_group(struct scan *s)
{
	_cleanup_free_ size_t *idx = malloc((s->n ? s->n : 1) * sizeof(size_t));
	size_t m = 0;

	if (!idx)
		return -ENOMEM;
	for (size_t i = 0; i < s->n; i++)
		if (!s->v[i].skip)
			idx[m++] = i;
	if (m && kcmp_file(s->pid, s->v[idx[0]].fd, s->v[idx[0]].fd) != 0)
		s->no_kcmp = true; /* then inode + offset + flags, as fdinfo tells */
	qsort_r(idx, m, sizeof(*idx), cmp_desc, s);
	for (size_t g = 0; g < m;) {
		size_t end = g + 1, rep = idx[g];

		while (end < m && cmp_desc(&idx[end - 1], &idx[end], s) == 0)
			end++;
		for (size_t k = g; k < end; k++)
			rep = idx[k] < rep ? idx[k] : rep;
		for (size_t k = g; k < end; k++)
			s->v[idx[k]].rep = rep;
		g = end;
	}
	return 0;
}

int ckpt_fd_refuse(struct scan *s, size_t i, const char *fmt, ...)
{
	char what[PATH_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return sm_fail(-EOPNOTSUPP, "pid %d fd %d: %s is not migratable", (int)s->pid, s->v[i].fd, what);
}

/* Whether every fd on rep i's description is 0, 1 or 2. */
static bool only_stdio(const struct scan *s, size_t i)
{
	for (size_t k = 0; k < s->n; k++)
		if (s->v[k].rep == i && !s->v[k].skip && s->v[k].fd > 2)
			return false;
	return true;
}

/* The restore reopens by path: that path must lead to this very file from
 * here (not renamed over, not in another mount namespace). */
static int reachable(struct scan *s, size_t i, bool nofollow)
{
	const struct sfd *e = &s->v[i];
	struct stat st;

	if ((nofollow ? lstat(e->link, &st) : stat(e->link, &st)) < 0 || st.st_dev != e->st.st_dev ||
	    st.st_ino != e->st.st_ino)
		return sm_fail(-EOPNOTSUPP,
			       "pid %d fd %d: %s is not reachable by its path from here (renamed over, or in another mount namespace), so it is not migratable",
			       (int)s->pid, e->fd, e->link);
	return 0;
}

static const char *anon_name(const char *k)
{
	static const struct {
		const char *link, *name;
	} names[] = {
		{ "[io_uring]", "io_uring" },         { "inotify", "an inotify instance" },
		{ "[fanotify]", "a fanotify instance" }, { "[pidfd]", "a pidfd" },
		{ "[userfaultfd]", "a userfaultfd" }, { "[perf_event]", "a perf event" },
		{ "[secretmem]", "a secretmem file" }, { "[signalfd]", "a signalfd" },
	};

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(k, names[i].link))
			return names[i].name;
	if (!strncmp(k, "bpf", 3))
		return "a BPF object";
	return NULL;
}

/* ---- unix sockets: sock_diag tells the peer, the name, the shutdown ---- */

/* A NETLINK_SOCK_DIAG socket in the network namespace of socket fd (unix
 * sockets are looked up per namespace). */
static int diag_socket(struct scan *s, int fd)
{
	_cleanup_close_ int nsfd = -1, self = -1;
	struct stat a, b;
	int nl;

	nsfd = ioctl(fd, SIOCGSKNS);
	if (nsfd < 0 || fstat(nsfd, &a) < 0)
		return sm_fail(-errno, "cannot get the network namespace of a unix socket of pid %d: %s", (int)s->pid,
			       strerror(errno));
	if (s->diag_nl >= 0 && s->diag_ns == a.st_ino)
		return s->diag_nl;
	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0 || fstat(self, &b) < 0)
		return sm_fail(-errno, "cannot open this thread's network namespace: %s", strerror(errno));
	if (a.st_ino != b.st_ino && setns(nsfd, CLONE_NEWNET) < 0)
		return sm_fail(-errno, "cannot enter the network namespace of pid %d's sockets: %s", (int)s->pid,
			       strerror(errno));
	nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		nl = sm_fail(-errno, "cannot open a sock_diag socket: %s", strerror(errno));
	if (a.st_ino != b.st_ino && setns(self, CLONE_NEWNET) < 0)
		abort(); /* never leave the thread in another namespace */
	if (nl >= 0) {
		if (s->diag_nl >= 0)
			close(s->diag_nl);
		s->diag_nl = nl;
		s->diag_ns = a.st_ino;
	}
	return nl;
}

static int unix_query(struct scan *s, struct sfd *e)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg = {
		.nlh = { .nlmsg_len = sizeof(msg), .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST },
		.req = { .sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = (uint32_t)e->st.st_ino,
			 .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER,
			 .udiag_cookie = { INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE } },
	};
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	uint8_t buf[8192] __attribute__((aligned(4)));
	int nl = diag_socket(s, e->local);
	ssize_t n;

	if (nl < 0)
		return nl;
	if (sendto(nl, &msg, sizeof(msg), 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return sm_fail(-errno, "pid %d fd %d: sock_diag request: %s", (int)s->pid, e->fd, strerror(errno));
	do
		n = recv(nl, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return sm_fail(-errno, "pid %d fd %d: sock_diag answer: %s", (int)s->pid, e->fd, strerror(errno));
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		struct unix_diag_msg *m = NLMSG_DATA(h);
		struct rtattr *a = (struct rtattr *)(m + 1);
		int alen = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));

		if (h->nlmsg_type == NLMSG_ERROR) {
			struct nlmsgerr *err = NLMSG_DATA(h);

			return sm_fail(err->error ? err->error : -EIO, "pid %d fd %d: sock_diag does not know the unix socket: %s",
				       (int)s->pid, e->fd, strerror(err->error ? -err->error : EIO));
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || m->udiag_ino != (uint32_t)e->st.st_ino)
			continue;
		e->listening = m->udiag_state == 10; /* TCP_LISTEN */
		for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
			size_t plen = RTA_PAYLOAD(a);
			const char *p = RTA_DATA(a);

			if (a->rta_type == UNIX_DIAG_PEER && plen >= 4)
				e->peer_ino = *(const uint32_t *)RTA_DATA(a);
			else if (a->rta_type == UNIX_DIAG_SHUTDOWN && plen >= 1)
				e->shutdown = *(const uint8_t *)RTA_DATA(a);
			else if (a->rta_type == UNIX_DIAG_NAME && plen > 0) {
				size_t k = plen < sizeof(e->name) - 2 ? plen : sizeof(e->name) - 2;

				if (p[0] == 0) {
					e->name[0] = '@';
					memcpy(e->name + 1, p + 1, k - 1);
					e->name[k] = 0;
				} else {
					memcpy(e->name, p, k);
					e->name[k] = 0;
				}
			}
		}
		return 0;
	}
	return sm_fail(-EIO, "pid %d fd %d: sock_diag gave no answer about the unix socket", (int)s->pid, e->fd);
}

static int classify_socket(struct scan *s, size_t i)
{
	struct sfd *e = &s->v[i];
	struct sockmig_fd_info info;
	const char *q;
	int r;

	r = sockmig_fd_describe(e->local, e->fd, &info);
	if (r < 0)
		return r;
	switch (info.kind) {
	case SOCKMIG_FD_TCP:
	case SOCKMIG_FD_UDP:
		return sm_fail(-EOPNOTSUPP, "pid %d fd %d: this %s is not among the sockets the socket engine moves",
			       (int)s->pid, e->fd, sockmig_fd_kind_name(info.kind));
	case SOCKMIG_FD_UNIX:
		break;
	default:
		return ckpt_fd_refuse(s, i, "a %s", sockmig_fd_kind_name(info.kind));
	}
	e->cls = CLS_UNIX;
	e->stype = info.type;
	if (info.type != SOCK_STREAM && info.type != SOCK_DGRAM && info.type != SOCK_SEQPACKET)
		return ckpt_fd_refuse(s, i, "a unix socket of type %d", info.type);
	q = ckpt_fd_info_field(e->info, "scm_fds:");
	if (q && strtoul(q, NULL, 10) > 0)
		return ckpt_fd_refuse(s, i, "a unix socket with file descriptors in flight");
	return unix_query(s, e);
}

/* Pass 1: what rep i is, from its link, fstat and fdinfo. */
static int classify(struct scan *s, size_t i)
{
	struct sfd *e = &s->v[i];
	const char *l = e->link;
	unsigned maj = major(e->st.st_rdev), min = minor(e->st.st_rdev);
	bool deleted = ends_with(l, " (deleted)");

	if (!strncmp(l, "anon_inode:", 11)) {
		const char *k = l + 11;

		if (!strcmp(k, "[eventfd]"))
			e->cls = CLS_EVENTFD;
		else if (!strcmp(k, "[timerfd]"))
			e->cls = CLS_TIMERFD;
		else if (!strcmp(k, "[signalfd]"))
			e->cls = CLS_SIGNALFD;
		else if (!strcmp(k, "[eventpoll]"))
			e->cls = CLS_EPOLL;
		else
			return anon_name(k) ? ckpt_fd_refuse(s, i, "%s", anon_name(k)) : ckpt_fd_refuse(s, i, "the kernel object %s", l);
		return 0;
	}
	if (e->flags & O_PATH) {
		if (l[0] != '/' || deleted)
			return ckpt_fd_refuse(s, i, "the O_PATH fd of %s", l);
		e->cls = CLS_OPATH;
		return reachable(s, i, S_ISLNK(e->st.st_mode));
	}
	switch (e->st.st_mode & S_IFMT) {
	case S_IFSOCK:
		return classify_socket(s, i);
	case S_IFIFO:
		if (!strncmp(l, "pipe:", 5)) {
			e->cls = CLS_PIPE;
			return 0;
		}
		if (l[0] != '/' || deleted)
			return ckpt_fd_refuse(s, i, "the deleted FIFO %s", l);
		e->cls = CLS_FIFO;
		return reachable(s, i, false);
	case S_IFREG:
		if (l[0] == '/' && deleted && reachable(s, i, false) < 0) {
			struct statfs sf;

			if (strncmp(l, "/memfd:", 7)) {
				e->cls = CLS_DELETED;
				return 0;
			}
			if (fstatfs(e->local, &sf) == 0 && sf.f_type == HUGETLBFS_MAGIC)
				return ckpt_fd_refuse(s, i, "the hugetlbfs memfd %s", l);
			e->cls = CLS_MEMFD;
			return 0;
		}
		if (l[0] != '/')
			return ckpt_fd_refuse(s, i, "the file %s", l);
		e->cls = CLS_FILE;
		return reachable(s, i, false);
	case S_IFDIR:
		if (l[0] != '/' || deleted)
			return ckpt_fd_refuse(s, i, "the deleted directory %s", l);
		e->cls = CLS_DIR;
		return reachable(s, i, false);
	case S_IFCHR:
		if (maj == 4 || maj == 5 || (maj >= 136 && maj <= 143) || isatty(e->local)) {
			e->cls = CLS_TTY;
			return 0;
		}
		/* null, zero, full, random, urandom: the same everywhere */
		if (maj == 1 && (min == 3 || min == 5 || min == 7 || min == 8 || min == 9) && l[0] == '/') {
			e->cls = CLS_CHR;
			return reachable(s, i, false);
		}
		return ckpt_fd_refuse(s, i, "the character device %s (%u:%u)", l, maj, min);
	case S_IFBLK:
		return ckpt_fd_refuse(s, i, "the block device %s (%u:%u)", l, maj, min);
	}
	return ckpt_fd_refuse(s, i, "%s", l);
}

/* Pass 2: what depends on the other fds: both ends of a pipe or a
 * socketpair in the process, or stdio leading elsewhere. */
static int classify_peers(struct scan *s, size_t i)
{
	struct sfd *e = &s->v[i];

	switch (e->cls) {
	case CLS_TTY:
		if (!only_stdio(s, i))
			return ckpt_fd_refuse(s, i, "the terminal %s", e->link);
		e->cls = CLS_ELSEWHERE;
		return 0;
	case CLS_PIPE: {
		bool rd = false, wr = false;

		for (size_t k = 0; k < s->n; k++) {
			const struct sfd *o = &s->v[k];

			if (o->rep != k || o->cls != CLS_PIPE || o->st.st_ino != e->st.st_ino || o->st.st_dev != e->st.st_dev)
				continue;
			rd |= (o->flags & O_ACCMODE) != O_WRONLY;
			wr |= (o->flags & O_ACCMODE) != O_RDONLY;
		}
		if (rd && wr)
			return 0;
		if (!only_stdio(s, i))
			return ckpt_fd_refuse(s, i, "a pipe whose other end is in another process");
		e->cls = CLS_ELSEWHERE;
		return 0;
	}
	case CLS_UNIX:
		if (e->listening)
			return ckpt_fd_refuse(s, i, "a listening unix socket (%s)", e->name[0] ? e->name : "unnamed");
		for (size_t k = 0; k < s->n && e->peer_ino; k++) {
			const struct sfd *o = &s->v[k];

			if (o->rep == k && k != i && o->cls == CLS_UNIX && o->st.st_ino == e->peer_ino &&
			    o->peer_ino == e->st.st_ino) {
				if (e->name[0])
					return ckpt_fd_refuse(s, i, "a unix socket bound to %s", e->name);
				e->peer = k;
				return 0;
			}
		}
		if (e->peer_ino && only_stdio(s, i)) {
			e->cls = CLS_ELSEWHERE;
			return 0;
		}
		if (!e->peer_ino)
			return ckpt_fd_refuse(s, i, "%s", e->name[0] ? "a unix socket bound to a name" : "an unconnected unix socket");
		return ckpt_fd_refuse(s, i, "a unix socket whose peer is in another process");
	}
	return 0;
}

/* ---- epoll registrations: the file behind each, by kcmp ---- */

/* 1: the registration's file is candidate's, 0: it is not, -1: there is no
 * such registration (any more). */
static int epoll_target_is(pid_t pid, int efd, uint32_t tfd, uint64_t toff, int candidate)
{
	struct kcmp_epoll_slot slot = { .efd = (uint32_t)efd, .tfd = tfd, .toff = toff };
	long r = syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, candidate, &slot);

	return r == 0 ? 1 : r < 0 && errno == ENOENT ? -1 : 0;
}

/* s->v is in ascending fd order (the fd list is) */
static const struct sfd *scan_find(const struct scan *s, int fd)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid].fd == fd)
			return &s->v[mid];
		if (s->v[mid].fd < fd)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* A socket's inode, from its fd's link "socket:[N]" (0: not a socket). A
 * socket is one file: the registration's inode names it, no kcmp needed. */
static uint64_t socket_ino(const struct sfd *t)
{
	if (!t->link || strncmp(t->link, "socket:[", 8))
		return 0;
	return strtoull(t->link + 8, NULL, 10);
}

/* The registrations of epoll rep i, each with an fd of the process that
 * holds the watched file (the number it was registered with may have been
 * closed after a dup, or reused). One pass over the fdinfo: an epoll that
 * watches 1,000 sockets took 100 ms inside the freeze with a pass and a
 * kcmp (which walks the epoll's tree) per registration. */
int ckpt_fd_epoll_regs(struct scan *s, size_t i, struct fd_epi **ret, uint32_t *ret_n)
{
	const struct sfd *e = &s->v[i];
	struct fd_epi *v = NULL;
	uint32_t n = 0, cap = 0, n_seen = 0, cap_seen = 0;
	_cleanup_free_ uint32_t *seen = NULL; /* every tfd so far, for toff */

	for (const char *p = ckpt_fd_info_field(e->info, "tfd:"); p; p = ckpt_fd_info_field(p, "tfd:")) {
		unsigned tfd, events;
		unsigned long long data, ino = 0;
		const char *q, *eol = strchr(p, '\n');
		const struct sfd *h = NULL, *t;
		uint64_t toff = 0;

		if (sscanf(p, "%u events: %x data: %llx", &tfd, &events, &data) != 3) {
			free(v);
			return sm_fail(-EIO, "pid %d fd %d: unreadable epoll fdinfo", (int)s->pid, e->fd);
		}
		q = strstr(p, "ino:");
		if (q && (!eol || q < eol))
			ino = strtoull(q + 4, NULL, 16);
		if (n_seen == cap_seen) {
			uint32_t *ns = realloc(seen, (cap_seen = cap_seen ? 2 * cap_seen : 64) * sizeof(*ns));

			if (!ns) {
				free(v);
				return -ENOMEM;
			}
			seen = ns;
		}
		seen[n_seen++] = tfd;
		t = scan_find(s, (int)tfd);
		if (t && ino && socket_ino(t) == ino) {
			h = t;
		} else if (!s->no_kcmp) {
			int is;

			/* toff: which of the registrations made with this number
			 * (an fd number reused after a close can be in the tree
			 * twice) */
			for (uint32_t k = 0; k + 1 < n_seen; k++)
				toff += seen[k] == tfd;
			is = t ? epoll_target_is(s->pid, e->fd, tfd, toff, t->fd) : 0;
			if (is > 0)
				h = t;
			for (size_t k = 0; k < s->n && !h && is >= 0; k++)
				if ((is = epoll_target_is(s->pid, e->fd, tfd, toff, s->v[k].fd)) > 0)
					h = &s->v[k];
			/* A running process changes its registrations all the time
			 * (asyncio removes and adds a socket on every pause of its
			 * reading): one gone since its fdinfo was read is no refusal.
			 * The dump, on the stopped process, sees none go. */
			if (is < 0 && s->running) {
				p = eol;
				continue;
			}
		} else if (t && (t->skip || t->st.st_ino == ino)) {
			h = t;
		}
		if (!h) {
			free(v);
			return sm_fail(-EOPNOTSUPP,
				       "pid %d fd %d: its epoll watches a file (registered as fd %u) that no fd of the process holds, which is not migratable",
				       (int)s->pid, e->fd, tfd);
		}
		if (n == cap) {
			struct fd_epi *nv = realloc(v, (cap = cap ? cap * 2 : 8) * sizeof(*v));

			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = (struct fd_epi){ tfd, (uint32_t)h->fd, events, data };
		p = eol;
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Both passes, and the epoll registrations resolved: everything the dump
 * would refuse, refused now. */
int ckpt_fd_scan_classify(struct scan *s)
{
	int r = scan_group(s);

	for (size_t i = 0; i < s->n && r >= 0; i++)
		if (s->v[i].rep == i && !s->v[i].skip)
			r = classify(s, i);
	for (size_t i = 0; i < s->n && r >= 0; i++)
		if (s->v[i].rep == i && !s->v[i].skip)
			r = classify_peers(s, i);
	for (size_t i = 0; i < s->n && r >= 0; i++) {
		struct fd_epi *v = NULL;
		uint32_t n = 0;

		if (s->v[i].rep != i || s->v[i].cls != CLS_EPOLL)
			continue;
		r = ckpt_fd_epoll_regs(s, i, &v, &n);
		free(v);
	}
	return r;
}

/* Bytes of file content from `from` on: the data extents only (a sparse
 * memfd carries what it holds, not its size). */
static int64_t extents_size(int fd, uint64_t size)
{
	uint64_t total = 0;
	off_t off = 0;

	for (int k = 0; k < 1 << 20 && (uint64_t)off < size; k++) {
		off_t d = lseek(fd, off, SEEK_DATA), h;

		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0)
			return (int64_t)size; /* no SEEK_DATA: all of it */
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			h = (off_t)size;
		total += (uint64_t)(h - d);
		off = h;
	}
	return (int64_t)total;
}

int ckpt_fd_open_proc(pid_t pid, int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	return open(path, flags | O_CLOEXEC);
}

/* What the dump would carry, roughly (the process still runs). */
static int estimate_data(struct scan *s)
{
	uint64_t total = 0;

	for (size_t i = 0; i < s->n; i++) {
		const struct sfd *e = &s->v[i];
		bool first = true;
		int q = 0;

		if (e->rep != i)
			continue;
		/* once per memfd, file or pipe */
		for (size_t k = 0; k < i && first; k++)
			first = !(s->v[k].rep == k && s->v[k].cls == e->cls && s->v[k].st.st_ino == e->st.st_ino &&
				  s->v[k].st.st_dev == e->st.st_dev);
		if (!first)
			continue;
		switch (e->cls) {
		case CLS_MEMFD:
		case CLS_DELETED: {
			_cleanup_close_ int fd = ckpt_fd_open_proc(s->pid, e->fd, O_RDONLY);

			total += fd < 0 ? (uint64_t)e->st.st_size : (uint64_t)extents_size(fd, (uint64_t)e->st.st_size);
			break;
		}
		case CLS_PIPE:
		case CLS_FIFO:
			if (ioctl(e->local, FIONREAD, &q) == 0 && q > 0)
				total += (uint64_t)q;
			break;
		case CLS_UNIX:
			if (e->stype == SOCK_DGRAM)
				q = ioctl(s->v[e->peer].local, SIOCOUTQ, &q) == 0 ? q : 0;
			else if (ioctl(e->local, SIOCINQ, &q) < 0)
				q = 0;
			total += q > 0 ? (uint64_t)q : 0;
			break;
		}
	}
	if (total > CKPT_FD_DATA_MAX)
		return sm_fail(-EOPNOTSUPP,
			       "pid %d: its memfds, deleted files, pipes and unix sockets hold %" PRIu64 " MiB, more than the %llu MiB a checkpoint carries",
			       (int)s->pid, total >> 20, CKPT_FD_DATA_MAX >> 20);
	return 0;
}

int ckpt_fds_check(pid_t pid, const int *skip, size_t n_skip)
{
	struct sockmig_proc *p = NULL;
	struct scan s;
	int r;

	r = sockmig_proc_open(pid, &p);
	if (r < 0)
		return r;
	r = ckpt_fd_scan_open(&s, p, skip, n_skip, true);
	if (r >= 0)
		r = ckpt_fd_scan_classify(&s);
	if (r >= 0)
		r = estimate_data(&s);
	ckpt_fd_scan_free(&s);
	sockmig_proc_free(p);
	return r < 0 ? r : 0;
}
