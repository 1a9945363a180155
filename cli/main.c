/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/sockmig.h"

const char *prog_name = "sockmig";

static const struct {
	const char *name;
	int (*fn)(int argc, char *argv[]);
	const char *description;
} subcommands[] = {
	{ "lab", lab_main, "Make, use and remove a virtual cluster on this machine" },
	{ "sockets", sockets_main, "Move the TCP and UDP sockets of a process to another node" },
	{ "checkpoint", checkpoint_main, "Write a running process to an image file (and end it)" },
	{ "restore", ckpt_restore_main, "Start a checkpointed process again from its image file" },
	{ "nodes", nodes_main, "List the cluster's members and whether their daemons answer" },
	{ "migrate", migrate_main, "Move a running process with its connections to another node" },
	{ "run", run_main, "Start a command as a job with an address of its own" },
	{ "ps", ps_main, "List the jobs and moved-in processes of this node (or all nodes)" },
	{ "flows", flows_main, "List the flow routes (forward, rewrite) of this node (or all nodes)" },
};

static void show_usage(FILE *f)
{
	fprintf(f, "Usage: %s <cmd> [<args>]\n\n", prog_name);
	fprintf(f, "Available subcommands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); ++i)
		fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].description);
	fprintf(f, "\nEach subcommand takes --help.\n");
}

void cli_err(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_lib_err(int err, const char *fmt, ...)
{
	const char *detail = sockmig_error();
	va_list ap;

	fprintf(stderr, "%s: ", prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, ": %s\n", detail[0] ? detail : strerror(-err));
	sockmig_error_clear();
}

bool cli_need_root(const char *what)
{
	if (geteuid() == 0)
		return true;
	cli_err("%s needs root (it creates network namespaces); run it as root or with sudo", what);
	return false;
}

/* SOCKMIG_DEBUG=1: the library's debug messages on stderr, stamped with the
 * monotonic clock (shared by every process on the machine, so the two sides
 * of a move in a lab line up), to see where a move spends its time. */
static void debug_log(enum sockmig_log_level level, const char *msg, void *userdata)
{
	struct timespec ts;

	(void)level;
	(void)userdata;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	fprintf(stderr, "%s: %5ld.%06ld %s\n", prog_name, (long)(ts.tv_sec % 100000), ts.tv_nsec / 1000, msg);
}

int main(int argc, char *argv[])
{
	const char *debug = getenv("SOCKMIG_DEBUG");

	if (debug && debug[0] && strcmp(debug, "0"))
		sockmig_set_log(debug_log, SOCKMIG_LOG_DEBUG, NULL);
	if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		show_usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("sockmig %s\n", SOCKMIG_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); ++i) {
		if (!strcmp(argv[1], subcommands[i].name))
			return subcommands[i].fn(argc - 1, argv + 1);
	}
	cli_err("'%s' is not a subcommand; see '%s --help'", argv[1], prog_name);
	return 1;
}
