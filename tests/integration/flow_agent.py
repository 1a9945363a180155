#!/usr/bin/env python3
# A socket application for the flow-control tests, driven line by line on
# stdin; every command answers exactly one line on stdout ("ok ..." or
# "error ..."). Runs inside a node's network namespace.
#
#   tcp_listen ADDR PORT | tcp_accept | tcp_connect ADDR PORT
#   tcp_accept_none        the listener has no connection to accept
#   tcp_connect_start ADDR PORT   non-blocking connect; answers the local port
#   tcp_connect_wait SECS  until that connect completes (the kernel retries
#                          the SYN meanwhile); error if it fails or times out
#   send N                 write N bytes on the TCP connection
#   inq                    bytes waiting in the TCP receive queue (SIOCINQ)
#   recv_exact N SECS      read exactly N bytes (bounded wait)
#   lport                  local port of the TCP connection
#   udp_bind ADDR PORT     the UDP socket (also the sender's)
#   udp_send ADDR PORT N HZ [START]   N datagrams "seq <i>" at HZ per second
#   udp_sendfrom SADDR SPORT DADDR DPORT N START   from a given port
#   udp_pending            datagrams waiting, without reading them
#   ping ADDR SECS         one ICMP echo, answered within SECS
#   udp_recv N SECS        read up to N datagrams (bounded), report
#                          count, sources and whether seqs are 0..N-1 in order
import fcntl
import os
import select
import socket
import struct
import sys
import termios
import time

tcp_l = tcp = udp = None


def fam(addr):
    return socket.AF_INET6 if ':' in addr else socket.AF_INET


def out(s):
    sys.stdout.write(s + '\n')
    sys.stdout.flush()


def inq(s):
    return struct.unpack('i', fcntl.ioctl(s.fileno(), termios.FIONREAD, b'\0' * 4))[0]


def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def ping(addr, secs):
    # One ICMP echo on a raw socket (no ping binary needed); True on reply.
    v6 = ':' in addr
    s = socket.socket(fam(addr), socket.SOCK_RAW,
                      socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xffff
    hdr = struct.pack('!BBHHH', 128 if v6 else 8, 0, 0, ident, 1) + b'flowping'
    if not v6:  # the kernel computes ICMPv6 checksums, not ICMP ones
        hdr = hdr[:2] + struct.pack('!H', csum(hdr)) + hdr[4:]
    s.sendto(hdr, (addr, 0))
    deadline = time.monotonic() + secs
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            return False
        d = s.recv(2048)
        if not v6:
            d = d[(d[0] & 15) * 4:]
        t, _, _, i, _ = struct.unpack('!BBHHH', d[:8])
        if t == (129 if v6 else 0) and i == ident:
            return True


for line in sys.stdin:
    a = line.split()
    if not a:
        continue
    try:
        c = a[0]
        if c == 'tcp_listen':
            tcp_l = socket.socket(fam(a[1]), socket.SOCK_STREAM)
            tcp_l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp_l.bind((a[1], int(a[2])))
            tcp_l.listen(8)
            out('ok')
        elif c == 'tcp_accept':
            tcp_l.settimeout(10)
            tcp, peer = tcp_l.accept()
            out('ok %s %d' % (peer[0], peer[1]))
        elif c == 'tcp_accept_none':
            tcp_l.setblocking(False)
            try:
                s, peer = tcp_l.accept()
                s.close()
                out('error accepted %s %d' % (peer[0], peer[1]))
            except BlockingIOError:
                out('ok')
            tcp_l.setblocking(True)
        elif c == 'tcp_connect_start':
            tcp = socket.socket(fam(a[1]), socket.SOCK_STREAM)
            tcp.setblocking(False)
            try:
                tcp.connect((a[1], int(a[2])))
            except BlockingIOError:
                pass
            out('ok %d' % tcp.getsockname()[1])
        elif c == 'tcp_connect_wait':
            _, w, _ = select.select([], [tcp], [], float(a[1]))
            err = tcp.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if w else -1
            tcp.setblocking(True)
            out('ok' if err == 0 else 'error connect: %s' % (os.strerror(err) if err > 0 else 'timeout'))
        elif c == 'tcp_connect':
            tcp = socket.create_connection((a[1], int(a[2])), timeout=10)
            out('ok %d' % tcp.getsockname()[1])
        elif c == 'send':
            tcp.sendall(b'x' * int(a[1]))
            out('ok')
        elif c == 'inq':
            out('ok %d' % inq(tcp))
        elif c == 'recv_exact':
            want, deadline, got = int(a[1]), time.monotonic() + float(a[2]), 0
            while got < want:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([tcp], [], [], left)[0]:
                    break
                d = tcp.recv(want - got)
                if not d:
                    break
                got += len(d)
            out(('ok %d' if got == want else 'error got %d') % got)
        elif c == 'udp_bind':
            udp = socket.socket(fam(a[1]), socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp.bind((a[1], int(a[2])))
            out('ok')
        elif c == 'udp_send':
            n, hz = int(a[3]), float(a[4])
            start = int(a[5]) if len(a) > 5 else 0
            t0 = time.monotonic()
            for i in range(n):
                delay = t0 + i / hz - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the sender, not synchronising
                udp.sendto(b'seq %d ' % (start + i) + b'.' * 100, (a[1], int(a[2])))
            out('ok sent %d' % n)
        elif c == 'udp_sendfrom':
            s = socket.socket(fam(a[1]), socket.SOCK_DGRAM)
            s.bind((a[1], int(a[2])))
            for i in range(int(a[5])):
                s.sendto(b'seq %d ' % (int(a[6]) + i), (a[3], int(a[4])))
            s.close()
            out('ok')
        elif c == 'udp_pending':
            n = 0
            udp.setblocking(False)
            # MSG_PEEK cannot count; a second socket option can't either:
            # report whether anything is waiting at all.
            try:
                udp.recv(1, socket.MSG_PEEK)
                n = 1
            except BlockingIOError:
                n = 0
            udp.setblocking(True)
            out('ok %d' % n)
        elif c == 'udp_recv':
            want, deadline = int(a[1]), time.monotonic() + float(a[2])
            seqs, srcs = [], set()
            while len(seqs) < want:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([udp], [], [], left)[0]:
                    break
                d, src = udp.recvfrom(2048)
                seqs.append(int(d.split()[1]))
                srcs.add('%s' % src[0])
            inorder = seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True
            out('ok n=%d first=%s last=%s inorder=%d srcs=%s' % (
                len(seqs), seqs[0] if seqs else '-', seqs[-1] if seqs else '-',
                inorder, ','.join(sorted(srcs)) or '-'))
        elif c == 'ping':
            out('ok' if ping(a[1], float(a[2])) else 'error no echo reply from %s' % a[1])
        elif c == 'quit':
            out('ok')
            break
        else:
            out('error unknown command')
    except Exception as e:  # the test reads the answer; keep serving
        out('error %s' % e)
