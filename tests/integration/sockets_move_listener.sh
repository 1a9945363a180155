#!/bin/bash
# A listener moves with the connections it has, including those still
# waiting in its accept queue: new SYNs are held (and replayed on n2) while
# the application accepts what waits, and what it accepts moves too. Every
# stream is checked byte for byte, and a new client connects to n2 after the
# move. An application that does not accept within --drain gets the move
# refused, and its waiting connection is still there afterwards.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer
SLOW=$T_ROOT/tests/integration/lib/slow_accept.py

t_check t_exec n1 ip addr add 198.18.0.102/24 dev eth0

# 6 clients, a holder that accepts one every 0.3 s: some wait in the queue.
t_spawn holder n1 python3 "$SLOW" 198.18.0.102 7100 0.3
t_wait_line holder '^ready'
t_spawn streams n3 "$PEER" tcp-stream --connect 198.18.0.102:7100 --conns 6 --window 64k
t_wait_line streams '^ready'
t_wait_line holder '^accepted' 10
hpid=${T_PIDS[holder]}

t_spawn new n2 "$SOCKMIG" sockets restore --listen 198.18.0.2:9100 --take-address eth0 -- "$PEER" tcp-echo --fd env
t_wait_line new '^listening'
t_exec n1 "$SOCKMIG" sockets save "$hpid" --to 198.18.0.2:9100 --move-address eth0 --drain 10000 \
	>"$T_DIR/save.out" 2>&1 || t_fail "sockets save failed: $(cat "$T_DIR/save.out")"
t_log "$(cat "$T_DIR/save.out")"
# the listener and all 6 connections moved: the holder accepted them all first
grep -qE '^moved 7 sockets \(7 TCP, 0 UDP\)' "$T_DIR/save.out" || t_fail "not 7 sockets moved: $(cat "$T_DIR/save.out")"
[ "$(grep -c '^accepted' "$T_DIR/holder.out")" = 6 ] || t_fail "the holder did not accept all 6 before the move"
t_wait_line new '^ready'

# the streams go on against n2, every byte checked
kill -USR2 "${T_PIDS[streams]}"
t_wait_exit streams 60 || t_fail "a stream failed: $(cat "$T_DIR/streams.out")"
grep -qE '^done conns=6 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/streams.out" ||
	t_fail "streams: $(cat "$T_DIR/streams.out")"

# a new client reaches the listener on n2
t_exec n3 timeout 30 "$PEER" tcp-stream --connect 198.18.0.102:7100 --conns 1 --bytes 200000 >"$T_DIR/late.out" 2>&1 ||
	t_fail "a new client after the move failed: $(cat "$T_DIR/late.out")"
grep -qE '^done conns=1 sent=200000 verified=200000' "$T_DIR/late.out" || t_fail "late: $(cat "$T_DIR/late.out")"
[ -n "$(t_exec n2 ss -Htln '( sport = :7100 )')" ] || t_fail "n2 does not listen on 7100"
[ -z "$(t_exec n1 ss -Htln '( sport = :7100 )')" ] || t_fail "n1 still listens on 7100"
kill -0 "$hpid" || t_fail "the old holder died"
t_kill new
t_kill holder

# A holder that never accepts: the move is refused within --drain, nothing
# changes, and the waiting connection is still in its queue.
t_check t_exec n1 ip addr add 198.18.0.103/24 dev eth0
t_spawn stuck n1 python3 "$SLOW" 198.18.0.103 7200 0.1 --never
t_wait_line stuck '^ready'
t_spawn waiting n3 "$PEER" tcp-stream --connect 198.18.0.103:7200 --conns 1 --window 64k
t_wait_line waiting '^ready'
t_spawn new2 n2 "$SOCKMIG" sockets restore --listen 198.18.0.2:9200 --take-address eth0 -- "$PEER" tcp-echo --fd env
t_wait_line new2 '^listening'
if t_exec n1 "$SOCKMIG" sockets save "${T_PIDS[stuck]}" --to 198.18.0.2:9200 --move-address eth0 --drain 500 \
	>"$T_DIR/refused.out" 2>&1; then
	t_fail "a move with a connection nobody accepts was not refused"
fi
grep -qE 'fd [0-9]+: 1 connections wait in its listen queue and the application did not accept them within 500 ms' \
	"$T_DIR/refused.out" || t_fail "unclear refusal: $(cat "$T_DIR/refused.out")"
[ "$(wc -l <"$T_DIR/refused.out")" = 1 ] || t_fail "more than one line: $(cat "$T_DIR/refused.out")"
t_exec n1 ip -br addr show dev eth0 | grep -q '198.18.0.103/24' || t_fail "the address left n1"
# still waiting in the accept queue of the listener on n1 (Recv-Q 1)
t_exec n1 ss -Htln '( sport = :7200 )' | grep -qE '^LISTEN +1 ' || t_fail "the waiting connection is gone: $(t_exec n1 ss -Htln)"
[ -z "$(t_exec n1 nft list tables 2>/dev/null | grep sockmig)" ] || t_fail "n1 kept an nft table"
t_pass
