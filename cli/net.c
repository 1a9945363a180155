/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Addresses, numbers and the plain TCP channel between two nodes' commands,
 * shared by `sockmig sockets` and `sockmig checkpoint/restore`. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"

/* "198.18.0.2:7000" or "[2001:2::2]:7000" */
bool cli_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	char *end;
	long port;
	size_t hl;

	if (!colon)
		return false;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 || colon == s)
		return false;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']' || hl - 2 >= sizeof(host))
			return false;
		memcpy(host, s + 1, hl - 2);
		host[hl - 2] = '\0';
	} else {
		if (hl >= sizeof(host))
			return false;
		memcpy(host, s, hl);
		host[hl] = '\0';
	}
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		((struct sockaddr_in *)ss)->sin_family = AF_INET;
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in);
		return true;
	}
	if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		((struct sockaddr_in6 *)ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
		*len = sizeof(struct sockaddr_in6);
		return true;
	}
	return false;
}

bool cli_parse_uint(const char *s, unsigned long max, unsigned long *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || !*s || *end || v > max || s[0] == '-')
		return false;
	*ret = v;
	return true;
}

bool cli_parse_pid(const char *s, pid_t *ret)
{
	unsigned long v;

	if (!cli_parse_uint(s, INT_MAX, &v) || v == 0)
		return false;
	*ret = (pid_t)v;
	return true;
}

bool cli_parse_ms(const char *cmd, const char *opt, const char *arg, unsigned *ret)
{
	unsigned long v;

	if (!cli_parse_uint(arg, 3600000, &v) || v == 0) {
		cli_err("%s: --%s takes milliseconds, not '%s'", cmd, opt, arg);
		return false;
	}
	*ret = (unsigned)v;
	return true;
}

int cli_connect(const char *cmd, const char *to)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int chan, one = 1;

	if (!cli_parse_hostport(to, &ss, &len)) {
		cli_err("%s: --to takes ADDR:PORT or [ADDR6]:PORT, not '%s'", cmd, to);
		return -1;
	}
	chan = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* The exchange is request and answer: Nagle with delayed ACKs would
	 * add 40 ms to each answer. */
	if (chan >= 0)
		setsockopt(chan, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (chan < 0 || connect(chan, (struct sockaddr *)&ss, len) < 0) {
		cli_err("%s: cannot reach the destination %s: %s", cmd, to, strerror(errno));
		if (chan >= 0)
			close(chan);
		return -1;
	}
	return chan;
}

int cli_accept_one(const char *cmd, const char *at)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int lfd, chan, one = 1;

	if (!cli_parse_hostport(at, &ss, &len)) {
		cli_err("%s: --listen takes ADDR:PORT or [ADDR6]:PORT, not '%s'", cmd, at);
		return -1;
	}
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&ss, len) < 0 || listen(lfd, 1) < 0) {
		cli_err("%s: cannot listen on %s: %s", cmd, at, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return -1;
	}
	printf("listening %s\n", at);
	fflush(stdout);
	chan = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	close(lfd);
	if (chan >= 0)
		setsockopt(chan, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (chan < 0)
		cli_err("%s: accept on %s: %s", cmd, at, strerror(errno));
	return chan;
}
