/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The sockmig command: one file per subcommand, dispatched from main.c. */
#ifndef SOCKMIG_CLI_H
#define SOCKMIG_CLI_H

#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

static inline void cli_freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ __attribute__((cleanup(cli_freep)))

extern const char *prog_name;

int lab_main(int argc, char *argv[]);
int sockets_main(int argc, char *argv[]);
int checkpoint_main(int argc, char *argv[]);
int ckpt_restore_main(int argc, char *argv[]);
int nodes_main(int argc, char *argv[]);
int migrate_main(int argc, char *argv[]);
int run_main(int argc, char *argv[]);
int ps_main(int argc, char *argv[]);

/* Print "sockmig: " + the formatted sentence + newline on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "sockmig: <what>: <the library's sentence or strerror(-err)>". */
void cli_lib_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True if we run with root's capabilities; otherwise print why not and
 * return false. */
bool cli_need_root(const char *what);

/* net.c: "198.18.0.2:7000" or "[2001:2::2]:7000" */
bool cli_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);
bool cli_parse_uint(const char *s, unsigned long max, unsigned long *ret);
/* A positive number of milliseconds for `CMD --OPT`; says what is wrong. */
bool cli_parse_ms(const char *cmd, const char *opt, const char *arg, unsigned *ret);
/* The channel to the other node's command: connected TCP (TCP_NODELAY), or
 * -1 after saying why. cli_accept_one prints "listening AT" once ready. */
int cli_connect(const char *cmd, const char *to);
int cli_accept_one(const char *cmd, const char *at);

#endif
