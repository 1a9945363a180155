#!/bin/bash
# sockmigd starts inside a lab node, says it is ready, logs its start and its
# stop as key=value lines, and exits 0 on SIGTERM (and on SIGINT).
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 1

for sig in TERM INT; do
	t_spawn d n1 "$SOCKMIGD" --node n1
	t_wait_line d '^ready$' 10
	grep -qE '^ts=[0-9T:.-]+Z level=info node=n1 event=start pid=[0-9]+ version=' "$T_DIR/d.err" ||
		t_fail "no start line in the log: $(cat "$T_DIR/d.err")"
	# the daemon runs in the node's network namespace, not in ours
	pid=$(pgrep -n -f "sockmigd --node n1") || t_fail "sockmigd is not running"
	[ "$(readlink /proc/"$pid"/ns/net)" != "$(readlink /proc/self/ns/net)" ] ||
		t_fail "sockmigd runs in the machine's own network namespace"
	kill -"$sig" "$pid"
	t_wait_exit d 10
	status=$?
	[ "$status" = 0 ] || t_fail "sockmigd exited with status $status on SIG$sig"
	grep -qE "level=info node=n1 event=stop signal=" "$T_DIR/d.err" ||
		t_fail "no stop line in the log after SIG$sig: $(cat "$T_DIR/d.err")"
	: >"$T_DIR/d.err"
done

# bad usage: one sentence, non-zero exit
if "$SOCKMIGD" --bogus >/dev/null 2>"$T_DIR/bad.err"; then
	t_fail "sockmigd accepted --bogus"
fi
t_pass
