/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig sockets: move the TCP and UDP sockets of a running process to
 * another node, or snapshot them into an image.
 *
 *   on D:  sockmig sockets restore --listen ADDR:PORT [--take-address IFACE] -- CMD ARGS...
 *   on S:  sockmig sockets save PID [--fd N]... --to ADDR:PORT [--move-address IFACE]
 *
 *   sockmig sockets save PID [--fd N]... -o FILE      snapshot; the process keeps its sockets
 *   sockmig sockets restore FILE [--take-address IFACE] -- CMD ARGS...
 *   sockmig sockets show FILE [--json]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/sockets.h"
#include "sockmig/sockmig.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage:\n"
		"  %1$s sockets save PID [--fd N]... --to ADDR:PORT [--move-address IFACE] [--timeout MS] [--drain MS]\n"
		"  %1$s sockets save PID [--fd N]... -o FILE\n"
		"  %1$s sockets restore (--listen ADDR:PORT | FILE) [--take-address IFACE] [--timeout MS] -- CMD [ARGS...]\n"
		"  %1$s sockets show FILE [--json]\n"
		"\n"
		"save --to moves the sockets (all TCP and UDP sockets of PID, or the --fd ones)\n"
		"to the node where 'restore --listen' waits; CMD starts there with them at\n"
		"their fd numbers. --move-address IFACE moves their addresses along.\n"
		"Listeners move too: new connection attempts are held while the application\n"
		"accepts what waits in the queue (--drain MS, default 2000), and the\n"
		"connections it accepts meanwhile move with it. CMD finds the fd numbers\n"
		"of the sockets it got in $SOCKMIG_FDS (space-separated).\n"
		"save -o writes a snapshot and leaves the process its sockets.\n",
		prog_name);
}

/* A positive number of milliseconds for `sockets WHAT --OPT`. */
static bool parse_ms(const char *what, const char *opt, const char *arg, unsigned *ret)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "sockets %s", what);
	return cli_parse_ms(cmd, opt, arg, ret);
}

static void print_stats(FILE *f, const char *what, const struct sockmig_move_stats *st)
{
	fprintf(f, "%s %u sockets (%u TCP, %u UDP): ", what, st->n_tcp + st->n_udp, st->n_tcp, st->n_udp);
	if (!strcmp(what, "restored"))
		fprintf(f, "restored in %.3f ms", (double)st->restore_ns / 1e6);
	else
		fprintf(f, "frozen %.3f ms, saved in %.3f ms", (double)st->frozen_ns / 1e6, (double)st->save_ns / 1e6);
	fprintf(f, ", %u queued datagrams, %u + %u captured packets replayed\n", st->udp_queued, st->captured_src,
		st->captured_dst);
}

static int save_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "fd", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "output", required_argument, NULL, 'o' },
		{ "move-address", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "drain", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct sockmig_move_opts o = { 0 };
	struct sockmig_move_stats st = { 0 };
	const char *to = NULL, *out = NULL;
	_cleanup_free_ int *fds = NULL;
	size_t n_fds = 0;
	int c, r;
	unsigned long v, pid;

	while ((c = getopt_long(argc, argv, "f:t:o:m:T:D:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (!cli_parse_uint(optarg, INT_MAX, &v)) {
				cli_err("sockets save: --fd takes an fd number, not '%s'", optarg);
				return 1;
			}
			if (!(n_fds & (n_fds + 1))) { /* 0, 1, 3, 7, ...: grow */
				int *nf = realloc(fds, (n_fds + 1) * 2 * sizeof(*fds));

				if (!nf) {
					cli_err("sockets save: out of memory");
					return 1;
				}
				fds = nf;
			}
			fds[n_fds++] = (int)v;
			break;
		case 't':
			to = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'm':
			o.ifname = optarg;
			break;
		case 'T':
			if (!parse_ms("save", "timeout", optarg, &o.timeout_ms))
				return 1;
			break;
		case 'D':
			if (!parse_ms("save", "drain", optarg, &o.drain_ms))
				return 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind + 1 != argc || !cli_parse_uint(argv[optind], INT_MAX, &pid) || pid == 0) {
		cli_err("sockets save: give one process id%s%s", optind < argc ? ", not " : "",
			optind < argc ? argv[optind] : "");
		return 1;
	}
	if (!!to == !!out) {
		cli_err("sockets save: give either --to ADDR:PORT (move) or -o FILE (snapshot)");
		return 1;
	}
	if (n_fds) {
		o.fds = fds;
		o.n_fds = n_fds;
	}
	if (out) {
		int fd = strcmp(out, "-") ? open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : 1;

		if (fd < 0) {
			cli_err("sockets save: cannot create %s: %s", out, strerror(errno));
			return 1;
		}
		r = sockmig_sockets_snapshot((pid_t)pid, &o, fd, &st);
		if (fd != 1 && close(fd) < 0 && r >= 0)
			r = -errno;
		if (r < 0) {
			if (fd != 1)
				unlink(out);
			cli_lib_err(r, "cannot save the sockets of pid %lu", pid);
			return 1;
		}
		print_stats(out[0] == '-' && !out[1] ? stderr : stdout, "saved", &st);
		return 0;
	} else {
		int chan = cli_connect("sockets save", to);

		if (chan < 0)
			return 1;
		r = sockmig_sockets_send((pid_t)pid, &o, chan, &st);
		close(chan);
		if (r < 0) {
			cli_lib_err(r, "cannot move the sockets of pid %lu (it keeps them)", pid);
			return 1;
		}
		print_stats(stdout, "moved", &st);
		return 0;
	}
}

/* execvp would find it: checked before anything moves, so that the
 * sockets never arrive for a program that cannot start. */
static bool command_exists(const char *cmd)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	if (strchr(cmd, '/'))
		return access(cmd, X_OK) == 0;
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");

		if (snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, path, cmd) < (int)sizeof(buf) &&
		    access(buf, X_OK) == 0)
			return true;
		path += n + (path[n] == ':');
	}
	return false;
}

/*
 * Put every socket at its old fd number with at most one spare fd (10,000
 * sockets must fit under RLIMIT_NOFILE, which parking them all above the
 * targets did not): a socket whose target is held by another one that still
 * has to move waits for it; a cycle is broken by parking one above all.
 */
static int place_fds(struct sockmig_restored *rs)
{
	size_t n = rs->n, sp = 0;
	int maxfd = 0, r = 1;
	_cleanup_free_ int *occ = NULL;
	_cleanup_free_ uint8_t *state = NULL; /* 0 to do, 1 waiting, 2 placed */
	_cleanup_free_ size_t *stack = NULL;

	for (size_t i = 0; i < n; i++) {
		if (rs->socks[i].target_fd > maxfd)
			maxfd = rs->socks[i].target_fd;
		if (rs->socks[i].fd > maxfd)
			maxfd = rs->socks[i].fd;
	}
	occ = malloc(((size_t)maxfd + 1) * sizeof(*occ));
	state = calloc(n + 1, 1);
	stack = malloc((n + 1) * sizeof(*stack));
	if (!occ || !state || !stack) {
		cli_err("sockets restore: out of memory");
		return 1;
	}
	for (int f = 0; f <= maxfd; f++)
		occ[f] = -1;
	for (size_t i = 0; i < n; i++)
		occ[rs->socks[i].fd] = (int)i;
	for (size_t i0 = 0; i0 < n; i0++) {
		if (state[i0] == 2)
			continue;
		stack[sp++] = i0;
		while (sp) {
			size_t i = stack[sp - 1];
			int t = rs->socks[i].target_fd, cur = rs->socks[i].fd, j = occ[t];

			if (cur == t) {
				fcntl(t, F_SETFD, 0); /* the program must inherit it */
				occ[t] = -1;
				state[i] = 2;
				sp--;
				continue;
			}
			if (j >= 0 && (size_t)j != i) {
				if (state[j] == 1) { /* a cycle: park j out of the way */
					int nf = fcntl(rs->socks[j].fd, F_DUPFD_CLOEXEC, maxfd + 1);

					if (nf < 0)
						goto fail;
					occ[rs->socks[j].fd] = -1;
					close(rs->socks[j].fd);
					rs->socks[j].fd = nf;
					continue;
				}
				state[i] = 1;
				stack[sp++] = (size_t)j;
				continue;
			}
			if (dup2(cur, t) < 0)
				goto fail;
			if (cur <= maxfd)
				occ[cur] = -1;
			close(cur);
			rs->socks[i].fd = t;
			state[i] = 2;
			sp--;
		}
	}
	return 0;
fail:
	cli_err("sockets restore: cannot put the sockets at their fd numbers: %s", strerror(errno));
	return r;
}

/* Put each socket at its old fd number and become CMD. */
static int exec_with(struct sockmig_restored *rs, char *argv[])
{
	{
		/* Like systemd's LISTEN_FDS: the program learns what it got,
		 * including connections accepted while the listeners drained. */
		size_t size = rs->n * 12 + 1, len = 0;
		_cleanup_free_ char *list = malloc(size);

		if (!list) {
			cli_err("sockets restore: out of memory");
			return 1;
		}
		list[0] = '\0';
		for (size_t i = 0; i < rs->n; i++)
			len += (size_t)snprintf(list + len, size - len, "%s%d", i ? " " : "", rs->socks[i].target_fd);
		setenv("SOCKMIG_FDS", list, 1);
	}
	if (getenv("SOCKMIG_DEBUG")) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		fprintf(stderr, "%s: %5ld.%06ld exec %s\n", prog_name, (long)(ts.tv_sec % 100000), ts.tv_nsec / 1000,
			argv[0]);
	}
	fflush(stdout);
	fflush(stderr);
	if (place_fds(rs))
		return 1;
	signal(SIGPIPE, SIG_DFL);
	execvp(argv[0], argv);
	cli_err("sockets restore: cannot run %s: %s", argv[0], strerror(errno));
	return 127;
}

static int restore_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "take-address", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	/* We exec the program next: teardown must not delay it. */
	struct sockmig_move_opts o = { .cleanup_in_background = 1 };
	struct sockmig_move_stats st = { 0 };
	struct sockmig_restored *rs = NULL;
	const char *listen_at = NULL, *file = NULL;
	int c, r;

	while ((c = getopt_long(argc, argv, "+l:a:T:h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen_at = optarg;
			break;
		case 'a':
			o.ifname = optarg;
			break;
		case 'T':
			if (!parse_ms("restore", "timeout", optarg, &o.timeout_ms))
				return 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (!listen_at && optind < argc && strcmp(argv[optind], "--"))
		file = argv[optind++];
	if (optind < argc && !strcmp(argv[optind], "--"))
		optind++;
	if (!!listen_at == !!file) {
		cli_err("sockets restore: give either --listen ADDR:PORT or an image file");
		return 1;
	}
	if (optind >= argc) {
		cli_err("sockets restore: name the program to start with the sockets: -- CMD [ARGS...]");
		return 1;
	}
	if (!command_exists(argv[optind])) {
		cli_err("sockets restore: cannot run %s: no such program", argv[optind]);
		return 1;
	}
	if (file) {
		int fd = open(file, O_RDONLY | O_CLOEXEC);

		if (fd < 0) {
			cli_err("sockets restore: cannot open %s: %s", file, strerror(errno));
			return 1;
		}
		r = sockmig_sockets_restore_image(fd, &o, &rs, &st);
		close(fd);
		if (r < 0) {
			cli_lib_err(r, "cannot restore the sockets of %s", file);
			return 1;
		}
	} else {
		int chan = cli_accept_one("sockets restore", listen_at);

		if (chan < 0)
			return 1;
		r = sockmig_sockets_receive(chan, &o, &rs, &st);
		close(chan);
		if (r < 0) {
			cli_lib_err(r, "cannot take the sockets (the source keeps them)");
			return 1;
		}
	}
	print_stats(stderr, "restored", &st);
	r = exec_with(rs, argv + optind);
	sockmig_restored_free(rs);
	return r;
}

int sockets_show_main(int argc, char *argv[]);

int sockets_main(int argc, char *argv[])
{
	/* A side that goes away must be a failed write we roll back from,
	 * not a signal that kills us half-way. (Reset before exec.) */
	signal(SIGPIPE, SIG_IGN);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2;
	}
	if (!strcmp(argv[1], "save"))
		return save_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "restore"))
		return restore_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "show"))
		return sockets_show_main(argc - 1, argv + 1);
	cli_err("sockets: '%s' is not a subcommand (save, restore, show)", argv[1]);
	return 1;
}
