#!/bin/bash
# make install honours PREFIX and DESTDIR and installs a CLI and a daemon that
# run, the library (static and shared) and the public headers, which compile
# on their own.
. "$(dirname "$0")/../lib.sh"
t_init
dest=$T_DIR/dest
make -s -C "$T_ROOT" B="$T_BUILD" install PREFIX=/opt/sm DESTDIR="$dest" >"$T_DIR/install.log" 2>&1 ||
	t_fail "make install failed: $(tail -5 "$T_DIR/install.log")"
for f in bin/sockmig sbin/sockmigd lib/libsockmig.a lib/libsockmig.so.0 lib/libsockmig.so \
	include/sockmig/sockmig.h include/sockmig/lab.h include/sockmig/socket.h include/sockmig/flow.h; do
	[ -e "$dest/opt/sm/$f" ] || t_fail "make install did not install /opt/sm/$f"
done
[ -z "$(find "$dest" -path "$dest/opt" -prune -o -type f -print)" ] || t_fail "make install wrote outside PREFIX"
"$dest/opt/sm/bin/sockmig" --version | grep -q '^sockmig [0-9]' || t_fail "installed sockmig does not run"
"$dest/opt/sm/sbin/sockmigd" --version | grep -q '^sockmigd [0-9]' || t_fail "installed sockmigd does not run"
for h in "$dest"/opt/sm/include/sockmig/*.h; do
	printf '#include <sockmig/%s>\nint main(void) { return 0; }\n' "${h##*/}" >"$T_DIR/h.c"
	cc -std=gnu11 -Wall -Wextra -Werror -I"$dest/opt/sm/include" -c -o "$T_DIR/h.o" "$T_DIR/h.c" ||
		t_fail "installed header ${h##*/} does not compile on its own"
done
# a program linked against the installed shared library calls into it
printf '#include <stdio.h>\n#include <sockmig/sockmig.h>\nint main(void) { puts(sockmig_error()[0] ? "bad" : "ok"); return 0; }\n' >"$T_DIR/p.c"
cc -std=gnu11 -I"$dest/opt/sm/include" -o "$T_DIR/p" "$T_DIR/p.c" -L"$dest/opt/sm/lib" -lsockmig ||
	t_fail "cannot link against the installed libsockmig.so"
[ "$(LD_LIBRARY_PATH=$dest/opt/sm/lib "$T_DIR/p")" = ok ] || t_fail "the installed library does not work"
t_pass
