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
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

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
	_cleanup_free_ struct sockmig_config *cfg = NULL;
	_cleanup_free_ char *answer = NULL;
	char request[REQUEST_MAX + 2], cwd[PATH_MAX], exe[PATH_MAX], *pos;
	const char *log_path = NULL;
	struct cli_kv_line l;
	enum cli_ctl_line t;
	bool json = false;
	size_t len;
	int c;

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
	cfg = cli_ctl_config(config);
	if (!cfg)
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

	answer = cli_ctl_ask(cfg->control, request, RUN_TIMEOUT_S);
	if (!answer)
		return 1;
	pos = answer;
	while ((t = cli_ctl_next(&pos, &l)) == CLI_CTL_KV) {
		if (!strcmp(l.word, "log")) {
			log_path = cli_kv_get(&l, "path");
			continue;
		}
		if (strcmp(l.word, "job"))
			continue;
		if (json) {
			printf("{\"name\":");
			cli_json_str(cli_kv_get(&l, "name"));
			printf(",\"node\":");
			cli_json_str(cli_kv_get(&l, "node"));
			printf(",\"pid\":%ld,\"address\":", strtol(cli_kv_get(&l, "pid") ?: "0", NULL, 10));
			cli_json_str(cli_kv_get(&l, "address"));
		} else {
			printf("started job %s (pid %s) on %s with address %s", cli_kv_get(&l, "name") ?: "?",
			       cli_kv_get(&l, "pid") ?: "?", cli_kv_get(&l, "node") ?: "?",
			       cli_kv_get(&l, "address") ?: "?");
		}
	}
	if (t == CLI_CTL_ERROR)
		cli_err("run: %s", l.word);
	/* the log line follows the job line */
	if (t == CLI_CTL_OK) {
		if (json) {
			printf(",\"log\":");
			cli_json_str(log_path);
			printf("}\n");
		} else {
			printf("; its output goes to %s\n", log_path ? log_path : "?");
		}
	}
	if (t == CLI_CTL_END)
		cli_err("sockmigd on %s ended its answer early", cfg->control);
	return t == CLI_CTL_OK ? 0 : 1;

too_long:
	cli_err("run: the command line is too long for the daemon's request (at most %d bytes encoded, 120 arguments)",
		REQUEST_MAX);
	return 1;
}
