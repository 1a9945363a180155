# shellcheck shell=bash
# Shared helpers for integration tests. A test is a bash script that sources
# this file, calls t_init, builds its state, checks outcomes with t_check /
# t_fail, and ends with t_pass. Everything it starts is torn down by the EXIT
# trap, on success, failure and interruption.
#
#   t_init                       root check, unique names, temp dir, traps
#   t_lab_up N [LAB]             a lab of N nodes (torn down at exit)
#   t_exec NODE CMD...           run CMD in NODE of the test's lab, wait for it
#   t_spawn TAG NODE CMD...      start CMD in NODE in the background; its
#                                stdout goes to $T_DIR/TAG.out, stderr to TAG.err
#   t_wait_line TAG REGEX [SECS] wait (bounded) for a line of TAG's stdout
#   t_wait_exit TAG [SECS]       wait (bounded) for TAG to end; returns its status
#   t_kill TAG                   end TAG (TERM, then KILL), by pid
#   t_check CMD...               run CMD; fail the test if it fails
#   t_fail MSG / t_pass

set -u
set -o pipefail

T_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T_BUILD=${SOCKMIG_BUILD:-$T_ROOT/build}
SOCKMIG=${SOCKMIG:-$T_BUILD/sockmig}
SOCKMIGD=${SOCKMIGD:-$T_BUILD/sockmigd}
T_PROGS=$T_BUILD/tests/progs
T_NAME=$(basename "${0%.sh}")
T_DIR=
T_LABS=()
declare -A T_PIDS=()

t_log() { printf '%s: %s\n' "$T_NAME" "$*" >&2; }

t_fail() {
	printf 'FAIL: %s: %s\n' "$T_NAME" "$*" >&2
	exit 1
}

t_pass() {
	printf 'PASS: %s\n' "$T_NAME"
	exit 0
}

t_check() {
	"$@" || t_fail "command failed (status $?): $*"
}

t_cleanup() {
	local status=$? tag lab
	trap - EXIT INT TERM
	for tag in "${!T_PIDS[@]}"; do
		t_kill "$tag"
	done
	for lab in "${T_LABS[@]}"; do
		# a lab that does not come down is a defect of ours: fail the test
		if ! "$SOCKMIG" lab down --name "$lab" >"$T_DIR/lab-down.err" 2>&1 &&
			! grep -q 'does not exist' "$T_DIR/lab-down.err"; then
			printf 'FAIL: %s: lab down --name %s: %s\n' "$T_NAME" "$lab" "$(cat "$T_DIR/lab-down.err")" >&2
			status=1
		fi
	done
	if [ -n "$T_DIR" ] && [ -d "$T_DIR" ]; then
		if [ "$status" != 0 ] && [ -z "${T_KEEP:-}" ]; then
			# Show what the background programs said; it is usually the cause.
			for f in "$T_DIR"/*.out "$T_DIR"/*.err; do
				[ -s "$f" ] || continue
				printf -- '--- %s (last lines)\n' "${f##*/}" >&2
				tail -n 15 "$f" >&2
			done
		fi
		[ -n "${T_KEEP:-}" ] || rm -rf "$T_DIR"
	fi
	exit "$status"
}

t_init() {
	[ "$(id -u)" = 0 ] || t_fail "integration tests need root (they create network namespaces)"
	[ -x "$SOCKMIG" ] || t_fail "$SOCKMIG is not built; run make"
	T_DIR=$(mktemp -d "/tmp/sockmig-test.${T_NAME}.XXXXXX")
	# Unique per run and short: lab names end up in namespace names.
	T_ID=$(printf 't%x%04x' "$$" "$RANDOM")
	trap t_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# Whatever called us may have leaked fds (a CI runner's pipe, say):
	# the programs we start must have only the fds the test gives them,
	# or checkpoint tests would see (and refuse) a stranger's pipe.
	# (bash reads this script on fd 255; that one stays.)
	local f n
	for f in /proc/$$/fd/*; do
		n=${f##*/}
		if [ "$n" -gt 2 ] && [ "$n" -lt 255 ]; then
			eval "exec $n>&-" 2>/dev/null
		fi
	done
}

t_lab_up() {
	local n=$1 lab=${2:-$T_ID}
	T_LABS+=("$lab")
	[ -z "${T_LAB:-}" ] && T_LAB=$lab
	# run.sh takes down what a test killed on its timeout left behind
	[ -n "${SOCKMIG_TEST_LABS:-}" ] && echo "$lab" >>"$SOCKMIG_TEST_LABS"
	"$SOCKMIG" lab up --nodes "$n" --name "$lab" >"$T_DIR/lab-$lab.up" 2>&1 ||
		t_fail "lab up --nodes $n --name $lab failed: $(cat "$T_DIR/lab-$lab.up")"
}

t_exec() {
	local node=$1
	shift
	"$SOCKMIG" lab exec --name "$T_LAB" "$node" -- "$@"
}

t_spawn() {
	local tag=$1 node=$2
	shift 2
	"$SOCKMIG" lab exec --name "$T_LAB" "$node" -- "$@" >"$T_DIR/$tag.out" 2>"$T_DIR/$tag.err" &
	T_PIDS[$tag]=$!
}

t_wait_line() {
	local tag=$1 re=$2 secs=${3:-20} file=$T_DIR/$1.out
	# tail -F follows the file as it grows (inotify), so this wakes on the
	# line, not on a timer; both sides are bounded by the timeout.
	if ! timeout "$secs" grep -m1 -qE -- "$re" <(timeout "$secs" tail -n +1 -F "$file" 2>/dev/null); then
		t_fail "no line matching '$re' from $tag within ${secs}s"
	fi
}

t_wait_exit() {
	local tag=$1 secs=${2:-20} pid=${T_PIDS[$1]} status
	# A timer in a session of its own (a plain sh: none of our traps),
	# killed as a group once the program is done. `wait PID` also works
	# for a program that already ended, which `wait -n` does not.
	setsid sh -c 'sleep "$1"; kill -TERM "$2" 2>/dev/null; sleep 2; kill -KILL "$2" 2>/dev/null' sh "$secs" "$pid" &
	local timer=$!
	wait "$pid"
	status=$?
	# The group exists only once setsid has run; a program that ended at
	# once can beat it, and then the timer itself is killed by pid
	# (before that, it would have run to its end and been waited for).
	kill -KILL -- -"$timer" 2>/dev/null || kill -KILL "$timer" 2>/dev/null
	wait "$timer" 2>/dev/null
	unset "T_PIDS[$tag]"
	return "$status"
}

t_kill() {
	local tag=$1 pid=${T_PIDS[$1]:-} i
	[ -n "$pid" ] || return 0
	if kill -TERM "$pid" 2>/dev/null; then
		for i in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	unset "T_PIDS[$tag]"
	return 0
}

# Snapshot of the machine's own network namespace, to prove we did not touch it.
t_root_net_snapshot() {
	{
		ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | awk '{print $1, $2, $3}'
		ip -o addr show | awk '{print $2, $3, $4}'
		ip route show table all
		ip -6 route show table all
		ip netns list
	} 2>&1 | sort
}

# t_root_net_snapshot for tests that run side by side with others: of the
# named namespaces (`ip netns list`) and lab records only those whose names
# match the ERE $1 count, and `ip netns list`'s transient "Peer netns
# reference is invalid" (another test removed a namespace while it was being
# listed) is ignored.
t_root_net_snapshot_only() {
	local re=$1
	{
		ip -o link show | sed -E 's/^[0-9]+: //; s/ qlen [0-9]+//' | awk '{print $1, $2, $3}'
		ip -o addr show | awk '{print $2, $3, $4}'
		ip route show table all
		ip -6 route show table all
		ip netns list 2>/dev/null | awk '{print "netns", $1}' | grep -E -- "^netns ($re)"
		ls /run/sockmig/labs 2>/dev/null | awk '{print "lab", $1}' | grep -E -- "^lab ($re)"
	} 2>&1 | sort
}

# ---- checked streams of tests/progs/peer (progress lines on stderr:
# "progress sent=N verified=N") ----

# The bytes the peer TAG has verified so far.
last_verified() {
	grep -o 'verified=[0-9]*' "$T_DIR/$1.err" | tail -1 | cut -d= -f2 | grep . || echo 0
}
# TAG SECS: wait for the next progress line (or SECS).
t_wait_line_after() {
	local n
	n=$(wc -l <"$T_DIR/$1.err")
	timeout "$2" grep -m1 -q progress <(timeout "$2" tail -n +$((n + 1)) -F "$T_DIR/$1.err" 2>/dev/null) || true
}
# TAG BYTES [ROUNDS]: until the stream has verified BYTES (bounded: ROUNDS
# progress lines or 2 s each, default 30).
t_wait_progress() {
	local i
	for i in $(seq "${3:-30}"); do
		[ "$(last_verified "$1")" -ge "$2" ] && return 0
		t_wait_line_after "$1" 2
	done
	t_fail "$1: the stream did not reach $2 verified bytes (at $(last_verified "$1"))"
}

# ---- cluster tests (cluster_faults, cluster_many, cluster_scale) ----

# FILE REGEX [SECS]: wait (bounded, inotify) for a line of FILE, as it
# grows, to match; 1 if none did in time.
t_wait_file() {
	timeout "${3:-10}" grep -m1 -qE -- "$2" <(timeout "${3:-10}" tail -n +1 -F "$1" 2>/dev/null)
}
# PID [SECS]: wait (bounded, on a pidfd) for the process to end; 1 if it
# still runs.
t_wait_gone() {
	/usr/bin/python3 - "$1" "${2:-10}" <<'PYEOF'
import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    sys.exit(0)
sys.exit(0 if select.select([fd], [], [], float(sys.argv[2]))[0] else 1)
PYEOF
}
# NODE [COMM]: "PID COMM" of every process in NODE's network namespace
# (lab nodes share the machine's pid namespace: the netns tells them apart),
# only those named COMM if given.
t_node_procs() {
	local ns p n
	ns=$(t_exec "$1" readlink /proc/self/ns/net) || return 1
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/ns/net" 2>/dev/null)" = "$ns" ] || continue
		n=$(cat "$p/comm" 2>/dev/null) || continue
		[ -z "${2:-}" ] || [ "$n" = "$2" ] || continue
		echo "${p#/proc/} $n"
	done
}
# NODE: the pid of the sockmigd that `lab up` started in NODE (its log).
t_lab_daemon_pid() {
	grep -oE 'event=start pid=[0-9]+' "/run/sockmig/labs/$T_LAB/$1.log" | head -1 | cut -d= -f3
}
# NODE NAME...: the node's TCP counters named, "NAME VALUE" a line, absolute
# (nstat without its history file, which the nodes would share).
t_nstat() {
	local node=$1
	shift
	t_exec "$node" nstat -asz "$@" | awk 'NF >= 2 && $1 !~ /^#/ { print $1, $2 }'
}
# Median, min and max of numbers on stdin: "min=A median=B max=C".
t_stats() {
	sort -g | awk '{ v[NR] = $1 } END {
		if (!NR) { print "min=- median=- max=-"; exit }
		m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "min=%s median=%s max=%s\n", v[1], m, v[NR] }'
}

# NODE ADDR: ADDR (IPv4) is on NODE's eth0. The listing is read whole first:
# `| grep -q` would end the pipe early, and with pipefail ip's SIGPIPE
# would read as "not there".
t_has_addr() {
	local out
	out=$(t_exec "$1" ip -o -4 addr show dev eth0) || return 1
	[[ $out == *" $2/"* ]]
}
