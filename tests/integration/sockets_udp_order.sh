#!/bin/bash
# A UDP echo's socket moves n1 -> n2 -> n1 -> n2 -> n1 while a peer on n3
# sends it 2,000 datagrams a second: every datagram comes back exactly once
# and in the order sent, across every move (lost=0 dup=0 reordered=0).
# Two moves force the two moments where a datagram could be lost or
# overtaken, and the test checks that they were hit:
#   - SOCKMIG_FAULT=src-tail-split on S: S holds the freeze 50 ms longer,
#     then the newer half of what it caught travels with COMMIT instead of
#     with the captures, as packets that reach S after its captures went
#     out would. D must replay them before everything it caught itself, and
#     D (stalled for 100 ms after it announced the address:
#     dst-stall-announced) catches hundreds.
#   - SOCKMIG_FAULT=dst-thaw-race on D: 30 ms between D's last collect and
#     the opening of the flows, so datagrams are caught in that moment while
#     newer ones go straight into the socket. D must put them back in order
#     (it says so with SOCKMIG_DEBUG=1: "put in order").
# The other two moves run without faults.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer
ADDR=198.18.0.101
PORT=7001

t_check t_exec n1 ip addr add "$ADDR/24" dev eth0

node_ip() { echo "198.18.0.${1#n}"; }

t_spawn echo-n1-0 n1 "$PEER" udp-echo --bind "$ADDR:$PORT"
t_wait_line echo-n1-0 '^ready'
t_spawn stream n3 "$PEER" udp-stream --connect "$ADDR:$PORT" --interval-us 500
t_wait_line stream '^ready'

# move K FROM TO TAG_FROM SRC_ENV DST_ENV: the echo's socket FROM -> TO; the
# program that takes it on TO is T_PIDS[echo-TO-K]. The echo that gives it
# up is quiesced first: only its socket moves, and a datagram it had read
# but not yet echoed when it was stopped would stay behind with it.
move() {
	local k=$1 from=$2 to=$3 old=$4 senv=$5 denv=$6 pid fd chan
	pid=${T_PIDS[$old]}
	chan=$(node_ip "$to"):$((9100 + k))
	fd=$(t_exec "$from" ss -Huanp "( sport = :$PORT )" | grep "pid=$pid," | grep -o 'fd=[0-9]*' | cut -d= -f2)
	[ -n "$fd" ] || t_fail "move $k: no UDP socket of pid $pid on port $PORT on $from"
	# shellcheck disable=SC2086 # the env words are meant to split
	t_spawn "echo-$to-$k" "$to" env SOCKMIG_DEBUG=1 $denv "$SOCKMIG" sockets restore --listen "$chan" \
		--take-address eth0 -- "$PEER" udp-echo --fd "$fd"
	t_wait_line "echo-$to-$k" '^listening'
	# (at once before the move: a quiesced echo's queue overflows in 0.1 s)
	kill -USR1 "$pid"
	t_wait_line "$old" "^quiesced"
	# shellcheck disable=SC2086
	t_exec "$from" env SOCKMIG_DEBUG=1 $senv "$SOCKMIG" sockets save "$pid" --fd "$fd" --to "$chan" \
		--move-address eth0 >"$T_DIR/save-$k.out" 2>"$T_DIR/save-$k.err" ||
		t_fail "move $k $from -> $to failed: $(cat "$T_DIR/save-$k.out" "$T_DIR/save-$k.err")"
	t_log "move $k $from -> $to: $(cat "$T_DIR/save-$k.out")"
	t_wait_line "echo-$to-$k" '^ready'
	# The old echo still holds the address and port (a destroyed UDP
	# socket stays bound), so it must go before the socket comes back.
	t_kill "$old"
	# a second's worth of datagrams through the new node
	sleep 1
}

move 1 n1 n2 echo-n1-0 SOCKMIG_FAULT=src-tail-split "SOCKMIG_FAULT=dst-stall-announced SOCKMIG_FAULT_STALL_MS=100"
grep -qE 'move src: COMMIT sent, with [1-9][0-9]* packets' "$T_DIR/save-1.err" ||
	t_fail "move 1: S sent no packets with COMMIT: $(grep 'move src' "$T_DIR/save-1.err" | tail -5)"
grep -qE 'move dst: [0-9]+ \+ [1-9][0-9]* packets replayed' "$T_DIR/echo-n2-1.err" ||
	t_fail "move 1: D caught nothing of its own: $(grep 'move dst' "$T_DIR/echo-n2-1.err" | tail -5)"
move 2 n2 n1 echo-n2-1 "" SOCKMIG_FAULT=dst-thaw-race
grep -qE 'move dst: fd [0-9]+: [1-9][0-9]* datagrams caught as the flows opened, put in order' "$T_DIR/echo-n1-2.err" ||
	t_fail "move 2: D did not have to put datagrams in order: $(grep 'move dst' "$T_DIR/echo-n1-2.err" | tail -5)"
move 3 n1 n2 echo-n1-2 "" ""
move 4 n2 n1 echo-n2-3 "" ""

kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 30 || t_fail "the peer lost datagrams: $(cat "$T_DIR/stream.out") $(grep missing "$T_DIR/stream.err")"
grep -qE '^done sent=([0-9]+) received=\1 lost=0 dup=0 reordered=0 .*corrupt=0$' "$T_DIR/stream.out" ||
	t_fail "udp: $(cat "$T_DIR/stream.out")"
t_log "stream: $(cat "$T_DIR/stream.out")"
t_pass
