/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmigd: the per-node daemon. With --config it serves the cluster: it
 * listens on its member address for the other nodes' daemons (authenticated
 * channels, peer.c) and on a unix control socket for the local CLI
 * (control.c). Without a config it only starts, logs and stops (a node
 * outside any cluster). Logs: log.c. The pieces: daemon.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "sockmig/route.h"
#include "sockmig/flow.h"
#include "sockmig/sockmig.h"

/* ---- the registry of connections ---- */

bool daemon_register(struct daemon *d, struct conn *c)
{
	bool ok;

	pthread_mutex_lock(&d->lock);
	ok = !d->stopping;
	if (ok) {
		c->d = d;
		c->prev = NULL;
		c->next = d->conns;
		if (d->conns)
			d->conns->prev = c;
		d->conns = c;
		d->n_conns[c->kind]++;
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

void daemon_unregister(struct daemon *d, struct conn *c)
{
	pthread_mutex_lock(&d->lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		d->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	d->n_conns[c->kind]--;
	pthread_cond_broadcast(&d->idle);
	pthread_mutex_unlock(&d->lock);
}

void daemon_chan_opts(const struct daemon *d, struct sockmig_chan_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->cluster = d->cfg->cluster;
	o->node = d->cfg->node;
	o->secret = d->cfg->secret;
	o->timeout_ms = d->cfg->timeout_ms;
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct daemon *d = c->d;

	if (c->kind == CONN_PEER)
		peer_serve(c);
	else
		control_serve(c);
	daemon_unregister(d, c);
	close(c->fd);
	free(c);
	return NULL;
}

/* Take an accepted connection into a thread of its own, within the bound. */
static void conn_start(struct daemon *d, int fd, enum conn_kind kind, const struct sockaddr_storage *addr)
{
	static const unsigned max[] = { [CONN_PEER] = DAEMON_MAX_PEER_CONNS, [CONN_CONTROL] = DAEMON_MAX_CONTROL_CONNS };
	struct conn *c;
	pthread_attr_t attr;
	pthread_t t;
	char a[64], q[80];
	bool full;
	int r;

	pthread_mutex_lock(&d->lock);
	full = d->n_conns[kind] >= max[kind];
	pthread_mutex_unlock(&d->lock);
	if (full) {
		if (kind == CONN_PEER)
			log_kv("warn", "event=refuse peer=%s reason=%s", addr_text((const struct sockaddr *)addr, a, sizeof(a)),
			       kv_quote("too many connections from other nodes at once", q, sizeof(q)));
		else
			log_kv("warn", "event=refuse via=control reason=%s",
			       kv_quote("too many control connections at once", q, sizeof(q)));
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_kv("err", "event=refuse reason=out-of-memory");
		close(fd);
		return;
	}
	c->kind = kind;
	c->fd = fd;
	if (addr)
		c->addr = *addr;
	if (!daemon_register(d, c)) {
		close(fd);
		free(c);
		return;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, conn_thread, c);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		log_kv("err", "event=refuse reason=%s", kv_quote(strerror(r), q, sizeof(q)));
		daemon_unregister(d, c);
		close(fd);
		free(c);
	}
}

/* Wake every thread (its socket shut down) and wait, bounded, until all
 * are gone. */
static unsigned daemon_stop_conns(struct daemon *d)
{
	struct timespec until;
	unsigned left;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += DAEMON_STOP_WAIT_MS / 1000;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	for (struct conn *c = d->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	while (d->conns) {
		if (pthread_cond_timedwait(&d->idle, &d->lock, &until) == ETIMEDOUT)
			break;
	}
	left = d->n_conns[0] + d->n_conns[1] + d->n_conns[2];
	pthread_mutex_unlock(&d->lock);
	if (left)
		log_kv("warn", "event=stop-timeout connections=%u", left);
	return left;
}

/* ---- listeners ---- */

static int listen_peers(struct daemon *d)
{
	const struct sockmig_member *self = sockmig_config_self(d->cfg);
	struct sockaddr_storage ss;
	socklen_t len = sockmig_member_sockaddr(self, &ss);
	char a[64], msg[300], q[340];
	int fd, one = 1;

	fd = socket(self->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (self->family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0)
		goto fail;
	d->peer_fd = fd;
	return 0;
fail:
	snprintf(msg, sizeof(msg), "cannot listen on %s for the other nodes: %s",
		 addr_text((struct sockaddr *)&ss, a, sizeof(a)), strerror(errno));
	log_kv("err", "event=fail msg=%s", kv_quote(msg, q, sizeof(q)));
	if (fd >= 0)
		close(fd);
	return -1;
}

static int mkdir_parents(const char *path)
{
	char dir[SOCKMIG_CONTROL_PATH_SIZE];

	snprintf(dir, sizeof(dir), "%s", path);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return 0;
}

static int listen_control(struct daemon *d)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const char *path = d->cfg->control;
	char msg[400], q[450];
	int fd;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || mkdir_parents(path) < 0) {
		snprintf(msg, sizeof(msg), "cannot make control socket %s: %s", path, strerror(errno));
		goto fail;
	}
	/* A socket left by a daemon that died is ours to replace; one that
	 * answers belongs to a daemon that is running. */
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		snprintf(msg, sizeof(msg), "another sockmigd serves control socket %s", path);
		goto fail;
	}
	if (errno == ECONNREFUSED)
		unlink(path);
	close(fd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(msg, sizeof(msg), "cannot bind control socket %s: %s", path, strerror(errno));
		goto fail;
	}
	/* Anyone may connect: every request is checked against the caller's
	 * credentials (SO_PEERCRED). */
	if (chmod(path, 0666) < 0 || listen(fd, 16) < 0) {
		snprintf(msg, sizeof(msg), "cannot listen on control socket %s: %s", path, strerror(errno));
		unlink(path);
		goto fail;
	}
	d->control_fd = fd;
	return 0;
fail:
	log_kv("err", "event=fail msg=%s", kv_quote(msg, q, sizeof(q)));
	if (fd >= 0)
		close(fd);
	return -1;
}

static void accept_one(struct daemon *d, int lfd, enum conn_kind kind)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			log_kv("warn", "event=accept-failed errno=%d", errno);
		return;
	}
	if (kind == CONN_PEER) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	conn_start(d, fd, kind, kind == CONN_PEER ? &ss : NULL);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: sockmigd [--config FILE] [--node NAME]\n"
		   "Serves this node's part of a sockmig cluster (docs/cluster.md): other nodes'\n"
		   "daemons on its member address, the local CLI on its control socket.\n"
		   "--node names this node (overrides the config's 'node'). Without --config it\n"
		   "serves nothing and only waits. Runs until SIGTERM or SIGINT; prints 'ready'\n"
		   "on stdout once it serves. Logs go to stderr as key=value lines.\n");
}

/* SOCKMIG_DEBUG=1: the library's debug messages (the move's phases) on
 * stderr, stamped with the monotonic clock as the CLI's are, so that both
 * sides of a move line up; one write(2) per line, like log_kv. */
static void debug_log(enum sockmig_log_level level, const char *msg, void *userdata)
{
	char line[700];
	struct timespec ts;
	int n;

	(void)level;
	(void)userdata;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	n = snprintf(line, sizeof(line), "sockmigd[%d]: %5ld.%06ld %s\n", (int)getpid(), (long)(ts.tv_sec % 100000),
		     ts.tv_nsec / 1000, msg);
	if (n > (int)sizeof(line) - 1)
		n = (int)sizeof(line) - 1;
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
	}
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "node", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{}
	};
	struct daemon d = { .peer_fd = -1, .control_fd = -1, .epoll_fd = -1, .node = "" };
	struct epoll_event ev = { .events = EPOLLIN };
	const char *config = NULL, *node = NULL;
	pthread_condattr_t ca;
	sigset_t mask;
	int c, sfd, efd, status = 0;
	unsigned left;
	char q[600];

	while ((c = getopt_long(argc, argv, "c:n:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'n':
			node = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sockmigd %s\n", SOCKMIG_VERSION);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "sockmigd: unexpected argument '%s'\n", argv[optind]);
		return 1;
	}
	if (node && !sockmig_name_valid(node)) {
		fprintf(stderr, "sockmigd: '%s' is not a valid node name (1 to %d of letters, digits, '_', '-', '.')\n",
			node, SOCKMIG_NAME_MAX);
		return 1;
	}
	d.node = node ? node : "";
	log_set_node(d.node);
	if (getenv("SOCKMIG_DEBUG") && getenv("SOCKMIG_DEBUG")[0] && strcmp(getenv("SOCKMIG_DEBUG"), "0"))
		sockmig_set_log(debug_log, SOCKMIG_LOG_DEBUG, NULL);
	if (config) {
		int r = sockmig_config_load(config, 0, &d.cfg);
		if (r < 0) {
			log_kv("err", "event=fail msg=%s", kv_quote(sockmig_error(), q, sizeof(q)));
			return 1;
		}
		if (node && strcmp(node, d.cfg->node)) {
			if (!sockmig_config_member(d.cfg, node)) {
				char msg[400];
				snprintf(msg, sizeof(msg), "node '%s' is not a member of cluster '%s' in %.200s", node,
					 d.cfg->cluster, config);
				log_kv("err", "event=fail msg=%s", kv_quote(msg, q, sizeof(q)));
				return 1;
			}
			snprintf(d.cfg->node, sizeof(d.cfg->node), "%s", node);
		}
		d.node = d.cfg->node;
		log_set_node(d.node);
	}

	/* Signals arrive on the signalfd only; every thread inherits the
	 * mask. SIGPIPE: a peer that goes away is an error return, not death. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0 ||
	    (efd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		log_kv("err", "event=fail msg=%s", kv_quote(strerror(errno), q, sizeof(q)));
		return 1;
	}
	d.epoll_fd = efd;
	pthread_mutex_init(&d.lock, NULL);
	pthread_mutex_init(&d.jobs_lock, NULL);
	pthread_mutex_init(&d.route_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d.idle, &ca);
	pthread_condattr_destroy(&ca);

	if (d.cfg && (listen_peers(&d) < 0 || listen_control(&d) < 0))
		return 1;
	ev.data.u64 = EV_SIGNAL;
	if (epoll_ctl(efd, EPOLL_CTL_ADD, sfd, &ev) < 0)
		goto fail_epoll;
	if (d.peer_fd >= 0) {
		ev.data.u64 = EV_PEER_LISTEN;
		if (epoll_ctl(efd, EPOLL_CTL_ADD, d.peer_fd, &ev) < 0)
			goto fail_epoll;
	}
	if (d.control_fd >= 0) {
		ev.data.u64 = EV_CONTROL_LISTEN;
		if (epoll_ctl(efd, EPOLL_CTL_ADD, d.control_fd, &ev) < 0)
			goto fail_epoll;
	}

	if (d.cfg) {
		const struct sockmig_member *self = sockmig_config_self(d.cfg);
		char cl[80], ctl[200];
		log_kv("info", "event=start pid=%d version=%s cluster=%s members=%zu listen=%s:%u control=%s", (int)getpid(),
		       SOCKMIG_VERSION, kv_quote(d.cfg->cluster, cl, sizeof(cl)), d.cfg->n_members, self->addr_text,
		       self->port, kv_quote(d.cfg->control, ctl, sizeof(ctl)));
	} else {
		log_kv("info", "event=start pid=%d version=%s cluster=-", (int)getpid(), SOCKMIG_VERSION);
	}
	if (d.cfg) {
		/* A daemon killed in the middle of a move leaves its flow lock:
		 * the flows it froze would stay blackholed here for good. */
		int n = sockmig_flowlock_purge_dead();

		if (n > 0)
			log_kv("warn", "event=purge locks=%d", n);
		else if (n < 0)
			log_kv("warn", "event=purge-failed msg=%s", kv_quote(sockmig_error(), q, sizeof(q)));
	}
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		struct epoll_event out;
		int n = epoll_wait(efd, &out, 1, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_kv("err", "event=fail msg=%s", kv_quote(strerror(errno), q, sizeof(q)));
			status = 1;
			break;
		}
		if (out.data.u64 == EV_SIGNAL) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				log_kv("info", "event=reload msg=%s",
				       kv_quote("reloading the config is not supported yet; restart to apply changes", q,
						sizeof(q)));
				continue;
			}
			log_kv("info", "event=stop signal=%s", strsignal((int)si.ssi_signo));
			break;
		}
		if (out.data.u64 == EV_PEER_LISTEN)
			accept_one(&d, d.peer_fd, CONN_PEER);
		else if (out.data.u64 == EV_CONTROL_LISTEN)
			accept_one(&d, d.control_fd, CONN_CONTROL);
		else
			daemon_child_ended(&d, out.data.ptr);
	}

	if (d.peer_fd >= 0)
		close(d.peer_fd);
	if (d.control_fd >= 0) {
		close(d.control_fd);
		unlink(d.cfg->control);
	}
	left = daemon_stop_conns(&d);
	if (left == 0) {
		jobs_stop(&d);
		/* the routes stay: the processes they serve run on */
		sockmig_route_free(d.route);
	}
	close(efd);
	close(sfd);
	/* A thread that did not end in time may still read the config. */
	if (d.cfg && left == 0) {
		explicit_bzero(d.cfg->secret, sizeof(d.cfg->secret));
		free(d.cfg);
	}
	return status;

fail_epoll:
	log_kv("err", "event=fail msg=%s", kv_quote(strerror(errno), q, sizeof(q)));
	return 1;
}
