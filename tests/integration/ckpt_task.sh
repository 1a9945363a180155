#!/bin/bash
# The per-process state survives a checkpoint and restore (docs/ckpt-task.md):
# tests/progs/ckpt_signals builds signal handlers with distinct flags and
# masks, an altstack, blocked signals pending (kill, sigqueue twice with
# values, thread-directed ones), ITIMER_REAL, POSIX timers with ids 2 and 3,
# RLIMIT_NOFILE, umask 027, a cwd of its own and a flipped personality; on
# SIGUSR1 it checks every piece and prints "pass" or "fail: <what>".
#   - checkpoint (the original ends) + restore, and the restored process
#     (in a pid namespace of its own) checkpointed and restored again: the
#     second generation passes;
#   - checkpoint --leave-running: the dump (syscalls injected into it) left
#     it exactly as it was: same /proc/PID/maps, and it passes;
#   - a process under a seccomp filter is refused with one sentence before
#     anything is frozen, and goes on (it passes too).
# Needs no lab.
. "$(dirname "$0")/../lib.sh"
t_init

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

# start TAG [--seccomp]: ckpt_signals with a cwd of its own, until "ready"
start() {
	local tag=$1
	shift
	mkdir -p "$T_DIR/cwd-$tag"
	"$P" "$@" "$T_DIR/cwd-$tag" <"/dev/null" >"$T_DIR/$tag.out" 2>"$T_DIR/$tag.err" &
	T_PIDS[$tag]=$!
	t_wait_line "$tag" '^ready ' 10
}

# verdict TAG PID: SIGUSR1 to PID, then its "pass" in TAG's output
verdict() {
	kill -USR1 "$2" || t_fail "$1: pid $2 is gone"
	t_wait_line "$1" '^(pass|fail)' 10
	grep -q '^pass$' "$T_DIR/$1.out" || t_fail "$1: $(grep -E '^fail' "$T_DIR/$1.out")"
	t_log "$1: $(grep -E '^(pass|fail)' "$T_DIR/$1.out")"
}

# ---- checkpoint, the original ends, restore: the state is back ----
start orig
opid=${T_PIDS[orig]}
out=$("$SOCKMIG" checkpoint "$opid" -o "$T_DIR/a.img" 2>&1) || t_fail "checkpoint failed: $out"
reap orig
kill -0 "$opid" 2>/dev/null && t_fail "the original $opid still runs after the checkpoint"
"$SOCKMIG" restore "$T_DIR/a.img" --stdout "$T_DIR/rest.out" <"/dev/null" >"$T_DIR/restore.out" 2>"$T_DIR/restore.err" &
T_PIDS[restore]=$!
t_wait_line restore '^restored pid [0-9]+$' 10
rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/restore.out")
[ "$rpid" != "$opid" ] || t_fail "the restored process has the original's pid"
grep -q '^ready ' "$T_DIR/rest.out" && t_fail "the restored process started over"

# ---- the restored process (in a pid namespace of its own) once more ----
out=$("$SOCKMIG" checkpoint "$rpid" -o "$T_DIR/b.img" 2>&1) || t_fail "checkpoint of the restored process failed: $out"
reap restore
"$SOCKMIG" restore "$T_DIR/b.img" --stdout "$T_DIR/rest2.out" <"/dev/null" >"$T_DIR/restore2.out" 2>"$T_DIR/restore2.err" &
T_PIDS[restore2]=$!
t_wait_line restore2 '^restored pid [0-9]+$' 10
rpid2=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/restore2.out")
[ ! -s "$T_DIR/rest.out" ] || t_fail "the first restored process wrote: $(cat "$T_DIR/rest.out")"
verdict rest2 "$rpid2"
reap restore2 || t_fail "sockmig restore exited with $? (the process's status)"

# ---- --leave-running: the dump left it exactly as it was ----
start keep
kpid=${T_PIDS[keep]}
maps_before=$(cat "/proc/$kpid/maps")
out=$("$SOCKMIG" checkpoint "$kpid" -o "$T_DIR/k.img" --leave-running 2>&1) ||
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
"$SOCKMIG" checkpoint "$spid" -o "$T_DIR/c.img" >"$T_DIR/refuse.out" 2>"$T_DIR/refuse.err" || rc=$?
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
