#!/bin/bash
# A process's TCP and UDP sockets move from n1 to n2 mid-stream, with their
# address, while a peer on n3 keeps streaming: every byte and every datagram
# comes back exactly once and in order, the peer never sees a reset, the
# sockets live on n2 and are gone from n1, and the old process still runs.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer

# The job's own addresses on n1: they move, the nodes' addresses stay.
t_check t_exec n1 ip addr add 198.18.0.100/24 dev eth0
t_check t_exec n1 ip addr add 2001:2::100/64 dev eth0 nodad
t_check t_exec n1 ip addr add 198.18.0.101/24 dev eth0

move_tcp() { # ADDR-IN-URL PORT TAG
	local addr=$1 port=$2 tag=$3 fd pid
	t_spawn "$tag-echo1" n1 "$PEER" tcp-echo --listen "$addr:$port"
	t_wait_line "$tag-echo1" '^ready'
	t_spawn "$tag-stream" n3 "$PEER" tcp-stream --connect "$addr:$port" --conns 1 --window 1m
	t_wait_line "$tag-stream" '^ready'
	# enough streaming that every queue has data in it
	t_wait_progress "$tag-stream" 2000000 200
	pid=${T_PIDS[$tag-echo1]}
	kill -USR1 "$pid"
	t_wait_line "$tag-echo1" '^quiesced'
	fd=$(t_exec n1 ss -Htnp state established "( sport = :$port )" | grep -o 'fd=[0-9]*' | cut -d= -f2)
	[ -n "$fd" ] || t_fail "$tag: no established socket on port $port on n1"

	t_spawn "$tag-echo2" n2 "$SOCKMIG" sockets restore --listen 198.18.0.2:9000 --take-address eth0 -- \
		"$PEER" tcp-echo --fd "$fd"
	t_wait_line "$tag-echo2" '^listening'
	t_exec n1 "$SOCKMIG" sockets save "$pid" --fd "$fd" --to 198.18.0.2:9000 --move-address eth0 \
		>"$T_DIR/$tag-save.out" 2>&1 || t_fail "$tag: sockets save failed: $(cat "$T_DIR/$tag-save.out")"
	t_log "$tag: $(cat "$T_DIR/$tag-save.out")"
	t_wait_line "$tag-echo2" '^ready'

	# the stream goes on through n2
	t_wait_progress "$tag-stream" $(( $(last_verified "$tag-stream") + 4000000 )) 200
	kill -USR2 "${T_PIDS[$tag-stream]}"
	t_wait_exit "$tag-stream" 30 || t_fail "$tag: the peer's stream failed: $(cat "$T_DIR/$tag-stream.out")"
	grep -qE '^done conns=1 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/$tag-stream.out" ||
		t_fail "$tag: the peer did not get every byte back: $(cat "$T_DIR/$tag-stream.out")"

	# the connection is gone from n1, and the process that had it still runs
	[ -z "$(t_exec n1 ss -Htn state established "( sport = :$port )")" ] ||
		t_fail "$tag: n1 still has the connection"
	kill -0 "$pid" 2>/dev/null || t_fail "$tag: the old process on n1 died"
	t_kill "$tag-echo1"
	t_kill "$tag-echo2"
}

move_tcp 198.18.0.100 7000 v4
# after the first move the address lives on n2; the IPv6 one is still on n1
move_tcp '[2001:2::100]' 7002 v6

# UDP: datagrams pile up in the quiesced echo's receive queue, more arrive
# during the freeze; every one is echoed once and in order by n2.
t_spawn u-echo1 n1 "$PEER" udp-echo --bind 198.18.0.101:7001
t_wait_line u-echo1 '^ready'
t_spawn u-stream n3 "$PEER" udp-stream --connect 198.18.0.101:7001 --interval-us 1000
t_wait_line u-stream '^ready'
upid=${T_PIDS[u-echo1]}
kill -USR1 "$upid"
t_wait_line u-echo1 '^quiesced'
ufd=$(t_exec n1 ss -Huanp "( sport = :7001 )" | grep -o 'fd=[0-9]*' | cut -d= -f2)
[ -n "$ufd" ] || t_fail "udp: no socket on port 7001 on n1"
t_spawn u-echo2 n2 "$SOCKMIG" sockets restore --listen 198.18.0.2:9001 --take-address eth0 -- \
	"$PEER" udp-echo --fd "$ufd"
t_wait_line u-echo2 '^listening'
t_exec n1 "$SOCKMIG" sockets save "$upid" --fd "$ufd" --to 198.18.0.2:9001 --move-address eth0 \
	>"$T_DIR/u-save.out" 2>&1 || t_fail "udp: sockets save failed: $(cat "$T_DIR/u-save.out")"
t_log "udp: $(cat "$T_DIR/u-save.out")"
grep -qE ' [1-9][0-9]* queued datagrams' "$T_DIR/u-save.out" || t_fail "udp: no datagram was waiting in the queue"
t_wait_line u-echo2 '^ready'
kill -USR2 "${T_PIDS[u-stream]}"
t_wait_exit u-stream 30 || t_fail "udp: the peer lost datagrams: $(cat "$T_DIR/u-stream.out")"
grep -qE '^done sent=([0-9]+) received=\1 lost=0 dup=0 reordered=0' "$T_DIR/u-stream.out" ||
	t_fail "udp: $(cat "$T_DIR/u-stream.out")"
t_log "udp: $(cat "$T_DIR/u-stream.out")"
t_pass
