/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The client side of the local sockmigd's control socket, shared by `sockmig
 * nodes`, `migrate`, `run` and `ps` (docs/cluster.md, "Control protocol"):
 * the config that names the socket, one request and its whole answer, the
 * answer's `WORD key=value` lines, and JSON strings for --json.
 *
 * daemon/log.c has its own, stricter key=value splitter: the daemon does not
 * link the CLI.
 */
#include <getopt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/config.h"

/* `ps all` of a large cluster is the longest answer; this only bounds a
 * daemon gone wrong. */
#define CLI_CTL_ANSWER_MAX (4u << 20)

struct sockmig_config *cli_ctl_config(const char *file)
{
	const char *env = getenv("SOCKMIG_CONFIG");
	struct sockmig_config *cfg = NULL;
	bool is_default = false;
	int r;

	if (!file) {
		file = env && env[0] ? env : SOCKMIG_CONFIG_DEFAULT_PATH;
		is_default = !(env && env[0]);
	}
	r = sockmig_config_load(file, SOCKMIG_CONFIG_NO_SECRET, &cfg);
	if (r < 0) {
		if (r == -ENOENT && is_default)
			cli_err("there is no cluster config %s: give --config FILE or set SOCKMIG_CONFIG", file);
		else
			cli_lib_err(r, "cannot read the cluster config");
		return NULL;
	}
	return cfg;
}

char *cli_ctl_ask(const char *path, const char *request, int timeout_s)
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
		goto out_close;
	}
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) != (ssize_t)strlen(request)) {
		cli_err("cannot send the request to sockmigd on %s: %s", path, strerror(errno));
		goto out_close;
	}
	buf = malloc(cap);
	if (!buf)
		goto out_nomem;
	/* The daemon closes after the last line: read to EOF. */
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			char *b;

			if (cap >= CLI_CTL_ANSWER_MAX) {
				cli_err("sockmigd on %s answered more than %u bytes", path, CLI_CTL_ANSWER_MAX);
				goto out_free;
			}
			b = realloc(buf, cap * 2);
			if (!b)
				goto out_nomem;
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
			goto out_free;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	close(fd);
	return buf;

out_nomem:
	cli_err("out of memory");
out_free:
	free(buf);
out_close:
	close(fd);
	return NULL;
}

bool cli_kv_parse(char *s, struct cli_kv_line *l)
{
	memset(l, 0, sizeof(*l));
	l->word = s;
	s += strcspn(s, " ");
	if (!*s)
		return true;
	*s++ = '\0';
	while (*s && l->n < CLI_KV_MAX) {
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

const char *cli_kv_get(const struct cli_kv_line *l, const char *key)
{
	for (size_t i = 0; i < l->n; i++) {
		if (!strcmp(l->key[i], key))
			return l->val[i];
	}
	return NULL;
}

bool cli_kv_is_number(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
	}
	return true;
}

enum cli_ctl_line cli_ctl_next(char **pos, struct cli_kv_line *l)
{
	for (;;) {
		char *line = *pos + strspn(*pos, "\n"), *end;

		if (!*line) {
			*pos = line;
			return CLI_CTL_END;
		}
		end = line + strcspn(line, "\n");
		*pos = *end ? end + 1 : end;
		*end = '\0';
		if (!strcmp(line, "ok"))
			return CLI_CTL_OK;
		if (!strncmp(line, "error ", 6)) {
			memset(l, 0, sizeof(*l));
			l->word = line + 6;
			return CLI_CTL_ERROR;
		}
		/* A line that does not parse is one a newer daemon added. */
		if (cli_kv_parse(line, l))
			return CLI_CTL_KV;
	}
}

void cli_json_str(const char *s)
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

int cli_list_opts(int argc, char *argv[], const char *cmd, void (*usage)(FILE *f), struct cli_list_opts *ret)
{
	static const struct option opts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*ret = (struct cli_list_opts){ 0 };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			ret->all = true;
			break;
		case 'j':
			ret->json = true;
			break;
		case 'c':
			ret->config = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt == 'c')
				cli_err("%s: option '--config' needs a file", cmd);
			else
				cli_err("%s: unknown option '%s'; see '%s %s --help'", cmd, argv[optind - 1], prog_name, cmd);
			return 1;
		}
	}
	if (optind < argc) {
		cli_err("%s takes no argument '%s'; see '%s %s --help'", cmd, argv[optind], prog_name, cmd);
		return 1;
	}
	return -1;
}
