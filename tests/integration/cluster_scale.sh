#!/bin/bash
# A process with 1,000 open TCP connections and a UDP socket moves n1 -> n2
# -> n1 through the daemons (`sockmig migrate`, mode move), and every one of
# them works afterwards. The job is epoll_echo --udp, started by `sockmig
# run` with RLIMIT_NOFILE raised for it alone; a peer on n3 keeps a checked
# stream on each of the 1,000 connections (a hash of offset and connection,
# every echoed byte compared), and 3 UDP flows send a numbered datagram
# every 2 ms each. After each move: the command moved 1,002 sockets (the
# connections, the listener, the UDP socket); the destination's kernel has
# the 1,000 connections established and the UDP socket bound, all owned by
# the new pid, the source has none; the peer is told to mark (SIGUSR1) and
# then reports every one of the 1,000 connections with bytes sent after the
# mark echoed and verified (progressed=1000). At the end the stream has
# every byte back, the UDP flows lost no datagram, and n3's kernel counted
# no reset. The timings are printed.
# The job's UDP socket has a receive buffer for about 18 s of them
# (--rcvbuf 32 MiB, 64 MiB in the kernel's count): with 1,000 connections
# the freeze took 1 to 20 s on the loaded 2-CPU machine this was written on,
# far more than a default buffer holds (about 0.2 s), so a datagram lost
# here is one the move lost, not one that found the buffer full. The nodes'
# UdpRcvbufErrors are printed, and on a loss the missing sequence numbers
# beside the moves' times.
# CONNS=N changes the number of connections.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
CONNS=${CONNS:-1000}
UDP_FLOWS=3
JOB_PORT=7000
NOFILE=$((CONNS + 1024))
[ -x "$ECHO" ] && [ -x "$PEER" ] || t_fail "epoll_echo or peer is not built"
start=$SECONDS
TIMES=()
FROZEN=()
MOVE_MS=()

has_addr() { t_has_addr "$@"; }
json_field() { grep -oE "\"$2\":[^,}]*" <<<"$1" | head -1 | cut -d: -f2 | tr -d '"'; }
# NODE: "TCP UDP" sockets of the job's port in NODE's kernel, and of them
# those that pid $pid owns
job_sockets() {
	local tcp udp
	tcp=$(t_exec "$1" ss -Htanp state established "( sport = :$JOB_PORT )")
	udp=$(t_exec "$1" ss -Huanp "( sport = :$JOB_PORT )")
	echo "$(grep -c . <<<"$tcp") $(grep -c . <<<"$udp") $(grep -c "pid=$pid," <<<"$tcp") $(grep -c "pid=$pid," <<<"$udp")"
}
# M: mark the stream (SIGUSR1), wait for its "mark n=M", then for a
# progress line after it that says every connection had bytes sent after
# the mark echoed and verified (bounded)
all_progressed() {
	local m=$1 t0 n
	t0=$(date +%s%N)
	kill -USR1 "${T_PIDS[stream]}"
	t_wait_line stream "^mark n=$m$" 10
	n=$(wc -l <"$T_DIR/stream.err")
	timeout 60 grep -m1 -qE "progressed=$CONNS min_bytes=[1-9]" <(timeout 60 tail -n +$((n + 1)) -F "$T_DIR/stream.err" 2>/dev/null) ||
		t_fail "mark $m: not every connection moved on within 60 s: $(tail -1 "$T_DIR/stream.err")"
	TIMES+=("mark $m: all $CONNS connections verified new bytes within $((($(date +%s%N) - t0) / 1000000)) ms")
}

# ---- the job: its own address, 1,000 fds more than the default ----
out=$(t_exec n1 "$SOCKMIG" run --name scale -- sh -c 'ulimit -n "$2" && exec "$0" "$SOCKMIG_JOB_ADDR" "$1" --udp --rcvbuf 33554432' \
	"$ECHO" "$JOB_PORT" "$NOFILE") || t_fail "sockmig run failed: $out"
[[ $out =~ ^started\ job\ scale\ \(pid\ ([0-9]+)\)\ on\ n1\ with\ address\ ([0-9.]+)/24\;\ its\ output\ goes\ to\ (.*)$ ]] ||
	t_fail "run printed: $out"
pid=${BASH_REMATCH[1]} addr=${BASH_REMATCH[2]} joblog=${BASH_REMATCH[3]}
t_wait_file "$joblog" '^listening$' 30 || t_fail "the job did not listen: $(tail -3 "$joblog")"
grep -qE "^Max open files +$NOFILE " "/proc/$pid/limits" || t_fail "the job's RLIMIT_NOFILE: $(grep 'open files' "/proc/$pid/limits")"

# ---- the peer: a checked stream on each connection, UDP flows ----
t0=$(date +%s%N)
t_spawn stream n3 sh -c 'ulimit -n "$1" && exec "$0" tcp-stream --connect "$2" --conns "$3" --rate 1k --chunk 1k --window 64k --drain-timeout 60' \
	"$PEER" "$NOFILE" "$addr:$JOB_PORT" "$CONNS"
t_wait_line stream '^ready$' 60
TIMES+=("$CONNS connections up and sending in $((($(date +%s%N) - t0) / 1000000)) ms")
UDP_T0=$(date +%s%N) # a datagram every 2 ms from about then: sequence ~ ms since UDP_T0 / 2
for u in $(seq "$UDP_FLOWS"); do
	t_spawn "udp$u" n3 "$PEER" udp-stream --connect "$addr:$JOB_PORT" --interval-us 2000 --drain-timeout 10
	t_wait_line "udp$u" '^ready$' 10
done
read -r tcp udp _ <<<"$(job_sockets n1)"
[ "$tcp" = "$CONNS" ] && [ "$udp" = 1 ] || t_fail "n1 has $tcp connections and $udp UDP sockets of the job, not $CONNS and 1"
all_progressed 1
COUNTERS="TcpEstabResets TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpExtTCPAbortOnTimeout TcpExtTCPAbortFailed"
# shellcheck disable=SC2086
nstat_before=$(t_nstat n3 $COUNTERS)
UDP_COUNTERS="UdpRcvbufErrors UdpInErrors UdpSndbufErrors"
# shellcheck disable=SC2086
udp_before="n1: $(t_nstat n1 $UDP_COUNTERS | tr '\n' ' ') n2: $(t_nstat n2 $UDP_COUNTERS | tr '\n' ' ')"
# packets dropped at the CPUs' input backlog (the machine's: replayed
# packets travel through loopback's), to tell such a drop from the move's
softnet_dropped() {
	local n=0 _a b _r
	while read -r _a b _r; do n=$((n + 16#$b)); done </proc/net/softnet_stat
	echo "$n"
}
softnet_before=$(softnet_dropped)

# ---- n1 -> n2 -> n1 ----
from=n1 to=n2 m=1
for k in 1 2; do
	t0=$(date +%s%N)
	out=$(t_exec "$from" "$SOCKMIG" migrate "$pid" --to "$to" --json 2>&1) || t_fail "move $k $from -> $to failed: $out"
	t1=$(date +%s%N)
	t_log "move $k: $out"
	[ "$(json_field "$out" sockets)" = $((CONNS + 2)) ] && [ "$(json_field "$out" tcp)" = $((CONNS + 1)) ] &&
		[ "$(json_field "$out" udp)" = 1 ] && [ "$(json_field "$out" to)" = "$to" ] ||
		t_fail "move $k did not move $((CONNS + 2)) sockets ($((CONNS + 1)) TCP, 1 UDP): $out"
	new=$(json_field "$out" new_pid)
	FROZEN+=("$(json_field "$out" frozen_ms)")
	MOVE_MS+=("$(((t0 - UDP_T0) / 1000000))-$(((t1 - UDP_T0) / 1000000))")
	TIMES+=("move $k $from -> $to: frozen $(json_field "$out" frozen_ms) ms, save $(json_field "$out" save_ms) ms, the command $(((t1 - t0) / 1000000)) ms, captured $(json_field "$out" captured_src)+$(json_field "$out" captured_dst) packets")
	t_wait_gone "$pid" 20 || t_fail "move $k: the original pid $pid still runs on $from"
	pid=$new
	t_node_procs "$to" epoll_echo | grep -q "^$pid " || t_fail "move $k: pid $pid is not an epoll_echo in $to"
	read -r tcp udp tcp_own udp_own <<<"$(job_sockets "$to")"
	[ "$tcp" = "$CONNS" ] && [ "$tcp_own" = "$CONNS" ] && [ "$udp" = 1 ] && [ "$udp_own" = 1 ] ||
		t_fail "move $k: $to has $tcp connections ($tcp_own of pid $pid) and $udp UDP sockets ($udp_own of pid $pid) of the job"
	read -r tcp udp _ <<<"$(job_sockets "$from")"
	[ "$tcp" = 0 ] && [ "$udp" = 0 ] || t_fail "move $k: $from kept $tcp connections and $udp UDP sockets of the job"
	has_addr "$to" "$addr" && ! has_addr "$from" "$addr" || t_fail "move $k: the address is not (only) on $to"
	m=$((m + 1))
	all_progressed "$m"
	t=$from from=$to to=$t
done

# ---- every byte, every datagram ----
for u in $(seq "$UDP_FLOWS"); do kill -USR2 "${T_PIDS[udp$u]}"; done
kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 90 || t_fail "the peer's stream failed: $(cat "$T_DIR/stream.out")"
line=$(grep '^done' "$T_DIR/stream.out")
[[ $line =~ ^done\ conns=$CONNS\ sent=([0-9]+)\ verified=([0-9]+)\ .*progressed=$CONNS\ min_bytes=[1-9][0-9]*\ errors=0$ ]] &&
	[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] || t_fail "the peer did not get every byte back on every connection: $(cat "$T_DIR/stream.out")"
t_log "stream: $line"
# shellcheck disable=SC2086
udp_after="n1: $(t_nstat n1 $UDP_COUNTERS | tr '\n' ' ') n2: $(t_nstat n2 $UDP_COUNTERS | tr '\n' ' ')"
softnet=$(($(softnet_dropped) - softnet_before))
udp_bad=
for u in $(seq "$UDP_FLOWS"); do
	t_wait_exit "udp$u" 30
	line=$(grep -E '^(done|error) ' "$T_DIR/udp$u.out")
	t_log "udp $u: $line"
	# lost, duplicated or damaged datagrams fail; reordering is a documented
	# limit of the move (docs/socket-move.md), reported only
	[[ $line =~ \ lost=0\ dup=0\ .*corrupt=0$ ]] && [[ $line =~ sent=([0-9]+)\ received=([0-9]+) ]] &&
		[ "${BASH_REMATCH[1]}" = "${BASH_REMATCH[2]}" ] && [ "${BASH_REMATCH[1]}" -gt 500 ] ||
		udp_bad+="flow $u: $line; "
done
t_log "UDP counters of the job's nodes, before the moves: $udp_before; after: $udp_after; input backlog drops meanwhile (the whole machine's): $softnet"
[ -z "$udp_bad" ] ||
	t_fail "UDP datagrams lost: $udp_bad(the sequence numbers missing: $(grep -h '^peer: missing:' "$T_DIR"/udp*.err | cut -d: -f3 | tr '\n' ';'); the moves ran at ms ${MOVE_MS[*]} after the UDP flows started (a sequence number is about ms / 2), frozen ${FROZEN[*]} ms; the nodes' UDP counters before the moves: $udp_before, after: $udp_after; input backlog drops meanwhile (the whole machine's): $softnet)"
# shellcheck disable=SC2086
nstat_after=$(t_nstat n3 $COUNTERS)
[ "$nstat_after" = "$nstat_before" ] ||
	t_fail "n3's TCP counters moved (resets or aborts): before: $(tr "\n" " " <<<"$nstat_before") after: $(tr "\n" " " <<<"$nstat_after")"
for t in "${TIMES[@]}"; do t_log "$t"; done
t_log "$((SECONDS - start)) s in all"
t_pass
