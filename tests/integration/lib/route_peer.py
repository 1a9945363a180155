#!/usr/bin/env python3
"""Checked TCP and UDP exchanges for the flow routes test (flow_route.sh).

    route_peer.py tcp-serve NAME ADDR PORT
        Listens on ADDR:PORT with IP(V6)_TRANSPARENT (ADDR need not be local)
        and prints "listening". Per connection: reads "SEED <hex> <len>\\n"
        and len bytes, checks them against the seed's stream, answers
        "OK NAME\\n" and len bytes of the reply stream, and prints
        "served NAME peer=ADDR:PORT bytes=len" (or "bad ..." and exits 1).
    route_peer.py tcp-client ADDR PORT [--bind ADDR:PORT] [--len N]
        Connects (bound and transparent with --bind), sends N (100000)
        checked bytes, checks the answer and prints "ok server=NAME bytes=N".
        A refused or timed-out connection prints "refused" / "timeout" and
        exits 3.
    route_peer.py udp-serve NAME ADDR PORT
        Transparent UDP socket bound to ADDR:PORT; answers each datagram
        "SEQ <n>" + payload with "NAME <n>" + the reply payload of n, after
        checking it; prints "served NAME seq=n" per datagram.
    route_peer.py udp-client ADDR PORT [--bind ADDR:PORT] [--count N]
        Sends N (20) datagrams one at a time, each awaited (1 s, 3 tries),
        checks every answer and prints "ok server=NAME datagrams=N", else
        "timeout seq=n" and exits 3.

ADDR is a numeric IPv4 or IPv6 address. Every wait is bounded (10 s).
"""
import hashlib
import socket
import sys

IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
TIMEOUT = 10


def stream(seed: bytes, n: int) -> bytes:
    return hashlib.shake_128(seed).digest(n)


def family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def transparent(s: socket.socket, fam: int) -> None:
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)


def split_ep(ep: str):
    host, _, port = ep.rpartition(":")
    return host.strip("[]"), int(port)


def out(s: str) -> None:
    print(s, flush=True)


def recv_exact(c: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        d = c.recv(min(65536, n - len(buf)))
        if not d:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += d
    return bytes(buf)


def recv_line(c: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        d = c.recv(1)
        if not d:
            raise EOFError("EOF in a line")
        buf += d
        if len(buf) > 200:
            raise ValueError("line too long")
    return bytes(buf[:-1])


def tcp_serve(name: str, addr: str, port: int) -> int:
    fam = family(addr)
    s = socket.socket(fam, socket.SOCK_STREAM)
    transparent(s, fam)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    out("listening")
    while True:
        c, peer = s.accept()
        c.settimeout(TIMEOUT)
        try:
            _, seed, n = recv_line(c).split()
            n = int(n)
            data = recv_exact(c, n)
            if data != stream(bytes.fromhex(seed.decode()), n):
                out(f"bad {name} peer={peer[0]}:{peer[1]}: bytes differ")
                return 1
            c.sendall(f"OK {name}\n".encode() + stream(bytes.fromhex(seed.decode()) + b"r", n))
            out(f"served {name} peer={peer[0]}:{peer[1]} bytes={n}")
        except (OSError, EOFError, ValueError) as e:
            out(f"bad {name} peer={peer[0]}:{peer[1]}: {e}")
            return 1
        finally:
            c.close()


def client_socket(kind: int, dst: str, bind):
    fam = family(dst)
    s = socket.socket(fam, kind)
    s.settimeout(TIMEOUT)
    if bind:
        transparent(s, fam)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(split_ep(bind))
    return s


def tcp_client(addr: str, port: int, bind, n: int) -> int:
    seed = hashlib.sha256(f"{addr}:{port}:{bind}".encode()).digest()[:8]
    s = client_socket(socket.SOCK_STREAM, addr, bind)
    try:
        s.connect((addr, port))
    except ConnectionRefusedError:
        out("refused")
        return 3
    except socket.timeout:
        out("timeout")
        return 3
    s.sendall(f"SEED {seed.hex()} {n}\n".encode() + stream(seed, n))
    line = recv_line(s).decode()
    ok, name = line.split()
    data = recv_exact(s, n)
    if ok != "OK" or data != stream(seed + b"r", n):
        out(f"bad answer from {name}")
        return 1
    out(f"ok server={name} bytes={n}")
    return 0


def udp_serve(name: str, addr: str, port: int) -> int:
    fam = family(addr)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    transparent(s, fam)
    s.bind((addr, port))
    out("listening")
    while True:
        d, peer = s.recvfrom(2048)
        head, _, payload = d.partition(b"\n")
        tag, seq = head.split()
        if tag != b"SEQ" or payload != stream(b"u" + seq, 512):
            out(f"bad {name} seq={seq.decode()}")
            return 1
        s.sendto(f"{name} {seq.decode()}\n".encode() + stream(b"v" + seq, 512), peer)
        out(f"served {name} seq={seq.decode()} peer={peer[0]}:{peer[1]}")


def udp_client(addr: str, port: int, bind, count: int) -> int:
    s = client_socket(socket.SOCK_DGRAM, addr, bind)
    s.connect((addr, port))
    s.settimeout(1)
    name = None
    for i in range(count):
        seq = str(i).encode()
        for _ in range(3):
            s.send(b"SEQ " + seq + b"\n" + stream(b"u" + seq, 512))
            try:
                d = s.recv(2048)
                break
            except (socket.timeout, ConnectionRefusedError):
                d = None
        if d is None:
            out(f"timeout seq={i}")
            return 3
        head, _, payload = d.partition(b"\n")
        who, rseq = head.split()
        if rseq != seq or payload != stream(b"v" + seq, 512) or (name and who.decode() != name):
            out(f"bad answer seq={i} from {who.decode()}")
            return 1
        name = who.decode()
    out(f"ok server={name} datagrams={count}")
    return 0


def opt(args, flag, default):
    if flag in args:
        i = args.index(flag)
        v = args[i + 1]
        del args[i : i + 2]
        return v
    return default


def main(argv) -> int:
    args = argv[1:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    mode = args.pop(0)
    bind = opt(args, "--bind", None)
    n = int(opt(args, "--len", "100000"))
    count = int(opt(args, "--count", "20"))
    if mode == "tcp-serve":
        return tcp_serve(args[0], args[1], int(args[2]))
    if mode == "tcp-client":
        return tcp_client(args[0], int(args[1]), bind, n)
    if mode == "udp-serve":
        return udp_serve(args[0], args[1], int(args[2]))
    if mode == "udp-client":
        return udp_client(args[0], int(args[1]), bind, count)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
