#!/bin/bash
# The pause a peer sees while a live server's TCP connections move from one
# node to another (sockmig sockets save/restore with --move-address), for N
# connections, with the packets captured during the freeze replayed on the
# destination or dropped (SOCKMIG_NO_REPLAY=1). Needs root; works only inside
# labs (sockmig lab), never in the machine's own network namespace.
#
#   bench/sockets_move.sh [--runs R] [--conns "1 100 1000 10000"]
#                         [--replay "on off"] [--rate B/s] [--out DIR] [--debug]
#                         [--quiesce]
#
# Each run, in a fresh 3-node lab:
#   n1  peer tcp-echo --listen 198.18.0.100:7000   (job address on eth0), serving
#   n3  peer tcp-stream --conns N-1 --rate 1000    (low-rate background connections;
#       peer sends ~5 ms of data at a time: 200 packets/s per connection
#       whatever the rate above 200 B/s, --rate R below 200 sends R packets/s)
#       then peer tcp-pingpong --interval-us 1000  (the judge: one ping a ms)
#   n2  sockmig sockets restore --listen 198.18.0.2:9000 --take-address eth0 --
#           peer tcp-echo --fd F...                 (the same fd numbers)
#   n1  sockmig sockets save HOLDER --fd F... --to 198.18.0.2:9000 --move-address eth0
# then ~1 s more of ping-pong, SIGUSR2, and the ping-pong's max_gap_ms is the
# longest pause the peer saw (it must end with "done": every ping answered);
# the stream's end is noted too (a mismatch there is not a failure of the move:
# the holder is not quiesced). Per run it records the pause, frozen
# ms (save's stats line), save and restore us per socket, captured packets.
# Prints medians per (N, replay) and min/max of the pause. Raw per-run rows and
# every program's output stay in DIR (default: a new /tmp/sockmig-bench.*).
# --debug runs save and restore with SOCKMIG_DEBUG=1 (timestamped phases in
# DIR/*-save.out and *-restore.err); it slows them down a little.
# --quiesce (a check, not a measurement) quiesces the holder (SIGUSR1) before
# the move: the streams must then stay intact; the pause means nothing.
#
# SOCKMIG_BUILD=DIR picks the build (default: build), as for the tests.
# shellcheck source=tests/lib.sh disable=SC2034
. "$(dirname "$0")/../tests/lib.sh"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=5
CONNS="1 100 1000 10000"
REPLAYS="on off"
RATE=1000
OUT=
DEBUG=
QUIESCE=
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--conns) CONNS=$2; shift 2 ;;
	--replay) REPLAYS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--debug) DEBUG=1; shift ;;
	--quiesce) QUIESCE=1; shift ;;
	-h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--runs R] [--conns \"1 100 1000\"] [--replay \"on off\"] [--out DIR] [--debug]" >&2; exit 2 ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number" >&2; exit 2; }

bench_init bench_sockets_move "$OUT"
PEER=$T_PROGS/peer
[ -x "$PEER" ] || t_fail "$PEER is not built; run make"
ADDR=198.18.0.100
PORT=7000
CHAN=198.18.0.2:9000
RAW=$T_DIR/runs.tsv
printf 'conns\treplay\trun\tstatus\tpause_ms\tfrozen_ms\tsave_us_per_sock\trestore_us_per_sock\tcaptured\tmax_rtt_ms\tsave_wall_ms\tstream\tnote\n' >"$RAW"

# wait (bounded) for a line of TAG's stdout; 1 if it did not come
wait_line() { bench_wait_file "$T_DIR/$1.out" "$2" "$3"; } # TAG REGEX SECS

# fds of the holder's established connections on n1, one per line
holder_fds() {
	t_exec n1 ss -Htnp state established "( sport = :$PORT )" | grep -o 'fd=[0-9]*' | cut -d= -f2 | sort -n
}

NOFILE=
run_one() { # N REPLAY K: one run; prints a row to $RAW
	local n=$1 replay=$2 k=$3 tag="n$1-$2-$3" secs fds nfds hpid save_rc t0 t1
	local pause='' frozen='' save_ms='' restore_ms='' captured='' rtt='' wall='' note='' st=ok stream=-
	# restore parks the sockets at fd 100000+ before putting them at their
	# numbers, or at 1024+ if the limit is lower, which collides with target
	# numbers above 1024: give large N room above 100000.
	# (without CAP_SYS_RESOURCE the hard limit is the ceiling).
	NOFILE=$((n + 1024 > 4096 ? n + 1024 : 4096))
	[ "$n" -ge 900 ] && NOFILE=$((100000 + 2 * n + 1024))
	[ "$NOFILE" -gt "$BENCH_HARD_NOFILE" ] && NOFILE=$BENCH_HARD_NOFILE
	secs=$((20 + n / 200))
	fail() { st=FAIL; note=$*; bench_log "$tag: FAIL: $*"; }

	bench_lab_up "${T_ID}r" # one lab name, reused
	t_exec n1 ip addr add "$ADDR/24" dev eth0 || { fail "address"; }

	while [ "$st" = ok ]; do
		t_spawn "$tag-holder" n1 bash -c "ulimit -n $NOFILE && exec $PEER tcp-echo --listen $ADDR:$PORT"
		wait_line "$tag-holder" '^ready' 10 || { fail "holder not ready"; break; }
		hpid=${T_PIDS[$tag-holder]}
		if [ "$n" -gt 1 ]; then
			bench_stream "$tag-stream" n3 "$ADDR:$PORT" $((n - 1)) "$RATE" "$NOFILE" "$secs" || { fail "stream not ready"; break; }
		fi
		# the judge comes last, so that it measures the move, not the setup
		t_spawn "$tag-pp" n3 "$PEER" tcp-pingpong --connect "$ADDR:$PORT" --interval-us 1000
		wait_line "$tag-pp" '^ready' 10 || { fail "pingpong not ready"; break; }
		local i
		for i in $(seq 100); do
			nfds=$(holder_fds | wc -l)
			[ "$nfds" -ge "$n" ] && break
			sleep 0.1
		done
		fds=$(holder_fds)
		nfds=$(wc -w <<<"$fds")
		[ "$nfds" = "$n" ] || { fail "holder has $nfds established connections, not $n"; break; }
		sleep 0.3 # steady state

		if [ -n "$QUIESCE" ]; then
			kill -USR1 "$hpid"
			wait_line "$tag-holder" '^quiesced' 10 || { fail "holder not quiesced"; break; }
		fi
		local fdargs=()
		for i in $fds; do fdargs+=(--fd "$i"); done
		local env=()
		[ "$replay" = off ] && env+=(SOCKMIG_NO_REPLAY=1)
		[ -n "$DEBUG" ] && env+=(SOCKMIG_DEBUG=1)
		t_spawn "$tag-restore" n2 env "${env[@]}" bash -c "ulimit -n $NOFILE && exec \"\$@\"" restore \
			"$SOCKMIG" sockets restore --listen "$CHAN" --take-address eth0 -- "$PEER" tcp-echo "${fdargs[@]}"
		wait_line "$tag-restore" '^listening' 10 || { fail "restore not listening"; break; }
		t0=$(date +%s%N)
		t_exec n1 env "${env[@]}" bash -c "ulimit -n $NOFILE && exec \"\$@\"" save \
			"$SOCKMIG" sockets save "$hpid" "${fdargs[@]}" --to "$CHAN" --move-address eth0 \
			>"$T_DIR/$tag-save.out" 2>&1
		save_rc=$?
		t1=$(date +%s%N)
		wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
		[ "$save_rc" = 0 ] || { fail "save: $(grep -v '^sockmig: *[0-9]' "$T_DIR/$tag-save.out" | head -1)"; break; }
		wait_line "$tag-restore" '^ready' "$secs" || { fail "restored echo not ready"; break; }
		sleep 1
		kill -USR2 "${T_PIDS[$tag-pp]}"
		t_wait_exit "$tag-pp" 30 || fail "pingpong: $(tail -1 "$T_DIR/$tag-pp.out")"
		if [ "$n" -gt 1 ]; then
			kill -USR2 "${T_PIDS[$tag-stream]}" 2>/dev/null # gone already if it failed
			# Not a failure of the move: the holder is not quiesced, so
			# bytes it had read but not yet echoed when it was stopped
			# stay in its memory; the stream sees them missing.
			t_wait_exit "$tag-stream" "$secs"
			if grep -qE '^done .* errors=0$' "$T_DIR/$tag-stream.out"; then
				stream=ok
			else
				stream=err
				note="stream: $(tail -1 "$T_DIR/$tag-stream.out")"
			fi
		fi
		grep -q '^done count=' "$T_DIR/$tag-pp.out" || fail "pingpong: $(tail -1 "$T_DIR/$tag-pp.out")"
		break
	done

	# moved N sockets (N TCP, 0 UDP): frozen X ms, saved in X ms, restored in X ms, Q queued datagrams, A + B captured packets replayed
	local sl rl
	sl=$(grep '^moved ' "$T_DIR/$tag-save.out" 2>/dev/null | tail -1)
	rl=$(grep '^restored ' "$T_DIR/$tag-restore.err" 2>/dev/null | tail -1)
	frozen=$(sed -nE 's/.*frozen ([0-9.]+) ms.*/\1/p' <<<"$sl")
	save_ms=$(sed -nE 's/.*saved in ([0-9.]+) ms.*/\1/p' <<<"$sl")
	restore_ms=$(sed -nE 's/.*restored in ([0-9.]+) ms.*/\1/p' <<<"$rl")
	captured=$(sed -nE 's/.* ([0-9]+) \+ ([0-9]+) captured.*/\1+\2/p' <<<"$rl")
	pause=$(sed -nE 's/.*max_gap_ms=([0-9.]+).*/\1/p' "$T_DIR/$tag-pp.out" 2>/dev/null | tail -1)
	rtt=$(sed -nE 's/.*max_rtt_ms=([0-9.]+).*/\1/p' "$T_DIR/$tag-pp.out" 2>/dev/null | tail -1)
	us() { [ -n "$1" ] && awk -v m="$1" -v n="$n" 'BEGIN { printf "%.1f", m * 1000 / n }'; }
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$replay" "$k" "$st" "${pause:--}" "${frozen:--}" \
		"$(us "$save_ms" || echo -)" "$(us "$restore_ms" || echo -)" "${captured:--}" "${rtt:--}" "${wall:--}" "$stream" "$note" >>"$RAW"
	bench_log "$tag: $st pause=${pause:--} ms frozen=${frozen:--} ms save=${save_ms:--} ms restore=${restore_ms:--} ms captured=${captured:--} save-wall=${wall:--} ms stream=$stream $note"

	bench_lab_down
}

col() { # N REPLAY COLUMN: the column's values of the good runs
	awk -F'\t' -v n="$1" -v r="$2" -v c="$3" '$1 == n && $2 == r && $4 == "ok" && $c != "-" { print $c }' "$RAW"
}

table() {
	local n r ok all
	printf '\n'
	bench_machine
	printf 'background: tcp-stream --rate %s per connection; peer pause = ping-pong max_gap_ms (1 ping/ms); medians over the good runs\n\n' "$RATE"
	printf '| conns | replay | runs ok | peer pause ms (min-max) | frozen ms | save us/sock | restore us/sock | captured src+dst | save wall ms | streams intact |\n'
	printf '| ---: | --- | --- | --- | ---: | ---: | ---: | --- | ---: | --- |\n'
	for n in $CONNS; do
		for r in $REPLAYS; do
			all=$(awk -F'\t' -v n="$n" -v r="$r" '$1 == n && $2 == r' "$RAW" | wc -l)
			[ "$all" -gt 0 ] || continue
			ok=$(col "$n" "$r" 4 | wc -l)
			printf '| %s | %s | %s/%s | %s (%s-%s) | %s | %s | %s | %s | %s | %s |\n' "$n" "$r" "$ok" "$all" \
				"$(col "$n" "$r" 5 | bench_median 3)" "$(col "$n" "$r" 5 | sort -n | head -1)" "$(col "$n" "$r" 5 | sort -n | tail -1)" \
				"$(col "$n" "$r" 6 | bench_median 3)" "$(col "$n" "$r" 7 | bench_median 3)" "$(col "$n" "$r" 8 | bench_median 3)" \
				"$(col "$n" "$r" 9 | sort -t+ -k1,1n | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "-") }')" \
				"$(col "$n" "$r" 11 | bench_median 3)" \
				"$(awk -F'\t' -v n="$n" -v r="$r" '$1 == n && $2 == r && $12 != "-" { t++; if ($12 == "ok") k++ } END { print (t ? k + 0 "/" t : "-") }' "$RAW")"
		done
	done
	printf '\nraw runs and logs: %s\n' "$T_DIR"
}

bench_log "results in $T_DIR"
for n in $CONNS; do
	for r in $REPLAYS; do
		for k in $(seq "$RUNS"); do
			run_one "$n" "$r" "$k"
		done
	done
done
table | tee "$T_DIR/table.md"
exit 0
