#!/bin/bash
# Flow routes (include/sockmig/route.h, docs/flow-routes.md) with real
# traffic in a lab of four nodes. n1 is the home node: the moved sockets
# keep its address 198.18.0.1 (bound with IP_TRANSPARENT where they are
# now); n4 is the peer. Every exchange is checked byte for byte by both
# ends (tests/integration/lib/route_peer.py), and every route is set
# through the library (tests/progs/route_ctl).
#
#   (1) forward: n1 forwards a listener's flows to n2 (accept there); then
#       to n3; then nowhere. A connected flow (4-tuple) is forwarded and
#       its neighbour port is not. IPv6 once.
#   (2) rewrite: n4's client and n2's server talk straight, node address
#       to node address; n1 sees none of their packets. Then the client
#       end moves too (to n3, still bound to 198.18.0.4): n3 <-> n2, and
#       neither n1 nor n4 sees a packet.
#   (3) list returns exactly what was set; a del of
#       what is not there fails and names the flow; flush leaves no table,
#       policy rule or route.
#   (4) UDP: one forward, one rewrite, datagrams checked; a move's replayed
#       packet and re-injected datagram reach a socket bound to the home
#       address (their sockets carry the mark).
#   and the time of a set call with 1,000 flows (printed, not judged).
. "$(dirname "$0")/../lib.sh"
t_init

RC=$T_PROGS/route_ctl
PEER=(python3 "$T_ROOT/tests/integration/lib/route_peer.py")
[ -x "$RC" ] || t_fail "$RC is not built"
H4=198.18.0.1 # n1: the home address that the moved sockets keep
H6=2001:2::1
TABLE=20672   # SOCKMIG_ROUTE_TABLE
MARK=0x50c00000

t_lab_up 4

# rc NODE ARGS...: route_ctl in NODE, which must print "ok".
rc() {
	local node=$1 out
	shift
	out=$(t_exec "$node" "$RC" "$@" 2>&1) || t_fail "$node: route_ctl $*: $out"
	[ "$out" = ok ] || t_fail "$node: route_ctl $*: $out"
}

# client NODE REGEX ARGS...: a route_peer client in NODE; its output must
# match REGEX (anchored).
client() {
	local node=$1 want=$2 out
	shift 2
	out=$(t_exec "$node" timeout 60 "${PEER[@]}" "$@" 2>&1)
	t_log "$node: ${*} -> $out"
	[[ $out =~ ^$want$ ]] || t_fail "$node: client $*: expected /$want/, got: $out"
}

# serve TAG NODE ARGS...: a route_peer server, once it listens.
serve() {
	local tag=$1 node=$2
	shift 2
	t_spawn "$tag" "$node" "${PEER[@]}" "$@"
	t_wait_line "$tag" '^listening$' 30
}

served() { grep -c '^served' "$T_DIR/$1.out"; }

expect_served() { # TAG N
	local n
	n=$(served "$1")
	[ "$n" = "$2" ] || t_fail "$1 served $n exchanges, expected $2: $(cat "$T_DIR/$1.out")"
}

# The packets an ingress counter of the watch table in NODE counted for
# the rule whose text starts with MATCH.
watched() {
	t_exec "$1" nft list chain netdev watch in |
		awk -v m="$2" 'index($0, m " counter") { for (i = 1; i <= NF; i++) if ($i == "packets") print $(i + 1) }'
}

expect_watched() { # NODE MATCH none|some
	local v
	v=$(watched "$1" "$2")
	[ -n "$v" ] || t_fail "$1: no watch counter for '$2'"
	t_log "$1: '$2' counted $v packets"
	case $3 in
	none) [ "$v" -eq 0 ] || t_fail "$1: '$2' counted $v packets, expected none" ;;
	some) [ "$v" -gt 0 ] || t_fail "$1: '$2' counted no packet" ;;
	esac
}

# Watch what reaches n1 and n4 at all: netdev ingress, before anything else
# (also frames a bridge would flood to a port that is not theirs).
cat >"$T_DIR/watch.nft" <<'EOF'
table netdev watch {
	chain in {
		type filter hook ingress device "eth0" priority -1000; policy accept;
		tcp dport 7100 counter
		tcp dport 7400 counter
		tcp sport 7400 counter
		tcp sport 40401 counter
		tcp dport 40401 counter
		udp dport 7600 counter
		udp sport 7600 counter
	}
}
EOF
t_check t_exec n1 nft -f "$T_DIR/watch.nft"
t_check t_exec n4 nft -f "$T_DIR/watch.nft"

# ---- (1) forward ----
serve s2 n2 tcp-serve n2 "$H4" 7100
rc n2 accept-set eth0 tcp "$H4" 7100 - -
rc n1 forward-set eth0 tcp "$H4" 7100 - - 198.18.0.2
client n4 'ok server=n2 bytes=100000' tcp-client "$H4" 7100
expect_served s2 1
grep -q '^served n2 peer=198.18.0.4:' "$T_DIR/s2.out" || t_fail "n2 did not see the peer's own address: $(cat "$T_DIR/s2.out")"
expect_watched n1 "tcp dport 7100" some

# The process moves on to n3: the rule is replaced, not chained.
serve s3 n3 tcp-serve n3 "$H4" 7100
rc n3 accept-set eth0 tcp "$H4" 7100 - -
rc n1 forward-set eth0 tcp "$H4" 7100 - - 198.18.0.3
client n4 'ok server=n3 bytes=100000' tcp-client "$H4" 7100
expect_served s3 1
expect_served s2 1

# No forward: n1 has no such socket and answers with a reset.
rc n1 forward-del eth0 tcp "$H4" 7100 - -
client n4 refused tcp-client "$H4" 7100
expect_served s2 1
expect_served s3 1

# A connected flow: only its 4-tuple is forwarded.
serve s2c n2 tcp-serve n2 "$H4" 7200
rc n2 accept-set eth0 tcp "$H4" 7200 198.18.0.4 40200
rc n1 forward-set eth0 tcp "$H4" 7200 198.18.0.4 40200 198.18.0.2
client n4 'ok server=n2 bytes=100000' tcp-client "$H4" 7200 --bind 198.18.0.4:40200
client n4 refused tcp-client "$H4" 7200 --bind 198.18.0.4:40201
expect_served s2c 1

# IPv6
serve s2v6 n2 tcp-serve n2 "$H6" 7300
rc n2 accept-set eth0 tcp "$H6" 7300 - -
rc n1 forward-set eth0 tcp "$H6" 7300 - - 2001:2::2
client n4 'ok server=n2 bytes=100000' tcp-client "$H6" 7300
expect_served s2v6 1

# ---- (2) rewrite ----
serve s2r n2 tcp-serve n2 "$H4" 7400
rc n4 rewrite-set eth0 tcp 198.18.0.4 40400 "$H4" 7400 198.18.0.4 198.18.0.2
rc n2 rewrite-set eth0 tcp "$H4" 7400 198.18.0.4 40400 198.18.0.2 198.18.0.4
client n4 'ok server=n2 bytes=100000' tcp-client "$H4" 7400 --bind 198.18.0.4:40400
expect_served s2r 1
expect_watched n1 "tcp dport 7400" none
expect_watched n1 "tcp sport 7400" none

# Both ends moved: the client's socket is on n3, still 198.18.0.4:40401.
rc n3 rewrite-set eth0 tcp 198.18.0.4 40401 "$H4" 7400 198.18.0.3 198.18.0.2
rc n2 rewrite-set eth0 tcp "$H4" 7400 198.18.0.4 40401 198.18.0.2 198.18.0.3
client n3 'ok server=n2 bytes=100000' tcp-client "$H4" 7400 --bind 198.18.0.4:40401
expect_served s2r 2
grep -q '^served n2 peer=198.18.0.4:40401 ' "$T_DIR/s2r.out" ||
	t_fail "n2's socket did not see the flow in socket terms: $(cat "$T_DIR/s2r.out")"
expect_watched n1 "tcp dport 7400" none
expect_watched n1 "tcp sport 7400" none
expect_watched n4 "tcp sport 40401" none
expect_watched n4 "tcp dport 40401" none

# ---- (4) UDP ----
serve u2 n2 udp-serve n2 "$H4" 7500
rc n2 accept-set eth0 udp "$H4" 7500 - -
rc n1 forward-set eth0 udp "$H4" 7500 - - 198.18.0.2
client n4 'ok server=n2 datagrams=20' udp-client "$H4" 7500 --count 20

serve u2r n2 udp-serve n2 "$H4" 7600
rc n4 rewrite-set eth0 udp 198.18.0.4 40600 "$H4" 7600 198.18.0.4 198.18.0.2
rc n2 rewrite-set eth0 udp "$H4" 7600 198.18.0.4 40600 198.18.0.2 198.18.0.4
client n4 'ok server=n2 datagrams=20' udp-client "$H4" 7600 --bind 198.18.0.4:40600 --count 20
expect_watched n1 "udp dport 7600" none
expect_watched n1 "udp sport 7600" none

# Replayed packets (raw socket) and re-injected datagrams (transparent UDP
# sender) of a move reach a socket bound to an address that is not local
# here: their sockets carry the mark. A datagram sent first without the
# mark goes out to n1 instead and is never served on n2.
serve u2x n2 udp-serve n2 "$H4" 7700
for i in 0 1 9; do
	python3 -c 'import hashlib, sys; s = sys.argv[1].encode(); sys.stdout.buffer.write(b"SEQ " + s + b"\n" + hashlib.shake_128(b"u" + s).digest(512))' \
		"$i" >"$T_DIR/dgram$i"
done
t_check t_exec n2 python3 -c 'import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(open(sys.argv[1], "rb").read(), ("198.18.0.1", 7700))' "$T_DIR/dgram9"
rc n2 replay-udp 198.18.0.4 40700 "$H4" 7700 "$T_DIR/dgram0"
rc n2 inject-udp 198.18.0.4 40701 "$H4" 7700 "$T_DIR/dgram1"
t_wait_line u2x '^served n2 seq=0 peer=198.18.0.4:40700$' 10
t_wait_line u2x '^served n2 seq=1 peer=198.18.0.4:40701$' 10
grep -q 'seq=9' "$T_DIR/u2x.out" && t_fail "n2 served a datagram to $H4 that carried no mark"

# ---- (3) list, del, flush ----
# expect_list NODE LINES: the entries without their counts, in any order.
expect_list() {
	local node=$1 want=$2 got
	got=$(t_exec "$node" "$RC" list eth0) || t_fail "$node: route_ctl list: $got"
	t_log "$node: list:"$'\n'"$got"
	diff <(sed 's/ packets=[0-9]*$//' <<<"$got" | sort) <(sort <<<"$want") >&2 ||
		t_fail "$node: list differs from what was set (< got, > set)"
}
expect_list n1 "forward tcp $H4:7200 > 198.18.0.4:40200 via 198.18.0.2
forward tcp [$H6]:7300 via 2001:2::2
forward udp $H4:7500 via 198.18.0.2"
expect_list n2 "accept tcp $H4:7100
accept tcp $H4:7200 > 198.18.0.4:40200
accept tcp [$H6]:7300
accept udp $H4:7500
rewrite tcp $H4:7400 > 198.18.0.4:40400 own 198.18.0.2 peer 198.18.0.4
rewrite tcp $H4:7400 > 198.18.0.4:40401 own 198.18.0.2 peer 198.18.0.3
rewrite udp $H4:7600 > 198.18.0.4:40600 own 198.18.0.2 peer 198.18.0.4"
expect_list n3 "accept tcp $H4:7100
rewrite tcp 198.18.0.4:40401 > $H4:7400 own 198.18.0.3 peer 198.18.0.2"
expect_list n4 "rewrite tcp 198.18.0.4:40400 > $H4:7400 own 198.18.0.4 peer 198.18.0.2
rewrite udp 198.18.0.4:40600 > $H4:7600 own 198.18.0.4 peer 198.18.0.2"

# A del of an entry that is not there changes nothing and names the flow.
out=$(t_exec n1 "$RC" forward-del eth0 tcp "$H4" 7100 - - 2>&1) && t_fail "n1: a second forward-del succeeded: $out"
[[ $out == *"tcp $H4:7100"*"no such entry"* ]] || t_fail "n1: unclear error for a missing forward: $out"
out=$(t_exec n4 "$RC" rewrite-del eth0 tcp 198.18.0.4 40999 "$H4" 7400 2>&1) && t_fail "n4: rewrite-del of nothing succeeded"
[[ $out == *"tcp 198.18.0.4:40999 > $H4:7400"*"no such entry"* ]] || t_fail "n4: unclear error for a missing rewrite: $out"
rc n4 rewrite-del eth0 tcp 198.18.0.4 40400 "$H4" 7400
expect_list n4 "rewrite udp 198.18.0.4:40600 > $H4:7600 own 198.18.0.4 peer 198.18.0.2"
t_exec n4 nft list map inet sockmig_route rw_is4 | grep 40400 >/dev/null && t_fail "n4: a deleted rewrite left an element"

# The time of one set call with 1,000 flows of each kind (n4: its own
# elements only, deleted again by the bench).
t_exec n4 "$RC" bench eth0 1000 >"$T_DIR/bench.out" 2>&1 || t_fail "bench: $(cat "$T_DIR/bench.out")"
while read -r line; do t_log "$line"; done <"$T_DIR/bench.out"

for node in n1 n2 n3 n4; do
	rc "$node" flush
	rc "$node" flush # nothing left: still fine
	tables=$(t_exec "$node" nft list tables)
	[[ $tables == *sockmig_route* || $tables == *sockmig_fwd* ]] && t_fail "$node: tables left after flush: $tables"
	for fam in -4 -6; do
		rules=$(t_exec "$node" ip "$fam" rule show)
		[[ $rules == *"$MARK"* ]] && t_fail "$node: policy rule left after flush: $rules"
		routes=$(t_exec "$node" ip "$fam" route show table "$TABLE")
		[ -z "$routes" ] || t_fail "$node: routes left in table $TABLE after flush: $routes"
	done
done
# And the flows are gone with them: n4's datagrams reach nobody.
client n4 'timeout seq=0' udp-client "$H4" 7500 --count 1

t_pass
