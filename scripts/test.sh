#!/bin/bash
# The README's second command: install what is missing, build everything with
# both compilers' warnings, build the fuzzers, run the whole test suite.
#
#   sudo bash scripts/test.sh [PATTERN]
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
sockmig_ensure_deps

if [ "$(id -u)" != 0 ]; then
	echo "sockmig: the test suite needs root (its tests create network namespaces); run: sudo bash scripts/test.sh" >&2
	exit 1
fi

jobs=$(nproc 2>/dev/null || echo 2)
# clang first, into its own tree, only to prove the build is warning-free there
# too; then the real build with gcc.
make -s -j"$jobs" B=build-clang CC=clang CFLAGS="-O2 -g -Werror" all
make -s -j"$jobs" CFLAGS="-O2 -g -Werror" all
make -s -j"$jobs" fuzz
exec bash tests/run.sh "$@"
