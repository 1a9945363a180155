/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig migrate: move a running process, with its TCP and UDP connections,
 * to another node of the cluster, through the daemons (docs/cluster.md,
 * "Migration"). The local daemon checks that the caller may act on the
 * process (root, or its owner), opens an authenticated channel to the
 * destination's daemon and streams the process and its sockets there; the
 * original ends only once the destination runs it, and any failure before
 * that leaves it running here with its connections.
 *
 *   sockmig migrate PID|JOB --to NODE [--mode auto|move] [--json] [--config FILE]
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

#define ANSWER_MAX (4u << 20)
/* Every step of a move is bounded by the cluster's timeout (10 s by
 * default) and the restore by 60 s: this is a bound on a daemon that hangs. */
#define MIGRATE_TIMEOUT_S 600
#define PS_TIMEOUT_S 10

static void migrate_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s migrate PID|JOB --to NODE [--mode auto|move] [--json] [--config FILE]\n"
		"\n"
		"Moves the process PID (or the job of that name, see 'sockmig ps') from this\n"
		"node to NODE with its TCP and UDP connections: its peers see a short pause,\n"
		"never a reset or a lost byte. It ends here only once it runs there; if\n"
		"anything fails before that, it goes on here as if nothing happened.\n"
		"Prints the pid it has on NODE and how long its connections were frozen.\n"
		"\n"
		"--mode: how its addresses keep working. 'move' (and 'auto', for now): the\n"
		"process's own addresses (a job's, from 'sockmig run') leave this node and\n"
		"appear on NODE. 'forward' and 'rewrite' are not implemented yet.\n"
		"Only root may move another user's process. The process's stdin, stdout and\n"
		"stderr: a file is reopened on NODE, a terminal or pipe becomes /dev/null (a\n"
		"job's output goes on into its log).\n",
		prog_name);
}

/* ---- the daemon's answer (the same helpers as in ps.c: cli.h takes one
 * line per subcommand) ---- */

#define KV_MAX 24

struct kv_line {
	char *word;
	size_t n;
	char *key[KV_MAX];
	char *val[KV_MAX];
};

static bool kv_parse(char *s, struct kv_line *l)
{
	memset(l, 0, sizeof(*l));
	l->word = s;
	s += strcspn(s, " ");
	if (!*s)
		return true;
	*s++ = '\0';
	while (*s && l->n < KV_MAX) {
		char *eq, *o;

		while (*s == ' ')
			s++;
		if (!*s)
			break;
		eq = strchr(s, '=');
		if (!eq)
			return false;
		*eq = '\0';
		l->key[l->n] = s;
		s = eq + 1;
		if (*s == '"') {
			o = ++s;
			l->val[l->n] = o;
			while (*s && *s != '"') {
				if (*s == '\\' && s[1])
					s++;
				*o++ = *s++;
			}
			if (*s != '"')
				return false;
			s++;
			*o = '\0';
		} else {
			l->val[l->n] = s;
			s += strcspn(s, " ");
			if (*s)
				*s++ = '\0';
		}
		l->n++;
	}
	return true;
}

static const char *kv_get(const struct kv_line *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->key[i], key))
			return l->val[i];
	return NULL;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* The config's control socket path; the node's name into node. */
static bool control_path(const char *config, char *path, size_t size, char *node, size_t nsize)
{
	const char *env = getenv("SOCKMIG_CONFIG");
	struct sockmig_config *cfg = NULL;
	bool is_default = false;
	int r;

	if (!config) {
		config = env && env[0] ? env : SOCKMIG_CONFIG_DEFAULT_PATH;
		is_default = !(env && env[0]);
	}
	r = sockmig_config_load(config, SOCKMIG_CONFIG_NO_SECRET, &cfg);
	if (r < 0) {
		if (r == -ENOENT && is_default)
			cli_err("there is no cluster config %s: give --config FILE or set SOCKMIG_CONFIG", config);
		else
			cli_lib_err(r, "cannot read the cluster config");
		return false;
	}
	snprintf(path, size, "%s", cfg->control);
	snprintf(node, nsize, "%s", cfg->node);
	free(cfg);
	return true;
}

/* The whole answer, NUL-terminated; NULL after saying why. */
static char *ask_daemon(const char *path, const char *request, int timeout_s)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = timeout_s };
	size_t len = 0, cap = 4096;
	char *buf = NULL;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		cli_err("control socket path %s is too long", path);
		return NULL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		cli_err("cannot make a unix socket: %s", strerror(errno));
		return NULL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED)
			cli_err("no sockmigd answers on %s (is it running on this node?)", path);
		else
			cli_err("cannot reach sockmigd on %s: %s", path, strerror(errno));
		goto fail;
	}
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request)) {
		cli_err("cannot send the request to sockmigd on %s: %s", path, strerror(errno));
		goto fail;
	}
	buf = malloc(cap);
	if (!buf)
		goto fail_mem;
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			char *b;
			if (cap >= ANSWER_MAX) {
				cli_err("sockmigd on %s answered more than %u bytes", path, ANSWER_MAX);
				goto fail;
			}
			b = realloc(buf, cap * 2);
			if (!b)
				goto fail_mem;
			buf = b;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (errno == EAGAIN)
				cli_err("no answer from sockmigd on %s within %d s", path, timeout_s);
			else
				cli_err("no answer from sockmigd on %s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return buf;
fail_mem:
	cli_err("out of memory");
fail:
	free(buf);
	close(fd);
	return NULL;
}

static bool parse_pid(const char *s, long *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v <= 0 || v > INT_MAX)
		return false;
	*ret = v;
	return true;
}

/* A job's name, to its pid here (the local daemon's ps). */
static bool job_pid(const char *path, const char *node, const char *name, long *ret)
{
	char *answer = ask_daemon(path, "ps\n", PS_TIMEOUT_S), *line, *save = NULL;
	bool found = false;

	if (!answer)
		return false;
	for (line = strtok_r(answer, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save)) {
		struct kv_line l;
		const char *n, *pid;

		if (!strncmp(line, "error ", 6)) {
			cli_err("%s", line + 6);
			free(answer);
			return false;
		}
		if (!kv_parse(line, &l) || strcmp(l.word, "job"))
			continue;
		n = kv_get(&l, "name");
		pid = kv_get(&l, "pid");
		if (n && !strcmp(n, name) && pid)
			found = parse_pid(pid, ret);
	}
	free(answer);
	if (!found)
		cli_err("migrate: there is no job named '%s' on this node (%s); see '%s ps --all'", name, node, prog_name);
	return found;
}

int migrate_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "mode", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *to = NULL, *mode = "auto", *what;
	char path[SOCKMIG_CONTROL_PATH_SIZE], node[SOCKMIG_NAME_MAX + 1], request[256], *answer, *line, *save = NULL;
	bool json = false, done = false;
	long pid;
	int c, status = 1;

	optind = 1;
	opterr = 0;
	/* options may follow the pid: no '+' */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			to = optarg;
			break;
		case 'm':
			mode = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'c':
			config = optarg;
			break;
		case 'h':
			migrate_usage(stdout);
			return 0;
		default:
			if (c == '?' && optopt)
				cli_err("migrate: option '%s' needs a value", argv[optind - 1]);
			else
				cli_err("migrate: unknown option '%s'; see '%s migrate --help'", argv[optind - 1], prog_name);
			return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_err("migrate: give one process id or job name%s%s", optind + 1 < argc ? ", not also " : "",
			optind + 1 < argc ? argv[optind + 1] : "");
		return 1;
	}
	what = argv[optind];
	if (!to) {
		cli_err("migrate: name the node to move it to with --to NODE");
		return 1;
	}
	if (!sockmig_name_valid(to)) {
		cli_err("migrate: '%s' is not a valid node name", to);
		return 1;
	}
	if (!strcmp(mode, "forward") || !strcmp(mode, "rewrite")) {
		cli_err("migrate: mode '%s' is not implemented yet; only 'move' (the process's own addresses move with it) is",
			mode);
		return 1;
	}
	if (strcmp(mode, "auto") && strcmp(mode, "move")) {
		cli_err("migrate: '%s' is not a mode: auto, move, forward or rewrite", mode);
		return 1;
	}
	if (!control_path(config, path, sizeof(path), node, sizeof(node)))
		return 1;
	if (!parse_pid(what, &pid)) {
		if (!sockmig_name_valid(what)) {
			cli_err("migrate: '%s' is neither a process id nor a job name", what);
			return 1;
		}
		if (!job_pid(path, node, what, &pid))
			return 1;
	}
	snprintf(request, sizeof(request), "migrate %ld %s %s\n", pid, to, mode);
	answer = ask_daemon(path, request, MIGRATE_TIMEOUT_S);
	if (!answer)
		return 1;
	for (line = strtok_r(answer, "\n", &save); line && !done; line = strtok_r(NULL, "\n", &save)) {
		struct kv_line l;
		const char *job, *frozen, *new_pid;

		if (!strcmp(line, "ok")) {
			done = true;
			status = 0;
			break;
		}
		if (!strncmp(line, "error ", 6)) {
			cli_err("%s", line + 6);
			done = true;
			break;
		}
		if (!kv_parse(line, &l) || strcmp(l.word, "migrated"))
			continue;
		job = kv_get(&l, "job");
		frozen = kv_get(&l, "frozen_us");
		new_pid = kv_get(&l, "new_pid");
		if (json) {
			printf("{\"pid\":%ld,\"job\":", pid);
			if (job && strcmp(job, "-"))
				json_str(job);
			else
				printf("null");
			printf(",\"from\":");
			json_str(kv_get(&l, "from"));
			printf(",\"to\":");
			json_str(kv_get(&l, "to"));
			printf(",\"mode\":");
			json_str(kv_get(&l, "mode"));
			printf(",\"new_pid\":%ld,\"own_pid\":%ld,\"sockets\":%ld,\"tcp\":%ld,\"udp\":%ld,"
			       "\"frozen_ms\":%.3f,\"save_ms\":%.3f,\"captured_src\":%ld,\"captured_dst\":%ld}\n",
			       strtol(new_pid ? new_pid : "0", NULL, 10), strtol(kv_get(&l, "own_pid") ?: "0", NULL, 10),
			       strtol(kv_get(&l, "sockets") ?: "0", NULL, 10), strtol(kv_get(&l, "tcp") ?: "0", NULL, 10),
			       strtol(kv_get(&l, "udp") ?: "0", NULL, 10), strtod(frozen ? frozen : "0", NULL) / 1000.0,
			       strtod(kv_get(&l, "save_us") ?: "0", NULL) / 1000.0,
			       strtol(kv_get(&l, "captured_src") ?: "0", NULL, 10),
			       strtol(kv_get(&l, "captured_dst") ?: "0", NULL, 10));
		} else {
			printf("moved pid %ld", pid);
			if (job && strcmp(job, "-"))
				printf(" (job %s)", job);
			printf(" from %s to %s", kv_get(&l, "from") ?: "?", kv_get(&l, "to") ?: "?");
			if (new_pid && strcmp(new_pid, "0"))
				printf(" (pid %s there)", new_pid);
			printf(": %s sockets, frozen %.3f ms\n", kv_get(&l, "sockets") ?: "?",
			       strtod(frozen ? frozen : "0", NULL) / 1000.0);
		}
	}
	if (!done)
		cli_err("sockmigd on %s ended its answer early", path);
	free(answer);
	return status;
}
