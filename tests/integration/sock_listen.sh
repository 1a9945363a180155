#!/bin/bash
# Socket engine, a TCP listener (backlog, options) moves from
# node A to node B and accepts new clients there (IPv4, IPv6). The checks
# are in tests/progs/sockeng_listen.c.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib/sock_netns.sh"
t_init
trap 'st=$?; sn_down; (exit $st); t_cleanup' EXIT
before=$(sn_root_snapshot)

for fam in 4 6; do
	for c in 1; do
		sn_up "$T_ID"
		if [ "$fam" = 6 ]; then peer=${SN_NET6}1 job=${SN_NET6}100; pfx=128; opt=nodad
		else peer=$SN_NET4.1 job=$SN_NET4.100; pfx=32; opt=; fi
		ip -n "$SN_A" addr add "$job/$pfx" dev eth0 $opt || t_fail "cannot add $job to A"
		t_log "family $fam"
		"$T_PROGS/sockeng_listen" --ns-peer "$SN_P" --ns-a "$SN_A" --ns-b "$SN_B" \
			--family "$fam" --peer "$peer" --job "$job" >"$T_DIR/listen-$fam.out" 2>&1
		status=$?
		cat "$T_DIR/listen-$fam.out"
		[ $status = 0 ] || t_fail "sockeng_listen --family $fam failed"
		sn_down
	done
done

[ "$before" = "$(sn_root_snapshot)" ] || t_fail "the root network namespace changed"
t_pass
