#!/usr/bin/env python3
"""An ordinary python3 asyncio echo server, which knows nothing of sockmig:
what a migration test moves when it wants a real interpreter with an event
loop rather than a program written for the tests.

    asyncio_echo.py ADDR PORT [--tcp-only]

TCP echo on ADDR:PORT (asyncio.start_server; every byte read is written
back, with drain() for back-pressure; any number of clients; a client's EOF
closes it) and UDP echo on ADDR:PORT+1 (loop.create_datagram_endpoint; each
datagram goes back to its sender), unless --tcp-only. ADDR is a numeric IPv4
or IPv6 address. Prints "listening" (stdout, flushed) once both are bound.
SIGTERM or SIGINT end it.

One thread only, on purpose: the sockets are made here and handed to asyncio
(sock=...), because asyncio resolves a host name given to start_server() or
create_datagram_endpoint() with getaddrinfo in a thread pool when it cannot
tell it is numeric, and the pool's threads stay; a checkpoint would then
find a multi-threaded process.
"""
import asyncio
import signal
import socket
import sys


async def echo_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass  # reset by the peer: only this client ends
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


class EchoUDP(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # e.g. ICMP port unreachable from a sender that went away


def bound_socket(family: int, kind: int, addr: str, port: int) -> socket.socket:
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.setblocking(False)
    return s


async def main(addr: str, port: int, udp: bool) -> None:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))

    tcp = bound_socket(family, socket.SOCK_STREAM, addr, port)
    server = await asyncio.start_server(echo_tcp, sock=tcp, backlog=1024)
    transport = None
    if udp:
        usock = bound_socket(family, socket.SOCK_DGRAM, addr, port + 1)
        transport, _ = await loop.create_datagram_endpoint(EchoUDP, sock=usock)
    print("listening", flush=True)
    async with server:
        await stop
    if transport:
        transport.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--tcp-only"]
    if len(args) != 2 or not args[1].isdigit() or not 0 < int(args[1]) < 65535:
        print("usage: asyncio_echo.py ADDR PORT [--tcp-only]  (UDP on PORT+1)", file=sys.stderr)
        sys.exit(2)
    try:
        asyncio.run(main(args[0], int(args[1]), "--tcp-only" not in sys.argv[1:]))
    except OSError as e:
        print(f"asyncio_echo: cannot serve on {args[0]} port {args[1]}: {e.strerror}", file=sys.stderr)
        sys.exit(1)
