#!/bin/bash
# The pause a peer sees while a whole process (an unmodified epoll echo
# server with 64 MiB of resident memory) moves with its N TCP connections
# through the daemons (`sockmig migrate PID --to NODE`), n1 -> n2 -> n1 ...
# Needs root; works only inside labs (sockmig lab), never in the machine's
# own network namespace.
#
#   bench/migrate.sh [--runs R] [--conns "1 100 1000"] [--ballast MIB]
#                    [--rate PKT/s] [--out DIR]
#
# Per N, in a fresh 3-node lab:
#   n1  sockmig run --name echo -- epoll_echo $SOCKMIG_JOB_ADDR 7000 --ballast 64
#       (a job: its own address from the daemon, which moves with it)
#   n3  peer tcp-stream --conns N-1 --rate 10   (background connections, 10
#       packets/s each; only with N > 1: peer's tcp-pingpong has one
#       connection, so the other N-1 come from a stream)
# then R moves, alternately n1 -> n2 and n2 -> n1; for each move a fresh
#   n3  peer tcp-pingpong --interval-us 1000    (the judge: one ping a ms)
# is started, the job is moved 0.5 s later (`sockmig migrate PID --to NODE`
# run on the node it is on), and 0.5 s after that the ping-pong gets
# SIGUSR2: its max_gap_ms is the peer's pause for that move (a move counts
# only if the ping-pong ended with `done`, every ping answered). The
# migrate command's "frozen X ms" and its wall time are recorded too. At the
# end the stream must report errors=0 (every byte back, in order).
# Prints per N the median and max of the pause and of frozen. Raw rows and
# every program's output stay in DIR (default: a new /tmp/sockmig-test.*).
#
# SOCKMIG_BUILD=DIR picks the build (default: build), as for the tests.
# shellcheck source=tests/lib.sh disable=SC2034
. "$(dirname "$0")/../tests/lib.sh"

RUNS=5
CONNS="1 100 1000"
BALLAST=64
RATE=10
OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--ballast) BALLAST=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--runs R] [--conns \"1 100 1000\"] [--ballast MIB] [--rate PKT/s] [--out DIR]" >&2; exit 2 ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number" >&2; exit 2; }

T_NAME=bench_migrate
t_init
T_KEEP=1 # keep the logs: they are the raw results
if [ -n "$OUT" ]; then
	mkdir -p "$OUT" || exit 1
	rmdir "$T_DIR"
	T_DIR=$(cd "$OUT" && pwd)
fi
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
[ -x "$PEER" ] && [ -x "$ECHO" ] || t_fail "$PEER or $ECHO is not built; run make"
PORT=7000
RAW=$T_DIR/moves.tsv
HARD_NOFILE=$(ulimit -Hn)
[ "$HARD_NOFILE" = unlimited ] && HARD_NOFILE=1048576
printf 'conns\tmove\tfrom\tto\tstatus\tpause_ms\tfrozen_ms\tmigrate_wall_ms\tsockets\tnote\n' >"$RAW"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# wait (bounded) for a line of FILE as it grows; 1 if it did not come
wait_file() { # FILE REGEX SECS
	timeout "$3" grep -m1 -qE -- "$2" <(timeout "$3" tail -n +1 -F "$1" 2>/dev/null)
}
# the process ends within SECS (pidfd poll)
wait_gone() { # PID SECS
	/usr/bin/python3 - "$1" "$2" <<'EOF'
import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    sys.exit(0)
sys.exit(0 if select.select([fd], [], [], float(sys.argv[2]))[0] else 1)
EOF
}

# TAG SECS: wait for a program told to stop (SIGUSR2); killed after SECS.
# (Not t_wait_exit: here its timer outlived the program, 30 s a move.)
stop() {
	local pid=${T_PIDS[$1]}
	wait_gone "$pid" "$2" || kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	unset "T_PIDS[$1]"
}

run_n() { # N: a lab, the job, the stream, RUNS moves; rows to $RAW
	local n=$1 out pid addr jlog nofile secs from=n1 to=n2 k tag st pause frozen socks wall note t0 t1 new
	nofile=$((n + 1024 > 4096 ? n + 1024 : 4096))
	[ "$nofile" -gt "$HARD_NOFILE" ] && nofile=$HARD_NOFILE
	secs=$((20 + n / 100))
	T_LAB="${T_ID}n$n"
	t_lab_up 3 "$T_LAB"

	out=$(t_exec n1 "$SOCKMIG" run --name echo -- sh -c 'ulimit -n "$1" 2>/dev/null; exec "$0" "$SOCKMIG_JOB_ADDR" '"$PORT"' --ballast "$2"' \
		"$ECHO" "$nofile" "$BALLAST" 2>&1)
	if ! [[ $out =~ ^started\ job\ echo\ \(pid\ ([0-9]+)\)\ on\ n1\ with\ address\ ([0-9.]+)/24\;\ its\ output\ goes\ to\ (.*)$ ]]; then
		log "n=$n: sockmig run: $out"
		printf '%s\t-\t-\t-\tFAIL\t-\t-\t-\t-\tsockmig run: %s\n' "$n" "$out" >>"$RAW"
		"$SOCKMIG" lab down --name "$T_LAB" >/dev/null 2>&1
		return
	fi
	pid=${BASH_REMATCH[1]} addr=${BASH_REMATCH[2]} jlog=${BASH_REMATCH[3]}
	wait_file "$jlog" '^listening$' 30 || { log "n=$n: the job did not listen: $(tail -3 "$jlog")"; return; }
	log "n=$n: job pid $pid at $addr ($(awk '/^VmRSS/ { print $2 / 1024 " MiB" }' "/proc/$pid/status") resident)"

	if [ "$n" -gt 1 ]; then
		t_spawn "n$n-stream" n3 bash -c "ulimit -n $nofile && exec $PEER tcp-stream --connect $addr:$PORT --conns $((n - 1)) --rate $RATE"
		wait_file "$T_DIR/n$n-stream.out" '^ready' "$secs" || { log "n=$n: stream not ready: $(tail -2 "$T_DIR/n$n-stream.err")"; return; }
	fi

	for k in $(seq "$RUNS"); do
		tag="n$n-m$k" st=ok pause='' frozen='' socks='' wall='' note=''
		t_spawn "$tag-pp" n3 "$PEER" tcp-pingpong --connect "$addr:$PORT" --interval-us 1000
		if ! wait_file "$T_DIR/$tag-pp.out" '^ready' 10; then
			st=FAIL note="pingpong not ready"
		else
			sleep 0.5
			t0=$(date +%s%N)
			t_exec "$from" "$SOCKMIG" migrate "$pid" --to "$to" >"$T_DIR/$tag-migrate.out" 2>&1 || st=FAIL
			t1=$(date +%s%N)
			wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
			out=$(cat "$T_DIR/$tag-migrate.out")
			# moved pid P (job echo) from A to B (pid Q there): S sockets, frozen X ms
			if [[ $out =~ ^moved\ pid\ $pid\ \(job\ echo\)\ from\ $from\ to\ $to\ \(pid\ ([0-9]+)\ there\):\ ([0-9]+)\ sockets,\ frozen\ ([0-9.]+)\ ms$ ]]; then
				new=${BASH_REMATCH[1]} socks=${BASH_REMATCH[2]} frozen=${BASH_REMATCH[3]}
			else
				st=FAIL note="migrate: $out"
			fi
			sleep 0.5
		fi
		kill -USR2 "${T_PIDS[$tag-pp]}" 2>/dev/null
		stop "$tag-pp" 30
		if grep -q '^done count=' "$T_DIR/$tag-pp.out"; then
			pause=$(sed -nE 's/.*max_gap_ms=([0-9.]+).*/\1/p' "$T_DIR/$tag-pp.out")
		elif [ "$st" = ok ]; then
			st=FAIL note="pingpong: $(tail -1 "$T_DIR/$tag-pp.out")"
		fi
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$k" "$from" "$to" "$st" "${pause:--}" "${frozen:--}" \
			"${wall:--}" "${socks:--}" "$note" >>"$RAW"
		log "$tag $from -> $to: $st pause=${pause:--} ms frozen=${frozen:--} ms wall=${wall:--} ms sockets=${socks:--} $note"
		[ -n "$frozen" ] || break # not moved: the rest would measure nothing
		wait_gone "$pid" 10 || log "$tag: the original pid $pid still runs"
		pid=$new
		local t=$from
		from=$to to=$t
	done

	if [ "$n" -gt 1 ]; then
		kill -USR2 "${T_PIDS[n$n-stream]}" 2>/dev/null
		stop "n$n-stream" "$secs"
		log "n=$n stream: $(tail -1 "$T_DIR/n$n-stream.out")"
		grep -qE '^done .* errors=0$' "$T_DIR/n$n-stream.out" ||
			printf '%s\t-\t-\t-\tFAIL\t-\t-\t-\t-\tstream: %s\n' "$n" "$(tail -1 "$T_DIR/n$n-stream.out")" >>"$RAW"
	fi
	local t
	for t in "${!T_PIDS[@]}"; do t_kill "$t"; done
	"$SOCKMIG" lab down --name "$T_LAB" >/dev/null 2>&1
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxof() { sort -n | tail -1; }
col() { # N COLUMN: the column's values of the good moves
	awk -F'\t' -v n="$1" -v c="$2" '$1 == n && $2 != "-" && $5 == "ok" && $c != "-" { print $c }' "$RAW"
}

table() {
	local n ok all stream
	printf '\nmachine: %s CPUs, %s, kernel %s; sockmig %s\n' "$(nproc)" \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" "$(uname -r)" \
		"$(git -C "$T_ROOT" describe --always --dirty 2>/dev/null || echo '?')"
	printf 'epoll_echo --ballast %s; background tcp-stream --rate %s per connection; peer pause = ping-pong max_gap_ms (1 ping/ms), per move\n\n' "$BALLAST" "$RATE"
	printf '| conns | moves ok | peer pause ms, median | max | frozen ms, median | max | migrate wall ms, median | sockets moved | stream intact |\n'
	printf '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n'
	for n in $CONNS; do
		all=$(awk -F'\t' -v n="$n" '$1 == n && $2 != "-"' "$RAW" | wc -l)
		[ "$all" -gt 0 ] || continue
		ok=$(col "$n" 5 | wc -l)
		stream=-
		[ "$n" -gt 1 ] && stream=$(awk -F'\t' -v n="$n" '$1 == n && $10 ~ /^stream/ { bad = 1 } END { print bad ? "no" : "yes" }' "$RAW")
		printf '| %s | %s/%s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$ok" "$all" \
			"$(col "$n" 6 | median)" "$(col "$n" 6 | maxof)" "$(col "$n" 7 | median)" "$(col "$n" 7 | maxof)" \
			"$(col "$n" 8 | median)" "$(col "$n" 9 | median)" "$stream"
	done
	printf '\nraw moves and logs: %s\n' "$T_DIR"
}

log "results in $T_DIR"
for n in $CONNS; do
	run_n "$n"
done
table | tee "$T_DIR/table.md"
exit 0
