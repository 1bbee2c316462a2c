"""The L4 balancer end to end, in network namespaces (tests/integration/l4net.py):
a client reaches the VIP through a router, the balancer (XDP, on a stick)
spreads connections over three reals with Maglev and IPIP, the reals strip the
tunnel with `tidegate decap` and answer the client directly.

Checks what a user of the balancer would notice: connections succeed and
spread; replies bypass the balancer; a real whose health endpoint stops takes
no new connections while the others keep serving; a real removed from the
configuration (SIGHUP) keeps its open connection until deregistration-delay
ends and takes no new one; a bad reload is refused and traffic continues;
IPv6 works; SIGTERM detaches XDP.

Runs in about 30 s. Skips with the reason when namespaces or XDP are missing.
"""
import copy
import json
import os
import re
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
INTERVAL_MS, HEALTHY, UNHEALTHY, DEREG_S = 500, 2, 2, 3
BURST = 30


def yaml_load(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


def test_config():
    """The test configuration: examples/balancer.yaml with short timers and an
    IPv6 twin of the VIP."""
    cfg = yaml_load(os.path.join(REPO, "examples", "balancer.yaml"))
    cfg["admin-listen"] = "127.0.0.1:10255"
    v = cfg["vips"][0]
    assert v["address"] == l4net.VIP4 and len(v["reals"]) == 3
    v["deregistration-delay"] = f"{DEREG_S}s"
    v["health-check"].update({"interval": f"{INTERVAL_MS}ms", "timeout": "400ms",
                              "healthy-threshold": HEALTHY,
                              "unhealthy-threshold": UNHEALTHY})
    for i, r in enumerate(v["reals"], 1):
        assert r["address"] == l4net.real_ip4(i)
    v6 = copy.deepcopy(v)
    v6["address"] = l4net.VIP6
    v6["reals"] = [{"address": l4net.real_ip6(i), "zone": "a"} for i in (1, 2, 3)]
    cfg["vips"].append(v6)
    return cfg


test_config.__test__ = False  # a helper, not a test


class Lab:
    """The running topology, balancer and reals."""

    def __init__(self):
        self.topo = l4net.Topology(prefix=PREFIX)
        self.health = {}
        self.cfg = test_config()
        self.cfg_path = None
        self.lb = None
        self.log_path = None

    def start(self):
        t = self.topo.build()
        me = l4net.__file__
        for i, ns in enumerate(t.reals, 1):
            t.spawn(ns, [TIDEGATE, "decap", "--iface", "eth0", "--vip", l4net.VIP4,
                         "--vip", l4net.VIP6],
                    stderr=open(os.path.join(t.tmp, f"decap{i}.log"), "w"))
            t.spawn(ns, [sys.executable, me, "serve-vip", "--name", f"real{i}",
                         "--addr", l4net.VIP4, "--addr", l4net.VIP6])
            self.start_health(i)
            t.spawn(ns, [sys.executable, me, "serve-health", "--addr", l4net.real_ip6(i)])
        # The balancer starts with every real healthy: have them answer first.
        for i in (1, 2, 3):
            for addr in (l4net.real_ip4(i), f"[{l4net.real_ip6(i)}]"):
                self.wait(lambda: subprocess.run(
                    l4net.nsexec(t.lb, "curl", "-sf", "-m1", f"http://{addr}:8080/healthz"),
                    capture_output=True).returncode == 0, 10, f"health endpoint {addr}")
        self.cfg_path = os.path.join(t.tmp, "balancer.yaml")
        self.write_config(self.cfg)
        self.log_path = os.path.join(t.tmp, "balancer.log")
        self.lb = t.spawn(t.lb, [TIDEGATE, "balancer", "--config", self.cfg_path],
                          stderr=open(self.log_path, "w"))
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.lb.poll() is not None:
                log = self.log()
                if re.search(r"cannot load XDP.*(not supported|not permitted)", log):
                    pytest.skip(f"XDP unavailable: {log.strip()}")
                raise AssertionError(f"balancer exited {self.lb.returncode}:\n{log}")
            if self.healthz()[0] == 200:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("balancer /healthz never turned 200:\n" + self.log())
        self.agent4 = l4net.Agent(t, l4net.VIP4)
        self.agent6 = l4net.Agent(t, l4net.VIP6)

    def start_health(self, i):
        self.health[i] = self.topo.spawn(self.topo.reals[i - 1],
                                         [sys.executable, l4net.__file__, "serve-health",
                                          "--addr", l4net.real_ip4(i)])

    def write_config(self, cfg):
        import yaml
        tmp = self.cfg_path + ".tmp"
        with open(tmp, "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        os.replace(tmp, self.cfg_path)

    def reload(self, cfg=None, text=None):
        if text is not None:
            with open(self.cfg_path, "w") as f:
                f.write(text)
        else:
            self.write_config(cfg)
        before = self.metric("tidegate_l4_config_reloads_total", result="success") + \
            self.metric("tidegate_l4_config_reloads_total", result="failure")
        self.lb.send_signal(signal.SIGHUP)
        self.wait(lambda: self.metric("tidegate_l4_config_reloads_total", result="success") +
                  self.metric("tidegate_l4_config_reloads_total", result="failure") > before,
                  5, "the reload to be processed")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def admin(self, path):
        p = subprocess.run(l4net.nsexec(self.topo.lb, "curl", "-s", "-o", "-", "-w",
                                        "\n%{http_code}", f"http://127.0.0.1:10255{path}"),
                           capture_output=True, text=True, timeout=10)
        body, _, code = p.stdout.rpartition("\n")
        return int(code or 0), body

    def healthz(self):
        return self.admin("/healthz")

    def metrics(self):
        """{(name, frozenset(labels)): value}"""
        out = {}
        for line in self.admin("/metrics")[1].splitlines():
            m = re.match(r'^([a-zA-Z0-9_:]+)(?:\{(.*)\})? (\S+)$', line)
            if not m:
                continue
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
        return out

    def metric(self, name, **labels):
        return self.metrics().get((name, frozenset(labels.items())), 0.0)

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.05)
        log = self.log() if self.log_path and os.path.exists(self.log_path) else ""
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n" + log)

    def state(self, real, vip=l4net.VIP4):
        for st in ("active", "draining", "gone"):
            if self.metric("tidegate_l4_real_state", vip=f"{vip}:80/tcp", real=real,
                           state=st) == 1:
                return st
        return None

    def burst(self, agent=None, n=BURST):
        r = (agent or self.agent4).call(op="burst", n=n)
        assert r["ok"], r
        return r


@pytest.fixture(scope="module")
def lab():
    why = l4net.can_run()
    if why:
        pytest.skip(why)
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


def test_connections_spread_over_reals(lab):
    r = lab.burst()
    assert r["errors"] == []
    counts = {n: r["names"].count(n) for n in ("real1", "real2", "real3")}
    print(f"\n{BURST} connections: {counts}")
    assert sum(counts.values()) == BURST
    assert all(c > 0 for c in counts.values()), counts
    # The datapath counted packets for every real, and found flows again.
    for i in (1, 2, 3):
        assert lab.metric("tidegate_l4_packets_total", vip=f"{l4net.VIP4}:80/tcp",
                          real=l4net.real_ip4(i)) > 0
    assert lab.metric("tidegate_l4_flow_table_lookups_total", result="hit") > 0
    assert lab.metric("tidegate_l4_flow_table_lookups_total", result="miss") >= BURST
    # Every TCP connection has a second packet (the handshake's ACK): each
    # was entered in the flow table then (veth runs XDP on the sending CPU, so
    # a connection whose packets changed CPU may have been picked twice
    # before; never fewer admissions than half the connections).
    assert lab.metric("tidegate_l4_flows_admitted_total") >= BURST // 2
    assert lab.metric("tidegate_l4_real_healthy", vip=f"{l4net.VIP4}:80/tcp",
                      real=l4net.real_ip4(1)) == 1
    assert lab.metric("tidegate_l4_xdp_attached") == 1


def test_replies_bypass_the_balancer(lab):
    """Direct server return: nothing sourced from the VIP reaches tg-lb1,
    while its capture does see other traffic (health-check answers)."""
    pcap = os.path.join(lab.topo.tmp, "lb.pcap")
    cap = lab.topo.spawn(lab.topo.lb, ["tcpdump", "-i", "eth0", "-n", "-U", "-w", pcap,
                                       f"host {l4net.VIP4} or tcp src port 8080"])
    time.sleep(1.0)  # tcpdump attaches
    fwd0 = lab.metric("tidegate_l4_events_total", event="fwd_tx")
    r = lab.burst()
    assert r["errors"] == []
    time.sleep(INTERVAL_MS / 1000 * 2)  # a few health checks
    lab.topo.stop(cap, signal.SIGINT)

    def count(flt):
        p = subprocess.run(["tcpdump", "-n", "-r", pcap, flt], capture_output=True,
                           text=True)
        return len([ln for ln in p.stdout.splitlines() if ln.strip()])

    replies = count(f"src host {l4net.VIP4}")
    requests_seen = count(f"dst host {l4net.VIP4}")
    health = count("tcp src port 8080")
    fwd = lab.metric("tidegate_l4_events_total", event="fwd_tx") - fwd0
    print(f"\nat tg-lb1: {replies} reply packets, {health} health-check answers, "
          f"{fwd:.0f} packets forwarded by XDP, {requests_seen} VIP packets reached its kernel")
    assert health > 0, "the capture saw nothing at all"
    assert fwd >= BURST * 3  # SYN, ACK (+ data/FIN) of every connection
    assert replies == 0
    # XDP forwarded the client's packets before the kernel could see them.
    assert requests_seen == 0


def test_unhealthy_real_gets_no_new_flows(lab):
    keep = lab.agent4.call(op="open", id="before-failure")
    assert keep["ok"], keep
    t0 = time.time()
    lab.topo.stop(lab.health[3])
    lab.wait(lambda: lab.metric("tidegate_l4_real_healthy", vip=f"{l4net.VIP4}:80/tcp",
                                real=l4net.real_ip4(3)) == 0,
             INTERVAL_MS * UNHEALTHY / 1000 + 5, "real3 to turn unhealthy")
    took = time.time() - t0
    # Checks start every interval, so the threshold-th failed check comes
    # less than interval x threshold after the endpoint stops (plus the
    # check timeout when it hangs instead of refusing); the figure below also
    # holds the time the server takes to exit and the metrics polling.
    print(f"\nreal3 unhealthy after {took:.2f}s (interval x threshold = "
          f"{INTERVAL_MS * UNHEALTHY / 1000:.1f}s)")
    assert lab.state(l4net.real_ip4(3)) in ("draining", "gone")
    r = lab.burst()
    assert r["errors"] == []
    assert "real3" not in r["names"], r["names"]
    assert "real1" in r["names"] and "real2" in r["names"]
    if keep["name"] != "real3":
        ping = lab.agent4.call(op="ping", id="before-failure")
        assert ping == {"ok": True, "name": keep["name"]}
    lab.agent4.call(op="close", id="before-failure")
    # IPv6 VIP checks its own endpoints: unaffected.
    assert lab.metric("tidegate_l4_real_healthy", vip=f"[{l4net.VIP6}]:80/tcp",
                      real=l4net.real_ip6(3)) == 1
    # Back: takes new flows again.
    lab.start_health(3)
    lab.wait(lambda: lab.state(l4net.real_ip4(3)) == "active", 10, "real3 to come back")
    lab.wait(lambda: "real3" in lab.burst()["names"], 5, "real3 to take connections")


def test_drained_real_keeps_open_connection_until_delay(lab):
    # An open connection on real2.
    opened = []
    conn = None
    for k in range(40):
        r = lab.agent4.call(op="open", id=f"d{k}")
        assert r["ok"], r
        opened.append(f"d{k}")
        if r["name"] == "real2":
            conn = f"d{k}"
            break
    assert conn, "no connection landed on real2"
    for c in opened:
        if c != conn:
            lab.agent4.call(op="close", id=c)
    cfg = copy.deepcopy(lab.cfg)
    cfg["vips"][0]["reals"] = [r for r in cfg["vips"][0]["reals"]
                               if r["address"] != l4net.real_ip4(2)]
    t0 = time.time()
    lab.reload(cfg)
    assert lab.state(l4net.real_ip4(2)) == "draining"
    # Draining: the open connection works, new ones never reach real2.
    assert lab.agent4.call(op="ping", id=conn) == {"ok": True, "name": "real2"}
    r = lab.burst()
    assert r["errors"] == [] and "real2" not in r["names"], r
    assert lab.agent4.call(op="ping", id=conn) == {"ok": True, "name": "real2"}
    assert time.time() - t0 < DEREG_S, "the checks above took longer than the delay"
    # The delay ends: real2 is gone, its flow is re-picked onto a real that
    # has no such connection, and the connection breaks.
    lab.wait(lambda: lab.state(l4net.real_ip4(2)) is None, DEREG_S + 5,
             "real2 to be forgotten after its deregistration delay")
    print(f"\nreal2 drained for {time.time() - t0:.2f}s (deregistration-delay {DEREG_S}s)")
    after = lab.agent4.call(op="ping", id=conn)
    assert not after["ok"], after
    lab.agent4.call(op="close", id=conn)
    # Restore; real2 rejoins after healthy-threshold passes (NLB "initial").
    lab.reload(lab.cfg)
    lab.wait(lambda: lab.state(l4net.real_ip4(2)) == "active", 10, "real2 to rejoin")


def test_bad_reload_is_rejected_and_traffic_continues(lab):
    bad = open(lab.cfg_path).read().replace(l4net.real_ip4(3), "198.18.2")
    fails = lab.metric("tidegate_l4_config_reloads_total", result="failure")
    lab.reload(text=bad)
    assert lab.metric("tidegate_l4_config_reloads_total", result="failure") == fails + 1
    assert 'vips[0].reals[2].address: "198.18.2" is not an IPv4 or IPv6 address' in lab.log()
    assert "the running configuration stays" in lab.log()
    r = lab.burst()
    assert r["errors"] == [] and set(r["names"]) == {"real1", "real2", "real3"}, r
    lab.write_config(lab.cfg)


def test_ipv6_vip(lab):
    r = lab.burst(lab.agent6)
    assert r["errors"] == []
    counts = {n: r["names"].count(n) for n in ("real1", "real2", "real3")}
    print(f"\n{BURST} IPv6 connections: {counts}")
    assert all(c > 0 for c in counts.values()), counts


def test_sigterm_detaches(lab):
    assert lab.healthz()[0] == 200
    lab.lb.send_signal(signal.SIGTERM)
    assert lab.lb.wait(10) == 0, lab.log()
    link = subprocess.run(["ip", "-n", lab.topo.lb, "-j", "link", "show", "eth0"],
                          capture_output=True, text=True).stdout
    assert "xdp" not in json.loads(link)[0], link
    assert "XDP detached" in lab.log()
