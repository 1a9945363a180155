#!/bin/bash
# `lab down` cleans up after a `lab up` that was killed at any step (fault
# injection: SOCKMIG_LAB_CRASH_AFTER=K makes up SIGKILL itself after K
# creation steps), and after a crash between creating a namespace's file and
# mounting it. Each time nothing is left and the machine is as before.
. "$(dirname "$0")/../lib.sh"
t_init
# Everything of the machine's own network namespace, and anything of ours.
snapshot() { t_root_net_snapshot_only "sm\.$T_ID|$T_ID"; }
before=$(snapshot)
# 3 nodes: record, wire namespace, bridge, 3 x (namespace, veth, addresses), done = 13.
for k in $(seq 1 13); do
	lab=${T_ID}k$k
	T_LABS+=("$lab")
	SOCKMIG_LAB_CRASH_AFTER=$k "$SOCKMIG" lab up --nodes 3 --name "$lab" >/dev/null 2>&1
	status=$?
	[ "$status" = 137 ] || t_fail "lab up with SOCKMIG_LAB_CRASH_AFTER=$k ended with $status, not SIGKILL"
	[ -d "/run/sockmig/labs/$lab" ] || t_fail "crash after step $k left no record"
	err=$("$SOCKMIG" lab up --nodes 3 --name "$lab" 2>&1) && t_fail "lab up over a crashed lab succeeded"
	grep -q "already exists" <<<"$err" || t_fail "lab up over a crashed lab: $err"
	"$SOCKMIG" lab down --name "$lab" >"$T_DIR/down.out" 2>&1 ||
		t_fail "lab down after a crash at step $k failed: $(cat "$T_DIR/down.out")"
	unset 'T_LABS[-1]'
	[ "$(snapshot)" = "$before" ] || t_fail "lab down after a crash at step $k left something: $(diff <(echo "$before") <(snapshot))"
done
# Past the last step: up completes.
SOCKMIG_LAB_CRASH_AFTER=14 "$SOCKMIG" lab up --nodes 3 --name "${T_ID}k14" || t_fail "lab up with a crash point after the end failed"
T_LABS+=("${T_ID}k14")
t_exec_lab() { "$SOCKMIG" lab exec --name "${T_ID}k14" "$@"; }
out=$(t_exec_lab n3 ip -6 addr show dev eth0) && grep -q '2001:2::3/64' <<<"$out" || t_fail "the lab made with a late crash point is incomplete"

# A crash between creating /run/netns/NAME and mounting the namespace on it
# leaves a plain file (no record if the record was lost too): down removes it.
mkdir -p /run/netns
: >"/run/netns/sm.${T_ID}x.n1"
T_LABS+=("${T_ID}x")
"$SOCKMIG" lab status --name "${T_ID}x" >/dev/null || t_fail "lab status does not see a half-made lab"
"$SOCKMIG" lab down --name "${T_ID}x" || t_fail "lab down of a namespace file never mounted failed"
unset 'T_LABS[-1]'
[ ! -e "/run/netns/sm.${T_ID}x.n1" ] || t_fail "lab down left an unmounted namespace file"
t_pass
