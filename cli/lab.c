/* SPDX-License-Identifier: GPL-2.0-or-later */
/* sockmig lab: make, use and remove a cluster of namespaces on this machine. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/lab.h"
#include "sockmig/sockmig.h"

static void lab_usage(FILE *f)
{
	fprintf(f,
		"Usage: %s lab up [--nodes N] [--name LAB]\n"
		"       %s lab down [--name LAB]\n"
		"       %s lab exec [--name LAB] NODE -- CMD [ARG...]\n"
		"       %s lab status [--name LAB] [--json]\n"
		"\n"
		"A lab is N nodes n1..nN (1 to %d, default %d), each a network namespace\n"
		"with eth0 at 198.18.0.i/24 and 2001:2::i/64 on one bridge. LAB names are\n"
		"1 to %d of [A-Za-z0-9_-], default '%s'. Needs root.\n",
		prog_name, prog_name, prog_name, prog_name, SOCKMIG_LAB_NODES_MAX, SOCKMIG_LAB_DEFAULT_NODES,
		SOCKMIG_LAB_NAME_MAX, SOCKMIG_LAB_DEFAULT_NAME);
}

/* The library's sentence names the lab already. */
static int lab_fail(int err)
{
	const char *msg = sockmig_error();

	cli_err("%s", msg[0] ? msg : strerror(-err));
	sockmig_error_clear();
	return 1;
}

static bool lab_need_root(const char *what)
{
	if (geteuid() == 0)
		return true;
	cli_err("lab %s needs root (it works inside network namespaces); run it as root or with sudo", what);
	return false;
}

static bool parse_name(const char *arg, const char **ret)
{
	if (!sockmig_lab_name_valid(arg)) {
		cli_err("'%s' is not a valid lab name (1 to %d letters, digits, '_' or '-')", arg, SOCKMIG_LAB_NAME_MAX);
		return false;
	}
	*ret = arg;
	return true;
}

static bool parse_nodes(const char *arg, unsigned int *ret)
{
	char *end;
	unsigned long n;

	errno = 0;
	n = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || n < 1 || n > SOCKMIG_LAB_NODES_MAX) {
		cli_err("--nodes takes a number from 1 to %d, not '%s'", SOCKMIG_LAB_NODES_MAX, arg);
		return false;
	}
	*ret = (unsigned int)n;
	return true;
}

enum { OPT_NAME = 'N', OPT_NODES = 'n', OPT_JSON = 'j', OPT_HELP = 'h' };

static const struct option lab_options[] = {
	{ "name", required_argument, NULL, OPT_NAME },
	{ "nodes", required_argument, NULL, OPT_NODES },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

struct lab_args {
	const char *name;
	unsigned int nodes;
	bool json, help;
	bool has_nodes;
};

/* Options of every lab subcommand; allowed names which ones this one takes.
 * Stops at the first operand. Returns the index of it, or -1. */
static int parse_opts(const char *cmd, int argc, char *argv[], const char *allowed, struct lab_args *a)
{
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+h", lab_options, NULL)) != -1) {
		if (c == '?' || c == ':') {
			const char *bad = argv[optind - 1];
			if (optopt && c == '?' && strchr("Nn", optopt))
				cli_err("lab %s: option '%s' needs a value", cmd, bad);
			else
				cli_err("lab %s: unknown option '%s'; see '%s lab --help'", cmd, bad, prog_name);
			return -1;
		}
		if (c != OPT_HELP && !strchr(allowed, c)) {
			cli_err("lab %s does not take option '%s'", cmd, argv[optind - 1]);
			return -1;
		}
		switch (c) {
		case OPT_NAME:
			if (!parse_name(optarg, &a->name))
				return -1;
			break;
		case OPT_NODES:
			if (!parse_nodes(optarg, &a->nodes))
				return -1;
			a->has_nodes = true;
			break;
		case OPT_JSON:
			a->json = true;
			break;
		case OPT_HELP:
			a->help = true;
			break;
		}
	}
	return optind;
}

static int no_operands(const char *cmd, int argc, char *argv[], int idx)
{
	if (idx < argc) {
		cli_err("lab %s takes no argument '%s'; see '%s lab --help'", cmd, argv[idx], prog_name);
		return -1;
	}
	return 0;
}

static int lab_up(int argc, char *argv[])
{
	struct lab_args a = { .name = SOCKMIG_LAB_DEFAULT_NAME, .nodes = SOCKMIG_LAB_DEFAULT_NODES };
	struct sockmig_lab_config cfg;
	int idx = parse_opts("up", argc, argv, "Nn", &a), r;

	if (idx < 0 || no_operands("up", argc, argv, idx) < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (!lab_need_root("up"))
		return 1;
	cfg.name = a.name;
	cfg.nodes = a.nodes;
	r = sockmig_lab_up(&cfg);
	if (r == -EEXIST) {
		struct sockmig_lab_info *info = NULL;
		bool half = false;

		sockmig_error_clear();
		if (sockmig_lab_info(a.name, &info) == 0) {
			half = !strcmp(info->state, "creating");
			sockmig_lab_info_free(info);
		}
		sockmig_error_clear();
		if (half)
			cli_err("lab '%s' already exists but is half-made (an earlier 'lab up' was interrupted or is still running); "
				"remove it with '%s lab down --name %s'", a.name, prog_name, a.name);
		else
			cli_err("lab '%s' already exists; remove it with '%s lab down --name %s'", a.name, prog_name,
				a.name);
		return 1;
	}
	if (r < 0)
		return lab_fail(r);
	printf("lab '%s' is up: nodes n1..n%u\n", a.name, a.nodes);
	return 0;
}

static int lab_down(int argc, char *argv[])
{
	struct lab_args a = { .name = SOCKMIG_LAB_DEFAULT_NAME };
	int idx = parse_opts("down", argc, argv, "N", &a), r;

	if (idx < 0 || no_operands("down", argc, argv, idx) < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (!lab_need_root("down"))
		return 1;
	r = sockmig_lab_down(a.name);
	if (r < 0)
		return lab_fail(r);
	return 0;
}

static int lab_exec(int argc, char *argv[])
{
	struct lab_args a = { .name = SOCKMIG_LAB_DEFAULT_NAME };
	int idx = parse_opts("exec", argc, argv, "N", &a), r;
	const char *node;

	if (idx < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (idx >= argc) {
		cli_err("lab exec needs a node and a command: %s lab exec NODE -- CMD [ARG...]", prog_name);
		return 1;
	}
	node = argv[idx++];
	if (idx < argc && !strcmp(argv[idx], "--"))
		idx++;
	if (idx >= argc) {
		cli_err("lab exec needs a command to run in node '%s'", node);
		return 1;
	}
	if (!lab_need_root("exec"))
		return 1;
	r = sockmig_lab_enter(a.name, node);
	if (r < 0)
		return lab_fail(r);
	execvp(argv[idx], &argv[idx]);
	r = errno;
	cli_err("cannot run '%s' in node %s of lab '%s': %s", argv[idx], node, a.name, strerror(r));
	/* As a shell does: 127 not found, 126 found but not runnable. */
	return r == ENOENT ? 127 : 126;
}

static void print_node_text(const struct sockmig_lab_node_info *ni)
{
	printf("  %-4s %-24s", ni->name, ni->netns);
	if (!ni->present) {
		printf(" (missing)\n");
		return;
	}
	for (size_t k = 0; k < ni->n_addrs; k++)
		printf(" %s %s/%u", ni->addrs[k].ifname, ni->addrs[k].text, ni->addrs[k].prefixlen);
	printf("\n");
}

static void print_node_json(const struct sockmig_lab_node_info *ni)
{
	/* Every string here is [A-Za-z0-9_.:-] by construction: no escaping. */
	printf("{\"name\":\"%s\",\"netns\":\"%s\",\"present\":%s,\"addresses\":[", ni->name, ni->netns,
	       ni->present ? "true" : "false");
	for (size_t k = 0; k < ni->n_addrs; k++)
		printf("%s{\"ifname\":\"%s\",\"family\":\"%s\",\"address\":\"%s\",\"prefixlen\":%u}", k ? "," : "",
		       ni->addrs[k].ifname, ni->addrs[k].family == AF_INET ? "inet" : "inet6", ni->addrs[k].text,
		       ni->addrs[k].prefixlen);
	printf("]}");
}

static int lab_status(int argc, char *argv[])
{
	struct lab_args a = { 0 };
	char (*names)[SOCKMIG_LAB_NAME_MAX + 1] = NULL;
	size_t n = 0, printed = 0;
	int idx = parse_opts("status", argc, argv, "Nj", &a), r, status = 0;

	if (idx < 0 || no_operands("status", argc, argv, idx) < 0)
		return 1;
	if (a.help) {
		lab_usage(stdout);
		return 0;
	}
	if (!lab_need_root("status"))
		return 1;
	if (a.name) {
		names = calloc(1, sizeof(*names));
		if (!names)
			return lab_fail(-ENOMEM);
		snprintf(names[0], sizeof(names[0]), "%s", a.name);
		n = 1;
	} else {
		r = sockmig_lab_list(&names, &n);
		if (r < 0)
			return lab_fail(r);
	}
	if (a.json)
		printf("{\"labs\":[");
	else if (n == 0)
		printf("no labs\n");
	for (size_t i = 0; i < n; i++) {
		struct sockmig_lab_info *info;

		r = sockmig_lab_info(names[i], &info);
		if (r < 0) {
			status = lab_fail(r);
			continue;
		}
		if (a.json) {
			printf("%s{\"name\":\"%s\",\"state\":\"%s\",\"nodes\":[", printed ? "," : "", info->name, info->state);
			for (unsigned int k = 0; k < info->n_nodes; k++) {
				printf("%s", k ? "," : "");
				print_node_json(&info->nodes[k]);
			}
			printf("]}");
		} else {
			printf("lab %s: %s, %u node%s\n", info->name, info->state, info->n_nodes,
			       info->n_nodes == 1 ? "" : "s");
			for (unsigned int k = 0; k < info->n_nodes; k++)
				print_node_text(&info->nodes[k]);
		}
		printed++;
		sockmig_lab_info_free(info);
	}
	if (a.json)
		printf("]}\n");
	free(names);
	return status;
}

int lab_main(int argc, char *argv[])
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char *argv[]);
	} cmds[] = {
		{ "up", lab_up },
		{ "down", lab_down },
		{ "exec", lab_exec },
		{ "status", lab_status },
	};

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		lab_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	}
	cli_err("'lab %s' is not a lab subcommand (up, down, exec, status); see '%s lab --help'", argv[1], prog_name);
	return 1;
}
