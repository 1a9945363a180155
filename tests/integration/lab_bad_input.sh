#!/bin/bash
# Bad input: each mistake gives exactly one clear sentence on stderr, a
# non-zero exit, and leaves nothing half-made (and the existing lab intact).
. "$(dirname "$0")/../lib.sh"
t_init
t_lab_up 3
L=$T_ID NEW=${T_ID}new

# expect_err REGEX CMD...: CMD fails with one stderr line matching REGEX.
expect_err() {
	local re=$1 out status
	shift
	out=$("$@" 2>&1 >/dev/null)
	status=$?
	[ "$status" != 0 ] || t_fail "'$*' succeeded"
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || t_fail "'$*' printed more than one line: $out"
	grep -Eq -- "$re" <<<"$out" || t_fail "'$*' said '$out', expected /$re/"
}
nothing_of() {
	local lab=$1
	ls /run/netns 2>/dev/null | grep -q "^sm\.$lab\." && t_fail "namespaces of lab '$lab' were made"
	[ ! -e "/run/sockmig/labs/$lab" ] || t_fail "a record of lab '$lab' was made"
}

expect_err "^sockmig: lab '$L' has no node 'n9' \(nodes: n1\.\.n3\)\$" "$SOCKMIG" lab exec --name "$L" n9 -- true
expect_err "^sockmig: lab '$L' has no node 'x' \(nodes: n1\.\.n3\)\$" "$SOCKMIG" lab exec --name "$L" x -- true
expect_err "^sockmig: lab '$L' has no node 'n0' " "$SOCKMIG" lab exec --name "$L" n0 -- true
expect_err "^sockmig: lab '$NEW' does not exist\$" "$SOCKMIG" lab exec --name "$NEW" n1 -- true
expect_err "^sockmig: lab '$NEW' does not exist\$" "$SOCKMIG" lab status --name "$NEW"
expect_err "^sockmig: lab '$NEW' does not exist\$" "$SOCKMIG" lab down --name "$NEW"
nothing_of "$NEW"
expect_err "^sockmig: lab '$L' already exists; remove it with 'sockmig lab down --name $L'\$" "$SOCKMIG" lab up --name "$L"
expect_err "^sockmig: --nodes takes a number from 1 to 64, not '0'\$" "$SOCKMIG" lab up --nodes 0 --name "$NEW"
expect_err "^sockmig: --nodes takes a number from 1 to 64, not '65'\$" "$SOCKMIG" lab up --nodes 65 --name "$NEW"
expect_err "^sockmig: --nodes takes a number from 1 to 64, not 'x'\$" "$SOCKMIG" lab up --nodes x --name "$NEW"
expect_err "^sockmig: 'a\.b' is not a valid lab name" "$SOCKMIG" lab up --name a.b
expect_err "^sockmig: '012345678901234567890' is not a valid lab name" "$SOCKMIG" lab up --name 012345678901234567890
expect_err "^sockmig: 'lab frob' is not a lab subcommand" "$SOCKMIG" lab frob
expect_err "^sockmig: lab exec needs a command to run in node 'n1'\$" "$SOCKMIG" lab exec --name "$L" n1 --
expect_err "^sockmig: cannot run 'no-such-program-x' in node n1 of lab '$L': No such file or directory\$" \
	"$SOCKMIG" lab exec --name "$L" n1 -- no-such-program-x
nothing_of "$NEW"

# Not root: refused before anything is touched.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
for cmd in "up --name $NEW" "down --name $L" "exec --name $L n1 -- true" "status"; do
	# shellcheck disable=SC2086
	expect_err "^sockmig: lab ${cmd%% *} needs root" as_nobody "$SOCKMIG" lab $cmd
done
nothing_of "$NEW"

# The lab that was there all along is untouched and works.
out=$(t_exec n2 ip -o addr show dev eth0) || t_fail "lab exec in n2 failed after the bad input"
grep -q '198\.18\.0\.2/24' <<<"$out" && grep -q '2001:2::2/64' <<<"$out" || t_fail "n2 lost its addresses: $out"
[ "$(ip netns list | grep -c "^sm\.$L\.")" = 4 ] || t_fail "lab '$L' lost namespaces"
t_pass
