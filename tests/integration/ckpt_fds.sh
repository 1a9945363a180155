#!/bin/bash
# Every kind of fd sockmig moves, through `sockmig checkpoint` and
# `sockmig restore` (ZDTM style, tests/progs/ckpt_fds.c):
#   - the program builds files with offsets, a dup pair sharing one offset,
#     an O_APPEND file, a file opened O_TRUNC, a deleted file and a sparse
#     memfd with content, a directory, /dev/null, /dev/urandom, O_PATH, a pipe
#     and a FIFO with bytes inside, eventfds (one a semaphore), an armed, a
#     periodic and a fired timerfd, a signalfd, two epolls (one nested, one
#     registration under a number since closed), stream and datagram
#     socketpairs with bytes queued both ways, FD_CLOEXEC on some; it says
#     "ready" (on lab node n1);
#   - it is checkpointed on n1 (and ends); a file it holds is changed: the
#     restore on n2 refuses it naming the fd and the file, and starts
#     nothing; the file put back, the restore on n2 starts it (in n2's
#     network namespace); on SIGUSR1 it checks every fd (numbers, flags,
#     FD_CLOEXEC, offsets, bytes, counts, timers, epoll data) and says
#     "pass", and the restore command exits with its status 0;
#   - the pre-flight check refuses a netlink socket and an io_uring, one
#     sentence naming the fd, before anything is frozen (the process goes on).
# A lab of 3 nodes: the process moves from n1 to n2 through the image file
# (the nodes share the file system).
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3

P=$T_PROGS/ckpt_fds
[ -x "$P" ] || t_fail "ckpt_fds is not built"
proc_state() { sed -nE 's/^[0-9]+ \(.*\) (.) .*/\1/p' "/proc/$1/stat" 2>/dev/null; }

# expect_refusal TAG REGEX CMD...: CMD fails with exactly one stderr line
# matching REGEX.
expect_refusal() {
	local tag=$1 re=$2 rc=0
	shift 2
	"$@" >"$T_DIR/refuse.stdout" 2>"$T_DIR/refuse.stderr" || rc=$?
	[ "$rc" != 0 ] || t_fail "$tag: accepted: $*"
	[ "$(wc -l <"$T_DIR/refuse.stderr")" = 1 ] ||
		t_fail "$tag: not one line on stderr: $(cat "$T_DIR/refuse.stderr")"
	grep -qE -- "$re" "$T_DIR/refuse.stderr" || t_fail "$tag: unexpected sentence: $(cat "$T_DIR/refuse.stderr")"
	t_log "$tag: $(cat "$T_DIR/refuse.stderr")"
}

# ---- refusals before anything is frozen (on n1) ----
t_spawn nl n1 python3 -c 'import socket, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
print("up", s.fileno(), flush=True)
time.sleep(120)'
t_wait_line nl '^up ' 10
fd=$(awk '{print $2}' "$T_DIR/nl.out")
expect_refusal netlink "^sockmig: .*pid ${T_PIDS[nl]} fd $fd: a netlink socket is not migratable$" \
	t_exec n1 "$SOCKMIG" checkpoint "${T_PIDS[nl]}" -o "$T_DIR/x.img"
st=$(proc_state "${T_PIDS[nl]}")
[ "$st" = S ] || t_fail "netlink: the process is in state '$st' after the refusal"
t_kill nl

t_spawn uring n1 python3 -c 'import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)  # io_uring_setup
if fd < 0:
    print("skip", os.strerror(ctypes.get_errno()), flush=True)
else:
    print("up", fd, flush=True)
time.sleep(120)'
t_wait_line uring '^(up|skip) ' 10
if grep -q '^up ' "$T_DIR/uring.out"; then
	fd=$(awk '{print $2}' "$T_DIR/uring.out")
	expect_refusal io_uring "^sockmig: .*pid ${T_PIDS[uring]} fd $fd: io_uring is not migratable$" \
		t_exec n1 "$SOCKMIG" checkpoint "${T_PIDS[uring]}" -o "$T_DIR/x.img"
	st=$(proc_state "${T_PIDS[uring]}")
	[ "$st" = S ] || t_fail "io_uring: the process is in state '$st' after the refusal"
else
	t_log "io_uring is not available here ($(cat "$T_DIR/uring.out")): case skipped"
fi
t_kill uring
[ ! -e "$T_DIR/x.img" ] || t_fail "a refused checkpoint wrote an image"

# ---- checkpoint on n1, a changed file refused, restore on n2, every fd checked ----
W=$T_DIR/work
mkdir "$W"
t_spawn orig n1 "$P" "$W"
opid=${T_PIDS[orig]}
t_wait_line orig '^(ready|fail)' 10
grep -qx ready "$T_DIR/orig.out" || t_fail "ckpt_fds did not start: $(cat "$T_DIR/orig.out")"
out=$(t_exec n1 "$SOCKMIG" checkpoint "$opid" -o "$T_DIR/fds.img" 2>&1) || t_fail "checkpoint on n1 failed: $out"
rc=0
wait "$opid" 2>/dev/null || rc=$?
unset 'T_PIDS[orig]'
[ "$rc" = 137 ] || t_fail "the original ended with status $rc, not by SIGKILL"
t_log "image: $(stat -c %s "$T_DIR/fds.img") bytes"

cp -p "$W/a" "$T_DIR/a.saved"
echo more >>"$W/a"
expect_refusal changed "^sockmig: cannot restore $T_DIR/fds.img: fd 10: $W/a changed since the checkpoint \(size 16 -> 21\)$" \
	t_exec n2 "$SOCKMIG" restore --detach "$T_DIR/fds.img" --stdout "$T_DIR/changed.out"
[ ! -s "$T_DIR/changed.out" ] || t_fail "a refused restore started the process: $(cat "$T_DIR/changed.out")"
cp -p "$T_DIR/a.saved" "$W/a"

# Not --detach: the restore command waits for the process and exits with
# its status, which is checked below.
t_spawn restore n2 "$SOCKMIG" restore "$T_DIR/fds.img" --stdout "$T_DIR/rest.out"
t_wait_line restore '^restored pid [0-9]+$' 20
rpid=$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/restore.out")
[ "$rpid" != "$opid" ] || t_fail "the restored process has the original's pid"
netns=$(readlink "/proc/$rpid/ns/net") || t_fail "the restored process $rpid is gone: $(cat "$T_DIR/restore.err")"
[ "$netns" = "$(t_exec n2 readlink /proc/self/ns/net)" ] ||
	t_fail "the restored process is in network namespace $netns, not n2's"
kill -USR1 "$rpid" || t_fail "the restored process $rpid is gone: $(cat "$T_DIR/restore.err")"
rc=0
t_wait_exit restore 20 || rc=$?
result=$(cat "$T_DIR/rest.out")
[ "$result" = pass ] || t_fail "the restored process says: ${result:-nothing} (status $rc)"
[ "$rc" = 0 ] || t_fail "sockmig restore exited with $rc after the process passed"
t_log "restored on n2 as pid $rpid: $result"
t_pass
