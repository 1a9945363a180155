/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmig checkpoint / sockmig restore: a whole (single-threaded) process
 * into an image file, and back as a new process.
 *
 *   sockmig checkpoint PID -o IMAGE [--leave-running]
 *   sockmig restore IMAGE [--stdout FILE]
 *
 * The checkpoint is refused before the process is frozen if the library
 * cannot take it (threads, fds beyond 0..2, shared mappings). The original is
 * killed only once the image is on disk (written, fsync'ed, renamed into
 * place); on any failure before that it is resumed as if nothing happened and
 * no image is left behind.
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
#include <unistd.h>

#include "cli.h"
#include "sockmig/ckpt.h"
#include "sockmig/proc.h"
#include "sockmig/sockmig.h"

static void checkpoint_usage(FILE *f)
{
	fprintf(f,
		"Usage: %1$s checkpoint PID -o IMAGE [--leave-running]\n"
		"\n"
		"Write the process PID (memory, registers, fds 0-2) to IMAGE, then end it.\n"
		"--leave-running lets it go on instead. 'sockmig restore IMAGE' brings it\n"
		"back as a new process.\n",
		prog_name);
}

static void restore_usage(FILE *f)
{
	fprintf(f,
		"Usage: %1$s restore IMAGE [--stdout FILE]\n"
		"\n"
		"Start the process checkpointed in IMAGE again, as a new process that goes\n"
		"on where it was stopped; prints \"restored pid N\". Its fds 0-2 are the\n"
		"files it had (reopened at their offsets) or /dev/null; --stdout FILE gives\n"
		"it FILE (appended to) as fd 1.\n",
		prog_name);
}

static bool parse_pid(const char *s, pid_t *ret)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || !*s || *end || v <= 0 || v > INT_MAX)
		return false;
	*ret = (pid_t)v;
	return true;
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

int checkpoint_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "leave-running", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct sockmig_proc *p = NULL;
	const char *out = NULL;
	_cleanup_free_ char *tmp = NULL;
	bool leave_running = false, renamed = false;
	pid_t pid;
	int c, fd, r;

	while ((c = getopt_long(argc, argv, "o:lh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			out = optarg;
			break;
		case 'l':
			leave_running = true;
			break;
		case 'h':
			checkpoint_usage(stdout);
			return 0;
		default:
			checkpoint_usage(stderr);
			return 1;
		}
	}
	if (optind + 1 != argc || !parse_pid(argv[optind], &pid)) {
		cli_err("checkpoint: give one process id%s%s", optind < argc ? ", not " : "",
			optind < argc ? argv[optind] : "");
		return 1;
	}
	if (!out || !out[0]) {
		cli_err("checkpoint: name the image file with -o IMAGE");
		return 1;
	}

	/* Everything that can refuse without touching the process first. */
	r = sockmig_proc_open(pid, &p);
	if (r < 0) {
		cli_lib_err(r, "cannot checkpoint");
		return 1;
	}
	r = sockmig_ckpt_check(p);
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
	r = sockmig_ckpt_dump(p, fd);
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

int ckpt_restore_main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "stdout", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{}
	};
	struct sockmig_restore_opts o = { { -1, -1, -1 } };
	const char *image, *out = NULL;
	pid_t pid;
	int c, fd, r;

	while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			out = optarg;
			break;
		case 'h':
			restore_usage(stdout);
			return 0;
		default:
			restore_usage(stderr);
			return 1;
		}
	}
	if (optind + 1 != argc) {
		cli_err("restore: give one image file");
		return 1;
	}
	image = argv[optind];
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_err("restore: cannot open %s: %s", image, strerror(errno));
		return 1;
	}
	if (out) {
		o.stdio_fd[1] = open(out, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (o.stdio_fd[1] < 0) {
			cli_err("restore: cannot open %s for the process's stdout: %s", out, strerror(errno));
			close(fd);
			return 1;
		}
	}
	r = sockmig_restore(fd, &o, &pid);
	close(fd);
	if (o.stdio_fd[1] >= 0)
		close(o.stdio_fd[1]);
	if (r < 0) {
		cli_lib_err(r, "cannot restore %s", image);
		return 1;
	}
	printf("restored pid %d\n", (int)pid);
	return 0;
}
