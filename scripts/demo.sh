#!/bin/bash
# The README's first command: install what is missing, build, bring up a
# virtual cluster of three nodes on this machine, and move a live server's
# TCP and UDP sockets between two nodes, back and forth, while a peer on the
# third keeps streaming and checks every byte and datagram.
# (The cluster layer will move the whole process, not only its sockets.)
#
#   sudo bash scripts/demo.sh
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
sockmig_ensure_deps

if [ "$(id -u)" != 0 ]; then
	echo "sockmig: the demo needs root (it creates network namespaces); run: sudo bash scripts/demo.sh" >&2
	exit 1
fi

make -s -j"$(nproc 2>/dev/null || echo 2)" all

SOCKMIG=$PWD/build/sockmig
PEER=$PWD/build/tests/progs/peer
LAB=demo$$
tmp=$(mktemp -d /tmp/sockmig-demo.XXXXXX)
pids=()

cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	"$SOCKMIG" lab down --name "$LAB" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait, bounded, for a line on a background program's stdout.
wait_line() {
	timeout "$3" grep -m1 -qE -- "$2" <(timeout "$3" tail -n +1 -F "$1" 2>/dev/null)
}

echo "== a lab of 3 nodes, each its own network namespace on one bridge"
"$SOCKMIG" lab up --nodes 3 --name "$LAB"
"$SOCKMIG" lab status --name "$LAB"

# (a function, so: not for programs started with & whose pid we signal)
node() { "$SOCKMIG" lab exec --name "$LAB" "$@"; }
EXEC=("$SOCKMIG" lab exec --name "$LAB")

echo
echo "== the job: an echo server on n1 with an address of its own, 198.18.0.100"
echo "   (TCP port 7000, UDP port 7001); on n3 a peer streams to it over 4 TCP"
echo "   connections and sends UDP datagrams at 1 kHz, checking every echo"
node n1 ip addr add 198.18.0.100/24 dev eth0
"${EXEC[@]}" n1 "$PEER" tcp-echo --listen 198.18.0.100:7000 --bind 198.18.0.100:7001 >"$tmp/job0.out" 2>&1 &
job=$!
pids+=($job)
wait_line "$tmp/job0.out" '^ready' 10
"${EXEC[@]}" n3 "$PEER" tcp-stream --connect 198.18.0.100:7000 --conns 4 --rate 4m >"$tmp/tcp.out" 2>"$tmp/tcp.err" &
tcp=$!
pids+=($tcp)
"${EXEC[@]}" n3 "$PEER" udp-stream --connect 198.18.0.100:7001 --interval-us 1000 >"$tmp/udp.out" 2>"$tmp/udp.err" &
udp=$!
pids+=($udp)
wait_line "$tmp/tcp.out" '^ready' 10
wait_line "$tmp/udp.out" '^ready' 10

# Each move: the job's current process hands over (it stops touching its
# sockets), a new process on the other node takes every socket: the
# listener, the 4 connections, the UDP socket with what waits in its queue.
from=n1
for i in 1 2 3 4; do
	if [ "$from" = n1 ]; then to=n2 toaddr=198.18.0.2; else to=n1 toaddr=198.18.0.1; fi
	wait_line "$tmp/tcp.err" 'progress' 5 # traffic is flowing
	kill -USR1 "$job"
	wait_line "$tmp/job$((i - 1)).out" '^quiesced' 10
	"${EXEC[@]}" "$to" "$SOCKMIG" sockets restore --listen "$toaddr:$((9000 + i))" --take-address eth0 -- \
		"$PEER" tcp-echo --fd env >"$tmp/job$i.out" 2>"$tmp/job$i.err" &
	newjob=$!
	pids+=($newjob)
	wait_line "$tmp/job$i.out" '^listening' 10
	printf 'move %d, %s -> %s: ' "$i" "$from" "$to"
	node "$from" "$SOCKMIG" sockets save "$job" --to "$toaddr:$((9000 + i))" --move-address eth0
	wait_line "$tmp/job$i.out" '^ready' 10
	kill "$job"
	job=$newjob
	from=$to
	: >"$tmp/tcp.err"
done
wait_line "$tmp/tcp.err" 'progress' 5

echo
echo "== the peer on n3 stops and checks what came back"
kill -USR2 "$tcp" "$udp"
wait "$tcp" && wait "$udp" && ok=1 || ok=
grep -h '^done\|^error' "$tmp/tcp.out" "$tmp/udp.out"
echo "(max_gap_ms is the longest the peer waited for an echo: it includes the"
echo " old server handing over and the new one starting, not only the freeze)"
echo
if [ -n "$ok" ]; then
	echo "demo: 4 moves, every byte and every datagram came back once and in order"
else
	echo "demo: FAILED: the peer saw lost or damaged data" >&2
	exit 1
fi
