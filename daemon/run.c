/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig run: a job with an address of its own on the cluster segment. The
 * daemon picks a name and an address no member reports in use (or checks
 * the ones given), adds the address to the cluster interface and announces
 * it, then starts the command as the caller (uid, gid, groups), in a session
 * of its own, stdin /dev/null, stdout and stderr to the job's log, with
 * SOCKMIG_JOB_ADDR in its environment: the job is expected to use that
 * address (listen on it, connect from it), which is what lets its flows
 * move with it and leave nothing behind (mode move).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "sockmig/flow.h"
#include "sockmig/sockmig.h"

/* Automatic job addresses: host numbers from here up in the member subnet. */
#define JOB_ADDR_FIRST 100
#define JOB_ADDR_TRIES 1024
/* The environment of a job. */
#define JOB_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static size_t alen_of(int family)
{
	return family == AF_INET ? 4 : 16;
}

/* Control-protocol arguments: bytes outside '!'..'~' and '%' as %XX; a lone
 * "%" is the empty string. */
static bool pct_decode(char *s)
{
	char *o = s;

	if (!strcmp(s, "%")) {
		*s = '\0';
		return true;
	}
	while (*s) {
		if (*s == '%') {
			unsigned v;
			if (!s[1] || !s[2] || sscanf(s + 1, "%2x", &v) != 1 || v == 0)
				return false;
			*o++ = (char)v;
			s += 3;
		} else {
			*o++ = *s++;
		}
	}
	*o = '\0';
	return true;
}

/* What the other members' jobs hold: names and addresses. */
struct taken {
	int family;
	size_t n, cap;
	struct taken_job {
		char name[SOCKMIG_NAME_MAX + 1];
		char node[SOCKMIG_NAME_MAX + 1];
		bool has_addr;
		uint8_t addr[16];
	} *jobs;
};

static void note_remote_job(struct kv_args *a, void *userdata)
{
	struct taken *t = userdata;
	const char *name = kv_arg(a, "name"), *addr = kv_arg(a, "address"), *node = kv_arg(a, "node");
	struct taken_job *tj;
	char buf[64], *slash;

	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		void *p = realloc(t->jobs, cap * sizeof(*t->jobs));
		if (!p)
			return;
		t->jobs = p;
		t->cap = cap;
	}
	tj = &t->jobs[t->n];
	memset(tj, 0, sizeof(*tj));
	snprintf(tj->name, sizeof(tj->name), "%s", name && strcmp(name, "-") ? name : "");
	snprintf(tj->node, sizeof(tj->node), "%s", node ? node : "?");
	if (addr && strlen(addr) < sizeof(buf)) {
		snprintf(buf, sizeof(buf), "%s", addr);
		slash = strchr(buf, '/');
		if (slash)
			*slash = '\0';
		tj->has_addr = inet_pton(t->family, buf, tj->addr) == 1;
	}
	t->n++;
}

/* The member that runs a job of that name, or NULL. */
static const char *taken_name(const struct taken *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->jobs[i].name[0] && !strcmp(t->jobs[i].name, name))
			return t->jobs[i].node;
	return NULL;
}

/* Who holds this address: a member, a job here or elsewhere, an interface
 * here; NULL if nobody we know of. */
static const char *addr_holder(struct daemon *d, const struct taken *t, int family, const uint8_t *addr, char *buf,
			       size_t size)
{
	const struct sockmig_config *cfg = d->cfg;
	struct job *j;

	for (size_t i = 0; i < cfg->n_members; i++) {
		if (cfg->members[i].family == family && !memcmp(cfg->members[i].addr, addr, alen_of(family))) {
			snprintf(buf, size, "node '%s' (its member address)", cfg->members[i].name);
			return buf;
		}
	}
	j = jobs_find_addr(d, family, addr);
	if (j) {
		snprintf(buf, size, "job '%s' on this node", j->name[0] ? j->name : "-");
		return buf;
	}
	for (size_t i = 0; i < t->n; i++) {
		if (t->jobs[i].has_addr && !memcmp(t->jobs[i].addr, addr, alen_of(family))) {
			snprintf(buf, size, "job '%.63s' on node %.63s", t->jobs[i].name[0] ? t->jobs[i].name : "-",
				 t->jobs[i].node);
			return buf;
		}
	}
	if (addr_is_local(family, addr)) {
		snprintf(buf, size, "an interface of this node");
		return buf;
	}
	return NULL;
}

static bool same_subnet(int family, const uint8_t *a, const uint8_t *b, unsigned prefixlen)
{
	for (unsigned i = 0; i < alen_of(family) && prefixlen; i++) {
		unsigned bits = prefixlen >= 8 ? 8 : prefixlen;
		uint8_t mask = (uint8_t)(0xff00u >> bits);

		if ((a[i] & mask) != (b[i] & mask))
			return false;
		prefixlen -= bits;
	}
	return true;
}

/* Host number k in the member's subnet: the network plus k, in the last 32
 * bits; false if the subnet has no such host (or it is IPv4's broadcast). */
static bool subnet_host(int family, const uint8_t *member, unsigned prefixlen, uint32_t k, uint8_t *out)
{
	size_t alen = alen_of(family);
	unsigned host_bits = (unsigned)alen * 8 - prefixlen;
	uint32_t low;

	if (host_bits < 32 && k >= (1u << host_bits) - (family == AF_INET ? 1u : 0u))
		return false;
	memcpy(out, member, alen);
	for (unsigned i = 0, left = prefixlen; i < alen; i++) {
		unsigned bits = left >= 8 ? 8 : left;
		out[i] &= (uint8_t)(0xff00u >> bits);
		left -= bits;
	}
	low = ((uint32_t)out[alen - 4] << 24 | (uint32_t)out[alen - 3] << 16 | (uint32_t)out[alen - 2] << 8 |
	       out[alen - 1]) + k;
	out[alen - 4] = (uint8_t)(low >> 24);
	out[alen - 3] = (uint8_t)(low >> 16);
	out[alen - 2] = (uint8_t)(low >> 8);
	out[alen - 1] = (uint8_t)low;
	return true;
}

/* NAME from a command: its basename, in name characters. */
static void name_from_cmd(const char *cmd, char *buf, size_t size)
{
	const char *base = strrchr(cmd, '/');
	size_t o = 0;

	base = base ? base + 1 : cmd;
	for (; *base && o + 1 < size && o < 40; base++) {
		char c = *base;
		buf[o++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
					   c == '-' || c == '.'
				   ? c
				   : '-';
	}
	buf[o] = '\0';
	if (!o)
		snprintf(buf, size, "job");
}

/* The caller's supplementary groups, which the job gets with its uid: the
 * kernel's record of the connecting process (SO_PEERGROUPS), not /proc,
 * where its pid may already be someone else's. */
static int caller_groups(int fd, gid_t *groups, size_t max, size_t *ret_n)
{
	socklen_t len = (socklen_t)(max * sizeof(*groups));

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return -errno;
	*ret_n = len / sizeof(*groups);
	return 0;
}

struct spawn_err {
	int stage; /* 1 chdir, 2 exec, 3 credentials, 4 stdio */
	int err;
};

/* fork + exec as the caller, in a session of its own, stdout and stderr to
 * the log. Between fork and exec only async-signal-safe calls: the daemon
 * has threads. The exec's outcome comes back on a CLOEXEC pipe. */
static int spawn_job(struct ctl_req *r, char *const argv[], char *const envp[], const char *cwd, int log_fd,
		     pid_t *ret_pid)
{
	_cleanup_free_ gid_t *groups = malloc(NGROUPS_MAX * sizeof(*groups));
	size_t n_groups = 0;
	struct spawn_err se = { 0 };
	int p[2], null_fd, k;
	ssize_t got;
	pid_t pid;

	if (!groups)
		return ctl_fail(r, -ENOMEM, "out of memory");
	k = caller_groups(r->fd, groups, NGROUPS_MAX, &n_groups);
	if (k < 0)
		return ctl_fail(r, k, "cannot read the caller's groups: %s", strerror(-k));
	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null_fd < 0)
		return ctl_fail(r, -errno, "cannot open /dev/null: %s", strerror(errno));
	if (pipe2(p, O_CLOEXEC) < 0) {
		k = -errno;
		close(null_fd);
		return ctl_fail(r, k, "cannot make a pipe: %s", strerror(-k));
	}
	pid = fork();
	if (pid == 0) {
		struct sigaction dfl = { .sa_handler = SIG_DFL };
		sigset_t none;

		close(p[0]);
		/* The daemon ignores SIGPIPE and blocks its stop signals:
		 * neither is for the job. */
		for (int sig = 1; sig < NSIG; sig++)
			sigaction(sig, &dfl, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		se.stage = 4;
		if (dup2(null_fd, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
			goto child_fail;
		/* Only what the job is given: an fd the daemon inherited
		 * without CLOEXEC would become the job's, and make it one a
		 * move refuses. The pipe's write end stays until the exec. */
		if (p[1] > 3)
			syscall(SYS_close_range, 3, p[1] - 1, 0);
		syscall(SYS_close_range, p[1] + 1, ~0u, 0);
		se.stage = 3;
		if (setgroups(n_groups, groups) < 0 || setresgid(r->gid, r->gid, r->gid) < 0 ||
		    setresuid(r->uid, r->uid, r->uid) < 0)
			goto child_fail;
		se.stage = 1;
		if (chdir(cwd) < 0)
			goto child_fail;
		se.stage = 2;
		execve(argv[0], argv, envp);
child_fail:
		se.err = errno;
		(void)!write(p[1], &se, sizeof(se));
		_exit(127);
	}
	k = -errno;
	close(p[1]);
	close(null_fd);
	if (pid < 0) {
		close(p[0]);
		return ctl_fail(r, k, "cannot start a process: %s", strerror(-k));
	}
	do
		got = read(p[0], &se, sizeof(se));
	while (got < 0 && errno == EINTR);
	close(p[0]);
	if (got == (ssize_t)sizeof(se)) {
		waitpid(pid, NULL, 0);
		switch (se.stage) {
		case 1:
			return ctl_fail(r, -se.err, "cannot enter directory %s as uid %u: %s", cwd, (unsigned)r->uid,
					strerror(se.err));
		case 2:
			return ctl_fail(r, -se.err, "cannot run %s: %s", argv[0], strerror(se.err));
		case 3:
			return ctl_fail(r, -se.err, "cannot take the caller's uid %u and gid %u: %s", (unsigned)r->uid,
					(unsigned)r->gid, strerror(se.err));
		default:
			return ctl_fail(r, -se.err, "cannot set up the job's stdio: %s", strerror(se.err));
		}
	}
	*ret_pid = pid;
	return 0;
}

/* argv[0]: with a '/' as it is (relative to cwd), else found in JOB_PATH. */
static int resolve_cmd(struct ctl_req *r, const char *cmd, char *buf, size_t size)
{
	char path[] = JOB_PATH, *save = NULL;

	if (strchr(cmd, '/')) {
		snprintf(buf, size, "%s", cmd);
		return 0;
	}
	for (char *dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		struct stat st;

		snprintf(buf, size, "%s/%s", dir, cmd);
		if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
			return 0;
	}
	return ctl_fail(r, -ENOENT, "cannot run %s: there is no such command in %s", cmd, JOB_PATH);
}

static int parse_addr(const char *text, int family, uint8_t *addr, unsigned *prefixlen, bool *has_prefix)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;

	if (strlen(text) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", text);
	slash = strchr(buf, '/');
	*has_prefix = slash != NULL;
	if (slash) {
		char *end;
		unsigned long v;

		*slash++ = '\0';
		errno = 0;
		v = strtoul(slash, &end, 10);
		if (errno || end == slash || *end || v < 1 || v > alen_of(family) * 8)
			return -EINVAL;
		*prefixlen = (unsigned)v;
	}
	return inet_pton(family, buf, addr) == 1 ? 0 : -EINVAL;
}

/* Names and addresses are chosen against what every member reports (a
 * member that does not answer cannot be asked: its jobs are not seen). */
static int pick_name_addr(struct ctl_req *r, struct job *j, const char *want_name, const char *want_addr,
			  const char *ifname, unsigned iface_plen, const struct taken *t)
{
	const struct sockmig_member *self = sockmig_config_self(r->d->cfg);
	char who[200], text[INET6_ADDRSTRLEN];

	if (strcmp(want_name, "-")) {
		const char *node = taken_name(t, want_name);

		if (jobs_find_name(r->d, want_name))
			return ctl_fail(r, -EEXIST, "a job named '%s' runs on this node already", want_name);
		if (node)
			return ctl_fail(r, -EEXIST, "a job named '%s' runs on node %s already", want_name, node);
		snprintf(j->name, sizeof(j->name), "%s", want_name);
	} else {
		char base[48];
		int i;

		name_from_cmd(j->cmd, base, sizeof(base));
		snprintf(j->name, sizeof(j->name), "%s", base);
		for (i = 2; i < 1000 && (jobs_find_name(r->d, j->name) || taken_name(t, j->name)); i++)
			snprintf(j->name, sizeof(j->name), "%s-%d", base, i);
		if (i == 1000)
			return ctl_fail(r, -EEXIST, "no free job name for %s; give one with --name", base);
	}
	j->family = self->family;
	if (strcmp(want_addr, "-")) {
		bool has_prefix;

		j->prefixlen = iface_plen;
		if (parse_addr(want_addr, self->family, j->addr, &j->prefixlen, &has_prefix) < 0)
			return ctl_fail(r, -EINVAL, "'%.60s' is not an %s address with an optional /PREFIX", want_addr,
					self->family == AF_INET ? "IPv4" : "IPv6");
		if (!same_subnet(self->family, j->addr, self->addr, iface_plen))
			return ctl_fail(r, -EINVAL,
					"%.60s is not in this cluster's subnet (%s/%u on %s), where the other nodes "
					"could reach it",
					want_addr, self->addr_text, iface_plen, ifname);
		if (addr_holder(r->d, t, self->family, j->addr, who, sizeof(who)))
			return ctl_fail(r, -EADDRINUSE, "address %.60s is in use by %s", want_addr, who);
		j->has_addr = true;
		return 0;
	}
	for (uint32_t k = JOB_ADDR_FIRST; k < JOB_ADDR_FIRST + JOB_ADDR_TRIES; k++) {
		if (!subnet_host(self->family, self->addr, iface_plen, k, j->addr))
			break;
		if (!addr_holder(r->d, t, self->family, j->addr, who, sizeof(who))) {
			j->prefixlen = iface_plen;
			j->has_addr = true;
			return 0;
		}
	}
	inet_ntop(self->family, self->addr, text, sizeof(text));
	return ctl_fail(r, -EADDRNOTAVAIL, "no free address for a job in %s/%u (host numbers from %d up are tried)", text,
			iface_plen, JOB_ADDR_FIRST);
}

int ctl_run(struct ctl_req *r)
{
	struct daemon *d = r->d;
	const char *want_name = r->argv[1], *want_addr = r->argv[2];
	char *cwd = r->argv[3], **args = &r->argv[4];
	int n_args = r->argc - 4;
	char ifname[IF_NAMESIZE], err[300], exe[PATH_MAX], a[64], logp[SOCKMIG_PATH_SIZE], line[JOB_LINE_MAX];
	char env_name[96], env_addr[96], env_home[PATH_MAX + 8], q[600];
	char *envp[6], *argv_exec[CTL_ARGS_MAX + 1];
	struct taken t = { .family = sockmig_config_self(d->cfg)->family };
	struct remote *x;
	struct job *j;
	unsigned plen;
	bool addr_added = false;
	int k, log_fd = -1;
	pid_t pid = 0;

	if (strcmp(want_name, "-") && !sockmig_name_valid(want_name))
		return ctl_fail(r, -EINVAL, "'%.70s' is not a valid job name (1 to %d of letters, digits, '_', '-', '.')",
				want_name, SOCKMIG_NAME_MAX);
	if (strcmp(want_addr, "-") && r->uid != 0)
		return ctl_fail(r, -EPERM, "only root may choose a job's address; leave it to the daemon");
	if (!pct_decode(cwd) || cwd[0] != '/')
		return ctl_fail(r, -EINVAL, "the working directory must be an absolute path");
	for (int i = 0; i < n_args; i++)
		if (!pct_decode(args[i]))
			return ctl_fail(r, -EINVAL, "argument %d is not encoded right (%%XX)", i);
	if (!args[0][0])
		return ctl_fail(r, -EINVAL, "the command is empty");
	if (cluster_iface(d, ifname, sizeof(ifname), &plen, err, sizeof(err)) < 0)
		return ctl_fail(r, -ENODEV, "%s", err);
	k = resolve_cmd(r, args[0], exe, sizeof(exe));
	if (k < 0)
		return k;

	j = calloc(1, sizeof(*j));
	if (!j)
		return ctl_fail(r, -ENOMEM, "out of memory");
	j->kind = JOB_RUN;
	j->state = JOB_STARTING;
	j->uid = r->uid;
	snprintf(j->origin, sizeof(j->origin), "%s", d->cfg->node);
	name_from_cmd(exe, j->cmd, sizeof(j->cmd));

	/* What the others run, before our list is locked (it takes a round
	 * trip, or 3 s for a member that does not answer). */
	x = remotes_ask(d);
	for (size_t i = 0; x && i < d->cfg->n_members; i++)
		if (x[i].text)
			remote_each(x[i].text, note_remote_job, &t);
	remotes_free(d, x);

	pthread_mutex_lock(&d->jobs_lock);
	k = pick_name_addr(r, j, want_name, want_addr, ifname, plen, &t);
	if (k >= 0) {
		k = jobs_add(d, j);
		if (k < 0)
			ctl_fail(r, k, "this node runs %d jobs already", DAEMON_MAX_JOBS);
	}
	pthread_mutex_unlock(&d->jobs_lock);
	free(t.jobs);
	if (k < 0) {
		free(j);
		return k;
	}
	/* Reserved: name and address are ours now. */
	job_addr_text(j, a, sizeof(a));
	k = sockmig_addr_take(ifname, j->family, j->addr, j->prefixlen);
	if (k < 0) {
		ctl_fail(r, k, "cannot add address %s to %s: %s", a, ifname, sockmig_error());
		goto fail;
	}
	addr_added = true;
	job_log_path(d, j->name, logp, sizeof(logp));
	log_fd = job_log_open(d, j->name, r->uid);
	if (log_fd < 0) {
		k = ctl_fail(r, log_fd, "cannot open the job's log %s: %s", logp, strerror(-log_fd));
		goto fail;
	}
	/* a new job's log starts empty (a name may have been used before) */
	if (ftruncate(log_fd, 0) < 0) {
		k = ctl_fail(r, -errno, "cannot empty the job's log %s: %s", logp, strerror(errno));
		goto fail;
	}
	{
		char addr_only[INET6_ADDRSTRLEN];
		struct passwd pw, *pwp = NULL;
		char pwbuf[2048];

		inet_ntop(j->family, j->addr, addr_only, sizeof(addr_only));
		snprintf(env_name, sizeof(env_name), "SOCKMIG_JOB_NAME=%s", j->name);
		snprintf(env_addr, sizeof(env_addr), "SOCKMIG_JOB_ADDR=%s", addr_only);
		getpwuid_r(r->uid, &pw, pwbuf, sizeof(pwbuf), &pwp);
		snprintf(env_home, sizeof(env_home), "HOME=%s", pwp ? pw.pw_dir : "/");
		envp[0] = (char *)"PATH=" JOB_PATH;
		envp[1] = env_home;
		envp[2] = env_name;
		envp[3] = env_addr;
		envp[4] = NULL;
	}
	argv_exec[0] = exe;
	for (int i = 1; i < n_args; i++)
		argv_exec[i] = args[i];
	argv_exec[n_args] = NULL;
	k = spawn_job(r, argv_exec, envp, cwd, log_fd, &pid);
	if (k < 0)
		goto fail;
	close(log_fd);

	pthread_mutex_lock(&d->jobs_lock);
	j->pid = j->own_pid = j->child = pid;
	j->state = JOB_RUNNING;
	job_line(d, j, line, sizeof(line));
	pthread_mutex_unlock(&d->jobs_lock);
	/* After the record: an exit seen at once still finds it. */
	k = daemon_watch_child(d, pid);
	if (k < 0)
		log_kv("warn", "event=watch-failed pid=%d msg=%s", (int)pid, kv_quote(strerror(-k), q, sizeof(q)));
	log_kv("info", "event=run job=%s pid=%d uid=%u address=%s cmd=%s", j->name, (int)pid, (unsigned)r->uid, a,
	       kv_quote(exe, q, sizeof(q)));
	ctl_send(r, "%s", line);
	ctl_send(r, "log path=%s", kv_quote(logp, q, sizeof(q)));
	return 0;

fail:
	if (log_fd >= 0)
		close(log_fd);
	if (addr_added)
		sockmig_addr_release(ifname, j->family, j->addr, j->prefixlen);
	pthread_mutex_lock(&d->jobs_lock);
	jobs_remove(d, j);
	pthread_mutex_unlock(&d->jobs_lock);
	return k;
}
