#!/usr/bin/env python3
"""A flood of unauthenticated REGISTERs from one source address: RATE requests a second for
SECONDS, each with a new Call-ID and branch, answers read and counted but never answered.

    benches/attacks/flood.py HOST:PORT RATE SECONDS [SOURCE_IP]

Loopback only: it refuses any other target.
"""
import socket
import sys
import time
from collections import Counter


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    rate, seconds = int(sys.argv[2]), float(sys.argv[3])
    source = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.2"
    if not host.startswith("127."):
        sys.exit("flood.py: loopback targets only")
    target = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    local = sock.getsockname()
    head = (
        f"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};rport;branch=z9hG4bK-fl"
    ).encode()
    statuses = Counter()
    started = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            n = sent
            user = f"u{n % 10000}"
            message = head + (
                f"{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=f{n}\r\n"
                f"To: <sip:{user}@example.com>\r\nCall-ID: flood-{n}-{local[1]}\r\n"
                f"CSeq: 1 REGISTER\r\nContact: <sip:{user}@{local[0]}:{local[1]}>\r\n"
                f"Content-Length: 0\r\n\r\n"
            ).encode()
            try:
                sock.sendto(message, target)
            except BlockingIOError:
                pass
            sent += 1
        try:
            while True:
                data = sock.recv(65536)
                statuses[data.split(b" ", 2)[1].decode()] += 1
        except BlockingIOError:
            time.sleep(0.0005)
    print(f"flood: sent {sent} REGISTERs in {seconds:.0f} s from {source}; answers: {dict(statuses)}")


if __name__ == "__main__":
    main()
