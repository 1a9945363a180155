/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig checkpoint / sockmig restore: a whole (single-threaded) process
 * into an image file and back, or straight to another node with its TCP and
 * UDP connections.
 *
 *   sockmig checkpoint PID -o IMAGE [--leave-running]
 *   sockmig restore IMAGE [--stdout FILE] [--stderr FILE] [--stdin FILE]
 *
 *   on S: sockmig checkpoint PID --to ADDR:PORT [--move-address IFACE]
 *   on D: sockmig restore --listen ADDR:PORT [--take-address IFACE] [--stdout FILE]...
 *
 * The checkpoint is refused before the process is frozen if the library
 * cannot take it (threads, an fd it cannot move, ...). To a file, the
 * original is killed only once the image is on disk (written, fsync'ed,
 * renamed into place); to a node, only once the node reports it running
 * (the socket move's two phases, docs/socket-move.md). On any failure before
 * that it is resumed as if nothing happened.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "sockmig/ckpt.h"
#include "sockmig/proc.h"
#include "sockmig/sockets.h"
#include "sockmig/sockmig.h"

static void checkpoint_usage(FILE *f)
{
	fprintf(f,
		"Usage: %1$s checkpoint PID -o IMAGE [--leave-running]\n"
		"       %1$s checkpoint PID --to ADDR:PORT [--move-address IFACE] [--timeout MS] [--drain MS]\n"
		"\n"
		"Write the process PID (memory, registers, signals, timers, fds) to IMAGE,\n"
		"then end it; --leave-running lets it go on instead. 'sockmig restore IMAGE'\n"
		"brings it back, with its own pid, in a pid namespace of its own.\n"
		"--to moves it, with its TCP and UDP connections, to the node where\n"
		"'sockmig restore --listen' waits; --move-address IFACE moves the sockets'\n"
		"addresses along. It ends here only once it runs there.\n",
		prog_name);
}

static void restore_usage(FILE *f)
{
	fprintf(f,
		"Usage: %1$s restore IMAGE [--stdin FILE] [--stdout FILE] [--stderr FILE]\n"
		"       %1$s restore --listen ADDR:PORT [--take-address IFACE] [--timeout MS] [--std...]\n"
		"\n"
		"Start the process checkpointed in IMAGE again; it goes on where it was\n"
		"stopped, with its pid (in a pid namespace of its own; from outside it has\n"
		"another, N, which it prints: \"restored pid N\"). Its fds are what it had:\n"
		"files reopened at their offsets, pipes with their bytes, sockets, ...; a\n"
		"standard fd that led to a terminal\n"
		"or a pipe left behind becomes /dev/null, or the FILE given (appended to).\n"
		"--listen takes a process moved with 'sockmig checkpoint PID --to'.\n"
		"It then waits for the process, passes on SIGTERM, SIGINT and SIGHUP, and\n"
		"exits with its status; --detach returns at once instead.\n",
		prog_name);
}

/* The directory of path, fsync'ed so that the rename that put the image in
 * place survives a crash of the machine as well. */
static int fsync_parent_dir(const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	char *slash;
	int fd, r = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* SIGKILL through a pidfd (the number cannot have been reused), then wait,
 * bounded, until the process is gone, so that when we report success it no
 * longer runs anywhere. */
static int kill_original(pid_t pid)
{
	struct pollfd pfd = { .events = POLLIN };
	int r = 0;

	pfd.fd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd.fd < 0)
		return errno == ESRCH ? 0 : -errno;
	if (syscall(SYS_pidfd_send_signal, pfd.fd, SIGKILL, NULL, 0) < 0)
		r = errno == ESRCH ? 0 : -errno;
	else if (poll(&pfd, 1, 5000) <= 0)
		r = -ETIMEDOUT;
	close(pfd.fd);
	return r;
}

static int move_to(pid_t pid, const char *to, const struct sockmig_move_opts *mo)
{
	struct sockmig_move_stats st = { 0 };
	int chan, r;

	/* the destination may vanish while we write to it */
	signal(SIGPIPE, SIG_IGN);
	chan = cli_connect("checkpoint", to);
	if (chan < 0)
		return 1;
	r = sockmig_sockets_send(pid, mo, chan, &st);
	close(chan);
	if (r < 0) {
		cli_lib_err(r, "cannot move pid %d (it goes on here, connections intact)", (int)pid);
		return 1;
	}
	printf("moved pid %d to %s: %u sockets (%u TCP, %u UDP), frozen %.3f ms, %u + %u packets replayed\n",
	       (int)pid, to, st.n_tcp + st.n_udp, st.n_tcp, st.n_udp, (double)st.frozen_ns / 1e6, st.captured_src,
	       st.captured_dst);
	return 0;
}

int checkpoint_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "leave-running", no_argument, NULL, 'l' },
		{ "to", required_argument, NULL, 't' },
		{ "move-address", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "drain", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct sockmig_move_opts mo = { .with_process = 1 };
	struct sockmig_proc *p = NULL;
	const char *out = NULL, *to = NULL;
	_cleanup_free_ char *tmp = NULL;
	bool leave_running = false, renamed = false;
	pid_t pid;
	int c, fd, r;

	while ((c = getopt_long(argc, argv, "o:lt:m:T:D:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'l':
			leave_running = true;
			break;
		case 't':
			to = optarg;
			break;
		case 'm':
			mo.ifname = optarg;
			break;
		case 'T':
			if (!cli_parse_ms("checkpoint", "timeout", optarg, &mo.timeout_ms))
				return 1;
			break;
		case 'D':
			if (!cli_parse_ms("checkpoint", "drain", optarg, &mo.drain_ms))
				return 1;
			break;
		case 'h':
			checkpoint_usage(stdout);
			return 0;
		default:
			checkpoint_usage(stderr);
			return 1;
		}
	}
	if (optind + 1 != argc || !cli_parse_pid(argv[optind], &pid)) {
		cli_err("checkpoint: give one process id%s%s", optind < argc ? ", not " : "",
			optind < argc ? argv[optind] : "");
		return 1;
	}
	if (to && (out || leave_running)) {
		cli_err("checkpoint: --to moves the process; it takes no -o or --leave-running");
		return 1;
	}
	if (to)
		return move_to(pid, to, &mo);
	if (!out || !out[0]) {
		cli_err("checkpoint: name the image file with -o IMAGE, or the node with --to ADDR:PORT");
		return 1;
	}
	if (mo.ifname) {
		cli_err("checkpoint: --move-address goes with --to");
		return 1;
	}

	/* Everything that can refuse without touching the process first. */
	r = sockmig_proc_open(pid, &p);
	if (r < 0) {
		cli_lib_err(r, "cannot checkpoint");
		return 1;
	}
	r = sockmig_ckpt_check(p, NULL);
	if (r < 0) {
		cli_lib_err(r, "cannot checkpoint");
		sockmig_proc_free(p);
		return 1;
	}
	/* A temporary name beside IMAGE: a failed checkpoint leaves an older
	 * IMAGE as it was, and IMAGE never exists half written. */
	if (asprintf(&tmp, "%s.XXXXXX", out) < 0) {
		tmp = NULL;
		cli_err("checkpoint: out of memory");
		sockmig_proc_free(p);
		return 1;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		cli_err("checkpoint: cannot create the image %s: %s", out, strerror(errno));
		sockmig_proc_free(p);
		return 1;
	}

	r = sockmig_proc_stop(p);
	if (r < 0)
		goto fail;
	r = sockmig_ckpt_dump(p, fd, NULL);
	if (r >= 0)
		sockmig_error_clear(); /* what fails from here is ours: strerror */
	if (r >= 0 && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && r >= 0)
		r = -errno;
	fd = -1;
	if (r >= 0) {
		if (rename(tmp, out) < 0)
			r = -errno;
		else
			renamed = true;
	}
	if (r >= 0)
		r = fsync_parent_dir(out);
	if (r < 0)
		goto fail;

	if (!leave_running) {
		/* Still stopped: it never runs again after the image was taken. */
		r = kill_original(pid);
		if (r < 0) {
			cli_err("checkpoint: image %s written, but pid %d could not be ended: %s", out, (int)pid,
				strerror(-r));
			sockmig_proc_free(p);
			return 1;
		}
	}
	sockmig_proc_free(p); /* with --leave-running: resumes it */
	printf("checkpointed pid %d to %s%s\n", (int)pid, out, leave_running ? " (left running)" : "");
	return 0;

fail:
	if (fd >= 0)
		close(fd);
	/* The new image, if the rename happened and the directory sync failed. */
	unlink(renamed ? out : tmp);
	cli_lib_err(r, "cannot checkpoint pid %d (it goes on untouched)", (int)pid);
	sockmig_proc_free(p); /* resumes it */
	return 1;
}

/* The restored process's init is our child: stay its parent, pass on the
 * signals that would end us, and exit with its status, as the program
 * itself would have. */
static int wait_restored(const struct sockmig_restored_proc *got)
{
	sigset_t set;
	int status;

	fflush(stdout);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		siginfo_t si;
		pid_t w = waitpid(got->init_pid, &status, WNOHANG);

		if (w == got->init_pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		if (w < 0)
			return 1;
		if (sigwaitinfo(&set, &si) > 0 && si.si_signo != SIGCHLD)
			kill(got->pid, si.si_signo);
	}
}

static int open_stdio(const char *path, int fd, struct sockmig_restore_opts *o)
{
	o->stdio_fd[fd] = open(path, fd == 0 ? O_RDONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (o->stdio_fd[fd] < 0) {
		cli_err("restore: cannot open %s for the process's fd %d: %s", path, fd, strerror(errno));
		return -1;
	}
	return 0;
}

int ckpt_restore_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "stdin", required_argument, NULL, 'i' },
		{ "stdout", required_argument, NULL, 's' },
		{ "stderr", required_argument, NULL, 'e' },
		{ "listen", required_argument, NULL, 'L' },
		{ "take-address", required_argument, NULL, 'a' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "detach", no_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct sockmig_restore_opts o = { .stdio_fd = { -1, -1, -1 } };
	bool detach = false;
	struct sockmig_restored_proc got = { 0 };
	struct sockmig_move_opts mo = { .with_process = 1, .restore = &o, .ret_proc = &got };
	struct sockmig_move_stats st = { 0 };
	const char *image = NULL, *listen_at = NULL;
	int c, fd, r = -EINVAL, rc = 1;

	while ((c = getopt_long(argc, argv, "i:s:e:L:a:T:dh", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			detach = true;
			break;
		case 'i':
		case 's':
		case 'e':
			if (open_stdio(optarg, c == 'i' ? 0 : c == 's' ? 1 : 2, &o) < 0)
				goto out;
			break;
		case 'L':
			listen_at = optarg;
			break;
		case 'a':
			mo.ifname = optarg;
			break;
		case 'T':
			if (!cli_parse_ms("restore", "timeout", optarg, &mo.timeout_ms))
				goto out;
			break;
		case 'h':
			restore_usage(stdout);
			rc = 0;
			goto out;
		default:
			restore_usage(stderr);
			goto out;
		}
	}
	if (optind + !listen_at != argc) {
		cli_err(listen_at ? "restore: --listen takes no image file" : "restore: give one image file");
		goto out;
	}
	if (listen_at) {
		struct sockmig_restored *socks = NULL;
		int chan;

		signal(SIGPIPE, SIG_IGN);
		chan = cli_accept_one("restore", listen_at);
		if (chan < 0)
			goto out;
		r = sockmig_sockets_receive(chan, &mo, &socks, &st);
		close(chan);
		sockmig_restored_free(socks); /* the process has its own */
		if (r < 0) {
			cli_lib_err(r, "cannot take the process (the source keeps it)");
			goto out;
		}
		printf("restored pid %d\n", (int)got.pid);
		fprintf(stderr, "pid %d inside its namespace; %u sockets (%u TCP, %u UDP) restored in %.3f ms\n",
			(int)got.own_pid, st.n_tcp + st.n_udp, st.n_tcp, st.n_udp, (double)st.restore_ns / 1e6);
		rc = detach ? 0 : wait_restored(&got);
		goto out;
	}
	if (mo.ifname) {
		cli_err("restore: --take-address goes with --listen");
		goto out;
	}
	image = argv[optind];
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_err("restore: cannot open %s: %s", image, strerror(errno));
		goto out;
	}
	{
		struct sockmig_restore *rs = NULL;

		r = sockmig_restore_prepare(fd, &rs);
		if (r >= 0)
			r = sockmig_restore_run(rs, &o, &got);
		if (r >= 0)
			r = sockmig_restore_release(rs);
		sockmig_restore_free(rs);
	}
	close(fd);
	if (r < 0) {
		cli_lib_err(r, "cannot restore %s", image);
		goto out;
	}
	printf("restored pid %d\n", (int)got.pid);
	rc = detach ? 0 : wait_restored(&got);
out:
	for (int i = 0; i < 3; i++)
		if (o.stdio_fd[i] >= 0)
			close(o.stdio_fd[i]);
	return rc;
}
