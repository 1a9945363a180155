#!/bin/bash
# `sockmig checkpoint` and `sockmig restore` from the command line:
#   - checkpoint PID -o IMAGE: the counter is gone (dead) when the command
#     returns, the image is in place and nothing half-written is left beside
#     it; restore --detach IMAGE --stdout FILE prints "restored pid N" and the new
#     process goes on exactly where the original stopped (next count due,
#     same memory checksum, AVX state intact, its own pid inside a pid
#     namespace of its own and another outside, keeps counting);
#   - --leave-running: the original goes on counting, the image restores;
#   - refusals, one line on stderr and a non-zero exit, no image written, and
#     the process keeps running (still counting, not left stopped): a pid that
#     does not exist, a kernel thread (pid 2), sockmig itself, a 2-thread
#     process, a netlink socket, an image path that cannot be created;
#   - restore refuses a truncated image, a flipped byte, an image of another
#     kind, a file that is not an image, and starts nothing.
# Needs no lab.
. "$(dirname "$0")/../lib.sh"
t_init

C=$T_PROGS/ckpt_counter
[ -x "$C" ] || t_fail "ckpt_counter is not built"

last_line() { grep -E '^count=' "$1" | tail -n 1; }
field() { sed -nE "s/.*(^| )$2=([^ ]+).*/\\2/p" <<<"$1"; }
proc_state() { sed -nE 's/^[0-9]+ \(.*\) (.) .*/\1/p' "/proc/$1/stat" 2>/dev/null; }

start_counter() {
	"$C" >"$T_DIR/$1.out" 2>"$T_DIR/$1.err" &
	T_PIDS[$1]=$!
}

# expect_refusal TAG REGEX CMD...: CMD fails with exactly one stderr line
# matching REGEX and prints nothing on stdout.
expect_refusal() {
	local tag=$1 re=$2 rc=0
	shift 2
	"$@" >"$T_DIR/refuse.stdout" 2>"$T_DIR/refuse.stderr" || rc=$?
	[ "$rc" != 0 ] || t_fail "$tag: accepted: $*"
	[ "$(wc -l <"$T_DIR/refuse.stderr")" = 1 ] ||
		t_fail "$tag: not one line on stderr: $(cat "$T_DIR/refuse.stderr")"
	grep -qE -- "$re" "$T_DIR/refuse.stderr" || t_fail "$tag: unexpected sentence: $(cat "$T_DIR/refuse.stderr")"
	[ ! -s "$T_DIR/refuse.stdout" ] || t_fail "$tag: printed on stdout: $(cat "$T_DIR/refuse.stdout")"
	t_log "$tag: $(cat "$T_DIR/refuse.stderr")"
}

# still_counting TAG: the process runs (not stopped) and its count goes on.
still_counting() {
	local tag=$1 pid=${T_PIDS[$1]} st n
	st=$(proc_state "$pid")
	[ -n "$st" ] && [ "$st" != T ] && [ "$st" != t ] && [ "$st" != Z ] ||
		t_fail "$tag: pid $pid is in state '${st:-gone}' after a refused checkpoint"
	n=$(field "$(last_line "$T_DIR/$tag.out")" count)
	t_wait_line "$tag" "^count=$((n + ${2:-100})) " 20
}

no_leftovers() {
	local f
	for f in "$T_DIR"/*.img.??????; do
		[ -e "$f" ] && t_fail "a temporary image was left behind: $f"
	done
	return 0
}

# A counter in python that holds a netlink socket, or runs a second thread.
PYCOUNT='import socket, sys, threading, time
extra = sys.argv[1]
if extra == "fd":
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
else:
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
n = 0
while True:
    n += 1
    print("count=%d " % n, flush=True)
    time.sleep(0.005)'

# ---- refusals before anything is frozen ----
pid_max=$(cat /proc/sys/kernel/pid_max)
expect_refusal nopid "^sockmig: .*pid $pid_max does not exist$" \
	"$SOCKMIG" checkpoint "$pid_max" -o "$T_DIR/x.img"
expect_refusal badpid "^sockmig: checkpoint: give one process id, not 12ab$" \
	"$SOCKMIG" checkpoint 12ab -o "$T_DIR/x.img"
if [ "$(cat /proc/2/comm 2>/dev/null)" = kthreadd ]; then
	expect_refusal kthread "^sockmig: .*pid 2 is a kernel thread" "$SOCKMIG" checkpoint 2 -o "$T_DIR/x.img"
else
	t_log "pid 2 is not kthreadd here (a pid namespace?): kernel thread case skipped"
fi
# exec: the checkpointing sockmig has the shell's pid
expect_refusal self "^sockmig: .*pid [0-9]+ is sockmig itself$" \
	bash -c 'exec "$1" checkpoint $$ -o "$2"' _ "$SOCKMIG" "$T_DIR/x.img"

python3 -c "$PYCOUNT" thread >"$T_DIR/thr.out" 2>"$T_DIR/thr.err" &
T_PIDS[thr]=$!
t_wait_line thr '^count=50 ' 20
expect_refusal threads "^sockmig: .*pid ${T_PIDS[thr]} has 2 threads; only single-threaded processes can be checkpointed yet$" \
	"$SOCKMIG" checkpoint "${T_PIDS[thr]}" -o "$T_DIR/x.img"
still_counting thr
t_kill thr

python3 -c "$PYCOUNT" fd >"$T_DIR/fd.out" 2>"$T_DIR/fd.err" &
T_PIDS[fd]=$!
t_wait_line fd '^count=50 ' 20
expect_refusal fd3 "^sockmig: .*pid ${T_PIDS[fd]} fd 3: a netlink socket is not migratable$" \
	"$SOCKMIG" checkpoint "${T_PIDS[fd]}" -o "$T_DIR/x.img"
still_counting fd
t_kill fd
[ ! -e "$T_DIR/x.img" ] || t_fail "a refused checkpoint wrote an image"

start_counter nodir
t_wait_line nodir '^count=200 ' 20
expect_refusal nodir "^sockmig: checkpoint: cannot create the image $T_DIR/no/such/dir/a.img: No such file or directory$" \
	"$SOCKMIG" checkpoint "${T_PIDS[nodir]}" -o "$T_DIR/no/such/dir/a.img"
still_counting nodir
t_kill nodir

# ---- --leave-running: the original goes on, the image restores ----
start_counter keep
t_wait_line keep '^count=300 ' 20
out=$("$SOCKMIG" checkpoint "${T_PIDS[keep]}" -o "$T_DIR/keep.img" --leave-running) ||
	t_fail "checkpoint --leave-running failed"
[ "$out" = "checkpointed pid ${T_PIDS[keep]} to $T_DIR/keep.img (left running)" ] || t_fail "unexpected output: $out"
still_counting keep 200
ksum=$(field "$(last_line "$T_DIR/keep.out")" sum)
kpid=${T_PIDS[keep]}
t_kill keep
out=$("$SOCKMIG" restore --detach "$T_DIR/keep.img" --stdout "$T_DIR/krest.out") || t_fail "restore of keep.img failed"
T_PIDS[krest]=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' <<<"$out")
[ -n "${T_PIDS[krest]}" ] || t_fail "restore printed no pid: $out"
t_wait_line krest '^count=[0-9]+ ' 20
line=$(grep -m1 '^count=' "$T_DIR/krest.out")
[ "$(field "$line" sum)" = "$ksum" ] && [ "$(field "$line" avx)" = ok ] &&
	[ "$(field "$line" pid)" = "$kpid" ] && [ "$(field "$line" count)" -gt 300 ] ||
	t_fail "restored copy of a running process: $line (sum was $ksum)"
t_kill krest

# ---- checkpoint (the original ends), restore as a new process ----
start_counter orig
opid=${T_PIDS[orig]}
t_wait_line orig '^count=500 ' 20
out=$("$SOCKMIG" checkpoint "$opid" -o "$T_DIR/a.img") || t_fail "checkpoint of $opid failed"
[ "$out" = "checkpointed pid $opid to $T_DIR/a.img" ] || t_fail "unexpected output: $out"
# Ended by the time the command returned: dead, only our wait left to do.
st=$(proc_state "$opid")
[ -z "$st" ] || [ "$st" = Z ] || t_fail "the original $opid is in state $st after the checkpoint"
rc=0
wait "$opid" 2>/dev/null || rc=$?
unset 'T_PIDS[orig]'
[ "$rc" = 137 ] || t_fail "the original ended with status $rc, not by SIGKILL"
no_leftovers
ref=$(last_line "$T_DIR/orig.out")
c0=$(field "$ref" count)
sum=$(field "$ref" sum)
t_log "checkpointed at or after: $ref"

out=$("$SOCKMIG" restore --detach "$T_DIR/a.img" --stdout "$T_DIR/rest.out" 2>"$T_DIR/restore.err") ||
	t_fail "restore failed: $(cat "$T_DIR/restore.err")"
rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' <<<"$out")
[ -n "$rpid" ] && [ "$out" = "restored pid $rpid" ] || t_fail "restore printed '$out', not 'restored pid N'"
T_PIDS[rest]=$rpid
[ "$rpid" != "$opid" ] || t_fail "the restored process has the original's pid outside its namespace"
t_wait_line rest "^count=$((c0 + 500)) " 20
n=0
while read -r line; do
	n=$((n + 1))
	[ "$(field "$line" count)" = "$((c0 + 100 * n))" ] || t_fail "line $n out of sequence: $line (original at $c0)"
	[ "$(field "$line" sum)" = "$sum" ] || t_fail "memory checksum changed: $line (was $sum)"
	[ "$(field "$line" avx)" = ok ] || t_fail "AVX state lost: $line"
	[ "$(field "$line" pid)" = "$opid" ] || t_fail "getpid() is $(field "$line" pid), not its own $opid"
done < <(grep -E '^count=' "$T_DIR/rest.out" | head -n 5)
[ "$n" = 5 ] || t_fail "only $n lines from the restored process"
kill -0 "$rpid" || t_fail "the restored process $rpid is gone"
t_log "restored as pid $rpid: $(grep -m1 '^count=' "$T_DIR/rest.out")"
t_kill rest

# ---- restore refuses damaged and foreign images, and starts nothing ----
size=$(stat -c %s "$T_DIR/a.img")
head -c $((size / 2)) "$T_DIR/a.img" >"$T_DIR/cut.img"
python3 - "$T_DIR" <<'EOF'
import hashlib, sys
d = sys.argv[1]
img = bytearray(open(d + "/a.img", "rb").read())
flip = bytearray(img)
flip[len(flip) // 3] ^= 0x01
open(d + "/flip.img", "wb").write(flip)
# kind 1 (sockets) with a valid header checksum: refused for its kind
other = bytearray(img)
other[12:16] = (1).to_bytes(4, "little")
other[24:40] = hashlib.blake2b(bytes(other[0:24]), digest_size=16).digest()
open(d + "/other.img", "wb").write(other)
EOF
for bad in cut flip other; do
	case $bad in
	cut) re="^sockmig: cannot restore $T_DIR/cut.img: image byte [0-9]+: truncated: " ;;
	flip) re="^sockmig: cannot restore $T_DIR/flip.img: image byte [0-9]+: .*checksum mismatch$" ;;
	other) re="^sockmig: cannot restore $T_DIR/other.img: image holds kind 1, not a process checkpoint$" ;;
	esac
	expect_refusal "$bad" "$re" "$SOCKMIG" restore "$T_DIR/$bad.img" --stdout "$T_DIR/$bad.out"
	[ ! -s "$T_DIR/$bad.out" ] || t_fail "$bad: a process was started: $(head -n 2 "$T_DIR/$bad.out")"
done
expect_refusal notimage "^sockmig: cannot restore /etc/passwd: image byte 0: not a sockmig image \(bad magic\)$" \
	"$SOCKMIG" restore /etc/passwd
expect_refusal noimage "^sockmig: restore: cannot open $T_DIR/none.img: No such file or directory$" \
	"$SOCKMIG" restore "$T_DIR/none.img"
t_pass
