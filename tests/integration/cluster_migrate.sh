#!/bin/bash
# `sockmig migrate` through the daemons, mode move: a job started with
# `sockmig run` (an unmodified epoll echo server on an address of its own)
# moves n1 -> n2 -> n1 ... ten times while a peer on n3 streams through 4
# connections; every byte comes back exactly once and in order, each move
# prints the pid there and the freeze, the original is gone, the address and
# the sockets are where the job is. `ps --all` shows it on the last node. An
# unprivileged user cannot move it (refused and logged); a process on a
# member address in mode move is refused before anything is frozen; a
# move to a node whose daemon was killed, and one whose destination fails
# after restoring (SOCKMIG_FAULT=dst-fail-finish), fail with one sentence and
# the job goes on where it was, its stream intact.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
LABDIR=/run/sockmig/labs/$T_LAB
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
MOVES=${MOVES:-10}
[ -x "$ECHO" ] || t_fail "epoll_echo is not built"

# wait_file FILE REGEX [SECS]: a line of FILE (as it grows) matches, or fail
wait_file() { t_wait_file "$@" || t_fail "no line matching '$2' in $1 within ${3:-10}s: $(tail -3 "$1")"; }
has_addr() { t_has_addr "$@"; }

# ---- the job ----
out=$(t_exec n1 "$SOCKMIG" run --name echo -- sh -c 'exec "$0" "$SOCKMIG_JOB_ADDR" 7000' "$ECHO") ||
	t_fail "sockmig run failed: $out"
t_log "$out"
[[ $out =~ ^started\ job\ echo\ \(pid\ ([0-9]+)\)\ on\ n1\ with\ address\ ([0-9.]+)/24\;\ its\ output\ goes\ to\ (.*)$ ]] ||
	t_fail "run printed: $out"
pid=${BASH_REMATCH[1]} addr=${BASH_REMATCH[2]} log=${BASH_REMATCH[3]}
[ "$addr" = 198.18.0.100 ] || t_fail "the first job's address is $addr, not the first free one, 198.18.0.100"
wait_file "$log" '^listening$'
has_addr n1 "$addr" || t_fail "n1 does not have the job's address $addr"

# ---- refused before anything is frozen ----
t_spawn own n1 "$PEER" tcp-echo --listen 198.18.0.1:7200
t_wait_line own '^ready'
ownpid=${T_PIDS[own]} # lab exec execs: the peer itself
out=$(t_exec n1 "$SOCKMIG" migrate "$ownpid" --to n2 --mode move 2>&1) &&
	t_fail "a process on n1's member address was moved in mode move: $out"
grep -qE "^sockmig: cannot migrate pid $ownpid in mode move: its fd [0-9]+ uses 198\.18\.0\.1, an address of node n1, which cannot leave it; " <<<"$out" ||
	t_fail "member address: $out"
has_addr n1 198.18.0.1 || t_fail "n1 lost its member address"
t_kill own
out=$(t_exec n1 "$SOCKMIG" migrate "$pid" --to n2 --mode teleport 2>&1) && t_fail "mode teleport: $out"
[ "$out" = "sockmig: migrate: 'teleport' is not a mode: auto, move, forward or rewrite" ] || t_fail "mode teleport: $out"

# ---- the stream ----
t_spawn stream n3 "$PEER" tcp-stream --connect "$addr:7000" --conns 4 --window 256k
t_wait_line stream '^ready'
t_wait_progress stream 1000000 100

# ---- moves ----
from=n1 to=n2 frozen=()
for i in $(seq "$MOVES"); do
	out=$(t_exec "$from" "$SOCKMIG" migrate "$pid" --to "$to" 2>&1) || t_fail "move $i $from -> $to failed: $out"
	t_log "move $i: $out"
	[[ $out =~ ^moved\ pid\ $pid\ \(job\ echo\)\ from\ $from\ to\ $to\ \(pid\ ([0-9]+)\ there\):\ 5\ sockets,\ frozen\ ([0-9.]+)\ ms$ ]] ||
		t_fail "move $i printed: $out"
	new=${BASH_REMATCH[1]}
	frozen+=("${BASH_REMATCH[2]}")
	t_wait_gone "$pid" || t_fail "move $i: the original pid $pid still runs on $from"
	kill -0 "$new" 2>/dev/null || t_fail "move $i: the moved process $new does not run on $to"
	[ -n "$(t_exec "$to" ss -Htanp | grep "pid=$new,")" ] || t_fail "move $i: no socket of pid $new on $to"
	[ -z "$(t_exec "$from" ss -Htan state established "( sport = :7000 )")" ] ||
		t_fail "move $i: $from still has connections on port 7000"
	has_addr "$to" "$addr" || t_fail "move $i: $to does not have the job's address"
	! has_addr "$from" "$addr" || t_fail "move $i: $from kept the job's address"
	t_wait_progress stream $(($(last_verified stream) + 2000000)) 100
	pid=$new
	t=$from from=$to to=$t
done
last=$from
t_log "frozen ms per move: ${frozen[*]}"
grep -qE "node=$last event=migrate role=destination pid=[0-9]+ job=echo from=[a-z0-9]+ to=$last mode=auto sockets=5 .*new_pid=$pid .*result=ok" \
	"$LABDIR/$last.log" || t_fail "$last did not log the last move in: $(tail -3 "$LABDIR/$last.log")"
grep -qE "node=$to event=migrate role=source pid=[0-9]+ job=echo from=$to to=$last mode=auto sockets=5 tcp=5 udp=0 frozen_ms=[0-9.]+ .*new_pid=$pid result=ok" \
	"$LABDIR/$to.log" || t_fail "$to did not log the last move out: $(tail -3 "$LABDIR/$to.log")"

# ---- ps --all, from every node: the job on the last one ----
for n in n1 n2 n3; do
	out=$(t_exec "$n" "$SOCKMIG" ps --all --json) || t_fail "ps --all on $n: $out"
	grep -qE "\"name\":\"echo\",\"node\":\"$last\",\"address\":\"$addr/24\",\"state\":\"running\",\"kind\":\"job\",\"origin\":\"n1\",\"from\":\"[a-z0-9]+\",\"cmd\":\"epoll_echo\",\"pid\":$pid,\"own_pid\":[0-9]+,\"sockets\":5,\"uid\":0,\"moves\":$MOVES\}" <<<"$out" ||
		t_fail "ps --all on $n does not show the job on $last: $out"
	[ "$(grep -o '"name":"echo"' <<<"$out" | wc -l)" = 1 ] || t_fail "ps --all on $n shows the job more than once: $out"
done

# ---- an unprivileged user cannot move it ----
out=$(t_exec "$last" setpriv --reuid nobody --regid nogroup --clear-groups "$SOCKMIG" migrate "$pid" --to "$to" 2>&1) &&
	t_fail "nobody moved root's job: $out"
[ "$out" = "sockmig: uid 65534 may not act on process $pid, which belongs to uid 0: only root or the process's owner may" ] ||
	t_fail "nobody's migrate: $out"
grep -qE "node=$last event=deny via=control uid=65534 pid=[0-9]+ request=\"migrate $pid $to auto\" reason=" "$LABDIR/$last.log" ||
	t_fail "the refusal was not logged: $(tail -3 "$LABDIR/$last.log")"
kill -0 "$pid" || t_fail "the job died after nobody's attempt"

# ---- a destination whose daemon was killed ----
d2=$(grep -oE 'event=start pid=[0-9]+' "$LABDIR/$to.log" | head -1 | cut -d= -f3)
kill -KILL "$d2"
timeout 10 tail --pid="$d2" -f /dev/null || t_fail "the daemon of $to did not die"
before=$(last_verified stream)
out=$(t_exec "$last" "$SOCKMIG" migrate "$pid" --to "$to" 2>&1) && t_fail "a move to a dead daemon succeeded: $out"
[ "$(wc -l <<<"$out")" = 1 ] || t_fail "more than one line for a dead destination: $out"
grep -qE "^sockmig: cannot migrate pid $pid to $to \(it goes on here\): cannot connect to node '$to' at 198\.18\.0\.[0-9]+:7890: Connection refused$" <<<"$out" ||
	t_fail "dead destination: $out"
t_log "dead destination: $out"
kill -0 "$pid" || t_fail "the job died after a move to a dead daemon"
has_addr "$last" "$addr" || t_fail "$last lost the job's address"
t_wait_progress stream $((before + 2000000)) 100

# ---- a destination that fails after restoring: the job goes on here ----
t_spawn faulty "$to" env SOCKMIG_FAULT=dst-fail-finish "$SOCKMIGD" --config "$LABDIR/$to.conf"
t_wait_line faulty '^ready$' 10
before=$(last_verified stream)
out=$(t_exec "$last" "$SOCKMIG" migrate "$pid" --to "$to" 2>&1) && t_fail "a move to a failing destination succeeded: $out"
[ "$(wc -l <<<"$out")" = 1 ] || t_fail "more than one line for a failing destination: $out"
grep -qE "^sockmig: cannot migrate pid $pid to $to \(it goes on here, connections intact\): .*fault injected: dst-fail-finish" <<<"$out" ||
	t_fail "failing destination: $out"
t_log "failing destination: $out"
kill -0 "$pid" || t_fail "the job died after a failed move"
has_addr "$last" "$addr" || t_fail "$last lost the job's address after a failed move"
! has_addr "$to" "$addr" || t_fail "$to kept the job's address after a failed move"
grep -qE "node=$last event=migrate role=source pid=$pid job=echo from=$last to=$to mode=auto result=failed msg=" \
	"$LABDIR/$last.log" || t_fail "$last did not log the failed move: $(tail -3 "$LABDIR/$last.log")"
out=$(t_exec "$last" "$SOCKMIG" ps --json) || t_fail "ps: $out"
grep -qE "\"name\":\"echo\",\"node\":\"$last\",[^}]*\"state\":\"running\"[^}]*\"pid\":$pid," <<<"$out" ||
	t_fail "after the failed move, ps on $last: $out"
t_wait_progress stream $((before + 2000000)) 100

# ---- every byte ----
kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 30 || t_fail "the peer's stream failed: $(cat "$T_DIR/stream.out" "$T_DIR/stream.err")"
grep -qE '^done conns=4 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/stream.out" ||
	t_fail "the peer did not get every byte back: $(cat "$T_DIR/stream.out")"
t_log "stream: $(cat "$T_DIR/stream.out")"
t_pass
