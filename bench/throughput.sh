#!/bin/bash
# The throughput of one TCP flow between a server and a peer on n3, before
# and after the server moves n1 -> n2, for each mode of `sockmig migrate`:
# what a moved connection costs once the move is over (mode move should cost
# nothing; forward sends every packet through n1). Needs root; works only
# inside labs (sockmig lab), never in the machine's own network namespace.
#
#   bench/throughput.sh [--runs N] [--window SECS] [--out DIR] [MODE...]
#
# MODE: auto, move, forward, rewrite (default: all four). A mode that
# `sockmig migrate` refuses as such (not implemented, not a mode, refused by
# the destination) is reported "not available" with the CLI's sentence, and
# its other runs are skipped; so the bench runs today and once the modes exist.
# MODE none is the control: the same runs without the move, so its ratio's
# spread is what the machine's own noise does to two windows in a row.
#
# Each run, in a fresh 3-node lab:
#   n1  the server, tests/progs/epoll_echo (unmodified, one thread):
#       auto, move: a job, `sockmig run -- epoll_echo $SOCKMIG_JOB_ADDR 7000`
#         (an address of its own, which moves with it); moved by name
#       forward, rewrite: `sockmig lab exec n1 -- epoll_echo 198.18.0.1 7000`,
#         an adopted process on the node's own address; moved by pid
#   n3  peer tcp-stream --conns 1 (as fast as it goes, at most 4 MiB not yet
#       echoed, every byte checked); its progress lines (bytes echoed and
#       verified, one a second) are stamped with the time they arrive
# then 3 s of warm-up, the "before" window (SECS, default 5), `sockmig
# migrate SERVER --to n2 --mode MODE` on n1, 1 s to settle, the "after"
# window. Throughput: bytes verified in the window / its length, MB/s (10^6
# bytes; every byte also crosses the wire back). A run counts only if the
# move succeeded and the peer ended with errors=0. The table gives per mode
# the medians over the good runs (ratio: median of after/before per run).
# Raw rows (DIR/runs.tsv), every program's output and the daemons' logs of
# n1 and n2 stay in DIR (default: a new /tmp/sockmig-test.*).
#
# SOCKMIG_BUILD=DIR picks the build (default: build), as for the tests.
# shellcheck source=tests/lib.sh disable=SC2034
. "$(dirname "$0")/../tests/lib.sh"
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

RUNS=3
WINDOW=5
OUT=
MODES=()
usage="usage: $0 [--runs N] [--window SECS] [--out DIR] [auto|move|forward|rewrite|none]..."
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=${2:-}; shift 2 ;;
	--window) WINDOW=${2:-}; shift 2 ;;
	--out) OUT=${2:-}; shift 2 ;;
	-h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "$usage" >&2; exit 2 ;;
	*) MODES+=("$1"); shift ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number" >&2; exit 2; }
[[ $WINDOW =~ ^[1-9][0-9]*$ ]] || { echo "--window takes a whole number of seconds" >&2; exit 2; }
[ ${#MODES[@]} -gt 0 ] || MODES=(auto move forward rewrite)

bench_init bench_throughput "$OUT"
ECHO=$T_PROGS/epoll_echo
{ [ -x "$T_PROGS/peer" ] && [ -x "$ECHO" ]; } || t_fail "$T_PROGS/peer or $ECHO is not built; run make"
PORT=7000
RAW=$T_DIR/runs.tsv
printf 'mode\trun\tstatus\tbefore_MBps\tafter_MBps\tratio\tfrozen_ms\tstream\tnote\n' >"$RAW"

# TAG NODE CMD...: t_spawn, but each stderr line is stamped with the time it
# arrived ($EPOCHREALTIME), so that a window's length is measured here and
# not taken from the peer's once-a-second rhythm.
spawn_stamped() {
	local tag=$1 node=$2
	shift 2
	"$SOCKMIG" lab exec --name "$T_LAB" "$node" -- "$@" >"$T_DIR/$tag.out" \
		2> >(while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >"$T_DIR/$tag.err") &
	T_PIDS[$tag]=$!
}

# TAG SKIP SECS: skip SKIP new progress lines of TAG, then print the MB/s
# verified between the next one and the first one SECS or more after it;
# nothing if the lines stop coming (bounded).
window() {
	local f=$T_DIR/$1.err n
	n=$(wc -l <"$f")
	timeout $(($2 + $3 + 15)) tail -n +$((n + 1)) -F "$f" 2>/dev/null | awk -v skip="$2" -v s="$3" '
		/ progress / {
			if (skip-- > 0) next
			match($0, /verified=[0-9]+/)
			v = substr($0, RSTART + 9, RLENGTH - 9) + 0
			if (t0 == "") { t0 = $1; v0 = v; next }
			if ($1 - t0 >= s - 0.05) { printf "%.1f\n", (v - v0) / ($1 - t0) / 1e6; exit }
		}'
}

NA=() # modes found not available, with the sentence: "MODE\tSENTENCE"
run_one() { # MODE K: one run; a row to $RAW; status 2 if the mode is not available
	local mode=$1 k=$2 tag="$1-$2" what pid addr out before='' after='' ratio='' frozen='' st=ok stream=- note='' new
	bench_lab_up "${T_ID}t"
	fail() { st=FAIL note=$*; bench_log "$tag: FAIL: $*"; }

	while :; do
		if [ "$mode" = auto ] || [ "$mode" = move ] || [ "$mode" = none ]; then
			# shellcheck disable=SC2016 # the job's sh expands it
			bench_job n1 tput sh -c 'exec "$0" "$SOCKMIG_JOB_ADDR" '"$PORT" "$ECHO" || { fail "$BJ_ERR"; break; }
			pid=$BJ_PID addr=$BJ_ADDR what=tput
			bench_wait_file "$BJ_LOG" '^listening$' 20 || { fail "the job did not listen"; break; }
		else
			addr=198.18.0.1
			t_spawn "$tag-srv" n1 "$ECHO" "$addr" "$PORT"
			pid=${T_PIDS[$tag-srv]} what=${T_PIDS[$tag-srv]} # lab exec execs: the server itself
			bench_wait_file "$T_DIR/$tag-srv.out" '^listening$' 20 || { fail "the server did not listen"; break; }
		fi
		spawn_stamped "$tag-st" n3 "$T_PROGS/peer" tcp-stream --connect "$addr:$PORT" --conns 1
		bench_wait_file "$T_DIR/$tag-st.out" '^ready' 20 || { fail "the stream did not start"; break; }
		before=$(window "$tag-st" 3 "$WINDOW")
		[ -n "$before" ] || { fail "no progress from the stream before the move"; break; }
		if [ "$mode" = none ]; then
			after=$(window "$tag-st" 1 "$WINDOW")
			[ -n "$after" ] || fail "no progress from the stream in the second window"
			break
		fi

		out=$(t_exec n1 "$SOCKMIG" migrate "$what" --to n2 --mode "$mode" 2>&1)
		printf '%s\n' "$out" >"$T_DIR/$tag-migrate.out"
		if ! [[ $out =~ ^moved\ pid\ $pid\ (.*\ )?from\ n1\ to\ n2\ \(pid\ ([0-9]+)\ there\):\ .*frozen\ ([0-9.]+)\ ms(,\ .*)?$ ]]; then
			if grep -qiE "mode" <<<"$out"; then
				st=NA note=$(head -1 <<<"$out")
				bench_log "$tag: mode $mode is not available: $note"
			else
				fail "migrate: $out"
			fi
			break
		fi
		new=${BASH_REMATCH[2]} frozen=${BASH_REMATCH[3]}
		bench_wait_gone "$pid" 10 || bench_log "$tag: the original pid $pid still runs"
		kill -0 "$new" 2>/dev/null || { fail "the moved server (pid $new) does not run"; break; }
		after=$(window "$tag-st" 1 "$WINDOW")
		[ -n "$after" ] || fail "no progress from the stream after the move"
		break
	done

	if [ -n "${T_PIDS[$tag-st]:-}" ]; then
		kill -USR2 "${T_PIDS[$tag-st]}" 2>/dev/null
		bench_stop "$tag-st" 30
		if grep -qE '^done .* errors=0$' "$T_DIR/$tag-st.out"; then
			stream=ok
		else
			stream=err
			[ "$st" = ok ] && fail "stream: $(tail -1 "$T_DIR/$tag-st.out")"
		fi
	fi
	[ -n "$before" ] && [ -n "$after" ] && ratio=$(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.3f", a / b }')
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$k" "$st" "${before:--}" "${after:--}" "${ratio:--}" \
		"${frozen:--}" "$stream" "$note" >>"$RAW"
	bench_log "$tag: $st before=${before:--} MB/s after=${after:--} MB/s ratio=${ratio:--} frozen=${frozen:--} ms stream=$stream $note"
	cp "/run/sockmig/labs/$T_LAB/n1.log" "$T_DIR/$tag-n1.log" 2>/dev/null
	cp "/run/sockmig/labs/$T_LAB/n2.log" "$T_DIR/$tag-n2.log" 2>/dev/null
	bench_lab_down
	[ "$st" = NA ] && return 2
	return 0
}

col() { # MODE COLUMN: the column's values of the good runs
	awk -F'\t' -v m="$1" -v c="$2" '$1 == m && $3 == "ok" && $c != "-" { print $c }' "$RAW"
}

table() {
	local m all ok note what na
	printf '\n'
	bench_machine
	printf 'one TCP flow, peer tcp-stream --conns 1 (n3) to epoll_echo (n1, then n2); MB/s echoed and verified over %s s before and after the move; medians\n\n' "$WINDOW"
	printf '| mode | server | runs ok | before MB/s | after MB/s | after/before (min-max) | frozen ms |\n'
	printf '| --- | --- | --- | ---: | ---: | ---: | ---: |\n'
	for m in "${MODES[@]}"; do
		all=$(awk -F'\t' -v m="$m" '$1 == m' "$RAW" | wc -l)
		[ "$all" -gt 0 ] || continue
		case $m in
		auto | move) what="job (own address)" ;;
		none) what="job, not moved (control)" ;;
		*) what="adopted (node's address)" ;;
		esac
		note=$(awk -F'\t' -v m="$m" '$1 == m && $3 == "NA" { print $9; exit }' "$RAW")
		if [ -n "$note" ]; then
			printf '| %s | %s | not available | - | - | - | - |\n' "$m" "$what"
			continue
		fi
		ok=$(col "$m" 3 | wc -l)
		printf '| %s | %s | %s/%s | %s | %s | %s (%s-%s) | %s |\n' "$m" "$what" "$ok" "$all" \
			"$(col "$m" 4 | bench_median 1)" "$(col "$m" 5 | bench_median 1)" "$(col "$m" 6 | bench_median 3)" \
			"$(col "$m" 6 | sort -n | head -1)" "$(col "$m" 6 | sort -n | tail -1)" "$(col "$m" 7 | bench_median 1)"
	done
	na=$(awk -F'\t' '$3 == "NA" && !seen[$1]++ { printf "%s: not available: %s\n", $1, $9 }' "$RAW")
	[ -z "$na" ] || printf '\n%s\n' "$na"
	awk -F'\t' '$3 == "FAIL" { printf "%s run %s failed: %s\n", $1, $2, $9 }' "$RAW"
	printf '\nraw runs and logs: %s\n' "$T_DIR"
}

bench_log "results in $T_DIR"
for m in "${MODES[@]}"; do
	for k in $(seq "$RUNS"); do
		run_one "$m" "$k" || break # not available: its other runs would say the same
	done
done
table | tee "$T_DIR/table.md"
exit 0
