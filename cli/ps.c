/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig ps: the jobs (sockmig run) and the processes moved in that the
 * local daemon runs; with --all, those of every member (each asked by the
 * local daemon over an authenticated channel). docs/cluster.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

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

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

static void print_job_text(const struct cli_kv_line *l)
{
	printf("%-16s %-6s %-8s %-8s %-20s %-9s %-8s %-8s %s\n", or_dash(cli_kv_get(l, "name")),
	       or_dash(cli_kv_get(l, "node")), or_dash(cli_kv_get(l, "pid")), or_dash(cli_kv_get(l, "own_pid")),
	       or_dash(cli_kv_get(l, "address")), or_dash(cli_kv_get(l, "state")), or_dash(cli_kv_get(l, "sockets")),
	       or_dash(cli_kv_get(l, "kind")), or_dash(cli_kv_get(l, "cmd")));
}

static void print_job_json(const struct cli_kv_line *l, bool first)
{
	static const char *const strs[] = { "name", "node", "address", "state", "kind", "origin", "from", "cmd" };
	static const char *const nums[] = { "pid", "own_pid", "sockets", "uid", "moves" };

	printf("%s{", first ? "" : ",");
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const char *v = cli_kv_get(l, strs[i]);

		printf("%s\"%s\":", i ? "," : "", strs[i]);
		if (!v || !strcmp(v, "-"))
			printf("null");
		else
			cli_json_str(v);
	}
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		const char *v = cli_kv_get(l, nums[i]);
		printf(",\"%s\":%s", nums[i], cli_kv_is_number(v) ? v : "null");
	}
	putchar('}');
}

int ps_main(int argc, char *argv[])
{
	_cleanup_free_ struct sockmig_config *cfg = NULL;
	_cleanup_free_ char *answer = NULL;
	bool ok = false, first = true, first_down = true, all, json;
	struct cli_list_opts lo;
	int k = cli_list_opts(argc, argv, "ps", ps_usage, &lo);

	if (k >= 0)
		return k;
	all = lo.all;
	json = lo.json;
	cfg = cli_ctl_config(lo.config);
	if (!cfg)
		return 1;
	answer = cli_ctl_ask(cfg->control, all ? "ps all\n" : "ps\n", ANSWER_TIMEOUT_S);
	if (!answer)
		return 1;
	/* Errors first: the listing is printed only for a complete answer. */
	for (char *p = answer; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (!strncmp(p, "error ", 6)) {
			char *end = strchr(p, '\n');
			if (end)
				*end = '\0';
			cli_err("%s", p + 6);
			return 1;
		}
	}
	if (json) {
		printf("{\"node\":");
		cli_json_str(cfg->node);
		printf(",\"jobs\":[");
	} else {
		printf("%-16s %-6s %-8s %-8s %-20s %-9s %-8s %-8s %s\n", "NAME", "NODE", "PID", "OWN-PID", "ADDRESS", "STATE",
		       "SOCKETS", "KIND", "CMD");
	}
	/* Jobs first, then the members that did not answer: two passes. */
	for (int pass = 0; pass < 2; pass++) {
		_cleanup_free_ char *copy = strdup(answer);
		char *pos = copy;
		struct cli_kv_line l;
		enum cli_ctl_line t;

		if (!copy) {
			cli_err("out of memory");
			return 1;
		}
		while ((t = cli_ctl_next(&pos, &l)) == CLI_CTL_KV) {
			if (pass == 0 && !strcmp(l.word, "job")) {
				if (json)
					print_job_json(&l, first);
				else
					print_job_text(&l);
				first = false;
			} else if (pass == 1 && !strcmp(l.word, "node")) {
				if (json) {
					printf("%s{\"node\":", first_down ? "" : ",");
					cli_json_str(cli_kv_get(&l, "name"));
					printf(",\"error\":");
					cli_json_str(cli_kv_get(&l, "error"));
					putchar('}');
				} else {
					cli_err("node %s did not answer: %s", or_dash(cli_kv_get(&l, "name")),
						or_dash(cli_kv_get(&l, "error")));
				}
				first_down = false;
			}
		}
		ok = t == CLI_CTL_OK;
		if (pass == 0 && json)
			printf("],\"unreachable\":[");
	}
	if (json)
		printf("]}\n");
	if (!ok) {
		cli_err("sockmigd on %s ended its answer early", cfg->control);
		return 1;
	}
	return 0;
}
