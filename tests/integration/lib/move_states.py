#!/usr/bin/env python3
"""Holder, peer and continuation programs of sockets_move_states.sh: each
case builds one socket state on the holder (n1) with a peer (n3), the socket
moves to n2, and the continuation (the restore's CMD) finishes the protocol.

    move_states.py holder CASE --local ADDR --peer ADDR --port P
    move_states.py peer   CASE --local ADDR --port P
    move_states.py cont   CASE --peer ADDR --port P [--offset N] [--local ADDR]

CASE: established, close_wait, fin_wait2, fin_wait1, last_ack, closing,
syn_sent, udp_connected, udp_opts.

Byte streams follow a fixed pseudo-random pattern per direction, so every
byte is checked by position (loss, duplication, reordering) and the totals
are printed for the test to compare. Lines (stdout, flushed):
    holder: "ready fd=N ...", then it never touches the socket again and
            sleeps until SIGTERM (at most 120 s)
    peer:   "ready", progress lines, "done ..." (exit 0) or "error ..." (1)
    cont:   "state N" (tcpi_state read before anything else), "done ..."
The peer waits for SIGUSR1 (sent by the test once the socket has moved)
before its after-move part. Every program ends on its own after 90 s.
"""
import errno
import hashlib
import os
import select
import signal
import socket
import struct
import sys
import time

PERIOD = 65521
SO_MEMINFO = 55
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 7: "CLOSE",
              8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}
WANT = {"established": 1, "close_wait": 8, "fin_wait2": 5, "fin_wait1": 4,
        "last_ack": 9, "closing": 11, "syn_sent": 2}

D_IN = 40000        # peer -> holder before the move (left unread in the holder)
D_AFTER = 3000000   # peer -> continuation after the move
X_CONT = 1000000    # continuation -> peer after the move
H_SMALL = 50000     # fin_wait2: the holder's data, all read before the move
N_DGRAMS = 32       # udp: datagrams waiting in the holder's queue
M_DGRAMS = 8        # udp: datagrams sent after the move
DGRAM_LEN = 1000
TOS = 0x28
RCVBUF = 50000


def say(*a):
    print(*a, flush=True)


def die(msg):
    say("error", msg)
    sys.exit(1)


_bases = {}


def expected(seed, off, n):
    b = _bases.get(seed)
    if b is None:
        out = bytearray()
        h = seed.encode()
        while len(out) < PERIOD:
            h = hashlib.sha256(h).digest()
            out += h
        b = _bases[seed] = bytes(out[:PERIOD])
    res = bytearray()
    while n > 0:
        s = off % PERIOD
        k = min(n, PERIOD - s)
        res += b[s:s + k]
        off += k
        n -= k
    return bytes(res)


def tcp_state(s):
    return s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def wait_for(what, cond, secs=10.0):
    """Poll a kernel counter (never the socket's data) until cond() holds."""
    end = time.monotonic() + secs
    while not cond():
        if time.monotonic() > end:
            die(f"timeout waiting for {what}")
        time.sleep(0.005)


def inq(s):
    import fcntl
    import termios
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def fill(s, seed, off):
    """Write the pattern until the send buffer is full; returns bytes written."""
    s.setblocking(False)
    n = 0
    while True:
        try:
            k = s.send(expected(seed, off + n, 65536))
        except BlockingIOError:
            # let the kernel settle (window probes), then top up once more
            time.sleep(0.05)
            try:
                k = s.send(expected(seed, off + n, 65536))
            except BlockingIOError:
                return n
        n += k


def send_pattern(s, seed, off, n):
    s.sendall(expected(seed, off, n))


def read_check(s, seed, off, n=None, who=""):
    """Read n bytes (or until EOF if n is None), checking the pattern from off."""
    got = 0
    while n is None or got < n:
        want = 65536 if n is None else min(65536, n - got)
        try:
            d = s.recv(want)
        except ConnectionResetError:
            die(f"{who}: connection reset after {got} bytes")
        except socket.timeout:
            die(f"{who}: timeout after {got} bytes")
        if not d:
            if n is None:
                return got
            die(f"{who}: EOF after {got} of {n} bytes")
        if d != expected(seed, off + got, len(d)):
            die(f"{who}: wrong bytes at offset {off + got}")
        got += len(d)
    return got


def expect_eof(s, who):
    try:
        d = s.recv(1)
    except (ConnectionResetError, socket.timeout) as e:
        die(f"{who}: {e!r} instead of EOF")
    if d:
        die(f"{who}: more data instead of EOF")


def family(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_connect(case, local, peer, port, nonblock=False):
    fam = family(local)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((local, 0))
    if nonblock:
        s.setblocking(False)
        r = s.connect_ex((peer, port))
        if r != errno.EINPROGRESS:
            die(f"non-blocking connect: {os.strerror(r)}")
    else:
        s.settimeout(10)
        s.connect((peer, port))
    return s


def block_usr1():
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})


def wait_usr1(secs=60):
    if signal.sigtimedwait({signal.SIGUSR1}, secs) is None:
        die("no SIGUSR1 (the move) within %d s" % secs)


def hold(s, line):
    """ready, then never touch s again."""
    say(line)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    time.sleep(120)
    os._exit(0)


# ---- holder (n1) -------------------------------------------------------------

def holder(case, a):
    if case in ("udp_connected", "udp_opts"):
        return udp_holder(case, a)
    if case == "syn_sent":
        s = tcp_connect(case, a.local, a.peer, a.port, nonblock=True)
        wait_for("SYN_SENT", lambda: tcp_state(s) == 2)
        hold(s, f"ready fd={s.fileno()} state={tcp_state(s)} sent=0")
    s = tcp_connect(case, a.local, a.peer, a.port)
    s.settimeout(10)
    sent = 0
    if case == "established":
        wait_for("the peer's data in the receive queue", lambda: inq(s) == D_IN)
        sent = fill(s, "h2p", 0)
        want = 1
    elif case in ("close_wait", "last_ack"):
        wait_for("the peer's FIN", lambda: tcp_state(s) == 8)
        wait_for("the peer's data in the receive queue", lambda: inq(s) == D_IN)
        sent = fill(s, "h2p", 0)
        if case == "last_ack":
            s.shutdown(socket.SHUT_WR)
        want = WANT[case]
    elif case == "fin_wait2":
        send_pattern(s, "h2p", 0, H_SMALL)
        sent = H_SMALL
        s.shutdown(socket.SHUT_WR)
        wait_for("FIN_WAIT2", lambda: tcp_state(s) == 5)
        wait_for("the peer's data in the receive queue", lambda: inq(s) == D_IN)
        want = 5
    elif case in ("fin_wait1", "closing"):
        wait_for("the peer's data in the receive queue", lambda: inq(s) == D_IN)
        sent = fill(s, "h2p", 0)
        s.shutdown(socket.SHUT_WR)
        if tcp_state(s) != 4:
            die(f"after shutdown: state {tcp_state(s)}, not FIN_WAIT1")
        if case == "closing":
            say("fin-sent")  # the test tells the peer to shut down now
            wait_for("CLOSING (the peer's FIN)", lambda: tcp_state(s) == 11)
        want = WANT[case]
    else:
        die(f"unknown case {case}")
    st = tcp_state(s)
    if st != want:
        die(f"built state {st}, want {want}")
    hold(s, f"ready fd={s.fileno()} state={st} sent={sent} inq={inq(s)}")


def udp_holder(case, a):
    fam = family(a.local)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if case == "udp_opts":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, TOS)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        s.bind((a.local, a.port))
        hold(s, f"ready fd={s.fileno()} " + udp_opts_line(s))
    s.bind((a.local, a.port))
    s.connect((a.peer, a.port))
    say(f"bound fd={s.fileno()}")
    # every datagram the same size, so the same truesize (measured here on
    # loopback): the queue holds N_DGRAMS when rmem_alloc is N_DGRAMS of them
    def rmem(x):
        return struct.unpack("9I", x.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 36))[0]
    lo = "::1" if fam == socket.AF_INET6 else "127.0.0.1"
    ra = socket.socket(fam, socket.SOCK_DGRAM)
    ra.bind((lo, 0))
    rb = socket.socket(fam, socket.SOCK_DGRAM)
    rb.sendto(dgram(0), ra.getsockname()[:2])
    wait_for("the calibration datagram", lambda: rmem(ra) > 0)
    one = rmem(ra)
    ra.close()
    rb.close()
    wait_for(f"{N_DGRAMS} datagrams of truesize {one} in the queue", lambda: rmem(s) == one * N_DGRAMS, 10)
    hold(s, f"ready fd={s.fileno()} queued={N_DGRAMS}")


def udp_opts_line(s):
    return "reuseaddr=%d tos=%d rcvbuf=%d" % (
        s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR),
        s.getsockopt(socket.IPPROTO_IP, socket.IP_TOS),
        s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


# ---- peer (n3) ---------------------------------------------------------------

def peer(case, a):
    block_usr1()
    if case in ("udp_connected", "udp_opts"):
        return udp_peer(case, a)
    ls = socket.socket(family(a.local), socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # a small window: the holder's send queue fills behind it
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    ls.bind((a.local, a.port))
    ls.listen(4)
    ls.settimeout(60)
    say("ready")
    c, addr = ls.accept()
    c.settimeout(30)
    say(f"accepted {addr[0]} {addr[1]}")
    if case == "syn_sent":
        # the continuation sends X_CONT then shuts down; then we answer
        got = read_check(c, "h2p", 0, None, "peer")
        c.sendall(expected("p2h", 0, D_AFTER))
        c.shutdown(socket.SHUT_WR)
        say(f"done recv={got} sent={D_AFTER} state={peer_finish(c)}")
        return
    if case == "fin_wait2":
        got = read_check(c, "h2p", 0, H_SMALL, "peer")
        expect_eof(c, "peer (the holder's FIN)")
        send_pattern(c, "p2h", 0, D_IN)
        say("data-sent")
        wait_usr1()
        send_pattern(c, "p2h", D_IN, D_AFTER)
        c.shutdown(socket.SHUT_WR)
        say(f"done recv={got} sent={D_IN + D_AFTER} state={peer_finish(c)}")
        return
    send_pattern(c, "p2h", 0, D_IN)
    if case in ("close_wait", "last_ack"):
        c.shutdown(socket.SHUT_WR)
    say("data-sent")
    sent = D_IN
    if case == "closing":
        # shut down once the holder's FIN is queued: the two FINs cross
        wait_usr1()
        c.shutdown(socket.SHUT_WR)
        say("fin-sent")
    wait_usr1()  # the move is done
    got = read_check(c, "h2p", 0, None, "peer")  # until the holder's EOF
    say(f"eof recv={got}")
    if case in ("established", "fin_wait1"):
        send_pattern(c, "p2h", D_IN, D_AFTER)
        sent += D_AFTER
        c.shutdown(socket.SHUT_WR)
    say(f"done recv={got} sent={sent} state={peer_finish(c)}")


def peer_finish(c):
    """Both FINs exchanged and acknowledged: the socket ends in CLOSE (no
    reset: a reset would be an exception on the reads before)."""
    end = time.monotonic() + 20
    while tcp_state(c) != 7 and time.monotonic() < end:
        time.sleep(0.01)
    err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        die(f"peer: socket error {os.strerror(err)}")
    return TCP_STATES.get(tcp_state(c), tcp_state(c))


def dgram(i):
    return b"%06d|" % i + expected("udp", i * DGRAM_LEN, DGRAM_LEN - 7)


def udp_peer(case, a):
    s = socket.socket(family(a.local), socket.SOCK_DGRAM)
    s.bind((a.local, a.port))
    s.settimeout(30)
    say("ready")
    if case == "udp_connected":
        s.connect((a.peer, a.port))
        for i in range(N_DGRAMS):
            s.send(dgram(i))
        say(f"sent {N_DGRAMS}")
        wait_usr1()
        for i in range(N_DGRAMS, N_DGRAMS + M_DGRAMS):
            s.send(dgram(i))
    else:
        wait_usr1()
        s.sendto(dgram(0), (a.peer, a.port))
    try:
        d, src = s.recvfrom(65536)
    except (socket.timeout, ConnectionRefusedError) as e:
        die(f"peer: no answer from the continuation: {e!r}")
    if src[0] != a.peer or src[1] != a.port:
        die(f"peer: answer from {src}, want {a.peer} {a.port}")
    say(f"done answer={d.decode(errors='replace')}")


# ---- continuation (n2) ----------------------------------------------------------

def cont(case, a):
    fds = os.environ.get("SOCKMIG_FDS", "").split()
    if len(fds) != 1:
        die(f"SOCKMIG_FDS={fds!r}: want one fd")
    fd = int(fds[0])
    if case in ("udp_connected", "udp_opts"):
        return udp_cont(case, a, fd)
    s = socket.socket(fileno=fd)
    st = tcp_state(s)
    say(f"state {st} {TCP_STATES.get(st, '?')}")
    if st != WANT[case]:
        die(f"restored state {st}, the original was {WANT[case]}")
    fam = s.family
    s.settimeout(30)
    if case == "syn_sent":
        p = select.poll()
        p.register(s.fileno(), select.POLLOUT)
        if not p.poll(30000):
            die("connect did not complete within 30 s")
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            die(f"connect failed: {os.strerror(err)}")
        say(f"connected state {tcp_state(s)} to {s.getpeername()[:2]}")
        send_pattern(s, "h2p", 0, X_CONT)
        s.shutdown(socket.SHUT_WR)
        got = read_check(s, "p2h", 0, None, "cont")
        s.close()
        say(f"done sent-total={X_CONT} recv={got} family={fam.name}")
        return
    local = s.getsockname()[0]
    if a.local and local != a.local:
        die(f"local address {local}, want {a.local}")
    if case == "fin_wait2":
        got = read_check(s, "p2h", 0, None, "cont")
        s.close()
        say(f"done sent-total={a.offset} recv={got} local={local}")
        return
    # what was in the receive queue comes first
    read_check(s, "p2h", 0, D_IN, "cont (the saved receive queue)")
    if case in ("close_wait", "last_ack", "closing"):
        expect_eof(s, "cont (the peer's FIN)")
    say("read-saved")
    total = a.offset
    if case in ("established", "close_wait"):
        send_pattern(s, "h2p", a.offset, X_CONT)
        total += X_CONT
        s.shutdown(socket.SHUT_WR)
    got = D_IN
    if case in ("established", "fin_wait1"):
        got += read_check(s, "p2h", D_IN, None, "cont")
    else:
        # our FIN must be acknowledged: LAST_ACK/CLOSING end in CLOSE
        wait_for("the peer's ACK of our FIN", lambda: tcp_state(s) == 7, 30)
    s.close()
    say(f"done sent-total={total} recv={got} local={local}")


def udp_cont(case, a, fd):
    s = socket.socket(fileno=fd)
    s.settimeout(20)
    local = s.getsockname()
    if case == "udp_opts":
        line = udp_opts_line(s)
        say(f"opts {line} local={local[0]} {local[1]}")
        d, src = s.recvfrom(65536)
        if d != dgram(0):
            die("wrong datagram")
        s.sendto(b"ok opts", src)
        say("done")
        return
    try:
        peer_ep = s.getpeername()
    except OSError as e:
        die(f"not connected: {e}")
    say(f"connected {peer_ep[0]} {peer_ep[1]} local={local[0]} {local[1]}")
    if (peer_ep[0], peer_ep[1]) != (a.peer, a.port):
        die(f"connected to {peer_ep}, want {a.peer} {a.port}")
    for i in range(N_DGRAMS + M_DGRAMS):
        try:
            d, src = s.recvfrom(65536)
        except socket.timeout:
            die(f"datagram {i} did not come")
        if (src[0], src[1]) != (a.peer, a.port):
            die(f"datagram {i} from {src}, want {a.peer} {a.port}")
        if d != dgram(i):
            die(f"datagram {i}: got #{d[:6]!r} (lost, duplicated or reordered)")
    s.send(b"ok %d" % (N_DGRAMS + M_DGRAMS))
    say(f"done received={N_DGRAMS + M_DGRAMS} in order")


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["holder", "peer", "cont"])
    ap.add_argument("case")
    ap.add_argument("--local", default="")
    ap.add_argument("--peer", default="")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--offset", type=int, default=0)
    a = ap.parse_args()
    signal.alarm(90)  # bounded whatever happens
    {"holder": holder, "peer": peer, "cont": cont}[a.role](a.case, a)


if __name__ == "__main__":
    main()
