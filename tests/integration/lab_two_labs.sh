#!/bin/bash
# Two labs exist at once (made in parallel) with the same addresses and do not
# see each other; taking one down leaves the other working.
. "$(dirname "$0")/../lib.sh"
t_init
command -v socat >/dev/null || t_fail "socat is not installed"
A=${T_ID}a B=${T_ID}b
T_LABS+=("$A" "$B")
"$SOCKMIG" lab up --nodes 2 --name "$A" >"$T_DIR/a.up" 2>&1 & pa=$!
"$SOCKMIG" lab up --nodes 3 --name "$B" >"$T_DIR/b.up" 2>&1 & pb=$!
wait "$pa" || t_fail "lab up $A failed: $(cat "$T_DIR/a.up")"
wait "$pb" || t_fail "lab up $B failed: $(cat "$T_DIR/b.up")"

# One TCP transfer n1 -> n2 inside LAB, with a payload of its own.
transfer() {
	local lab=$1 tag=tcp-$1 
	T_LAB=$lab
	head -c 50000 /dev/urandom >"$T_DIR/$tag.src"
	t_spawn "$tag" n2 timeout 20 sh -c "exec socat -d -d -u TCP4-LISTEN:6000,reuseaddr OPEN:$T_DIR/$tag.data,creat,trunc 2>&1"
	t_wait_line "$tag" 'listening on'
	t_exec n1 socat -u "OPEN:$T_DIR/$tag.src" TCP4:198.18.0.2:6000 || t_fail "$lab: n1 cannot reach n2"
	wait "${T_PIDS[$tag]}" || t_fail "$lab: receiver failed"
	unset "T_PIDS[$tag]"
	cmp -s "$T_DIR/$tag.src" "$T_DIR/$tag.data" || t_fail "$lab: n2 did not receive n1's bytes"
}
transfer "$A"
transfer "$B"
# Isolation: A has no n3, and B's n3 (same address) is not reachable from A.
# B's n3 listens, so if the labs shared a segment, A's n1 would connect to
# it; and it must not even be refused (that would be an answer from
# someone). Then B's n1 reaches the same listener: it was there all along.
T_LAB=$B
t_spawn iso n3 timeout 20 sh -c "exec socat -d -d -u TCP4-LISTEN:6100,reuseaddr OPEN:$T_DIR/iso.data,creat,trunc 2>&1"
t_wait_line iso 'listening on'
T_LAB=$A
echo from-A >"$T_DIR/iso.a"
t_exec n1 socat -u "OPEN:$T_DIR/iso.a" TCP4:198.18.0.3:6100,connect-timeout=2 2>"$T_DIR/iso.a.err" &&
	t_fail "lab $A reaches a listener in lab $B's n3"
grep -Eqi 'timed out|no route|unreachable' "$T_DIR/iso.a.err" ||
	t_fail "lab $A's n1 got an answer for 198.18.0.3, not silence: $(cat "$T_DIR/iso.a.err")"
T_LAB=$B
echo from-B >"$T_DIR/iso.b"
t_exec n1 socat -u "OPEN:$T_DIR/iso.b" TCP4:198.18.0.3:6100 || t_fail "lab $B's n1 cannot reach its n3"
wait "${T_PIDS[iso]}" || t_fail "lab $B's n3 listener failed"
unset "T_PIDS[iso]"
[ "$(cat "$T_DIR/iso.data")" = from-B ] || t_fail "lab $B's n3 received '$(cat "$T_DIR/iso.data")', not only from-B"
T_LAB=$A
"$SOCKMIG" lab exec --name "$A" n3 -- true 2>/dev/null && t_fail "lab $A has a node n3"

status=$("$SOCKMIG" lab status) || t_fail "lab status failed"
grep -q "^lab $A: up, 2 nodes" <<<"$status" || t_fail "lab status does not list $A: $status"
grep -q "^lab $B: up, 3 nodes" <<<"$status" || t_fail "lab status does not list $B: $status"

"$SOCKMIG" lab down --name "$A" || t_fail "lab down $A failed"
T_LABS=("$B")
ip netns list | grep -q "^sm\.$A\." && t_fail "lab down $A left namespaces"
[ "$(ip netns list | grep -c "^sm\.$B\.")" = 4 ] || t_fail "lab down $A touched lab $B's namespaces"
transfer "$B"
t_pass
