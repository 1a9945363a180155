/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Moving a process to another node, daemon to daemon (docs/cluster.md,
 * "Migration"):
 *
 *   source S (control request migrate)        destination D (peer request migrate)
 *   ----------------------------------        ------------------------------------
 *   check the caller (CTL_PID), the mode,
 *   that no socket uses a member address
 *   peer_open(D), REQUEST "migrate k=v..." -->
 *                                             check the name and address are free,
 *                                             reserve them
 *                                        <--  REPLY "ok"
 *   both start the pump: the socket move's messages (docs/socket-move.md) go
 *   over the channel as DATA records
 *   sockmig_sockets_send(with_process)  <-->  sockmig_sockets_receive(with_process)
 *                                             the restored process's namespace init
 *                                             is our child: watched, reaped
 *                                        <--  "running pid=N own_pid=M\n", END
 *   read that line, END
 *
 * The two phases are the library's: S ends the original only once D reported
 * the process running; any failure before that rolls back on both sides, and
 * the library's sentence is what the CLI gets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "routes.h"
#include "sockmig/flow.h"
#include "sockmig/proc.h"
#include "sockmig/sockets.h"
#include "sockmig/sockmig.h"

/* What travels with the process in the request: its record. */
struct migrant {
	pid_t pid, own_pid;
	uid_t uid;
	enum job_kind kind;
	char name[SOCKMIG_NAME_MAX + 1];
	bool has_addr;
	int family;
	uint8_t addr[16];
	unsigned prefixlen;
	char origin[SOCKMIG_NAME_MAX + 1];
	unsigned moves;
	char cmd[64];
};

/* "NSpid: 4121 1": the last one is its pid as it sees itself; uid: real. */
static void read_status(pid_t pid, pid_t *own_pid, uid_t *uid, char *comm, size_t size)
{
	char path[64], line[256];
	FILE *f;

	*own_pid = pid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "NSpid:", 6)) {
			char *last = strrchr(line, '\t');
			if (!last)
				last = strrchr(line, ' ');
			if (last)
				*own_pid = (pid_t)atoi(last + 1);
		} else if (!strncmp(line, "Uid:", 4)) {
			*uid = (uid_t)strtoul(line + 4, NULL, 10);
		} else if (!strncmp(line, "Name:", 5)) {
			char *v = line + 5;
			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = '\0';
			snprintf(comm, size, "%s", v);
		}
	}
	fclose(f);
}

/*
 * In mode move the sockets' local addresses leave this node. A socket on one
 * of the node's own addresses (stay) would take the node's address with it
 * (and the cluster's channel to this node): only a job's own addresses may
 * move; the node's need mode forward or rewrite. (Connections a listener on
 * a wildcard address accepts during the move's drain are not seen here:
 * docs/cluster.md, limits.)
 */
static int check_addresses(struct ctl_req *r, pid_t pid, const struct sockmig_image_addr *stay, size_t n_stay)
{
	struct sockmig_proc *p;
	int *fds = NULL, k;
	size_t n = 0;

	k = sockmig_proc_open(pid, &p);
	if (k < 0)
		return ctl_fail(r, k, "cannot migrate pid %d: %s", (int)pid, sockmig_error());
	k = sockmig_proc_fd_list(p, &fds, &n);
	if (k < 0) {
		ctl_fail(r, k, "cannot migrate pid %d: %s", (int)pid, sockmig_error());
		goto out;
	}
	for (size_t i = 0; i < n && k >= 0; i++) {
		struct sockmig_fd_info info;
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		const uint8_t *a;
		int family, local;
		char text[INET6_ADDRSTRLEN];

		if (sockmig_proc_fd_get(p, fds[i], &local) < 0)
			continue; /* closed meanwhile; the move itself checks again */
		if (sockmig_fd_describe(local, fds[i], &info) < 0 ||
		    (info.kind != SOCKMIG_FD_TCP && info.kind != SOCKMIG_FD_UDP) ||
		    getsockname(local, (struct sockaddr *)&ss, &len) < 0) {
			close(local);
			continue;
		}
		close(local);
		family = ss.ss_family;
		if (family == AF_INET) {
			a = (const uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr;
		} else if (family == AF_INET6) {
			a = (const uint8_t *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
			if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a)) {
				family = AF_INET;
				a += 12;
			}
		} else {
			continue;
		}
		for (size_t m = 0; m < n_stay; m++) {
			if (stay[m].family != family || memcmp(stay[m].addr, a, family == AF_INET ? 4 : 16))
				continue;
			inet_ntop(family, a, text, sizeof(text));
			k = ctl_fail(r, -EADDRNOTAVAIL,
				     "cannot migrate pid %d in mode move: its fd %d uses %s, an address of node %s, which "
				     "cannot leave it; only a job's own address (sockmig run) moves (modes auto, forward "
				     "and rewrite keep such flows working)",
				     (int)pid, fds[i], text, r->d->cfg->node);
			break;
		}
	}
out:
	free(fds);
	sockmig_proc_free(p);
	return k < 0 ? k : 0;
}

static const char *mode_check(const char *mode, char *err, size_t size)
{
	static const char *const modes[] = { "auto", "move", "forward", "rewrite" };

	for (size_t i = 0; i < ARRAY_SIZE(modes); i++)
		if (!strcmp(mode, modes[i]))
			return modes[i];
	snprintf(err, size, "'%.40s' is not a mode: auto, move, forward or rewrite", mode);
	return NULL;
}

/* The addresses of the cluster interface that are not a job's: the
 * node's own, which stay here whatever moves (routed flows). */
static int node_addresses(struct daemon *d, const char *ifname, struct sockmig_image_addr **ret, size_t *ret_n)
{
	struct ifaddrs *ifa;
	struct sockmig_image_addr *a = NULL;
	size_t n = 0;

	*ret = NULL;
	*ret_n = 0;
	if (getifaddrs(&ifa) < 0)
		return -errno;
	for (struct ifaddrs *i = ifa; i; i = i->ifa_next) {
		const uint8_t *x;
		int fam;
		void *na;

		if (!i->ifa_addr || strcmp(i->ifa_name, ifname))
			continue;
		fam = i->ifa_addr->sa_family;
		if (fam == AF_INET)
			x = (const uint8_t *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr;
		else if (fam == AF_INET6)
			x = (const uint8_t *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		else
			continue;
		pthread_mutex_lock(&d->jobs_lock);
		if (jobs_find_addr(d, fam, x)) {
			pthread_mutex_unlock(&d->jobs_lock);
			continue;
		}
		pthread_mutex_unlock(&d->jobs_lock);
		na = realloc(a, (n + 1) * sizeof(*a));
		if (!na) {
			free(a);
			freeifaddrs(ifa);
			return -ENOMEM;
		}
		a = na;
		memset(&a[n], 0, sizeof(a[n]));
		a[n].family = (uint8_t)fam;
		memcpy(a[n].addr, x, fam == AF_INET ? 4 : 16);
		n++;
	}
	freeifaddrs(ifa);
	*ret = a;
	*ret_n = n;
	return 0;
}

/* D's last line on the relayed stream: its pid there. */
static void read_running(int fd, unsigned timeout_ms, pid_t *ret_pid, pid_t *ret_own)
{
	char buf[128];
	size_t got = 0;
	uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;

	while (got < sizeof(buf) - 1 && !memchr(buf, '\n', got)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ns();
		ssize_t n;

		if (now >= deadline || poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1) <= 0)
			break;
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (sscanf(buf, "running pid=%d own_pid=%d", ret_pid, ret_own) != 2)
		*ret_pid = *ret_own = 0;
}

/* At most this many routed flows in one move (the hooks' messages). */
#define SM_MAX_ROUTED 65536

/* Whether the channel's failure pk (its pump's) explains the move's k. */
static bool channel_broke(int k, int pk)
{
	return k != -ETIMEDOUT && (pk == -EBADMSG || pk == -EMSGSIZE || pk == -ECONNABORTED || pk == -ECONNRESET ||
				   pk == -EPIPE || pk == -ETIMEDOUT);
}

struct send_result {
	int r;
	int32_t new_pid, new_own;
	struct sockmig_move_stats st;
	char sentence[512];
};

/*
 * The child's route hooks ask the daemon thread that forked it: the daemon's
 * state (its channels to other nodes, the route handle, their locks) is the
 * parent's; a forked child must not use locks that threads which do not
 * exist in it may hold.
 */
enum { HOOK_SWITCH = 1, HOOK_BACK = 2 };
struct hook_msg {
	uint32_t op;
	uint32_t n;
};
struct hook_answer {
	int32_t r;
	char err[400];
};

static bool io_full(int fd, void *buf, size_t len, bool wr)
{
	for (size_t done = 0; done < len;) {
		ssize_t k = wr ? write(fd, (char *)buf + done, len - done) : read(fd, (char *)buf + done, len - done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		done += (size_t)k;
	}
	return true;
}

static int child_ask(int fd, uint32_t op, const struct sockmig_flow *flows, size_t n, char *err, size_t size)
{
	struct hook_msg h = { op, (uint32_t)n };
	struct hook_answer a = { .r = -EIO };

	if (!io_full(fd, &h, sizeof(h), true) || !io_full(fd, (void *)flows, n * sizeof(*flows), true) ||
	    !io_full(fd, &a, sizeof(a), false))
		snprintf(a.err, sizeof(a.err), "the daemon did not answer the route request");
	a.err[sizeof(a.err) - 1] = '\0';
	if (err)
		snprintf(err, size, "%s", a.err);
	return a.r;
}

static int child_route_switch(void *ctx, const struct sockmig_flow *flows, size_t n, char *err, size_t size)
{
	return child_ask(*(int *)ctx, HOOK_SWITCH, flows, n, err, size);
}

static void child_route_back(void *ctx, const struct sockmig_flow *flows, size_t n)
{
	child_ask(*(int *)ctx, HOOK_BACK, flows, n, NULL, 0);
}

/* The parent's side: one hook request from the child. */
static bool serve_hook(int fd, struct route_move *mv)
{
	struct hook_msg h;
	struct hook_answer a = { 0 };
	struct sockmig_flow *flows = NULL;

	if (!io_full(fd, &h, sizeof(h), false) || h.n > SM_MAX_ROUTED ||
	    !(flows = calloc(h.n ? h.n : 1, sizeof(*flows))) || !io_full(fd, flows, h.n * sizeof(*flows), false)) {
		free(flows);
		return false;
	}
	if (h.op == HOOK_SWITCH)
		a.r = routes_switch(mv, flows, h.n, a.err, sizeof(a.err));
	else
		routes_back(mv);
	free(flows);
	return io_full(fd, &a, sizeof(a), true);
}

/*
 * The source side runs in a child process of its own: the library's
 * checkpoint accepts a process traced by its caller only if the tracer is
 * the caller's pid (a daemon thread that stops the process is another tid),
 * and what the library keeps per thread (an ARP socket) or leaves behind
 * ends with the child. The child keeps only the relayed stream and its
 * result pipe (copies of the daemon's other sockets would keep their peers
 * waiting for EOF), runs the move, and reports. Bounded: every step of the
 * move is bounded by the timeout.
 */
static void close_all_but(int a, int b, int c)
{
	int keep[3] = { a, b, c }, from = 3;

	/* sorted */
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++)
			if (keep[j] < keep[i]) {
				int t = keep[i];
				keep[i] = keep[j];
				keep[j] = t;
			}
	for (int i = 0; i < 3; i++) {
		if (keep[i] > from)
			syscall(SYS_close_range, from, keep[i] - 1, 0);
		if (keep[i] + 1 > from)
			from = keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0u, 0);
}

static void send_in_child(pid_t target, const struct sockmig_move_opts *o, int fd, unsigned timeout_ms,
			  struct route_move *mv, struct send_result *res)
{
	unsigned limit_s = 6 * (timeout_ms / 1000 + 1) + 60;
	bool timed_out = false;
	uint64_t deadline;
	int p[2], sv[2], status;
	ssize_t got = 0;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	if (pipe2(p, O_CLOEXEC) < 0) {
		res->r = -errno;
		snprintf(res->sentence, sizeof(res->sentence), "cannot make a pipe: %s", strerror(errno));
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		res->r = -errno;
		snprintf(res->sentence, sizeof(res->sentence), "cannot make a socket pair: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	pid = fork();
	if (pid == 0) {
		struct send_result x = { 0 };
		struct sockmig_move_hooks hooks = { .ctx = &sv[1],
						    .route_switch = child_route_switch,
						    .route_back = child_route_back };
		struct sockmig_move_opts co = *o;

		close(p[0]);
		close(sv[0]);
		close_all_but(fd, p[1], sv[1]);
		if (o->hooks)
			co.hooks = &hooks;
		sockmig_error_clear();
		x.r = sockmig_sockets_send(target, &co, fd, &x.st);
		if (x.r < 0)
			snprintf(x.sentence, sizeof(x.sentence), "%s", sockmig_error()[0] ? sockmig_error() : strerror(-x.r));
		else
			read_running(fd, timeout_ms, &x.new_pid, &x.new_own);
		(void)!write(p[1], &x, sizeof(x));
		_exit(0);
	}
	close(p[1]);
	close(sv[1]);
	if (pid < 0) {
		res->r = -errno;
		snprintf(res->sentence, sizeof(res->sentence), "cannot start the migration: fork: %s", strerror(errno));
		close(p[0]);
		close(sv[0]);
		return;
	}
	/* Every step of the move is bounded by the library; this bounds a
	 * move that hangs all the same (a tracee that never stops). */
	deadline = now_ns() + (uint64_t)limit_s * 1000000000ull;
	while (got < (ssize_t)sizeof(*res)) {
		struct pollfd pfd[2] = { { .fd = p[0], .events = POLLIN }, { .fd = sv[0], .events = POLLIN } };
		uint64_t now = now_ns();
		ssize_t n;
		int k = now >= deadline ? 0 : poll(pfd, sv[0] >= 0 ? 2 : 1, (int)((deadline - now) / 1000000ull) + 1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k == 0) {
			kill(pid, SIGKILL);
			timed_out = true;
			break;
		}
		if (sv[0] >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR))) {
			/* EOF: the child is done with its hooks */
			if (!mv || !serve_hook(sv[0], mv)) {
				close(sv[0]);
				sv[0] = -1;
			}
		}
		if (!(pfd[0].revents & (POLLIN | POLLHUP)))
			continue;
		n = read(p[0], (char *)res + got, sizeof(*res) - (size_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(p[0]);
	if (sv[0] >= 0)
		close(sv[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	/* A child that ended without rolling its routes back (killed, or
	 * crashed): the flows must reach this node again. */
	if (mv && (timed_out || got != (ssize_t)sizeof(*res) || res->r < 0))
		routes_back(mv);
	if (timed_out) {
		memset(res, 0, sizeof(*res));
		res->r = -ETIMEDOUT;
		snprintf(res->sentence, sizeof(res->sentence),
			 "the move did not end within %u s and was killed; the process may be left stopped, its flows "
			 "blocked on this node",
			 limit_s);
	} else if (got != (ssize_t)sizeof(*res)) {
		memset(res, 0, sizeof(*res));
		res->r = -EIO;
		snprintf(res->sentence, sizeof(res->sentence), "the migration's process ended without a result (%s %d)",
			 WIFSIGNALED(status) ? "signal" : "status", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	}
	res->sentence[sizeof(res->sentence) - 1] = '\0';
}

int ctl_migrate(struct ctl_req *r)
{
	struct daemon *d = r->d;
	const struct sockmig_config *cfg = d->cfg;
	const char *to = r->argv[2], *mode;
	const struct sockmig_member *m = sockmig_config_member(cfg, to);
	struct sockmig_move_opts o = { .with_process = 1, .timeout_ms = cfg->timeout_ms, .precopy_rounds = 4 };
	struct sockmig_move_stats st = { 0 };
	struct migrant mg = { .pid = r->target, .kind = JOB_ADOPTED };
	char ifname[IF_NAMESIZE], err[512], req[1024], reply[600], a[64], cmdq[140], q[700];
	struct peer_link l;
	struct job *j;
	/* the child's copy is replaced by its own hooks (send_in_child) */
	static const struct sockmig_move_hooks route_hooks = { 0 };
	struct route_move mv = { 0 };
	_cleanup_free_ struct sockmig_image_addr *stay = NULL;
	size_t n_stay = 0;
	pid_t new_pid = 0, new_own = 0;
	unsigned plen;
	int k, fd = -1, pk;

	mode = mode_check(r->argc > 3 ? r->argv[3] : "auto", err, sizeof(err));
	if (!mode)
		return ctl_fail(r, -EOPNOTSUPP, "%s", err);
	if (!m)
		return ctl_fail(r, -ENOENT, "'%.63s' is not a member of cluster '%s'", to, cfg->cluster);
	if (!strcmp(m->name, cfg->node))
		return ctl_fail(r, -EINVAL, "pid %d runs on node %s already", (int)r->target, cfg->node);
	if (cluster_iface(d, ifname, sizeof(ifname), &plen, err, sizeof(err)) < 0)
		return ctl_fail(r, -ENODEV, "cannot migrate pid %d: %s", (int)r->target, err);
	o.ifname = ifname;

	read_status(r->target, &mg.own_pid, &mg.uid, mg.cmd, sizeof(mg.cmd));
	snprintf(mg.origin, sizeof(mg.origin), "%s", cfg->node);
	pthread_mutex_lock(&d->jobs_lock);
	j = jobs_find_pid(d, r->target);
	if (j && j->state != JOB_RUNNING) {
		pthread_mutex_unlock(&d->jobs_lock);
		return ctl_fail(r, -EBUSY, "pid %d is being moved or started already", (int)r->target);
	}
	if (j) {
		j->state = JOB_LEAVING;
		j->exited = false;
		mg.kind = j->kind;
		mg.own_pid = j->own_pid;
		snprintf(mg.name, sizeof(mg.name), "%s", j->name);
		mg.has_addr = j->has_addr;
		mg.family = j->family;
		memcpy(mg.addr, j->addr, sizeof(mg.addr));
		mg.prefixlen = j->prefixlen;
		snprintf(mg.origin, sizeof(mg.origin), "%s", j->origin);
		mg.moves = j->moves;
		if (j->cmd[0])
			snprintf(mg.cmd, sizeof(mg.cmd), "%s", j->cmd);
	}
	pthread_mutex_unlock(&d->jobs_lock);

	k = node_addresses(d, ifname, &stay, &n_stay);
	if (k < 0) {
		ctl_fail(r, k, "cannot migrate pid %d: cannot list this node's addresses: %s", (int)r->target, strerror(-k));
		goto done;
	}
	if (!strcmp(mode, "move")) {
		k = check_addresses(r, r->target, stay, n_stay);
		if (k < 0)
			goto done;
	} else {
		/* the node's addresses stay; flows on them are routed */
		o.stay_addrs = stay;
		o.n_stay_addrs = n_stay;
		o.hooks = &route_hooks;
		mv.d = d;
		mv.dst = m;
		mv.mode = mode;
		mv.origin = mg.origin;
		mv.kind_job = mg.kind == JOB_RUN && mg.has_addr;
	}
	k = peer_open(d, m, cfg->timeout_ms, &l, err, sizeof(err));
	if (k < 0) {
		ctl_fail(r, k, "cannot migrate pid %d to %s (it goes on here): %s", (int)r->target, m->name, err);
		goto done;
	}
	{
		struct job tmp = { .has_addr = mg.has_addr, .family = mg.family, .prefixlen = mg.prefixlen };
		memcpy(tmp.addr, mg.addr, sizeof(tmp.addr));
		job_addr_text(&tmp, a, sizeof(a));
	}
	snprintf(req, sizeof(req),
		 "migrate pid=%d own_pid=%d uid=%u kind=%s name=%s address=%s origin=%s moves=%u mode=%s cmd=%s",
		 (int)mg.pid, (int)mg.own_pid, (unsigned)mg.uid, mg.kind == JOB_RUN ? "job" : "adopted",
		 mg.name[0] ? mg.name : "-", a, mg.origin, mg.moves, mode, kv_quote(mg.cmd[0] ? mg.cmd : "-", cmdq, sizeof(cmdq)));
	k = peer_request(&l, req, reply, sizeof(reply));
	if (k < 0) {
		ctl_fail(r, k, "cannot migrate pid %d to %s (it goes on here): %s", (int)r->target, m->name, reply);
		peer_close(d, &l);
		goto done;
	}
	k = sockmig_chan_pump_start(l.chan, &fd);
	if (k < 0) {
		ctl_fail(r, k, "cannot migrate pid %d to %s (it goes on here): %s", (int)r->target, m->name,
			 sockmig_error());
		peer_close(d, &l);
		goto done;
	}
	{
		struct send_result res;

		send_in_child(r->target, &o, fd, cfg->timeout_ms, o.hooks ? &mv : NULL, &res);
		/* the child held the other copy: END goes out now */
		close(fd);
		k = res.r;
		st = res.st;
		new_pid = res.new_pid;
		new_own = res.new_own;
		if (k < 0)
			ctl_fail(r, k, "cannot migrate pid %d to %s (it goes on here, connections intact): %s",
				 (int)r->target, m->name, res.sentence);
	}
	pk = sockmig_chan_pump_wait(l.chan);
	if (pk < 0) {
		log_kv("warn", "event=channel-error to=%s msg=%s", m->name, kv_quote(sockmig_error(), q, sizeof(q)));
		/* A damaged record, a destination that gave up, died (a reset,
		 * a channel closed without END) or went silent (a cut link) is
		 * why the move failed: not the broken pipe or the short read
		 * the move saw on its end of the pump. A timeout of the move's
		 * own is its own cause: the pump only failed after it. */
		if (k < 0 && channel_broke(k, pk))
			ctl_fail(r, k, "cannot migrate pid %d to %s (it goes on here, connections intact): %s",
				 (int)r->target, m->name, sockmig_error());
	}
	peer_close(d, &l);

done:
	pthread_mutex_lock(&d->jobs_lock);
	j = jobs_find_pid(d, r->target);
	if (j && j->state == JOB_LEAVING) {
		if (k >= 0) {
			/* gone from here; its original is ended (reaped or soon) */
			jobs_remove(d, j);
		} else if (j->exited) {
			log_kv("info", "event=exit job=%s pid=%d status=ended-during-migration", j->name[0] ? j->name : "-",
			       (int)j->pid);
			jobs_remove(d, j);
		} else {
			j->state = JOB_RUNNING;
		}
	}
	pthread_mutex_unlock(&d->jobs_lock);
	if (k < 0) {
		routes_move_free(&mv);
		log_kv("warn", "event=migrate role=source pid=%d job=%s from=%s to=%s mode=%s result=failed msg=%s",
		       (int)r->target, mg.name[0] ? mg.name : "-", cfg->node, to, mode ? mode : "-",
		       kv_quote(r->error, q, sizeof(q)));
		return k;
	}
	/* this node's accept and rewrite entries for the flows go; its
	 * forward entries (it is their home) stay */
	routes_commit(&mv);
	routes_move_free(&mv);
	log_kv("info",
	       "event=migrate role=source pid=%d job=%s from=%s to=%s mode=%s sockets=%u tcp=%u udp=%u frozen_ms=%.3f "
	       "save_ms=%.3f captured=%u+%u forwarded=%u rewritten=%u precopy_rounds=%u precopy_bytes=%llu "
	       "frozen_pages=%llu new_pid=%d result=ok",
	       (int)r->target, mg.name[0] ? mg.name : "-", cfg->node, m->name, mode, st.n_tcp + st.n_udp, st.n_tcp,
	       st.n_udp, (double)st.frozen_ns / 1e6, (double)st.save_ns / 1e6, st.captured_src, st.captured_dst,
	       mv.n_forward, mv.n_rewrite, st.precopy_rounds, (unsigned long long)st.precopy_bytes,
	       (unsigned long long)st.frozen_pages, (int)new_pid);
	ctl_send(r,
		 "migrated pid=%d job=%s from=%s to=%s mode=%s new_pid=%d own_pid=%d sockets=%u tcp=%u udp=%u "
		 "frozen_us=%llu save_us=%llu captured_src=%u captured_dst=%u forwarded=%u rewritten=%u "
		 "precopy_rounds=%u precopy_bytes=%llu frozen_pages=%llu",
		 (int)r->target, mg.name[0] ? mg.name : "-", cfg->node, m->name, mode, (int)new_pid, (int)new_own,
		 st.n_tcp + st.n_udp, st.n_tcp, st.n_udp, (unsigned long long)(st.frozen_ns / 1000),
		 (unsigned long long)(st.save_ns / 1000), st.captured_src, st.captured_dst, mv.n_forward,
		 mv.n_rewrite, st.precopy_rounds, (unsigned long long)st.precopy_bytes,
		 (unsigned long long)st.frozen_pages);
	return 0;
}

/* ---- destination ---- */

static bool parse_uint(const char *s, unsigned long max, unsigned long *ret)
{
	char *end;
	unsigned long v;

	if (!s || !*s || *s == '-')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*ret = v;
	return true;
}

/* D's route hooks: they run in the thread of the move. */
struct dst_routes {
	struct daemon *d;
	struct job *j;
	struct sockmig_flow *taken;
	size_t n_taken;
};

static int dst_route_take(void *ctx, const struct sockmig_flow *flows, size_t n, char *err, size_t size)
{
	struct dst_routes *x = ctx;

	return routes_take(x->d, x->j, flows, n, &x->taken, &x->n_taken, err, size);
}

static void dst_route_drop(void *ctx, const struct sockmig_flow *flows, size_t n)
{
	struct dst_routes *x = ctx;

	(void)flows;
	(void)n;
	routes_drop(x->d, x->taken, x->n_taken);
	free(x->taken);
	x->taken = NULL;
	x->n_taken = 0;
}

/* The request's pairs into mg; false with the sentence in r->error. */
static bool parse_migrant(struct peer_req *r, struct migrant *mg, const char **ret_mode)
{
	const struct sockmig_member *self = sockmig_config_self(r->d->cfg);
	struct kv_args a;
	const char *v;
	unsigned long n;

	if (!kv_split(r->args, &a)) {
		snprintf(r->error, sizeof(r->error), "a migrate request is key=value pairs");
		return false;
	}
	*ret_mode = mode_check(kv_arg(&a, "mode") ? kv_arg(&a, "mode") : "", r->error, sizeof(r->error));
	if (!*ret_mode)
		return false;
	if (!parse_uint(kv_arg(&a, "pid"), INT_MAX, &n) || !n)
		goto bad;
	mg->pid = (pid_t)n;
	if (!parse_uint(kv_arg(&a, "own_pid"), INT_MAX, &n))
		goto bad;
	mg->own_pid = (pid_t)n;
	if (!parse_uint(kv_arg(&a, "uid"), UINT_MAX, &n))
		goto bad;
	mg->uid = (uid_t)n;
	if (!parse_uint(kv_arg(&a, "moves"), UINT_MAX, &n))
		goto bad;
	mg->moves = (unsigned)n;
	v = kv_arg(&a, "kind");
	if (!v || (strcmp(v, "job") && strcmp(v, "adopted")))
		goto bad;
	mg->kind = !strcmp(v, "job") ? JOB_RUN : JOB_ADOPTED;
	v = kv_arg(&a, "name");
	if (!v || (strcmp(v, "-") && !sockmig_name_valid(v)))
		goto bad;
	snprintf(mg->name, sizeof(mg->name), "%s", strcmp(v, "-") ? v : "");
	v = kv_arg(&a, "origin");
	if (!v || !sockmig_name_valid(v))
		goto bad;
	snprintf(mg->origin, sizeof(mg->origin), "%s", v);
	v = kv_arg(&a, "cmd");
	snprintf(mg->cmd, sizeof(mg->cmd), "%s", v && strcmp(v, "-") ? v : "");
	v = kv_arg(&a, "address");
	if (!v)
		goto bad;
	if (strcmp(v, "-")) {
		char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
		unsigned long p;

		snprintf(buf, sizeof(buf), "%s", v);
		slash = strchr(buf, '/');
		if (!slash)
			goto bad;
		*slash++ = '\0';
		p = strtoul(slash, &end, 10);
		mg->family = self->family;
		if (*end || p < 1 || p > (self->family == AF_INET ? 32u : 128u) ||
		    inet_pton(self->family, buf, mg->addr) != 1)
			goto bad;
		mg->prefixlen = (unsigned)p;
		mg->has_addr = true;
	}
	return true;
bad:
	snprintf(r->error, sizeof(r->error), "a malformed migrate request");
	return false;
}

int peer_migrate(struct peer_req *r)
{
	struct daemon *d = r->d;
	const struct sockmig_config *cfg = d->cfg;
	const char *from = sockmig_chan_peer(r->chan), *mode = NULL;
	struct sockmig_restore_opts ro = { .stdio_fd = { -1, -1, -1 } };
	struct sockmig_restored_proc got = { 0 };
	struct sockmig_move_opts o = { .with_process = 1, .timeout_ms = cfg->timeout_ms, .restore = &ro, .ret_proc = &got };
	struct sockmig_move_stats st = { 0 };
	struct sockmig_restored *socks = NULL;
	struct migrant mg = { 0 };
	char ifname[IF_NAMESIZE], err[300], a[64], q[700];
	struct job *j, *other;
	struct dst_routes routes = { 0 };
	const struct sockmig_move_hooks hooks = { .ctx = &routes, .route_take = dst_route_take, .route_drop = dst_route_drop };
	unsigned plen;
	int k, fd = -1, log_fd = -1;

	if (!parse_migrant(r, &mg, &mode))
		return -EINVAL;
	if (cluster_iface(d, ifname, sizeof(ifname), &plen, err, sizeof(err)) < 0) {
		snprintf(r->error, sizeof(r->error), "node %s cannot take it: %s", cfg->node, err);
		return -ENODEV;
	}
	o.ifname = ifname;
	for (size_t i = 0; mg.has_addr && i < cfg->n_members; i++) {
		if (cfg->members[i].family == mg.family && !memcmp(cfg->members[i].addr, mg.addr, mg.family == AF_INET ? 4 : 16)) {
			snprintf(r->error, sizeof(r->error), "node %s will not take the member address of node %s", cfg->node,
				 cfg->members[i].name);
			return -EADDRINUSE;
		}
	}

	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	snprintf(j->name, sizeof(j->name), "%s", mg.name);
	j->has_addr = mg.has_addr;
	j->family = mg.family;
	memcpy(j->addr, mg.addr, sizeof(j->addr));
	j->prefixlen = mg.prefixlen;
	j->uid = mg.uid;
	j->kind = mg.kind;
	j->state = JOB_ARRIVING;
	j->own_pid = mg.own_pid;
	snprintf(j->origin, sizeof(j->origin), "%s", mg.origin);
	snprintf(j->from, sizeof(j->from), "%s", from);
	j->moves = mg.moves + 1;
	snprintf(j->cmd, sizeof(j->cmd), "%s", mg.cmd);
	job_addr_text(j, a, sizeof(a));

	pthread_mutex_lock(&d->jobs_lock);
	k = 0;
	if (j->name[0] && (other = jobs_find_name(d, j->name))) {
		snprintf(r->error, sizeof(r->error), "node %s runs a job named '%s' already (pid %d)", cfg->node, j->name,
			 (int)other->pid);
		k = -EEXIST;
	} else if (j->has_addr && (other = jobs_find_addr(d, j->family, j->addr))) {
		snprintf(r->error, sizeof(r->error), "node %s has address %s for its job '%s' already", cfg->node, a,
			 other->name[0] ? other->name : "-");
		k = -EADDRINUSE;
	} else if (jobs_add(d, j) < 0) {
		snprintf(r->error, sizeof(r->error), "node %s runs %d jobs already", cfg->node, DAEMON_MAX_JOBS);
		k = -ENOSPC;
	}
	pthread_mutex_unlock(&d->jobs_lock);
	if (k < 0) {
		free(j);
		return k;
	}
	if (strcmp(mode, "move")) {
		routes = (struct dst_routes){ .d = d, .j = j };
		o.hooks = &hooks;
	}
	/* D cannot reach the source's terminal: a job's stdout and stderr go
	 * to its log here; any other process's stdio the library reopens if
	 * it was a file, else it becomes /dev/null. */
	if (mg.kind == JOB_RUN && mg.name[0]) {
		log_fd = job_log_open(d, mg.name, mg.uid);
		if (log_fd >= 0)
			ro.stdio_fd[1] = ro.stdio_fd[2] = log_fd;
	}
	k = peer_reply(r, "ok");
	if (k >= 0)
		k = sockmig_chan_pump_start(r->chan, &fd);
	if (k < 0) {
		snprintf(r->error, sizeof(r->error), "%s", sockmig_error());
		goto fail;
	}
	sockmig_error_clear();
	k = sockmig_sockets_receive(fd, &o, &socks, &st);
	sockmig_restored_free(socks); /* the process has its own */
	if (k < 0) {
		int pk;

		snprintf(r->error, sizeof(r->error), "%s", sockmig_error()[0] ? sockmig_error() : strerror(-k));
		close(fd);
		pk = sockmig_chan_pump_wait(r->chan);
		if (pk < 0) {
			log_kv("warn", "event=channel-error from=%s msg=%s", from, kv_quote(sockmig_error(), q, sizeof(q)));
			/* as on the source: the channel's cause, not the pipe's */
			if (channel_broke(k, pk))
				snprintf(r->error, sizeof(r->error), "%s", sockmig_error());
		}
		goto fail;
	}
	pthread_mutex_lock(&d->jobs_lock);
	j->pid = got.pid;
	j->own_pid = got.own_pid;
	j->child = got.init_pid;
	j->state = JOB_RUNNING;
	/* its accept entries here, removed when it ends or leaves */
	j->routed = routes.taken;
	j->n_routed = routes.n_taken;
	routes.taken = NULL;
	pthread_mutex_unlock(&d->jobs_lock);
	/* After the record: an exit seen at once still finds it. */
	if (daemon_watch_child(d, got.init_pid) < 0)
		log_kv("warn", "event=watch-failed pid=%d", (int)got.init_pid);
	dprintf(fd, "running pid=%d own_pid=%d\n", (int)got.pid, (int)got.own_pid);
	close(fd);
	if (sockmig_chan_pump_wait(r->chan) < 0)
		log_kv("warn", "event=channel-error from=%s msg=%s", from, kv_quote(sockmig_error(), q, sizeof(q)));
	if (log_fd >= 0)
		close(log_fd);
	log_kv("info",
	       "event=migrate role=destination pid=%d job=%s from=%s to=%s mode=%s sockets=%u tcp=%u udp=%u "
	       "restore_ms=%.3f captured=%u+%u new_pid=%d own_pid=%d result=ok",
	       (int)mg.pid, mg.name[0] ? mg.name : "-", from, cfg->node, mode, st.n_tcp + st.n_udp, st.n_tcp, st.n_udp,
	       (double)st.restore_ns / 1e6, st.captured_src, st.captured_dst, (int)got.pid, (int)got.own_pid);
	return 0;

fail:
	if (log_fd >= 0)
		close(log_fd);
	pthread_mutex_lock(&d->jobs_lock);
	jobs_remove(d, j);
	pthread_mutex_unlock(&d->jobs_lock);
	/* A process made and let run, then given up, is killed by the
	 * library; its namespace's init is still ours to reap. */
	if (got.init_pid > 0)
		daemon_watch_child(d, got.init_pid);
	log_kv("warn", "event=migrate role=destination pid=%d job=%s from=%s to=%s mode=%s result=failed msg=%s",
	       (int)mg.pid, mg.name[0] ? mg.name : "-", from, cfg->node, mode, kv_quote(r->error, q, sizeof(q)));
	return k < 0 ? k : -EIO;
}
