#!/bin/bash
# Process checkpoint and restore against the size of the process: wall time
# of `sockmig checkpoint PID -o IMAGE` and `sockmig restore IMAGE`, and how
# long the process is frozen, for N MiB of touched anonymous memory and for N
# small mappings. Needs root (ptrace of another user's process is not the
# point); no lab, no network namespace is made or touched.
#
#   bench/ckpt.sh [--runs R] [--mem "1 16 64 256 1024"] [--maps "10 1000 10000"]
#                 [--disk "256"] [--precopy "1 64 1024"] [--rounds 3] [--dirty-pages 1]
#                 [--out DIR] [--profile MIB]
#
# The target is build/bench/ckpt_mem (see its header): --mem MIB writes every
# word of one anonymous mapping with a non-zero pseudo-random value (zero
# pages are left out of an image), --maps N makes N one-page mappings with
# data; it prints "ready ... sum=S", keeps only fds 0-2 and one thread.
#
# Each run, for one row:
#   1. start the target, wait for "ready";
#   2. frozen: `sockmig checkpoint PID -o IMAGE --leave-running`; the target
#      sleeps 1 ms at a time and reports (SIGUSR1) the longest gap between
#      two wake-ups: frozen = that gap - 1 ms, the time it was stopped as it
#      saw it (the checkpoint's own stop .. image written, fsynced, renamed ..
#      resume). The image is then deleted.
#   3. `sockmig checkpoint PID -o IMAGE` (the original is killed): wall time;
#   4. `sockmig restore IMAGE --stdout F` (with --detach where restore has
#      it): wall time, until it returns with the new process running. The
#      restored process notices its new pid or pid namespace, hashes its
#      memory again and prints "restored pid=P pidns=... sum=S": a run counts
#      only if S is the original's and it is a new process (restore printed
#      another pid than the original's, and P is that pid or the pid
#      namespace changed).
# Wall times include starting the sockmig binary (printed once, as
# "CLI start"). Images go to /dev/shm (tmpfs: the memory's cost, not a
# disk's); the --disk rows put them in a directory on /tmp's filesystem,
# and drop that image's page cache (dd iflag=nocache) before the restore so
# the restore reads the disk. A row whose size needs more than 3x its memory
# free (original + image + the restore's staging + the new process) is
# skipped with a note.
#
# Pre-copy rows (--precopy MIB..., "" for none; tests/progs/ckpt_tool and
# pre-copy in lib/ckpt_precopy.c), per run:
#   1. start the target with --dirty-pages D (default 1: it changes one word
#      in D random pages after every 1 ms sleep, about 1,000 pages a
#      second), wait for "ready";
#   2. `ckpt_tool dump-precopy PID IMAGE R resume 200 mark`: pre-copy
#      started, R rounds (default 3) 200 ms apart, SIGUSR1 to the target
#      200 ms before the freeze (its longest pause during the pre-copy:
#      the start's injection stop, or the CPU the rounds take), then the
#      dump with the pre-copy, resume; SIGUSR1 again: the longest pause
#      since, minus 1 ms, is **frozen**. The tool's own stop-to-resume time
#      and the final dump's time and pages are kept too;
#   3. `ckpt_tool dump-precopy ... kill` again into IMAGE, then `ckpt_tool
#      restore IMAGE`: the store reads the rounds (store ms, not frozen),
#      then prepare + run + release from the store and the final image is
#      what a destination does while the process is frozen (**restore from
#      store**). The restored target recomputes its running checksum: a
#      run counts only if it equals the one it carried (sum = want).
#
# Prints medians over the good runs. MiB/s is the image's size over the
# median time. Raw runs (DIR/runs.tsv) and every program's output stay in
# DIR (default: a new /tmp/sockmig-test.bench_ckpt.*).
#
# --profile MIB: instead of the table, checkpoint and restore one process of
# MIB MiB under `perf record` (if installed) and `strace -c -w`, and print
# where the time goes (by DSO, top symbols, syscalls).
#
# SOCKMIG_BUILD=DIR picks the build (default: build), as for the tests.
# shellcheck source=tests/lib.sh disable=SC2034
. "$(dirname "$0")/../tests/lib.sh"

RUNS=5
MEMS="1 16 64 256 1024"
MAPS="10 1000 10000"
DISK="256"
PRECOPY="1 64 1024"
ROUNDS=3
DIRTY=1
OUT=
PROFILE=
INTERVAL_US=1000
while [ $# -gt 0 ]; do
	case $1 in
	--runs) RUNS=$2; shift 2 ;;
	--mem) MEMS=$2; shift 2 ;;
	--maps) MAPS=$2; shift 2 ;;
	--disk) DISK=$2; shift 2 ;;
	--precopy) PRECOPY=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--dirty-pages) DIRTY=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--profile) PROFILE=$2; shift 2 ;;
	-h | --help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: $0 [--runs R] [--mem \"1 16 256\"] [--maps \"10 1000\"] [--disk \"256\"] [--precopy \"1 64 1024\"] [--rounds R] [--dirty-pages D] [--out DIR] [--profile MIB]" >&2; exit 2 ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs takes a positive number" >&2; exit 2; }
for v in $MEMS $MAPS $DISK $PRECOPY $PROFILE $ROUNDS $DIRTY; do
	[[ $v =~ ^[0-9]+$ ]] || { echo "sizes and counts are numbers, not $v" >&2; exit 2; }
done

T_NAME=bench_ckpt
t_init
T_KEEP=1 # the logs are the raw results
if [ -n "$OUT" ]; then
	mkdir -p "$OUT" || exit 1
	rmdir "$T_DIR"
	T_DIR=$(cd "$OUT" && pwd)
fi
TARGET=$T_BUILD/bench/ckpt_mem
TOOL=$T_BUILD/tests/progs/ckpt_tool
[ -x "$TARGET" ] || t_fail "$TARGET is not built; run make"
[ -z "$PRECOPY" ] || [ -x "$TOOL" ] || t_fail "$TOOL is not built; run make"
SHM=$(mktemp -d /dev/shm/sockmig-bench-ckpt.XXXXXX) || t_fail "cannot make a directory on /dev/shm"
DISKDIR=$T_DIR/images # on /tmp's filesystem (T_DIR is under /tmp unless --out says otherwise)
mkdir -p "$DISKDIR"
# shellcheck disable=SC2317 # the EXIT trap
bench_cleanup() {
	local s=$?
	rm -rf "$SHM" "$DISKDIR"
	(exit "$s")
	t_cleanup
}
trap bench_cleanup EXIT
RAW=$T_DIR/runs.tsv
printf 'row\tfs\trun\tstatus\tvmas\trss_mib\timage_mib\tckpt_ms\tfrozen_ms\trestore_ms\tnote\n' >"$RAW"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# milliseconds between two $EPOCHREALTIME readings (no fork to read a clock)
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) * 1000 }'; }

# wait (bounded) for a line of FILE; 1 if it did not come
wait_line() { # FILE REGEX SECS
	timeout "$3" grep -m1 -qE -- "$2" <(timeout "$3" tail -n +1 -F "$1" 2>/dev/null)
}

field() { sed -nE "s/.*(^| )$2=([^ ]+).*/\\2/p" <<<"$1" | tail -1; }

avail_mib() { free -m | awk '/^Mem:/ { print $7 }'; }

fs_of() { findmnt -n -o FSTYPE -T "$1" 2>/dev/null | head -1; }

# start the target: ROW_ARGS..., sets TPID and TREADY (its ready line)
start_target() { # TAG ARGS...
	local tag=$1
	shift
	# started from a subshell, so that it is not our child: the checkpoint
	# kills it, and bash would report every such death on our stderr
	TPID=$("$TARGET" "$@" --interval-us "$INTERVAL_US" >"$T_DIR/$tag.out" 2>"$T_DIR/$tag.err" </dev/null & echo $!)
	T_PIDS[$tag]=$TPID
	TREADY=
	wait_line "$T_DIR/$tag.out" '^ready ' 300 || return 1
	TREADY=$(grep -m1 '^ready ' "$T_DIR/$tag.out")
}

run_one() { # ROW FS DIR K ARGS...: one run; appends a row to $RAW
	local row=$1 fs=$2 dir=$3 k=$4 tag="$1-$2-$4" img st=ok note='' t0 t1 out rpid line n
	local vmas='' rss='' size='' ckpt='' frozen='' restore='' gap0 gap1 sum opid
	shift 4
	img=$dir/$tag.img
	fail() { st=FAIL; note=$*; log "$tag: FAIL: $*"; }

	while :; do
		start_target "$tag" "$@" || { fail "target not ready: $(tail -1 "$T_DIR/$tag.err")"; break; }
		opid=$TPID
		sum=$(field "$TREADY" sum)
		vmas=$(field "$TREADY" vmas)
		rss=$(awk -v k="$(field "$TREADY" rss_kb)" 'BEGIN { printf "%.1f", k / 1024 }')

		# frozen, as the process saw it
		kill -USR1 "$opid"
		wait_line "$T_DIR/$tag.out" '^gap n=1 ' 10 || { fail "no gap line"; break; }
		"$SOCKMIG" checkpoint "$opid" -o "$img.live" --leave-running >"$T_DIR/$tag-live.out" 2>&1 ||
			{ fail "checkpoint --leave-running: $(tail -1 "$T_DIR/$tag-live.out")"; break; }
		rm -f "$img.live"
		kill -USR1 "$opid"
		wait_line "$T_DIR/$tag.out" '^gap n=2 ' 10 || { fail "no gap line after the checkpoint (did it survive?)"; break; }
		gap1=$(field "$(grep '^gap n=2 ' "$T_DIR/$tag.out")" max_us)
		frozen=$(awk -v g="$gap1" -v i="$INTERVAL_US" 'BEGIN { printf "%.2f", (g - i) / 1000 }')

		t0=$EPOCHREALTIME
		"$SOCKMIG" checkpoint "$opid" -o "$img" >"$T_DIR/$tag-ckpt.out" 2>&1
		n=$?
		t1=$EPOCHREALTIME
		[ "$n" = 0 ] || { fail "checkpoint: $(tail -1 "$T_DIR/$tag-ckpt.out")"; break; }
		ckpt=$(ms_between "$t0" "$t1")
		unset "T_PIDS[$tag]" # ended by the checkpoint
		size=$(stat -c %s "$img" | awk '{ printf "%.1f", $1 / 1048576 }')
		[ "$fs" = shm ] || dd if="$img" iflag=nocache count=0 status=none

		t0=$EPOCHREALTIME
		out=$("$SOCKMIG" restore "$img" --stdout "$T_DIR/$tag-r.out" "${DETACH[@]}" 2>&1)
		n=$?
		t1=$EPOCHREALTIME
		[ "$n" = 0 ] || { fail "restore: $out"; break; }
		restore=$(ms_between "$t0" "$t1")
		rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' <<<"$out")
		[ -n "$rpid" ] || { fail "restore printed no pid: $out"; break; }
		T_PIDS[$tag-r]=$rpid
		wait_line "$T_DIR/$tag-r.out" '^restored ' 300 || { fail "the restored process said nothing"; break; }
		line=$(grep -m1 '^restored ' "$T_DIR/$tag-r.out")
		# a new process: another pid, or the same one in a pid namespace of its own
		[ "$rpid" != "$opid" ] || { fail "restore printed the original's pid"; break; }
		[ "$(field "$line" pid)" = "$rpid" ] || [ "$(field "$line" pidns)" = changed ] ||
			{ fail "restored line from pid $(field "$line" pid), not $rpid, in the original's pid namespace"; break; }
		[ "$(field "$line" sum)" = "$sum" ] || { fail "memory checksum $(field "$line" sum), was $sum"; break; }
		break
	done
	rm -f "$img" "$img.live"
	t_kill "$tag"
	# the restored process exits by itself once it has printed its sum
	if [ -n "${T_PIDS[$tag-r]:-}" ]; then
		for n in $(seq 50); do kill -0 "${T_PIDS[$tag-r]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${T_PIDS[$tag-r]}" 2>/dev/null
		unset "T_PIDS[$tag-r]"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$fs" "$k" "$st" "${vmas:--}" "${rss:--}" "${size:--}" \
		"${ckpt:--}" "${frozen:--}" "${restore:--}" "$note" >>"$RAW"
	log "$tag: $st vmas=${vmas:--} rss=${rss:--} MiB image=${size:--} MiB checkpoint=${ckpt:--} ms frozen=${frozen:--} ms restore=${restore:--} ms $note"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (!NR) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() { # ROW FS COLUMN: the column's values of the good runs
	awk -F'\t' -v r="$1" -v f="$2" -v c="$3" '$1 == r && $2 == f && $4 == "ok" && $c != "-" { print $c }' "$RAW"
}
rate() { awk -v m="$1" -v t="$2" 'BEGIN { if (m == "-" || t == "-" || t <= 0) print "-"; else printf "%.0f", m / (t / 1000) }'; }

SKIPPED=()
ROWS=()
row_name() { sed -E 's/^([0-9]+)MiB$/\1 MiB/; s/^([0-9]+)maps$/\1 mappings/' <<<"$1"; }
row_wanted() { # ROW FS MIB_NEEDED: false (and a note) if memory is short
	local need=$3 have
	have=$(avail_mib)
	if [ "$have" -lt "$need" ]; then
		SKIPPED+=("row $(row_name "$1") on $2 skipped: $have MiB available, it needs about $need MiB")
		log "${SKIPPED[-1]}"
		return 1
	fi
	ROWS+=("$1 $2")
}

cli_start_ms() { # median wall time of `sockmig --version`: what every row pays to start the binary
	local i t0 t1
	for i in $(seq 5); do
		t0=$EPOCHREALTIME
		"$SOCKMIG" --version >/dev/null
		t1=$EPOCHREALTIME
		ms_between "$t0" "$t1"
		echo
	done | median
}

# tmpfs writes into fresh pages and into pages it already has: on a VM whose
# host backs guest memory lazily the first is much slower, and it is what an
# image written to /dev/shm pays.
shm_write_mib_s() {
	local f=$SHM/calibrate t0 t1 a b
	t0=$EPOCHREALTIME
	dd if=/dev/zero of="$f" bs=16M count=16 status=none
	t1=$EPOCHREALTIME
	a=$(rate 256 "$(ms_between "$t0" "$t1")")
	t0=$EPOCHREALTIME
	dd if=/dev/zero of="$f" bs=16M count=16 conv=notrunc status=none
	t1=$EPOCHREALTIME
	b=$(rate 256 "$(ms_between "$t0" "$t1")")
	rm -f "$f"
	echo "$a MiB/s into new pages, $b MiB/s over existing ones"
}

table() {
	local rf r f ok all sz ck fr rs
	printf '\nmachine: %s CPUs, %s, kernel %s, %s MiB available; sockmig %s\n' "$(nproc)" \
		"$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" "$(uname -r)" "$(avail_mib)" \
		"$(git -C "$T_ROOT" describe --always --dirty 2>/dev/null || echo '?')"
	printf 'images: /dev/shm (%s) unless the row says /tmp (%s, fsynced; restore reads it cold)\n' \
		"$(fs_of /dev/shm)" "$(fs_of "$DISKDIR")"
	printf 'CLI start (sockmig --version): %s ms, included in the wall times; dd 256 MiB to /dev/shm: %s\n' \
		"$CLI_MS" "$SHM_RATE"
	printf 'medians over the good runs; MiB/s = image size / median time; frozen = the gap the process saw (checkpoint --leave-running)\n\n'
	printf '| row | image on | vmas | RSS MiB | image MiB | runs ok | checkpoint ms | MiB/s | frozen ms | restore ms | MiB/s |\n'
	printf '| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n'
	for rf in "${ROWS[@]}"; do
		read -r r f <<<"$rf"
		all=$(awk -F'\t' -v r="$r" -v f="$f" '$1 == r && $2 == f' "$RAW" | wc -l)
		[ "$all" -gt 0 ] || continue
		ok=$(col "$r" "$f" 4 | wc -l)
		sz=$(col "$r" "$f" 7 | median)
		ck=$(col "$r" "$f" 8 | median)
		fr=$(col "$r" "$f" 9 | median)
		rs=$(col "$r" "$f" 10 | median)
		printf '| %s | %s | %s | %s | %s | %s/%s | %s | %s | %s | %s | %s |\n' "$(row_name "$r")" "$([ "$f" = shm ] && echo /dev/shm || echo /tmp)" \
			"$(col "$r" "$f" 5 | median)" "$(col "$r" "$f" 6 | median)" "$sz" "$ok" "$all" \
			"$ck" "$(rate "$sz" "$ck")" "$fr" "$rs" "$(rate "$sz" "$rs")"
	done
	for r in "${SKIPPED[@]}"; do printf '\nnote: %s\n' "$r"; done
	printf '\nraw runs and logs: %s\n' "$T_DIR"
}

# ---- pre-copy rows ----
PCRAW=$T_DIR/precopy.tsv
printf 'row\trun\tstatus\tround1_ms\tlast_pages\tgap_ms\tfrozen_ms\ttool_frozen_ms\tfinal_pages\tdump_ms\tstore_ms\tstore_mib\trestore_ms\tidle_ms\tnote\n' >"$PCRAW"

run_precopy() { # MIB K: one run; appends a row to $PCRAW
	local mib=$1 k=$2 tag="pc$1-$2" img st=ok note='' out line rpid n
	local r1='' lastp='' gap='' frozen='' tfrozen='' fpages='' dump='' store='' smib='' restore='' idle=''
	img=$SHM/$tag.img
	fail() { st=FAIL; note=$*; log "$tag: FAIL: $*"; }

	while :; do
		start_target "$tag" --mem "$mib" --dirty-pages "$DIRTY" || { fail "target not ready"; break; }
		sleep 0.5 # an idle stretch, for the noise floor (gap n=1)
		kill -USR1 "$TPID"
		wait_line "$T_DIR/$tag.out" '^gap n=1 ' 10 || { fail "no gap line"; break; }
		"$TOOL" dump-precopy "$TPID" "$img.live" "$ROUNDS" resume 200 mark >"$T_DIR/$tag-live.out" 2>&1 ||
			{ fail "dump-precopy: $(tail -1 "$T_DIR/$tag-live.out")"; break; }
		rm -f "$img.live"
		kill -USR1 "$TPID"
		wait_line "$T_DIR/$tag.out" '^gap n=3 ' 10 || { fail "no gap line after the freeze (did it survive?)"; break; }
		# its longest pause while nothing was done to it: the noise floor
		idle=$(awk -v g="$(field "$(grep '^gap n=1 ' "$T_DIR/$tag.out")" max_us)" -v i="$INTERVAL_US" 'BEGIN { printf "%.2f", (g - i) / 1000 }')
		gap=$(awk -v g="$(field "$(grep '^gap n=2 ' "$T_DIR/$tag.out")" max_us)" -v i="$INTERVAL_US" 'BEGIN { printf "%.2f", (g - i) / 1000 }')
		frozen=$(awk -v g="$(field "$(grep '^gap n=3 ' "$T_DIR/$tag.out")" max_us)" -v i="$INTERVAL_US" 'BEGIN { printf "%.2f", (g - i) / 1000 }')
		r1=$(field "$(grep '^round 1 ' "$T_DIR/$tag-live.out")" ms)
		lastp=$(field "$(grep "^round $ROUNDS " "$T_DIR/$tag-live.out")" pages)
		line=$(grep '^final ' "$T_DIR/$tag-live.out")
		tfrozen=$(field "$line" frozen_ms)
		fpages=$(field "$line" pages)
		dump=$(field "$line" dump_ms)

		"$TOOL" dump-precopy "$TPID" "$img" "$ROUNDS" kill 200 >"$T_DIR/$tag-dump.out" 2>&1 ||
			{ fail "dump-precopy (kill): $(tail -1 "$T_DIR/$tag-dump.out")"; break; }
		unset "T_PIDS[$tag]"
		out=$("$TOOL" restore "$img" "$T_DIR/$tag-r.out" 2>"$T_DIR/$tag-restore.err")
		n=$?
		[ "$n" = 0 ] || { fail "restore: $out $(tail -1 "$T_DIR/$tag-restore.err")"; break; }
		rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' <<<"$out")
		[ -n "$rpid" ] || { fail "restore printed no pid: $out"; break; }
		T_PIDS[$tag-r]=$rpid
		line=$(grep '^store ' "$T_DIR/$tag-restore.err")
		store=$(field "$line" ms)
		smib=$(field "$line" mib)
		line=$(grep '^prepare_ms=' "$T_DIR/$tag-restore.err")
		restore=$(awk -v a="$(field "$line" prepare_ms)" -v b="$(field "$line" run_ms)" -v c="$(field "$line" release_ms)" \
			'BEGIN { printf "%.2f", a + b + c }')
		wait_line "$T_DIR/$tag-r.out" '^restored ' 300 || { fail "the restored process said nothing"; break; }
		line=$(grep -m1 '^restored ' "$T_DIR/$tag-r.out")
		[ "$(field "$line" sum)" = "$(field "$line" want)" ] || { fail "memory checksum $(field "$line" sum), carried $(field "$line" want)"; break; }
		break
	done
	rm -f "$img" "$img.live"
	t_kill "$tag"
	if [ -n "${T_PIDS[$tag-r]:-}" ]; then
		for n in $(seq 50); do kill -0 "${T_PIDS[$tag-r]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${T_PIDS[$tag-r]}" 2>/dev/null
		unset "T_PIDS[$tag-r]"
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${mib}MiB" "$k" "$st" "${r1:--}" "${lastp:--}" \
		"${gap:--}" "${frozen:--}" "${tfrozen:--}" "${fpages:--}" "${dump:--}" "${store:--}" "${smib:--}" "${restore:--}" \
		"${idle:--}" "$note" >>"$PCRAW"
	log "$tag: $st round1=${r1:--} ms last_round=${lastp:--} pages gap=${gap:--} ms frozen=${frozen:--} ms (tool ${tfrozen:--}) final=${fpages:--} pages dump=${dump:--} ms store=${store:--} ms restore=${restore:--} ms $note"
}

pc_table() {
	local r all ok c
	pcol() { awk -F'\t' -v r="$1" -v c="$2" '$1 == r && $3 == "ok" && $c != "-" { print $c }' "$PCRAW" | median; }
	printf '\npre-copy: %s rounds 200 ms apart, the target dirtying %s page(s) per ms; medians over the good runs\n' "$ROUNDS" "$DIRTY"
	printf 'idle: its longest pause when left alone (the noise floor); gap: its longest pause during the pre-copy;\n'
	printf 'frozen: its pause at the freeze (tool: stop to resume);\n'
	printf 'restore from store: prepare + run + release once the rounds are in (what D does while the process is frozen)\n\n'
	printf '| row | runs ok | round 1 ms | pages in round %s | idle ms | gap ms | frozen ms | tool frozen ms | final dump pages | final dump ms | store read ms (MiB) | restore from store ms |\n' "$ROUNDS"
	printf '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
	for r in $PRECOPY; do
		all=$(awk -F'\t' -v r="${r}MiB" '$1 == r' "$PCRAW" | wc -l)
		[ "$all" -gt 0 ] || continue
		ok=$(awk -F'\t' -v r="${r}MiB" '$1 == r && $3 == "ok"' "$PCRAW" | wc -l)
		printf '| %s MiB | %s/%s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s |\n' "$r" "$ok" "$all" "$(pcol "${r}MiB" 4)" \
			"$(pcol "${r}MiB" 5)" "$(pcol "${r}MiB" 14)" "$(pcol "${r}MiB" 6)" "$(pcol "${r}MiB" 7)" "$(pcol "${r}MiB" 8)" "$(pcol "${r}MiB" 9)" \
			"$(pcol "${r}MiB" 10)" "$(pcol "${r}MiB" 11)" "$(pcol "${r}MiB" 12)" "$(pcol "${r}MiB" 13)"
	done
	printf '\nraw pre-copy runs: %s\n' "$PCRAW"
}

# ---- --profile: where the time goes ----
profile() { # MIB
	local mib=$1 tag img=$SHM/profile.img out rpid
	img=$SHM/profile.img
	for tool in perf strace; do
		command -v "$tool" >/dev/null || { log "$tool is not installed: skipped"; continue; }
		tag=prof-$tool
		start_target "$tag" --mem "$mib" || t_fail "target not ready"
		if [ "$tool" = perf ]; then
			perf record -q -o "$T_DIR/ckpt.perf" -- "$SOCKMIG" checkpoint "$TPID" -o "$img" >/dev/null 2>"$T_DIR/$tag-ckpt.err" ||
				t_fail "checkpoint: $(tail -1 "$T_DIR/$tag-ckpt.err")"
		else
			strace -c -w -o "$T_DIR/ckpt.strace" "$SOCKMIG" checkpoint "$TPID" -o "$img" >/dev/null ||
				t_fail "checkpoint under strace failed"
		fi
		unset "T_PIDS[$tag]"
		# restore: perf follows the child that becomes the process; strace
		# must not (-f would take the ptrace the restore needs), so its
		# wait4 holds the child's work
		if [ "$tool" = perf ]; then
			out=$(perf record -q -o "$T_DIR/restore.perf" -- "$SOCKMIG" restore "$img" --stdout "$T_DIR/$tag-r.out" "${DETACH[@]}" 2>&1)
		else
			out=$(strace -c -w -o "$T_DIR/restore.strace" "$SOCKMIG" restore "$img" --stdout "$T_DIR/$tag-r.out" "${DETACH[@]}" 2>&1)
		fi
		rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' <<<"$out")
		[ -n "$rpid" ] || t_fail "restore under $tool: $out"
		T_PIDS[$tag-r]=$rpid
		wait_line "$T_DIR/$tag-r.out" '^restored ' 60 || t_fail "the restored process said nothing"
		[ "$(field "$(grep -m1 '^restored ' "$T_DIR/$tag-r.out")" sum)" = "$(field "$TREADY" sum)" ] ||
			t_fail "restored under $tool with another memory checksum"
		unset "T_PIDS[$tag-r]"
		rm -f "$img"
	done
	if [ -f "$T_DIR/ckpt.perf" ]; then
		for w in ckpt restore; do
			printf '\n== %s %s MiB: perf, share of samples by program and DSO ==\n' "$w" "$mib"
			perf report -i "$T_DIR/$w.perf" --no-children --sort comm,dso --stdio -g none 2>/dev/null | grep '%' | head -8
			printf -- '-- top symbols --\n'
			perf report -i "$T_DIR/$w.perf" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep '%' | head -12
		done
	fi
	if [ -f "$T_DIR/ckpt.strace" ]; then
		for w in ckpt restore; do
			printf '\n== %s %s MiB: strace -c -w (wall time in syscalls) ==\n' "$w" "$mib"
			head -12 "$T_DIR/$w.strace"
		done
	fi
	printf '\nraw profiles: %s\n' "$T_DIR"
}

# A restore that stays the restored process's parent (and waits for it)
# unless told --detach: detach, so that its wall time ends once the process
# runs, as with a restore that always returns.
DETACH=()
"$SOCKMIG" restore --help 2>&1 | grep -q -- --detach && DETACH=(--detach)

log "results in $T_DIR"
if [ -n "$PROFILE" ]; then
	profile "$PROFILE"
	exit 0
fi
CLI_MS=$(cli_start_ms)
SHM_RATE=$(shm_write_mib_s)
for m in $MEMS; do
	row_wanted "${m}MiB" shm $((3 * m + 256)) || continue
	for k in $(seq "$RUNS"); do run_one "${m}MiB" shm "$SHM" "$k" --mem "$m"; done
done
for n in $MAPS; do
	row_wanted "${n}maps" shm $((3 * n * 4 / 1024 + 256)) || continue
	for k in $(seq "$RUNS"); do run_one "${n}maps" shm "$SHM" "$k" --maps "$n"; done
done
for m in $DISK; do
	row_wanted "${m}MiB" tmp $((3 * m + 256)) || continue
	for k in $(seq "$RUNS"); do run_one "${m}MiB" tmp "$DISKDIR" "$k" --mem "$m"; done
done
PCROWS=
for m in $PRECOPY; do
	# original + image + the store + the restored copy, which share pages
	if [ "$(avail_mib)" -lt $((3 * m + 256)) ]; then
		SKIPPED+=("pre-copy row ${m} MiB skipped: $(avail_mib) MiB available, it needs about $((3 * m + 256)) MiB")
		log "${SKIPPED[-1]}"
		continue
	fi
	PCROWS="$PCROWS $m"
	for k in $(seq "$RUNS"); do run_precopy "$m" "$k"; done
done
PRECOPY=$PCROWS
{
	if [ "${#ROWS[@]}" != 0 ]; then
		table
	else
		printf '\nmachine: %s CPUs, %s, kernel %s, %s MiB available; sockmig %s; images on /dev/shm\n' "$(nproc)" \
			"$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)" "$(uname -r)" "$(avail_mib)" \
			"$(git -C "$T_ROOT" describe --always --dirty 2>/dev/null || echo '?')"
	fi
	[ -z "$PRECOPY" ] || pc_table
} | tee "$T_DIR/table.md"
exit 0
