#!/bin/bash
# `sockmig sockets save/show/restore` refuse what they cannot do with one
# sentence on stderr (one line, naming the object and the cause) and a
# non-zero exit, and change nothing: the holder's connection goes on (every
# byte echoed once, no error) and no nftables table is left in the node.
#   save: a pid that does not exist; an fd that is not open; an fd of a file,
#         of a unix, a netlink and a raw socket; a listening TCP socket
#         (alone, and next to the movable established one).
#   show / restore FILE: a truncated image, one with a flipped byte, one of a
#         newer major format version (with a valid header checksum), a
#         missing file; restore with a program that does not exist.
# First a real snapshot (save -o) of the live connection: show and --json
# describe it, and the connection still works after it.
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
PEER=$T_PROGS/peer
JOB=198.18.0.100
PORT=7200
IMG=$T_DIR/snap.img

t_check t_exec n1 ip addr add $JOB/24 dev eth0

has_table() { t_exec "$1" nft list tables | grep -qw sockmig; }

# The holder: a live connection streamed from n3 (not quiesced: a refusal
# must not even pause it).
t_spawn echo n1 "$PEER" tcp-echo --listen "$JOB:$PORT"
t_wait_line echo '^ready'
t_spawn stream n3 "$PEER" tcp-stream --connect "$JOB:$PORT" --conns 1 --window 1m
t_wait_line stream '^ready'
t_wait_progress stream 2000000
pid=${T_PIDS[echo]}
fd=$(t_exec n1 ss -Htnp state established "( sport = :$PORT )" | grep -o 'fd=[0-9]*' | cut -d= -f2)
lfd=$(t_exec n1 ss -Htlnp "( sport = :$PORT )" | grep -o 'fd=[0-9]*' | cut -d= -f2)
[ -n "$fd" ] && [ -n "$lfd" ] || t_fail "no established and listening socket of the holder on n1"

# A holder of the sockets that cannot move (root in n1: raw works).
t_spawn odd n1 python3 -c '
import os, signal, socket, tempfile
f = tempfile.TemporaryFile()
u1, u2 = socket.socketpair()
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
tcpclose = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # never connected: state CLOSE
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 0))
print("fds file=%d unix=%d netlink=%d raw=%d tcpclose=%d udp=%d" % (f.fileno(), u1.fileno(), nl.fileno(),
      raw.fileno(), tcpclose.fileno(), udp.fileno()), flush=True)
while True:
    signal.pause()
'
t_wait_line odd '^fds '
opid=${T_PIDS[odd]}
fdof() { grep -o "$1=[0-9]*" "$T_DIR/odd.out" | cut -d= -f2; }

# A free pid: above every pid in use, below pid_max.
nopid=$(($(cat /proc/sys/kernel/pid_max) - 1))
while [ -e /proc/$nopid ]; do nopid=$((nopid - 1)); done

# NAME NODE REGEX CMD...: CMD fails with one line on stderr matching REGEX;
# nothing is left behind in NODE.
N=0
refuse() {
	local name=$1 node=$2 re=$3 st=0
	shift 3
	N=$((N + 1))
	t_exec "$node" "$@" >"$T_DIR/r$N.out" 2>"$T_DIR/r$N.err" || st=$?
	[ "$st" != 0 ] || t_fail "$name: succeeded: $(cat "$T_DIR/r$N.out")"
	[ "$st" -lt 128 ] || t_fail "$name: killed by signal $((st - 128)): $(cat "$T_DIR/r$N.err")"
	[ "$(wc -l <"$T_DIR/r$N.err")" = 1 ] || t_fail "$name: stderr is not exactly one line: $(cat "$T_DIR/r$N.err")"
	grep -qE -- "^sockmig: .*$re" "$T_DIR/r$N.err" ||
		t_fail "$name: the sentence does not name the object and the cause ('$re'): $(cat "$T_DIR/r$N.err")"
	has_table "$node" && t_fail "$name: left an nftables table sockmig in $node"
	t_log "$name: $(cat "$T_DIR/r$N.err")"
}

# ---- save: what cannot be moved ----
refuse 'no such pid' n1 "pid $nopid.*(No such process|does not exist|no such process)" \
	"$SOCKMIG" sockets save $nopid -o "$T_DIR/x.img"
[ ! -e "$T_DIR/x.img" ] || t_fail "no such pid: an image file was left"
refuse 'fd not open' n1 "pid $pid has no fd 999" \
	"$SOCKMIG" sockets save "$pid" --fd 999 -o "$T_DIR/x.img"
refuse 'fd of a file' n1 "pid $opid fd $(fdof file) is not a socket" \
	"$SOCKMIG" sockets save "$opid" --fd "$(fdof file)" -o "$T_DIR/x.img"
refuse 'unix socket' n1 "pid $opid fd $(fdof unix) is a unix socket, which cannot be moved" \
	"$SOCKMIG" sockets save "$opid" --fd "$(fdof unix)" -o "$T_DIR/x.img"
refuse 'netlink socket' n1 "pid $opid fd $(fdof netlink) is a netlink socket, which cannot be moved" \
	"$SOCKMIG" sockets save "$opid" --fd "$(fdof netlink)" -o "$T_DIR/x.img"
refuse 'raw socket' n1 "pid $opid fd $(fdof raw) is a raw socket, which cannot be moved" \
	"$SOCKMIG" sockets save "$opid" --fd "$(fdof raw)" -o "$T_DIR/x.img"
refuse 'unconnected TCP socket' n1 "pid $opid fd $(fdof tcpclose): a TCP socket in state CLOSE cannot be moved" \
	"$SOCKMIG" sockets save "$opid" --fd "$(fdof tcpclose)" -o "$T_DIR/x.img"
# the movable one first: refused before it is frozen
refuse 'UDP + unconnected TCP' n1 "pid $opid fd $(fdof tcpclose): a TCP socket in state CLOSE cannot be moved" \
	"$SOCKMIG" sockets save "$opid" --fd "$(fdof udp)" --fd "$(fdof tcpclose)" -o "$T_DIR/x.img"
[ ! -e "$T_DIR/x.img" ] || t_fail "a refused save left an image file"
grep -q '^fds ' "$T_DIR/odd.out" && [ "$(awk '{print $3}' /proc/"$opid"/stat)" != T ] ||
	t_fail "the odd holder is stopped after the refusals"
t_exec n1 ip -o -4 addr show dev eth0 | grep -qF " $JOB/" || t_fail "the job address left n1"

# ---- a real snapshot of the live connection ----
t_exec n1 "$SOCKMIG" sockets save "$pid" --fd "$fd" -o "$IMG" >"$T_DIR/snap.out" 2>"$T_DIR/snap.err" ||
	t_fail "sockets save -o failed: $(cat "$T_DIR/snap.err")"
t_log "snapshot: $(cat "$T_DIR/snap.out")"
has_table n1 && t_fail "the snapshot left an nftables table sockmig in n1"
t_exec n1 "$SOCKMIG" sockets show "$IMG" >"$T_DIR/show.out" 2>"$T_DIR/show.err" ||
	t_fail "sockets show failed: $(cat "$T_DIR/show.err")"
t_log "show: $(tr '\n' '|' <"$T_DIR/show.out")"
grep -q "^sockets of pid $pid: 1$" "$T_DIR/show.out" || t_fail "show: $(cat "$T_DIR/show.out")"
grep -qE "^fd $fd: tcp ESTABLISHED $JOB:$PORT > 198\.18\.0\.3:[0-9]+ " "$T_DIR/show.out" ||
	t_fail "show does not describe the connection: $(cat "$T_DIR/show.out")"
t_exec n1 "$SOCKMIG" sockets show "$IMG" --json >"$T_DIR/show.json" 2>"$T_DIR/show.err" ||
	t_fail "sockets show --json failed: $(cat "$T_DIR/show.err")"
python3 -m json.tool "$T_DIR/show.json" >/dev/null || t_fail "show --json is not JSON: $(cat "$T_DIR/show.json")"
python3 - "$T_DIR/show.json" "$pid" "$fd" "$JOB:$PORT" <<'EOF' || t_fail "show --json: $(cat "$T_DIR/show.json")"
import json, sys
j = json.load(open(sys.argv[1]))
s = j["sockets"]
assert j["pid"] == int(sys.argv[2]), j["pid"]
assert len(s) == 1, s
s = s[0]
assert s["fd"] == int(sys.argv[3]) and s["proto"] == "tcp" and s["state"] == "ESTABLISHED", s
assert s["local"] == sys.argv[4] and s["remote"].startswith("198.18.0.3:"), s
EOF
# the snapshot left the connection working
t_wait_progress stream $(($(last_verified stream) + 4000000))

# ---- damaged images ----
size=$(stat -c %s "$IMG")
[ "$size" -gt 200 ] || t_fail "the snapshot is only $size bytes"
head -c $((size / 2)) "$IMG" >"$T_DIR/trunc.img"
python3 - "$IMG" "$T_DIR/flip.img" "$T_DIR/v2.img" <<'EOF' || t_fail "cannot make the damaged images"
import hashlib, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
f = bytearray(b)
f[len(f) // 2] ^= 0x01
open(sys.argv[2], "wb").write(f)
# docs/image-format.md: major at 8 (u16 LE), header checksum at 24..39 =
# BLAKE2b-128 of bytes 0..23; the sections' chain starts from it.
assert b[:8] == b"SOCKMIG\0" and struct.unpack_from("<H", b, 8)[0] == 1
assert bytes(b[24:40]) == hashlib.blake2b(bytes(b[:24]), digest_size=16).digest(), "checksum recipe"
struct.pack_into("<HH", b, 8, 2, 0)
b[24:40] = hashlib.blake2b(bytes(b[:24]), digest_size=16).digest()
open(sys.argv[3], "wb").write(b)
EOF
for cmd in show restore; do
	if [ $cmd = show ]; then run=("$SOCKMIG" sockets show); tail=(); else run=("$SOCKMIG" sockets restore); tail=(-- true); fi
	refuse "$cmd truncated" n2 "$T_DIR/trunc.img.*truncated" "${run[@]}" "$T_DIR/trunc.img" "${tail[@]}"
	refuse "$cmd flipped byte" n2 "$T_DIR/flip.img.*image byte [0-9]+: .*checksum mismatch" \
		"${run[@]}" "$T_DIR/flip.img" "${tail[@]}"
	refuse "$cmd newer version" n2 "$T_DIR/v2.img.*format version 2\.0, this sockmig reads up to 1\.x" \
		"${run[@]}" "$T_DIR/v2.img" "${tail[@]}"
	refuse "$cmd missing file" n2 "$T_DIR/none.img: No such file or directory" \
		"${run[@]}" "$T_DIR/none.img" "${tail[@]}"
done
refuse 'restore no such program' n2 "cannot run /nonexistent/prog: no such program" \
	"$SOCKMIG" sockets restore "$IMG" -- /nonexistent/prog
refuse 'restore no such program in PATH' n2 "cannot run sockmig-no-such-prog: no such program" \
	"$SOCKMIG" sockets restore "$IMG" -- sockmig-no-such-prog
[ -z "$(t_exec n2 ss -Htan "( sport = :$PORT )")" ] || t_fail "n2 has a socket on port $PORT"
t_exec n2 ip -o -4 addr show dev eth0 | grep -qF " $JOB/" && t_fail "n2 took the job address"

# ---- the holder's connection still works: every byte once, no error ----
[ -n "$(t_exec n1 ss -Htn state established "( sport = :$PORT )")" ] || t_fail "the connection left n1"
t_wait_progress stream $(($(last_verified stream) + 4000000))
kill -USR2 "${T_PIDS[stream]}"
t_wait_exit stream 30 || t_fail "the peer's stream failed: $(cat "$T_DIR/stream.out")"
grep -qE '^done conns=1 sent=([0-9]+) verified=\1 .*errors=0$' "$T_DIR/stream.out" ||
	t_fail "the peer did not get every byte back: $(cat "$T_DIR/stream.out")"
t_log "$(cat "$T_DIR/stream.out")"
has_table n1 && t_fail "n1 keeps an nftables table sockmig"
has_table n2 && t_fail "n2 keeps an nftables table sockmig"
t_pass
