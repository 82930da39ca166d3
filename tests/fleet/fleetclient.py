#!/usr/bin/env python3
"""fleetclient: the clients of the fleet test (tests/fleet/fleet.py).

Runs inside the clients' network namespace, so its source addresses are the
"real client" addresses the hosts must see through the balancers.

  fleetclient.py whoami ADDR PORT SRC N [INTERVAL]
      N connections one after another from SRC, each reading the whole
      reply until the server closes; one JSON line per connection:
      {"t": MONOTONIC, "local": "SRC:PORT", "reply": LINE, "error": ERR|null}

  fleetclient.py line ADDR PORT
      one connection; prints what the server sent until it closed (the
      HAProxy agent's line, as HAProxy reads it)

  fleetclient.py load ADDR PORT SRC
      a load that takes commands on stdin, one a line, and answers each
      with one JSON line on stdout:
        streams N   open N long-lived streams (each sends a message of
                    random bytes every 0.1 s and verifies every byte of
                    the upper-cased reply)
        churn C     keep C connect-echo-close connections going (0 = stop
                    starting new ones; those in flight finish)
        mark        remember each stream's message count (see report)
        report      the counts so far; "min_since_mark" is the fewest
                    messages any open stream has verified since the mark
                    (null when none is open)
        quit        report and exit (also at EOF)

Every failure is classified: refused (ECONNREFUSED), reset (ECONNRESET,
EPIPE), closed (EOF before the whole reply), wrong (a byte that is not
the upper-cased one sent), timeout (no progress for STALL seconds).
"""
import errno
import json
import os
import random
import selectors
import socket
import sys
import time

STALL = 5.0             # seconds without progress before a connection failed
STREAM_EVERY = 0.1      # seconds between a stream's messages
STREAM_MSG = (64, 2048) # a stream message's size range, bytes
CHURN_MSG = 64
CHURN_RATE = 1000       # churn connections started a second, at most: the
                        # machine is shared, and a steady churn is the point
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def bound_socket(src):
    """A TCP socket bound to address SRC, its port left to connect(): so a
    port is reused towards another destination, and (tcp_tw_reuse in the
    clients' namespace) out of TIME_WAIT, and churn never runs out."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    s.bind((src, 0))
    return s


def classify(err):
    if err in (errno.ECONNREFUSED,):
        return "refused"
    if err in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    if err in (errno.ETIMEDOUT,):
        return "timeout"
    return "error:" + errno.errorcode.get(err, str(err))


def whoami(addr, port, src, n, interval):
    for i in range(n):
        if i and interval:
            time.sleep(interval)
        t = time.monotonic()
        res = {"t": t, "local": None, "reply": "", "error": None}
        s = bound_socket(src)
        s.settimeout(STALL)
        try:
            s.connect((addr, port))
            res["local"] = "%s:%d" % s.getsockname()
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
            res["reply"] = data.decode("ascii", "replace").strip()
        except socket.timeout:
            res["error"] = "timeout"
        except OSError as e:
            res["error"] = classify(e.errno)
        finally:
            s.close()
        print(json.dumps(res), flush=True)


class Conn:
    """One TCP connection: connect, send a message, verify its echo."""

    def __init__(self, load, kind):
        self.load, self.kind = load, kind
        self.sock = bound_socket(load.src)
        self.sock.setblocking(False)
        self.connected = False
        self.out = b""          # still to send
        self.want = b""         # the reply still expected
        self.next_send = 0.0    # streams: when to send the next message
        self.messages = 0       # streams: messages verified
        self.mark = 0           # streams: messages at the last "mark"
        self.progress = time.monotonic()
        err = self.sock.connect_ex((load.addr, load.port))
        if err not in (0, errno.EINPROGRESS):
            self.sock.close()
            raise OSError(err, os.strerror(err))
        load.sel.register(self.sock, selectors.EVENT_WRITE, self)

    def message(self):
        if self.kind == "churn":
            n = CHURN_MSG
        else:
            n = random.randint(*STREAM_MSG)
        msg = random.randbytes(n)
        self.out, self.want = msg, msg.upper()
        self.progress = time.monotonic()
        self.events()

    def events(self):
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0)
        self.load.sel.modify(self.sock, ev, self)

    def on_event(self, mask):
        if not self.connected:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self.load.fail(self, classify(err))
            self.connected = True
            self.message()
            return
        if mask & selectors.EVENT_WRITE and self.out:
            try:
                n = self.sock.send(self.out)
            except BlockingIOError:
                n = 0
            except OSError as e:
                return self.load.fail(self, classify(e.errno))
            self.out = self.out[n:]
            self.events()
        if mask & selectors.EVENT_READ:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as e:
                return self.load.fail(self, classify(e.errno))
            if not data:
                return self.load.fail(self, "closed")
            if data != self.want[:len(data)]:
                return self.load.fail(self, "wrong")
            self.want = self.want[len(data):]
            self.load.bytes += len(data)
            self.progress = time.monotonic()
            if not self.want and not self.out:
                self.load.done(self)

    def close(self):
        self.load.sel.unregister(self.sock)
        self.sock.close()


class Load:
    def __init__(self, addr, port, src):
        self.addr, self.port, self.src = addr, port, src
        self.sel = selectors.DefaultSelector()
        self.streams = set()
        self.churns = set()
        self.churn_target = 0
        self.churn_budget = 0.0  # connections churn may start now (CHURN_RATE)
        self.churn_stamp = time.monotonic()
        self.c = {"streams_opened": 0, "streams_broken": 0, "messages": 0,
                  "churned": 0, "churn_failed": 0}
        self.reasons = {}       # "stream:reset" -> count
        self.bytes = 0
        self.stdin = b""
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, None)

    def open(self, kind):
        try:
            c = Conn(self, kind)
        except OSError as e:
            self.count_fail(kind, classify(e.errno))
            return
        (self.streams if kind == "stream" else self.churns).add(c)
        if kind == "stream":
            self.c["streams_opened"] += 1

    def count_fail(self, kind, why):
        key = kind + ":" + why
        self.reasons[key] = self.reasons.get(key, 0) + 1
        self.c["streams_broken" if kind == "stream" else "churn_failed"] += 1

    def fail(self, conn, why):
        conn.close()
        (self.streams if conn.kind == "stream" else self.churns).discard(conn)
        self.count_fail(conn.kind, why)

    def done(self, conn):
        if conn.kind == "stream":
            self.c["messages"] += 1
            conn.messages += 1
            conn.next_send = time.monotonic() + STREAM_EVERY
            self.load_idle(conn)
            return
        conn.close()
        self.churns.discard(conn)
        self.c["churned"] += 1

    def load_idle(self, conn):
        # Between messages a stream still watches for EOF and resets.
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)

    def report(self):
        r = dict(self.c)
        r["streams_open"] = len(self.streams)
        r["churn_inflight"] = len(self.churns)
        r["bytes_verified"] = self.bytes
        r["reasons"] = dict(self.reasons)
        r["min_since_mark"] = min((c.messages - c.mark for c in self.streams),
                                  default=None)
        r["t"] = time.monotonic()
        print(json.dumps(r), flush=True)

    def command(self, line):
        words = line.split()
        if not words:
            return True
        if words[0] == "streams":
            for _ in range(int(words[1])):
                self.open("stream")
        elif words[0] == "mark":
            for c in self.streams:
                c.mark = c.messages
        elif words[0] == "churn":
            self.churn_target = int(words[1])
        elif words[0] == "quit":
            self.report()
            return False
        self.report()
        return True

    def read_commands(self):
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            self.report()
            return False
        self.stdin += data
        while b"\n" in self.stdin:
            line, self.stdin = self.stdin.split(b"\n", 1)
            if not self.command(line.decode()):
                return False
        return True

    def tick(self):
        now = time.monotonic()
        self.churn_budget = min(self.churn_budget + (now - self.churn_stamp) *
                                CHURN_RATE, self.churn_target)
        self.churn_stamp = now
        while len(self.churns) < self.churn_target and self.churn_budget >= 1:
            self.churn_budget -= 1
            self.open("churn")
        for conn in list(self.streams):
            if conn.connected and not conn.want and not conn.out \
                    and now >= conn.next_send:
                conn.message()
        for conn in list(self.streams | self.churns):
            if (conn.want or not conn.connected) and now - conn.progress > STALL:
                self.fail(conn, "timeout")

    def run(self):
        while True:
            # Short naps while churn waits for its budget, to keep its pace.
            nap = 0.002 if len(self.churns) < self.churn_target else 0.02
            for key, mask in self.sel.select(nap):
                if key.data is None:
                    if not self.read_commands():
                        return
                else:
                    conn = key.data
                    if conn in self.streams or conn in self.churns:
                        conn.on_event(mask)
            self.tick()


def main(argv):
    if len(argv) >= 5 and argv[1] == "whoami":
        interval = float(argv[6]) if len(argv) > 6 else 0
        whoami(argv[2], int(argv[3]), argv[4], int(argv[5]), interval)
        return 0
    if len(argv) == 4 and argv[1] == "line":
        with socket.create_connection((argv[2], int(argv[3])), STALL) as s:
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        sys.stdout.write(data.decode("ascii", "replace"))
        return 0
    if len(argv) == 5 and argv[1] == "load":
        Load(argv[2], int(argv[3]), argv[4]).run()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
