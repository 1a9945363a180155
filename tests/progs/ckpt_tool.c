/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The checkpoint slice from the shell, until the CLI has `sockmig checkpoint`
 * and `sockmig restore`:
 *
 *   ckpt_tool check PID
 *   ckpt_tool dump PID IMAGE [kill|resume]     default: kill the original
 *   ckpt_tool restore IMAGE [STDOUT-FILE]      prints "restored pid N"
 *
 * Errors: the library's sentence on stderr, exit 1.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockmig/ckpt.h"
#include "sockmig/proc.h"
#include "sockmig/sockmig.h"

static int fail(const char *what)
{
	fprintf(stderr, "ckpt_tool: %s: %s\n", what, sockmig_error());
	return 1;
}

int main(int argc, char *argv[])
{
	struct sockmig_proc *p = NULL;

	if (argc >= 3 && (!strcmp(argv[1], "check") || !strcmp(argv[1], "dump"))) {
		pid_t pid = (pid_t)atoi(argv[2]);
		int fd, r;

		if (sockmig_proc_open(pid, &p) < 0)
			return fail("open");
		if (sockmig_ckpt_check(p, NULL) < 0)
			return fail("check");
		if (!strcmp(argv[1], "check"))
			return 0;
		if (argc < 4)
			return 2;
		fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			perror(argv[3]);
			return 1;
		}
		if (sockmig_proc_stop(p) < 0)
			return fail("stop");
		r = sockmig_ckpt_dump(p, fd, NULL);
		close(fd);
		if (r < 0) {
			fail("dump");
			sockmig_proc_free(p); /* resumes it: a failed dump costs nothing */
			return 1;
		}
		if (argc < 5 || strcmp(argv[4], "resume"))
			kill(pid, SIGKILL); /* still stopped: it never runs again */
		sockmig_proc_free(p);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "restore")) {
		struct sockmig_restore_opts o = { .stdio_fd = { -1, -1, -1 } };
		int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		pid_t pid;

		if (fd < 0) {
			perror(argv[2]);
			return 1;
		}
		if (argc >= 4) {
			o.stdio_fd[1] = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
			if (o.stdio_fd[1] < 0) {
				perror(argv[3]);
				return 1;
			}
		}
		if (sockmig_restore(fd, &o, &pid) < 0)
			return fail("restore");
		printf("restored pid %d\n", (int)pid);
		return 0;
	}
	fprintf(stderr, "usage: ckpt_tool check PID | dump PID IMAGE [kill|resume] | restore IMAGE [STDOUT]\n");
	return 2;
}
