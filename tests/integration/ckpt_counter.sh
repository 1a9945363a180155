#!/bin/bash
# Checkpoint a running process, end it, restore it as a NEW process, and
# check that the new one goes on exactly where the original stopped:
#   - its counter continues from the checkpointed value (the next line is
#     exactly the one the original would have printed next), not from zero;
#   - the checksum of its memory (anonymous, heap, large malloc, stack, a
#     written private file page) is the original's;
#   - its AVX registers survived (it checks them itself: avx=ok);
#   - it keeps its pid (getpid() as before, in a pid namespace of its own)
#     and keeps running;
#   - a sparse 8 MiB mapping costs only the pages that hold data;
#   - the restored process can itself be checkpointed and restored again;
#   - a dump that leaves the original running lets it go on untouched;
#   - the pre-flight check refuses a second thread and a netlink socket.
# Needs no lab: one node is enough for this slice.
. "$(dirname "$0")/../lib.sh"
t_init

C=$T_PROGS/ckpt_counter
TOOL=$T_PROGS/ckpt_tool
[ -x "$C" ] && [ -x "$TOOL" ] || t_fail "ckpt_counter or ckpt_tool is not built"

last_line() { grep -E '^count=' "$1" | tail -n 1; }
field() { sed -nE "s/.*(^| )$2=([^ ]+).*/\\2/p" <<<"$1"; }

# Start $C with fd 1 to $T_DIR/$1.out; remember it under tag $1.
start_counter() {
	"$C" >"$T_DIR/$1.out" 2>"$T_DIR/$1.err" &
	T_PIDS[$1]=$!
}

# ---- pre-flight refusals (nothing is stopped) ----
python3 -c 'import threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("up", flush=True); time.sleep(60)' >"$T_DIR/thr.out" &
T_PIDS[thr]=$!
t_wait_line thr '^up' 10
out=$("$TOOL" check "${T_PIDS[thr]}" 2>&1) && t_fail "a 2-thread process passed the check"
grep -q "has 2 threads; only single-threaded processes can be checkpointed yet" <<<"$out" ||
	t_fail "unexpected refusal of the threaded process: $out"
t_kill thr
python3 -c 'import socket, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
print("fd", s.fileno(), flush=True); time.sleep(60)' >"$T_DIR/nl.out" &
T_PIDS[nl]=$!
t_wait_line nl '^fd' 10
nlfd=$(sed -n 's/^fd //p' "$T_DIR/nl.out")
out=$("$TOOL" check "${T_PIDS[nl]}" 2>&1) && t_fail "a process with a netlink socket passed the check"
grep -q "fd $nlfd: .*netlink.* is not migratable" <<<"$out" || t_fail "unexpected refusal of a netlink socket: $out"
t_kill nl

# ---- checkpoint, leaving the original running: it must go on ----
start_counter keep
t_wait_line keep '^count=300 ' 20
t_check "$TOOL" dump "${T_PIDS[keep]}" "$T_DIR/keep.img" resume
before=$(field "$(last_line "$T_DIR/keep.out")" count)
t_wait_line keep "^count=$((before + 200)) " 20
kill -0 "${T_PIDS[keep]}" || t_fail "the original died after a dump with resume"
t_kill keep

# ---- checkpoint + kill, then restore as a new process ----
start_counter orig
t_wait_line orig '^count=500 ' 20
t_check "$TOOL" dump "${T_PIDS[orig]}" "$T_DIR/a.img"
wait "${T_PIDS[orig]}" 2>/dev/null
unset 'T_PIDS[orig]'
ref=$(last_line "$T_DIR/orig.out")
c0=$(field "$ref" count)
sum=$(field "$ref" sum)
opid=$(field "$ref" pid)
t_log "checkpointed at or after: $ref"

size=$(stat -c %s "$T_DIR/a.img")
# 8 MiB mapped with 2 MiB written, 1 MiB malloc'ed, libc: well below 6 MiB
[ "$size" -lt $((6 << 20)) ] || t_fail "image is $size bytes: untouched pages were copied"

restore_and_check() { # IMAGE TAG C0 -> sets rpid
	local img=$1 tag=$2 start=$3 first got line n
	out=$("$TOOL" restore "$img" "$T_DIR/$tag.out" 2>&1) || t_fail "restore of $img failed: $out"
	rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' <<<"$out")
	[ -n "$rpid" ] || t_fail "restore printed no pid: $out"
	T_PIDS[$tag]=$rpid
	t_wait_line "$tag" "^count=$((start + 500)) " 20
	first=$(grep -m1 -E '^count=' "$T_DIR/$tag.out")
	got=$(field "$first" count)
	# The stop may come between the last line written and the next one:
	# the next line the new process writes is exactly the next one due.
	[ "$got" = "$((start + 100))" ] || t_fail "$tag: first count $got, expected $((start + 100)) (original at $start)"
	n=0
	while read -r line; do
		n=$((n + 1))
		[ "$(field "$line" count)" = "$((start + 100 * n))" ] || t_fail "$tag: line $n out of sequence: $line"
		[ "$(field "$line" sum)" = "$sum" ] || t_fail "$tag: memory checksum changed: $line (was $sum)"
		[ "$(field "$line" avx)" = ok ] || t_fail "$tag: AVX state lost: $line"
		# its own pid, kept in a pid namespace of its own
		[ "$(field "$line" pid)" = "$opid" ] || t_fail "$tag: getpid() is $(field "$line" pid), not $opid"
	done < <(grep -E '^count=' "$T_DIR/$tag.out" | head -n 5)
	kill -0 "$rpid" || t_fail "$tag: restored process $rpid is gone"
}

restore_and_check "$T_DIR/a.img" rest1 "$c0"
[ "$rpid" != "$opid" ] || t_fail "restored process has the original's pid outside its namespace"
ns=$(sed -n 's/^NSpid:\t//p' "/proc/$rpid/status")
[ "$ns" = "$rpid	$opid" ] || t_fail "restored process: NSpid is '$ns', expected '$rpid	$opid'"
t_log "restored as pid $rpid, first line: $(grep -m1 '^count=' "$T_DIR/rest1.out")"

# ---- the restored process checkpointed and restored again ----
t_check "$TOOL" dump "$rpid" "$T_DIR/b.img"
wait "$rpid" 2>/dev/null
unset 'T_PIDS[rest1]'
c1=$(field "$(last_line "$T_DIR/rest1.out")" count)
restore_and_check "$T_DIR/b.img" rest2 "$c1"
t_log "second generation pid $rpid: $(grep -m1 '^count=' "$T_DIR/rest2.out")"
t_kill rest2
t_pass
