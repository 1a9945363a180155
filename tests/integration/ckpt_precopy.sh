#!/bin/bash
# Pre-copy (ZDTM style, tests/progs/ckpt_dirty.c): a process that keeps
# writing its memory, and creating, growing, moving, shrinking, splitting,
# zeroing and removing mappings, is pre-copied in rounds on n1 while it
# runs, dumped with only what changed since the last round, and restored on
# n2 from the rounds plus the final image. Then:
#   - the restored process checks every page of every mapping against the
#     ledger it kept (it prints pass or fail), and its write counter is at
#     least what the original printed last: no page written after its last
#     copy was lost, no stale page came back;
#   - the rounds after the first carried only what changed (pages < what is
#     tracked), and the freeze carried pages written after the last round;
#   - no userfaultfd in the restored process (fds, smaps), its fds are the
#     original's numbers, it runs in n2's network namespace;
#   - the restored process is pre-copied again, from n2 back to n1, and
#     checks out again;
#   - the store refuses rounds that do not follow each other (one cut out)
#     and a process image without its rounds, and starts nothing;
#   - rollback: pre-copy started (the process's fd table the same during
#     the tracking, its mappings registered: "uw" in smaps), rounds, given
#     up: fd table as before, nothing registered, the process goes on and
#     checks out.
# The --selftest of ckpt_dirty first proves that its check can fail.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 2

D=$T_PROGS/ckpt_dirty
TOOL=$T_PROGS/ckpt_tool
[ -x "$D" ] && [ -x "$TOOL" ] || t_fail "ckpt_dirty or ckpt_tool is not built"
field() { sed -nE "s/.*(^| )$2=([^ ]+).*/\\2/p" <<<"$1" | tail -1; }
fd_list() { ls /proc/"$1"/fd | sort -n | tr '\n' ' '; }
uffd_fds() { for f in /proc/"$1"/fd/*; do readlink "$f"; done | grep -c userfaultfd; }
uw_vmas() { grep -c '^VmFlags:.* uw' /proc/"$1"/smaps; }
last_writes() { field "$(grep -E '^(progress|pass)' "$1" | tail -1)" writes; }

# ---- the check can fail ----
out=$("$D" --selftest 2>&1) || t_fail "ckpt_dirty --selftest did not catch a stale page: $out"
grep -q '^fail slot=0 page=7 ' <<<"$out" || t_fail "ckpt_dirty --selftest: unexpected output: $out"

# check_pass TAG PID MIN_WRITES: SIGUSR1, then its next verdict line
check_pass() {
	local tag=$1 pid=$2 min=$3 n line
	n=$(grep -cE '^(pass|fail)' "$T_DIR/$tag.out")
	kill -USR1 "$pid" || t_fail "$tag: pid $pid is gone"
	t_wait_line "$tag" "^(pass|fail)" 30
	# a verdict after the signal (the wait above may have seen an older one)
	for _ in $(seq 100); do
		[ "$(grep -cE '^(pass|fail)' "$T_DIR/$tag.out")" -gt "$n" ] && break
		sleep 0.1
	done
	[ "$(grep -cE '^(pass|fail)' "$T_DIR/$tag.out")" -gt "$n" ] || t_fail "$tag: no verdict within 10 s of SIGUSR1"
	line=$(grep -E '^(pass|fail)' "$T_DIR/$tag.out" | tail -1)
	[[ $line == pass* ]] || t_fail "$tag: $line"
	[ "$(field "$line" writes)" -ge "$min" ] ||
		t_fail "$tag: $(field "$line" writes) writes, the original had printed $min: memory went back in time"
	t_log "$tag: $line"
}

# precopy_move TAG FROM TO PID ROUNDS: pre-copy on FROM, restore on TO;
# sets RPID. The original's output is $T_DIR/TAG.out.
precopy_move() {
	local tag=$1 from=$2 to=$3 pid=$4 rounds=$5 img=$T_DIR/$1.img out n tracked w0 fds0
	fds0=$(fd_list "$pid")
	out=$(t_exec "$from" "$TOOL" dump-precopy "$pid" "$img" "$rounds" kill 100 2>&1) ||
		t_fail "$tag: dump-precopy on $from: $out"
	printf '%s\n' "$out" >"$T_DIR/$tag.dump"
	t_log "$tag: $(tr '\n' ';' <<<"$out")"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$pid" 2>/dev/null && t_fail "$tag: the original $pid still runs after the dump"
	w0=$(last_writes "$T_DIR/$tag.out")
	[ "$(grep -c '^round ' <<<"$out")" = "$rounds" ] || t_fail "$tag: not $rounds rounds: $out"
	line=$(grep '^round 1 ' <<<"$out")
	[ "$(field "$line" fresh)" = "$(field "$line" ranges)" ] || t_fail "$tag: round 1 did not copy every mapping whole: $line"
	tracked=$(awk -v m="$(field "$line" tracked_mib)" 'BEGIN { printf "%d", m * 256 }')
	for n in $(seq 2 "$rounds"); do
		line=$(grep "^round $n " <<<"$out")
		[ "$(field "$line" pages)" -gt 0 ] || t_fail "$tag: round $n found no page written: $line"
		[ "$(field "$line" pages)" -lt "$tracked" ] || t_fail "$tag: round $n copied everything again: $line"
	done
	line=$(grep '^final ' <<<"$out")
	[ "$(field "$line" pages)" -gt 0 ] || t_fail "$tag: the freeze found no page written after the last round: $line"

	out=$(t_exec "$to" "$TOOL" restore "$img" "$T_DIR/$tag-r.out" 2>"$T_DIR/$tag-r.err") ||
		t_fail "$tag: restore on $to: $out $(cat "$T_DIR/$tag-r.err")"
	RPID=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' <<<"$out")
	[ -n "$RPID" ] || t_fail "$tag: restore printed no pid: $out"
	T_PIDS[$tag-r]=$RPID
	t_log "$tag: restored as $RPID on $to: $(tr '\n' ' ' <"$T_DIR/$tag-r.err")"
	check_pass "$tag-r" "$RPID" "$w0"
	[ "$(uffd_fds "$RPID")" = 0 ] || t_fail "$tag: the restored process holds a userfaultfd"
	[ "$(uw_vmas "$RPID")" = 0 ] || t_fail "$tag: the restored process has mappings registered to a userfaultfd"
	[ "$(fd_list "$RPID")" = "$fds0" ] || t_fail "$tag: restored fds '$(fd_list "$RPID")', the original had '$fds0'"
	[ "$(readlink /proc/"$RPID"/ns/net)" = "$(t_exec "$to" readlink /proc/self/ns/net)" ] ||
		t_fail "$tag: the restored process is not in $to's network namespace"
	# it goes on writing, and checks out again a moment later
	w0=$(last_writes "$T_DIR/$tag-r.out")
	t_wait_line "$tag-r" "^progress writes=" 10
	check_pass "$tag-r" "$RPID" "$w0"
}

# ---- n1 -> n2 with 4 rounds, then n2 -> n1 with 2 ----
t_spawn a n1 "$D" --mib 32 --rate 3000 --ops-ms 10
t_wait_line a '^ready ' 30
t_wait_line a '^progress ' 10
apid=${T_PIDS[a]}
precopy_move a n1 n2 "$apid" 4
unset 'T_PIDS[a]'
bpid=$RPID
# the restored process's output is a-r.out: the second move's "original"
precopy_move a-r n2 n1 "$bpid" 2
unset 'T_PIDS[a-r]'

# ---- the store refuses rounds out of order, and an image without them ----
img=$T_DIR/a.img
r1=$(field "$(grep '^round 1 ' "$T_DIR/a.dump")" bytes)
r2=$(field "$(grep '^round 2 ' "$T_DIR/a.dump")" bytes)
r3=$(field "$(grep '^round 3 ' "$T_DIR/a.dump")" bytes)
# rounds 1, 2, 4 and the final image: round 3 cut out
{ head -c $((r1 + r2)) "$img"; tail -c +$((r1 + r2 + r3 + 1)) "$img"; } >"$T_DIR/cut.img"
out=$(t_exec n2 "$TOOL" restore "$T_DIR/cut.img" 2>&1) && t_fail "a store missing round 3 restored: $out"
grep -q 'pre-copy round 4 cannot follow round 2' <<<"$out" || t_fail "missing round: unexpected refusal: $out"
grep -q '^restored pid' <<<"$out" && t_fail "missing round: a process was started: $out"
r4=$(field "$(grep '^round 4 ' "$T_DIR/a.dump")" bytes)
tail -c +$((r1 + r2 + r3 + r4 + 1)) "$img" >"$T_DIR/final.img"
out=$(t_exec n2 "$TOOL" restore "$T_DIR/final.img" 2>&1) && t_fail "a pre-copied image restored without its rounds: $out"
grep -q 'the image needs the pages of its pre-copy' <<<"$out" || t_fail "no rounds: unexpected refusal: $out"
t_log "refused: missing round and missing store"

# ---- rollback: the process goes on exactly as before ----
t_spawn c n1 "$D" --mib 16 --rate 2000 --ops-ms 10
t_wait_line c '^ready ' 30
t_wait_line c '^progress ' 10
cpid=${T_PIDS[c]}
fds0=$(fd_list "$cpid")
fdl0=$(cd /proc/"$cpid"/fd && for f in *; do printf '%s %s\n' "$f" "$(readlink "$f")"; done | sort -n)
mkfifo "$T_DIR/go"
t_spawn rb n1 sh -c "exec \"$TOOL\" precopy-rollback $cpid 3 wait <\"$T_DIR/go\""
exec 7>"$T_DIR/go"
t_wait_line rb '^tracking' 60
[ "$(fd_list "$cpid")" = "$fds0" ] || t_fail "rollback: fds during pre-copy '$(fd_list "$cpid")', before '$fds0'"
[ "$(uffd_fds "$cpid")" = 0 ] || t_fail "rollback: the process holds a userfaultfd during pre-copy"
uw=$(uw_vmas "$cpid")
[ "$uw" -gt 0 ] || t_fail "rollback: no mapping is registered during pre-copy"
echo go >&7
exec 7>&-
t_wait_exit rb 60 || t_fail "rollback: precopy-rollback failed: $(cat "$T_DIR/rb.err")"
grep -q '^rolled back' "$T_DIR/rb.out" || t_fail "rollback: $(cat "$T_DIR/rb.out")"
fdl1=$(cd /proc/"$cpid"/fd && for f in *; do printf '%s %s\n' "$f" "$(readlink "$f")"; done | sort -n)
[ "$fdl1" = "$fdl0" ] || t_fail "rollback: fd table after: '$fdl1', before: '$fdl0'"
[ "$(uw_vmas "$cpid")" = 0 ] || t_fail "rollback: $(uw_vmas "$cpid") mappings still registered"
w0=$(last_writes "$T_DIR/c.out")
t_wait_line c "^progress writes=" 10
check_pass c "$cpid" "$w0"
t_log "rollback: $uw mappings were tracked, none left; fds as before: $fds0"
t_kill c
t_pass
