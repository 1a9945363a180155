#!/bin/bash
# The per-process state survives a checkpoint and restore (docs/ckpt-task.md):
# tests/progs/ckpt_signals builds signal handlers with distinct flags and
# masks, an altstack, blocked signals pending (kill, sigqueue twice with
# values, thread-directed ones), ITIMER_REAL, POSIX timers with ids 2 and 3,
# RLIMIT_NOFILE, umask 027, a cwd of its own and a flipped personality; on
# SIGUSR1 it checks every piece and prints "pass" or "fail: <what>".
#   - checkpoint on lab node n1 (the original ends) + restore on n2, and the
#     restored process (in a pid namespace of its own) checkpointed on n2
#     and restored again on n3: the second generation passes, and the
#     restore command exits with its status 0;
#   - checkpoint --leave-running: the dump (syscalls injected into it) left
#     it exactly as it was: same /proc/PID/maps, and it passes;
#   - a process under a seccomp filter is refused with one sentence before
#     anything is frozen, and goes on (it passes too).
# A lab of 3 nodes: the process moves n1 -> n2 -> n3 through image files
# (the nodes share the file system).
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3

P=$T_PROGS/ckpt_signals
[ -x "$P" ] || t_fail "ckpt_signals is not built"
# The processes waited for here end on their own (killed by the checkpoint,
# or done after their verdict); run.sh's timeout bounds a hang.
# (t_wait_exit would do, but after a t_wait_line it sits out its whole
# timer here: 12 s each.)
reap() {
	local tag=$1 pid=${T_PIDS[$1]} status
	wait "$pid"
	status=$?
	unset "T_PIDS[$tag]"
	return "$status"
}
proc_state() { sed -nE 's/^[0-9]+ \(.*\) (.) .*/\1/p' "/proc/$1/stat" 2>/dev/null; }

# start TAG [--seccomp]: ckpt_signals on n1 with a cwd of its own, until "ready"
start() {
	local tag=$1
	shift
	mkdir -p "$T_DIR/cwd-$tag"
	t_spawn "$tag" n1 "$P" "$@" "$T_DIR/cwd-$tag" <"/dev/null"
	t_wait_line "$tag" '^ready ' 10
}
# in_node NODE PID: PID runs in NODE's network namespace
in_node() {
	local ns
	ns=$(readlink "/proc/$2/ns/net") || t_fail "pid $2 is gone"
	[ "$ns" = "$(t_exec "$1" readlink /proc/self/ns/net)" ] || t_fail "pid $2 is in network namespace $ns, not $1's"
}

# verdict TAG PID: SIGUSR1 to PID, then its "pass" in TAG's output
verdict() {
	kill -USR1 "$2" || t_fail "$1: pid $2 is gone"
	t_wait_line "$1" '^(pass|fail)' 10
	grep -q '^pass$' "$T_DIR/$1.out" || t_fail "$1: $(grep -E '^fail' "$T_DIR/$1.out")"
	t_log "$1: $(grep -E '^(pass|fail)' "$T_DIR/$1.out")"
}

# ---- checkpoint on n1, the original ends, restore on n2: the state is back ----
start orig
opid=${T_PIDS[orig]}
out=$(t_exec n1 "$SOCKMIG" checkpoint "$opid" -o "$T_DIR/a.img" 2>&1) || t_fail "checkpoint on n1 failed: $out"
reap orig
kill -0 "$opid" 2>/dev/null && t_fail "the original $opid still runs after the checkpoint"
t_exec n2 "$SOCKMIG" restore --detach "$T_DIR/a.img" --stdout "$T_DIR/rest.out" <"/dev/null" \
	>"$T_DIR/restore.out" 2>"$T_DIR/restore.err" || t_fail "restore on n2 failed: $(cat "$T_DIR/restore.err")"
rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/restore.out")
[ -n "$rpid" ] || t_fail "restore printed no pid: $(cat "$T_DIR/restore.out")"
T_PIDS[restore]=$rpid # not our child (--detach); ended by the checkpoint below
[ "$rpid" != "$opid" ] || t_fail "the restored process has the original's pid"
grep -q '^ready ' "$T_DIR/rest.out" && t_fail "the restored process started over"
in_node n2 "$rpid"

# ---- the restored process (in a pid namespace of its own) once more: n2 -> n3 ----
out=$(t_exec n2 "$SOCKMIG" checkpoint "$rpid" -o "$T_DIR/b.img" 2>&1) ||
	t_fail "checkpoint of the restored process on n2 failed: $out"
unset 'T_PIDS[restore]'
kill -0 "$rpid" 2>/dev/null && t_fail "the restored process $rpid still runs after its checkpoint"
# Not --detach: the restore command waits for the process and exits with
# its status, which is checked below.
t_spawn restore2 n3 "$SOCKMIG" restore "$T_DIR/b.img" --stdout "$T_DIR/rest2.out" <"/dev/null"
t_wait_line restore2 '^restored pid [0-9]+$' 10
rpid2=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/restore2.out")
in_node n3 "$rpid2"
[ ! -s "$T_DIR/rest.out" ] || t_fail "the first restored process wrote: $(cat "$T_DIR/rest.out")"
verdict rest2 "$rpid2"
reap restore2 || t_fail "sockmig restore exited with $? (the process's status)"

# ---- --leave-running: the dump left it exactly as it was ----
start keep
kpid=${T_PIDS[keep]}
maps_before=$(cat "/proc/$kpid/maps")
out=$(t_exec n1 "$SOCKMIG" checkpoint "$kpid" -o "$T_DIR/k.img" --leave-running 2>&1) ||
	t_fail "checkpoint --leave-running failed: $out"
st=$(proc_state "$kpid")
[ "$st" = S ] || t_fail "pid $kpid is in state '${st:-gone}' after the dump, not sleeping in sigwaitinfo"
[ "$(cat "/proc/$kpid/maps")" = "$maps_before" ] || t_fail "the dump changed the mappings of $kpid"
verdict keep "$kpid"
reap keep || t_fail "the original exited with $? after the dump"

# ---- a seccomp filter is refused before the freeze, the process goes on ----
start sec --seccomp
spid=${T_PIDS[sec]}
rc=0
t_exec n1 "$SOCKMIG" checkpoint "$spid" -o "$T_DIR/c.img" >"$T_DIR/refuse.out" 2>"$T_DIR/refuse.err" || rc=$?
[ "$rc" != 0 ] || t_fail "a process under seccomp was checkpointed"
[ "$(wc -l <"$T_DIR/refuse.err")" = 1 ] || t_fail "not one line on stderr: $(cat "$T_DIR/refuse.err")"
grep -q "pid $spid runs under a seccomp filter, which cannot be restored" "$T_DIR/refuse.err" ||
	t_fail "unexpected refusal: $(cat "$T_DIR/refuse.err")"
[ ! -e "$T_DIR/c.img" ] || t_fail "an image was written for a refused process"
t_log "seccomp: $(cat "$T_DIR/refuse.err")"
st=$(proc_state "$spid")
[ "$st" = S ] || t_fail "pid $spid is in state '${st:-gone}' after a refused checkpoint"
verdict sec "$spid"
t_pass
