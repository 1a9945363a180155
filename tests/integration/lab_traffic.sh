#!/bin/bash
# Three lab nodes exchange real TCP and UDP traffic over IPv4 and IPv6: in a
# ring n1 -> n2 -> n3 -> n1 every node sends and receives, and the bytes that
# arrive are compared with the bytes sent. Also: `lab status` reports each
# node's addresses as the kernel has them, and `lab exec` shows the node's
# own interfaces in /sys.
. "$(dirname "$0")/../lib.sh"
t_init
command -v socat >/dev/null || t_fail "socat is not installed"
t_lab_up 3

# The receivers bound their own lifetime (timeout), so a plain wait is
# bounded. (t_wait_exit's timer subshell, killed with TERM right after the
# fork, runs the test's EXIT trap and takes the lab down mid-test.)
recv_wait() {
	local pid=${T_PIDS[$1]}
	wait "$pid"
	local status=$?
	unset "T_PIDS[$1]"
	return "$status"
}

addr4() { echo "198.18.0.${1#n}"; }
addr6() { echo "2001:2::${1#n}"; }

# Random payloads: TCP large enough for many segments, UDP one datagram.
head -c 300000 /dev/urandom >"$T_DIR/tcp.src"
head -c 1200 /dev/urandom >"$T_DIR/udp.src"

port=5000
for pair in n1:n2 n2:n3 n3:n1; do
	src=${pair%:*} dst=${pair#*:}
	for fam in 4 6; do
		if [ "$fam" = 4 ]; then a=$(addr4 "$dst"); else a="[$(addr6 "$dst")]"; fi
		# TCP: the listener writes what it receives to a file and logs
		# "listening on" once bound (socat -d -d, on our stdout).
		tag=tcp$fam-$src-$dst port=$((port + 1))
		t_spawn "$tag" "$dst" timeout 20 sh -c "exec socat -d -d -u TCP$fam-LISTEN:$port,reuseaddr OPEN:$T_DIR/$tag.data,creat,trunc 2>&1"
		t_wait_line "$tag" 'listening on'
		t_check t_exec "$src" socat -u "OPEN:$T_DIR/tcp.src" "TCP$fam:$a:$port"
		recv_wait "$tag" || t_fail "$tag: receiver ended with status $?"
		cmp -s "$T_DIR/tcp.src" "$T_DIR/$tag.data" ||
			t_fail "$tag: received $(stat -c %s "$T_DIR/$tag.data" 2>/dev/null || echo no) bytes, not the 300000 sent"
		# UDP: one datagram, received exactly once and intact.
		tag=udp$fam-$src-$dst port=$((port + 1))
		t_spawn "$tag" "$dst" timeout 20 sh -c "exec socat -d -d -u UDP$fam-RECVFROM:$port OPEN:$T_DIR/$tag.data,creat,trunc 2>&1"
		t_wait_line "$tag" 'receiving on'
		t_check t_exec "$src" socat -u "OPEN:$T_DIR/udp.src" "UDP$fam-SENDTO:$a:$port"
		recv_wait "$tag" || t_fail "$tag: receiver ended with status $?"
		cmp -s "$T_DIR/udp.src" "$T_DIR/$tag.data" || t_fail "$tag: the datagram did not arrive intact"
		# The sender's source address is the node's own.
		# socat may print the IPv6 address in full (2001:0002:0000:...:0001)
		# or short (2001:2::1); either way all of it, up to the ']'.
		if [ "$fam" = 4 ]; then
			from="AF=2 $(addr4 "$src" | sed 's/\./\\./g'):"
		else
			from="AF=10 \\[2001:0*2:(0*:)*0*$(printf %x "${src#n}")\\]:"
		fi
		grep -Eq "received packet with 1200 bytes from $from" "$T_DIR/$tag.out" ||
			t_fail "$tag: datagram did not come from $src's address: $(grep 'received packet' "$T_DIR/$tag.out")"
	done
done

# status reads the addresses from the kernel.
status=$("$SOCKMIG" lab status --name "$T_LAB") || t_fail "lab status failed"
for i in 1 2 3; do
	grep -Eq "^  n$i .*eth0 198\.18\.0\.$i/24 .*eth0 2001:2::$i/64" <<<"$status" ||
		t_fail "lab status does not show n$i's addresses: $status"
done
json=$("$SOCKMIG" lab status --name "$T_LAB" --json) || t_fail "lab status --json failed"
grep -q '"address":"2001:2::3","prefixlen":64' <<<"$json" || t_fail "lab status --json lacks n3's IPv6 address: $json"
# An address added behind the lab's back shows up: status asks the kernel.
t_check t_exec n2 ip addr add 198.18.0.200/24 dev eth0
"$SOCKMIG" lab status --name "$T_LAB" | grep -q '^  n2 .*198\.18\.0\.200/24' || t_fail "status does not read the kernel"

# exec: /sys is the node's, and the exit status is the command's.
[ "$(t_exec n1 ls /sys/class/net | sort | tr '\n' ' ')" = "eth0 lo " ] || t_fail "/sys/class/net in n1 is not the node's"
t_exec n1 sh -c 'exit 7'
[ $? = 7 ] || t_fail "lab exec did not pass on the command's exit status"
t_pass
