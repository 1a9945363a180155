/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig nodes: the cluster's members as the local daemon sees them now
 * (each pinged over an authenticated channel), through its control socket
 * (docs/cluster.md, "Control protocol").
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


#define ANSWER_MAX (1u << 20)
/* The daemon pings every member at once, each bounded by a few seconds. */
#define ANSWER_TIMEOUT_S 30

static void nodes_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s nodes [--config FILE] [--json] [NODE]\n"
		"\n"
		"Lists the members of this node's cluster and, for each, whether its sockmigd\n"
		"answers an authenticated ping now, with the round trip. With NODE, pings only\n"
		"that member (exit status 1 if it does not answer). The local daemon is found\n"
		"through the control socket named in the config: --config FILE, else\n"
		"$SOCKMIG_CONFIG, else %s.\n",
		prog_name, SOCKMIG_CONFIG_DEFAULT_PATH);
}

/* ---- the answer: lines of key=value ---- */

#define KV_MAX 16

struct kv_line {
	char *word; /* first word: "cluster", "member", ... */
	size_t n;
	char *key[KV_MAX];
	char *val[KV_MAX];
};

/* Split in place: word k=v k="quoted \" value" ... */
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
	for (size_t i = 0; i < l->n; i++) {
		if (!strcmp(l->key[i], key))
			return l->val[i];
	}
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
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
	}
	return true;
}

/* ---- talking to the daemon ---- */

/* The whole answer, NUL-terminated; NULL after saying why. */
static char *ask_daemon(const char *path, const char *request)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = ANSWER_TIMEOUT_S };
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
			cli_err("no answer from sockmigd on %s: %s", path,
				errno == EAGAIN ? "it took more than 30 s" : strerror(errno));
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

static void print_member_text(const struct kv_line *l)
{
	const char *name = kv_get(l, "name"), *addr = kv_get(l, "address"), *port = kv_get(l, "port");
	const char *state = kv_get(l, "state"), *rtt = kv_get(l, "rtt_us"), *err = kv_get(l, "error");
	char where[80];
	bool v6 = addr && strchr(addr, ':');

	snprintf(where, sizeof(where), "%s%s%s:%s", v6 ? "[" : "", addr ? addr : "?", v6 ? "]" : "", port ? port : "?");
	printf("  %-12s %-26s %s", name ? name : "?", where, state ? state : "?");
	if (state && !strcmp(state, "up") && is_number(rtt))
		printf("%*s rtt %.3f ms", 5 - (int)strlen(state), "", strtoull(rtt, NULL, 10) / 1000.0);
	else if (err)
		printf("%*s %s", state ? 5 - (int)strlen(state) : 0, "", err);
	putchar('\n');
}

static void print_member_json(const struct kv_line *l, bool first)
{
	const char *state = kv_get(l, "state");

	printf("%s{\"name\":", first ? "" : ",");
	json_str(kv_get(l, "name"));
	printf(",\"address\":");
	json_str(kv_get(l, "address"));
	printf(",\"port\":%s", is_number(kv_get(l, "port")) ? kv_get(l, "port") : "null");
	printf(",\"self\":%s,\"state\":", state && !strcmp(state, "self") ? "true" : "false");
	json_str(state);
	if (state && !strcmp(state, "up")) {
		printf(",\"rtt_us\":%s", is_number(kv_get(l, "rtt_us")) ? kv_get(l, "rtt_us") : "null");
		printf(",\"connect_us\":%s", is_number(kv_get(l, "connect_us")) ? kv_get(l, "connect_us") : "null");
	}
	if (kv_get(l, "error")) {
		printf(",\"error\":");
		json_str(kv_get(l, "error"));
	}
	putchar('}');
}

int nodes_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *node = NULL, *env = getenv("SOCKMIG_CONFIG");
	struct sockmig_config *cfg = NULL;
	char request[128], *answer, *line, *save = NULL;
	bool json = false, done = false, ok = false, first = true, is_default = false;
	int c, r, status = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			nodes_usage(stdout);
			return 0;
		default:
			if (optopt == 'c')
				cli_err("nodes: option '--config' needs a file");
			else
				cli_err("nodes: unknown option '%s'; see '%s nodes --help'", argv[optind - 1], prog_name);
			return 1;
		}
	}
	if (optind < argc)
		node = argv[optind++];
	if (optind < argc) {
		cli_err("nodes takes at most one node name, not also '%s'", argv[optind]);
		return 1;
	}
	if (node && !sockmig_name_valid(node)) {
		cli_err("'%s' is not a valid node name", node);
		return 1;
	}
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
		return 1;
	}
	if (node && !sockmig_config_member(cfg, node)) {
		cli_err("'%s' is not a member of cluster '%s' (%s)", node, cfg->cluster, config);
		free(cfg);
		return 1;
	}
	snprintf(request, sizeof(request), node ? "ping %s\n" : "nodes\n", node);
	answer = ask_daemon(cfg->control, request);
	if (!answer) {
		free(cfg);
		return 1;
	}
	if (json) {
		printf("{\"cluster\":");
		json_str(cfg->cluster);
		printf(",\"node\":");
		json_str(cfg->node);
		printf(",\"members\":[");
	} else if (!node) {
		printf("cluster %s, this node %s\n", cfg->cluster, cfg->node);
	}
	for (line = strtok_r(answer, "\n", &save); line && !done; line = strtok_r(NULL, "\n", &save)) {
		struct kv_line l;

		if (!strcmp(line, "ok")) {
			done = ok = true;
			break;
		}
		if (!strncmp(line, "error ", 6)) {
			if (json)
				printf("]}\n");
			json = false;
			cli_err("%s", line + 6);
			done = true;
			break;
		}
		if (!kv_parse(line, &l) || strcmp(l.word, "member"))
			continue; /* lines a newer daemon adds */
		if (json)
			print_member_json(&l, first);
		else
			print_member_text(&l);
		first = false;
	}
	if (json)
		printf("]}\n");
	if (!done)
		cli_err("sockmigd on %s ended its answer early", cfg->control);
	status = ok ? 0 : 1;
	free(answer);
	free(cfg);
	return status;
}
