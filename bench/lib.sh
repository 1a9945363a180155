# shellcheck shell=bash disable=SC2034
# What the shell benches share; sourced after tests/lib.sh (whose t_* helpers
# and cleanup it builds on). A bench keeps its results: every program's
# output and its raw rows stay in $T_DIR.
#
#   bench_init NAME [OUT]        t_init, then T_DIR = OUT (made if needed) or
#                                the new /tmp/sockmig-test.NAME.*, kept at exit
#   bench_log MSG...             a line on stderr, with the time
#   bench_wait_file FILE RE SECS a line of FILE (as it grows) matches RE;
#                                status 1 if none did within SECS
#   bench_wait_gone PID SECS     the process ends within SECS (a pidfd)
#   bench_stop TAG SECS          a T_PIDS program told to stop: waited for,
#                                killed after SECS
#   bench_lab_up LAB             a fresh 3-node lab LAB (T_LAB), down at exit
#   bench_lab_down               ends the T_PIDS programs, takes T_LAB down
#   bench_nofile N               an fd limit for N connections, within the hard one
#   bench_job NODE NAME CMD...   `sockmig run --name NAME -- CMD...` on NODE;
#                                sets BJ_PID, BJ_ADDR, BJ_LOG, or BJ_ERR (status 1)
#   bench_stream TAG NODE ADDR:PORT CONNS RATE NOFILE SECS
#                                peer tcp-stream --conns CONNS --rate RATE from
#                                NODE in the background (T_PIDS[TAG]); status 1
#                                if it is not ready within SECS
#   bench_median [DECIMALS]      median of the numbers on stdin ("-" if none;
#                                the mean of the two middle ones has DECIMALS, 1)
#   bench_machine                the "machine: ..." line that heads a table

BENCH_HARD_NOFILE=$(ulimit -Hn)
[ "$BENCH_HARD_NOFILE" = unlimited ] && BENCH_HARD_NOFILE=1048576

bench_init() {
	T_NAME=$1
	t_init
	T_KEEP=1 # keep the logs: they are the raw results
	if [ -n "${2:-}" ]; then
		mkdir -p "$2" || exit 1
		rmdir "$T_DIR"
		T_DIR=$(cd "$2" && pwd)
	fi
}

bench_log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

bench_wait_file() {
	timeout "$3" grep -m1 -qE -- "$2" <(timeout "$3" tail -n +1 -F "$1" 2>/dev/null)
}

bench_wait_gone() {
	/usr/bin/python3 - "$1" "$2" <<'EOF'
import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    sys.exit(0)
sys.exit(0 if select.select([fd], [], [], float(sys.argv[2]))[0] else 1)
EOF
}

# (Not t_wait_exit: its timer outlives the program, SECS each time.)
bench_stop() {
	local pid=${T_PIDS[$1]}
	bench_wait_gone "$pid" "$2" || kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	unset "T_PIDS[$1]"
}

# (t_lab_up would list a reused name twice for the cleanup)
bench_lab_up() {
	local l known=
	"$SOCKMIG" lab down --name "$1" >/dev/null 2>&1
	T_LAB=$1
	for l in "${T_LABS[@]}"; do [ "$l" = "$1" ] && known=1; done
	[ -n "$known" ] || T_LABS+=("$1")
	"$SOCKMIG" lab up --nodes 3 --name "$1" >"$T_DIR/lab-$1.up" 2>&1 ||
		t_fail "lab up --nodes 3 --name $1 failed: $(cat "$T_DIR/lab-$1.up")"
}

bench_lab_down() {
	local t
	for t in "${!T_PIDS[@]}"; do t_kill "$t"; done
	"$SOCKMIG" lab down --name "$T_LAB" >/dev/null 2>&1
}

bench_nofile() {
	local n=$(($1 + 1024 > 4096 ? $1 + 1024 : 4096))
	[ "$n" -gt "$BENCH_HARD_NOFILE" ] && n=$BENCH_HARD_NOFILE
	echo "$n"
}

bench_job() {
	local node=$1 name=$2 out
	shift 2
	BJ_PID='' BJ_ADDR='' BJ_LOG='' BJ_ERR=''
	out=$(t_exec "$node" "$SOCKMIG" run --name "$name" -- "$@" 2>&1)
	if [[ $out =~ ^started\ job\ $name\ \(pid\ ([0-9]+)\)\ on\ $node\ with\ address\ ([0-9.]+)/[0-9]+\;\ its\ output\ goes\ to\ (.*)$ ]]; then
		BJ_PID=${BASH_REMATCH[1]} BJ_ADDR=${BASH_REMATCH[2]} BJ_LOG=${BASH_REMATCH[3]}
		return 0
	fi
	BJ_ERR="sockmig run: $out"
	return 1
}

bench_stream() {
	local tag=$1 node=$2 to=$3 conns=$4 rate=$5 nofile=$6 secs=$7
	t_spawn "$tag" "$node" bash -c "ulimit -n $nofile && exec $T_PROGS/peer tcp-stream --connect $to --conns $conns --rate $rate"
	bench_wait_file "$T_DIR/$tag.out" '^ready' "$secs"
}

bench_median() {
	sort -n | awk -v d="${1:-1}" '{ v[NR] = $1 }
		END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%." d "f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

bench_machine() {
	printf 'machine: %s CPUs, %s, kernel %s; sockmig %s\n' "$(nproc)" \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(uname -r)" \
		"$(git -C "$T_ROOT" describe --always --dirty 2>/dev/null || echo '?')"
}
