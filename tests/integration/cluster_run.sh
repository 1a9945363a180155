#!/bin/bash
# `sockmig run` and `sockmig ps` on a 3-node lab: a job gets the first free
# address of the member subnet (one no member's job holds, wherever it
# runs), on the cluster interface, announced, and in its environment; it
# runs as the caller in a session of its own with its output in its log;
# names are unique in the cluster; a member's address, one outside the
# subnet, or one chosen by a non-root user are refused; a command that cannot
# run leaves nothing behind; `ps` lists the jobs (`--all`: every member's,
# a member that does not answer named on stderr); a job that ends is reaped
# and its address released.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
LABDIR=/run/sockmig/labs/$T_LAB
PEER=$T_PROGS/peer

wait_file() {
	timeout "${3:-10}" grep -m1 -qE -- "$2" <(timeout "${3:-10}" tail -n +1 -F "$1" 2>/dev/null) ||
		t_fail "no line matching '$2' in $1 within ${3:-10}s: $(tail -3 "$1" 2>&1)"
}
has_addr() { t_has_addr "$@"; }
asnobody() { t_exec "$1" setpriv --reuid nobody --regid nogroup --clear-groups "${@:2}"; }
# run NODE ARGS...: sets PID, ADDR, LOG from run's line
run() {
	local node=$1 out
	shift
	out=$(t_exec "$node" "$SOCKMIG" run "$@") || t_fail "run on $node ($*) failed: $out"
	[[ $out =~ ^started\ job\ ([^ ]+)\ \(pid\ ([0-9]+)\)\ on\ $node\ with\ address\ ([0-9.]+)/24\;\ its\ output\ goes\ to\ (.*)$ ]] ||
		t_fail "run printed: $out"
	NAME=${BASH_REMATCH[1]} PID=${BASH_REMATCH[2]} ADDR=${BASH_REMATCH[3]} LOG=${BASH_REMATCH[4]}
}

# ---- a job on n1: the first free address, in its environment, on eth0 ----
run n1 --name echo -- sh -c 'exec "$0" tcp-echo --listen "$SOCKMIG_JOB_ADDR:7100"' "$PEER"
echo_pid=$PID
[ "$ADDR" = 198.18.0.100 ] && [ "$LOG" = "$LABDIR/job-echo.log" ] || t_fail "job echo: $ADDR, $LOG"
wait_file "$LOG" '^ready$'
has_addr n1 198.18.0.100 || t_fail "n1 does not have the job's address"
tr '\0' '\n' <"/proc/$echo_pid/environ" | grep -qx 'SOCKMIG_JOB_ADDR=198.18.0.100' ||
	t_fail "the job's environment: $(tr '\0' ' ' <"/proc/$echo_pid/environ")"
tr '\0' '\n' <"/proc/$echo_pid/environ" | grep -qx 'SOCKMIG_JOB_NAME=echo' || t_fail "no SOCKMIG_JOB_NAME"
[ "$(ps -o sid= -p "$echo_pid" | tr -d ' ')" = "$echo_pid" ] || t_fail "the job is not in a session of its own"
[ "$(readlink "/proc/$echo_pid/fd/0")" = /dev/null ] || t_fail "the job's stdin is not /dev/null"
grep -qE "node=n1 event=run job=echo pid=$echo_pid uid=0 address=198\.18\.0\.100/24 cmd=/usr/bin/sh" "$LABDIR/n1.log" ||
	t_fail "n1 did not log the run: $(tail -3 "$LABDIR/n1.log")"

# ---- ps ----
out=$(t_exec n1 "$SOCKMIG" ps --json) || t_fail "ps --json: $out"
grep -qE "^\{\"node\":\"n1\",\"jobs\":\[\{\"name\":\"echo\",\"node\":\"n1\",\"address\":\"198\.18\.0\.100/24\",\"state\":\"running\",\"kind\":\"job\",\"origin\":\"n1\",\"from\":null,\"cmd\":\"peer\",\"pid\":$echo_pid,\"own_pid\":$echo_pid,\"sockets\":1,\"uid\":0,\"moves\":0\}\],\"unreachable\":\[\]\}$" <<<"$out" ||
	t_fail "ps --json on n1: $out"
out=$(t_exec n1 "$SOCKMIG" ps) || t_fail "ps: $out"
grep -qE "^echo +n1 +$echo_pid +$echo_pid +198\.18\.0\.100/24 +running +1 +job +peer$" <<<"$out" || t_fail "ps: $out"

# reachable from another node at its own address
t_spawn ping n3 "$PEER" tcp-pingpong --connect 198.18.0.100:7100 --count 20 --interval-us 1000
t_wait_exit ping 20 || t_fail "the job does not answer from n3: $(cat "$T_DIR/ping.out" "$T_DIR/ping.err")"
grep -q '^done count=20 ' "$T_DIR/ping.out" || t_fail "pingpong: $(cat "$T_DIR/ping.out")"

# ---- a job on n2, named after its command, gets the next address ----
run n2 -- /bin/sleep 1000
sleep_pid=$PID
[ "$NAME" = sleep ] && [ "$ADDR" = 198.18.0.101 ] || t_fail "the job on n2 is $NAME at $ADDR, not sleep at 198.18.0.101"
# ... and a second one the next name
run n2 -- /bin/sleep 1001
[ "$NAME" = sleep-2 ] && [ "$ADDR" = 198.18.0.102 ] || t_fail "the second job on n2 is $NAME at $ADDR"

# ---- names and addresses are the cluster's ----
out=$(t_exec n3 "$SOCKMIG" run --name echo -- /bin/sleep 1000 2>&1) && t_fail "a second job 'echo' started: $out"
[ "$out" = "sockmig: run: a job named 'echo' runs on node n1 already" ] || t_fail "duplicate name: $out"
out=$(t_exec n3 "$SOCKMIG" run --address 198.18.0.2 -- /bin/sleep 1000 2>&1) && t_fail "a member's address: $out"
[ "$out" = "sockmig: run: address 198.18.0.2 is in use by node 'n2' (its member address)" ] || t_fail "member address: $out"
out=$(t_exec n3 "$SOCKMIG" run --address 198.18.0.101/24 -- /bin/sleep 1000 2>&1) && t_fail "n2's job's address: $out"
[ "$out" = "sockmig: run: address 198.18.0.101/24 is in use by job 'sleep' on node n2" ] || t_fail "a job's address: $out"
out=$(t_exec n3 "$SOCKMIG" run --address 10.9.8.7 -- /bin/sleep 1000 2>&1) && t_fail "an outside address: $out"
grep -q "^sockmig: run: 10.9.8.7 is not in this cluster's subnet (198.18.0.3/24 on eth0)" <<<"$out" || t_fail "outside: $out"
run n3 --address 198.18.0.150/24 --name chosen -- /bin/sleep 1000
[ "$ADDR" = 198.18.0.150 ] && has_addr n3 198.18.0.150 || t_fail "the chosen address is not on n3"

# ---- a command that cannot run leaves nothing ----
out=$(t_exec n3 "$SOCKMIG" run --name nothing -- /nonexistent/cmd 2>&1) && t_fail "a missing command ran: $out"
[ "$out" = "sockmig: run: cannot run /nonexistent/cmd: No such file or directory" ] || t_fail "missing command: $out"
out=$(t_exec n3 "$SOCKMIG" ps) || t_fail "ps on n3: $out"
grep -q '^nothing ' <<<"$out" && t_fail "the failed job is listed: $out"
! has_addr n3 198.18.0.103 || t_fail "the failed job's address stayed on n3"

# ---- a user's job runs as that user; the user cannot move root's ----
out=$(asnobody n1 sh -c 'cd / && exec "$0" run --name mine -- sleep 1000' "$(readlink -f "$SOCKMIG")") ||
	t_fail "nobody's run: $out"
[[ $out =~ \(pid\ ([0-9]+)\) ]] || t_fail "nobody's run: $out"
mine=${BASH_REMATCH[1]}
grep -qE "^Uid:\s+65534\s+65534\s+65534\s+65534$" "/proc/$mine/status" || t_fail "nobody's job runs as $(grep Uid "/proc/$mine/status")"
[ "$(readlink "/proc/$mine/cwd")" = / ] || t_fail "nobody's job is not in /"
[ "$(stat -c %u "$LABDIR/job-mine.log")" = 65534 ] || t_fail "nobody's job's log is not nobody's"
out=$(asnobody n1 "$SOCKMIG" run --address 198.18.0.160 -- sleep 1000 2>&1) && t_fail "nobody chose an address: $out"
[ "$out" = "sockmig: run: only root may choose a job's address; leave it to the daemon" ] || t_fail "nobody's address: $out"
out=$(asnobody n1 "$SOCKMIG" migrate echo --to n2 2>&1) && t_fail "nobody moved root's job: $out"
[ "$out" = "sockmig: uid 65534 may not act on process $echo_pid, which belongs to uid 0: only root or the process's owner may" ] ||
	t_fail "nobody's migrate: $out"

# ---- ps --all from n3: every job, with its node ----
out=$(t_exec n3 "$SOCKMIG" ps --all) || t_fail "ps --all: $out"
for want in "echo +n1 +$echo_pid " "sleep +n2 +$sleep_pid " "sleep-2 +n2 " "chosen +n3 " "mine +n1 +$mine "; do
	grep -qE "^$want" <<<"$out" || t_fail "ps --all lacks '$want': $out"
done
[ "$(grep -c . <<<"$out")" = 6 ] || t_fail "ps --all lists more or less than 5 jobs: $out"

# ---- a job that ends: reaped, its address released ----
kill "$sleep_pid"
wait_file "$LABDIR/n2.log" "node=n2 event=exit job=sleep pid=$sleep_pid status=TERM address=198\.18\.0\.101/24"
[ ! -e "/proc/$sleep_pid" ] || t_fail "the ended job was not reaped: $(grep State "/proc/$sleep_pid/status")"
! has_addr n2 198.18.0.101 || t_fail "the ended job's address stayed on n2"
out=$(t_exec n2 "$SOCKMIG" ps) || t_fail "ps on n2: $out"
grep -q "^sleep " <<<"$out" && t_fail "the ended job is still listed: $out"

# ---- a member down: ps --all says so, lists the rest ----
d2=$(grep -oE 'event=start pid=[0-9]+' "$LABDIR/n2.log" | head -1 | cut -d= -f3)
kill -TERM "$d2"
timeout 10 tail --pid="$d2" -f /dev/null || t_fail "the daemon of n2 did not stop"
t_exec n3 "$SOCKMIG" ps --all >"$T_DIR/psall.out" 2>"$T_DIR/psall.err" || t_fail "ps --all with n2 down failed"
grep -qE "^sockmig: node n2 did not answer: cannot connect to node 'n2' at 198\.18\.0\.2:7890: Connection refused$" \
	"$T_DIR/psall.err" || t_fail "ps --all with n2 down: $(cat "$T_DIR/psall.err")"
grep -qE "^echo +n1 " "$T_DIR/psall.out" || t_fail "ps --all with n2 down: $(cat "$T_DIR/psall.out")"
t_pass
