#!/bin/bash
# `sockmig migrate` in modes forward and rewrite, through the daemons, with
# processes that use their node's own address (adopted, not jobs), every
# stream checked by its peer across every move:
#
#  forward: a python asyncio TCP+UDP echo server on 198.18.0.1 moves
#   n1 -> n2 -> n3 -> n1 while n4 streams TCP and UDP to it. After each move
#   `sockmig flows --all` shows n1 (the home) forwarding straight to where the
#   process is and that node accepting; the node it left holds nothing (never
#   chained); back home, no rule is left anywhere. A new connection made while
#   it is away reaches it. First, a destination that fails after the flows
#   were forwarded to it (dst-fail-finish): all comes back, nothing lost.
#  rewrite, both ends moving: an epoll echo server on n1 and a socat relay on
#   n4 that connects to it; n3 streams through the relay. The server moves
#   n1 -> n2 (rewrite: n2 and n4 translate, its listener is forwarded by n1);
#   then the relay moves n4 -> n5 (auto: both its connections are rewritten;
#   n2 and n3 are told). With n1 and n4 cut off the wire the stream goes on:
#   its packets go straight between the nodes that hold the ends. When the
#   server ends, its routes go from every node.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 5
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
ASYNCIO=$T_ROOT/tests/integration/lib/asyncio_echo.py
SOCAT=$(command -v socat) || t_fail "socat is not installed"
[ -x "$ECHO" ] || t_fail "epoll_echo is not built"

# NODE: "kind local remote next_hop own_now peer_now" of NODE's routes
routes() {
	t_exec "$1" "$SOCKMIG" flows --json | python3 -c '
import json, sys
for f in json.load(sys.stdin)["flows"]:
    print(f["kind"], f["local"], f["remote"], f["next_hop"], f["own_now"], f["peer_now"])' | sort
}
count_routes() { routes "$1" | grep -c "^$2 " || true; }
# FROM PID TO MODE: migrate, check what it printed; sets NEWPID and OUT
migrate() {
	OUT=$(t_exec "$1" "$SOCKMIG" migrate "$2" --to "$3" --mode "$4" 2>&1) || t_fail "migrate $2 $1 -> $3 ($4): $OUT"
	t_log "$1 -> $3 ($4): $OUT"
	[[ $OUT =~ ^moved\ pid\ $2\ from\ $1\ to\ $3\ \(pid\ ([0-9]+)\ there\):\ [0-9]+\ sockets,\ frozen\ [0-9.]+\ ms ]] ||
		t_fail "migrate printed: $OUT"
	NEWPID=${BASH_REMATCH[1]}
	t_wait_gone "$2" || t_fail "the original pid $2 still runs on $1"
	kill -0 "$NEWPID" 2>/dev/null || t_fail "the moved process $NEWPID does not run on $3"
}
link() { t_exec "$1" ip link set eth0 "$2"; }

# ================= forward =================
t_spawn srv n1 "$ASYNCIO" 198.18.0.1 7100
t_wait_line srv '^listening'
pid=${T_PIDS[srv]}
t_spawn fwd_tcp n4 "$PEER" tcp-stream --connect 198.18.0.1:7100 --conns 2 --window 256k
t_spawn fwd_udp n4 "$PEER" udp-stream --connect 198.18.0.1:7101 --interval-us 2000
t_wait_line fwd_tcp '^ready'
t_wait_line fwd_udp '^ready'
t_wait_progress fwd_tcp 500000

# ---- a destination that fails after the flows were switched to it: back ----
LABDIR=/run/sockmig/labs/$T_LAB
kill -TERM "$(t_lab_daemon_pid n2)"
t_spawn faulty n2 env SOCKMIG_FAULT=dst-fail-finish "$SOCKMIGD" --config "$LABDIR/n2.conf"
t_wait_line faulty '^ready$' 10
out=$(t_exec n1 "$SOCKMIG" migrate "$pid" --to n2 --mode forward 2>&1) && t_fail "a move to a failing destination succeeded: $out"
grep -qE "^sockmig: cannot migrate pid $pid to n2 \(it goes on here, connections intact\): .*fault injected: dst-fail-finish$" <<<"$out" ||
	t_fail "failing destination: $out"
kill -0 "$pid" || t_fail "the server died after a failed move"
for n in n1 n2; do
	[ -z "$(routes $n)" ] || t_fail "after the failed move $n holds routes: $(routes $n)"
done
t_wait_progress fwd_tcp $(($(last_verified fwd_tcp) + 1000000)) 60
t_kill faulty
t_spawn d2 n2 "$SOCKMIGD" --config "$LABDIR/n2.conf"
t_wait_line d2 '^ready$' 10

path=(n1 n2 n3 n1)
for i in 1 2 3; do
	from=${path[$((i - 1))]} to=${path[$i]}
	migrate "$from" "$pid" "$to" forward
	[[ $OUT =~ 4\ flows\ forwarded ]] || t_fail "move $i: not 4 flows forwarded (listener, 2 connections, UDP): $OUT"
	pid=$NEWPID
	t_wait_progress fwd_tcp $(($(last_verified fwd_tcp) + 1000000)) 60
	if [ "$to" = n1 ]; then
		for n in n1 n2 n3; do
			[ -z "$(routes $n)" ] || t_fail "back home, $n still holds routes: $(routes $n)"
		done
	else
		toaddr=198.18.0.${to#n}
		[ "$(routes n1 | grep -c "^forward .* $toaddr None None$")" = 4 ] ||
			t_fail "move $i: n1 does not forward the 4 flows straight to $to: $(routes n1)"
		[ "$(count_routes n1 forward)" = 4 ] || t_fail "move $i: n1 holds other forward rules: $(routes n1)"
		[ "$(count_routes "$to" accept)" = 4 ] || t_fail "move $i: $to does not accept the 4 flows: $(routes "$to")"
		[ "$from" = n1 ] || [ -z "$(routes "$from")" ] || t_fail "move $i: $from still holds routes (a chain): $(routes "$from")"
		# a connection made now reaches the process where it is
		out=$(t_exec n4 "$PEER" tcp-pingpong --connect 198.18.0.1:7100 --count 20 --interval-us 2000) ||
			t_fail "move $i: a new connection to 198.18.0.1:7100 failed: $out"
		grep -q '^done count=20 ' <<<"$out" || t_fail "move $i: new connection: $out"
	fi
	# the flows' sockets are where the process is
	[ -n "$(t_exec "$to" ss -Htanp | grep "pid=$pid,")" ] || t_fail "move $i: no socket of pid $pid on $to"
done
out=$(t_exec n4 "$SOCKMIG" flows --all) || t_fail "flows --all: $out"
kill -USR2 "${T_PIDS[fwd_tcp]}" "${T_PIDS[fwd_udp]}"
t_wait_exit fwd_tcp 30 || t_fail "forward: the TCP stream failed: $(cat "$T_DIR/fwd_tcp.out" "$T_DIR/fwd_tcp.err")"
t_wait_exit fwd_udp 30 || t_fail "forward: the UDP stream failed: $(cat "$T_DIR/fwd_udp.out")"
grep -qE '^done conns=2 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/fwd_tcp.out" ||
	t_fail "forward: not every byte came back: $(cat "$T_DIR/fwd_tcp.out")"
grep -qE '^done sent=([0-9]+) received=\1 lost=0 dup=0 reordered=0 ' "$T_DIR/fwd_udp.out" ||
	t_fail "forward: datagrams lost: $(cat "$T_DIR/fwd_udp.out")"
t_log "forward: $(cat "$T_DIR/fwd_tcp.out") / $(cat "$T_DIR/fwd_udp.out")"
t_kill srv

# ================= rewrite, both ends =================
t_spawn echo n1 "$ECHO" 198.18.0.1 7200
t_wait_line echo '^listening'
epid=${T_PIDS[echo]}
t_spawn relay n4 "$SOCAT" TCP-LISTEN:7300,bind=198.18.0.4,reuseaddr TCP:198.18.0.1:7200
rpid=${T_PIDS[relay]}
for _ in $(seq 100); do
	t_exec n4 ss -Htln "( sport = :7300 )" | grep . >/dev/null && break
	t_wait_gone "$rpid" 0.05 && t_fail "socat ended: $(cat "$T_DIR/relay.err")"
done
t_spawn rw n3 "$PEER" tcp-stream --connect 198.18.0.4:7300 --window 256k
t_wait_line rw '^ready'
t_wait_progress rw 500000

migrate n1 "$epid" n2 rewrite
[[ $OUT =~ 1\ flows\ forwarded,\ 1\ flows\ rewritten ]] || t_fail "server move: $OUT"
epid=$NEWPID
[ "$(routes n2 | grep -c '^rewrite 198.18.0.1:7200 198.18.0.4:[0-9]* None 198.18.0.2 198.18.0.4$')" = 1 ] ||
	t_fail "n2 does not rewrite its end: $(routes n2)"
[ "$(routes n4 | grep -c '^rewrite 198.18.0.4:[0-9]* 198.18.0.1:7200 None 198.18.0.4 198.18.0.2$')" = 1 ] ||
	t_fail "n4 does not rewrite towards n2: $(routes n4)"
[ "$(routes n1)" = "forward 198.18.0.1:7200 None 198.18.0.2 None None" ] || t_fail "n1 holds: $(routes n1)"
link n1 down
t_wait_progress rw $(($(last_verified rw) + 1000000)) 60
link n1 up

migrate n4 "$rpid" n5 auto
[[ $OUT =~ 2\ flows\ rewritten ]] || t_fail "relay move: $OUT"
rpid=$NEWPID
[ -z "$(routes n4)" ] || t_fail "n4 still holds routes after the relay left: $(routes n4)"
[ "$(count_routes n5 rewrite)" = 2 ] || t_fail "n5 does not rewrite both relay flows: $(routes n5)"
routes n2 | grep -q '^rewrite 198.18.0.1:7200 198.18.0.4:[0-9]* None 198.18.0.2 198.18.0.5$' ||
	t_fail "n2 does not point at n5: $(routes n2)"
routes n3 | grep -q '^rewrite 198.18.0.3:[0-9]* 198.18.0.4:7300 None 198.18.0.3 198.18.0.5$' ||
	t_fail "n3 does not point at n5: $(routes n3)"
link n1 down
link n4 down
t_wait_progress rw $(($(last_verified rw) + 1000000)) 60
link n1 up
link n4 up
kill -USR2 "${T_PIDS[rw]}"
t_wait_exit rw 30 || t_fail "rewrite: the stream failed: $(cat "$T_DIR/rw.out" "$T_DIR/rw.err")"
grep -qE '^done conns=1 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/rw.out" ||
	t_fail "rewrite: not every byte came back: $(cat "$T_DIR/rw.out")"
t_log "rewrite: $(cat "$T_DIR/rw.out")"

# ---- a moved process that ends takes its routes with it ----
kill -TERM "$epid"
t_wait_gone "$epid" || t_fail "the echo server did not end"
for _ in $(seq 50); do
	[ -z "$(routes n1)$(routes n2)" ] && break
	t_wait_file "/run/sockmig/labs/$T_LAB/n2.log" "event=exit .*pid=$epid " 1 || true
done
[ -z "$(routes n2)" ] || t_fail "n2 kept routes of the ended process: $(routes n2)"
[ -z "$(routes n1)" ] || t_fail "n1 kept forwarding for the ended process: $(routes n1)"
t_pass
