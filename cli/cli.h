/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The sockmig command: one file per subcommand, dispatched from main.c. */
#ifndef SOCKMIG_CLI_H
#define SOCKMIG_CLI_H

#include <stdbool.h>
#include <stdlib.h>

static inline void cli_freep(void *p) { free(*(void **)p); }
#define _cleanup_free_ __attribute__((cleanup(cli_freep)))

extern const char *prog_name;

int lab_main(int argc, char *argv[]);
int sockets_main(int argc, char *argv[]);
int checkpoint_main(int argc, char *argv[]);
int ckpt_restore_main(int argc, char *argv[]);

/* Print "sockmig: " + the formatted sentence + newline on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "sockmig: <what>: <the library's sentence or strerror(-err)>". */
void cli_lib_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True if we run with root's capabilities; otherwise print why not and
 * return false. */
bool cli_need_root(const char *what);

#endif
