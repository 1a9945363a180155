#!/bin/bash
# Socket engine, half-closed TCP: CLOSE_WAIT, FIN_WAIT1, FIN_WAIT2, LAST_ACK
# and CLOSING connections with data still queued move from node A to node B
# (IPv4 and IPv6). The checks are in tests/progs/sockeng_half.c: the state
# read back, the bytes and EOFs each side receives, reset counters.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib/sock_netns.sh"
t_init
trap 'st=$?; sn_down; (exit $st); t_cleanup' EXIT
before=$(sn_root_snapshot)

for fam in 4 6; do
	for c in close_wait fin_wait1 fin_wait2 last_ack closing; do
		sn_up "$T_ID"
		if [ "$fam" = 6 ]; then peer=${SN_NET6}1 job=${SN_NET6}100; pfx=128; opt=nodad
		else peer=$SN_NET4.1 job=$SN_NET4.100; pfx=32; opt=; fi
		ip -n "$SN_A" addr add "$job/$pfx" dev eth0 $opt || t_fail "cannot add $job to A"
		t_log "family $fam, $c"
		"$T_PROGS/sockeng_half" --ns-peer "$SN_P" --ns-a "$SN_A" --ns-b "$SN_B" \
			--family "$fam" --peer "$peer" --job "$job" --case "$c" >"$T_DIR/half-$fam-$c.out" 2>&1
		status=$?
		cat "$T_DIR/half-$fam-$c.out"
		[ $status = 0 ] || t_fail "sockeng_half --family $fam --case $c failed"
		sn_down
	done
done

[ "$before" = "$(sn_root_snapshot)" ] || t_fail "the root network namespace changed"
t_pass
