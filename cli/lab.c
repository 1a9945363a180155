/* SPDX-License-Identifier: GPL-2.0-or-later */
/* sockmig lab: make, use and remove a cluster of namespaces on this machine. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/lab.h"
#include "sockmig/sockmig.h"

/* How long a node's sockmigd may take to say it is ready. */
#define LAB_DAEMON_READY_S 10

static void lab_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s lab up [--nodes N] [--name LAB]\n"
		"       %s lab down [--name LAB]\n"
		"       %s lab exec [--name LAB] NODE -- CMD [ARG...]\n"
		"       %s lab status [--name LAB] [--json]\n"
		"\n"
		"A lab is N nodes n1..nN (1 to %d, default %d), each a network namespace\n"
		"with eth0 at 198.18.0.i/24 and 2001:2::i/64 on one bridge. LAB names are\n"
		"1 to %d of [A-Za-z0-9_-], default '%s'. Needs root.\n"
		"\n"
		"up also makes the lab a cluster (named LAB, with a fresh secret and a signing\n"
		"key per node) and starts a sockmigd in every node; its config is\n"
		SOCKMIG_LAB_DIR "/LAB/nI.conf, its key nI.key and its log nI.log there.\n"
		"exec sets SOCKMIG_CONFIG to the node's config, so that\n"
		"'lab exec n1 -- sockmig nodes' talks to n1's daemon.\n",
		prog_name, prog_name, prog_name, prog_name, SOCKMIG_LAB_NODES_MAX, SOCKMIG_LAB_DEFAULT_NODES,
		SOCKMIG_LAB_NAME_MAX, SOCKMIG_LAB_DEFAULT_NAME);
}

/* The library's sentence names the lab already. */
static int lab_fail(int err)
{
	const char *msg = sockmig_error();

	cli_err("%s", msg[0] ? msg : strerror(-err));
	sockmig_error_clear();
	return 1;
}

static bool lab_need_root(const char *what)
{
	if (geteuid() == 0)
		return true;
	cli_err("lab %s needs root (it works inside network namespaces); run it as root or with sudo", what);
	return false;
}

static bool parse_name(const char *arg, const char **ret)
{
	if (!sockmig_lab_name_valid(arg)) {
		cli_err("'%s' is not a valid lab name (1 to %d letters, digits, '_' or '-')", arg, SOCKMIG_LAB_NAME_MAX);
		return false;
	}
	*ret = arg;
	return true;
}

static bool parse_nodes(const char *arg, unsigned int *ret)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || n < 1 || n > SOCKMIG_LAB_NODES_MAX) {
		cli_err("--nodes takes a number from 1 to %d, not '%s'", SOCKMIG_LAB_NODES_MAX, arg);
		return false;
	}
	*ret = (unsigned int)n;
	return true;
}

enum { OPT_NAME = 'N', OPT_NODES = 'n', OPT_JSON = 'j', OPT_HELP = 'h' };

static const struct option lab_options[] = {
	{ "name", required_argument, NULL, OPT_NAME },
	{ "nodes", required_argument, NULL, OPT_NODES },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

struct lab_args {
	const char *name;
	unsigned int nodes;
	bool json, help;
	bool has_nodes;
};

/* Options of every lab subcommand; allowed names which ones this one takes.
 * Stops at the first operand. Returns the index of it, or -1. */
static int parse_opts(const char *cmd, int argc, char *argv[], const char *allowed, struct lab_args *a)
{
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", lab_options, NULL)) != -1) {
		if (c == '?' || c == ':') {
			const char *bad = argv[optind - 1];
			if (optopt && c == '?' && strchr("Nn", optopt))
				cli_err("lab %s: option '%s' needs a value", cmd, bad);
			else
				cli_err("lab %s: unknown option '%s'; see '%s lab --help'", cmd, bad, prog_name);
			return -1;
		}
		if (c != OPT_HELP && !strchr(allowed, c)) {
			cli_err("lab %s does not take option '%s'", cmd, argv[optind - 1]);
			return -1;
		}
		switch (c) {
		case OPT_NAME:
			if (!parse_name(optarg, &a->name))
				return -1;
			break;
		case OPT_NODES:
			if (!parse_nodes(optarg, &a->nodes))
				return -1;
			a->has_nodes = true;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_HELP:
			a->help = true;
			break;
		}
	}
	return optind;
}

static int no_operands(const char *cmd, int argc, char *argv[], int idx)
{
	if (idx < argc) {
		cli_err("lab %s takes no argument '%s'; see '%s lab --help'", cmd, argv[idx], prog_name);
		return -1;
	}
	return 0;
}

/* ---- the lab's cluster: a config per node, a sockmigd in each ---- */

static void lab_file(const char *lab, const char *file, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s/%s", SOCKMIG_LAB_DIR, lab, file);
}

/* Node i's config: every node a member at its IPv4 address with its public
 * key, the daemons' control sockets side by side in the lab's directory
 * (nodes share the filesystem), the secret in one file of the lab's, node
 * i's signing key in nI.key. */
static int write_node_config(const char *lab, unsigned nodes, unsigned i, const uint8_t (*keys)[SOCKMIG_KEY_SIZE])
{
	struct sockmig_config *cfg = calloc(1, sizeof(*cfg) + nodes * sizeof(cfg->members[0]));
	char path[PATH_MAX], name[32];
	int fd, r;

	if (!cfg)
		return -ENOMEM;
	snprintf(cfg->cluster, sizeof(cfg->cluster), "%s", lab);
	snprintf(cfg->node, sizeof(cfg->node), "n%u", i);
	snprintf(cfg->secret_file, sizeof(cfg->secret_file), "secret");
	snprintf(cfg->key_file, sizeof(cfg->key_file), "n%u.key", i);
	snprintf(name, sizeof(name), "n%u.sock", i);
	lab_file(lab, name, cfg->control, sizeof(cfg->control));
	cfg->timeout_ms = SOCKMIG_CONFIG_DEFAULT_TIMEOUT_MS;
	cfg->n_members = nodes;
	for (unsigned k = 0; k < nodes; k++) {
		struct sockmig_member *m = &cfg->members[k];

		snprintf(m->name, sizeof(m->name), "n%u", k + 1);
		m->family = AF_INET;
		m->port = SOCKMIG_CONFIG_DEFAULT_PORT;
		sockmig_lab_node_address(k + 1, AF_INET, m->addr_text, sizeof(m->addr_text));
		inet_pton(AF_INET, m->addr_text, m->addr);
		m->has_key = true;
		memcpy(m->key, keys[k], SOCKMIG_KEY_SIZE);
	}
	snprintf(name, sizeof(name), "n%u.conf", i);
	lab_file(lab, name, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		r = -errno;
		cli_err("cannot write %s: %s", path, strerror(errno));
		free(cfg);
		return r;
	}
	r = sockmig_config_write(cfg, fd);
	close(fd);
	free(cfg);
	if (r < 0)
		cli_lib_err(r, "cannot write %s", path);
	return r;
}

/* $SOCKMIGD, else the sockmigd next to this sockmig (a build directory) or
 * in ../sbin (an installation), else the one on $PATH. */
static void find_sockmigd(char *buf, size_t size)
{
	const char *env = getenv("SOCKMIGD");
	char self[PATH_MAX], *dir;
	ssize_t n;

	if (env && env[0]) {
		snprintf(buf, size, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		dir = dirname(self);
		snprintf(buf, size, "%s/sockmigd", dir);
		if (access(buf, X_OK) == 0)
			return;
		snprintf(buf, size, "%s/../sbin/sockmigd", dir);
		if (access(buf, X_OK) == 0)
			return;
	}
	snprintf(buf, size, "sockmigd");
}

struct lab_daemon {
	pid_t pid;
	int ready_fd; /* read end of its stdout */
};

/* Fork a child that enters node i the way `lab exec` does and becomes its
 * sockmigd, in a session of its own (it outlives this command; lab down
 * ends it with the node's other processes). */
static int start_daemon(const char *lab, unsigned i, const char *exe, struct lab_daemon *ld)
{
	char node[16], conf[PATH_MAX], logp[PATH_MAX], name[32];
	int p[2];
	pid_t pid;

	snprintf(node, sizeof(node), "n%u", i);
	snprintf(name, sizeof(name), "n%u.conf", i);
	lab_file(lab, name, conf, sizeof(conf));
	snprintf(name, sizeof(name), "n%u.log", i);
	lab_file(lab, name, logp, sizeof(logp));
	if (pipe2(p, O_CLOEXEC) < 0) {
		cli_err("cannot make a pipe for the sockmigd of node %s: %s", node, strerror(errno));
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		cli_err("cannot start the sockmigd of node %s: fork: %s", node, strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		int log = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

		if (log < 0 || null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0 || dup2(log, 2) < 0)
			_exit(127);
		setsid();
		signal(SIGPIPE, SIG_DFL);
		if (sockmig_lab_enter(lab, node) < 0) {
			dprintf(2, "sockmig lab up: cannot enter node %s: %s\n", node, sockmig_error());
			_exit(127);
		}
		execlp(exe, exe, "--config", conf, (char *)NULL);
		dprintf(2, "sockmig lab up: cannot run %s: %s\n", exe, strerror(errno));
		_exit(127);
	}
	close(p[1]);
	ld->pid = pid;
	ld->ready_fd = p[0];
	return 0;
}

/* The last line of node i's log, for a sentence about why it did not start. */
static void last_log_line(const char *lab, unsigned i, char *buf, size_t size)
{
	char path[PATH_MAX], name[32], line[512];
	FILE *f;

	buf[0] = '\0';
	snprintf(name, sizeof(name), "n%u.log", i);
	lab_file(lab, name, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0])
			snprintf(buf, size, "%s", line);
	}
	fclose(f);
}

/* Wait (bounded) for the daemon's "ready" line; false after saying why. */
static bool wait_ready(const char *lab, unsigned i, struct lab_daemon *ld, time_t deadline)
{
	char buf[64], why[600];
	size_t got = 0;

	for (;;) {
		struct pollfd pfd = { .fd = ld->ready_fd, .events = POLLIN };
		time_t now = time(NULL);
		int n = poll(&pfd, 1, now >= deadline ? 0 : (int)(deadline - now) * 1000);
		ssize_t k;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			cli_err("the sockmigd of node n%u did not say it was ready within %d s", i, LAB_DAEMON_READY_S);
			return false;
		}
		k = read(ld->ready_fd, buf + got, sizeof(buf) - 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
		buf[got] = '\0';
		if (strstr(buf, "ready\n"))
			return true;
		if (got == sizeof(buf) - 1)
			break;
	}
	last_log_line(lab, i, why, sizeof(why));
	cli_err("the sockmigd of node n%u did not start%s%s", i, why[0] ? ": " : "", why);
	return false;
}

/* The cluster's secret, and one signing key per node (nI.key, mode 0600):
 * the public halves go into every node's config. */
static int make_keys(const char *lab, unsigned nodes, uint8_t (*keys)[SOCKMIG_KEY_SIZE])
{
	char path[PATH_MAX], name[32];
	int r;

	lab_file(lab, "secret", path, sizeof(path));
	r = sockmig_config_secret_create(path, NULL);
	if (r < 0) {
		cli_lib_err(r, "cannot make the secret of lab '%s'", lab);
		return r;
	}
	for (unsigned i = 1; i <= nodes; i++) {
		snprintf(name, sizeof(name), "n%u.key", i);
		lab_file(lab, name, path, sizeof(path));
		r = sockmig_config_key_create(path, keys[i - 1]);
		if (r < 0) {
			cli_lib_err(r, "cannot make the key of node n%u of lab '%s'", i, lab);
			return r;
		}
	}
	return 0;
}

static int lab_cluster_start(const char *lab, unsigned nodes)
{
	struct lab_daemon *ld = calloc(nodes, sizeof(*ld));
	uint8_t (*keys)[SOCKMIG_KEY_SIZE] = calloc(nodes, SOCKMIG_KEY_SIZE);
	char exe[PATH_MAX];
	time_t deadline;
	bool ok = true;
	int r;

	if (!ld || !keys) {
		cli_err("out of memory");
		free(ld);
		free(keys);
		return -ENOMEM;
	}
	r = make_keys(lab, nodes, keys);
	for (unsigned i = 1; r == 0 && i <= nodes; i++)
		r = write_node_config(lab, nodes, i, (const uint8_t(*)[SOCKMIG_KEY_SIZE])keys);
	free(keys);
	if (r < 0) {
		free(ld);
		return r;
	}
	find_sockmigd(exe, sizeof(exe));
	/* All at once, then wait for each: the lab is up in one start time. */
	for (unsigned i = 0; i < nodes; i++) {
		ld[i].ready_fd = -1;
		if (start_daemon(lab, i + 1, exe, &ld[i]) < 0) {
			ok = false;
			break;
		}
	}
	deadline = time(NULL) + LAB_DAEMON_READY_S;
	for (unsigned i = 0; i < nodes; i++) {
		if (ld[i].ready_fd < 0)
			continue;
		if (ok && !wait_ready(lab, i + 1, &ld[i], deadline))
			ok = false;
		close(ld[i].ready_fd);
	}
	/* The daemons were our children: reap those that already ended (the
	 * others are reparented when we exit). */
	for (unsigned i = 0; i < nodes; i++) {
		if (ld[i].pid > 0)
			waitpid(ld[i].pid, NULL, WNOHANG);
	}
	free(ld);
	return ok ? 0 : -ECHILD;
}

static int lab_up(int argc, char *argv[])
{
	struct lab_args a = { .name = SOCKMIG_LAB_DEFAULT_NAME, .nodes = SOCKMIG_LAB_DEFAULT_NODES };
	struct sockmig_lab_config cfg;
	int idx = parse_opts("up", argc, argv, "Nn", &a), r;

	if (idx < 0 || no_operands("up", argc, argv, idx) < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (!lab_need_root("up"))
		return 1;
	cfg.name = a.name;
	cfg.nodes = a.nodes;
	r = sockmig_lab_up(&cfg);
	if (r == -EEXIST) {
		struct sockmig_lab_info *info = NULL;
		bool half = false;

		sockmig_error_clear();
		if (sockmig_lab_info(a.name, &info) == 0) {
			half = !strcmp(info->state, "creating");
			sockmig_lab_info_free(info);
		}
		sockmig_error_clear();
		if (half)
			cli_err("lab '%s' already exists but is half-made (an earlier 'lab up' was interrupted or is still running); "
				"remove it with '%s lab down --name %s'", a.name, prog_name, a.name);
		else
			cli_err("lab '%s' already exists; remove it with '%s lab down --name %s'", a.name, prog_name,
				a.name);
		return 1;
	}
	if (r < 0)
		return lab_fail(r);
	r = lab_cluster_start(a.name, a.nodes);
	if (r < 0) {
		/* Half a cluster is no lab: take it down again. */
		if (sockmig_lab_down(a.name) < 0) {
			cli_err("lab '%s' was left half-made: %s; remove it with '%s lab down --name %s'", a.name,
				sockmig_error(), prog_name, a.name);
			sockmig_error_clear();
		}
		return 1;
	}
	printf("lab '%s' is up: nodes n1..n%u, a sockmigd in each (cluster '%s', configs in %s/%s/)\n", a.name, a.nodes,
	       a.name, SOCKMIG_LAB_DIR, a.name);
	return 0;
}

static int lab_down(int argc, char *argv[])
{
	struct lab_args a = { .name = SOCKMIG_LAB_DEFAULT_NAME };
	int idx = parse_opts("down", argc, argv, "N", &a), r;

	if (idx < 0 || no_operands("down", argc, argv, idx) < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (!lab_need_root("down"))
		return 1;
	r = sockmig_lab_down(a.name);
	if (r < 0)
		return lab_fail(r);
	return 0;
}

static int lab_exec(int argc, char *argv[])
{
	struct lab_args a = { .name = SOCKMIG_LAB_DEFAULT_NAME };
	int idx = parse_opts("exec", argc, argv, "N", &a), r;
	const char *node;

	if (idx < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (idx >= argc) {
		cli_err("lab exec needs a node and a command: %s lab exec NODE -- CMD [ARG...]", prog_name);
		return 1;
	}
	node = argv[idx++];
	if (idx < argc && !strcmp(argv[idx], "--"))
		idx++;
	if (idx >= argc) {
		cli_err("lab exec needs a command to run in node '%s'", node);
		return 1;
	}
	if (!lab_need_root("exec"))
		return 1;
	r = sockmig_lab_enter(a.name, node);
	if (r < 0)
		return lab_fail(r);
	/* The node's own cluster config, if up made one (a lab made by an
	 * older sockmig has none). */
	{
		char path[PATH_MAX], name[32];
		unsigned int i;

		if (sockmig_lab_node_lookup(a.name, node, &i, NULL) == 0) {
			snprintf(name, sizeof(name), "n%u.conf", i);
			lab_file(a.name, name, path, sizeof(path));
			if (access(path, R_OK) == 0)
				setenv("SOCKMIG_CONFIG", path, 1);
		}
		sockmig_error_clear();
	}
	execvp(argv[idx], &argv[idx]);
	r = errno;
	cli_err("cannot run '%s' in node %s of lab '%s': %s", argv[idx], node, a.name, strerror(r));
	/* As a shell does: 127 not found, 126 found but not runnable. */
	return r == ENOENT ? 127 : 126;
}

static void print_node_text(const struct sockmig_lab_node_info *ni)
{
	printf("  %-4s %-24s", ni->name, ni->netns);
	if (!ni->present) {
		printf(" (missing)\n");
		return;
	}
	for (size_t k = 0; k < ni->n_addrs; k++)
		printf(" %s %s/%u", ni->addrs[k].ifname, ni->addrs[k].text, ni->addrs[k].prefixlen);
	printf("\n");
}

static void print_node_json(const struct sockmig_lab_node_info *ni)
{
	/* Every string here is [A-Za-z0-9_.:-] by construction: no escaping. */
	printf("{\"name\":\"%s\",\"netns\":\"%s\",\"present\":%s,\"addresses\":[", ni->name, ni->netns,
	       ni->present ? "true" : "false");
	for (size_t k = 0; k < ni->n_addrs; k++)
		printf("%s{\"ifname\":\"%s\",\"family\":\"%s\",\"address\":\"%s\",\"prefixlen\":%u}", k ? "," : "",
		       ni->addrs[k].ifname, ni->addrs[k].family == AF_INET ? "inet" : "inet6", ni->addrs[k].text,
		       ni->addrs[k].prefixlen);
	printf("]}");
}

static int lab_status(int argc, char *argv[])
{
	struct lab_args a = { 0 };
	char (*names)[SOCKMIG_LAB_NAME_MAX + 1] = NULL;
	size_t n = 0, printed = 0;
	int idx = parse_opts("status", argc, argv, "Nj", &a), r, status = 0;

	if (idx < 0 || no_operands("status", argc, argv, idx) < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (!lab_need_root("status"))
		return 1;
	if (a.name) {
		names = calloc(1, sizeof(*names));
		if (!names)
			return lab_fail(-ENOMEM);
		snprintf(names[0], sizeof(names[0]), "%s", a.name);
		n = 1;
	} else {
		r = sockmig_lab_list(&names, &n);
		if (r < 0)
			return lab_fail(r);
	}
	if (a.json)
		printf("{\"labs\":[");
	else if (n == 0)
		printf("no labs\n");
	for (size_t i = 0; i < n; i++) {
		struct sockmig_lab_info *info;

		r = sockmig_lab_info(names[i], &info);
		if (r < 0) {
			status = lab_fail(r);
			continue;
		}
		if (a.json) {
			printf("%s{\"name\":\"%s\",\"state\":\"%s\",\"nodes\":[", printed ? "," : "", info->name, info->state);
			for (unsigned int k = 0; k < info->n_nodes; k++) {
				printf("%s", k ? "," : "");
				print_node_json(&info->nodes[k]);
			}
			printf("]}");
		} else {
			printf("lab %s: %s, %u node%s\n", info->name, info->state, info->n_nodes,
			       info->n_nodes == 1 ? "" : "s");
			for (unsigned int k = 0; k < info->n_nodes; k++)
				print_node_text(&info->nodes[k]);
		}
		printed++;
		sockmig_lab_info_free(info);
	}
	if (a.json)
		printf("]}\n");
	free(names);
	return status;
}

int lab_main(int argc, char *argv[])
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char *argv[]);
	} cmds[] = {
		{ "up", lab_up },
		{ "down", lab_down },
		{ "exec", lab_exec },
		{ "status", lab_status },
	};

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		lab_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	}
	cli_err("'lab %s' is not a lab subcommand (up, down, exec, status); see '%s lab --help'", argv[1], prog_name);
	return 1;
}
