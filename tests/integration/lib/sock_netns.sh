# shellcheck shell=bash
# Topology of the socket engine's integration tests (sourced, not a test):
#
#     P (peer)        A (node 1)       B (node 2)
#      eth0            eth0             eth0
#        \              |              /
#         +------ br0 in S (switch) --+
#
# Nodes A and B have node addresses .2/.3; the job's address (.100) starts
# on A. Interfaces are called eth0 on both nodes so that SO_BINDTODEVICE
# survives the move. DAD is off in our namespaces (the job's v6 address moves).
# Everything is made with unique names ("sock" + test id) and removed at exit.

SN_NET4=10.77.0
SN_NET6=fd77::

sn_up() {
	local id=$1 n
	SN_P=sockP$id SN_A=sockA$id SN_B=sockB$id SN_S=sockS$id
	SN_ALL="$SN_P $SN_A $SN_B $SN_S"
	for n in $SN_ALL; do
		ip netns add "$n" || t_fail "cannot create namespace $n"
		ip -n "$n" link set lo up
	done
	ip -n "$SN_S" link add br0 type bridge
	ip -n "$SN_S" link set br0 up
	local i=1 node
	for node in $SN_P $SN_A $SN_B; do
		ip -n "$SN_S" link add "p$i" type veth peer name eth0 netns "$node"
		ip -n "$SN_S" link set "p$i" master br0 up
		ip netns exec "$node" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.eth0.accept_dad=0
		ip -n "$node" addr add "$SN_NET4.$i/24" dev eth0
		ip -n "$node" addr add "$SN_NET6$i/64" dev eth0 nodad
		ip -n "$node" link set eth0 up
		i=$((i + 1))
	done
}

sn_down() {
	local n
	for n in ${SN_ALL:-}; do
		ip netns del "$n" 2>/dev/null
	done
}

# The machine's own namespace, to prove we did not touch it. Unlike
# t_root_net_snapshot this leaves out `ip netns list`: tests of other pieces
# run in parallel and add their own namespaces.
sn_root_snapshot() {
	{
		ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | awk '{print $1, $2, $3}'
		ip -o addr show | awk '{print $2, $3, $4}'
		ip route show table all
		ip -6 route show table all
	} 2>&1 | sort
}
