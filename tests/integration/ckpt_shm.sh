#!/bin/bash
# Shared memory of every kind survives a checkpoint on one node and a
# restore on another (ZDTM style, tests/progs/ckpt_shm.c):
#   - on n1 the program maps MAP_SHARED anonymous memory (and a second
#     mapping of part of it), a memfd it also holds as fd 10, a memfd it
#     holds only mapped, a file of the test's directory MAP_SHARED, a
#     PROT_NONE guard page, a file read-only MAP_PRIVATE and a 64 MiB
#     MAP_SHARED anonymous region with 2 pages written; it says "ready";
#   - `sockmig checkpoint` on n1 (the original ends, killed), `sockmig
#     restore --detach` on n2: the process runs in n2's network namespace;
#   - on SIGUSR1 it checks every pattern, that the memfd's mapping and fd
#     still share pages, that the file mapping still writes to the file and
#     sees its writes, the guard page and protections, that the sparse
#     region's holes are still holes; "pass"; then it writes a marker
#     through the file mapping, which the test finds in the file;
#   - the image is small: the sparse 64 MiB cost its two pages, not 64 MiB.
#   - with --unmapped, shared pages that no page table of the process points
#     at (a memfd filled with pwrite, its fd closed; a page zapped with
#     MADV_DONTNEED) come back too: the dump reads shared memory through its
#     file, not through /proc/PID/pagemap.
. "$(dirname "$0")/../lib.sh"
t_init

P=$T_PROGS/ckpt_shm
[ -x "$P" ] || t_fail "ckpt_shm is not built"
t_lab_up 3

W=$T_DIR/work
mkdir "$W"
t_spawn orig n1 "$P" --unmapped "$W" </dev/null
opid=${T_PIDS[orig]}
t_wait_line orig '^(ready|fail)' 10
grep -qx ready "$T_DIR/orig.out" || t_fail "ckpt_shm did not start: $(cat "$T_DIR/orig.out")"

out=$(t_exec n1 "$SOCKMIG" checkpoint "$opid" -o "$T_DIR/shm.img" 2>&1) || t_fail "checkpoint on n1 failed: $out"
rc=0
wait "$opid" 2>/dev/null || rc=$?
unset 'T_PIDS[orig]'
[ "$rc" = 137 ] || t_fail "the original ended with status $rc, not by SIGKILL"
size=$(stat -c %s "$T_DIR/shm.img")
t_log "image: $size bytes"
# 64 MiB + 16 pages of shared memory and a few private pages, with libc:
# the sparse region's 64 MiB must cost its 2 pages only
[ "$size" -lt $((8 << 20)) ] || t_fail "the image is $size bytes: the holes of the sparse shared region were copied"

t_exec n2 "$SOCKMIG" restore --detach "$T_DIR/shm.img" --stdout "$T_DIR/rest.out" </dev/null \
	>"$T_DIR/restore.out" 2>"$T_DIR/restore.err" ||
	t_fail "restore on n2 failed: $(cat "$T_DIR/restore.err")"
rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/restore.out")
[ -n "$rpid" ] || t_fail "restore printed no pid: $(cat "$T_DIR/restore.out")"
# not our child (--detach): t_kill ends it if the test fails before its verdict
T_PIDS[rest]=$rpid
[ "$rpid" != "$opid" ] || t_fail "the restored process has the original's pid"
grep -q '^ready' "$T_DIR/rest.out" && t_fail "the restored process started over"
netns=$(readlink "/proc/$rpid/ns/net") || t_fail "the restored process $rpid is gone"
n2ns=$(t_exec n2 readlink /proc/self/ns/net)
[ "$netns" = "$n2ns" ] || t_fail "the restored process is in network namespace $netns, not n2's $n2ns"

kill -USR1 "$rpid" || t_fail "the restored process $rpid is gone"
t_wait_line rest '^(pass|fail)' 20
result=$(cat "$T_DIR/rest.out")
[ "$result" = pass ] || t_fail "the restored process says: ${result:-nothing}"
unset 'T_PIDS[rest]'
marker=$(dd if="$W/shared" bs=1 skip=$((3 * 4096 + 64)) count=21 status=none)
[ "$marker" = written-after-restore ] ||
	t_fail "$W/shared does not hold what the restored process wrote through its mapping: '$marker'"
t_log "restored as pid $rpid on n2: $result"
t_pass
