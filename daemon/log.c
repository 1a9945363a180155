/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logs: one line per event, key=value, on stderr (journald and the lab both
 * collect stderr). Each line is one write(2), so lines of different threads
 * never mix.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

static char node_name[SOCKMIG_NAME_MAX + 1];

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void log_set_node(const char *node)
{
	snprintf(node_name, sizeof(node_name), "%s", node ? node : "");
}

void log_kv(const char *level, const char *fmt, ...)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	char when[32];
	va_list ap;
	int n, k;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s node=%s ", when, ts.tv_nsec / 1000000, level,
		     node_name[0] ? node_name : "-");
	va_start(ap, fmt);
	k = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n += k < 0 ? 0 : k;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* Nothing sensible to do if stderr is gone. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
	}
}

const char *kv_quote(const char *s, char *buf, size_t size)
{
	bool bare = s[0] != '\0';
	size_t o = 0;

	for (const char *p = s; *p && bare; p++)
		bare = (unsigned char)*p > 0x20 && *p != '"' && *p != '\\' && *p != '=' && (unsigned char)*p < 0x7f;
	if (bare) {
		snprintf(buf, size, "%s", s);
		return buf;
	}
	if (size < 3) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (const char *p = s; *p && o + 3 < size; p++) {
		unsigned char ch = (unsigned char)*p;
		if (ch == '"' || ch == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)ch;
		} else {
			buf[o++] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

const char *addr_text(const struct sockaddr *sa, char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(buf, size, "%s:%u", a, ntohs(s->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(buf, size, "[%s]:%u", a, ntohs(s->sin6_port));
	} else {
		snprintf(buf, size, "-");
	}
	return buf;
}

bool kv_split(char *s, struct kv_args *a)
{
	a->n = 0;
	for (;;) {
		char *eq, *o;

		while (*s == ' ')
			s++;
		if (!*s)
			return true;
		if (a->n == KV_ARGS_MAX)
			return false;
		eq = strchr(s, '=');
		if (!eq || eq == s)
			return false;
		*eq = '\0';
		if (strchr(s, ' ') || strchr(s, '"'))
			return false;
		a->key[a->n] = s;
		s = eq + 1;
		if (*s == '"') {
			o = ++s;
			a->val[a->n] = o;
			while (*s && *s != '"') {
				if (*s == '\\' && s[1])
					s++;
				*o++ = *s++;
			}
			if (*s != '"')
				return false;
			s++;
			*o = '\0';
			if (*s && *s != ' ')
				return false;
		} else {
			a->val[a->n] = s;
			s += strcspn(s, " \"");
			if (*s == '"')
				return false;
			if (*s)
				*s++ = '\0';
		}
		a->n++;
	}
}

const char *kv_arg(const struct kv_args *a, const char *key)
{
	for (size_t i = 0; i < a->n; i++) {
		if (!strcmp(a->key[i], key))
			return a->val[i];
	}
	return NULL;
}
