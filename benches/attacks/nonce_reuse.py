#!/usr/bin/env python3
"""Password guessing that reuses one nonce: one challenge, then wrong MD5 answers with rising
nonce counts, as fast as the registrar answers (up to WINDOW answers outstanding), for
SECONDS. Prints the answers by status and the wrong guesses answered 401 per minute.

    benches/attacks/nonce_reuse.py HOST:PORT USER SECONDS [SOURCE_IP]

Loopback only: it refuses any other target.
"""
import hashlib
import re
import socket
import sys
import time
from collections import Counter

WINDOW = 64


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    user, seconds = sys.argv[2], float(sys.argv[3])
    source = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
    if not host.startswith("127."):
        sys.exit("nonce_reuse.py: loopback targets only")
    target = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    local = sock.getsockname()

    def request(cseq, authorization=""):
        return (
            f"REGISTER sip:example.com SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};rport;branch=z9hG4bK-nr-{cseq}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=nr\r\n"
            f"To: <sip:{user}@example.com>\r\nCall-ID: nonce-reuse-{local[1]}\r\n"
            f"CSeq: {cseq} REGISTER\r\n{authorization}Content-Length: 0\r\n\r\n"
        ).encode()

    sock.settimeout(5)
    sock.sendto(request(1), target)
    challenge = sock.recv(65536).decode(errors="replace")
    nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
    realm = re.search(r'realm="([^"]+)"', challenge).group(1)
    opaque = re.search(r'opaque="([^"]+)"', challenge)
    opaque = f', opaque="{opaque.group(1)}"' if opaque else ""
    ha2 = md5("REGISTER:sip:example.com")

    def guess(nc):
        ha1 = md5(f"{user}:{realm}:wrong-{nc}")
        response = md5(f"{ha1}:{nonce}:{nc:08x}:c:auth:{ha2}")
        authorization = (
            f'Authorization: Digest username="{user}", realm="{realm}", nonce="{nonce}", '
            f'uri="sip:example.com", response="{response}", algorithm=MD5, cnonce="c", '
            f"qop=auth, nc={nc:08x}{opaque}\r\n"
        )
        return request(nc + 1, authorization)

    statuses = Counter()
    sock.setblocking(False)
    started = time.monotonic()
    sent = answered = 0
    nc = 1
    while time.monotonic() - started < seconds:
        while sent - answered < WINDOW:
            sock.sendto(guess(nc), target)
            nc += 1
            sent += 1
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            # Answers lost or withheld: allow another window after a short wait.
            time.sleep(0.001)
            if sent - answered >= WINDOW:
                answered = sent - WINDOW // 2
            continue
        answered += 1
        statuses[data.split(b" ", 2)[1].decode()] += 1
    elapsed = time.monotonic() - started
    wrong = statuses.get("401", 0)
    print(f"sent {sent} guesses in {elapsed:.1f} s; answers by status: {dict(statuses)}")
    print(f"wrong guesses answered 401: {wrong} ({wrong * 60 / elapsed:,.0f} per minute)")


if __name__ == "__main__":
    main()
