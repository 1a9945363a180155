#!/bin/bash
# The README's first command: install what is missing, build, bring up a
# virtual cluster of three nodes on this machine and show traffic crossing it.
# (The cluster layer will turn this into the live-migration demo.)
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

echo
echo "== TCP and UDP echo servers on n1 (IPv4 and IPv6)"
"$SOCKMIG" lab exec --name "$LAB" n1 -- "$PEER" tcp-echo --listen '[::]:7000' >"$tmp/tcp.out" 2>&1 &
pids+=($!)
"$SOCKMIG" lab exec --name "$LAB" n1 -- "$PEER" udp-echo --bind '[::]:7001' >"$tmp/udp.out" 2>&1 &
pids+=($!)
wait_line "$tmp/tcp.out" '^ready' 10
wait_line "$tmp/udp.out" '^ready' 10

for target in 198.18.0.1 '[2001:2::1]'; do
	echo
	echo "== n3 streams 8 MiB over TCP to $target:7000, every echoed byte checked"
	"$SOCKMIG" lab exec --name "$LAB" n3 -- "$PEER" tcp-stream --connect "$target:7000" --conns 4 --bytes 2097152 2>/dev/null
	echo "== n2 sends 500 datagrams over UDP to $target:7001 at 1 kHz, every echo checked"
	"$SOCKMIG" lab exec --name "$LAB" n2 -- "$PEER" udp-stream --connect "$target:7001" --count 500 2>/dev/null
done

echo
echo "demo: traffic crossed the lab; removing it"
