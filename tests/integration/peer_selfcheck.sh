#!/bin/bash
# The traffic program's checks can fail: peer must report a clean run as
# clean, and a corrupted, cut or lossy echo as an error with the place.
#
# Needs no lab and never touches the machine's own network namespace: the
# test runs itself again under `unshare -n` (loopback of a private namespace,
# gone when its last process ends) and compares the root namespace before and
# after.
source "$(dirname "$0")/../lib.sh"

if [ -z "${PEER_IN_NETNS:-}" ]; then
	before=$(t_root_net_snapshot)
	PEER_IN_NETNS=1 unshare -n bash "$0" "$@"
	status=$?
	[ "$(t_root_net_snapshot)" = "$before" ] ||
		t_fail "the machine's own network namespace changed"
	exit "$status"
fi

# This test does not use sockmig itself; only peer has to be built.
[ -x "$SOCKMIG" ] || SOCKMIG=/bin/true
t_init
PEER=$T_PROGS/peer
[ -x "$PEER" ] || t_fail "$PEER is not built"
ip link set lo up || t_fail "cannot bring up loopback in the private namespace"

# Like t_spawn, without a lab: we already are in our own namespace.
spawn() {
	local tag=$1
	shift
	"$@" >"$T_DIR/$tag.out" 2>"$T_DIR/$tag.err" &
	T_PIDS[$tag]=$!
}

# A bounded wait for a program spawned under timeout(1) or bounded by its
# own --drain-timeout once told to stop. Not t_wait_exit:
# its watchdog is a subshell that inherits the harness's TERM trap, so killing
# the watchdog runs t_cleanup in it (all programs killed, $T_DIR removed).
wait_exit() {
	local pid=${T_PIDS[$1]} status
	wait "$pid"
	status=$?
	unset "T_PIDS[$1]"
	return "$status"
}

# The first stdout line of TAG that starts with WORD.
line() { grep -m1 "^$2 " "$T_DIR/$1.out"; }

# The value of KEY=... in a line.
field() { sed -nE "s/.* $2=([^ ]*).*/\\1/p" <<<"$1"; }

# (a) a clean TCP stream, 8 connections, over IPv4 and IPv6.
for addr in 127.0.0.1:5001 '[::1]:5001'; do
	spawn echo "$PEER" tcp-echo --listen "$addr"
	t_wait_line echo '^ready$' 5
	spawn stream timeout 60 "$PEER" tcp-stream --connect "$addr" --conns 8 --bytes 8m
	wait_exit stream || t_fail "tcp-stream to $addr failed: $(cat "$T_DIR/stream.out")"
	done_line=$(line stream done) || t_fail "no done line from tcp-stream to $addr"
	sent=$(field "$done_line" sent)
	[ "$sent" = $((8 * 8 << 20)) ] && [ "$(field "$done_line" verified)" = "$sent" ] &&
		[ "$(field "$done_line" errors)" = 0 ] || t_fail "tcp-stream to $addr: $done_line"
	t_log "(a) $addr: $done_line"
	t_kill echo
done

# (b) one flipped byte at offset 100000 is found, with its offset.
spawn echo "$PEER" tcp-echo --listen 127.0.0.1:5002 --corrupt-after 100000
t_wait_line echo '^ready$' 5
spawn stream timeout 60 "$PEER" tcp-stream --connect 127.0.0.1:5002 --bytes 1m
wait_exit stream && t_fail "tcp-stream accepted a corrupted echo"
err=$(line stream error) || t_fail "no error line from tcp-stream"
[[ $err == "error conn=0 offset=100000: mismatch"* ]] || t_fail "wrong error line: $err"
t_log "(b) $err"
t_kill echo

# (b2) an echo that dies mid-stream is an error, not a hang.
spawn echo "$PEER" tcp-echo --listen 127.0.0.1:5003
t_wait_line echo '^ready$' 5
spawn stream timeout 60 "$PEER" tcp-stream --connect 127.0.0.1:5003 --conns 4
t_wait_line stream '^ready$' 5
t_kill echo
wait_exit stream && t_fail "tcp-stream went on after its echo died"
err=$(line stream error) || t_fail "no error line from tcp-stream"
t_log "(b2) $err"

# (b3) quiesce, hand the sockets to a new process, finish without a fault:
# quiesced means that the old process holds no byte of the stream.
spawn echo "$PEER" tcp-echo --listen 127.0.0.1:5004
t_wait_line echo '^ready$' 5
# Signalled, so not under timeout(1); after SIGUSR2 --drain-timeout bounds it.
spawn stream "$PEER" tcp-stream --connect 127.0.0.1:5004 --conns 4 --drain-timeout 10
t_wait_line stream '^ready$' 5
kill -USR1 "${T_PIDS[echo]}"
t_wait_line echo '^quiesced$' 10
# pidfd_getfd (syscall 438) copies the old process's sockets into the new one.
spawn echo2 /usr/bin/python3 -c '
import ctypes, os, sys
pid, peer = int(sys.argv[1]), sys.argv[2]
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(pid)
fds = []
for name in os.listdir("/proc/%d/fd" % pid):
    if os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
        fd = libc.syscall(438, pidfd, int(name), 0)
        if fd < 0:
            sys.exit("pidfd_getfd: " + os.strerror(ctypes.get_errno()))
        fds.append(fd)
args = [peer, "tcp-echo"]
for fd in fds:
    os.set_inheritable(fd, True)
    args += ["--fd", str(fd)]
os.execv(peer, args)
' "${T_PIDS[echo]}" "$PEER"
t_wait_line echo2 '^ready$' 5
kill -USR2 "${T_PIDS[stream]}"
wait_exit stream || t_fail "tcp-stream failed across the hand-over: $(cat "$T_DIR/stream.out")"
done_line=$(line stream done) || t_fail "no done line from tcp-stream"
[ "$(field "$done_line" verified)" = "$(field "$done_line" sent)" ] || t_fail "$done_line"
t_log "(b3) $done_line"
t_kill echo2
t_kill echo

# (c) a clean UDP stream at 5 kHz, over IPv4 and IPv6.
for addr in 127.0.0.1:5005 '[::1]:5005'; do
	spawn uecho "$PEER" udp-echo --bind "$addr"
	t_wait_line uecho '^ready$' 5
	spawn ustream timeout 60 "$PEER" udp-stream --connect "$addr" --count 3000 --interval-us 200
	wait_exit ustream || t_fail "udp-stream to $addr failed: $(cat "$T_DIR/ustream.out")"
	done_line=$(line ustream done) || t_fail "no done line from udp-stream"
	[ "$(field "$done_line" lost)" = 0 ] && [ "$(field "$done_line" received)" = 3000 ] ||
		t_fail "udp-stream to $addr: $done_line"
	t_log "(c) $addr: $done_line"
	t_kill uecho
done

# (d) one dropped datagram is one lost datagram.
spawn uecho "$PEER" udp-echo --bind 127.0.0.1:5006 --drop-after 100
t_wait_line uecho '^ready$' 5
spawn ustream timeout 60 "$PEER" udp-stream --connect 127.0.0.1:5006 --count 500 --interval-us 200 --drain-timeout 1
wait_exit ustream && t_fail "udp-stream accepted a dropped datagram"
err=$(line ustream error) || t_fail "no error line from udp-stream"
[ "$(field "$err" lost)" = 1 ] || t_fail "wrong count: $err"
t_log "(d) $err"
t_kill uecho

# (d2) an echo that is killed and started again loses what came in between.
spawn uecho "$PEER" udp-echo --bind 127.0.0.1:5007
t_wait_line uecho '^ready$' 5
spawn ustream timeout 60 "$PEER" udp-stream --connect 127.0.0.1:5007 --count 2000 --interval-us 1000 --drain-timeout 1
t_wait_line ustream '^ready$' 5
t_kill uecho
spawn uecho "$PEER" udp-echo --bind 127.0.0.1:5007
t_wait_line uecho '^ready$' 5
wait_exit ustream && t_fail "udp-stream accepted an echo that was down"
err=$(line ustream error) || t_fail "no error line from udp-stream"
[ "$(field "$err" lost)" -gt 0 ] || t_fail "nothing lost: $err"
t_log "(d2) $err"
t_kill uecho

# (e) ping-pong measures its round trips, and catches a corrupted reply.
spawn echo "$PEER" tcp-echo --listen 127.0.0.1:5008
t_wait_line echo '^ready$' 5
spawn pp timeout 60 "$PEER" tcp-pingpong --connect 127.0.0.1:5008 --count 300 --interval-us 1000
wait_exit pp || t_fail "tcp-pingpong failed: $(cat "$T_DIR/pp.out")"
done_line=$(line pp done) || t_fail "no done line from tcp-pingpong"
[ "$(field "$done_line" count)" = 300 ] && [[ $(field "$done_line" max_rtt_ms) =~ ^[0-9]+\.[0-9]{3}$ ]] ||
	t_fail "tcp-pingpong: $done_line"
t_log "(e) $done_line"
t_kill echo
spawn echo "$PEER" tcp-echo --listen 127.0.0.1:5009 --corrupt-after 803
t_wait_line echo '^ready$' 5
spawn pp timeout 60 "$PEER" tcp-pingpong --connect 127.0.0.1:5009 --count 300 --interval-us 200
wait_exit pp && t_fail "tcp-pingpong accepted a corrupted reply"
err=$(line pp error) || t_fail "no error line from tcp-pingpong"
[[ $err == "error seq=100: "* ]] || t_fail "wrong error line: $err"
t_log "(e2) $err"
t_kill echo

t_pass
