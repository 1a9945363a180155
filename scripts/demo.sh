#!/bin/bash
# The README's first command: install what is missing, build, bring up a
# virtual cluster of three nodes on this machine (a sockmigd on each), start
# an unmodified server there as a job and move it, with its open TCP
# connections and its UDP flow, n1 -> n2 -> n1 ... through the daemons while
# a peer on the third node streams to it and checks every echo.
#
#   sudo bash scripts/demo.sh [--moves N] [--lab NAME]
#
# The job: tests/integration/lib/asyncio_echo.py, a plain python3 asyncio
# TCP and UDP echo server, started with `sockmig run` on its own address.
# The judge: scripts/demo_peer.py on n3, 4 TCP connections and 1,000
# datagrams a second; after each move it says how long it waited for an
# echo and whether everything it sent so far came back (every TCP byte, in
# order; every datagram, once and intact; datagrams out of order are shown).
# Exits non-zero if a move or a check failed. SOCKMIG_BUILD=DIR uses (and
# makes) that build instead of build/. The lab is removed on any exit;
# DEMO_KEEP=1 keeps the peer's output (its directory is printed).
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD

MOVES=6
LAB=demo$$
while [ $# -gt 0 ]; do
	case $1 in
	--moves) MOVES=${2:-}; shift 2 ;;
	--lab) LAB=${2:-}; shift 2 ;;
	-h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: bash scripts/demo.sh [--moves N] [--lab NAME]" >&2; exit 2 ;;
	esac
done
[[ $MOVES =~ ^[1-9][0-9]{0,2}$ ]] || { echo "demo: --moves takes a number from 1 to 999" >&2; exit 2; }

# shellcheck source=scripts/deps.sh
. scripts/deps.sh
sockmig_ensure_deps
if [ "$(id -u)" != 0 ]; then
	echo "sockmig: the demo needs root (it creates network namespaces); run: sudo bash scripts/demo.sh" >&2
	exit 1
fi

B=${SOCKMIG_BUILD:-build}
SOCKMIG=$(cd "$ROOT" && realpath -m "$B/sockmig")
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
ECHO_PY=$ROOT/tests/integration/lib/asyncio_echo.py
PEER_PY=$ROOT/scripts/demo_peer.py
PORT=7000 # TCP; the server's UDP is on PORT+1
tmp=$(mktemp -d /tmp/sockmig-demo.XXXXXX)
peer_pid=
lab_made=

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$peer_pid" ]; then
		kill "$peer_pid" 2>/dev/null || true
		wait "$peer_pid" 2>/dev/null || true
	fi
	# lab down ends what still runs in the nodes: the job, the daemons
	if [ -n "$lab_made" ] && ! "$SOCKMIG" lab down --name "$LAB" >"$tmp/down.log" 2>&1; then
		echo "demo: lab down --name $LAB failed: $(cat "$tmp/down.log")" >&2
		status=1
	fi
	if [ -n "${DEMO_KEEP:-}" ]; then echo "demo: the peer's output is in $tmp" >&2; else rm -rf "$tmp"; fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '%-10s %s\n' "$1" "$2"; }
die() { step "$1" "FAILED: $2" >&2; exit 1; }
node() { "$SOCKMIG" lab exec --name "$LAB" "$@"; }
# FILE REGEX SECS: wait (bounded) for a line of FILE as it grows (inotify)
wait_line() { timeout "$3" grep -m1 -qE -- "$2" <(timeout "$3" tail -n +1 -F "$1" 2>/dev/null); }
# PID: the process ends within 10 s (a pidfd, no polling)
wait_gone() {
	"$PY" - "$1" <<'EOF'
import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    sys.exit(0)
sys.exit(0 if select.select([fd], [], [], 10)[0] else 1)
EOF
}
has_addr() { node "$1" ip -o -4 addr show dev eth0 | grep -q " $2/"; }
kv() { sed -nE "s/.*(^| )$1=([^ ]*).*/\\2/p" <<<"$2"; } # KEY LINE
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
join() { local IFS=';' s; s="$*"; echo "${s//;/, }"; }
maxof() { sort -n | tail -1 | awk '{ printf "%.1f\n", $1 }'; }

# ---- build ----
SECONDS=0
make -s -j"$(nproc 2>/dev/null || echo 2)" B="$B" all >"$tmp/make.log" 2>&1 ||
	die build "make failed: $(tail -5 "$tmp/make.log")"
step build "make -j B=$B all: done (${SECONDS} s)"

# ---- the lab: a cluster of three ----
# (never another's lab: cleanup takes down the lab it names)
[ ! -e "/run/sockmig/labs/$LAB" ] || die lab "a lab named $LAB exists already; name another with --lab"
lab_made=1
"$SOCKMIG" lab up --nodes 3 --name "$LAB" >"$tmp/up.log" 2>&1 || die lab "$(cat "$tmp/up.log")"
step lab "$LAB: nodes n1 n2 n3, network namespaces on a bridge of their own, a sockmigd in each"

# ---- the job ----
# shellcheck disable=SC2016 # $SOCKMIG_JOB_ADDR is the job's, expanded by its sh
out=$(node n1 "$SOCKMIG" run --name echo -- sh -c 'exec "$0" "$1" "$SOCKMIG_JOB_ADDR" "$2"' "$PY" "$ECHO_PY" "$PORT" 2>&1) ||
	die job "sockmig run: $out"
[[ $out =~ ^started\ job\ echo\ \(pid\ ([0-9]+)\)\ on\ n1\ with\ address\ ([0-9.]+)/[0-9]+\;\ its\ output\ goes\ to\ (.*)$ ]] ||
	die job "sockmig run printed: $out"
pid=${BASH_REMATCH[1]} addr=${BASH_REMATCH[2]} joblog=${BASH_REMATCH[3]}
wait_line "$joblog" '^listening$' 20 || die job "the server did not start: $(tail -3 "$joblog")"
step job "n1\$ sockmig run --name echo -- python3 asyncio_echo.py \$SOCKMIG_JOB_ADDR $PORT: pid $pid, $addr"

# ---- the peer ----
"$SOCKMIG" lab exec --name "$LAB" n3 -- "$PY" "$PEER_PY" --tcp "$addr:$PORT" --udp "$addr:$((PORT + 1))" \
	--conns 4 --rate 256k --udp-hz 1000 >"$tmp/peer.out" 2>"$tmp/peer.err" &
peer_pid=$! # lab exec execs: this is the peer itself
{ wait_line "$tmp/peer.out" '^(ready|error)' 20 && grep -q '^ready' "$tmp/peer.out"; } ||
	die peer "not ready: $(cat "$tmp/peer.out" "$tmp/peer.err" | tail -3)"

# PEER REPORT K: ask the peer (SIGUSR1) whether all it sent came back; sets $rep
report() {
	kill -USR1 "$peer_pid" 2>/dev/null || true
	if wait_line "$tmp/peer.out" "^(report n=$1 |error|done)" 30; then
		rep=$(grep -E "^(report n=$1 |error|done)" "$tmp/peer.out" | head -1)
	else
		rep="error: no report within 30 s ($(tail -1 "$tmp/peer.err"))"
	fi
}
sleep 1 # a second of traffic before anything moves: the baseline
report 1
[ "$(kv ok "$rep")" = 1 ] || die peer "$rep"
step peer "n3: 4 TCP connections (256 KiB/s each) and 1000 UDP datagrams/s to it, every echo checked"
echo "           (each move: n1\$ sockmig migrate echo --to n2, and back; frozen: the freeze the daemon reported;"
echo "            peer pause: the longest the peer waited for an echo during the move; so far: all the peer"
echo "            sent since it started, and whether all of it came back, intact)"

# ---- the moves ----
from=n1 to=n2 failed=0 done_moves=0 frozen=() pauses=()
declare -A prev=([tcp_missing]=0 [udp_lost]=0 [udp_dup]=0 [corrupt]=0 [udp_reordered]=0)
declare -A what=([tcp_missing]="TCP bytes missing" [udp_lost]="datagrams lost" [udp_dup]="datagrams repeated"
	[corrupt]="datagrams damaged")
for i in $(seq "$MOVES"); do
	sleep 0.5 # traffic between moves (pacing only; every check below waits for its event)
	label="move $i/$MOVES"
	out=$(node "$from" "$SOCKMIG" migrate echo --to "$to" 2>&1) || {
		step "$label" "$from -> $to FAILED: $out"
		failed=$((failed + 1))
		break
	}
	re="^moved pid $pid \\(job echo\\) from $from to $to \\(pid ([0-9]+) there\\): ([0-9]+) sockets, frozen ([0-9.]+) ms$"
	[[ $out =~ $re ]] || { step "$label" "$from -> $to: unexpected answer: $out"; failed=$((failed + 1)); break; }
	new=${BASH_REMATCH[1]} socks=${BASH_REMATCH[2]} fz=${BASH_REMATCH[3]}
	problems=()
	wait_gone "$pid" || problems+=("the original pid $pid still runs on $from")
	kill -0 "$new" 2>/dev/null || problems+=("pid $new does not run on $to")
	has_addr "$to" "$addr" || problems+=("$to does not have $addr")
	! has_addr "$from" "$addr" || problems+=("$from kept $addr")
	report $((i + 1))
	tg=$(kv tcp_gap_ms "$rep") ug=$(kv udp_gap_ms "$rep")
	pause=$(awk -v a="${tg:-0}" -v b="${ug:-0}" 'BEGIN { print (a > b ? a : b) }')
	# "so far" is the whole run's; the move fails only for what went wrong
	# during it (a datagram lost at move 1 stays lost in every later line)
	if [[ $rep == report* ]]; then
		sofar="so far $(mb "$(kv tcp_bytes "$rep")") + $(kv udp_sent "$rep") datagrams"
		bad=() new_bad=()
		for k in tcp_missing udp_lost udp_dup corrupt; do
			v=$(kv "$k" "$rep")
			v=${v:-0}
			[ "$v" = 0 ] || bad+=("$v ${what[$k]}")
			[ "$v" -le "${prev[$k]}" ] || new_bad+=("$((v - prev[$k])) ${what[$k]}")
			prev[$k]=$v
		done
		v=$(kv udp_reordered "$rep")
		new_reord=$((${v:-0} - prev[udp_reordered]))
		prev[udp_reordered]=${v:-0}
		if [ ${#bad[@]} -eq 0 ]; then
			sofar+=", all back"
		else
			sofar+=", NOT all back: $(join "${bad[@]}")"
		fi
		[ "$new_reord" = 0 ] || sofar+=" ($new_reord datagrams out of order)"
		if [ ${#new_bad[@]} -gt 0 ]; then
			problems+=("during this move: $(join "${new_bad[@]}")")
			# the kernel's own count: datagrams the job's UDP socket on $to
			# refused because its receive buffer was full
			d=$(node "$to" ss -Huamn "( sport = :$((PORT + 1)) )" | sed -nE 's/.*,d([0-9]+)\).*/\1/p' | head -1)
			[ "${d:-0}" = 0 ] || problems+=("the job's UDP socket on $to dropped $d (its receive buffer was full)")
		fi
	else
		problems+=("peer: $rep")
		sofar="so far: the peer stopped"
	fi
	frozen+=("$fz") pauses+=("$pause")
	line=$(printf '%s -> %s: %s sockets, frozen %5.1f ms, peer pause %5.1f ms; %s' "$from" "$to" "$socks" "$fz" "$pause" "$sofar")
	if [ ${#problems[@]} -eq 0 ]; then
		step "$label" "$line: ok"
		done_moves=$((done_moves + 1))
	else
		step "$label" "$line: FAILED: $(join "${problems[@]}")"
		failed=$((failed + 1))
	fi
	[[ $rep == report* ]] || break # the peer is gone
	pid=$new
	t=$from from=$to to=$t
done

# ---- the end: the peer stops and checks the whole run ----
kill -USR2 "$peer_pid" 2>/dev/null || true
wait_line "$tmp/peer.out" '^(done|error)' 30 || true
wait "$peer_pid" && peer_ok=1 || peer_ok=
peer_pid=
fin=$(grep -E '^(done|error)' "$tmp/peer.out" | tail -1)
echo "ps --all   n1\$ sockmig ps --all"
node n1 "$SOCKMIG" ps --all 2>&1 | sed 's/^/           /'
if [[ $fin == done* ]]; then
	sum="TCP: $(mb "$(kv tcp_bytes "$fin")") over $(kv conns "$fin") connections, $(kv tcp_missing "$fin") bytes missing; UDP: $(kv udp_sent "$fin") datagrams, $(kv udp_lost "$fin") lost, $(kv udp_dup "$fin") repeated, $(kv corrupt "$fin") damaged, $(kv udp_reordered "$fin") out of order"
	if [ -n "$peer_ok" ]; then
		step peer "$sum"
	else
		step peer "FAILED: $sum"
		failed=$((failed + 1))
	fi
else
	step peer "FAILED: ${fin:-no final line} $(tail -2 "$tmp/peer.err" | tr '\n' ' ')"
	failed=$((failed + 1))
fi
if [ ${#frozen[@]} -gt 0 ]; then
	step summary "$done_moves/$MOVES moves ok; frozen median $(printf '%s\n' "${frozen[@]}" | median) ms (max $(printf '%s\n' "${frozen[@]}" | maxof)), peer pause median $(printf '%s\n' "${pauses[@]}" | median) ms (max $(printf '%s\n' "${pauses[@]}" | maxof))"
fi
if [ "$failed" = 0 ] && [ "$done_moves" = "$MOVES" ]; then
	step result "PASS: the job moved $MOVES time(s) between n1 and n2 with its connections; nothing was lost, repeated or altered"
else
	step result "FAILED: $failed check(s) failed" >&2
	exit 1
fi
