/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * sockmigd: the per-node daemon. For now it starts, logs, waits for a signal
 * and stops cleanly; migrations and cluster membership come with the cluster
 * layer. Logs are one line per event, key=value, on stderr (journald and the
 * lab both collect stderr).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "sockmig/sockmig.h"

static const char *node_name = "";

static void logf_kv(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_kv(const char *level, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char when[32];
	va_list ap;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "ts=%s.%03ldZ level=%s node=%s ", when, ts.tv_nsec / 1000000, level,
		node_name[0] ? node_name : "-");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: sockmigd [--node NAME]\n"
		   "Runs until SIGTERM or SIGINT. Prints 'ready' on stdout once it serves.\n");
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "node", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{}
	};
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t mask;
	int c, sfd, efd;

	while ((c = getopt_long(argc, argv, "n:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			node_name = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("sockmigd %s\n", SOCKMIG_VERSION);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "sockmigd: unexpected argument '%s'\n", argv[optind]);
		return 1;
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ||
	    (sfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0 ||
	    (efd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		logf_kv("err", "msg=\"cannot set up signal handling: %s\"", strerror(errno));
		return 1;
	}
	ev.data.fd = sfd;
	if (epoll_ctl(efd, EPOLL_CTL_ADD, sfd, &ev) < 0) {
		logf_kv("err", "msg=\"epoll_ctl: %s\"", strerror(errno));
		return 1;
	}

	logf_kv("info", "event=start pid=%d version=%s", (int)getpid(), SOCKMIG_VERSION);
	printf("ready\n");
	fflush(stdout);

	for (;;) {
		struct epoll_event out;
		int n = epoll_wait(efd, &out, 1, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			logf_kv("err", "msg=\"epoll_wait: %s\"", strerror(errno));
			return 1;
		}
		if (out.data.fd == sfd) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				logf_kv("info", "event=reload");
				continue;
			}
			logf_kv("info", "event=stop signal=%s", strsignal((int)si.ssi_signo));
			break;
		}
	}
	close(efd);
	close(sfd);
	return 0;
}
