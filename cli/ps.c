/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig ps: the jobs (sockmig run) and the processes moved in that the
 * local daemon runs; with --all, those of every member (each asked by the
 * local daemon over an authenticated channel). docs/cluster.md.
 */
#include <errno.h>
#include <getopt.h>
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
/* --all asks every member at once, each bounded by 3 s. */
#define ANSWER_TIMEOUT_S 30

static void ps_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s ps [--all] [--json] [--config FILE]\n"
		"\n"
		"Lists what this node's sockmigd runs: jobs started with 'sockmig run' and\n"
		"processes moved here with 'sockmig migrate': name, node, pid (and the pid\n"
		"it sees itself, in its own pid namespace), address, state, open sockets.\n"
		"--all asks every member's daemon and lists them all (a member that does not\n"
		"answer is named on stderr). The daemon is found through the config:\n"
		"--config FILE, else $SOCKMIG_CONFIG, else %s.\n",
		prog_name, SOCKMIG_CONFIG_DEFAULT_PATH);
}

/* ---- the daemon's answer (a copy of this lives in each client file:
 * cli.h takes one line per subcommand) ---- */

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

static bool is_number(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
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

/* ---- ps ---- */

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

static void print_job_text(const struct kv_line *l)
{
	printf("%-16s %-6s %-8s %-8s %-20s %-9s %-8s %-8s %s\n", or_dash(kv_get(l, "name")), or_dash(kv_get(l, "node")),
	       or_dash(kv_get(l, "pid")), or_dash(kv_get(l, "own_pid")), or_dash(kv_get(l, "address")),
	       or_dash(kv_get(l, "state")), or_dash(kv_get(l, "sockets")), or_dash(kv_get(l, "kind")),
	       or_dash(kv_get(l, "cmd")));
}

static void print_job_json(const struct kv_line *l, bool first)
{
	static const char *const strs[] = { "name", "node", "address", "state", "kind", "origin", "from", "cmd" };
	static const char *const nums[] = { "pid", "own_pid", "sockets", "uid", "moves" };

	printf("%s{", first ? "" : ",");
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const char *v = kv_get(l, strs[i]);

		printf("%s\"%s\":", i ? "," : "", strs[i]);
		if (!v || !strcmp(v, "-"))
			printf("null");
		else
			json_str(v);
	}
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		const char *v = kv_get(l, nums[i]);
		printf(",\"%s\":%s", nums[i], is_number(v) ? v : "null");
	}
	putchar('}');
}

int ps_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL;
	char path[SOCKMIG_CONTROL_PATH_SIZE], node[SOCKMIG_NAME_MAX + 1], *answer, *line, *save = NULL;
	bool all = false, json = false, ok = false, first = true, first_down = true;
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			all = true;
			break;
		case 'j':
			json = true;
			break;
		case 'c':
			config = optarg;
			break;
		case 'h':
			ps_usage(stdout);
			return 0;
		default:
			if (optopt == 'c')
				cli_err("ps: option '--config' needs a file");
			else
				cli_err("ps: unknown option '%s'; see '%s ps --help'", argv[optind - 1], prog_name);
			return 1;
		}
	}
	if (optind < argc) {
		cli_err("ps takes no argument '%s'; see '%s ps --help'", argv[optind], prog_name);
		return 1;
	}
	if (!control_path(config, path, sizeof(path), node, sizeof(node)))
		return 1;
	answer = ask_daemon(path, all ? "ps all\n" : "ps\n", ANSWER_TIMEOUT_S);
	if (!answer)
		return 1;
	/* Errors first: the listing is printed only for a complete answer. */
	for (char *p = answer; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, "error ", 6)) {
			char *end = strchr(p, '\n');
			if (end)
				*end = '\0';
			cli_err("%s", p + 6);
			free(answer);
			return 1;
		}
	}
	if (json) {
		printf("{\"node\":");
		json_str(node);
		printf(",\"jobs\":[");
	} else {
		printf("%-16s %-6s %-8s %-8s %-20s %-9s %-8s %-8s %s\n", "NAME", "NODE", "PID", "OWN-PID", "ADDRESS", "STATE",
		       "SOCKETS", "KIND", "CMD");
	}
	/* Jobs first, then the members that did not answer: two passes. */
	for (int pass = 0; pass < 2; pass++) {
		char *copy = strdup(answer);

		if (!copy) {
			cli_err("out of memory");
			free(answer);
			return 1;
		}
		save = NULL;
		for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			struct kv_line l;

			if (!strcmp(line, "ok")) {
				ok = true;
				break;
			}
			if (!kv_parse(line, &l))
				continue;
			if (pass == 0 && !strcmp(l.word, "job")) {
				if (json)
					print_job_json(&l, first);
				else
					print_job_text(&l);
				first = false;
			} else if (pass == 1 && !strcmp(l.word, "node")) {
				if (json) {
					printf("%s{\"node\":", first_down ? "" : ",");
					json_str(kv_get(&l, "name"));
					printf(",\"error\":");
					json_str(kv_get(&l, "error"));
					putchar('}');
				} else {
					cli_err("node %s did not answer: %s", or_dash(kv_get(&l, "name")),
						or_dash(kv_get(&l, "error")));
				}
				first_down = false;
			}
		}
		free(copy);
		if (pass == 0 && json)
			printf("],\"unreachable\":[");
	}
	free(answer);
	if (json)
		printf("]}\n");
	if (!ok) {
		cli_err("sockmigd on %s ended its answer early", path);
		return 1;
	}
	return 0;
}
