#!/usr/bin/env python3
"""A listener that accepts one connection every DELAY seconds and never
reads, so that connections wait in its accept queue and their data waits in
the kernel: nothing is ever held in this process's memory.

    slow_accept.py ADDR PORT DELAY [--never]
Prints "ready", then "accepted fd=N" for each connection (stdout, flushed).
With --never it accepts nothing. Ends on SIGTERM, or after 120 s."""
import signal
import socket
import sys
import time

addr, port, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
never = "--never" in sys.argv[4:]
family = socket.AF_INET6 if ":" in addr else socket.AF_INET
lsock = socket.socket(family, socket.SOCK_STREAM)
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind((addr, port))
lsock.listen(64)
held = []
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"ready listener fd={lsock.fileno()}", flush=True)
end = time.monotonic() + 120
while time.monotonic() < end:
    time.sleep(delay)
    if never:
        continue
    lsock.settimeout(0.05)
    try:
        c, _ = lsock.accept()
    except (socket.timeout, BlockingIOError):
        continue
    except OSError as e:  # the listener was moved away (ECONNABORTED, EINVAL)
        print(f"accept: {e}", flush=True)
        signal.pause()
    held.append(c)
    print(f"accepted fd={c.fileno()}", flush=True)
