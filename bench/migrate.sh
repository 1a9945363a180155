#!/bin/bash
# The pause a peer sees while a whole process (an unmodified epoll echo
# server with 64 MiB of resident memory) moves with its N TCP connections
# through the daemons (`sockmig migrate PID --to NODE`), n1 -> n2 -> n1 ...
# Needs root; works only inside labs (sockmig lab), never in the machine's
# own network namespace.
#
#   bench/migrate.sh [--runs R] [--conns "1 100 1000"] [--ballast MIB]
#                    [--rate PKT/s] [--out DIR] [--debug]
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
# --debug: the labs' daemons run with SOCKMIG_DEBUG=1 (their phase lines,
# stamped on CLOCK_MONOTONIC, in their logs, copied to DIR/nN-NODE.log with a
# "bench: begin/end TAG" line around each move), the judge is
# $SOCKMIG_BUILD/bench/pp_trace (the same ping-pong, its gaps stamped on
# that clock), and bench/migrate_phases.py DIR prints where each pause went.
# (A daemon prints those lines only if it installs the library's debug log
# for SOCKMIG_DEBUG, as the CLI does.)
#
# SOCKMIG_BUILD=DIR picks the build (default: build), as for the tests.
# shellcheck source=tests/lib.sh disable=SC2034
. "$(dirname "$0")/../tests/lib.sh"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=5
CONNS="1 100 1000"
BALLAST=64
RATE=10
OUT=
DEBUG=
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--ballast) BALLAST=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--debug) DEBUG=1; shift ;;
	-h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--runs R] [--conns \"1 100 1000\"] [--ballast MIB] [--rate PKT/s] [--out DIR] [--debug]" >&2; exit 2 ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number" >&2; exit 2; }

bench_init bench_migrate "$OUT"
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
[ -x "$PEER" ] && [ -x "$ECHO" ] || t_fail "$PEER or $ECHO is not built; run make"
PP_TRACE=$T_BUILD/bench/pp_trace
[ -z "$DEBUG" ] || [ -x "$PP_TRACE" ] || t_fail "$PP_TRACE is not built; run make"
PORT=7000
RAW=$T_DIR/moves.tsv
printf 'conns\tmove\tfrom\tto\tstatus\tpause_ms\tfrozen_ms\tmigrate_wall_ms\tsockets\tnote\n' >"$RAW"

run_n() { # N: a lab, the job, the stream, RUNS moves; rows to $RAW
	local n=$1 labdir out pid addr jlog nofile secs from=n1 to=n2 k tag st pause frozen socks wall note t0 t1 new
	nofile=$(bench_nofile "$n")
	secs=$((20 + n / 100))
	[ -n "$DEBUG" ] && export SOCKMIG_DEBUG=1 # for the daemons only
	bench_lab_up "${T_ID}n$n"
	unset SOCKMIG_DEBUG
	labdir=/run/sockmig/labs/$T_LAB

	# shellcheck disable=SC2016 # the job's sh expands them
	if ! bench_job n1 echo sh -c 'ulimit -n "$1" 2>/dev/null; exec "$0" "$SOCKMIG_JOB_ADDR" '"$PORT"' --ballast "$2"' \
		"$ECHO" "$nofile" "$BALLAST"; then
		bench_log "n=$n: $BJ_ERR"
		printf '%s\t-\t-\t-\tFAIL\t-\t-\t-\t-\t%s\n' "$n" "$BJ_ERR" >>"$RAW"
		bench_lab_down
		return
	fi
	pid=$BJ_PID addr=$BJ_ADDR jlog=$BJ_LOG
	bench_wait_file "$jlog" '^listening$' 30 || { bench_log "n=$n: the job did not listen: $(tail -3 "$jlog")"; return; }
	bench_log "n=$n: job pid $pid at $addr ($(awk '/^VmRSS/ { print $2 / 1024 " MiB" }' "/proc/$pid/status") resident)"

	if [ "$n" -gt 1 ]; then
		bench_stream "n$n-stream" n3 "$addr:$PORT" $((n - 1)) "$RATE" "$nofile" "$secs" || { bench_log "n=$n: stream not ready: $(tail -2 "$T_DIR/n$n-stream.err")"; return; }
	fi

	for k in $(seq "$RUNS"); do
		tag="n$n-m$k" st=ok pause='' frozen='' socks='' wall='' note=''
		if [ -n "$DEBUG" ]; then
			t_spawn "$tag-pp" n3 "$PP_TRACE" "$addr" "$PORT" 1000 2 3600
		else
			t_spawn "$tag-pp" n3 "$PEER" tcp-pingpong --connect "$addr:$PORT" --interval-us 1000
		fi
		if ! bench_wait_file "$T_DIR/$tag-pp.out" '^ready' 10; then
			st=FAIL note="pingpong not ready"
		else
			sleep 0.5
			[ -n "$DEBUG" ] && echo "bench: begin $tag" | tee -a "$labdir/$from.log" >>"$labdir/$to.log"
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
			[ -n "$DEBUG" ] && echo "bench: end $tag" | tee -a "$labdir/$from.log" >>"$labdir/$to.log"
		fi
		kill -USR2 "${T_PIDS[$tag-pp]}" 2>/dev/null
		bench_stop "$tag-pp" 30
		if grep -q '^done count=' "$T_DIR/$tag-pp.out"; then
			pause=$(sed -nE 's/.*max_gap_ms=([0-9.]+).*/\1/p' "$T_DIR/$tag-pp.out")
		elif [ "$st" = ok ]; then
			st=FAIL note="pingpong: $(tail -1 "$T_DIR/$tag-pp.out")"
		fi
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$k" "$from" "$to" "$st" "${pause:--}" "${frozen:--}" \
			"${wall:--}" "${socks:--}" "$note" >>"$RAW"
		bench_log "$tag $from -> $to: $st pause=${pause:--} ms frozen=${frozen:--} ms wall=${wall:--} ms sockets=${socks:--} $note"
		[ -n "$frozen" ] || break # not moved: the rest would measure nothing
		bench_wait_gone "$pid" 10 || bench_log "$tag: the original pid $pid still runs"
		pid=$new
		local t=$from
		from=$to to=$t
	done

	if [ "$n" -gt 1 ]; then
		kill -USR2 "${T_PIDS[n$n-stream]}" 2>/dev/null
		bench_stop "n$n-stream" "$secs"
		bench_log "n=$n stream: $(tail -1 "$T_DIR/n$n-stream.out")"
		grep -qE '^done .* errors=0$' "$T_DIR/n$n-stream.out" ||
			printf '%s\t-\t-\t-\tFAIL\t-\t-\t-\t-\tstream: %s\n' "$n" "$(tail -1 "$T_DIR/n$n-stream.out")" >>"$RAW"
	fi
	cp "$labdir/n1.log" "$T_DIR/n$n-n1.log" 2>/dev/null
	cp "$labdir/n2.log" "$T_DIR/n$n-n2.log" 2>/dev/null
	bench_lab_down
}

maxof() { sort -n | tail -1; }
col() { # N COLUMN: the column's values of the good moves
	awk -F'\t' -v n="$1" -v c="$2" '$1 == n && $2 != "-" && $5 == "ok" && $c != "-" { print $c }' "$RAW"
}

table() {
	local n ok all stream
	printf '\n'
	bench_machine
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
			"$(col "$n" 6 | bench_median 1)" "$(col "$n" 6 | maxof)" "$(col "$n" 7 | bench_median 1)" "$(col "$n" 7 | maxof)" \
			"$(col "$n" 8 | bench_median 1)" "$(col "$n" 9 | bench_median 1)" "$stream"
	done
	printf '\nraw moves and logs: %s\n' "$T_DIR"
}

bench_log "results in $T_DIR"
for n in $CONNS; do
	run_n "$n"
done
table | tee "$T_DIR/table.md"
[ -z "$DEBUG" ] || "$(dirname "$0")/migrate_phases.py" "$T_DIR" | tee -a "$T_DIR/table.md"
exit 0
