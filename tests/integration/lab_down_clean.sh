#!/bin/bash
# `lab down` leaves the machine's own network namespace (links, addresses,
# routes) and `ip netns list` exactly as they were before `lab up`, removes
# the lab's record, and ends the processes still running inside its nodes.
. "$(dirname "$0")/../lib.sh"
t_init

# Everything of the machine's own network namespace, and any namespace or
# record of this test's (other tests may come and go meanwhile).
snapshot() { t_root_net_snapshot_only "sm\.$T_ID\.|$T_ID"; }
before=$(snapshot)
t_lab_up 4

[ "$(ip netns list | grep -cE "^sm\.$T_ID\.(n[1-4]|net)( |\$)")" = 5 ] || t_fail "lab up did not make 5 named namespaces: $(ip netns list)"
[ -f "/run/sockmig/labs/$T_ID/state" ] || t_fail "lab up left no record"
# Processes inside the nodes, one of them ignoring SIGTERM: down must end both.
t_spawn sleeper n1 sleep 1000
t_spawn stubborn n3 sh -c 'trap "" TERM; echo ready; while :; do sleep 1; done'
t_wait_line stubborn ready
sleeper=${T_PIDS[sleeper]} stubborn=${T_PIDS[stubborn]}

"$SOCKMIG" lab down --name "$T_ID" >"$T_DIR/down.out" 2>&1 || t_fail "lab down failed: $(cat "$T_DIR/down.out")"
T_LABS=()
for pid in "$sleeper" "$stubborn"; do
	# Our own children: reaped by wait, which returns at once if they ended.
	timeout 1 tail --pid="$pid" -f /dev/null || t_fail "process $pid inside the lab survived lab down"
done
after=$(snapshot)
if [ "$before" != "$after" ]; then
	diff <(echo "$before") <(echo "$after") >&2
	t_fail "the machine's network state differs after lab down"
fi
[ ! -e "/run/sockmig/labs/$T_ID" ] || t_fail "lab down left /run/sockmig/labs/$T_ID"
"$SOCKMIG" lab status --name "$T_ID" >/dev/null 2>&1 && t_fail "lab status still finds the lab after down"
t_pass
