#!/bin/bash
# Socket engine, UDP: a connected and a wildcard socket with datagrams queued
# move from node A to node B (IPv4, IPv6, dual-stack v4-mapped). The checks
# are in tests/progs/sockeng_udp.c: datagrams, order and sources received,
# options read back.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/lib/sock_netns.sh"
t_init
trap 'st=$?; sn_down; (exit $st); t_cleanup' EXIT
before=$(sn_root_snapshot)
sn_up "$T_ID"

for fam in 4 6 mapped; do
	if [ "$fam" = 6 ]; then peer=${SN_NET6}1 job=${SN_NET6}100; pfx=128; opt=nodad
	else peer=$SN_NET4.1 job=$SN_NET4.100; pfx=32; opt=; fi
	ip -n "$SN_A" addr add "$job/$pfx" dev eth0 $opt || t_fail "cannot add $job to A"
	t_log "family $fam"
	"$T_PROGS/sockeng_udp" --ns-peer "$SN_P" --ns-a "$SN_A" --ns-b "$SN_B" \
		--family "$fam" --peer "$peer" --job "$job" >"$T_DIR/udp-$fam.out" 2>&1
	status=$?
	cat "$T_DIR/udp-$fam.out"
	[ $status = 0 ] || t_fail "sockeng_udp --family $fam failed"
	ip -n "$SN_B" addr del "$job/$pfx" dev eth0
	# each run proves itself on fresh counters
	sn_down; sn_up "$T_ID"
done

sn_down
[ "$before" = "$(sn_root_snapshot)" ] || t_fail "the root network namespace changed"
t_pass
