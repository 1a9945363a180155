#!/bin/bash
# Our own daemon cannot be checkpointed. A whole-process move that fails at
# each step leaves the process where it
# was, running, with its connections: a peer on n3 streams through every
# attempt and gets every byte back; the destination keeps no copy of the
# process and gives the address back; then a clean move still works.
#   src-fail-process   S cannot send the process image (after the sockets)
#   dst-refuse         D refuses after reading the sockets and the process
#   dst-fail-restore   D made the process, held stopped, then fails
#   dst-fail-finish    D fails after the process and the replay
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer
ECHO=$T_PROGS/epoll_echo
[ -x "$ECHO" ] || t_fail "epoll_echo is not built"

t_check t_exec n1 ip addr add 198.18.0.100/24 dev eth0

# our own daemon is refused, and goes on
dpid=$(pgrep -f "sockmigd --config /run/sockmig/labs/$T_LAB/n1.conf")
[ -n "$dpid" ] || t_fail "no sockmigd on n1"
out=$(t_exec n1 "$SOCKMIG" checkpoint "$dpid" -o "$T_DIR/d.img" 2>&1) && t_fail "the daemon was checkpointed"
[ "$out" = "sockmig: cannot checkpoint: pid $dpid is the sockmig daemon, which cannot be checkpointed" ] ||
	t_fail "unexpected refusal of the daemon: $out"
t_check t_exec n1 "$SOCKMIG" nodes
t_spawn ep n1 "$ECHO" 198.18.0.100 7077
t_wait_line ep '^listening'
pid=${T_PIDS[ep]}
t_spawn stream n3 "$PEER" tcp-stream --connect 198.18.0.100:7077 --conns 4 --window 256k
t_wait_line stream '^ready'
t_wait_progress stream 1000000 100

# copies of this epoll_echo anywhere (lab nodes share the machine's pid
# namespace; the port is this test's own)
copies() { pgrep -f "epoll_echo 198\.18\.0\.100 7077" | grep -vx "$pid" | tr '\n' ' '; }

port=9100
attempt() { # FAULT SIDE EXPECTED-SENTENCE
	local fault=$1 side=$2 want=$3 s_env=() d_env=() out
	port=$((port + 1))
	if [ "$side" = src ]; then s_env=(env SOCKMIG_FAULT="$fault"); else d_env=(env SOCKMIG_FAULT="$fault"); fi
	t_spawn "d-$fault" n2 "${d_env[@]}" "$SOCKMIG" restore --listen "198.18.0.2:$port" --take-address eth0
	t_wait_line "d-$fault" '^listening'
	out=$(t_exec n1 "${s_env[@]}" "$SOCKMIG" checkpoint "$pid" --to "198.18.0.2:$port" --move-address eth0 2>&1) &&
		t_fail "$fault: the move succeeded: $out"
	grep -qE "^sockmig: cannot move pid $pid \(it goes on here, connections intact\): .*$want" <<<"$out" ||
		t_fail "$fault: unexpected sentence: $out"
	t_log "$fault: $out"
	t_wait_exit "d-$fault" 20 && t_fail "$fault: the destination's restore reported success"
	# the original runs, not stopped, and keeps its sockets; no copy on n2
	kill -0 "$pid" 2>/dev/null || t_fail "$fault: the original is gone"
	grep -q '^State:.*[RS] ' "/proc/$pid/status" || t_fail "$fault: the original is $(grep State "/proc/$pid/status")"
	[ -z "$(copies)" ] || t_fail "$fault: a copy of the process is left: $(copies)"
	[ -z "$(t_exec n2 ss -Htan state established "( sport = :7077 )")" ] ||
		t_fail "$fault: n2 kept connections of the process"
	t_exec n1 ip -br addr show dev eth0 | grep '198\.18\.0\.100/' >/dev/null || t_fail "$fault: n1 lost the address"
	t_exec n2 ip -br addr show dev eth0 | grep '198\.18\.0\.100/' >/dev/null && t_fail "$fault: n2 kept the address"
	# the stream goes on through the original
	t_wait_progress stream $(($(last_verified stream) + 2000000)) 100
}

attempt src-fail-process src 'cannot send the process to the destination: fault injected: src-fail-process'
attempt dst-refuse dst 'the destination refused: fault injected: dst-refuse'
attempt dst-fail-restore dst 'the destination refused: .*fault injected: dst-fail-restore'
attempt dst-fail-finish dst 'the destination refused: .*fault injected: dst-fail-finish'

# after all that, a clean move works and the stream is whole
t_spawn d-ok n2 "$SOCKMIG" restore --listen 198.18.0.2:9199 --take-address eth0
t_wait_line d-ok '^listening'
t_exec n1 "$SOCKMIG" checkpoint "$pid" --to 198.18.0.2:9199 --move-address eth0 >"$T_DIR/ok.out" 2>&1 ||
	t_fail "the clean move failed: $(cat "$T_DIR/ok.out")"
t_wait_line d-ok '^restored pid [0-9]+$'
t_wait_progress stream $(($(last_verified stream) + 2000000)) 100
kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 30 || t_fail "the peer's stream failed: $(cat "$T_DIR/stream.out")"
grep -qE '^done conns=4 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/stream.out" ||
	t_fail "the peer did not get every byte back: $(cat "$T_DIR/stream.out")"
t_log "$(cat "$T_DIR/stream.out")"
kill "$(sed -nE 's/^restored pid ([0-9]+)$/\1/p' "$T_DIR/d-ok.out")"
t_pass
