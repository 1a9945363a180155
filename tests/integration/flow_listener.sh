#!/bin/bash
# Listeners and the destination's capture, on a segment of three nodes S, D,
# P (peer) joined by a bridge, each a network namespace of this test's own:
#
#   (a) connection attempts frozen on S (sockmig_flow_freeze_syn): P's new
#       connect is dropped and its SYN captured, while an established
#       connection on the same port keeps exchanging data both ways; S's
#       listener never sees the attempt
#   (b) the captured SYN replayed on D into the restored listener makes a
#       handshake there (one request socket in SYN_RECV, counted by
#       sockmig_listener_pending); with the address moved, P's connect,
#       still retrying, completes against D and carries data
#   (c) pending handshakes: P's final ACK held back by P's own nft rule ->
#       the listener counts 1 (IPv4, IPv6, wildcard), other ports 0;
#       released -> the connection is accepted and the count is 0
#   (d) capture on D (CAPTURE | PASS_LOCAL): datagrams that reach D from the
#       wire after it took the address but before its socket is live are
#       captured there; S's capture then D's, replayed on D, reach the
#       socket complete and in order, and the replay itself is not captured
#   (e) connection attempts frozen for an IPv6 listener and a wildcard one
#       (IPv4 and IPv6 attempts), captured per flow; after thaw_syn the
#       retrying connects complete
. "$(dirname "$0")/../lib.sh"
t_init

FLOW_CTL=$T_PROGS/flow_ctl
AGENT=$T_ROOT/tests/integration/flow_agent.py
[ -x "$FLOW_CTL" ] || t_fail "$FLOW_CTL is not built"

NS_BR=fl-br-$T_ID
NS_S=fl-s-$T_ID
NS_D=fl-d-$T_ID
NS_P=fl-p-$T_ID
MAC_S=02:78:00:00:00:01
MAC_D=02:78:00:00:00:02
MAC_P=02:78:00:00:00:03
JOB4=10.78.0.100
JOB4B=10.78.0.101
PEER4=10.78.0.3

declare -A A_PID=() A_W=() A_R=()

flow_cleanup() {
	local status=$? name
	for name in "${!A_PID[@]}"; do
		kill "${A_PID[$name]}" 2>/dev/null
		wait "${A_PID[$name]}" 2>/dev/null
	done
	for ns in "$NS_S" "$NS_D" "$NS_P" "$NS_BR"; do
		ip netns del "$ns" 2>/dev/null
	done
	(exit "$status")
	t_cleanup
}
trap flow_cleanup EXIT

# agent NAME NS CMD...: a line-driven program in NS, talked to with ask.
agent() {
	local name=$1 ns=$2 w r
	shift 2
	mkfifo "$T_DIR/$name.in" "$T_DIR/$name.out"
	ip netns exec "$ns" "$@" <"$T_DIR/$name.in" >"$T_DIR/$name.out" 2>"$T_DIR/$name.err" &
	A_PID[$name]=$!
	exec {w}>"$T_DIR/$name.in"
	exec {r}<"$T_DIR/$name.out"
	A_W[$name]=$w
	A_R[$name]=$r
}

# ask NAME CMD: one command, one answer line in $ANS; fails on "error".
ask() {
	local name=$1
	shift
	echo "$*" >&"${A_W[$name]}"
	IFS= read -r -t 30 -u "${A_R[$name]}" ANS || t_fail "$name gave no answer to: $*"
	t_log "$name: $* -> $ANS"
	case $ANS in error*) t_fail "$name: $* -> $ANS" ;; esac
}

# lock NAME NS FLAGS...: a flow_ctl lock agent, started and ready.
lock() {
	local name=$1 ns=$2
	shift 2
	agent "$name" "$ns" "$FLOW_CTL" lock "$@"
	IFS= read -r -t 10 -u "${A_R[$name]}" ANS || t_fail "flow_ctl lock $* did not start in $ns"
}

# ask_err NAME CMD REGEX: the command must fail with a matching answer.
ask_err() {
	local name=$1 cmd=$2 re=$3
	echo "$cmd" >&"${A_W[$name]}"
	IFS= read -r -t 30 -u "${A_R[$name]}" ANS || t_fail "$name gave no answer to: $cmd"
	t_log "$name: $cmd -> $ANS"
	[[ $ANS =~ $re ]] || t_fail "$name: $cmd: expected /$re/, got: $ANS"
}

expect() { # what regex
	[[ $ANS =~ $2 ]] || t_fail "$1: expected /$2/, got: $ANS"
}

ns_exec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

pending() { # NS ADDR PORT -> $ANS "pending N"
	ANS=$(ns_exec "$1" "$FLOW_CTL" pending "$2" "$3") || t_fail "flow_ctl pending $2 $3 failed in $1"
	t_log "pending $2 $3 in $1 -> $ANS"
}

# ---- topology ----
ip netns add "$NS_BR" || t_fail "cannot create namespaces"
for ns in "$NS_S" "$NS_D" "$NS_P"; do ip netns add "$ns"; done
ns_exec "$NS_BR" ip link set lo up
ns_exec "$NS_BR" ip link add br0 type bridge
ns_exec "$NS_BR" ip link set br0 up
i=1
for n in s d p; do
	ns=fl-$n-$T_ID
	mac_var=MAC_${n^^}
	# Created inside the bridge namespace, the peer moved straight into the
	# node: the machine's own namespace never sees the devices.
	t_check ns_exec "$NS_BR" ip link add "v$n" type veth peer name eth0 netns "$ns"
	ns_exec "$NS_BR" ip link set "v$n" master br0 up
	ns_exec "$ns" ip link set lo up
	ns_exec "$ns" ip link set eth0 address "${!mac_var}" up
	ns_exec "$ns" ip addr add "10.78.0.$i/24" dev eth0
	ns_exec "$ns" ip addr add "fd78::$i/64" dev eth0 nodad
	i=$((i + 1))
done
ns_exec "$NS_S" ip addr add "$JOB4/24" dev eth0
ns_exec "$NS_S" ip addr add "$JOB4B/24" dev eth0
agent p_ping "$NS_P" python3 -u "$AGENT"
ask p_ping ping "$JOB4" 5
ask p_ping ping "$JOB4B" 5

# ---- (a) only connection attempts frozen on S ----
agent s_tcp "$NS_S" python3 -u "$AGENT"
agent p_tcp "$NS_P" python3 -u "$AGENT"
agent p_new "$NS_P" python3 -u "$AGENT"
ask s_tcp tcp_listen "$JOB4" 7000
ask p_tcp tcp_connect "$JOB4" 7000
ask s_tcp tcp_accept

lock s_lock "$NS_S" --capture
ask s_lock flow tcp "$JOB4" 7000 - -
ask s_lock freeze_syn
ask p_new tcp_connect_start "$JOB4" 7000
new_port=${ANS#ok }
ask s_lock wait 1 10
# The established connection on the same port, both ways, meanwhile.
ask p_tcp send 1000
ask s_tcp recv_exact 1000 5
ask s_tcp send 700
ask p_tcp recv_exact 700 5
ask p_tcp send 1
ask s_tcp recv_exact 1 5
ask s_tcp tcp_accept_none
pending "$NS_S" "$JOB4" 7000
expect "no handshake begun on S" '^pending 0$'
ask s_lock collect "$T_DIR/syn.img"
# Only SYNs: P retransmits its SYN (1 s, 3 s), 60 bytes each (IPv4 20 +
# TCP 20 + options 20); a data segment of the established connection in the
# capture would add its payload.
[[ $ANS =~ flow0=([0-9]+)\ packets=([0-9]+)\ ipbytes=([0-9]+)\ unmatched=0\ image=0 ]] ||
	t_fail "SYN capture: $ANS"
n_syn=${BASH_REMATCH[1]}
[ "$n_syn" -ge 1 ] && [ "$n_syn" -le 3 ] && [ "${BASH_REMATCH[3]}" = $((n_syn * 60)) ] ||
	t_fail "expected 1-3 SYNs of 60 bytes captured, got: $ANS"

# ---- (b) the SYN replayed on D, the address moved, P's connect completes ----
t_check ns_exec "$NS_S" "$FLOW_CTL" addr release eth0 "$JOB4/24"
lock d_lock "$NS_D" --pass-local
ask d_lock flow tcp "$JOB4" 7000 - -
ask d_lock freeze
t_check ns_exec "$NS_D" "$FLOW_CTL" addr add eth0 "$JOB4/24"
agent d_tcp "$NS_D" python3 -u "$AGENT"
ask d_tcp tcp_listen "$JOB4" 7000
pending "$NS_D" "$JOB4" 7000
expect "no handshake on D before the replay" '^pending 0$'
out=$(ns_exec "$NS_D" "$FLOW_CTL" replay "$T_DIR/syn.img") || t_fail "replay failed: $out"
[ "$out" = "replayed $n_syn" ] || t_fail "replay: $out"
# The replayed SYN made the request socket (its SYN-ACK went out to the
# wire and was dropped by D's lock: nothing reached P yet).
pending "$NS_D" "$JOB4" 7000
expect "the replayed SYN began a handshake on D" '^pending 1$'
ask d_lock quit
t_check ns_exec "$NS_D" "$FLOW_CTL" addr announce eth0 "$JOB4/24"
ask p_new tcp_connect_wait 15
ask d_tcp tcp_accept
expect "D accepted P's connection" "^ok $PEER4 $new_port\$"
ask p_new send 1234
ask d_tcp recv_exact 1234 5
ask d_tcp send 4321
ask p_new recv_exact 4321 5
pending "$NS_D" "$JOB4" 7000
expect "no handshake left on D" '^pending 0$'
ask s_lock quit

# ---- (c) handshakes in progress ----
agent s_h4 "$NS_S" python3 -u "$AGENT"
agent s_h6 "$NS_S" python3 -u "$AGENT"
agent p_h4 "$NS_P" python3 -u "$AGENT"
agent p_h6 "$NS_P" python3 -u "$AGENT"
ask s_h4 tcp_listen 10.78.0.1 7100
ask s_h6 tcp_listen fd78::1 7101
# P's final ACK of the handshake (and anything else without SYN, FIN, RST)
# to those ports never leaves P: P believes itself connected, S keeps a
# request socket in SYN_RECV.
t_check ns_exec "$NS_P" nft -f - <<NFT
table inet hold {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp dport { 7100, 7101 } tcp flags & (syn | fin | rst | ack) == ack drop
	}
}
NFT
ask p_h4 tcp_connect 10.78.0.1 7100
ask p_h6 tcp_connect fd78::1 7101
pending "$NS_S" 10.78.0.1 7100
expect "IPv4 handshake pending" '^pending 1$'
pending "$NS_S" fd78::1 7101
expect "IPv6 handshake pending" '^pending 1$'
pending "$NS_S" 0.0.0.0 7100
expect "IPv4 wildcard listener's handshakes" '^pending 1$'
pending "$NS_S" :: 7100
expect "IPv6 wildcard listener counts IPv4 handshakes" '^pending 1$'
pending "$NS_S" ::ffff:10.78.0.1 7100
expect "v4-mapped listener counts IPv4 handshakes" '^pending 1$'
pending "$NS_S" :: 7101
expect "IPv6 wildcard listener's own handshakes" '^pending 1$'
pending "$NS_S" 10.78.0.1 7101
expect "other address family" '^pending 0$'
pending "$NS_S" 10.78.0.1 7102
expect "other port" '^pending 0$'
pending "$NS_S" 10.78.0.2 7100
expect "other address" '^pending 0$'
ask s_h4 tcp_accept_none
ask s_h6 tcp_accept_none
t_check ns_exec "$NS_P" nft delete table inet hold
# P's first data segment carries the ACK that completes the handshake.
ask p_h4 send 10
ask p_h6 send 10
ask s_h4 tcp_accept
ask s_h6 tcp_accept
ask s_h4 recv_exact 10 5
ask s_h6 recv_exact 10 5
pending "$NS_S" 10.78.0.1 7100
expect "IPv4 handshake completed" '^pending 0$'
pending "$NS_S" fd78::1 7101
expect "IPv6 handshake completed" '^pending 0$'

# ---- (d) capture on D too ----
agent s_u "$NS_S" python3 -u "$AGENT"
agent p_u "$NS_P" python3 -u "$AGENT"
ask s_u udp_bind "$JOB4B" 9000
ask p_u udp_bind "$PEER4" 0
lock s_lock2 "$NS_S" --capture
ask s_lock2 flow udp "$JOB4B" 9000 - -
ask s_lock2 freeze
ask p_u udp_send "$JOB4B" 9000 100 1000 0
ask s_lock2 wait 100 10
ask s_lock2 collect "$T_DIR/udp_s.img"
expect "S captured every datagram" ' flow0=100 packets=100 .*unmatched=0 image=0 '
t_check ns_exec "$NS_S" "$FLOW_CTL" addr release eth0 "$JOB4B/24"

lock d_lock2 "$NS_D" --capture --pass-local
ask d_lock2 flow udp "$JOB4B" 9000 - -
ask d_lock2 freeze
t_check ns_exec "$NS_D" "$FLOW_CTL" addr take eth0 "$JOB4B/24"
# Announced: P's datagrams now reach D, before D's socket exists.
ask p_u udp_send "$JOB4B" 9000 50 1000 100
ask d_lock2 wait 50 10
agent d_u "$NS_D" python3 -u "$AGENT"
ask d_u udp_bind "$JOB4B" 9000
# While the socket exists but the lock holds, more arrive: captured too.
ask p_u udp_send "$JOB4B" 9000 30 1000 150
ask d_lock2 wait 80 10
ask d_u udp_pending
expect "D's lock kept the wire from the socket" '^ok 0$'
out=$(ns_exec "$NS_D" "$FLOW_CTL" replay "$T_DIR/udp_s.img") || t_fail "replay of S's capture failed: $out"
[ "$out" = "replayed 100" ] || t_fail "replay of S's capture: $out"
ask d_lock2 collect "$T_DIR/udp_d.img"
expect "D captured exactly the wire's datagrams, not the replay" ' flow0=80 packets=80 .*unmatched=0 image=0 '
out=$(ns_exec "$NS_D" "$FLOW_CTL" replay "$T_DIR/udp_d.img") || t_fail "replay of D's capture failed: $out"
[ "$out" = "replayed 80" ] || t_fail "replay of D's capture: $out"
ask d_lock2 unlock
ask d_lock2 collect "$T_DIR/udp_d2.img"
expect "nothing arrived between the last collect and the unlock" ' packets=0 '
ask d_u udp_recv 180 10
expect "every datagram on D, in order, from P" "^ok n=180 first=0 last=179 inorder=1 srcs=${PEER4//./\\.}\$"
ask p_u udp_send "$JOB4B" 9000 5 1000 180
ask d_u udp_recv 5 5
expect "the wire reaches D's socket after the unlock" "^ok n=5 first=180 last=184 inorder=1 "
ask d_lock2 quit
ask s_lock2 quit

# ---- (e) IPv6 and wildcard listeners, thaw_syn ----
agent s_w "$NS_S" python3 -u "$AGENT"
agent s_6 "$NS_S" python3 -u "$AGENT"
ask s_w tcp_listen :: 7200
ask s_6 tcp_listen fd78::1 7201
lock s_lock3 "$NS_S" --capture
ask s_lock3 flow tcp :: 7200 - -
ask s_lock3 flow tcp fd78::1 7201 - -
ask s_lock3 freeze_syn
ask_err s_lock3 freeze_syn '^error cannot freeze connection attempts to flow tcp \[(::\]:7200|fd78::1\]:7201) .*already frozen'
lock s_lock4 "$NS_S"
ask s_lock4 flow tcp fd78::1 7300 - -
ask_err s_lock4 thaw_syn '^error cannot thaw connection attempts to flow tcp \[fd78::1\]:7300 .*not frozen'
ask s_lock4 flow udp fd78::1 7301 - -
ask_err s_lock4 freeze_syn '^error cannot freeze connection attempts to flow udp .*not a TCP listener'
ask s_lock4 quit
for k in 1 2 3; do agent "p_c$k" "$NS_P" python3 -u "$AGENT"; done
ask p_c1 tcp_connect_start fd78::1 7200
ask p_c2 tcp_connect_start 10.78.0.1 7200
ask p_c3 tcp_connect_start fd78::1 7201
ask s_lock3 wait 3 10
ask s_lock3 collect "$T_DIR/syn_e.img"
expect "IPv4 and IPv6 SYNs to the wildcard, IPv6 SYN to the address" ' flow0=[2-6] flow1=[1-3] .*unmatched=0 '
ask s_w tcp_accept_none
ask s_6 tcp_accept_none
ask s_lock3 thaw_syn
for k in 1 2 3; do ask "p_c$k" tcp_connect_wait 15; done
ask s_w tcp_accept
ask s_w tcp_accept
ask s_6 tcp_accept
ask s_lock3 quit
for ns in "$NS_S" "$NS_D"; do
	[ -z "$(ns_exec "$ns" nft list tables)" ] || t_fail "table left behind in $ns: $(ns_exec "$ns" nft list ruleset)"
done

t_pass
