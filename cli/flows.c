/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig flows: the flow routes a node holds for moved processes (modes
 * forward and rewrite): each flow, its rule kind, and with --all every
 * member's, so that one sees which nodes hold rules for a flow.
 * docs/cluster.md, "Modes".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "sockmig/config.h"
#include "sockmig/sockmig.h"

#define ANSWER_TIMEOUT_S 60

static void flows_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s flows [--all] [--json] [--config FILE]\n"
		"\n"
		"Lists the flow routes this node holds for moved processes, one line each:\n"
		"  forward  this node is the flow's home: it forwards the flow's packets to\n"
		"           the node that runs the process now (NEXT-HOP)\n"
		"  accept   the process runs here; the flow's address is not this node's\n"
		"  rewrite  one end of the flow is here; addresses on the wire are\n"
		"           translated (OWN-NOW for this end, PEER-NOW for the other)\n"
		"LOCAL and REMOTE are the flow as the socket on that node sees it.\n"
		"--all: every member's routes (each asked by the local daemon).\n",
		prog_name);
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

int flows_main(int argc, char *argv[])
{
	static const char *const strs[] = { "node", "kind", "proto", "local", "remote", "next_hop", "own_now", "peer_now",
					    "job" };
	_cleanup_free_ struct sockmig_config *cfg = NULL;
	_cleanup_free_ char *answer = NULL;
	bool first = true, all, json;
	struct cli_list_opts lo;
	struct cli_kv_line l;
	enum cli_ctl_line t;
	char *pos;
	int k = cli_list_opts(argc, argv, "flows", flows_usage, &lo);

	if (k >= 0)
		return k;
	all = lo.all;
	json = lo.json;
	cfg = cli_ctl_config(lo.config);
	if (!cfg)
		return 1;
	answer = cli_ctl_ask(cfg->control, all ? "flows all\n" : "flows\n", ANSWER_TIMEOUT_S);
	if (!answer)
		return 1;
	if (json)
		printf("{\"node\":\"%s\",\"flows\":[", cfg->node);
	else
		printf("%-6s %-8s %-5s %-24s %-24s %-16s %-16s %-16s %s\n", "NODE", "KIND", "PROTO", "LOCAL", "REMOTE",
		       "NEXT-HOP", "OWN-NOW", "PEER-NOW", "JOB");
	pos = answer;
	while ((t = cli_ctl_next(&pos, &l)) == CLI_CTL_KV) {
		if (!strcmp(l.word, "node")) {
			cli_err("node %s did not answer: %s", or_dash(cli_kv_get(&l, "name")), or_dash(cli_kv_get(&l, "error")));
			continue;
		}
		if (strcmp(l.word, "flow"))
			continue;
		if (json) {
			printf("%s{", first ? "" : ",");
			for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
				const char *v = cli_kv_get(&l, strs[i]);

				printf("%s\"%s\":", i ? "," : "", strs[i]);
				if (!v || !strcmp(v, "-"))
					printf("null");
				else
					cli_json_str(v);
			}
			printf(",\"pid\":%s,\"packets\":%s}",
			       cli_kv_is_number(cli_kv_get(&l, "pid")) ? cli_kv_get(&l, "pid") : "null",
			       cli_kv_is_number(cli_kv_get(&l, "packets")) ? cli_kv_get(&l, "packets") : "null");
			first = false;
		} else {
			printf("%-6s %-8s %-5s %-24s %-24s %-16s %-16s %-16s %s\n", or_dash(cli_kv_get(&l, "node")),
			       or_dash(cli_kv_get(&l, "kind")), or_dash(cli_kv_get(&l, "proto")),
			       or_dash(cli_kv_get(&l, "local")), or_dash(cli_kv_get(&l, "remote")),
			       or_dash(cli_kv_get(&l, "next_hop")), or_dash(cli_kv_get(&l, "own_now")),
			       or_dash(cli_kv_get(&l, "peer_now")), or_dash(cli_kv_get(&l, "job")));
		}
	}
	if (json)
		printf("]}\n");
	if (t == CLI_CTL_ERROR) {
		cli_err("%s", l.word);
		return 1;
	}
	if (t == CLI_CTL_END) {
		cli_err("sockmigd on %s ended its answer early", cfg->control);
		return 1;
	}
	return 0;
}
