/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig nodes: the cluster's members as the local daemon sees them now
 * (each pinged over an authenticated channel), through its control socket
 * (docs/cluster.md, "Control protocol").
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

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

static void print_member_text(const struct cli_kv_line *l)
{
	const char *name = cli_kv_get(l, "name"), *addr = cli_kv_get(l, "address"), *port = cli_kv_get(l, "port");
	const char *state = cli_kv_get(l, "state"), *rtt = cli_kv_get(l, "rtt_us"), *err = cli_kv_get(l, "error");
	char where[80];
	bool v6 = addr && strchr(addr, ':');

	snprintf(where, sizeof(where), "%s%s%s:%s", v6 ? "[" : "", addr ? addr : "?", v6 ? "]" : "", port ? port : "?");
	printf("  %-12s %-26s %s", name ? name : "?", where, state ? state : "?");
	if (state && !strcmp(state, "up") && cli_kv_is_number(rtt))
		printf("%*s rtt %.3f ms", 5 - (int)strlen(state), "", strtoull(rtt, NULL, 10) / 1000.0);
	else if (err)
		printf("%*s %s", state ? 5 - (int)strlen(state) : 0, "", err);
	putchar('\n');
}

static void print_member_json(const struct cli_kv_line *l, bool first)
{
	const char *state = cli_kv_get(l, "state");

	printf("%s{\"name\":", first ? "" : ",");
	cli_json_str(cli_kv_get(l, "name"));
	printf(",\"address\":");
	cli_json_str(cli_kv_get(l, "address"));
	printf(",\"port\":%s", cli_kv_is_number(cli_kv_get(l, "port")) ? cli_kv_get(l, "port") : "null");
	printf(",\"self\":%s,\"state\":", state && !strcmp(state, "self") ? "true" : "false");
	cli_json_str(state);
	if (state && !strcmp(state, "up")) {
		const char *rtt = cli_kv_get(l, "rtt_us"), *connect = cli_kv_get(l, "connect_us");

		printf(",\"rtt_us\":%s", cli_kv_is_number(rtt) ? rtt : "null");
		printf(",\"connect_us\":%s", cli_kv_is_number(connect) ? connect : "null");
	}
	if (cli_kv_get(l, "error")) {
		printf(",\"error\":");
		cli_json_str(cli_kv_get(l, "error"));
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
	const char *config = NULL, *node = NULL;
	_cleanup_free_ struct sockmig_config *cfg = NULL;
	_cleanup_free_ char *answer = NULL;
	char request[128], *pos;
	struct cli_kv_line l;
	enum cli_ctl_line t;
	bool json = false, first = true;
	int c;

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
	cfg = cli_ctl_config(config);
	if (!cfg)
		return 1;
	if (node && !sockmig_config_member(cfg, node)) {
		cli_err("'%s' is not a member of cluster '%s' (%s)", node, cfg->cluster, cfg->path);
		return 1;
	}
	snprintf(request, sizeof(request), node ? "ping %s\n" : "nodes\n", node);
	answer = cli_ctl_ask(cfg->control, request, ANSWER_TIMEOUT_S);
	if (!answer)
		return 1;
	if (json) {
		printf("{\"cluster\":");
		cli_json_str(cfg->cluster);
		printf(",\"node\":");
		cli_json_str(cfg->node);
		printf(",\"members\":[");
	} else if (!node) {
		printf("cluster %s, this node %s\n", cfg->cluster, cfg->node);
	}
	pos = answer;
	while ((t = cli_ctl_next(&pos, &l)) == CLI_CTL_KV) {
		if (strcmp(l.word, "member"))
			continue; /* lines a newer daemon adds */
		if (json)
			print_member_json(&l, first);
		else
			print_member_text(&l);
		first = false;
	}
	if (json)
		printf("]}\n");
	if (t == CLI_CTL_ERROR)
		cli_err("%s", l.word);
	else if (t == CLI_CTL_END)
		cli_err("sockmigd on %s ended its answer early", cfg->control);
	return t == CLI_CTL_OK ? 0 : 1;
}
