#!/usr/bin/python3
"""l4net.py - network-namespace topology for the L4 balancer's integration
test and benchmark, plus the small programs that run inside it.

Topology (test):

    tg-client eth0 198.18.1.2 --- cl0 198.18.1.1  tg-router  br0 198.18.2.1
                                                     |  (bridge: the "switched segment")
              +-------------------+------------------+--------------------+
        p-lb1 |            p-real1|            p-real2|             p-real3|
     tg-lb1 eth0 198.18.2.10   tg-real1 eth0 .11  tg-real2 eth0 .12  tg-real3 eth0 .13

The router sends the VIP (198.18.100.1, fd00:7467:100::1) to tg-lb1, which
runs the balancer "on a stick" (XDP_TX back out of eth0). Topology(n_lbs=2)
adds tg-lb2 (198.18.2.20, fd00:7467:2::14, bridge port p-lb2) for the BGP
test, and Topology(vip_routes=False) leaves the router without static VIP
routes (BGP installs them). Reals reach the
client through the router directly (direct server return). IPv6 mirrors IPv4:
fd00:7467:1::/64 client side, fd00:7467:2::/64 segment.

Veth traps handled here (MACHINE-NOTES.md): an XDP_PASS program on p-lb1 so
that frames the balancer sends with XDP_TX are not dropped by the veth, and
TX checksum offload off on the client so forwarded packets carry complete
checksums.

Subcommands run inside namespaces by the test:
    l4net.py serve-vip --name N --addr VIP [--addr VIP6] --port 80
    l4net.py serve-health --addr IP --port 8080
    l4net.py agent --vip VIP --port 80        (JSON lines on stdin/stdout)
"""
import argparse
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

VIP4 = "198.18.100.1"
VIP6 = "fd00:7467:100::1"
LB_IP4 = "198.18.2.10"
LB_IP6 = "fd00:7467:2::10"
ROUTER_SEG4 = "198.18.2.1"
ROUTER_SEG6 = "fd00:7467:2::1"
CLIENT_IP4 = "198.18.1.2"
CLIENT_IP6 = "fd00:7467:1::2"
GEN_IP4 = "198.18.2.50"

XDP_PASS_C = r"""
#include <linux/bpf.h>
/* Accepts every frame: its only job is to make the veth deliver frames the
 * peer sends with XDP_TX (see MACHINE-NOTES.md). */
__attribute__((section("xdp"), used)) int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
char _license[] __attribute__((section("license"), used)) = "GPL";
"""


def run(cmd, check=True, capture=True, timeout=30):
    """Runs a command (list); returns CompletedProcess. Raises with stderr on failure."""
    p = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def nsexec(ns, *cmd):
    return ["ip", "netns", "exec", ns, *cmd]


def real_ip4(i):
    return f"198.18.2.{10 + i}"


def real_ip6(i):
    return f"fd00:7467:2::{10 + i:x}"


def lb_ip4(i):
    """Balancer i's address (1: LB_IP4, 2: 198.18.2.20, ...)."""
    return LB_IP4 if i == 1 else f"198.18.2.{10 * i}"


def lb_ip6(i):
    return LB_IP6 if i == 1 else f"fd00:7467:2::{10 * i:x}"


def compile_xdp(src, out, defines=()):
    """Compiles a one-file XDP program with clang. Returns out."""
    with tempfile.NamedTemporaryFile("w", suffix=".c", delete=False) as f:
        f.write(src)
        path = f.name
    try:
        # linux/bpf.h wants asm/types.h from the multiarch include dir.
        arch = run(["gcc", "-print-multiarch"], check=False).stdout.strip() or "x86_64-linux-gnu"
        run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{arch}",
             *[f"-D{d}" for d in defines], "-c", path, "-o", out], timeout=60)
    finally:
        os.unlink(path)
    return out


def can_run():
    """Returns None when namespaces, veth and XDP look usable, else the reason."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "clang", "ethtool"):
        if not shutil.which(tool):
            return f"{tool} not installed"
    probe = f"tg-probe{os.getpid()}"
    p = run(["ip", "netns", "add", probe], check=False)
    if p.returncode != 0:
        return f"cannot create a network namespace: {p.stderr.strip()}"
    try:
        p = run(nsexec(probe, "ip", "link", "add", "name", "tgp0", "type", "veth", "peer",
                       "name", "tgp1"), check=False)
        if p.returncode != 0:
            return f"cannot create veth: {p.stderr.strip()}"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


class Topology:
    """Builds the namespaces, tracks every process it starts, and removes it
    all in cleanup() (safe to call after a partial build)."""

    def __init__(self, prefix="tg-", n_reals=3, router=True, client=True, ipv6=True,
                 gen=False, real_role="real", n_lbs=1, vip_routes=True):
        self.prefix = prefix
        self.n_reals = n_reals
        self.ipv6 = ipv6
        self.client = prefix + "client" if client else None
        self.router = prefix + ("router" if router else "sw")
        self.lb = prefix + "lb1"
        # More balancer nodes on the same segment (BGP + ECMP tests).
        self.lbs = [f"{prefix}lb{i}" for i in range(1, n_lbs + 1)]
        # Static routes for the VIPs via tg-lb1 in the router; off when BGP
        # is to install them.
        self.vip_routes = vip_routes
        # real_role names the reals' namespaces: "real" for the L4 test,
        # "ing" for the demo, where the reals are ingress nodes.
        self.reals = [f"{prefix}{real_role}{i}" for i in range(1, n_reals + 1)]
        # A packet generator directly on the segment (benchmarks): frames go
        # straight to the balancer's MAC, no router forwarding in the way.
        self.gen = prefix + "gen" if gen else None
        self.created = []
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="tg-l4net-")

    # -- building ------------------------------------------------------
    def ns(self, name):
        run(["ip", "netns", "del", name], check=False)  # a leftover of a killed run
        run(["ip", "netns", "add", name])
        self.created.append(name)
        run(nsexec(name, "ip", "link", "set", "lo", "up"))
        # IPv6 addresses usable at once (no DAD wait).
        run(nsexec(name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                   "net.ipv6.conf.default.accept_dad=0"), check=False)

    def ip(self, ns, *args):
        return run(["ip", "-n", ns, *args])

    def port(self, ns, ifname, peer, addrs4=(), addrs6=()):
        """A veth from `ns` (named ifname) to a bridge port `peer` in the router."""
        run(["ip", "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", peer,
             "netns", self.router])
        self.ip(self.router, "link", "set", peer, "master", "br0", "up")
        for a in addrs4:
            self.ip(ns, "addr", "add", a, "dev", ifname)
        if self.ipv6:
            for a in addrs6:
                self.ip(ns, "addr", "add", a, "dev", ifname, "nodad")
        self.ip(ns, "link", "set", ifname, "up")

    def build(self):
        names = [self.router, *self.lbs, *self.reals] + ([self.client] if self.client else []) + \
            ([self.gen] if self.gen else [])
        for n in names:
            self.ns(n)
        r = self.router
        self.ip(r, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        self.ip(r, "addr", "add", ROUTER_SEG4 + "/24", "dev", "br0")
        if self.ipv6:
            self.ip(r, "addr", "add", ROUTER_SEG6 + "/64", "dev", "br0", "nodad")
        self.ip(r, "link", "set", "br0", "up")
        run(nsexec(r, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                   "net.ipv6.conf.all.forwarding=1"))
        if self.client:
            run(["ip", "link", "add", "eth0", "netns", self.client, "type", "veth", "peer",
                 "name", "cl0", "netns", r])
            self.ip(self.client, "addr", "add", CLIENT_IP4 + "/24", "dev", "eth0")
            self.ip(r, "addr", "add", "198.18.1.1/24", "dev", "cl0")
            if self.ipv6:
                self.ip(self.client, "addr", "add", CLIENT_IP6 + "/64", "dev", "eth0", "nodad")
                self.ip(r, "addr", "add", "fd00:7467:1::1/64", "dev", "cl0", "nodad")
            self.ip(self.client, "link", "set", "eth0", "up")
            self.ip(r, "link", "set", "cl0", "up")
            self.ip(self.client, "route", "add", "default", "via", "198.18.1.1")
            if self.ipv6:
                self.ip(self.client, "-6", "route", "add", "default", "via", "fd00:7467:1::1")
            # Local TCP sends partial checksums; after a native XDP forward
            # the real would see them as bad (MACHINE-NOTES.md).
            run(nsexec(self.client, "ethtool", "-K", "eth0", "tx", "off"), check=False)
        for i, lb in enumerate(self.lbs, 1):
            self.port(lb, "eth0", f"p-lb{i}", [lb_ip4(i) + "/24"], [lb_ip6(i) + "/64"])
            # bpf_fib_lookup answers "forwarding disabled" unless the
            # balancer's interface forwards.
            run(nsexec(lb, "sysctl", "-qw", "net.ipv4.conf.all.forwarding=1",
                       "net.ipv4.conf.eth0.forwarding=1", "net.ipv6.conf.all.forwarding=1"))
            self.ip(lb, "route", "add", "default", "via", ROUTER_SEG4)
        for i, ns in enumerate(self.reals, 1):
            self.port(ns, "eth0", f"p-real{i}", [real_ip4(i) + "/24"], [real_ip6(i) + "/64"])
            self.ip(ns, "route", "add", "default", "via", ROUTER_SEG4)
            if self.ipv6:
                self.ip(ns, "-6", "route", "add", "default", "via", ROUTER_SEG6)
        if self.ipv6:
            for lb in self.lbs:
                self.ip(lb, "-6", "route", "add", "default", "via", ROUTER_SEG6)
        if self.gen:
            self.port(self.gen, "eth0", "p-gen", [GEN_IP4 + "/24"], [])
        # The VIPs live behind the balancer.
        if self.vip_routes:
            self.ip(r, "route", "add", VIP4 + "/32", "via", LB_IP4)
            if self.ipv6:
                self.ip(r, "-6", "route", "add", VIP6 + "/128", "via", LB_IP6)
        # XDP_TX from tg-lbN lands on p-lbN: give it an XDP program.
        obj = compile_xdp(XDP_PASS_C, os.path.join(self.tmp, "xdp_pass.o"))
        for i in range(1, len(self.lbs) + 1):
            self.ip(r, "link", "set", "dev", f"p-lb{i}", "xdpdrv", "obj", obj, "sec", "xdp")
        # Resolve neighbours both ways before any test traffic.
        for lb in self.lbs:
            for i in range(1, self.n_reals + 1):
                run(nsexec(lb, "ping", "-c1", "-W2", real_ip4(i)), check=False)
                if self.ipv6:
                    run(nsexec(lb, "ping", "-6", "-c1", "-W2", real_ip6(i)), check=False)
        return self

    # -- processes -----------------------------------------------------
    def spawn(self, ns, argv, **kw):
        """Starts argv inside ns; the process is ended by cleanup()."""
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(nsexec(ns, *argv), **kw)
        p.tg_group = bool(kw.get("start_new_session"))
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=5):
        """Signals p (its whole process group when spawned with
        start_new_session=True, e.g. trafgen and its workers), then kills it
        after timeout."""
        group = getattr(p, "tg_group", False)
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig) if group else p.send_signal(sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL) if group else p.kill()
                p.wait()
            except ProcessLookupError:
                pass
        elif group:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # workers left behind
            except ProcessLookupError:
                pass

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception:
                pass
        for n in reversed(self.created):
            run(["ip", "netns", "del", n], check=False)
        self.created = []
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mac(self, ns, ifname):
        out = run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname]).stdout
        return json.loads(out)[0]["address"]

    def ethtool_stats(self, ns, ifname):
        """ethtool -S as a dict of ints."""
        out = run(nsexec(ns, "ethtool", "-S", ifname)).stdout
        st = {}
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if v.strip().isdigit():
                st[k.strip()] = int(v)
        return st

    def link_stats(self, ns, ifname):
        """(rx_packets, tx_packets) of an interface."""
        out = run(["ip", "-n", ns, "-j", "-s", "link", "show", "dev", ifname]).stdout
        st = json.loads(out)[0]["stats64"]
        return st["rx"]["packets"], st["tx"]["packets"]


# ---------------------------------------------------------------------
# Programs that run inside the namespaces.

IP_FREEBIND = 15


class NameHandler(socketserver.StreamRequestHandler):
    """Greets with the real's name, then answers every line with it again."""

    def handle(self):
        name = (self.server.name + "\n").encode()
        try:
            self.wfile.write(name)
            for _ in self.rfile:
                self.wfile.write(name)
        except OSError:
            pass


class NameServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, family, name):
        self.address_family = family
        self.name = name
        super().__init__(addr, NameHandler, bind_and_activate=False)
        # The VIP appears on lo when `tidegate decap` starts: bind before.
        self.socket.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        self.server_bind()
        self.server_activate()


def serve_vip(a):
    servers = []
    for addr in a.addr:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = NameServer((addr, a.port), fam, a.name)
        servers.append(s)
        threading.Thread(target=s.serve_forever, daemon=True).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


class HealthHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def serve_health(a):
    class S(HTTPServer):
        address_family = socket.AF_INET6 if ":" in a.addr else socket.AF_INET
        allow_reuse_address = True
    srv = S((a.addr, a.port), HealthHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def agent(a):
    """Client side, driven by JSON lines on stdin:
    {"op": "open", "id": X}    connect, read the greeting -> {"ok", "name"}
    {"op": "ping", "id": X}    one line each way on X     -> {"ok", "name"}
    {"op": "close", "id": X}
    {"op": "burst", "n": N}    N fresh connections        -> {"names": [...], "errors": [...]}
    Every answer is one JSON line."""
    conns = {}

    def connect():
        fam = socket.AF_INET6 if ":" in a.vip else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(a.timeout)
        s.connect((a.vip, a.port))
        f = s.makefile("rwb")
        line = f.readline()
        if not line:
            raise ConnectionError("closed before the greeting")
        return s, f, line.decode().strip()

    for raw in sys.stdin:
        req = json.loads(raw)
        op = req["op"]
        out = {"ok": True}
        try:
            if op == "open":
                s, f, name = connect()
                conns[req["id"]] = (s, f)
                out["name"] = name
            elif op == "ping":
                s, f = conns[req["id"]]
                f.write(b"ping\n")
                f.flush()
                line = f.readline()
                if not line:
                    raise ConnectionError("connection closed")
                out["name"] = line.decode().strip()
            elif op == "close":
                s, f = conns.pop(req["id"])
                s.close()
            elif op == "burst":
                names, errors = [], []
                for _ in range(req["n"]):
                    try:
                        s, f, name = connect()
                        names.append(name)
                        s.close()
                    except OSError as e:
                        errors.append(str(e))
                out["names"], out["errors"] = names, errors
        except (OSError, KeyError) as e:
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


class Agent:
    """The test's handle on an `agent` process in the client namespace."""

    def __init__(self, topo, vip, port=80, timeout=3.0):
        self.p = topo.spawn(topo.client, [sys.executable, os.path.abspath(__file__), "agent",
                                          "--vip", vip, "--port", str(port),
                                          "--timeout", str(timeout)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def call(self, **req):
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("agent exited")
        return json.loads(line)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve-vip")
    p.add_argument("--name", required=True)
    p.add_argument("--addr", action="append", required=True)
    p.add_argument("--port", type=int, default=80)
    p = sub.add_parser("serve-health")
    p.add_argument("--addr", required=True)
    p.add_argument("--port", type=int, default=8080)
    p = sub.add_parser("agent")
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--timeout", type=float, default=3.0)
    a = ap.parse_args()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT}) \
        if a.cmd != "agent" else None
    {"serve-vip": serve_vip, "serve-health": serve_health, "agent": agent}[a.cmd](a)


if __name__ == "__main__":
    main()
