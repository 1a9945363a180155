/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig run: start a command as a job of this node's daemon, with an
 * address of its own on the cluster segment, so that 'sockmig migrate' can
 * move it with its connections and leave nothing behind (docs/cluster.md,
 * "Jobs").
 *
 *   sockmig run [--name NAME] [--address ADDR[/PREFIX]] [--json] [--config FILE] -- CMD [ARG...]
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

#define ANSWER_MAX (4u << 20)
/* The daemon asks every member which names and addresses are taken (3 s
 * for one that does not answer). */
#define RUN_TIMEOUT_S 30
/* The control protocol's line. */
#define REQUEST_MAX 4095

static void run_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s run [--name NAME] [--address ADDR[/PREFIX]] [--json] [--config FILE] -- CMD [ARG...]\n"
		"\n"
		"Starts CMD as a job of this node's sockmigd, with an address of its own on the\n"
		"cluster's segment: the daemon picks one no member uses (host numbers from .100\n"
		"up in the member subnet; only root may choose it with --address), adds it to\n"
		"the cluster interface and announces it. The job should use that address: it\n"
		"is in its environment as SOCKMIG_JOB_ADDR (and its name as SOCKMIG_JOB_NAME).\n"
		"Then 'sockmig migrate NAME --to NODE' moves it with its connections.\n"
		"\n"
		"It runs as you (uid, gid, groups), in this directory, in a session of its own,\n"
		"with stdin /dev/null and stdout and stderr appended to its log (the path is\n"
		"printed; on every node it moves to, the same name beside the daemon's control\n"
		"socket). NAME (default: the command's name) is unique in the cluster.\n",
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

/* Bytes outside '!'..'~', and '%', as %XX; the empty string as "%". */
static bool encode(char *out, size_t size, size_t *len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	if (*len + 2 >= size)
		return false;
	out[(*len)++] = ' ';
	if (!*s) {
		out[(*len)++] = '%';
		return true;
	}
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (*len + 4 >= size)
			return false;
		if (c <= ' ' || c > '~' || c == '%') {
			out[(*len)++] = '%';
			out[(*len)++] = hex[c >> 4];
			out[(*len)++] = hex[c & 15];
		} else {
			out[(*len)++] = (char)c;
		}
	}
	return true;
}

/* CMD as the daemon will exec it: found in our PATH if it has no '/'. */
static bool resolve(const char *cmd, char *buf, size_t size)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL;

	if (strchr(cmd, '/')) {
		snprintf(buf, size, "%s", cmd);
		return true;
	}
	copy = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin");
	if (!copy)
		return false;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		struct stat st;

		snprintf(buf, size, "%s/%s", *dir ? dir : ".", cmd);
		if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0) {
			free(copy);
			return true;
		}
	}
	free(copy);
	cli_err("run: there is no command '%s' in your PATH", cmd);
	return false;
}

int run_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "address", required_argument, NULL, 'a' },
		{ "json", no_argument, NULL, 'j' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *name = "-", *address = "-";
	char path[SOCKMIG_CONTROL_PATH_SIZE], node[SOCKMIG_NAME_MAX + 1], request[REQUEST_MAX + 2], cwd[PATH_MAX];
	char exe[PATH_MAX], *answer, *line, *save = NULL;
	const char *log_path = NULL;
	bool json = false, done = false;
	size_t len;
	int c, status = 1;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'a':
			address = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'c':
			config = optarg;
			break;
		case 'h':
			run_usage(stdout);
			return 0;
		default:
			if (c == '?' && optopt)
				cli_err("run: option '%s' needs a value", argv[optind - 1]);
			else
				cli_err("run: unknown option '%s'; see '%s run --help'", argv[optind - 1], prog_name);
			return 1;
		}
	}
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (optind >= argc) {
		cli_err("run: give the command to run: %s run [--name NAME] -- CMD [ARG...]", prog_name);
		return 1;
	}
	if (strcmp(name, "-") && !sockmig_name_valid(name)) {
		cli_err("run: '%s' is not a valid job name (1 to %d of letters, digits, '_', '-', '.')", name,
			SOCKMIG_NAME_MAX);
		return 1;
	}
	if (!*address || strchr(address, ' ')) {
		cli_err("run: '%s' is not an address", address);
		return 1;
	}
	if (!getcwd(cwd, sizeof(cwd))) {
		cli_err("run: cannot tell the current directory: %s", strerror(errno));
		return 1;
	}
	if (!resolve(argv[optind], exe, sizeof(exe)))
		return 1;
	if (!control_path(config, path, sizeof(path), node, sizeof(node)))
		return 1;
	len = (size_t)snprintf(request, sizeof(request), "run %s %s", name, address);
	if (!encode(request, sizeof(request), &len, cwd) || !encode(request, sizeof(request), &len, exe))
		goto too_long;
	for (int i = optind + 1; i < argc; i++) {
		if (i - optind >= 120 || !encode(request, sizeof(request), &len, argv[i]))
			goto too_long;
	}
	request[len++] = '\n';
	request[len] = '\0';

	answer = ask_daemon(path, request, RUN_TIMEOUT_S);
	if (!answer)
		return 1;
	for (line = strtok_r(answer, "\n", &save); line && !done; line = strtok_r(NULL, "\n", &save)) {
		struct kv_line l;

		if (!strcmp(line, "ok")) {
			done = true;
			status = 0;
			break;
		}
		if (!strncmp(line, "error ", 6)) {
			cli_err("run: %s", line + 6);
			done = true;
			break;
		}
		if (!kv_parse(line, &l))
			continue;
		if (!strcmp(l.word, "log")) {
			log_path = kv_get(&l, "path");
			continue;
		}
		if (strcmp(l.word, "job"))
			continue;
		if (json) {
			printf("{\"name\":");
			json_str(kv_get(&l, "name"));
			printf(",\"node\":");
			json_str(kv_get(&l, "node"));
			printf(",\"pid\":%ld,\"address\":", strtol(kv_get(&l, "pid") ?: "0", NULL, 10));
			json_str(kv_get(&l, "address"));
		} else {
			printf("started job %s (pid %s) on %s with address %s", kv_get(&l, "name") ?: "?",
			       kv_get(&l, "pid") ?: "?", kv_get(&l, "node") ?: "?", kv_get(&l, "address") ?: "?");
		}
	}
	/* the log line follows the job line */
	if (status == 0) {
		if (json) {
			printf(",\"log\":");
			json_str(log_path);
			printf("}\n");
		} else {
			printf("; its output goes to %s\n", log_path ? log_path : "?");
		}
	}
	if (!done)
		cli_err("sockmigd on %s ended its answer early", path);
	free(answer);
	return status;

too_long:
	cli_err("run: the command line is too long for the daemon's request (at most %d bytes encoded, 120 arguments)",
		REQUEST_MAX);
	return 1;
}
