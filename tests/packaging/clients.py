#!/usr/bin/env python3
"""Clients that notice every cut: long-lived streams and a connect churn.

Used by test-nspawn.sh around a package upgrade and a `systemctl restart`.
--streams N connections each keep sending lower-case bytes and check that
every byte comes back upper-cased, in order; --churn N clients in a loop
each connect, send one line, read its upper-cased echo and close. Runs until
the --stop file exists (or --max-seconds pass), then lets every stream's
bytes in flight come back, and prints one line:

  streams S broken B wrong W echoed BYTES churned C refused R cut X

broken: a stream closed or reset before its end; wrong: a byte that came
back other than sent; refused: a connect refused; cut: a churn connection
that was reset, closed early or timed out. While running, --status holds
the same line (replaced atomically twice a second), so a test can poll it.
Exits 0 only if B, W, R and X are all 0 and every stream connected.
"""
import argparse
import errno
import os
import random
import selectors
import socket
import sys
import time

CHUNK = 512           # bytes a stream sends at a time
WINDOW = 16 * 1024    # at most this much unanswered per stream
RATE = 8 * 1024       # bytes a second a stream sends: leave the CPUs to the daemon
TIMEOUT = 10.0        # a churn exchange, a stream's drain, a connect


class Stream:
    def __init__(self, addr, seed):
        self.rng = random.Random(seed)
        self.sock = socket.create_connection(addr, timeout=TIMEOUT)
        self.sock.setblocking(False)
        self.pending = bytearray()   # sent, not yet echoed (upper-cased)
        self.out = b""
        self.alive = True
        self.next_send = 0.0

    def fill(self, now):
        if not self.out and len(self.pending) < WINDOW and now >= self.next_send:
            data = bytes(self.rng.randrange(97, 123) for _ in range(CHUNK))
            self.out = data
            self.pending += data.upper()
            self.next_send = max(self.next_send + CHUNK / RATE, now - 1.0)


class Churner:
    def __init__(self, addr, n):
        self.addr, self.n, self.sock, self.t0 = addr, n, None, 0.0
        self.want = b""
        self.got = b""
        self.sent = False


def run(args):
    addr = (args.host, args.port)
    sel = selectors.DefaultSelector()
    c = dict(streams=0, broken=0, wrong=0, echoed=0, churned=0, refused=0, cut=0)
    streams = []
    for i in range(args.streams):
        s = Stream(addr, i)
        streams.append(s)
        sel.register(s.sock, selectors.EVENT_READ, s)
    c["streams"] = len(streams)
    churners = [Churner(addr, i) for i in range(args.churn)]
    seq = 0

    def line():
        return ("streams {streams} broken {broken} wrong {wrong} echoed {echoed} "
                "churned {churned} refused {refused} cut {cut}").format(**c)

    def write_status():
        if args.status:
            tmp = args.status + ".tmp"
            with open(tmp, "w") as f:
                f.write(line() + "\n")
            os.replace(tmp, args.status)

    def lose(s):
        s.alive = False
        c["broken"] += 1
        sel.unregister(s.sock)
        s.sock.close()

    def churn_start(ch):
        nonlocal seq
        seq += 1
        ch.want = ("churn %d\n" % seq).encode()
        ch.got = b""
        ch.sent = False
        ch.t0 = time.monotonic()
        ch.sock = socket.socket(socket.AF_INET6 if ":" in ch.addr[0] else socket.AF_INET)
        ch.sock.setblocking(False)
        rc = ch.sock.connect_ex(ch.addr)
        if rc not in (0, errno.EINPROGRESS):
            churn_end(ch, "refused" if rc == errno.ECONNREFUSED else "cut")
            return
        sel.register(ch.sock, selectors.EVENT_WRITE, ch)

    def churn_end(ch, what):
        if what:
            c[what] += 1
        try:
            sel.unregister(ch.sock)
        except (KeyError, ValueError):
            pass
        ch.sock.close()
        ch.sock = None

    def churn_event(ch, mask):
        if not ch.sent:
            err = ch.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                churn_end(ch, "refused" if err == errno.ECONNREFUSED else "cut")
                return
            try:
                ch.sock.send(ch.want)
            except OSError:
                churn_end(ch, "cut")
                return
            ch.sent = True  # a line this short goes in one send
            sel.modify(ch.sock, selectors.EVENT_READ, ch)
            return
        try:
            data = ch.sock.recv(4096)
        except OSError:
            churn_end(ch, "cut")
            return
        if not data:
            churn_end(ch, "cut")
            return
        ch.got += data
        if len(ch.got) >= len(ch.want):
            churn_end(ch, "churned" if ch.got == ch.want.upper() else "wrong")

    def stream_event(s, mask):
        if mask & selectors.EVENT_READ:
            try:
                data = s.sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                lose(s)
                return
            if data == b"":
                lose(s)
                return
            if data:
                if s.pending[:len(data)] != data:
                    c["wrong"] += 1
                del s.pending[:len(data)]
                c["echoed"] += len(data)

    def stream_send(s, now):
        s.fill(now)
        if s.out:
            try:
                n = s.sock.send(s.out)
                s.out = s.out[n:]
            except BlockingIOError:
                pass
            except OSError:
                lose(s)

    stopping = False
    drain_deadline = None
    end = time.monotonic() + args.max_seconds
    next_status = 0.0
    while True:
        now = time.monotonic()
        if not stopping and (now >= end or (args.stop and os.path.exists(args.stop))):
            stopping = True
            drain_deadline = now + TIMEOUT
            for s in streams:
                if s.alive:
                    # Whatever is not yet sent is not owed back.
                    unsent = len(s.out)
                    if unsent:
                        del s.pending[len(s.pending) - unsent:]
                    s.out = b""
        if not stopping:
            for s in streams:
                if s.alive:
                    stream_send(s, now)
            for ch in churners:
                if ch.sock is None:
                    churn_start(ch)
        for ch in churners:
            if ch.sock is not None and now - ch.t0 > TIMEOUT:
                churn_end(ch, "cut")
        if stopping:
            owed = [s for s in streams if s.alive and s.pending]
            busy = [ch for ch in churners if ch.sock is not None]
            if (not owed and not busy) or now >= drain_deadline:
                for s in owed:
                    lose(s)
                for ch in busy:
                    churn_end(ch, "cut")
                break
        for key, mask in sel.select(timeout=0.01):
            obj = key.data
            if isinstance(obj, Stream):
                if obj.alive:
                    stream_event(obj, mask)
            elif obj.sock is not None:
                churn_event(obj, mask)
        if now >= next_status:
            write_status()
            next_status = now + 0.5
    for s in streams:
        if s.alive:
            s.sock.close()
    write_status()
    print(line())
    bad = c["broken"] + c["wrong"] + c["refused"] + c["cut"]
    return 0 if bad == 0 and c["streams"] == args.streams else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7)
    p.add_argument("--streams", type=int, default=0)
    p.add_argument("--churn", type=int, default=0)
    p.add_argument("--status")
    p.add_argument("--stop")
    p.add_argument("--max-seconds", type=float, default=120)
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
