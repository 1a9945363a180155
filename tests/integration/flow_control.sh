#!/bin/bash
# Flow control on a segment of three nodes S, D, P (peer) joined by a bridge,
# each a network namespace of this test's own:
#
#   (a) a freeze drops a TCP connection's packets in both directions; thaw
#       restores it and no byte is lost
#   (b) the capture holds every datagram P sent during the freeze (IPv4 and
#       IPv6, 1 kHz for 500 ms), count and bytes
#   (c) replayed on D, they reach D's socket in order with P's source
#       address, while D's lock keeps the wire away from the flow
#   (d) address move: P's neighbour table shows D's MAC at once (v4 and v6)
#       and P reaches the address on D
#   (e) 1,000 flows frozen and thawed in one batch each (times printed), a
#       sample of them really dropped, a flow outside the set untouched
. "$(dirname "$0")/../lib.sh"
t_init

FLOW_CTL=$T_PROGS/flow_ctl
AGENT=$T_ROOT/tests/integration/flow_agent.py
[ -x "$FLOW_CTL" ] || t_fail "$FLOW_CTL is not built"

NS_BR=flow-br-$T_ID
NS_S=flow-s-$T_ID
NS_D=flow-d-$T_ID
NS_P=flow-p-$T_ID
MAC_S=02:77:00:00:00:01
MAC_D=02:77:00:00:00:02
MAC_P=02:77:00:00:00:03
JOB4=10.77.0.100
JOB6=fd77::100

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

expect() { # what regex
	[[ $ANS =~ $2 ]] || t_fail "$1: expected /$2/, got: $ANS"
}

ns_exec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- topology ----
ip netns add "$NS_BR" || t_fail "cannot create namespaces"
for ns in "$NS_S" "$NS_D" "$NS_P"; do ip netns add "$ns"; done
ns_exec "$NS_BR" ip link set lo up
ns_exec "$NS_BR" ip link add br0 type bridge
ns_exec "$NS_BR" ip link set br0 up
i=1
for n in s d p; do
	ns=flow-$n-$T_ID
	mac_var=MAC_${n^^}
	# Created inside the bridge namespace, the peer moved straight into the
	# node: the machine's own namespace never sees the devices.
	t_check ns_exec "$NS_BR" ip link add "v$n" type veth peer name eth0 netns "$ns"
	ns_exec "$NS_BR" ip link set "v$n" master br0 up
	ns_exec "$ns" ip link set lo up
	ns_exec "$ns" ip link set eth0 address "${!mac_var}" up
	ns_exec "$ns" ip addr add "10.77.0.$i/24" dev eth0
	ns_exec "$ns" ip addr add "fd77::$i/64" dev eth0 nodad
	i=$((i + 1))
done
ns_exec "$NS_S" ip addr add "$JOB4/24" dev eth0
ns_exec "$NS_S" ip addr add "$JOB6/64" dev eth0 nodad
agent p_ping "$NS_P" python3 -u "$AGENT"
ask p_ping ping "$JOB4" 5
ask p_ping ping "$JOB6" 5

# ---- (a) TCP freeze, both directions ----
agent s_tcp "$NS_S" python3 -u "$AGENT"
agent p_tcp "$NS_P" python3 -u "$AGENT"
ask s_tcp tcp_listen "$JOB4" 7000
ask p_tcp tcp_connect "$JOB4" 7000
pport=${ANS#ok }
ask s_tcp tcp_accept
ask p_tcp send 1000
ask s_tcp recv_exact 1000 5

agent s_lock "$NS_S" "$FLOW_CTL" lock --capture
IFS= read -r -t 10 -u "${A_R[s_lock]}" ANS || t_fail "flow_ctl lock did not start"
ask s_lock flow tcp "$JOB4" 7000 10.77.0.3 "$pport"
ask s_lock freeze
ask s_tcp send 300
ask p_tcp send 500
# P's segment, then its retransmission (RTO >= 200 ms), both captured: by
# then S's 300 bytes went out (and were dropped) long ago.
ask s_lock wait 2 10
ask s_tcp inq
expect "inbound TCP dropped during freeze" '^ok 0$'
ask p_tcp inq
expect "outbound TCP dropped during freeze" '^ok 0$'
ask s_lock collect "$T_DIR/tcp.img"
expect "TCP segments captured with their ACK" 'flow0=[0-9]+\+ack'
ask s_lock thaw
ask p_tcp recv_exact 300 10
ask s_tcp recv_exact 500 10
ask s_lock quit

# ---- (b) capture of every datagram P sends during a freeze ----
agent s_u4 "$NS_S" python3 -u "$AGENT"
agent s_u6 "$NS_S" python3 -u "$AGENT"
agent p_u4 "$NS_P" python3 -u "$AGENT"
agent p_u6 "$NS_P" python3 -u "$AGENT"
ask s_u4 udp_bind "$JOB4" 9000
ask s_u6 udp_bind "$JOB6" 9001
ask p_u4 udp_bind 10.77.0.3 0
ask p_u6 udp_bind fd77::3 0
ask p_u4 udp_send "$JOB4" 9000 1 1000 100000
ask s_u4 udp_recv 1 5
expect "UDP before freeze" 'n=1 first=100000'

agent s_lock2 "$NS_S" "$FLOW_CTL" lock --capture
IFS= read -r -t 10 -u "${A_R[s_lock2]}" ANS || t_fail "flow_ctl lock did not start"
ask s_lock2 flow udp "$JOB4" 9000 - -
ask s_lock2 flow udp "$JOB6" 9001 - -
ask s_lock2 freeze
# Both senders at once, 1 kHz each, for 500 ms and 200 ms.
echo "udp_send $JOB4 9000 500 1000" >&"${A_W[p_u4]}"
echo "udp_send $JOB6 9001 200 1000" >&"${A_W[p_u6]}"
IFS= read -r -t 30 -u "${A_R[p_u4]}" ANS && [[ $ANS == "ok sent 500" ]] || t_fail "p_u4 send: $ANS"
IFS= read -r -t 30 -u "${A_R[p_u6]}" ANS && [[ $ANS == "ok sent 200" ]] || t_fail "p_u6 send: $ANS"
ask s_lock2 wait 700 10
ask s_u4 udp_pending
expect "no IPv4 datagram delivered on S during the freeze" '^ok 0$'
ask s_u6 udp_pending
expect "no IPv6 datagram delivered on S during the freeze" '^ok 0$'
ask s_lock2 collect "$T_DIR/udp.img"
want4=0
for ((k = 0; k < 500; k++)); do want4=$((want4 + 20 + 8 + ${#k} + 5 + 100)); done
want6=0
for ((k = 0; k < 200; k++)); do want6=$((want6 + 40 + 8 + ${#k} + 5 + 100)); done
expect "every datagram captured" "flow0=500 flow1=200 packets=700 ipbytes=$((want4 + want6)) unmatched=0 image=0 "

# ---- (c) replay on D, D blocked from the wire ----
agent d_lock "$NS_D" "$FLOW_CTL" lock --pass-local
IFS= read -r -t 10 -u "${A_R[d_lock]}" ANS || t_fail "flow_ctl lock did not start on D"
ask d_lock flow udp "$JOB4" 9000 - -
ask d_lock flow udp "$JOB6" 9001 - -
ask d_lock freeze
t_check ns_exec "$NS_D" "$FLOW_CTL" addr add eth0 "$JOB4/24"
t_check ns_exec "$NS_D" "$FLOW_CTL" addr add eth0 "$JOB6/64"
agent d_u4 "$NS_D" python3 -u "$AGENT"
agent d_u6 "$NS_D" python3 -u "$AGENT"
ask d_u4 udp_bind "$JOB4" 9000
ask d_u6 udp_bind "$JOB6" 9001
out=$(ns_exec "$NS_D" "$FLOW_CTL" replay "$T_DIR/udp.img") || t_fail "replay failed: $out"
[ "$out" = "replayed 700" ] || t_fail "replay: $out"
ask d_u4 udp_recv 500 10
expect "IPv4 replay on D" '^ok n=500 first=0 last=499 inorder=1 srcs=10\.77\.0\.3$'
ask d_u6 udp_recv 200 10
expect "IPv6 replay on D" '^ok n=200 first=0 last=199 inorder=1 srcs=fd77::3$'

# ---- (d) address move ----
neigh() { ns_exec "$NS_P" ip neigh show "$1" dev eth0; }
[[ $(neigh $JOB4) == *"lladdr $MAC_S"* ]] || t_fail "P's neighbour entry for $JOB4 is not S's MAC: $(neigh $JOB4)"
[[ $(neigh $JOB6) == *"lladdr $MAC_S"* ]] || t_fail "P's neighbour entry for $JOB6 is not S's MAC: $(neigh $JOB6)"
t_check ns_exec "$NS_S" "$FLOW_CTL" addr release eth0 "$JOB4/24"
t_check ns_exec "$NS_S" "$FLOW_CTL" addr release eth0 "$JOB6/64"
t_check ns_exec "$NS_D" "$FLOW_CTL" addr take eth0 "$JOB4/24"
t_check ns_exec "$NS_D" "$FLOW_CTL" addr take eth0 "$JOB6/64"
# The announcements are on the wire when take returns; P handles them
# before the next packet it receives: the ping's reply.
ask p_ping ping 10.77.0.2 5
ask p_ping ping fd77::2 5
t_log "P: $(neigh $JOB4) / $(neigh $JOB6)"
[[ $(neigh $JOB4) == *"lladdr $MAC_D"* ]] || t_fail "P did not learn D's MAC for $JOB4: $(neigh $JOB4)"
[[ $(neigh $JOB6) == *"lladdr $MAC_D"* ]] || t_fail "P did not learn D's MAC for $JOB6: $(neigh $JOB6)"

# D's lock still keeps the wire away: P's datagrams now reach D (the ping
# after them proves it) but not the socket.
ask p_u4 udp_send "$JOB4" 9000 5 1000 1000
ask p_u6 udp_send "$JOB6" 9001 5 1000 1000
ask p_ping ping "$JOB4" 5
ask p_ping ping "$JOB6" 5
ask d_u4 udp_pending
expect "D's lock drops IPv4 from the wire" '^ok 0$'
ask d_u6 udp_pending
expect "D's lock drops IPv6 from the wire" '^ok 0$'
ask d_lock quit
ask p_u4 udp_send "$JOB4" 9000 5 1000 2000
ask p_u6 udp_send "$JOB6" 9001 5 1000 2000
ask d_u4 udp_recv 5 5
expect "IPv4 to the moved address after unlock" '^ok n=5 first=2000 last=2004 inorder=1 srcs=10\.77\.0\.3$'
ask d_u6 udp_recv 5 5
expect "IPv6 to the moved address after unlock" '^ok n=5 first=2000 last=2004 inorder=1 srcs=fd77::3$'
ask s_lock2 quit

# ---- (e) 1,000 flows ----
agent s_e "$NS_S" python3 -u "$AGENT"
ask s_e udp_bind 10.77.0.1 9100
agent s_lock3 "$NS_S" "$FLOW_CTL" lock --capture
IFS= read -r -t 10 -u "${A_R[s_lock3]}" ANS || t_fail "flow_ctl lock did not start"
ask s_lock3 gen 1000 udp 10.77.0.1 9100 10.77.0.3 40000
ask s_lock3 freeze
echo "freeze: $ANS"
for sp in 40000 40499 40999; do ask p_u4 udp_sendfrom 10.77.0.3 $sp 10.77.0.1 9100 1 $sp; done
ask s_lock3 wait 3 5
ask p_u4 udp_sendfrom 10.77.0.3 41500 10.77.0.1 9100 1 41500
ask s_e udp_recv 1 5
expect "only the flow outside the set arrives" '^ok n=1 first=41500 '
ask s_e udp_pending
expect "no frozen flow delivered" '^ok 0$'
ask s_lock3 thaw
echo "thaw: $ANS"
ask p_u4 udp_sendfrom 10.77.0.3 40499 10.77.0.1 9100 1 7
ask s_e udp_recv 1 5
expect "thawed flow delivered" '^ok n=1 first=7 '
for n in 1 100 1000; do
	ask s_lock3 bench $n
	echo "$ANS"
done
ask s_lock3 quit
[ -z "$(ns_exec "$NS_S" nft list tables)" ] || t_fail "table left behind: $(ns_exec "$NS_S" nft list ruleset)"

t_pass
