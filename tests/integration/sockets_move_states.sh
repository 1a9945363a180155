#!/bin/bash
# One socket in each TCP state the engine moves (and two kinds of UDP socket)
# moves from n1 to n2 with its job address, in the style of CRIU's ZDTM: a
# holder on n1 builds the state with a peer on n3, prints "ready" and never
# touches the socket again; `sockmig sockets save` moves it; on n2 the
# continuation (the restore's CMD) reads the state back (TCP_INFO,
# getsockopt) and finishes the protocol. The peer checks every byte both ways
# by position (tests/integration/lib/move_states.py), the lengths are compared
# here, and n3's reset counters must not move.
#
# Cases: established (dual-stack IPv6 socket, IPv4 peer, data unread and
# data unacknowledged), close_wait, fin_wait2, fin_wait1, last_ack, closing,
# syn_sent, udp_connected (IPv6, datagrams queued), udp_opts (IPv4,
# SO_REUSEADDR, IP_TOS, SO_RCVBUF).
#   CASES="fin_wait1 closing" bash sockets_move_states.sh   runs some only
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PY=$(python3 -c 'import sys; print(sys.executable)')
PROG=$T_ROOT/tests/integration/lib/move_states.py
P4=198.18.0.3 P6=2001:2::3
CASE=

fail() { t_fail "case $CASE: $*"; }

# Wait for a line of TAG, or fail at once on its "error" line.
wait_line() { # TAG REGEX [SECS]
	t_wait_line "$1" "($2)|^error" "${3:-20}"
	if grep -q '^error' "$T_DIR/$1.out"; then
		fail "$1: $(grep '^error' "$T_DIR/$1.out")"
	fi
}
# KEY=VALUE from the last line of TAG matching REGEX
field() { # TAG REGEX KEY
	grep -E "$2" "$T_DIR/$1.out" | tail -1 | grep -oE "(^| )$3=[^ ]*" | cut -d= -f2
}

# n3's reset and abort counters (absolute, the history file untouched)
RST_NAMES="TcpOutRsts TcpEstabResets TcpAttemptFails TcpExtTCPAbortOnData TcpExtTCPAbortOnClose
TcpExtTCPAbortOnMemory TcpExtTCPAbortOnTimeout TcpExtTCPAbortOnLinger TcpExtTCPAbortFailed"
rst_counters() {
	# shellcheck disable=SC2086
	t_exec n3 nstat -asz $RST_NAMES | awk 'NF >= 2 && $1 !~ /^#/ {printf "%s=%s ", $1, $2}'
}

# Move fd FD of PID to n2, where the continuation starts with CONT-ARGS.
move() { # TAG PID FD PORT CONT-ARGS...
	local tag=$1 pid=$2 fd=$3 port=$4
	shift 4
	[ -n "$fd" ] || fail "the holder did not say its fd"
	t_spawn "$tag-cont" n2 "$SOCKMIG" sockets restore --listen "198.18.0.2:$port" --take-address eth0 -- \
		"$PY" "$PROG" cont "$@"
	t_wait_line "$tag-cont" '^listening'
	t_exec n1 "$SOCKMIG" sockets save "$pid" --fd "$fd" --to "198.18.0.2:$port" --move-address eth0 \
		>"$T_DIR/$tag-save.out" 2>&1 || fail "sockets save failed: $(cat "$T_DIR/$tag-save.out")"
	t_log "$tag: $(cat "$T_DIR/$tag-save.out")"
}

# Both sides done; the byte counts match; no reset; the socket is gone
# from n1 and the holder still runs.
finish() { # TAG RST-BEFORE
	local tag=$1 before=$2 hpid=${T_PIDS[$1-holder]} pdone cdone
	t_wait_exit "$tag-cont" 40 || fail "the continuation failed: $(cat "$T_DIR/$tag-cont.out" "$T_DIR/$tag-cont.err")"
	t_wait_exit "$tag-peer" 40 || fail "the peer failed: $(cat "$T_DIR/$tag-peer.out" "$T_DIR/$tag-peer.err")"
	pdone=$(grep '^done' "$T_DIR/$tag-peer.out") || fail "the peer did not finish"
	cdone=$(grep '^done' "$T_DIR/$tag-cont.out") || fail "the continuation did not finish"
	t_log "$tag: peer: $pdone; continuation: $cdone"
	if [[ $tag != udp* ]]; then
		[ "$(field "$tag-peer" '^done' recv)" = "$(field "$tag-cont" '^done' sent-total)" ] ||
			fail "the peer received $(field "$tag-peer" '^done' recv) bytes, the holder and the continuation wrote $(field "$tag-cont" '^done' sent-total)"
		[ "$(field "$tag-cont" '^done' recv)" = "$(field "$tag-peer" '^done' sent)" ] ||
			fail "the holder's socket received $(field "$tag-cont" '^done' recv) bytes, the peer sent $(field "$tag-peer" '^done' sent)"
		[ "$(field "$tag-peer" '^done' state)" = CLOSE ] ||
			fail "the peer's connection did not end cleanly: $pdone"
	fi
	local after
	after=$(rst_counters)
	[ "$before" = "$after" ] || fail "n3's reset/abort counters moved: before: $before after: $after"
	local left
	left=$(t_exec n1 ss -Htuanpe | grep "pid=$hpid,")
	# SOCK_DESTROY leaves a UDP socket bound to a port it chose itself
	# (udp_abort keeps it hashed): tolerated, but not with its old queue,
	# which the holder would read again after the move.
	if [[ $tag == udp* ]] && [[ $left =~ ^udp\ +UNCONN\ +0\  ]]; then
		t_log "$tag: n1 keeps the destroyed UDP socket bound: $left"
	else
		[ -z "$left" ] || fail "n1 still has the holder's socket: $left"
	fi
	kill -0 "$hpid" 2>/dev/null || fail "the holder on n1 died"
	t_kill "$tag-holder"
}

# (1) ESTABLISHED, an AF_INET6 socket with a v4-mapped address talking to an
# IPv4 peer; 40 kB unread in its receive queue, its send queue full behind
# the peer's closed window (the peer reads again only after the move).
case_established() {
	local tag=established job=198.18.0.110 port=7301 before
	CASE=$tag
	t_check t_exec n1 ip addr add $job/24 dev eth0
	before=$(rst_counters)
	t_spawn $tag-peer n3 "$PY" "$PROG" peer $tag --local $P4 --port $port
	wait_line $tag-peer '^ready'
	t_spawn $tag-holder n1 "$PY" "$PROG" holder $tag --local ::ffff:$job --peer ::ffff:$P4 --port $port
	wait_line $tag-holder '^ready'
	t_log "$tag: holder: $(grep '^ready' "$T_DIR/$tag-holder.out")"
	move $tag "${T_PIDS[$tag-holder]}" "$(field $tag-holder '^ready' fd)" 9301 \
		$tag --offset "$(field $tag-holder '^ready' sent)" --local ::ffff:$job
	grep -qE '^moved 1 sockets \(1 TCP' "$T_DIR/$tag-save.out" || fail "not one TCP socket moved"
	wait_line $tag-cont '^state'
	kill -USR1 "${T_PIDS[$tag-peer]}"
	finish $tag "$before"
}

# (2) CLOSE_WAIT: the peer sent 40 kB and shut down; the holder's send queue
# is full; after the move the continuation reads to EOF, writes 1 MB more and
# closes: the peer gets it all, then EOF.
# (5a) LAST_ACK: the same, but the holder shut down too before the move (its
# FIN queued behind unsent data).
case_close_wait() { tcp_case close_wait 198.18.0.111 7302 9302; }
case_last_ack() { tcp_case last_ack 198.18.0.114 7305 9305; }
# (4) FIN_WAIT1: the holder filled the peer's closed window and shut down:
# its FIN waits behind unsent data; 40 kB from the peer unread.
case_fin_wait1() { tcp_case fin_wait1 198.18.0.113 7304 9304; }
# (3) FIN_WAIT2: the holder wrote 50 kB (read by the peer) and shut down,
# the FIN acked; 40 kB from the peer unread; the peer sends 3 MB more after
# the move and closes; the continuation reads it all.
case_fin_wait2() { tcp_case fin_wait2 198.18.0.112 7303 9303; }

tcp_case() { # CASE JOB PORT MOVE-PORT
	local tag=$1 job=$2 port=$3 mport=$4 before
	CASE=$tag
	t_check t_exec n1 ip addr add "$job/24" dev eth0
	before=$(rst_counters)
	t_spawn "$tag-peer" n3 "$PY" "$PROG" peer "$tag" --local $P4 --port "$port"
	wait_line "$tag-peer" '^ready'
	t_spawn "$tag-holder" n1 "$PY" "$PROG" holder "$tag" --local "$job" --peer $P4 --port "$port"
	wait_line "$tag-holder" '^ready'
	t_log "$tag: holder: $(grep '^ready' "$T_DIR/$tag-holder.out")"
	move "$tag" "${T_PIDS[$tag-holder]}" "$(field "$tag-holder" '^ready' fd)" "$mport" \
		"$tag" --offset "$(field "$tag-holder" '^ready' sent)" --local "$job"
	wait_line "$tag-cont" '^state'
	kill -USR1 "${T_PIDS[$tag-peer]}"
	finish "$tag" "$before"
}

# (5b) CLOSING: the holder fills the peer's closed window and shuts down (its
# FIN unsent), then the peer shuts down: the FINs cross, the holder is in
# CLOSING with the peer's 40 kB + FIN unread.
case_closing() {
	local tag=closing job=198.18.0.115 port=7306 before
	CASE=$tag
	t_check t_exec n1 ip addr add $job/24 dev eth0
	before=$(rst_counters)
	t_spawn $tag-peer n3 "$PY" "$PROG" peer $tag --local $P4 --port $port
	wait_line $tag-peer '^ready'
	t_spawn $tag-holder n1 "$PY" "$PROG" holder $tag --local $job --peer $P4 --port $port
	wait_line $tag-holder '^fin-sent'
	wait_line $tag-peer '^data-sent'
	kill -USR1 "${T_PIDS[$tag-peer]}"
	wait_line $tag-peer '^fin-sent'
	wait_line $tag-holder '^ready'
	t_log "$tag: holder: $(grep '^ready' "$T_DIR/$tag-holder.out")"
	move $tag "${T_PIDS[$tag-holder]}" "$(field $tag-holder '^ready' fd)" 9306 \
		$tag --offset "$(field $tag-holder '^ready' sent)" --local $job
	wait_line $tag-cont '^state'
	kill -USR1 "${T_PIDS[$tag-peer]}"
	finish $tag "$before"
}

# (6) SYN_SENT: a non-blocking connect() to a peer whose SYNs n3 drops (nft);
# n3 stops dropping once the socket lives on n2: the connection completes
# there and 1 MB + 3 MB flow.
case_syn_sent() {
	local tag=syn_sent job=198.18.0.116 port=7307 before
	CASE=$tag
	t_check t_exec n1 ip addr add $job/24 dev eth0
	t_exec n3 nft -f - <<-EOF || fail "cannot add the drop rule in n3"
		table inet smstates {
			chain in { type filter hook input priority -10; tcp dport $port drop; }
		}
	EOF
	before=$(rst_counters)
	t_spawn $tag-peer n3 "$PY" "$PROG" peer $tag --local $P4 --port $port
	wait_line $tag-peer '^ready'
	t_spawn $tag-holder n1 "$PY" "$PROG" holder $tag --local $job --peer $P4 --port $port
	wait_line $tag-holder '^ready'
	move $tag "${T_PIDS[$tag-holder]}" "$(field $tag-holder '^ready' fd)" 9307 $tag --local $job
	wait_line $tag-cont '^state'
	t_check t_exec n3 nft delete table inet smstates
	wait_line $tag-cont '^connected' 20
	finish $tag "$before"
}

# (7) UDP, IPv6, connected: 32 datagrams wait in the holder's queue; 8 more
# come after the move: all 40 reach the continuation in order, from the peer.
case_udp_connected() {
	local tag=udp_connected job=2001:2::117 port=7308 before
	CASE=$tag
	t_check t_exec n1 ip addr add $job/64 dev eth0 nodad
	before=$(rst_counters)
	t_spawn $tag-holder n1 "$PY" "$PROG" holder $tag --local $job --peer $P6 --port $port
	wait_line $tag-holder '^bound'
	t_spawn $tag-peer n3 "$PY" "$PROG" peer $tag --local $P6 --peer $job --port $port
	wait_line $tag-holder '^ready'
	move $tag "${T_PIDS[$tag-holder]}" "$(field $tag-holder '^ready' fd)" 9308 $tag --peer $P6 --port $port
	grep -qE '^moved 1 sockets \(0 TCP, 1 UDP\).* 32 queued datagrams' "$T_DIR/$tag-save.out" ||
		fail "not 32 queued datagrams moved: $(cat "$T_DIR/$tag-save.out")"
	wait_line $tag-cont '^connected'
	kill -USR1 "${T_PIDS[$tag-peer]}"
	finish $tag "$before"
	grep -q '^done answer=ok 40$' "$T_DIR/$tag-peer.out" || fail "the peer's answer: $(cat "$T_DIR/$tag-peer.out")"
}

# (8) UDP, IPv4, bound, with SO_REUSEADDR, IP_TOS and SO_RCVBUF set: the
# continuation reads the same values back, and answers a datagram.
case_udp_opts() {
	local tag=udp_opts job=198.18.0.118 port=7309 before want got
	CASE=$tag
	t_check t_exec n1 ip addr add $job/24 dev eth0
	before=$(rst_counters)
	t_spawn $tag-holder n1 "$PY" "$PROG" holder $tag --local $job --port $port
	wait_line $tag-holder '^ready'
	t_spawn $tag-peer n3 "$PY" "$PROG" peer $tag --local $P4 --peer $job --port $port
	wait_line $tag-peer '^ready'
	move $tag "${T_PIDS[$tag-holder]}" "$(field $tag-holder '^ready' fd)" 9309 $tag
	wait_line $tag-cont '^opts'
	want=$(grep -oE 'reuseaddr=.*' "$T_DIR/$tag-holder.out")
	got=$(grep '^opts' "$T_DIR/$tag-cont.out" | grep -oE 'reuseaddr=[0-9]+ tos=[0-9]+ rcvbuf=[0-9]+')
	t_log "$tag: holder: $want; continuation: $got"
	[ "$want" = "$got" ] || fail "options differ: holder: $want; continuation: $got"
	grep -q "^opts .* local=$job $port\$" "$T_DIR/$tag-cont.out" || fail "not bound to $job:$port: $(cat "$T_DIR/$tag-cont.out")"
	kill -USR1 "${T_PIDS[$tag-peer]}"
	finish $tag "$before"
}

for c in ${CASES:-established close_wait fin_wait2 fin_wait1 last_ack closing syn_sent udp_connected udp_opts}; do
	t_log "---- $c"
	"case_$c"
done
t_pass
