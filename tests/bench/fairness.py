#!/usr/bin/env python3
"""Fairness client for tests/bench/fairness.sh (issue 4's definition).

Opens CONNS connections spread evenly over OVER seconds, every one doing a
64-byte upper-case pingpong every INTERVAL seconds (moderate load) and
checking each reply byte. After the last one has been open for HOLD seconds
it counts the established connections each server process holds (ss -tnp on
the server port; PIDS are the processes that accept) and prints them with
max/min and Jain's fairness index (sum x)^2 / (n * sum x^2).

fairness.py PORT PIDS [CONNS [OVER [INTERVAL [HOLD]]]]
  PIDS: comma-separated server processes that may accept (the workers)
Last line: RESULT conns=... unaccepted=... counts=a/b/c/d max_min=... jain=... errors=...
"""
import heapq
import random
import re
import selectors
import socket
import subprocess
import sys
import time


def expected(msg):
    return bytes(b ^ 0x20 if 0x61 <= b <= 0x7a else b for b in msg)


def count_by_pid(port, pids):
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", "( sport = :%d )" % port],
        capture_output=True, text=True, check=True).stdout
    counts = {p: 0 for p in pids}
    for line in out.splitlines():
        for pid in set(re.findall(r"pid=(\d+)", line)):
            if int(pid) in counts:
                counts[int(pid)] += 1
    return counts


def main():
    port = int(sys.argv[1])
    pids = [int(p) for p in sys.argv[2].split(",") if p]
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    over = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.2
    hold = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
    rnd = random.Random(4)
    sel = selectors.DefaultSelector()
    state = {}          # sock -> [message, bytes received so far, next send time]
    errors = 0
    echoes = 0
    start = time.monotonic()
    opened = 0

    alphabet = b"abcdefghijklmnopqrstuvwxyzABC\0\n\xff"
    pool = [bytes(rnd.choice(alphabet) for _ in range(64)) for _ in range(97)]
    replies = {m: expected(m) for m in pool}
    due = []            # heap of (next send time, connection number, sock)

    def send(s, now):
        msg = pool[rnd.randrange(len(pool))]
        state[s] = [msg, b"", None]
        s.sendall(msg)

    while True:
        now = time.monotonic()
        while opened < conns and now - start >= opened * over / conns:
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            send(s, now)
            opened += 1
        if opened == conns and now - start >= over + hold:
            break
        for key, _ in sel.select(timeout=0.001):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            st = state[s]
            if not data:
                errors += 1
                sel.unregister(s)
                continue
            st[1] += data
            if len(st[1]) >= 64:
                if st[1] != replies[st[0]]:
                    errors += 1
                echoes += 1
                st[2] = now + interval * (0.5 + rnd.random())
                heapq.heappush(due, (st[2], s.fileno(), s))
        while due and due[0][0] <= now:
            send(heapq.heappop(due)[2], now)
    counts = count_by_pid(port, pids)
    x = [counts[p] for p in pids]
    total = sum(x)
    jain = total * total / (len(x) * sum(v * v for v in x)) if total else 0
    mx, mn = max(x), min(x)
    print("per process: " + " ".join("%d:%d" % (p, counts[p]) for p in pids))
    # Connections the client opened that no worker holds yet: still in the
    # listener's accept queue (the kernel completed the handshake).
    print("RESULT conns=%d unaccepted=%d counts=%s max_min=%s jain=%.4f echoes=%d errors=%d" % (
        total, conns - total, "/".join(map(str, x)), "%.3f" % (mx / mn) if mn else "inf",
        jain, echoes, errors))
    for s in state:
        s.close()
    return 1 if errors or total != conns else 0


if __name__ == "__main__":
    sys.exit(main())
