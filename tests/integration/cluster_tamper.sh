#!/bin/bash
# A tampered migrate stream: one byte of one DATA record of the channel is
# flipped after sealing (SOCKMIG_FAULT=chan-corrupt-data, lib/chan.c; the
# first DATA record a daemon seals, once). A job started with `sockmig run`
# (epoll_echo on an address of its own, a peer on n3 streaming through 4
# connections) moves n1 -> n2 with n1's daemon restarted under the fault:
# n2 detects the damaged record and logs channel-error, the migration fails
# with one sentence on the CLI, the job goes on on n1 with its address and
# its stream, nothing is left on n2; the next move (the fault spent) works.
# Then the other way: n2 -> n1 with n1's daemon (now the destination)
# restarted under the fault, so the destination's first answer is damaged:
# n2 detects it, the job goes on on n2, nothing is left on n1, and the next
# move works. At the end the peer checks every byte.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
LABDIR=/run/sockmig/labs/$T_LAB
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
[ -x "$ECHO" ] || t_fail "epoll_echo is not built"

# wait_file FILE REGEX [SECS]: a line of FILE (as it grows) matches, or fail
wait_file() { t_wait_file "$@" || t_fail "no line matching '$2' in $1 within ${3:-10}s: $(tail -3 "$1")"; }
has_addr() { t_has_addr "$@"; }
# restart_faulty NODE TAG: stop the node's daemon (whichever runs: the lab's
# or one this test started as TAG2), start one under the fault as TAG
restart_faulty() {
	local node=$1 tag=$2 old=${3:-} pid
	if [ -n "$old" ]; then
		t_kill "$old"
	else
		pid=$(grep -oE 'event=start pid=[0-9]+' "$LABDIR/$node.log" | tail -1 | cut -d= -f3)
		[ -n "$pid" ] || t_fail "no daemon pid in $node.log"
		kill -TERM "$pid"
		t_wait_gone "$pid" || t_fail "the daemon of $node did not stop"
	fi
	t_spawn "$tag" "$node" env SOCKMIG_FAULT=chan-corrupt-data "$SOCKMIGD" --config "$LABDIR/$node.conf"
	t_wait_line "$tag" '^ready$' 10
}
# nothing_on NODE ADDR: no address, no socket on port 7000, no job record
nothing_on() {
	! has_addr "$1" "$2" || t_fail "$1 kept the job's address $2 after the failed move"
	[ -z "$(t_exec "$1" ss -Htanp "( sport = :7000 )")" ] ||
		t_fail "$1 has sockets of the job after the failed move: $(t_exec "$1" ss -Htanp "( sport = :7000 )")"
	out=$(t_exec "$1" "$SOCKMIG" ps --json) || t_fail "ps on $1: $out"
	! grep -q '"name":"echo"' <<<"$out" || t_fail "$1 still lists the job after the failed move: $out"
}
# still_here NODE PID ADDR: the job runs on NODE with its address and sockets
still_here() {
	kill -0 "$2" 2>/dev/null || t_fail "the job $2 died after the failed move"
	has_addr "$1" "$3" || t_fail "$1 lost the job's address after the failed move"
	[ -n "$(t_exec "$1" ss -Htanp | grep "pid=$2,")" ] || t_fail "no socket of pid $2 on $1 after the failed move"
	out=$(t_exec "$1" "$SOCKMIG" ps --json) || t_fail "ps on $1: $out"
	grep -qE "\"name\":\"echo\",\"node\":\"$1\",[^}]*\"state\":\"running\"[^}]*\"pid\":$2," <<<"$out" ||
		t_fail "after the failed move, ps on $1: $out"
}
# moved FROM TO PID: a clean move; prints the new pid
moved() {
	local out
	out=$(t_exec "$1" "$SOCKMIG" migrate "$3" --to "$2" 2>&1) || t_fail "the clean move $1 -> $2 failed: $out"
	[[ $out =~ ^moved\ pid\ $3\ \(job\ echo\)\ from\ $1\ to\ $2\ \(pid\ ([0-9]+)\ there\):\ 5\ sockets,\ frozen\ [0-9.]+\ ms$ ]] ||
		t_fail "the clean move $1 -> $2 printed: $out"
	t_log "clean move $1 -> $2: $out"
	echo "${BASH_REMATCH[1]}"
}

# ---- the source's daemon under the fault, and a job of its own ----
restart_faulty n1 src
out=$(t_exec n1 "$SOCKMIG" run --name echo -- sh -c 'exec "$0" "$SOCKMIG_JOB_ADDR" 7000' "$ECHO") ||
	t_fail "sockmig run failed: $out"
[[ $out =~ ^started\ job\ echo\ \(pid\ ([0-9]+)\)\ on\ n1\ with\ address\ ([0-9.]+)/24\;\ its\ output\ goes\ to\ (.*)$ ]] ||
	t_fail "run printed: $out"
pid=${BASH_REMATCH[1]} addr=${BASH_REMATCH[2]} log=${BASH_REMATCH[3]}
wait_file "$log" '^listening$'
t_spawn stream n3 "$PEER" tcp-stream --connect "$addr:7000" --conns 4 --window 256k
t_wait_line stream '^ready'
t_wait_progress stream 1000000 100

# The CLI's sentence: the job's fate, then the cause. A daemon that gives
# the channel's sentence when the channel failed (the daemon/migrate.c patch
# proposed with this test) names the damaged record; without it the cause
# is what the move saw on its end of the pump. Either exactly.
# (Record 1 of each direction is the migrate REQUEST or its REPLY; the
# damaged DATA record is the next.)
damaged="record 2 from node 'n1' failed authentication: the stream was changed or damaged in transit"
cli_sentence() { # OUT TO CAUSE: one line, naming the damaged record
	local head="sockmig: cannot migrate pid $pid to $2 (it goes on here, connections intact): "
	[ "$(wc -l <<<"$1")" = 1 ] || t_fail "more than one line for a damaged record: $1"
	[ "$1" = "$head$3" ] || t_fail "a damaged record, the CLI said: $1"
}

# ---- n1 -> n2, n1's first DATA record damaged: n2 detects it ----
before=$(last_verified stream)
out=$(t_exec n1 "$SOCKMIG" migrate "$pid" --to n2 2>&1) && t_fail "a move with a damaged record succeeded: $out"
t_log "damaged source record: $out"
cli_sentence "$out" n2 "node 'n2' gave up the channel: $damaged"
wait_file "$LABDIR/n2.log" "node=n2 event=channel-error from=n1 msg=\"$damaged\""
wait_file "$LABDIR/n2.log" "node=n2 event=migrate role=destination pid=$pid job=echo from=n1 to=n2 mode=[a-z]+ result=failed msg="
# n2 told n1 why (an ERROR record), and n1 logs it
wait_file "$T_DIR/src.err" "node=n1 event=channel-error to=n2 msg=\"node 'n2' gave up the channel: $damaged\""
wait_file "$T_DIR/src.err" "node=n1 event=migrate role=source pid=$pid job=echo from=n1 to=n2 mode=[a-z]+ result=failed msg="
still_here n1 "$pid" "$addr"
nothing_on n2 "$addr"
t_wait_progress stream $((before + 2000000)) 100

# ---- the fault is spent: the same move works ----
new=$(moved n1 n2 "$pid")
t_wait_gone "$pid" || t_fail "the original pid $pid still runs on n1"
pid=$new
has_addr n2 "$addr" || t_fail "n2 does not have the job's address after the clean move"
! has_addr n1 "$addr" || t_fail "n1 kept the job's address after the clean move"
t_wait_progress stream $(($(last_verified stream) + 2000000)) 100

# ---- n2 -> n1, the destination's first answer damaged: n2 detects it ----
restart_faulty n1 dst src
before=$(last_verified stream)
out=$(t_exec n2 "$SOCKMIG" migrate "$pid" --to n1 2>&1) && t_fail "a move with a damaged answer succeeded: $out"
t_log "damaged destination record: $out"
cli_sentence "$out" n1 "$damaged"
wait_file "$LABDIR/n2.log" "node=n2 event=channel-error to=n1 msg=\"$damaged\""
wait_file "$LABDIR/n2.log" "node=n2 event=migrate role=source pid=$pid job=echo from=n2 to=n1 mode=[a-z]+ result=failed msg="
wait_file "$T_DIR/dst.err" "node=n1 event=channel-error from=n2 msg=\"node 'n2' gave up the channel: $damaged\""
wait_file "$T_DIR/dst.err" "node=n1 event=migrate role=destination pid=$pid job=echo from=n2 to=n1 mode=[a-z]+ result=failed msg="
still_here n2 "$pid" "$addr"
nothing_on n1 "$addr"
t_wait_progress stream $((before + 2000000)) 100

new=$(moved n2 n1 "$pid")
t_wait_gone "$pid" || t_fail "the original pid $pid still runs on n2"
pid=$new
has_addr n1 "$addr" || t_fail "n1 does not have the job's address after the clean move back"
t_wait_progress stream $(($(last_verified stream) + 2000000)) 100

# ---- every byte, through two damaged moves and two clean ones ----
kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 30 || t_fail "the peer's stream failed: $(cat "$T_DIR/stream.out" "$T_DIR/stream.err")"
grep -qE '^done conns=4 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/stream.out" ||
	t_fail "the peer did not get every byte back: $(cat "$T_DIR/stream.out")"
t_log "stream: $(cat "$T_DIR/stream.out")"
t_pass
