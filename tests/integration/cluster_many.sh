#!/bin/bash
# 50 moves in a row, n1 -> n2 -> n1 ..., of a `sockmig run` job (epoll_echo)
# while a peer on n3 streams through 4 connections (its bytes go to the job
# and come back: both directions of every connection carry checked data).
# After each move: the command printed the move, the original pid is gone,
# the new pid is an epoll_echo in the destination's namespace and still sees
# itself as the job's first pid (its own pid namespace), `ps` there shows it
# running with the move counted, the job's address is on the destination
# only, its 4 connections are there (owned by the new pid) and none is left
# on the source, and the stream has moved on. At the end the peer has every
# byte back, and n3's kernel counted no reset. The freeze of every move is
# reported: min, median, max.
# MOVES=N changes the number of moves.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
MOVES=${MOVES:-50}
JOB_PORT=7000
CONNS=4
[ -x "$ECHO" ] && [ -x "$PEER" ] || t_fail "epoll_echo or peer is not built"
start=$SECONDS

has_addr() { t_has_addr "$@"; }
json_field() { grep -oE "\"$2\":[^,}]*" <<<"$1" | head -1 | cut -d: -f2 | tr -d '"'; }

out=$(t_exec n1 "$SOCKMIG" run --name many -- sh -c 'exec "$0" "$SOCKMIG_JOB_ADDR" "$1"' "$ECHO" "$JOB_PORT") ||
	t_fail "sockmig run failed: $out"
[[ $out =~ ^started\ job\ many\ \(pid\ ([0-9]+)\)\ on\ n1\ with\ address\ ([0-9.]+)/24\;\ its\ output\ goes\ to\ (.*)$ ]] ||
	t_fail "run printed: $out"
pid=${BASH_REMATCH[1]} addr=${BASH_REMATCH[2]} joblog=${BASH_REMATCH[3]}
own=$pid # what the job sees as its pid, wherever it runs
t_wait_file "$joblog" '^listening$' 30 || t_fail "the job did not listen: $(tail -3 "$joblog")"

t_spawn stream n3 "$PEER" tcp-stream --connect "$addr:$JOB_PORT" --conns "$CONNS" --rate 2m --window 256k --drain-timeout 30
t_wait_line stream '^ready$'
t_wait_progress stream 1000000 30
COUNTERS="TcpEstabResets TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpExtTCPAbortOnTimeout TcpExtTCPAbortFailed"
# shellcheck disable=SC2086
nstat_before=$(t_nstat n3 $COUNTERS)

from=n1 to=n2 frozen=() walls=()
for i in $(seq "$MOVES"); do
	before=$(last_verified stream)
	t0=$(date +%s%N)
	out=$(t_exec "$from" "$SOCKMIG" migrate "$pid" --to "$to" --json 2>&1) || t_fail "move $i $from -> $to failed: $out"
	t1=$(date +%s%N)
	[ "$(json_field "$out" pid)" = "$pid" ] && [ "$(json_field "$out" job)" = many ] &&
		[ "$(json_field "$out" from)" = "$from" ] && [ "$(json_field "$out" to)" = "$to" ] &&
		[ "$(json_field "$out" sockets)" = $((CONNS + 1)) ] || t_fail "move $i printed: $out"
	new=$(json_field "$out" new_pid)
	[ "$(json_field "$out" own_pid)" = "$own" ] || t_fail "move $i: the job sees itself as pid $(json_field "$out" own_pid), not $own: $out"
	frozen+=("$(json_field "$out" frozen_ms)")
	walls+=("$(((t1 - t0) / 1000000))")

	t_wait_gone "$pid" 10 || t_fail "move $i: the original pid $pid still runs on $from"
	t_node_procs "$to" epoll_echo | grep -q "^$new " || t_fail "move $i: pid $new is not an epoll_echo in $to"
	nspid=$(awk '/^NSpid:/ { print $NF }' "/proc/$new/status")
	[ "$nspid" = "$own" ] || t_fail "move $i: pid $new sees itself as $nspid, not $own"
	out=$(t_exec "$to" "$SOCKMIG" ps --json) || t_fail "move $i: ps on $to: $out"
	grep -qE "\"name\":\"many\",\"node\":\"$to\",\"address\":\"$addr/24\",\"state\":\"running\",[^}]*\"pid\":$new,\"own_pid\":$own,[^}]*\"moves\":${i}[,}]" <<<"$out" ||
		t_fail "move $i: ps on $to: $out"
	has_addr "$to" "$addr" || t_fail "move $i: $to does not have the job's address"
	! has_addr "$from" "$addr" || t_fail "move $i: $from kept the job's address"
	n=$(t_exec "$to" ss -Htanp state established "( sport = :$JOB_PORT )" | grep -c "pid=$new,")
	[ "$n" = "$CONNS" ] || t_fail "move $i: $to has $n connections of pid $new, not $CONNS"
	[ -z "$(t_exec "$from" ss -Htan "( sport = :$JOB_PORT )")" ] ||
		t_fail "move $i: $from kept sockets of the job: $(t_exec "$from" ss -Htan "( sport = :$JOB_PORT )")"
	t_wait_progress stream $((before + 1000000)) 30
	pid=$new
	t=$from from=$to to=$t
done

kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 40 || t_fail "the peer's stream failed: $(cat "$T_DIR/stream.out")"
grep -qE "^done conns=$CONNS sent=([0-9]+) verified=\\1 .*errors=0$" "$T_DIR/stream.out" ||
	t_fail "the peer did not get every byte back: $(cat "$T_DIR/stream.out")"
# shellcheck disable=SC2086
nstat_after=$(t_nstat n3 $COUNTERS)
[ "$nstat_after" = "$nstat_before" ] ||
	t_fail "n3's TCP counters moved (resets or aborts): before: $(tr "\n" " " <<<"$nstat_before") after: $(tr "\n" " " <<<"$nstat_after")"
t_log "stream: $(grep "^done" "$T_DIR/stream.out")"
t_log "$MOVES moves, frozen ms: $(printf '%s\n' "${frozen[@]}" | t_stats)"
t_log "$MOVES moves, migrate command ms: $(printf '%s\n' "${walls[@]}" | t_stats)"
t_log "frozen ms per move: ${frozen[*]}"
t_log "$((SECONDS - start)) s in all"
t_pass
