#!/usr/bin/env python3
"""The demo's peer: streams to an echo server over TCP and UDP and checks
every echo, and tells, move by move, how long it waited and whether
everything sent so far came back. It is the judge of scripts/demo.sh, so it
measures on its own side and trusts nothing the mover says.

    demo_peer.py --tcp ADDR:PORT --udp ADDR:PORT [--conns 4] [--rate 256k]
                 [--udp-hz 1000] [--check-timeout 5]

TCP: --conns connections, each sending --rate bytes a second (k or m
suffix, binary), at most 256 KiB not yet echoed; the byte at offset i of
connection c is byte i % 8 of the little-endian 64-bit word
(c + 1) << 56 | i // 8, so a lost, repeated, reordered or altered byte is
caught at once. UDP: --udp-hz datagrams a second of 64 bytes, an 8-byte
sequence number and the same word pattern of it; each echo is checked and
ticked off. ADDR is an IPv4 or a bracketed IPv6 literal.

stdout (line-buffered), one line each:
  ready                  every connection and the UDP flow had an echo
  report n=K ...         after SIGUSR1: once every byte and datagram sent
                         before the signal came back (or --check-timeout
                         seconds passed): tcp_bytes= udp_sent= (so far),
                         tcp_missing= udp_lost= udp_dup= corrupt= (ok=1
                         when all are 0: everything arrived, once, intact),
                         udp_reordered= (datagrams that came after a later
                         one: counted and shown, UDP does not promise
                         order), icmp_errors=, and the longest waits for an
                         echo since the previous report, tcp_gap_ms=
                         udp_gap_ms=
  done ... ok=1|0        after SIGUSR2 or SIGTERM: stops sending, waits
                         (--check-timeout) for the rest, the whole run's
                         counts; exit 0 if ok=1, else 1
  error ...              a TCP stream broke (mismatch, EOF, reset); exit 1
stderr: one line per datagram that came out of order (the first 100).

The longest wait is the time without any echo while one was awaited, as
tests/progs/peer.c measures it.
"""
import argparse
import errno
import selectors
import signal
import socket
import struct
import sys
import time

WINDOW = 256 << 10  # bytes per connection sent but not yet echoed
UDP_SIZE = 64
TICK = 0.001  # the loop's longest sleep while streaming


def parse_addr(s):
    host, _, port = s.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"'{s}' is not ADDR:PORT")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    return fam, (host, int(port))


def parse_size(s):
    mult = {"k": 1 << 10, "m": 1 << 20}.get(s[-1:].lower(), 1)
    digits = s[:-1] if mult > 1 else s
    if not digits.isdigit() or int(digits) == 0:
        raise argparse.ArgumentTypeError(f"'{s}' is not a size (digits with an optional k or m)")
    return int(digits) * mult


def pattern(base, off, n):
    """n bytes of the word pattern starting at byte offset off."""
    k0, k1 = off // 8, (off + n + 7) // 8
    words = struct.pack(f"<{k1 - k0}Q", *range(base + k0, base + k1))
    start = off - 8 * k0
    return words[start:start + n]


class Gap:
    """The longest time without an echo while one was awaited."""

    def __init__(self):
        self.since = None
        self.max = 0.0

    def awaiting(self, now):
        if self.since is None:
            self.since = now

    def got(self, now, still_waiting):
        if self.since is not None:
            self.max = max(self.max, now - self.since)
        self.since = now if still_waiting else None

    def take(self, now):
        """The longest wait since the last take, the current one included."""
        m = self.max
        if self.since is not None:
            m = max(m, now - self.since)
        self.max = 0.0
        return m


class Conn:
    def __init__(self, idx, fam, addr):
        self.idx = idx
        self.base = (idx + 1) << 56
        self.sent = 0
        self.verified = 0
        self.t0 = None
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(10)
        self.sock.connect(addr)
        self.sock.setblocking(False)


class Peer:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        tfam, taddr = a.tcp
        ufam, uaddr = a.udp
        self.conns = [Conn(i, tfam, taddr) for i in range(a.conns)]
        for c in self.conns:
            self.sel.register(c.sock, selectors.EVENT_READ, c)
        self.udp = socket.socket(ufam, socket.SOCK_DGRAM)
        self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.udp.connect(uaddr)
        self.udp.setblocking(False)
        self.sel.register(self.udp, selectors.EVENT_READ, None)
        self.udp_sent = self.udp_got = self.udp_dup = self.udp_reord = 0
        self.udp_high = -1
        self.seen = bytearray()
        self.corrupt = self.icmp = 0
        self.tcp_gap, self.udp_gap = Gap(), Gap()
        self.tcp_gap_all = self.udp_gap_all = 0.0
        self.reports = 0
        self.udp_lost_before = 0
        self.want_report = self.want_stop = False
        self.stopping = False

    # ---- TCP ----
    def tcp_sent(self):
        return sum(c.sent for c in self.conns)

    def tcp_verified(self):
        return sum(c.verified for c in self.conns)

    def fail(self, c, off, cause):
        print(f"error conn={c.idx} offset={off}: {cause}", flush=True)
        sys.exit(1)

    def tcp_send(self, c, now):
        if self.stopping:
            return
        if c.t0 is None:
            c.t0 = now
        allow = int(self.a.rate * (now - c.t0)) + 1 - c.sent
        n = min(allow, WINDOW - (c.sent - c.verified), 65536)
        # ~5 ms of data at a time, as peer.c does: a send per tick would
        # cost the peer more CPU than it is worth on a small machine
        if n <= 0 or (c.sent and n < min(self.a.rate // 200, WINDOW // 4)):
            return
        try:
            k = c.sock.send(pattern(c.base, c.sent, n))
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(c, c.verified, f"send: {e.strerror}")
        if self.tcp_sent() == self.tcp_verified():
            self.tcp_gap.awaiting(now)
        c.sent += k

    def tcp_recv(self, c, now):
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(c, c.verified, f"recv: {e.strerror}")
        if not data:
            self.fail(c, c.verified, f"unexpected EOF with {c.sent - c.verified} bytes not echoed")
        if len(data) > c.sent - c.verified:
            self.fail(c, c.sent, f"{len(data) - (c.sent - c.verified)} bytes echoed beyond the {c.sent} sent")
        exp = pattern(c.base, c.verified, len(data))
        if data != exp:
            i = next(i for i in range(len(data)) if data[i] != exp[i])
            self.fail(c, c.verified + i, f"mismatch: got 0x{data[i]:02x}, expected 0x{exp[i]:02x}")
        c.verified += len(data)
        self.tcp_gap.got(now, self.tcp_sent() != self.tcp_verified())

    # ---- UDP ----
    def udp_send(self, now):
        seq = self.udp_sent
        dg = struct.pack(">Q", seq) + pattern(seq << 8, 0, UDP_SIZE - 8)
        for _ in range(2):  # a pending ICMP error fails one send without sending it
            try:
                self.udp.send(dg)
                break
            except BlockingIOError:
                return False  # the next tick sends it
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    return False
                self.icmp += 1
        else:
            return False
        if seq // 8 >= len(self.seen):
            self.seen.extend(bytes(max(4096, len(self.seen))))
        self.udp_gap.awaiting(now)
        self.udp_sent += 1
        return True

    def udp_recv(self, now):
        for _ in range(256):
            try:
                dg = self.udp.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                self.icmp += 1  # an ICMP error of an earlier datagram
                continue
            seq = struct.unpack(">Q", dg[:8])[0] if len(dg) >= 8 else -1
            if len(dg) != UDP_SIZE or not 0 <= seq < self.udp_sent or dg[8:] != pattern(seq << 8, 0, UDP_SIZE - 8):
                self.corrupt += 1
                continue
            bit = 1 << (seq % 8)
            if self.seen[seq // 8] & bit:
                self.udp_dup += 1
                continue
            self.seen[seq // 8] |= bit
            if seq < self.udp_high:
                self.udp_reord += 1
                if self.udp_reord <= 100:
                    print(f"demo_peer: datagram {seq} came after {self.udp_high}", file=sys.stderr, flush=True)
            self.udp_high = max(self.udp_high, seq)
            self.udp_got += 1
            self.udp_gap.got(now, self.udp_got != self.udp_sent)

    def udp_missing_below(self, n):
        full, rest = divmod(n, 8)
        got = int.from_bytes(self.seen[:full], "little").bit_count()
        if rest:
            got += (self.seen[full] & ((1 << rest) - 1)).bit_count()
        return n - got

    # ---- the loop ----
    def step(self, timeout):
        for key, _ in self.sel.select(timeout):
            now = time.monotonic()
            if key.data is None:
                self.udp_recv(now)
            else:
                self.tcp_recv(key.data, now)

    def stream(self, until, udp_t0):
        """Stream (unless stopping) and check echoes until until() holds."""
        while not until():
            now = time.monotonic()
            if not self.stopping:
                owed = int((now - udp_t0) * self.a.udp_hz) + 1 - self.udp_sent
                for _ in range(min(owed, 1000)):
                    if not self.udp_send(now):
                        break
                for c in self.conns:
                    self.tcp_send(c, now)
            self.step(TICK if not self.stopping else 0.05)

    def settled(self, tcp_marks, udp_mark, deadline):
        # datagrams found lost by an earlier report are not waited for again
        return time.monotonic() >= deadline or (
            all(c.verified >= m for c, m in zip(self.conns, tcp_marks))
            and self.udp_missing_below(udp_mark) <= self.udp_lost_before)

    def check_line(self, tcp_marks, udp_mark):
        missing = sum(max(0, m - c.verified) for c, m in zip(self.conns, tcp_marks))
        lost = self.udp_missing_below(udp_mark)
        ok = int(not missing and not lost and not self.udp_dup and not self.corrupt)
        return (f"tcp_bytes={sum(tcp_marks)} tcp_missing={missing} udp_sent={udp_mark} udp_lost={lost} "
                f"udp_dup={self.udp_dup} udp_reordered={self.udp_reord} corrupt={self.corrupt} "
                f"icmp_errors={self.icmp}"), ok

    def run(self):
        udp_t0 = time.monotonic()
        self.stream(lambda: self.want_stop or (
            all(c.verified > 0 for c in self.conns) and self.udp_got > 0), udp_t0)
        print("ready", flush=True)
        while True:
            self.stream(lambda: self.want_report or self.want_stop, udp_t0)
            stop = self.want_stop
            self.stopping = stop
            self.want_report = False
            tcp_marks, udp_mark = [c.sent for c in self.conns], self.udp_sent
            deadline = time.monotonic() + self.a.check_timeout
            self.stream(lambda: self.settled(tcp_marks, udp_mark, deadline), udp_t0)
            now = time.monotonic()
            tg, ug = self.tcp_gap.take(now), self.udp_gap.take(now)
            self.tcp_gap_all, self.udp_gap_all = max(self.tcp_gap_all, tg), max(self.udp_gap_all, ug)
            line, ok = self.check_line(tcp_marks, udp_mark)
            self.udp_lost_before = self.udp_missing_below(udp_mark)
            if stop:
                print(f"done conns={len(self.conns)} {line} tcp_max_gap_ms={self.tcp_gap_all * 1e3:.1f} "
                      f"udp_max_gap_ms={self.udp_gap_all * 1e3:.1f} ok={ok}", flush=True)
                return 0 if ok else 1
            self.reports += 1
            print(f"report n={self.reports} {line} tcp_gap_ms={tg * 1e3:.1f} udp_gap_ms={ug * 1e3:.1f} ok={ok}",
                  flush=True)


def main():
    p = argparse.ArgumentParser(description="the demo's checking peer (see the file's header)")
    p.add_argument("--tcp", type=parse_addr, required=True)
    p.add_argument("--udp", type=parse_addr, required=True)
    p.add_argument("--conns", type=int, default=4, choices=range(1, 257), metavar="1..256")
    p.add_argument("--rate", type=parse_size, default=256 << 10)
    p.add_argument("--udp-hz", type=int, default=1000)
    p.add_argument("--check-timeout", type=float, default=5.0)
    a = p.parse_args()
    if not 1 <= a.udp_hz <= 10000:
        p.error("--udp-hz must be 1 to 10000")
    try:
        peer = Peer(a)
    except OSError as e:
        print(f"error conn=-1 offset=0: cannot connect: {e.strerror or e}", flush=True)
        return 1

    def on_report(*_):
        peer.want_report = True

    def on_stop(*_):
        peer.want_stop = True

    signal.signal(signal.SIGUSR1, on_report)
    signal.signal(signal.SIGUSR2, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    return peer.run()


if __name__ == "__main__":
    sys.exit(main())
