#!/usr/bin/env python3
"""The fleet test (make check-fleet): three echomaster hosts behind the real
HAProxy and nginx from Debian, each host in its own network namespace.

  fleet.py ECHOMASTER [SCENARIO...]      as root; default: every scenario

Topology (namespaces named emfleet-PID-*, made for this run, deleted at the
end whatever happens; the host's own interfaces and routes are not touched):

  clients 198.18.2.1, .2 --veth-- 198.18.0.1 HAProxy :7 :8, nginx :9
                                  198.18.1.254 (bridge) --veth-- host1 198.18.1.1
                                                        --veth-- host2 198.18.1.2
                                                        --veth-- host3 198.18.1.3

Each host serves upper-case echo on :7 and whoami on :8 (both PROXY v2,
HAProxy) and whoami on :9 (PROXY v1, nginx stream), the HAProxy agent on
:9188, and trusts the header only from 198.18.1.254. HAProxy checks each
server with a tcp-check that sends a line and expects it upper-cased, plus
agent-check. The clients' address is never the balancer's, so a host that
reports 198.18.2.x learned it from the header.

Scenarios (one function each, sc_*): whoami, nginx, deny, drain, upgrade,
kill. A scenario whose feature the binary lacks (probed with -t) is
skipped, and a skip fails the run unless FLEET_ALLOW_SKIP=1. Every wait is
a bounded poll; the whole run is bounded by FLEET_TIMEOUT (240 s).
FLEET_KEEP=1 keeps the run directory (configs and logs).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "fleetclient.py")
PY = sys.executable
LB_ADDR = "198.18.0.1"          # the balancers' front, the clients' side
LB_BACK = "198.18.1.254"        # the balancers' address towards the hosts
CLIENTS = ["198.18.2.1", "198.18.2.2"]
DENIED = CLIENTS[1]             # host2 denies it
HOSTS = 3
AGENT_PORT = 9188
AGENT_INTER = 0.5               # seconds, HAProxy's agent-inter
STREAMS = 100
CHURN = 4                       # connect-echo-close connections at once


class Fail(Exception):
    """A scenario's check failed; the next scenario still runs."""


class Interrupted(Exception):
    """FLEET_TIMEOUT ran out, or a signal came: nothing more runs."""


def log(msg):
    print(msg, flush=True)


def wait_until(what, secs, fn, every=0.05):
    """Polls fn until it returns something true; Fail after secs."""
    deadline = time.monotonic() + secs
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise Fail("%s: not within %g s" % (what, secs))
        time.sleep(every)


def sh(*cmd, ns=None, check=True, timeout=20):
    if ns:
        cmd = ("ip", "netns", "exec", ns) + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise Fail("%s: exit %d: %s" % (" ".join(cmd), r.returncode,
                                         (r.stderr or r.stdout).strip()))
    return r


def ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --- the network ---------------------------------------------------------

class Net:
    def __init__(self):
        tag = "emfleet-%d" % os.getpid()
        self.lb, self.cli = tag + "-lb", tag + "-cli"
        self.hosts = ["%s-h%d" % (tag, i) for i in range(1, HOSTS + 1)]
        self.made = []

    def add(self, ns):
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")

    def up(self):
        for ns in [self.lb, self.cli] + self.hosts:
            self.add(ns)
        # The clients' churn and HAProxy's connections to the hosts close
        # first, so they leave TIME_WAIT behind: in these two namespaces,
        # a wide port range and TIME_WAIT reuse, so no run can exhaust it.
        for ns in (self.lb, self.cli):
            sh("sh", "-c", "echo 1024 65535 >/proc/sys/net/ipv4/ip_local_port_range"
               " && echo 1 >/proc/sys/net/ipv4/tcp_tw_reuse", ns=ns)
        lb = ("ip", "-n", self.lb)
        # Clients: their own /24 and a route to the balancers' front.
        sh(*lb, "link", "add", "vcli", "type", "veth", "peer", "name", "eth0",
           "netns", self.cli)
        sh(*lb, "addr", "add", LB_ADDR + "/24", "dev", "vcli")
        sh(*lb, "link", "set", "vcli", "up")
        sh(*lb, "route", "add", "198.18.2.0/24", "dev", "vcli")
        cli = ("ip", "-n", self.cli)
        for a in CLIENTS:
            sh(*cli, "addr", "add", a + "/24", "dev", "eth0")
        sh(*cli, "link", "set", "eth0", "up")
        sh(*cli, "route", "add", "198.18.0.0/24", "dev", "eth0")
        # Hosts: one bridge in the balancers' namespace, a veth each.
        sh(*lb, "link", "add", "br0", "type", "bridge")
        sh(*lb, "addr", "add", LB_BACK + "/24", "dev", "br0")
        sh(*lb, "link", "set", "br0", "up")
        for i, ns in enumerate(self.hosts, 1):
            sh(*lb, "link", "add", "vh%d" % i, "type", "veth", "peer", "name",
               "eth0", "netns", ns)
            sh(*lb, "link", "set", "vh%d" % i, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", "198.18.1.%d/24" % i, "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def down(self):
        """Kills what still runs in our namespaces (by pid), deletes them."""
        for ns in self.made:
            r = sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        for ns in self.made:
            deadline = time.monotonic() + 5
            while sh("ip", "netns", "pids", ns, check=False).stdout.split() \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


# --- what the binary can do ----------------------------------------------

PROBES = {
    "proxy": 'listen = ({ proto = "tcp"; address = "127.0.0.1"; port = 7; '
             'proxy_protocol = "v2"; proxy_trusted = ["198.18.0.0/15"]; });',
    "whoami": 'listen = ({ proto = "tcp"; address = "127.0.0.1"; port = 7; '
              'mode = "whoami"; });',
    "name": 'name = "probe"; listen = ({ proto = "tcp"; '
            'address = "127.0.0.1"; port = 7; });',
    "agent": 'agent = { address = "127.0.0.1"; port = 9188; }; listen = ({ '
             'proto = "tcp"; address = "127.0.0.1"; port = 7; });',
}


def probe(binary, rundir):
    have = set()
    for feat, text in PROBES.items():
        path = os.path.join(rundir, "probe-%s.conf" % feat)
        with open(path, "w") as f:
            f.write(text + "\n")
        if sh(binary, "-t", "-c", path, check=False).returncode == 0:
            have.add(feat)
    helptext = sh(binary, "--help", check=False).stdout
    if "upgrade" in helptext:
        have.add("upgrade")
    return have


# --- the hosts -----------------------------------------------------------

class Host:
    def __init__(self, i, ns, rundir, have):
        self.i, self.ns, self.have = i, ns, have
        self.name = "host%d" % i
        self.addr = "198.18.1.%d" % i
        self.dir = os.path.join(rundir, self.name)
        os.makedirs(self.dir)
        self.binary = os.path.join(self.dir, "echomaster")
        self.conf = os.path.join(self.dir, "echomaster.conf")
        self.pidfile = os.path.join(self.dir, "echomaster.pid")
        self.logfile = os.path.join(self.dir, "echomaster.log")
        self.proc = None

    def listener(self, port, mode, pp, extra=""):
        s = '  { proto = "tcp"; address = "%s"; port = %d; mode = "%s";' % (
            self.addr, port, mode if mode != "whoami" or
            "whoami" in self.have else "upper")
        if "proxy" in self.have:
            s += ' proxy_protocol = "%s"; proxy_trusted = [ "%s/32" ];' % (
                pp, LB_BACK)
        return s + extra + " }"

    def write_conf(self):
        deny = ' deny = [ "%s/32" ];' % DENIED if self.i == 2 else ""
        lines = [
            "# host %s of the fleet test (tests/fleet/fleet.py)" % self.name,
            'name = "%s";' % self.name if "name" in self.have else "",
            "workers = 2;",
            'pid_file = "%s";' % self.pidfile,
            'control_socket = "%s";' % os.path.join(self.dir, "control.sock"),
            "shutdown_timeout = 5;",
            'log = { level = "info"; stderr = true; };',
            'agent = { address = "%s"; port = %d; };' % (self.addr, AGENT_PORT)
            if "agent" in self.have else "",
            "listen = (",
            ",\n".join([self.listener(7, "upper", "v2", deny),
                        self.listener(8, "whoami", "v2", deny),
                        self.listener(9, "whoami", "v1")]),
            ");",
        ]
        with open(self.conf, "w") as f:
            f.write("\n".join(l for l in lines if l) + "\n")

    def install(self, build_binary):
        """Puts a fresh copy of the binary at self.binary (a new file, as a
        package upgrade does), so an upgrade runs a file other than the
        running one's."""
        tmp = self.binary + ".new"
        shutil.copy2(build_binary, tmp)
        os.rename(tmp, self.binary)

    def start(self, build_binary):
        self.install(build_binary)
        self.write_conf()
        sh(self.binary, "-t", "-c", self.conf)
        out = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, self.binary, "-F", "-c", self.conf],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()

    def ctl(self, cmd, check=True):
        return sh(self.binary, "-c", self.conf, "-s", cmd, check=check,
                  timeout=30)

    def status(self):
        return json.loads(sh(self.binary, "-c", self.conf, "-s", "status",
                             "--json").stdout)

    def ready(self):
        r = sh(self.binary, "-c", self.conf, "-s", "status", "--json",
               check=False)
        if r.returncode:
            return False
        st = json.loads(r.stdout)
        return sum(w["state"] == "serving" for w in st["workers"]) == 2

    def master_pid(self):
        try:
            with open(self.pidfile) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def processes(self):
        """The live processes in the host's network namespace."""
        r = sh("ip", "netns", "pids", self.ns, check=False)
        return {int(p) for p in r.stdout.split() if alive(int(p))}

    def only_master(self, master):
        """True when the host runs master and its two workers, nothing else."""
        procs = self.processes()
        return master in procs and len(procs) == 3 and all(
            ppid(p) == master for p in procs - {master})

    def refused_acl(self):
        return self.status()["totals"]["refused_acl"]

    def stop(self):
        pid = self.master_pid()
        if pid and alive(pid):
            os.kill(pid, signal.SIGTERM)
        if self.proc:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# --- the balancers -------------------------------------------------------

HAPROXY_CFG = """\
# written by tests/fleet/fleet.py
global
    stats socket {rundir}/haproxy.sock mode 600 level admin
    stats timeout 10s

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 1s

frontend echo
    bind {lb}:7
    default_backend echo

frontend whoami
    bind {lb}:8
    default_backend whoami
{backends}"""

BACKEND = """
backend {name}
    balance roundrobin
    option tcp-check
    tcp-check send "fleet check\\n"
    tcp-check expect string "FLEET CHECK"
{servers}"""


def haproxy_cfg(rundir, have):
    def server(i, port):
        s = "    server host%d 198.18.1.%d:%d" % (i, i, port)
        if "proxy" in have:
            s += " send-proxy-v2"
        # weight 100: the agent's "NN%" scales the configured weight, and
        # of HAProxy's default weight 1 any share below 100% leaves 0.
        s += " weight 100 check port 7 inter 500ms fall 2 rise 2"
        if "proxy" in have:
            s += " check-send-proxy"
        if "agent" in have:
            s += " agent-check agent-port %d agent-inter %dms" % (
                AGENT_PORT, AGENT_INTER * 1000)
        return s
    backends = "".join(
        BACKEND.format(name=name, servers="\n".join(
            server(i, port) for i in range(1, HOSTS + 1)) + "\n")
        for name, port in (("echo", 7), ("whoami", 8)))
    return HAPROXY_CFG.format(rundir=rundir, lb=LB_ADDR, backends=backends)


NGINX_CFG = """\
# written by tests/fleet/fleet.py
daemon off;
worker_processes 1;
pid {rundir}/nginx.pid;
error_log {rundir}/nginx.log notice;
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
events {{ worker_connections 1024; }}
stream {{
    upstream whoami {{
{servers}
    }}
    server {{
        listen {lb}:9;
        proxy_pass whoami;
        proxy_protocol on;
        proxy_connect_timeout 2s;
    }}
}}
"""


def nginx_cfg(rundir):
    servers = "\n".join("        server 198.18.1.%d:9;" % i
                        for i in range(1, HOSTS + 1))
    return NGINX_CFG.format(rundir=rundir, lb=LB_ADDR, servers=servers)


class HAProxy:
    def __init__(self, rundir):
        self.sock = os.path.join(rundir, "haproxy.sock")

    def cmd(self, line):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(self.sock)
            s.sendall(line.encode() + b"\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        finally:
            s.close()
        return data.decode()

    def stat(self):
        """{(backend, server): row} from `show stat` (CSV)."""
        text = self.cmd("show stat")
        lines = text.splitlines()
        if not lines or not lines[0].startswith("# "):
            return {}
        head = lines[0][2:].split(",")
        rows = {}
        for line in lines[1:]:
            if line:
                row = dict(zip(head, line.split(",")))
                rows[(row["pxname"], row["svname"])] = row
        return rows

    def status(self, backend, server):
        try:
            return self.stat().get((backend, server), {}).get("status", "")
        except OSError:
            return ""

    def all_up(self):
        try:
            st = self.stat()
        except OSError:
            return False
        return all(st.get((b, "host%d" % i), {}).get("status") == "UP"
                   for b in ("echo", "whoami") for i in range(1, HOSTS + 1))


# --- the clients ---------------------------------------------------------

def parse_whoami(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


class Fleet:
    def __init__(self, binary, rundir, have):
        self.binary, self.rundir, self.have = binary, rundir, have
        self.net = Net()
        self.hosts = []
        self.procs = []
        self.haproxy = HAProxy(rundir)
        self.counts = {}

    def spawn(self, ns, argv, logname, **kw):
        out = open(os.path.join(self.rundir, logname), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=kw.pop(
            "stdout", out), stderr=out, stdin=kw.pop("stdin", subprocess.DEVNULL),
            **kw)
        out.close()
        self.procs.append(p)
        return p

    def up(self):
        self.net.up()
        for i, ns in enumerate(self.net.hosts, 1):
            h = Host(i, ns, self.rundir, self.have)
            self.hosts.append(h)
            h.start(self.binary)
        for h in self.hosts:
            wait_until("%s ready" % h.name, 10, h.ready)
        hcfg = os.path.join(self.rundir, "haproxy.cfg")
        with open(hcfg, "w") as f:
            f.write(haproxy_cfg(self.rundir, self.have))
        sh("haproxy", "-c", "-q", "-f", hcfg)
        self.spawn(self.net.lb, ["haproxy", "-db", "-f", hcfg], "haproxy.log")
        ncfg = os.path.join(self.rundir, "nginx.conf")
        with open(ncfg, "w") as f:
            f.write(nginx_cfg(self.rundir))
        nargs = ["nginx", "-p", self.rundir, "-e",
                 os.path.join(self.rundir, "nginx.log"), "-c", ncfg]
        sh(*nargs, "-t", "-q", ns=self.net.lb)
        self.spawn(self.net.lb, nargs, "nginx.out")
        wait_until("HAProxy sees every server UP", 10, self.haproxy.all_up)

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for h in self.hosts:
            h.stop()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.net.down()

    def whoami(self, port, src, n, interval=0.0):
        r = sh("ip", "netns", "exec", self.net.cli, PY, CLIENT, "whoami",
               LB_ADDR, str(port), src, str(n), str(interval),
               timeout=30 + n * (interval + 6))
        return [json.loads(l) for l in r.stdout.splitlines()]

    def agent_line(self, h):
        """The host's agent line, read from the balancers' namespace."""
        return sh("ip", "netns", "exec", self.net.lb, PY, CLIENT, "line",
                  h.addr, str(AGENT_PORT)).stdout

    def load(self, port=7, src=CLIENTS[0]):
        p = self.spawn(self.net.cli, [PY, CLIENT, "load", LB_ADDR, str(port),
                                      src], "load.log", stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
        return Load(p)


class Load:
    """The runner's end of fleetclient.py load: a command, a JSON answer."""

    def __init__(self, proc):
        self.proc = proc

    def cmd(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        got = self.proc.stdout.readline()
        if not got:
            raise Fail("load client exited (load.log)")
        return json.loads(got)

    def report(self):
        return self.cmd("report")

    def quit(self):
        r = self.cmd("quit")
        self.proc.wait(10)
        return r


# --- the scenarios -------------------------------------------------------

def check_whoami(res, src, proxy):
    """Each reply names a host, the real client (the connection's own
    source) and, with the header, its version and the balancer."""
    seen = []
    for r in res:
        if r["error"] or not r["reply"]:
            raise Fail("whoami from %s: no answer (%s)" % (
                r["local"], r["error"] or "closed"))
        kv = parse_whoami(r["reply"])
        if kv.get("client") != r["local"]:
            raise Fail("whoami: client=%s, but the client is %s: %r" % (
                kv.get("client"), r["local"], r["reply"]))
        if kv.get("proxy") != proxy or not kv.get("balancer", "").startswith(
                LB_BACK + ":"):
            raise Fail("whoami: want proxy=%s balancer=%s:*: %r" % (
                proxy, LB_BACK, r["reply"]))
        seen.append(kv.get("instance"))
    return seen


def in_turn(seen):
    names = {"host%d" % i for i in range(1, HOSTS + 1)}
    for k in range(0, len(seen) - HOSTS + 1):
        if set(seen[k:k + HOSTS]) != names:
            return False
    return True


def sc_whoami(f):
    """whoami through HAProxy: the real client address, each host in turn."""
    res = f.whoami(8, CLIENTS[0], 6)
    seen = check_whoami(res, CLIENTS[0], "v2")
    if not in_turn(seen):
        raise Fail("whoami through HAProxy: not each host in turn: %s" % seen)
    return "6 queries answered by %s, each client=%s:PORT (its own port), " \
        "proxy=v2 balancer=%s" % (" ".join(seen), CLIENTS[0], LB_BACK)


def sc_nginx(f):
    """whoami through nginx stream (proxy_protocol on: PROXY v1)."""
    res = f.whoami(9, CLIENTS[0], 6)
    seen = check_whoami(res, CLIENTS[0], "v1")
    if not in_turn(seen):
        raise Fail("whoami through nginx: not each host in turn: %s" % seen)
    return "6 queries answered by %s, each client=%s:PORT, proxy=v1" % (
        " ".join(seen), CLIENTS[0])


def sc_deny(f):
    """host2 denies 198.18.2.2: that client is refused there, only there."""
    before = [h.refused_acl() for h in f.hosts]
    res = f.whoami(8, DENIED, 9)
    answered = [parse_whoami(r["reply"]).get("instance") for r in res
                if r["reply"]]
    refused = len(res) - len(answered)
    after = [h.refused_acl() for h in f.hosts]
    delta = [a - b for a, b in zip(after, before)]
    if "host2" in answered:
        raise Fail("deny: host2 answered the client it denies: %s" % answered)
    if set(answered) != {"host1", "host3"}:
        raise Fail("deny: want answers from host1 and host3, got %s" % answered)
    if refused < 2 or delta != [0, refused, 0]:
        raise Fail("deny: %d refused at the client, refused_acl deltas "
                   "host1..3 %s" % (refused, delta))
    other = f.whoami(8, CLIENTS[0], 3)
    if "host2" not in check_whoami(other, CLIENTS[0], "v2"):
        raise Fail("deny: host2 refuses %s too" % CLIENTS[0])
    return "9 queries from %s: %d answered by host1/host3, %d refused by " \
        "host2 (its refused_acl +%d, the others +0); %s still reaches host2" % (
            DENIED, len(answered), refused, delta[1], CLIENTS[0])


def sc_drain(f):
    """-s drain on host2: new clients go to the others within two agent
    intervals; -s ready brings it back."""
    h2 = f.hosts[1]
    up = f.agent_line(h2)
    if not up.startswith("up ready ") or "#host2 " not in up:
        raise Fail("drain: host2's agent says %r, not up ready ... #host2" % up)
    t0 = time.monotonic()
    said = h2.ctl("drain").stdout.strip()
    if said != "draining (operator)":
        raise Fail("drain: -s drain said %r" % said)
    down = f.agent_line(h2)
    if not down.startswith("drain") or "#host2 " not in down:
        raise Fail("drain: after -s drain host2's agent says %r" % down)
    res = f.whoami(8, CLIENTS[0], 40, 0.05)
    late = [r for r in res if r["t"] >= t0 + 2 * AGENT_INTER]
    if len(late) < 10:
        raise Fail("drain: only %d queries after two agent intervals" % len(late))
    for r in res:
        if r["error"] or not r["reply"]:
            raise Fail("drain: a query failed: %s" % r)
    bad = [r for r in late if parse_whoami(r["reply"]).get("instance") == "host2"]
    if bad:
        raise Fail("drain: host2 still got %d new clients %.0f ms after "
                   "-s drain" % (len(bad), (bad[-1]["t"] - t0) * 1000))
    names = {parse_whoami(r["reply"]).get("instance") for r in late}
    if names != {"host1", "host3"}:
        raise Fail("drain: after it, answers from %s" % names)
    on2 = [r["t"] for r in res if parse_whoami(r["reply"]).get("instance")
           == "host2"]
    last = "none after the command" if not on2 else \
        "the last at +%.0f ms" % ((on2[-1] - t0) * 1000)
    state = f.haproxy.status("whoami", "host2")
    if not state.startswith("DRAIN"):
        raise Fail("drain: HAProxy shows host2 %r, not DRAIN" % state)
    h2.ctl("ready")
    wait_until("HAProxy sees host2 UP after -s ready", 5, f.haproxy.all_up)
    back = f.whoami(8, CLIENTS[0], 3)
    if "host2" not in check_whoami(back, CLIENTS[0], "v2"):
        raise Fail("drain: host2 gets no clients after -s ready")
    return "agent %r, then %r; %d queries from +%d ms: host1/host3 only " \
        "(host2 %s), HAProxy DRAIN; -s ready: host2 UP and answering " \
        "again" % (up.strip(), down.strip(), len(late), 2 * AGENT_INTER * 1000,
                   last)


def start_load(f):
    load = f.load()
    load.cmd("streams %d" % STREAMS)
    wait_until("%d streams open and echoing" % STREAMS, 15, lambda: (
        lambda r: r["streams_open"] == STREAMS and r["messages"] >= 2 * STREAMS
        and r["streams_broken"] == 0)(load.report()), every=0.2)
    load.cmd("churn %d" % CHURN)
    return load


def haproxy_errors(f, hosts=range(1, HOSTS + 1)):
    """HAProxy's connection errors, response errors and retries towards
    the echo backend's servers: a refused or cut connection that HAProxy
    hid from the client by retrying still shows here."""
    st = f.haproxy.stat()
    return sum(int(st[("echo", "host%d" % i)].get(k) or 0)
               for i in hosts for k in ("econ", "eresp", "wretr"))


def haproxy_downs(f):
    """How many times HAProxy saw a server go from UP to DOWN (chkdown)."""
    st = f.haproxy.stat()
    return sum(int(st[(b, "host%d" % i)].get("chkdown") or 0)
               for b in ("echo", "whoami") for i in range(1, HOSTS + 1))


def sc_upgrade(f):
    """A rolling -s upgrade of the three hosts under churn and 100 streams:
    no connection fails."""
    load = f.load_running = start_load(f)
    errs0 = haproxy_errors(f)
    downs0 = haproxy_downs(f)
    r0 = before = load.report()
    done = []
    for h in f.hosts:
        old = h.master_pid()
        h.install(f.binary)
        out = h.ctl("upgrade").stdout.strip()
        if not out.startswith("upgrade ok: pid "):
            raise Fail("%s: -s upgrade said %r" % (h.name, out))
        said = int(out.split()[3].rstrip(","))
        wait_until("%s: the old master %d gone" % (h.name, old), 10,
                   lambda: not alive(old))
        new = h.master_pid()
        if new in (0, old) or new != said or not alive(new):
            raise Fail("%s: -s upgrade said %r, the pid file names %d" % (
                h.name, out, new))
        exe = os.readlink("/proc/%d/exe" % new)
        if exe != h.binary:
            raise Fail("%s: the new master runs %s, not %s" % (
                h.name, exe, h.binary))
        wait_until("%s: only the new master and its 2 workers left" % h.name,
                   5, lambda: h.only_master(new))
        wait_until("%s serving after the upgrade" % h.name, 10, h.ready)
        # Every stream, those moved included, echoes twice more, and churn
        # goes on, before the next host.
        mark = load.cmd("mark")
        wait_until("every stream and churn going on after %s's upgrade" %
                   h.name, 10, lambda: (lambda r: r["churned"] >=
                                        mark["churned"] + 50 and
                                        (r["min_since_mark"] or 2) >= 2)(
                       load.report()), every=0.1)
        broke = load.report()["streams_broken"] - before["streams_broken"]
        before = load.report()
        done.append("%s %d->%d%s" % (h.name, old, new, " (%d streams broke)" %
                                     broke if broke else ""))
    r = load.report()
    errs = haproxy_errors(f) - errs0
    downs = haproxy_downs(f) - downs0
    f.counts["upgrade"] = r
    if r["streams_open"] != STREAMS or r["streams_broken"] or \
            r["churn_failed"] or errs or downs:
        raise Fail("upgrade: %s; %d streams open, %d broken, %d churned, "
                   "%d churn failed, HAProxy errors+retries %d, servers gone "
                   "DOWN %d: %s" % (
                       ", ".join(done), r["streams_open"], r["streams_broken"],
                       r["churned"] - r0["churned"], r["churn_failed"], errs,
                       downs, r["reasons"]))
    return "%s; %d streams held (%d messages verified), %d churned, 0 " \
        "failed, HAProxy econ+eresp+wretr +0, no server DOWN" % (
            ", ".join(done), r["streams_open"], r["messages"] - r0["messages"],
            r["churned"] - r0["churned"])


def sc_kill(f):
    """kill -9 host3's master: only host3's connections fail, and HAProxy
    stops sending to it."""
    load = getattr(f, "load_running", None)
    if load is None or load.report()["streams_open"] != STREAMS:
        if load is not None:
            load.quit()     # the upgrade scenario failed: start afresh
        load = f.load_running = start_load(f)
    load.cmd("churn 0")
    wait_until("churn stopped", 10, lambda: load.report()["churn_inflight"] == 0)
    st = f.haproxy.stat()
    on3 = int(st[("echo", "host3")]["scur"])
    before = load.report()
    if before["streams_open"] != STREAMS or on3 == 0:
        raise Fail("kill: %d streams open, %d on host3" % (
            before["streams_open"], on3))
    others0 = haproxy_errors(f, (1, 2))
    h3 = f.hosts[2]
    victim = h3.master_pid()
    os.kill(victim, signal.SIGKILL)
    t0 = time.monotonic()
    load.cmd("churn %d" % CHURN)
    wait_until("HAProxy marks host3 DOWN", 10, lambda: f.haproxy.status(
        "echo", "host3").startswith("DOWN"))
    detect = time.monotonic() - t0
    wait_until("host3's workers gone", 5, lambda: not sh(
        "ip", "netns", "pids", h3.ns, check=False).stdout.split())
    # What was already on its way to host3 (HAProxy retries it) ends first.
    load.cmd("churn 0")
    wait_until("churn stopped", 15, lambda: load.report()["churn_inflight"] == 0)
    at_down = load.report()
    stot3 = int(f.haproxy.stat()[("echo", "host3")]["stot"])
    load.cmd("churn %d" % CHURN)
    wait_until("churn goes on", 10, lambda: load.report()["churned"]
               >= at_down["churned"] + 200)
    load.cmd("churn 0")
    wait_until("churn stopped", 10, lambda: load.report()["churn_inflight"] == 0)
    after = load.report()
    stot3_after = int(f.haproxy.stat()[("echo", "host3")]["stot"])
    broken = after["streams_broken"] - before["streams_broken"]
    window = at_down["churn_failed"] - before["churn_failed"]
    late = after["churn_failed"] - at_down["churn_failed"]
    f.counts["kill"] = dict(after, on_host3=on3, broken=broken,
                            failed_before_down=window, failed_after_down=late)
    if broken != on3 or after["streams_open"] != STREAMS - on3:
        raise Fail("kill: %d streams broke, %d were on host3; %d open" % (
            broken, on3, after["streams_open"]))
    others = haproxy_errors(f, (1, 2)) - others0
    if others:
        raise Fail("kill: HAProxy counts %d errors on host1/host2" % others)
    if late or stot3_after != stot3:
        raise Fail("kill: after DOWN, %d churn failed and host3 got %d new" % (
            late, stot3_after - stot3))
    load.quit()
    return "%d of %d streams were on host3: exactly those %d broke, %d held; " \
        "HAProxy DOWN after %.0f ms; churn failures while it noticed: %d " \
        "(HAProxy errors on host1/host2: 0), after: 0 in %d more (host3 got " \
        "none); %s" % (on3, STREAMS, broken, after["streams_open"],
                       detect * 1000, window,
                       after["churned"] - at_down["churned"], after["reasons"])


SCENARIOS = [
    ("whoami", sc_whoami, {"proxy", "whoami", "name"}),
    ("nginx", sc_nginx, {"proxy", "whoami", "name"}),
    ("deny", sc_deny, {"proxy", "whoami", "name"}),
    ("drain", sc_drain, {"proxy", "whoami", "name", "agent"}),
    ("upgrade", sc_upgrade, {"upgrade"}),
    ("kill", sc_kill, set()),
]


def run_scenarios(f, have, only, results):
    """Runs each scenario asked for (all when ONLY is empty) in order,
    appending (name, "ok"|"FAIL"|"SKIP", message) to results."""
    for name, fn, needs in SCENARIOS:
        if only and name not in only:
            continue
        missing = needs - have
        if missing:
            results.append((name, "SKIP", "the binary lacks: " +
                            " ".join(sorted(missing))))
            log("skip   %s: the binary lacks %s" % (
                name, " ".join(sorted(missing))))
            continue
        try:
            msg = fn(f)
            results.append((name, "ok", msg))
            log("ok     %s: %s" % (name, msg))
        except Fail as e:
            # The next scenarios still run: each reports on its own.
            results.append((name, "FAIL", str(e)))
            log("FAIL   %s: %s" % (name, e))


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("fleet: run as root (network namespaces)", file=sys.stderr)
        return 2
    binary = os.path.abspath(argv[1])
    only = set(argv[2:])
    timeout = int(os.environ.get("FLEET_TIMEOUT", "240"))

    def on_alarm(*_):
        raise Interrupted("the whole run took longer than FLEET_TIMEOUT=%d s"
                          % timeout)

    def on_term(signum, _):
        raise Interrupted("interrupted by signal %d" % signum)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.alarm(timeout)
    rundir = tempfile.mkdtemp(prefix="emfleet-")
    have = probe(binary, rundir)
    log("fleet: %s; features: %s; run directory %s" % (
        binary, " ".join(sorted(have)) or "none", rundir))
    f = Fleet(binary, rundir, have)
    results = []
    try:
        f.up()
        run_scenarios(f, have, only, results)
    except (Fail, Interrupted) as e:
        results.append(("run", "FAIL", str(e)))
        log("FAIL   %s" % e)
    finally:
        # The teardown runs to its end: no alarm, no signal cuts it short.
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            f.down()
        except Exception as e:  # noqa: BLE001 -- the namespaces must go
            log("teardown: %s" % e)
            f.net.down()
    for line in crashes(f.hosts):
        results.append(("logs", "FAIL", line))
        log("FAIL   logs: %s" % line)
    failed = [r for r in results if r[1] == "FAIL"]
    skipped = [r for r in results if r[1] == "SKIP"]
    print_counts(f.counts)
    if failed:
        show_logs(rundir)
    log("check-fleet: %d passed, %d failed, %d skipped" % (
        sum(r[1] == "ok" for r in results), len(failed), len(skipped)))
    if os.environ.get("FLEET_KEEP") != "1":
        shutil.rmtree(rundir, ignore_errors=True)
    if failed:
        return 1
    if skipped and os.environ.get("FLEET_ALLOW_SKIP") != "1":
        log("check-fleet: skipped scenarios fail the run (FLEET_ALLOW_SKIP=1 "
            "to allow)")
        return 1
    return 0


# A host log with one of these failed the run even if no client noticed:
# a respawn hides a crash (the same list as tests/integration/harness.c).
CRASH_SIGNS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
               "(SIGSEGV)", "(SIGABRT)", "(SIGBUS)", "(SIGFPE)", "(SIGILL)")


def crashes(hosts):
    """The first line of each host log that reports a crash."""
    found = []
    for h in hosts:
        try:
            with open(h.logfile, errors="replace") as fh:
                lines = fh.readlines()
        except OSError:
            continue
        for line in lines:
            if any(sign in line for sign in CRASH_SIGNS):
                found.append("%s: %s" % (h.name, line.strip()))
                break
    return found


def print_counts(counts):
    """The counts the issue's note needs, per load-carrying scenario."""
    for key in ("upgrade", "kill"):
        c = counts.get(key)
        if not c:
            continue
        why = c.get("reasons", {})

        def of(kind):
            return sum(v for k, v in why.items() if k.endswith(":" + kind))
        log("counts %s: held %d, churned %d, failed %d, refused %d, reset %d, "
            "wrong %d, streams broken %d, messages %d, bytes verified %d" % (
                key, c["streams_open"], c["churned"],
                c["churn_failed"] + c["streams_broken"], of("refused"),
                of("reset"), of("wrong"), c["streams_broken"], c["messages"],
                c["bytes_verified"]))


def show_logs(rundir):
    for root, _, files in os.walk(rundir):
        for name in sorted(files):
            if name.endswith((".log", ".out")):
                path = os.path.join(root, name)
                with open(path, errors="replace") as fh:
                    tail = fh.readlines()[-15:]
                log("--- %s (last %d lines)" % (os.path.relpath(path, rundir),
                                                len(tail)))
                for line in tail:
                    log("  | " + line.rstrip())


if __name__ == "__main__":
    sys.exit(main(sys.argv))
