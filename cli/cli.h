/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The sockmig command: one file per subcommand, dispatched from main.c. */
#ifndef SOCKMIG_CLI_H
#define SOCKMIG_CLI_H

#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>

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
int flows_main(int argc, char *argv[]);

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
/* A process id: 1 .. INT_MAX, digits only. */
bool cli_parse_pid(const char *s, pid_t *ret);
/* A positive number of milliseconds for `CMD --OPT`; says what is wrong. */
bool cli_parse_ms(const char *cmd, const char *opt, const char *arg, unsigned *ret);
/* The channel to the other node's command: connected TCP (TCP_NODELAY), or
 * -1 after saying why. cli_accept_one prints "listening AT" once ready. */
int cli_connect(const char *cmd, const char *to);
int cli_accept_one(const char *cmd, const char *at);

/*
 * ctl.c: the local sockmigd's control socket (docs/cluster.md, "Control
 * protocol"), for nodes, migrate, run and ps. The sequence:
 *
 *   cfg = cli_ctl_config(file);                  which socket; free() it
 *   answer = cli_ctl_ask(cfg->control, "ps\n", timeout_s);   free() it
 *   pos = answer;
 *   while ((t = cli_ctl_next(&pos, &l)) == CLI_CTL_KV)
 *           ... l.word, cli_kv_get(&l, "key") ...
 *   t: CLI_CTL_OK, CLI_CTL_ERROR (l.word is the daemon's sentence), or
 *      CLI_CTL_END (the answer stopped early: say so)
 *
 * cli_ctl_config and cli_ctl_ask say what went wrong themselves (cli_err).
 */
struct sockmig_config;

/* The cluster config, without its secret: FILE if not NULL, else
 * $SOCKMIG_CONFIG, else the default path. NULL after saying why. */
struct sockmig_config *cli_ctl_config(const char *file);

/* Send REQUEST (one line, with its '\n') to the daemon on the unix socket
 * PATH and read its answer to EOF, waiting at most TIMEOUT_S for each send
 * and receive. The answer NUL-terminated, or NULL after saying why. */
char *cli_ctl_ask(const char *path, const char *request, int timeout_s);

#define CLI_KV_MAX 24

/* An answer line `WORD k=v k="quoted \" value" ...` split in place: the
 * pointers point into the line. Pairs past CLI_KV_MAX are dropped. */
struct cli_kv_line {
	char *word;
	size_t n;
	char *key[CLI_KV_MAX];
	char *val[CLI_KV_MAX];
};

/* false if a pair has no '=' or an unterminated quote. */
bool cli_kv_parse(char *s, struct cli_kv_line *l);
/* The value of KEY, or NULL. */
const char *cli_kv_get(const struct cli_kv_line *l, const char *key);
/* S is one or more decimal digits (fit to print as a JSON number). */
bool cli_kv_is_number(const char *s);

enum cli_ctl_line {
	CLI_CTL_END,   /* no more lines: before "ok" or "error", the answer ended early */
	CLI_CTL_OK,    /* "ok" */
	CLI_CTL_ERROR, /* "error SENTENCE": l->word is SENTENCE */
	CLI_CTL_KV,    /* a WORD key=value line, in l */
};

/* The next line of an answer, cut off in place at *pos (start with the
 * answer itself). Empty lines and lines that do not parse are skipped. */
enum cli_ctl_line cli_ctl_next(char **pos, struct cli_kv_line *l);

/* The options of a listing command (ps, flows): --all, --json, --config
 * FILE, --help, and no argument. -1: go on; else the exit status (0 after
 * --help, 1 after a sentence about a bad option). */
struct cli_list_opts {
	bool all, json;
	const char *config;
};
int cli_list_opts(int argc, char *argv[], const char *cmd, void (*usage)(FILE *f), struct cli_list_opts *ret);

/* S as a JSON string on stdout: quotes, '\\' and control bytes escaped;
 * NULL as "". */
void cli_json_str(const char *s);

#endif
