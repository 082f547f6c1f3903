#!/usr/bin/env python3
"""Holds N idle keep-alive connections to a proxy (benches/load.sh, issue 13).

Each connection sends one request, reads the whole response and then stays open without a
further byte, as a browser's idle keep-alive connection does. Prints "ready N" once all are
open (N = how many answered 200), then waits for SIGTERM.

Usage: idle_conns.py PORT CONNECTIONS PATH [HOST_HEADER]
"""
import resource
import signal
import socket
import sys
import time


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            return None
        body += chunk
    return int(head.split(b" ", 2)[1])


def main():
    port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    host = sys.argv[4] if len(sys.argv) > 4 else f"localhost:{port}"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64 if hard == resource.RLIM_INFINITY else min(hard, n + 64)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode()
    conns, ok = [], 0
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(req)
        ok += read_response(s) == 200
        conns.append(s)
    print(f"ready {ok}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
