#!/bin/bash
# The cluster of a 3-node lab: every node has a key of its own, in every
# config; every node's daemon sees the two others answer an authenticated
# ping; a daemon without the cluster's secret is refused and the refusal
# logged with its address; a client that fakes its proof is refused and
# logged; a daemon that knows the secret but claims n1's name with n3's key
# (from n1's own address, so that only the key can tell) is refused by both
# others and logged, and so is a daemon with n3's key that answers a dial for
# n2; a byte flipped on the wire after the handshake is detected; a non-root
# user cannot act on root's process through the control socket (but can on
# its own, and can list the nodes).
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
LABDIR=/run/sockmig/labs/$T_LAB
PY=/usr/bin/python3
# the public key the lab's configs give a node
key_of() { awk -v n="$1" '$1 == "member" && $2 == n { print $NF }' "$LABDIR/n1.conf"; }

# ---- one key per node, private, in every node's config ----
for i in 1 2 3; do
	[ "$(stat -c %a "$LABDIR/n$i.key")" = 600 ] || t_fail "n$i.key is not mode 0600"
	for k in 1 2 3; do
		grep -qx "member n$i 198\.18\.0\.$i 7890 key $(key_of n$i)" "$LABDIR/n$k.conf" ||
			t_fail "n$k.conf does not give n$i its key: $(cat "$LABDIR/n$k.conf")"
	done
	grep -qx "key-file n$i.key" "$LABDIR/n$i.conf" || t_fail "n$i.conf does not name n$i.key"
	grep -qF "key $(key_of n$i)" "$LABDIR/n$i.key" || t_fail "n$i.key is not the key of n$i's member line"
done
[ "$(for i in 1 2 3; do key_of n$i; done | grep -cE '^[A-Za-z0-9+/]{43}=$' )" = 3 ] &&
	[ "$(for i in 1 2 3; do key_of n$i; done | sort -u | wc -l)" = 3 ] || t_fail "the nodes do not have 3 different keys"

# ---- every node sees the two others up ----
for i in 1 2 3; do
	out=$(t_exec n$i "$SOCKMIG" nodes --json) || t_fail "sockmig nodes on n$i failed: $out"
	for k in 1 2 3; do
		if [ "$k" = "$i" ]; then
			want="\"name\":\"n$k\",\"address\":\"198.18.0.$k\",\"port\":7890,\"self\":true,\"state\":\"self\""
		else
			want="\"name\":\"n$k\",\"address\":\"198.18.0.$k\",\"port\":7890,\"self\":false,\"state\":\"up\",\"rtt_us\":[0-9]+"
		fi
		grep -qE "$want" <<<"$out" || t_fail "n$i does not see n$k as it should: $out"
	done
	# the answering side logged who asked, authenticated
	grep -qE "level=info node=n$i event=request via=control uid=0 pid=[0-9]+ request=nodes" "$LABDIR/n$i.log" ||
		t_fail "n$i did not log the nodes request: $(tail -3 "$LABDIR/n$i.log")"
done
grep -qE "node=n2 event=request via=peer peer=198\.18\.0\.1:[0-9]+ from=n1 request=ping" "$LABDIR/n2.log" ||
	t_fail "n2 did not log n1's ping: $(cat "$LABDIR/n2.log")"
out=$(t_exec n3 "$SOCKMIG" nodes) || t_fail "sockmig nodes (text) failed: $out"
grep -qE "^  n1 +198\.18\.0\.1:7890 +up +rtt [0-9.]+ ms$" <<<"$out" || t_fail "text output: $out"
out=$(t_exec n3 "$SOCKMIG" nodes n2) || t_fail "sockmig nodes n2 failed: $out"

# ---- a daemon with a wrong secret: refused by the others, and logged ----
secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
cat >"$T_DIR/forged.conf" <<EOF
cluster $T_LAB
node n1
secret $secret
key-file $LABDIR/n1.key
control $T_DIR/forged.sock
member n1 198.18.0.1 7990 key $(key_of n1)
member n2 198.18.0.2 key $(key_of n2)
member n3 198.18.0.3 key $(key_of n3)
EOF
chmod 600 "$T_DIR/forged.conf"
t_spawn forged n1 "$SOCKMIGD" --config "$T_DIR/forged.conf"
t_wait_line forged '^ready$' 10
out=$(t_exec n1 "$SOCKMIG" nodes --config "$T_DIR/forged.conf" --json) || t_fail "nodes via the forged daemon: $out"
for k in 2 3; do
	grep -qE "\"name\":\"n$k\",[^}]*\"state\":\"down\",\"error\":\"[^\"]*failed authentication" <<<"$out" ||
		t_fail "a daemon with a wrong secret was not refused by n$k: $out"
	grep -qE "level=warn node=n$k event=refuse peer=198\.18\.0\.1:[0-9]+ reason=\"[^\"]*authentication failed" \
		"$LABDIR/n$k.log" || t_fail "n$k did not log the refusal: $(tail -3 "$LABDIR/n$k.log")"
done
t_kill forged

# ---- a client that fakes its proof (docs/wire-protocol.md by hand) ----
cat >"$T_DIR/fake.py" <<'EOF'
import os, socket, struct, sys
host, port, cluster = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
def frame(t, body): return bytes([t, 0]) + struct.pack("<H", len(body)) + body
def recv_frame(s):
    h = b""
    while len(h) < 4:
        d = s.recv(4 - len(h))
        if not d: return None, b""
        h += d
    n = struct.unpack("<H", h[2:4])[0]
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d: break
        b += d
    return h[0], b
s = socket.create_connection((host, port), timeout=10)
name = b"n1"
# version 2: the ephemeral key, the node key, the names; AUTH is a MAC and a
# signature
hello = (b"SMCH" + struct.pack("<HHBBBB", 2, 0, 1, len(name), len(cluster), 0) + os.urandom(32) + os.urandom(32) +
         name + cluster)
s.sendall(frame(1, hello))
t, _ = recv_frame(s)
assert t == 1, "no HELLO back"
t, b = recv_frame(s)
assert t == 2 and len(b) == 96, "no AUTH back"
s.sendall(frame(2, os.urandom(96)) + frame(3, os.urandom(24)))
t, b = recv_frame(s)
print("answer type=%s reason=%s" % (t, b.decode(errors="replace")))
EOF
out=$(t_exec n1 "$PY" "$T_DIR/fake.py" 198.18.0.3 7890 "$T_LAB") || t_fail "fake client: $out"
grep -q "answer type=4 reason=authentication failed" <<<"$out" || t_fail "a fake proof was not refused: $out"
grep -qE "level=warn node=n3 event=refuse peer=198\.18\.0\.1:[0-9]+ reason=\"channel handshake: the peer calling itself 'n1' failed authentication" \
	"$LABDIR/n3.log" || t_fail "n3 did not log the fake proof: $(tail -3 "$LABDIR/n3.log")"

# ---- a member that claims another's name: only its key gives it away ----
# It knows the secret and runs in n1's namespace (so it connects from n1's
# member address) as n1, but holds n3's key (its own config says that is
# n1's, and knows only n2 besides). n2 checks its signature with n1's key
# from its own config.
cat >"$T_DIR/claim.conf" <<EOF
cluster $T_LAB
node n1
secret-file $LABDIR/secret
key-file $LABDIR/n3.key
control $T_DIR/claim.sock
member n1 198.18.0.1 7993 key $(key_of n3)
member n2 198.18.0.2 key $(key_of n2)
EOF
t_spawn claim n1 "$SOCKMIGD" --config "$T_DIR/claim.conf"
t_wait_line claim '^ready$' 10
out=$(t_exec n1 "$SOCKMIG" nodes --config "$T_DIR/claim.conf" --json) || t_fail "nodes via the impostor: $out"
claimed="reason=\"channel handshake: the peer calling itself 'n1' is not node 'n1': it knows the secret of cluster '$T_LAB' but holds another node key than this node's config gives 'n1' (a member claiming another's name, or a stale key)\""
grep -qE "\"name\":\"n2\",[^}]*\"state\":\"down\",\"error\":\"node 'n2' at 198\.18\.0\.2:7890: node 'n2' refused the channel: node key refused: you are not node 'n1' \(your key is not the one cluster '$T_LAB' gives it\)\"" <<<"$out" ||
	t_fail "n2 did not refuse a node claiming n1's name: $out"
grep -F "node=n2 event=refuse peer=198.18.0.1:" "$LABDIR/n2.log" | grep -qF "$claimed" ||
	t_fail "n2 did not log the claimed name: $(tail -3 "$LABDIR/n2.log")"
t_kill claim
# the real n1 still gets through, to both
for k in 2 3; do
	out=$(t_exec n1 "$SOCKMIG" nodes "n$k") || t_fail "n1 cannot reach n$k after the impostor: $out"
done

# ---- the other way: n3's key answers a dial for n2 ----
# A daemon with n1's key and n1's view of the cluster, except that member n2
# is at a port of n3's namespace, where a daemon calling itself n2 holds
# n3's key.
cat >"$T_DIR/dialer.conf" <<EOF
cluster $T_LAB
node n1
secret-file $LABDIR/secret
key-file $LABDIR/n1.key
control $T_DIR/dialer.sock
member n1 198.18.0.1 7994 key $(key_of n1)
member n2 198.18.0.3 7995 key $(key_of n2)
EOF
cat >"$T_DIR/answer.conf" <<EOF
cluster $T_LAB
node n2
secret-file $LABDIR/secret
key-file $LABDIR/n3.key
control $T_DIR/answer.sock
member n1 198.18.0.1 7994 key $(key_of n1)
member n2 198.18.0.3 7995 key $(key_of n3)
EOF
t_spawn answer n3 "$SOCKMIGD" --config "$T_DIR/answer.conf"
t_wait_line answer '^ready$' 10
t_spawn dialer n1 "$SOCKMIGD" --config "$T_DIR/dialer.conf"
t_wait_line dialer '^ready$' 10
out=$(t_exec n1 "$SOCKMIG" nodes --config "$T_DIR/dialer.conf" n2 2>&1) && t_fail "a dial for n2 reached n3's key and passed: $out"
grep -qF "node 'n2' at 198.18.0.3:7995: channel handshake: the peer calling itself 'n2' is not node 'n2'" <<<"$out" ||
	t_fail "the dialer did not refuse a false n2: $out"
grep -qE "event=refuse peer=198\.18\.0\.1:[0-9]+ reason=\"the peer calling itself 'n1' refused the channel: node key refused: you are not node 'n2'" \
	"$T_DIR/answer.err" || t_fail "the false n2 did not log that it was refused: $(tail -3 "$T_DIR/answer.err")"
t_kill dialer
t_kill answer

# ---- a byte flipped on the wire, after the handshake ----
# A daemon with the right secret reaches n2 through a relay that flips one
# byte of the first record: HELLO (4 + 76 + name + cluster), AUTH (4 + 96),
# STREAM (4 + 24), then the record's 4-byte length and its ciphertext.
cat >"$T_DIR/relay.conf" <<EOF
cluster $T_LAB
node n1
secret-file $LABDIR/secret
key-file $LABDIR/n1.key
control $T_DIR/relay.sock
member n1 198.18.0.1 7992 key $(key_of n1)
member n2 198.18.0.1 7991 key $(key_of n2)
EOF
hs=$((4 + 76 + 2 + ${#T_LAB} + 4 + 96 + 4 + 24))
t_spawn relay n1 "$PY" "$T_ROOT/tests/integration/lib/tamper_relay.py" --listen 198.18.0.1:7991 \
	--to 198.18.0.2:7890 --flip $((hs + 4 + 3)) --timeout 20
t_wait_line relay '^ready$' 10
t_spawn viarelay n1 "$SOCKMIGD" --config "$T_DIR/relay.conf"
t_wait_line viarelay '^ready$' 10
if out=$(t_exec n1 "$SOCKMIG" nodes --config "$T_DIR/relay.conf" n2 2>&1); then
	t_fail "a ping through a tampering relay succeeded: $out"
fi
t_wait_line relay '^done .*flipped=1' 20
grep -qE "level=warn node=n2 event=channel-error peer=198\.18\.0\.1:[0-9]+ from=n1 msg=\"record 1 from node 'n1' failed authentication: the stream was changed or damaged in transit\"" \
	"$LABDIR/n2.log" || t_fail "n2 did not detect the flipped byte: $(tail -3 "$LABDIR/n2.log")"
grep -q "request=ping" <(grep "peer=198.18.0.1" "$LABDIR/n2.log" | tail -2) &&
	t_fail "n2 served a request from a damaged record"
t_kill viarelay
t_kill relay

# ---- the control socket checks its caller ----
cat >"$T_DIR/ctl.py" <<'EOF'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
req = " ".join(a.replace("SELF", str(os.getpid())) for a in sys.argv[2:])
s.sendall((req + "\n").encode())
out = b""
while True:
    d = s.recv(4096)
    if not d: break
    out += d
sys.stdout.write(out.decode())
EOF
chmod 755 "$T_DIR"
chmod 644 "$T_DIR/ctl.py"
t_spawn rootproc n1 sh -c 'echo "pid $$"; exec sleep 1000'
t_wait_line rootproc '^pid [0-9]+$' 10
target=$(awk '/^pid /{print $2; exit}' "$T_DIR/rootproc.out")
asnobody() { t_exec n1 setpriv --reuid nobody --regid nogroup --clear-groups "$@"; }
out=$(asnobody "$PY" "$T_DIR/ctl.py" "$LABDIR/n1.sock" inspect "$target")
grep -qx "error uid 65534 may not act on process $target, which belongs to uid 0: only root or the process's owner may" <<<"$out" ||
	t_fail "nobody was not refused an action on root's process $target: $out"
grep -qE "level=warn node=n1 event=deny via=control uid=65534 pid=[0-9]+ request=\"inspect $target\"" "$LABDIR/n1.log" ||
	t_fail "the refusal was not logged: $(tail -3 "$LABDIR/n1.log")"
out=$(asnobody "$PY" "$T_DIR/ctl.py" "$LABDIR/n1.sock" inspect SELF)
grep -qE "^process pid=[0-9]+ comm=python3 " <<<"$out" && [ "$(tail -1 <<<"$out")" = ok ] ||
	t_fail "nobody could not inspect its own process: $out"
out=$(t_exec n1 "$PY" "$T_DIR/ctl.py" "$LABDIR/n1.sock" inspect "$target")
grep -qE "^process pid=$target comm=sleep " <<<"$out" || t_fail "root could not inspect process $target: $out"
out=$(asnobody "$SOCKMIG" nodes --config "$LABDIR/n1.conf") || t_fail "nobody cannot list the nodes: $out"
grep -qE "^  n2 +198\.18\.0\.2:7890 +up " <<<"$out" || t_fail "nobody's node list: $out"
out=$(t_exec n1 "$PY" "$T_DIR/ctl.py" "$LABDIR/n1.sock" inspect 0)
grep -qx "error '0' is not a process id" <<<"$out" || t_fail "inspect 0: $out"
t_kill rootproc
t_pass
