#!/bin/bash
# Faults in the middle of a whole-process migration through the daemons
# (`sockmig migrate`). A job (epoll_echo with 64 MiB of ballast, so that its
# image takes a while to stream) runs on n1 while a peer on n3 streams
# through 4 connections. Each attempt below fails; after each one the command
# said so in one sentence naming the destination and the cause, the job goes
# on on n1 (same pid, running, its address and its 4 connections, nothing
# left frozen there, the failure in n1's log), the peer's stream moves on,
# and the destination keeps nothing of it: no process in its namespace, no
# connection, no job record, no frozen flow, no flow lock of a dead process,
# no address (a killed daemon's node is checked once a new daemon runs there,
# the address within 30 s). In order:
#   c1  n4's link cut (eth0 down in n4's namespace) while n4 stalls before
#       the process image (SOCKMIG_FAULT=dst-stall-sockets): S's channel
#       times out (the daemons run with `timeout 3000`, a copy of the lab's
#       config)
#   a   n2's daemon SIGKILLed while the image streams (dst-stall-sockets);
#       its children are gone with it
#   b   the same once n2 has taken and announced the job's address
#       (dst-stall-announced): the address comes back to n1 and the peer's
#       ARP entry with it
#   d   n2's daemon SIGKILLed, without a fault point, as soon as it logged
#       the migrate request (the image then streams: 64 MiB)
#   c2  n5's link cut once n5 has announced the address (dst-stall-announced)
# n4 and n5 log their own failure once their stall (STALL_MS) ends: checked last.
# Then the job moves n1 -> n4 -> n5 -> n2, to every node a failure touched,
# with the stream checked after each: nothing was left half-done. At the end
# the peer has every byte back, and n3's kernel counted no reset and no abort.
#
# Checks marked BUG-... found defects of code outside the tests (see their
# messages): they are recorded, the test goes on, and it fails at the end
# (BUG-pump-spin at once: the job cannot be moved again).
# CASES="a b" (any of c1 a b d c2) runs only those cases.
. "$(dirname "$0")/../lib.sh"
t_init
CASES=" ${CASES:-c1 c2 a b d} "
t_lab_up 5
LABDIR=/run/sockmig/labs/$T_LAB
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
TIMEOUT_MS=3000
JOB_PORT=7000
# how long a stalled destination sleeps (SOCKMIG_FAULT_STALL_MS)
STALL_MS=20000
[ -x "$ECHO" ] && [ -x "$PEER" ] || t_fail "epoll_echo or peer is not built"
BUGS=()
TIMES=()
start=$SECONDS

want() { [[ $CASES == *" $1 "* ]]; }
# A check that found a defect outside the tests: recorded; the test fails at
# its end, after the other checks had their say.
bug() {
	BUGS+=("$*")
	printf 'BUG: %s: %s\n' "$T_NAME" "$*" >&2
}
# One that ends the test at once, with those found before.
fatal_bug() {
	bug "$*"
	t_fail "${#BUGS[@]} check(s) found defects outside the tests: $(printf '%s; ' "${BUGS[@]}")"
}
# Any other failure names the defects found before it: they are often its
# cause (an address left on a node takes the peer's traffic there).
eval "lib_$(declare -f t_fail)"
t_fail() {
	if [ "${#BUGS[@]}" != 0 ] && [[ $* != *"found defects outside the tests"* ]]; then
		lib_t_fail "$*; after ${#BUGS[@]} defect(s) found outside the tests, maybe its cause: $(printf '%s; ' "${BUGS[@]}")"
	fi
	lib_t_fail "$*"
}
has_addr() { t_has_addr "$@"; }
mac() { t_exec "$1" cat /sys/class/net/eth0/address; }
frozen_flows() { t_exec "$1" nft list table inet sockmig 2>/dev/null | grep -c "$addr \. $JOB_PORT" || true; }
dead_locks() { # NODE: chains of flow locks whose process is gone
	local c p
	for c in $(t_exec "$1" nft list table inet sockmig 2>/dev/null | sed -nE 's/^\s*chain (f([0-9]+)_[0-9]+_in) \{.*/\1/p'); do
		p=${c#f}
		p=${p%%_*}
		kill -0 "$p" 2>/dev/null || echo "$c"
	done
}

# ---- the daemons: a short timeout; faults from the environment ----
for n in n1 n2 n4 n5; do
	{ grep -v '^timeout' "$LABDIR/$n.conf"; echo "timeout $TIMEOUT_MS"; } >"$LABDIR/$n-short.conf"
done
declare -A DPID DLOG
nd=0
# NODE [VAR=VALUE...]: NODE's daemon stopped (SIGTERM) and started again
# with the short timeout and VARs in its environment; its log is DLOG[NODE].
daemon_restart() {
	local node=$1 old tag
	shift
	if [ -z "${DPID[$node]+set}" ]; then
		# the lab's own daemon, the first time: its pid from its log,
		# checked against its command line (never a stranger's pid)
		old=$(t_lab_daemon_pid "$node")
		tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -q "sockmigd --config $LABDIR/$node.conf" ||
			t_fail "no sockmigd of the lab in $node (pid '$old')"
		kill -TERM "$old"
		t_wait_gone "$old" 10 || t_fail "the daemon of $node (pid $old) did not stop on SIGTERM"
	else
		# ours: t_kill (SIGTERM, reaped); none if it was killed already
		for tag in "${!T_PIDS[@]}"; do
			[ "${T_PIDS[$tag]}" = "${DPID[$node]}" ] && t_kill "$tag"
		done
	fi
	nd=$((nd + 1))
	tag=daemon$nd-$node
	t_spawn "$tag" "$node" env "$@" "$SOCKMIGD" --config "$LABDIR/$node-short.conf"
	t_wait_line "$tag" '^ready$' 10
	DPID[$node]=${T_PIDS[$tag]} DLOG[$node]=$T_DIR/$tag.err
	grep -q "event=start pid=${DPID[$node]} " "${DLOG[$node]}" ||
		t_fail "the daemon of $node is not pid ${DPID[$node]}: $(head -1 "${DLOG[$node]}")"
}
# NODE: SIGKILL its daemon (the test's own, so reaped here); KIDS: its
# children just before.
daemon_kill() {
	local node=$1 pid=${DPID[$1]} tag
	KIDS=$(pgrep -P "$pid" | tr '\n' ' ')
	kill -KILL "$pid"
	for tag in "${!T_PIDS[@]}"; do
		[ "${T_PIDS[$tag]}" = "$pid" ] && { wait "$pid" 2>/dev/null; unset "T_PIDS[$tag]"; }
	done
	t_wait_gone "$pid" 5 || t_fail "the daemon of $node (pid $pid) survived SIGKILL"
	DPID[$node]=
}
daemon_restart n1
daemon_restart n2

# ---- the job on n1, the stream from n3 ----
out=$(t_exec n1 "$SOCKMIG" run --name echo -- sh -c 'exec "$0" "$SOCKMIG_JOB_ADDR" "$1" --ballast 64' "$ECHO" "$JOB_PORT") ||
	t_fail "sockmig run failed: $out"
[[ $out =~ ^started\ job\ echo\ \(pid\ ([0-9]+)\)\ on\ n1\ with\ address\ ([0-9.]+)/24\;\ its\ output\ goes\ to\ (.*)$ ]] ||
	t_fail "run printed: $out"
pid=${BASH_REMATCH[1]} addr=${BASH_REMATCH[2]} joblog=${BASH_REMATCH[3]}
t_wait_file "$joblog" '^listening$' 30 || t_fail "the job did not listen: $(tail -3 "$joblog")"
t_spawn stream n3 "$PEER" tcp-stream --connect "$addr:$JOB_PORT" --conns 4 --rate 4m --window 256k --drain-timeout 30
t_wait_line stream '^ready$'
t_wait_progress stream 2000000 30
COUNTERS="TcpEstabResets TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpExtTCPAbortOnMemory TcpExtTCPAbortOnTimeout TcpExtTCPAbortOnLinger TcpExtTCPAbortFailed"
# shellcheck disable=SC2086
nstat_before=$(t_nstat n3 $COUNTERS)
MAC1=$(mac n1)
n_failed=0
# BYTES: the stream verified that much within 30 s; 1 if not
progressed() {
	local _
	for _ in $(seq 15); do
		[ "$(last_verified stream)" -ge "$1" ] && return 0
		t_wait_line_after stream 2
	done
	return 1
}

# ---- one failed attempt ----
# CASE DEST: the migrate command starts in the background
mig_start() {
	t_spawn "mig-$1" n1 "$SOCKMIG" migrate "$pid" --to "$2"
	MIG_T0=$(date +%s%N)
	CPU0=$(cpu_ticks "${DPID[n1]}")
}
# utime + stime of PID, in clock ticks; the CPU n1's daemon used since
# mig_start, in seconds (a spinning thread shows here)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
cpu_secs() { echo "$(($(cpu_ticks "${DPID[n1]}") - CPU0))" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", $1 / hz }'; }
# CASE DEST CAUSE-ERE: the command failed, within a few timeouts of the
# fault, with one sentence that names DEST and a cause matching CAUSE-ERE.
mig_failed() {
	local c=$1 d=$2 re=$3 out t1 st limit=$((4 * TIMEOUT_MS / 1000 + 5))
	t_wait_exit "mig-$c" "$limit"
	st=$?
	t1=$(date +%s%N)
	[ "$st" != 0 ] || t_fail "$c: the move to $d succeeded: $(cat "$T_DIR/mig-$c.out")"
	# 1 is the command's failure; anything else is the timer's signal
	[ "$st" = 1 ] || fatal_bug "BUG-pump-spin ($c): the migrate command did not end within $limit s of the fault (the job stays 'leaving' on n1, so nothing more can be tried); meanwhile n1's daemon used $(cpu_secs) s of CPU"
	out=$(cat "$T_DIR/mig-$c.err")
	t_log "$c: $out"
	[ "$(wc -l <<<"$out")" = 1 ] || t_fail "$c: not one line: $out"
	[[ $out =~ ^sockmig:\ cannot\ migrate\ pid\ $pid\ to\ $d\ \(it\ goes\ on\ here,\ connections\ intact\):\ (.+)$ ]] ||
		t_fail "$c: the sentence does not say the move to $d failed and the job goes on: $out"
	grep -qE -- "$re" <<<"${BASH_REMATCH[1]}" ||
		bug "BUG-sentence ($c): the cause is not named (want /$re/): ${BASH_REMATCH[1]}"
	TIMES+=("$c: migrate failed $(((t1 - FAULT_T) / 1000000)) ms after the fault ($(((t1 - MIG_T0) / 1000000)) ms in all; n1's daemon used $(cpu_secs) s of CPU)")
}
# CASE DEST: the job goes on on n1, whole; S logged the failure.
source_intact() {
	local c=$1 d=$2 n out
	kill -0 "$pid" 2>/dev/null || t_fail "$c: the job (pid $pid) is gone"
	grep -qE '^State:\s+[RS] ' "/proc/$pid/status" || t_fail "$c: the job is left $(grep State "/proc/$pid/status")"
	has_addr n1 "$addr" || t_fail "$c: n1 lost the job's address"
	n=$(t_exec n1 ss -Htan state established "( sport = :$JOB_PORT )" | wc -l)
	[ "$n" = 4 ] || t_fail "$c: n1 has $n connections of the job, not 4"
	[ "$(frozen_flows n1)" = 0 ] || t_fail "$c: n1 left flows of the job frozen: $(t_exec n1 nft list table inet sockmig)"
	out=$(t_exec n1 "$SOCKMIG" ps --json) || t_fail "$c: ps on n1: $out"
	grep -qE "\"name\":\"echo\",\"node\":\"n1\",[^}]*\"state\":\"running\"[^}]*\"pid\":$pid," <<<"$out" ||
		t_fail "$c: ps on n1 does not show the job running: $out"
	n_failed=$((n_failed + 1))
	n=$(grep -cE "event=migrate role=source pid=$pid job=echo from=n1 to=$d mode=[a-z]+ result=failed msg=" "${DLOG[n1]}")
	[ "$n" -ge 1 ] || t_fail "$c: n1 did not log the failed move: $(tail -2 "${DLOG[n1]}")"
	t_wait_progress stream $(($(last_verified stream) + 2000000)) 30
}
# CASE DEST: no copy of the job on DEST, no connection of it.
dest_now() {
	local c=$1 d=$2 out
	out=$(t_node_procs "$d" epoll_echo)
	[ -z "$out" ] || bug "BUG-copy ($c): a copy of the job runs on $d: $out"
	out=$(t_exec "$d" ss -Htan "( sport = :$JOB_PORT )")
	[ -z "$out" ] || bug "BUG-copy ($c): $d has connections of the job: $out"
}
# CASE DEST: nothing else of the job on DEST (its daemon runs: the one that
# failed, or the one started after the one killed): no job record, no
# frozen flow, no lock of a dead process, and the address gone (at once, or
# within ADDR_WAIT s: a destination that died may only have taken it for a
# while). What an earlier case left is not this case's (dest_before).
ADDR_WAIT=30
dest_leftovers() {
	local c=$1 d=$2 out l
	out=$(t_exec "$d" "$SOCKMIG" ps --json) || t_fail "$c: ps on $d: $out"
	! grep -q '"name":"echo"' <<<"$out" || t_fail "$c: $d still has a record of the job: $out"
	if [ "${PRE_FROZEN[$d]}" = 0 ] && [ "$(frozen_flows "$d")" != 0 ]; then
		bug "BUG-dead-dst-lock ($c): $d kept the job's flows frozen in nftables (the lock of its dead daemon, also after a new daemon started): a later move to $d blackholes them"
	fi
	out=
	for l in $(dead_locks "$d"); do
		[[ " ${PRE_LOCKS[$d]} " == *" $l "* ]] || out+="$l "
	done
	[ -z "$out" ] || bug "BUG-dead-lock-leak ($c): $d kept the nftables chains and sets of flow locks whose process is dead, also after a new daemon started: $out"
	if [ "${PRE_ADDR[$d]}" = no ] && ! addr_gone "$d" "$ADDR_WAIT"; then
		bug "BUG-dead-dst-address ($c): $d kept the job's address $addr for more than $ADDR_WAIT s (a destination that dies after taking it leaves it there: both nodes have it; the peers' ARP may go back to $d)"
	fi
}
# NODE SECS: the job's address leaves NODE within SECS (an ip monitor event)
addr_gone() {
	local n=$1 secs=$2 tag=mon$RANDOM st=0
	t_spawn "$tag" "$n" ip -o monitor address
	# started before the look: a removal in between is seen either way
	t_wait_file "$T_DIR/$tag.out" . 0.5 || true
	if has_addr "$n" "$addr"; then
		t_wait_file "$T_DIR/$tag.out" "^Deleted .* $addr/" "$secs" || st=1
	fi
	t_kill "$tag"
	return "$st"
}
declare -A PRE_ADDR PRE_FROZEN PRE_LOCKS
# DEST: what an earlier case left there, before this one
dest_before() {
	PRE_ADDR[$1]=no
	has_addr "$1" "$addr" && PRE_ADDR[$1]=yes
	PRE_FROZEN[$1]=$(frozen_flows "$1")
	PRE_LOCKS[$1]=$(dead_locks "$1" | tr '\n' ' ')
}
# CASE DEST FAULT-POINT: a daemon of DEST with that fault, the move started,
# its stall reached.
stall_at() {
	local c=$1 d=$2 f=$3
	daemon_restart "$d" SOCKMIG_FAULT="$f" SOCKMIG_FAULT_STALL_MS=$STALL_MS
	dest_before "$d"
	mig_start "$c" "$d"
	t_wait_file "${DLOG[$d]}" "^sockmig: fault $f: stalling$" 30 ||
		t_fail "$c: $d did not stall at $f: $(tail -3 "${DLOG[$d]}"; cat "$T_DIR/mig-$c.err")"
	if [ "$f" = dst-stall-announced ]; then
		has_addr "$d" "$addr" || t_fail "$c: $d stalls after announcing, but does not have the address"
	fi
}

# ---- c: the link to the destination cut (eth0 down in its namespace) ----
# Its daemon sleeps out its stall (STALL_MS) and then fails on its own: its log
# is read at the end, when the other cases are done.
link_cut() { # CASE DEST FAULT-POINT
	local c=$1 d=$2 f=$3
	stall_at "$c" "$d" "$f"
	t_check t_exec "$d" ip link set eth0 down
	FAULT_T=$(date +%s%N)
	mig_failed "$c" "$d" "(did not|stopped|nothing|within|for) $TIMEOUT_MS ms"
	t_check t_exec "$d" ip link set eth0 up
	# IPv6 addresses go with the link (keep_addr_on_down=0): the lab's back
	t_exec "$d" ip -6 addr show dev eth0 | grep "2001:2::${d#n}/64" >/dev/null ||
		t_check t_exec "$d" ip -6 addr add "2001:2::${d#n}/64" dev eth0 nodad
	source_intact "$c" "$d"
	if [ "$f" = dst-stall-announced ]; then
		[ "$(t_exec n3 ip neigh show "$addr" dev eth0 | awk '{ print $3 }')" = "$MAC1" ] ||
			t_fail "$c: n3 does not reach $addr at n1's MAC $MAC1: $(t_exec n3 ip neigh show "$addr")"
	fi
}
if want c1; then
	daemon_restart n4
	link_cut c1 n4 dst-stall-sockets
fi

# ---- a, b: the destination's daemon killed at a fault point ----
kill_at() { # CASE FAULT-POINT
	local c=$1 f=$2 k
	stall_at "$c" n2 "$f"
	daemon_kill n2
	FAULT_T=$(date +%s%N)
	mig_failed "$c" n2 "(reset|closed|ended|died|gone)"
	for k in $KIDS; do
		kill -0 "$k" 2>/dev/null && t_fail "$c: the dead daemon's child $k ($(cat "/proc/$k/comm")) lives on"
	done
	[ -z "$(t_node_procs n2)" ] || t_fail "$c: processes are left in n2: $(t_node_procs n2 | tr '\n' ' ')"
	source_intact "$c" n2
	if [ "$f" = dst-stall-announced ]; then
		[ "$(t_exec n3 ip neigh show "$addr" dev eth0 | awk '{ print $3 }')" = "$MAC1" ] ||
			t_fail "$c: n3 does not reach $addr at n1's MAC $MAC1: $(t_exec n3 ip neigh show "$addr")"
	fi
	dest_now "$c" n2
	daemon_restart n2
	dest_leftovers "$c" n2
}
want a && kill_at a dst-stall-sockets
want b && kill_at b dst-stall-announced

# ---- d: killed with no fault point, as soon as it took the request ----
if want d; then
	daemon_restart n2
	dest_before n2
	mig_start d n2
	t_wait_file "${DLOG[n2]}" "event=request via=peer .* request=migrate" 30 ||
		t_fail "d: n2 did not log the request: $(tail -2 "${DLOG[n2]}")"
	daemon_kill n2
	FAULT_T=$(date +%s%N)
	mig_failed d n2 "(reset|closed|ended|died|gone)"
	for k in $KIDS; do
		kill -0 "$k" 2>/dev/null && t_fail "d: the dead daemon's child $k lives on"
	done
	[ -z "$(t_node_procs n2)" ] || t_fail "d: processes are left in n2: $(t_node_procs n2 | tr '\n' ' ')"
	source_intact d n2
	dest_now d n2
	daemon_restart n2
	dest_leftovers d n2
fi

# c2 last: a command that never ends (BUG-pump-spin) keeps the job from
# being moved again
if want c2; then
	daemon_restart n5
	link_cut c2 n5 dst-stall-announced
fi

# ---- c, later: the cut-off destinations end their stall and fail ----
for cd in c1:n4 c2:n5; do
	c=${cd%:*} d=${cd#*:}
	want "$c" || continue
	# the stall from its start, then the channel's timeout
	if ! t_wait_file "${DLOG[$d]}" "event=migrate role=destination pid=$pid job=echo from=n1 to=$d mode=[a-z]+ result=failed msg=" $((STALL_MS / 1000 + 30)); then
		if grep -qE "event=migrate role=destination .* result=ok" "${DLOG[$d]}"; then
			bug "BUG-late-dst ($c): $d, cut off while S gave up, went on after its stall and ran the job: $(grep 'event=migrate' "${DLOG[$d]}")"
		else
			t_fail "$c: $d did not log the failed move: $(tail -3 "${DLOG[$d]}")"
		fi
	fi
	t_log "$c: $d's log: $(grep 'event=migrate' "${DLOG[$d]}")"
	dest_now "$c" "$d"
	dest_leftovers "$c" "$d"
	kill -0 "$pid" 2>/dev/null || t_fail "$c: the job (pid $pid) is gone after $d woke up"
	t_wait_progress stream $(($(last_verified stream) + 2000000)) 30
done

out=$(t_exec n1 "$SOCKMIG" ps --all --json 2>&1) || t_fail "ps --all: $out"
[ "$(grep -o '"name":"echo"' <<<"$out" | wc -l)" = 1 ] || t_fail "ps --all shows the job not once: $out"

# ---- then clean moves to every node a failure touched ----
from=n1
for to in n4 n5 n2; do
	daemon_restart "$to"
	before=$(last_verified stream)
	out=$(t_exec "$from" "$SOCKMIG" migrate "$pid" --to "$to" 2>&1) || t_fail "the clean move $from -> $to failed: $out"
	t_log "clean move: $out"
	[[ $out =~ ^moved\ pid\ $pid\ \(job\ echo\)\ from\ $from\ to\ $to\ \(pid\ ([0-9]+)\ there\):\ 5\ sockets,\ frozen\ ([0-9.]+)\ ms(,\ .*)?$ ]] ||
		t_fail "the clean move $from -> $to printed: $out"
	new=${BASH_REMATCH[1]}
	t_wait_gone "$pid" 10 || t_fail "$from -> $to: the original pid $pid still runs"
	t_node_procs "$to" epoll_echo | grep -q "^$new " || t_fail "$from -> $to: pid $new is not an epoll_echo in $to"
	has_addr "$to" "$addr" && ! has_addr "$from" "$addr" || t_fail "$from -> $to: the address is not (only) on $to"
	progressed $((before + 2000000)) ||
		t_fail "$from -> $to: the stream stopped after the move (at $(last_verified stream) bytes verified; BUG-dead-dst-lock?)"
	pid=$new from=$to
done

# ---- every byte, no reset ----
kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 40 || t_fail "the peer's stream failed: $(cat "$T_DIR/stream.out")"
grep -qE '^done conns=4 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/stream.out" ||
	t_fail "the peer did not get every byte back: $(cat "$T_DIR/stream.out")"
t_log "stream: $(grep "^done" "$T_DIR/stream.out")"
# shellcheck disable=SC2086
nstat_after=$(t_nstat n3 $COUNTERS)
[ "$nstat_after" = "$nstat_before" ] ||
	t_fail "n3's TCP counters moved (resets or aborts): before: $(tr "\n" " " <<<"$nstat_before") after: $(tr "\n" " " <<<"$nstat_after")"
t_log "n3: $(tr "\n" " " <<<"$nstat_after")"
for t in "${TIMES[@]}"; do t_log "$t"; done
t_log "$n_failed failed attempts, $((SECONDS - start)) s in all"
[ "${#BUGS[@]}" = 0 ] || t_fail "${#BUGS[@]} check(s) found defects outside the tests: $(printf '%s; ' "${BUGS[@]}")"
t_pass
