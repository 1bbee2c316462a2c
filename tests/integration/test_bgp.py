"""BGP announcement of the VIPs, end to end, against a real BIRD 2.

Topology (tests/integration/l4net.py with two balancer nodes, no static VIP
routes):

    tg-client -- tg-router (BIRD 2, AS 65000, br0 198.18.2.1) -- tg-lb1 (.10)
                                                              -- tg-lb2 (.20)
                                                              -- tg-real1..3

Both balancers (AS 65001) peer with BIRD, which merges their equal routes
into one kernel route with two next hops (`merge paths on`); the router
hashes flows over them on the 5-tuple (fib_multipath_hash_policy=1). Checks
what an operator would notice: the router learns the IPv4 and IPv6 VIPs from
both balancers, connections flow through both, a VIP removed by a reload (or
left without reals) is withdrawn by that balancer only, and SIGTERM on one
balancer withdraws its routes before XDP is detached, with connections
(including one that was going through it) carrying on through the other.

Runs in about 30 s. Skips with the reason when BIRD, namespaces or XDP are
missing.
"""
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import l4net  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TIDEGATE = os.environ.get("TIDEGATE", os.path.join(REPO, "build", "tidegate"))
PREFIX = os.environ.get("TG_L4NET_PREFIX", "tg-")
ROUTER_AS, LB_AS = 65000, 65001
HOLD_S, WITHDRAW_S = 9, 2
BURST = 40

BIRD_CONF = """
log "{log}" all;
router id 198.18.2.1;
protocol device {{ }}
# ECMP: one kernel route per VIP with a next hop per balancer.
protocol kernel kernel4 {{ ipv4 {{ import none; export all; }}; merge paths on; }}
protocol kernel kernel6 {{ ipv6 {{ import none; export all; }}; merge paths on; }}
template bgp balancer {{
    local 198.18.2.1 as {router_as};
    hold time {hold};
    connect delay time 1;
    connect retry time 2;
    error wait time 1, 4;
    ipv4 {{ import all; export none; }};
    ipv6 {{ import all; export none; }};
}}
protocol bgp lb1 from balancer {{ neighbor {lb1} as {lb_as}; }}
protocol bgp lb2 from balancer {{ neighbor {lb2} as {lb_as}; }}
"""


def balancer_config():
    """Both balancers run this: the same VIPs and reals (so that they build
    the same Maglev tables), each announcing to the router."""
    hc = {"protocol": "http", "port": 8080, "path": "/healthz", "interval": "500ms",
          "timeout": "400ms", "healthy-threshold": 2, "unhealthy-threshold": 2}
    v4 = {"address": l4net.VIP4, "port": 80, "deregistration-delay": "3s",
          "health-check": hc,
          "reals": [{"address": l4net.real_ip4(i)} for i in (1, 2, 3)]}
    v6 = copy.deepcopy(v4)
    v6["address"] = l4net.VIP6
    v6["reals"] = [{"address": l4net.real_ip6(i)} for i in (1, 2, 3)]
    return {
        "interface": "eth0",
        "admin-listen": "127.0.0.1:10255",
        "bgp": {"local-as": LB_AS, "hold-time": f"{HOLD_S}s",
                "withdraw-delay": f"{WITHDRAW_S}s",
                "neighbors": [{"address": l4net.ROUTER_SEG4, "remote-as": ROUTER_AS}]},
        "vips": [v4, v6],
    }


class Balancer:
    """One `tidegate balancer` in its namespace."""

    def __init__(self, lab, i):
        self.lab, self.i = lab, i
        self.ns = lab.topo.lbs[i - 1]
        self.ip4, self.ip6 = l4net.lb_ip4(i), l4net.lb_ip6(i)
        self.cfg = balancer_config()
        self.cfg_path = os.path.join(lab.topo.tmp, f"lb{i}.yaml")
        self.log_path = os.path.join(lab.topo.tmp, f"lb{i}.log")
        self.proc = None

    def write(self, cfg):
        import yaml
        with open(self.cfg_path + ".tmp", "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        os.replace(self.cfg_path + ".tmp", self.cfg_path)

    def start(self):
        self.write(self.cfg)
        self.proc = self.lab.topo.spawn(self.ns, [TIDEGATE, "balancer", "--config",
                                                  self.cfg_path],
                                        stderr=open(self.log_path, "w"))

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def admin(self, path):
        p = subprocess.run(l4net.nsexec(self.ns, "curl", "-s", "-m2", "-o", "-", "-w",
                                        "\n%{http_code}", f"http://127.0.0.1:10255{path}"),
                           capture_output=True, text=True, timeout=10)
        body, _, code = p.stdout.rpartition("\n")
        return int(code or 0), body

    def metric(self, name, **labels):
        want = frozenset(labels.items())
        for line in self.admin("/metrics")[1].splitlines():
            m = re.match(r'^([a-zA-Z0-9_:]+)(?:\{(.*)\})? (\S+)$', line)
            if m and m.group(1) == name and \
                    frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")) == want:
                return float(m.group(3))
        return 0.0

    def vip_packets(self, vip=l4net.VIP4):
        label = f"[{vip}]:80/tcp" if ":" in vip else f"{vip}:80/tcp"
        return self.metric("tidegate_l4_vip_packets_total", vip=label)

    def reload(self, cfg):
        before = self.metric("tidegate_l4_config_reloads_total", result="success")
        self.write(cfg)
        self.proc.send_signal(signal.SIGHUP)
        self.lab.wait(lambda: self.metric("tidegate_l4_config_reloads_total",
                                          result="success") > before, 5, "the reload")


class Lab:
    def __init__(self):
        self.topo = l4net.Topology(prefix=PREFIX, n_lbs=2, vip_routes=False)
        self.lbs = []
        self.bird_sock = None

    def start(self):
        t = self.topo.build()
        # The router spreads flows over the next hops by 5-tuple, as
        # DESIGN.md's routers do, not by address pair only.
        l4net.run(l4net.nsexec(t.router, "sysctl", "-qw",
                               "net.ipv4.fib_multipath_hash_policy=1",
                               "net.ipv6.fib_multipath_hash_policy=1"))
        me = l4net.__file__
        for i, ns in enumerate(t.reals, 1):
            t.spawn(ns, [TIDEGATE, "decap", "--iface", "eth0", "--vip", l4net.VIP4,
                         "--vip", l4net.VIP6])
            t.spawn(ns, [sys.executable, me, "serve-vip", "--name", f"real{i}",
                         "--addr", l4net.VIP4, "--addr", l4net.VIP6])
            t.spawn(ns, [sys.executable, me, "serve-health", "--addr", l4net.real_ip4(i)])
            t.spawn(ns, [sys.executable, me, "serve-health", "--addr", l4net.real_ip6(i)])
        for i in (1, 2, 3):
            for addr in (l4net.real_ip4(i), f"[{l4net.real_ip6(i)}]"):
                self.wait(lambda: subprocess.run(
                    l4net.nsexec(t.lb, "curl", "-sf", "-m1", f"http://{addr}:8080/healthz"),
                    capture_output=True).returncode == 0, 10, f"health endpoint {addr}")
        # BIRD first, so that the balancers' first connection finds it.
        conf = os.path.join(t.tmp, "bird.conf")
        self.bird_log = os.path.join(t.tmp, "bird.log")
        with open(conf, "w") as f:
            f.write(BIRD_CONF.format(log=self.bird_log, router_as=ROUTER_AS, lb_as=LB_AS,
                                     hold=HOLD_S, lb1=l4net.lb_ip4(1), lb2=l4net.lb_ip4(2)))
        self.bird_sock = os.path.join(t.tmp, "bird.ctl")
        self.bird = t.spawn(t.router, ["bird", "-c", conf, "-s", self.bird_sock, "-f"],
                            stderr=open(os.path.join(t.tmp, "bird.err"), "w"))
        self.wait(lambda: self.bird.poll() is not None or
                  self.birdc("show", "status").returncode == 0, 10, "BIRD to start")
        if self.bird.poll() is not None:
            raise AssertionError("bird exited: " + open(os.path.join(t.tmp, "bird.err")).read())
        for i in (1, 2):
            lb = Balancer(self, i)
            self.lbs.append(lb)
            lb.start()
        for lb in self.lbs:
            deadline = time.time() + 15
            while lb.admin("/healthz")[0] != 200:
                if lb.proc.poll() is not None:
                    log = lb.log()
                    if re.search(r"cannot load XDP.*(not supported|not permitted)", log):
                        pytest.skip(f"XDP unavailable: {log.strip()}")
                    raise AssertionError(f"lb{lb.i} exited {lb.proc.returncode}:\n{log}")
                if time.time() > deadline:
                    raise AssertionError(f"lb{lb.i} /healthz never turned 200:\n{lb.log()}")
                time.sleep(0.1)
        self.agent4 = l4net.Agent(t, l4net.VIP4)
        self.agent6 = l4net.Agent(t, l4net.VIP6)

    def birdc(self, *args):
        return subprocess.run(["birdc", "-s", self.bird_sock, *args], capture_output=True,
                              text=True, timeout=10)

    def bird_state(self, proto):
        """BIRD's state of a protocol: "Established", "Active", ..."""
        for line in self.birdc("show", "protocols").stdout.splitlines():
            f = line.split()
            if f and f[0] == proto:
                return f[5] if len(f) > 5 else f[3]
        return None

    def bird_next_hops(self, prefix):
        """Next hops of the BGP routes BIRD holds for prefix."""
        out = self.birdc("show", "route", prefix, "all").stdout
        return sorted(re.findall(r"BGP\.next_hop: (\S+)", out))

    def kernel_gateways(self, prefix):
        """Gateways of the router's kernel route for prefix ([] when none)."""
        fam = "-6" if ":" in prefix else "-4"
        out = subprocess.run(["ip", fam, "-j", "-n", self.topo.router, "route", "show",
                              "exact", prefix], capture_output=True, text=True).stdout
        routes = json.loads(out or "[]")
        gws = []
        for r in routes:
            if "nexthops" in r:
                gws += [h["gateway"] for h in r["nexthops"]]
            elif "gateway" in r:
                gws.append(r["gateway"])
        return sorted(gws)

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.05)
        logs = "".join(f"\n--- lb{lb.i}\n{lb.log()}" for lb in self.lbs
                       if os.path.exists(lb.log_path))
        if self.bird_sock:
            logs += "\n--- birdc show protocols\n" + self.birdc("show", "protocols").stdout
        raise AssertionError(f"timed out after {timeout}s waiting for {what}{logs}")


PREFIX4 = l4net.VIP4 + "/32"
PREFIX6 = l4net.VIP6 + "/128"
BOTH4 = sorted([l4net.lb_ip4(1), l4net.lb_ip4(2)])
BOTH6 = sorted([l4net.lb_ip6(1), l4net.lb_ip6(2)])


@pytest.fixture(scope="module")
def lab():
    why = l4net.can_run()
    if why:
        pytest.skip(why)
    for tool in ("bird", "birdc"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (Debian bird2)")
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")
    try:
        import yaml  # noqa: F401
    except ImportError:
        pytest.skip("python3-yaml not installed")
    lab = Lab()
    try:
        lab.start()
        yield lab
    finally:
        lab.topo.cleanup()


def test_router_learns_vips_from_both_balancers(lab):
    t0 = time.time()
    for proto in ("lb1", "lb2"):
        lab.wait(lambda: lab.bird_state(proto) == "Established", 15,
                 f"BIRD's session {proto} to be Established")
    lab.wait(lambda: lab.kernel_gateways(PREFIX4) == BOTH4, 10,
             "an ECMP kernel route for the IPv4 VIP")
    lab.wait(lambda: lab.kernel_gateways(PREFIX6) == BOTH6, 10,
             "an ECMP kernel route for the IPv6 VIP")
    print(f"\nECMP routes in the router {time.time() - t0:.2f}s after the balancers were up")
    assert lab.bird_next_hops(PREFIX4) == BOTH4
    assert lab.bird_next_hops(PREFIX6) == BOTH6
    out = lab.birdc("show", "route", PREFIX4, "all").stdout
    assert out.count(f"BGP.as_path: {LB_AS}") == 2, out
    assert out.count("BGP.origin: IGP") == 2, out
    for lb in lab.lbs:
        assert lb.metric("tidegate_bgp_session_up", neighbor=l4net.ROUTER_SEG4) == 1
        assert lb.metric("tidegate_bgp_vip_announced", vip=l4net.VIP4) == 1
        assert lb.metric("tidegate_bgp_vip_announced", vip=l4net.VIP6) == 1
        assert lb.metric("tidegate_bgp_updates_sent_total", neighbor=l4net.ROUTER_SEG4) >= 2


def test_connections_flow_through_both_balancers(lab):
    lab.wait(lambda: lab.kernel_gateways(PREFIX4) == BOTH4, 10, "the ECMP route")
    for agent, vip in ((lab.agent4, l4net.VIP4), (lab.agent6, l4net.VIP6)):
        before = [lb.vip_packets(vip) for lb in lab.lbs]
        r = agent.call(op="burst", n=BURST)
        assert r["ok"] and r["errors"] == [], r
        assert set(r["names"]) == {"real1", "real2", "real3"}, r["names"]
        delta = [lb.vip_packets(vip) - b for lb, b in zip(lab.lbs, before)]
        print(f"\n{vip}: {BURST} connections, packets through lb1/lb2: {delta}")
        assert all(d > 0 for d in delta), delta


def test_vip_without_reals_or_removed_is_withdrawn(lab):
    lb1 = lab.lbs[0]
    lab.wait(lambda: lab.kernel_gateways(PREFIX6) == BOTH6, 10, "the IPv6 ECMP route")
    only_lb2 = [l4net.lb_ip6(2)]
    # The IPv6 VIP loses every real on lb1: lb1 withdraws it, lb2 keeps it.
    cfg = copy.deepcopy(lb1.cfg)
    cfg["vips"][1]["reals"] = []
    lb1.reload(cfg)
    lab.wait(lambda: lab.bird_next_hops(PREFIX6) == only_lb2, 10,
             "lb1's IPv6 route to be withdrawn (no reals)")
    assert lb1.metric("tidegate_bgp_vip_announced", vip=l4net.VIP6) == 0
    assert lab.bird_next_hops(PREFIX4) == BOTH4  # the IPv4 VIP is untouched
    lab.wait(lambda: lab.kernel_gateways(PREFIX6) == only_lb2, 10, "a single-path route")
    r = lab.agent6.call(op="burst", n=10)
    assert r["errors"] == [], r
    # Reals back: announced again.
    lb1.reload(lb1.cfg)
    lab.wait(lambda: lab.bird_next_hops(PREFIX6) == BOTH6, 10, "lb1's IPv6 route back")
    # The VIP removed from the configuration altogether: withdrawn too.
    cfg = copy.deepcopy(lb1.cfg)
    del cfg["vips"][1]
    lb1.reload(cfg)
    lab.wait(lambda: lab.bird_next_hops(PREFIX6) == only_lb2, 10,
             "lb1's IPv6 route to be withdrawn (VIP removed)")
    assert lab.bird_next_hops(PREFIX4) == BOTH4
    lb1.reload(lb1.cfg)
    lab.wait(lambda: lab.kernel_gateways(PREFIX6) == BOTH6, 10, "the IPv6 ECMP route back")


def test_bgp_section_change_needs_restart(lab):
    lb1 = lab.lbs[0]
    cfg = copy.deepcopy(lb1.cfg)
    cfg["bgp"]["hold-time"] = "30s"
    fails = lb1.metric("tidegate_l4_config_reloads_total", result="failure")
    lb1.write(cfg)
    lb1.proc.send_signal(signal.SIGHUP)
    lab.wait(lambda: lb1.metric("tidegate_l4_config_reloads_total", result="failure") > fails,
             5, "the reload to be refused")
    assert "bgp cannot change on reload (restart needed)" in lb1.log()
    assert lab.bird_state("lb1") == "Established"
    lb1.write(lb1.cfg)


def test_sigterm_withdraws_before_detaching(lab):
    lb1, lb2 = lab.lbs
    lab.wait(lambda: lab.kernel_gateways(PREFIX4) == BOTH4, 10, "the ECMP route")
    # A connection whose packets go through lb2.
    via2 = None
    for k in range(30):
        b1, b2 = lb1.vip_packets(), lb2.vip_packets()
        r = lab.agent4.call(op="open", id=f"s{k}")
        assert r["ok"], r
        if lb2.vip_packets() > b2 and lb1.vip_packets() == b1:
            via2 = (f"s{k}", r["name"])
            break
        lab.agent4.call(op="close", id=f"s{k}")
    assert via2, "no connection went through lb2"

    t0 = time.time()
    lb2.proc.send_signal(signal.SIGTERM)
    # Draining: /healthz says so, and the router loses lb2's routes...
    code, body = lb2.admin("/healthz")
    assert code == 503, (code, body)
    lab.wait(lambda: lab.kernel_gateways(PREFIX4) == [l4net.lb_ip4(1)], WITHDRAW_S + 5,
             "the router to drop lb2 from the IPv4 route")
    t_withdrawn = time.time() - t0
    # ... while lb2 still forwards, XDP attached: withdraw first, detach last.
    assert "withdraw-delay over" not in lb2.log(), "the route went only when lb2 stopped"
    assert lb2.proc.poll() is None, "lb2 exited before the route was withdrawn"
    assert lab.bird_next_hops(PREFIX4) == [l4net.lb_ip4(1)]
    lab.wait(lambda: lab.kernel_gateways(PREFIX6) == [l4net.lb_ip6(1)], 5,
             "the router to drop lb2 from the IPv6 route")
    # The connection that went through lb2 now goes through lb1, which picks
    # the same real from the same Maglev table: it keeps working.
    ping = lab.agent4.call(op="ping", id=via2[0])
    assert ping == {"ok": True, "name": via2[1]}, ping
    assert lb2.proc.wait(WITHDRAW_S + 10) == 0, lb2.log()
    t_exit = time.time() - t0
    print(f"\nSIGTERM on lb2: route withdrawn after {t_withdrawn:.2f}s, process exited after "
          f"{t_exit:.2f}s (withdraw-delay {WITHDRAW_S}s, hold time {HOLD_S}s)")
    log = lb2.log()
    assert log.index("VIPs withdrawn from BGP") < log.index("XDP detached"), log
    # The session ended with Cease / Administrative Shutdown and its message.
    out = lab.birdc("show", "protocols", "all", "lb2").stdout
    assert "Administrative shutdown" in out, out
    assert "tidegate balancer shutting down" in out, out
    assert lab.bird_state("lb1") == "Established"
    # New connections: all through lb1, none fails.
    before = lb1.vip_packets()
    r = lab.agent4.call(op="burst", n=BURST)
    assert r["errors"] == [], r
    assert lb1.vip_packets() - before >= BURST * 2
    assert lab.agent4.call(op="ping", id=via2[0]) == {"ok": True, "name": via2[1]}
    lab.agent4.call(op="close", id=via2[0])
    r = lab.agent6.call(op="burst", n=10)
    assert r["errors"] == [], r
    # The last balancer goes: nothing is left announced.
    lb1.proc.send_signal(signal.SIGTERM)
    assert lb1.proc.wait(WITHDRAW_S + 10) == 0, lb1.log()
    lab.wait(lambda: lab.kernel_gateways(PREFIX4) == [] and lab.kernel_gateways(PREFIX6) == [],
             5, "the VIP routes to be gone")
    for lb in lab.lbs:
        assert not any(m in lb.log() for m in ("AddressSanitizer", "runtime error:",
                                                "LeakSanitizer")), lb.log()
