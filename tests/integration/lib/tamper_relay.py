#!/usr/bin/env python3
"""tamper_relay: a one-connection TCP relay that damages one byte in transit.

    tamper_relay.py --listen ADDR:PORT --to ADDR:PORT --flip OFFSET

Accepts one connection on --listen, connects to --to, and copies both
directions until both are closed. The byte at OFFSET (from 0) of the stream
from the accepting side to --to (the source's image, in the socket move
tests) is XORed with 0xff; nothing else is changed. Prints "ready" once it
listens and, at the end, "done up=N down=N flipped=0|1" (bytes each way).
Exits 1 if it could not connect to --to. Python 3 standard library only.
"""
import argparse
import selectors
import socket
import sys


def hostport(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True, type=hostport)
    ap.add_argument("--to", required=True, type=hostport)
    ap.add_argument("--flip", required=True, type=int)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()

    fam = socket.AF_INET6 if ":" in a.listen[0] else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(a.listen)
    ls.listen(1)
    ls.settimeout(a.timeout)
    print("ready", flush=True)
    up, _ = ls.accept()
    ls.close()
    try:
        down = socket.create_connection(a.to, timeout=a.timeout)
    except OSError as e:
        print(f"error: cannot connect to {a.to}: {e}", flush=True)
        return 1
    for s in (up, down):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)

    # name: (from, to, bytes so far)
    state = {"up": [up, down, 0], "down": [down, up, 0]}
    flipped = 0
    sel = selectors.DefaultSelector()
    sel.register(up, selectors.EVENT_READ, "up")
    sel.register(down, selectors.EVENT_READ, "down")
    open_dirs = 2
    while open_dirs:
        events = sel.select(a.timeout)
        if not events:
            print("error: no traffic for %.0f s" % a.timeout, flush=True)
            return 1
        for key, _ in events:
            name = key.data
            src, dst, count = state[name]
            try:
                data = src.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(src)
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                open_dirs -= 1
                continue
            if name == "up" and count <= a.flip < count + len(data):
                buf = bytearray(data)
                buf[a.flip - count] ^= 0xFF
                data = bytes(buf)
                flipped = 1
            state[name][2] = count + len(data)
            dst.setblocking(True)
            try:
                dst.sendall(data)
            except OSError:
                pass
            dst.setblocking(False)
    print("done up=%d down=%d flipped=%d" % (state["up"][2], state["down"][2], flipped), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
