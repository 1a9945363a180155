#!/bin/bash
# Socket engine, SYN_SENT: a non-blocking connect() in progress moves from
# node A to node B and completes there (IPv4 and IPv6; the SYN dropped by the
# freeze, or seen by the peer with its SYN-ACK dropped). The checks are in
# tests/progs/sockeng_syn.c.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib/sock_netns.sh"
t_init
trap 'st=$?; sn_down; (exit $st); t_cleanup' EXIT
before=$(sn_root_snapshot)

for fam in 4 6; do
	for c in unseen seen; do
		sn_up "$T_ID"
		if [ "$fam" = 6 ]; then peer=${SN_NET6}1 job=${SN_NET6}100; pfx=128; opt=nodad
		else peer=$SN_NET4.1 job=$SN_NET4.100; pfx=32; opt=; fi
		ip -n "$SN_A" addr add "$job/$pfx" dev eth0 $opt || t_fail "cannot add $job to A"
		t_log "family $fam, $c"
		"$T_PROGS/sockeng_syn" --ns-peer "$SN_P" --ns-a "$SN_A" --ns-b "$SN_B" \
			--family "$fam" --peer "$peer" --job "$job" --case "$c" >"$T_DIR/syn-$fam-$c.out" 2>&1
		status=$?
		cat "$T_DIR/syn-$fam-$c.out"
		[ $status = 0 ] || t_fail "sockeng_syn --family $fam --case $c failed"
		sn_down
	done
done

[ "$before" = "$(sn_root_snapshot)" ] || t_fail "the root network namespace changed"
t_pass
