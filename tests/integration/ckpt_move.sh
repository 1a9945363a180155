#!/bin/bash
# Real, unmodified programs move from node to node with their connections,
# while a peer on n3 keeps talking to them: every byte and datagram comes back
# exactly once and in order, the program keeps its pid (in a pid namespace of
# its own), the original is gone from the node it left, and nothing of the
# connections is left there.
#   - a C epoll TCP echo server (tests/progs/epoll_echo): n1 -> n2 -> n1
#   - a python3 asyncio server, TCP and UDP echo: n1 -> n2 -> n1
#   - socat relaying a TCP connection from n3 to an echo server on n3: n1 -> n2
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
ASYNCIO=$T_ROOT/tests/integration/lib/asyncio_echo.py
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
[ -x "$ECHO" ] || t_fail "epoll_echo is not built"
command -v socat >/dev/null || t_fail "socat is not installed (scripts/deps.sh installs it)"

# The jobs' own addresses on n1: they move with the jobs.
t_check t_exec n1 ip addr add 198.18.0.100/24 dev eth0
t_check t_exec n1 ip addr add 198.18.0.101/24 dev eth0
t_check t_exec n1 ip addr add 198.18.0.102/24 dev eth0

node_ip() { echo "198.18.0.${1#n}"; }

# move TAG PID FROM TO CHANPORT SERVICEPORT: the process PID moves FROM -> TO
# over a channel on CHANPORT; sets NEWPID (its pid outside its namespace on
# TO) and T_PIDS[TAG-on-TO] (the restore command that stays its parent there).
move() {
	local tag=$1 pid=$2 from=$3 to=$4 port=$5 service=$6 own
	own=$(sed -n 's/^NSpid:.*\t//p' "/proc/$pid/status")
	t_spawn "$tag-on-$to" "$to" "$SOCKMIG" restore --listen "$(node_ip "$to"):$port" --take-address eth0
	t_wait_line "$tag-on-$to" '^listening'
	t_exec "$from" "$SOCKMIG" checkpoint "$pid" --to "$(node_ip "$to"):$port" --move-address eth0 \
		>"$T_DIR/$tag-move.out" 2>&1 || t_fail "$tag: the move $from -> $to failed: $(cat "$T_DIR/$tag-move.out")"
	t_log "$tag $from -> $to: $(cat "$T_DIR/$tag-move.out")"
	t_wait_line "$tag-on-$to" '^restored pid [0-9]+$'
	NEWPID=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/$tag-on-$to.out")
	# the original is gone; the new one runs, with the pid it had
	t_wait_gone "$pid" || t_fail "$tag: the original pid $pid still runs on $from"
	kill -0 "$NEWPID" 2>/dev/null || t_fail "$tag: the restored process $NEWPID does not run"
	[ "$(sed -n 's/^NSpid:.*\t//p' "/proc/$NEWPID/status")" = "$own" ] ||
		t_fail "$tag: the restored process does not see its pid $own"
	# its sockets live on TO and nowhere on FROM
	[ -n "$(t_exec "$to" ss -Htanp | grep "pid=$NEWPID,")" ] ||
		t_fail "$tag: no socket of pid $NEWPID on $to"
	[ -z "$(t_exec "$from" ss -Htan state established "( sport = :$service )")" ] ||
		t_fail "$tag: $from still has connections on port $service"
}


stream_done() { # TAG: stop the peer's stream and check every byte came back
	kill -USR2 "${T_PIDS[$1]}"
	t_wait_exit "$1" 30 || t_fail "$1: the peer's stream failed: $(cat "$T_DIR/$1.out" "$T_DIR/$1.err")"
	grep -qE '^done conns=[0-9]+ sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/$1.out" ||
		t_fail "$1: the peer did not get every byte back: $(cat "$T_DIR/$1.out")"
	t_log "$1: $(cat "$T_DIR/$1.out")"
}

# ---- C epoll echo server, 4 connections ----
t_spawn ep n1 "$ECHO" 198.18.0.100 7000
t_wait_line ep '^listening'
t_spawn ep-stream n3 "$PEER" tcp-stream --connect 198.18.0.100:7000 --conns 4 --window 256k
t_wait_line ep-stream '^ready'
t_wait_progress ep-stream 1000000 100
move ep "${T_PIDS[ep]}" n1 n2 9000 7000
t_wait_progress ep-stream $(($(last_verified ep-stream) + 2000000)) 100
move ep "$NEWPID" n2 n1 9001 7000
t_wait_progress ep-stream $(($(last_verified ep-stream) + 2000000)) 100
stream_done ep-stream
kill "$NEWPID"
t_wait_exit ep-on-n1 10 || true

# ---- python3 asyncio, TCP and UDP ----
t_spawn py n1 "$PY" "$ASYNCIO" 198.18.0.101 7100
t_wait_line py '^listening'
t_spawn py-stream n3 "$PEER" tcp-stream --connect 198.18.0.101:7100 --conns 2 --window 256k
t_spawn py-udp n3 "$PEER" udp-stream --connect 198.18.0.101:7101 --interval-us 1000
t_wait_line py-stream '^ready'
t_wait_line py-udp '^ready'
t_wait_progress py-stream 1000000 100
move py "${T_PIDS[py]}" n1 n2 9002 7100
t_wait_progress py-stream $(($(last_verified py-stream) + 2000000)) 100
move py "$NEWPID" n2 n1 9003 7100
t_wait_progress py-stream $(($(last_verified py-stream) + 2000000)) 100
stream_done py-stream
kill -USR2 "${T_PIDS[py-udp]}"
t_wait_exit py-udp 30 || t_fail "asyncio: the UDP peer failed: $(cat "$T_DIR/py-udp.out")"
grep -qE '^done sent=([0-9]+) received=\1 lost=0 dup=0 reordered=0' "$T_DIR/py-udp.out" ||
	t_fail "asyncio: datagrams lost: $(cat "$T_DIR/py-udp.out")"
t_log "asyncio udp: $(cat "$T_DIR/py-udp.out")"
kill "$NEWPID"
t_wait_exit py-on-n1 10 || true

# ---- socat relaying n3 -> socat on n1 -> echo on n3 ----
t_spawn backend n3 "$PEER" tcp-echo --listen 198.18.0.3:7300
t_wait_line backend '^ready'
# -d -d: socat says "listening on" once it listens (stderr, into .out)
t_spawn so n1 sh -c 'exec socat -d -d TCP-LISTEN:7200,bind=198.18.0.102,reuseaddr TCP:198.18.0.3:7300,bind=198.18.0.102 2>&1'
t_wait_line so 'listening on'
t_spawn so-stream n3 "$PEER" tcp-stream --connect 198.18.0.102:7200 --conns 1 --window 256k
t_wait_line so-stream '^ready'
t_wait_progress so-stream 1000000 100
move so "${T_PIDS[so]}" n1 n2 9004 7200
t_wait_progress so-stream $(($(last_verified so-stream) + 2000000)) 100
stream_done so-stream
t_pass
