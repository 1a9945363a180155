#!/bin/bash
# `lab up` makes the lab a cluster: a fresh secret (mode 0600), a config per
# node, and a sockmigd running inside each node's network namespace; `lab
# exec` points SOCKMIG_CONFIG at the node's config; a daemon that stops
# (SIGTERM) removes its control socket and is seen down by the others; `lab
# down` ends the daemons and leaves nothing; a daemon that cannot start fails
# `lab up` with a sentence and leaves no lab.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 2
LABDIR=/run/sockmig/labs/$T_LAB

[ "$(stat -c %a "$LABDIR/secret")" = 600 ] || t_fail "the lab's secret is not mode 0600"
grep -qE '^[0-9a-f]{64}$' "$LABDIR/secret" || t_fail "the lab's secret is not 64 hex digits"
pids=()
for i in 1 2; do
	grep -qx "node n$i" "$LABDIR/n$i.conf" || t_fail "n$i.conf: $(cat "$LABDIR/n$i.conf")"
	pid=$(grep -oE 'event=start pid=[0-9]+' "$LABDIR/n$i.log" | head -1 | cut -d= -f3)
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || t_fail "no sockmigd running for n$i: $(cat "$LABDIR/n$i.log")"
	[ "$(readlink /proc/"$pid"/ns/net)" = "$(t_exec n$i readlink /proc/self/ns/net)" ] ||
		t_fail "the sockmigd of n$i is not in n$i's network namespace"
	[ -S "$LABDIR/n$i.sock" ] || t_fail "no control socket for n$i"
	pids+=("$pid")
	[ "$(t_exec n$i sh -c 'echo "$SOCKMIG_CONFIG"')" = "$LABDIR/n$i.conf" ] ||
		t_fail "lab exec does not set SOCKMIG_CONFIG for n$i"
done

# n2's daemon stops: clean exit, socket gone, n1 sees it down
kill -TERM "${pids[1]}"
timeout 10 tail --pid="${pids[1]}" -f /dev/null || t_fail "sockmigd of n2 did not stop on SIGTERM"
grep -qE 'level=info node=n2 event=stop signal=' "$LABDIR/n2.log" || t_fail "n2 logged no stop"
[ ! -e "$LABDIR/n2.sock" ] || t_fail "the stopped daemon left its control socket"
out=$(t_exec n1 "$SOCKMIG" nodes --json) || t_fail "nodes on n1: $out"
grep -qE '"name":"n2",[^}]*"state":"down","error":"cannot connect to node .n2. at 198\.18\.0\.2:7890: Connection refused"' <<<"$out" ||
	t_fail "n1 does not see n2 down: $out"
out=$(t_exec n2 "$SOCKMIG" nodes 2>&1) && t_fail "nodes on n2 without its daemon succeeded: $out"
grep -q "no sockmigd answers on $LABDIR/n2.sock" <<<"$out" || t_fail "nodes without a daemon: $out"

# down ends the other one and removes everything
"$SOCKMIG" lab down --name "$T_LAB" >"$T_DIR/down.out" 2>&1 || t_fail "lab down: $(cat "$T_DIR/down.out")"
T_LABS=()
timeout 10 tail --pid="${pids[0]}" -f /dev/null || t_fail "lab down left the sockmigd of n1 running"
[ ! -e "$LABDIR" ] || t_fail "lab down left $LABDIR"

# a daemon that cannot start: up fails and leaves no lab
lab=${T_ID}x
T_LABS+=("$lab")
[ -n "${SOCKMIG_TEST_LABS:-}" ] && echo "$lab" >>"$SOCKMIG_TEST_LABS"
if out=$(SOCKMIGD=/bin/false "$SOCKMIG" lab up --nodes 2 --name "$lab" 2>&1); then
	t_fail "lab up with a daemon that cannot start succeeded: $out"
fi
grep -q "^sockmig: the sockmigd of node n1 did not start" <<<"$out" || t_fail "lab up's sentence: $out"
"$SOCKMIG" lab status --name "$lab" >/dev/null 2>&1 && t_fail "a failed lab up left lab $lab"
T_LABS=()
t_pass
