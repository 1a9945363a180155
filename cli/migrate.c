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
 *   sockmig migrate PID|JOB --to NODE [--mode auto|move|forward|rewrite] [--json] [--config FILE]
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

/* Every step of a move is bounded by the cluster's timeout (10 s by
 * default) and the restore by 60 s: this is a bound on a daemon that hangs. */
#define MIGRATE_TIMEOUT_S 600
#define PS_TIMEOUT_S 10

static void migrate_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s migrate PID|JOB --to NODE [--mode auto|move|forward|rewrite] [--json] [--config FILE]\n"
		"\n"
		"Moves the process PID (or the job of that name, see 'sockmig ps') from this\n"
		"node to NODE with its TCP and UDP connections: its peers see a short pause,\n"
		"never a reset or a lost byte. It ends here only once it runs there; if\n"
		"anything fails before that, it goes on here as if nothing happened.\n"
		"Prints the pid it has on NODE and how long its connections were frozen.\n"
		"\n"
		"--mode: how its connections keep reaching it (docs/cluster.md, \"Modes\").\n"
		"  move     its own addresses (a job's, from 'sockmig run') leave this node and\n"
		"           appear on NODE; a socket on this node's address is refused.\n"
		"  forward  as move for a job's addresses; flows on a node's address are\n"
		"           forwarded by that node (their home) to NODE, never chained.\n"
		"  rewrite  as move for a job's addresses; a connection whose peer is on a\n"
		"           cluster node goes straight to NODE (both nodes translate the\n"
		"           addresses); listeners and unconnected UDP are forwarded.\n"
		"  auto     (the default) per flow: move, else rewrite, else forward.\n"
		"A flow keeps the mode it got on its first move.\n"
		"Only root may move another user's process. The process's stdin, stdout and\n"
		"stderr: a file is reopened on NODE, a terminal or pipe becomes /dev/null (a\n"
		"job's output goes on into its log).\n",
		prog_name);
}

/* A job's name, to its pid here (the local daemon's ps). */
static bool job_pid(const struct sockmig_config *cfg, const char *name, pid_t *ret)
{
	_cleanup_free_ char *answer = cli_ctl_ask(cfg->control, "ps\n", PS_TIMEOUT_S);
	struct cli_kv_line l;
	enum cli_ctl_line t;
	bool found = false;
	char *pos = answer;

	if (!answer)
		return false;
	while (!found && (t = cli_ctl_next(&pos, &l)) != CLI_CTL_END) {
		const char *n, *pid;

		if (t == CLI_CTL_ERROR) {
			cli_err("%s", l.word);
			return false;
		}
		if (t != CLI_CTL_KV || strcmp(l.word, "job"))
			continue;
		n = cli_kv_get(&l, "name");
		pid = cli_kv_get(&l, "pid");
		if (n && !strcmp(n, name) && pid)
			found = cli_parse_pid(pid, ret);
	}
	if (!found)
		cli_err("migrate: there is no job named '%s' on this node (%s); see '%s ps --all'", name, cfg->node,
			prog_name);
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
	_cleanup_free_ struct sockmig_config *cfg = NULL;
	_cleanup_free_ char *answer = NULL;
	char request[256], *pos;
	struct cli_kv_line l;
	enum cli_ctl_line t;
	bool json = false;
	pid_t pid;
	int c;

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
	if (strcmp(mode, "auto") && strcmp(mode, "move") && strcmp(mode, "forward") && strcmp(mode, "rewrite")) {
		cli_err("migrate: '%s' is not a mode: auto, move, forward or rewrite", mode);
		return 1;
	}
	cfg = cli_ctl_config(config);
	if (!cfg)
		return 1;
	if (!cli_parse_pid(what, &pid)) {
		if (!sockmig_name_valid(what)) {
			cli_err("migrate: '%s' is neither a process id nor a job name", what);
			return 1;
		}
		if (!job_pid(cfg, what, &pid))
			return 1;
	}
	snprintf(request, sizeof(request), "migrate %d %s %s\n", (int)pid, to, mode);
	answer = cli_ctl_ask(cfg->control, request, MIGRATE_TIMEOUT_S);
	if (!answer)
		return 1;
	pos = answer;
	while ((t = cli_ctl_next(&pos, &l)) == CLI_CTL_KV) {
		const char *job, *frozen, *new_pid;

		if (strcmp(l.word, "migrated"))
			continue;
		job = cli_kv_get(&l, "job");
		frozen = cli_kv_get(&l, "frozen_us");
		new_pid = cli_kv_get(&l, "new_pid");
		if (json) {
			printf("{\"pid\":%d,\"job\":", (int)pid);
			if (job && strcmp(job, "-"))
				cli_json_str(job);
			else
				printf("null");
			printf(",\"from\":");
			cli_json_str(cli_kv_get(&l, "from"));
			printf(",\"to\":");
			cli_json_str(cli_kv_get(&l, "to"));
			printf(",\"mode\":");
			cli_json_str(cli_kv_get(&l, "mode"));
			printf(",\"new_pid\":%ld,\"own_pid\":%ld,\"sockets\":%ld,\"tcp\":%ld,\"udp\":%ld,"
			       "\"frozen_ms\":%.3f,\"save_ms\":%.3f,\"captured_src\":%ld,\"captured_dst\":%ld,"
			       "\"forwarded\":%ld,\"rewritten\":%ld,\"precopy_rounds\":%ld,\"precopy_bytes\":%lld,"
			       "\"frozen_pages\":%lld}\n",
			       strtol(new_pid ? new_pid : "0", NULL, 10),
			       strtol(cli_kv_get(&l, "own_pid") ?: "0", NULL, 10),
			       strtol(cli_kv_get(&l, "sockets") ?: "0", NULL, 10),
			       strtol(cli_kv_get(&l, "tcp") ?: "0", NULL, 10),
			       strtol(cli_kv_get(&l, "udp") ?: "0", NULL, 10),
			       strtod(frozen ? frozen : "0", NULL) / 1000.0,
			       strtod(cli_kv_get(&l, "save_us") ?: "0", NULL) / 1000.0,
			       strtol(cli_kv_get(&l, "captured_src") ?: "0", NULL, 10),
			       strtol(cli_kv_get(&l, "captured_dst") ?: "0", NULL, 10),
			       strtol(cli_kv_get(&l, "forwarded") ?: "0", NULL, 10),
			       strtol(cli_kv_get(&l, "rewritten") ?: "0", NULL, 10),
			       strtol(cli_kv_get(&l, "precopy_rounds") ?: "0", NULL, 10),
			       strtoll(cli_kv_get(&l, "precopy_bytes") ?: "0", NULL, 10),
			       strtoll(cli_kv_get(&l, "frozen_pages") ?: "0", NULL, 10));
		} else {
			printf("moved pid %d", (int)pid);
			if (job && strcmp(job, "-"))
				printf(" (job %s)", job);
			printf(" from %s to %s", cli_kv_get(&l, "from") ?: "?", cli_kv_get(&l, "to") ?: "?");
			if (new_pid && strcmp(new_pid, "0"))
				printf(" (pid %s there)", new_pid);
			printf(": %s sockets, frozen %.3f ms", cli_kv_get(&l, "sockets") ?: "?",
			       strtod(frozen ? frozen : "0", NULL) / 1000.0);
			if (strtol(cli_kv_get(&l, "forwarded") ?: "0", NULL, 10))
				printf(", %s flows forwarded", cli_kv_get(&l, "forwarded"));
			if (strtol(cli_kv_get(&l, "rewritten") ?: "0", NULL, 10))
				printf(", %s flows rewritten", cli_kv_get(&l, "rewritten"));
			printf("\n");
		}
	}
	if (t == CLI_CTL_ERROR)
		cli_err("%s", l.word);
	else if (t == CLI_CTL_END)
		cli_err("sockmigd on %s ended its answer early", cfg->control);
	return t == CLI_CTL_OK ? 0 : 1;
}
