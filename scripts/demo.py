#!/usr/bin/python3
"""tidegate demo: the whole path on one machine, in network namespaces.

    tg-client 198.18.1.2 --- tg-router --- switched segment 198.18.2.0/24
                                             |-- tg-lb1  198.18.2.10  tidegate balancer (XDP,
                                             |            Maglev, health checks) for the VIP
                                             |            198.18.100.1:80, IPIP to the ingress nodes
                                             |-- tg-ing1 198.18.2.11  tidegate decap + tidegate ingress
                                             '-- tg-ing2 198.18.2.12  tidegate decap + tidegate ingress

Each ingress node runs the demo's echo backends on its loopback (the "pods"
the EndpointSlices in examples/manifests name) and answers the client
directly (direct server return). Everything is configured from embedded
defaults: examples/manifests and a balancer config written here.

    scripts/demo          start (stops a previous demo first)
    scripts/demo stop     stop every process and remove the namespaces
    scripts/demo status   what is running

When namespaces or XDP cannot be used, the demo falls back to the ingress
alone on 127.0.0.1:8080 and says why.
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import l4net  # noqa: E402

STATE = "/tmp/tidegate-demo"
STATE_FILE = os.path.join(STATE, "state.json")
BIN = os.environ.get("TIDEGATE", os.path.join(ROOT, "build", "tidegate"))
BACKEND = os.path.join(ROOT, "examples", "echo_backend.py")
PY = "/usr/bin/python3"
VIP = l4net.VIP4
N_ING = 2
BACKENDS = [(18081, "echo-1", "demo/echo"), (18082, "echo-2", "demo/echo"),
            (18083, "hello-1", "demo/hello")]

BALANCER_YAML = """# Written by scripts/demo: the demo balancer in tg-lb1.
interface: eth0
xdp-mode: native
admin-listen: 0.0.0.0:10255
zone: a
vips:
  - address: {vip}
    port: 80
    protocol: tcp
    forwarding: ipip
    deregistration-delay: 10s
    health-check:
      protocol: http
      port: 10254
      path: /healthz
      interval: 1s
      timeout: 500ms
      healthy-threshold: 2
      unhealthy-threshold: 2
    reals:
{reals}
  - address: {vip}
    port: 443
    protocol: tcp
    forwarding: ipip
    deregistration-delay: 10s
    health-check:
      protocol: http
      port: 10254
      path: /healthz
      interval: 1s
      timeout: 500ms
      healthy-threshold: 2
      unhealthy-threshold: 2
    reals:
{reals}
"""


def log(msg):
    print(f"demo: {msg}", flush=True)


def spawn(argv, logname, ns=None):
    """Starts a long-lived process detached from this script (the demo keeps
    running after `make demo` returns); output goes to STATE/logs/logname."""
    out = open(os.path.join(STATE, "logs", logname), "ab")
    cmd = l4net.nsexec(ns, *argv) if ns else argv
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, cwd=ROOT)
    return p.pid


def save(state):
    with open(STATE_FILE, "w") as f:
        json.dump(state, f, indent=1)


def load():
    try:
        with open(STATE_FILE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stop():
    st = load()
    if not st:
        log("no demo running")
        return 0
    for pid in reversed(st.get("pids", [])):
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.time() + 5
    for pid in st.get("pids", []):
        while time.time() < deadline:
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                break
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for ns in reversed(st.get("namespaces", [])):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    if st.get("tmp"):
        shutil.rmtree(st["tmp"], ignore_errors=True)
    os.unlink(STATE_FILE)
    log("stopped (logs kept in %s/logs)" % STATE)
    return 0


def wait_http(argv, want=b"", timeout=20.0):
    """Retries a curl command until it succeeds (and prints `want`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        p = subprocess.run(argv, capture_output=True)
        if p.returncode == 0 and want in p.stdout:
            return True
        time.sleep(0.2)
    return False


def add_tls(manifests):
    """Gives demo.tidegate.test a certificate: a fresh self-signed ECDSA P-256
    key made here (never checked in), a kubernetes.io/tls Secret holding it,
    and spec.tls on the demo Ingress. ssl-redirect stays off in the demo's
    ConfigMap so plain HTTP keeps working beside HTTPS."""
    d = os.path.join(STATE, "pki")
    os.makedirs(d, exist_ok=True)
    key, crt = os.path.join(d, "demo.key"), os.path.join(d, "demo.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "30", "-subj", "/CN=demo.tidegate.test",
                    "-addext", "subjectAltName=DNS:demo.tidegate.test"],
                   check=True, capture_output=True)
    b64 = lambda f: base64.b64encode(open(f, "rb").read()).decode()  # noqa: E731
    with open(os.path.join(manifests, "30-demo-tls.yaml"), "w") as f:
        f.write("# Written by scripts/demo: the demo host's certificate (self-signed).\n"
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: demo-tls\n"
                "  namespace: demo\ntype: kubernetes.io/tls\ndata:\n"
                f"  tls.crt: {b64(crt)}\n  tls.key: {b64(key)}\n")
    ing = os.path.join(manifests, "20-ingress.yaml")
    text = open(ing).read()
    text = text.replace("spec:\n  ingressClassName: tidegate\n",
                        "spec:\n  ingressClassName: tidegate\n  tls:\n"
                        "    - hosts: [demo.tidegate.test]\n      secretName: demo-tls\n", 1)
    with open(ing, "w") as f:
        f.write(text)
    return crt


def start_local(reason):
    """Fallback: the ingress alone on loopback."""
    log(f"network namespaces/XDP unavailable ({reason}); starting the ingress alone")
    manifests = os.path.join(STATE, "manifests")
    pids = []
    for port, name, svc in BACKENDS:
        pids.append(spawn([PY, BACKEND, "--port", str(port), "--name", name, "--service", svc],
                          f"backend-{name}.log"))
    pids.append(spawn([BIN, "ingress", "--manifests", manifests, "--http-listen",
                       "127.0.0.1:8080", "--https-listen", "127.0.0.1:8443", "--admin-listen",
                       "127.0.0.1:10254"], "ingress.log"))
    save({"mode": "local", "pids": pids, "namespaces": []})
    ok = wait_http(["curl", "-fsS", "-H", "Host: demo.tidegate.test", "http://127.0.0.1:8080/"],
                   b"endpoint")
    print(f"""
tidegate ingress is serving on 127.0.0.1:8080 ({'ready' if ok else 'NOT answering yet: see logs'}).

  curl -H 'Host: demo.tidegate.test' http://127.0.0.1:8080/        # echo-1 / echo-2, round robin
  curl -H 'Host: demo.tidegate.test' http://127.0.0.1:8080/hello   # hello-1
  curl --cacert {STATE}/pki/demo.crt --resolve demo.tidegate.test:8443:127.0.0.1 \\
       https://demo.tidegate.test:8443/                           # TLS, SNI picks the certificate
  curl http://127.0.0.1:10254/metrics | grep tidegate_http
  $EDITOR {manifests}/20-ingress.yaml    # applied live, no reload

logs: {STATE}/logs     stop: make demo-stop
""")
    return 0 if ok else 1


def start():
    if load():
        stop()
    os.makedirs(os.path.join(STATE, "logs"), exist_ok=True)
    manifests = os.path.join(STATE, "manifests")
    shutil.rmtree(manifests, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "examples", "manifests"), manifests)
    add_tls(manifests)
    if not os.access(BIN, os.X_OK):
        log(f"{BIN} is missing: run make first")
        return 1
    reason = l4net.can_run()
    if reason:
        return start_local(reason)

    topo = l4net.Topology(prefix="tg-", n_reals=N_ING, real_role="ing", ipv6=False)
    state = {"mode": "full", "pids": [], "namespaces": [], "tmp": topo.tmp}
    try:
        topo.build()
    except Exception as e:  # a half-built topology is removed by stop()
        state["namespaces"] = topo.created
        save(state)
        stop()
        return start_local(f"topology failed: {e}")
    state["namespaces"] = list(topo.created)
    save(state)
    pids = state["pids"]
    for i, ns in enumerate(topo.reals, 1):
        for port, name, svc in BACKENDS:
            pids.append(spawn([PY, BACKEND, "--port", str(port), "--name", f"{name}@ing{i}",
                               "--service", svc], f"ing{i}-backend-{name}.log", ns))
        pids.append(spawn([BIN, "decap", "--iface", "eth0", "--vip", VIP], f"ing{i}-decap.log",
                          ns))
        pids.append(spawn([BIN, "ingress", "--manifests", manifests, "--http-listen",
                           "0.0.0.0:80", "--https-listen", "0.0.0.0:443", "--admin-listen",
                           "0.0.0.0:10254", "--workers", "2",
                           "--shutdown-grace-period", "3"], f"ing{i}-ingress.log", ns))
        save(state)
    reals = "".join(f"      - address: {l4net.real_ip4(i)}\n" for i in range(1, N_ING + 1))
    cfg = os.path.join(STATE, "balancer.yaml")
    with open(cfg, "w") as f:
        f.write(BALANCER_YAML.format(vip=VIP, reals=reals))
    pids.append(spawn([BIN, "balancer", "--config", cfg], "lb1-balancer.log", topo.lb))
    save(state)

    client = l4net.nsexec(topo.client, "curl", "-fsS", "-m", "2", "-H",
                          "Host: demo.tidegate.test", f"http://{VIP}/")
    ok = wait_http(client, b"endpoint", timeout=30)
    print(f"""
The whole path is up ({'ready' if ok else 'NOT answering yet: see the logs'}):
  tg-client -> tg-router -> tg-lb1 (XDP balancer, VIP {VIP}:80 and :443, Maglev, IPIP)
            -> tg-ing1 / tg-ing2 (tc decap + tidegate ingress) -> echo backends
            -> replies straight back to tg-client (direct server return)

Try:
  ip netns exec tg-client curl -H 'Host: demo.tidegate.test' http://{VIP}/        # JSON from echo-N@ingM
  ip netns exec tg-client curl -H 'Host: demo.tidegate.test' http://{VIP}/hello   # hello-1@ingM
  ip netns exec tg-client curl --cacert {STATE}/pki/demo.crt \\
      --resolve demo.tidegate.test:443:{VIP} https://demo.tidegate.test/    # TLS on the VIP's port 443
  for i in $(seq 8); do ip netns exec tg-client curl -s http://{VIP}/ | grep endpoint; done
  ip netns exec tg-lb1 curl -s 127.0.0.1:10255/metrics | grep -E 'tidegate_l4_(packets|real_healthy)'
  ip netns exec tg-ing1 curl -s 127.0.0.1:10254/metrics | grep tidegate_http_requests_total
  $EDITOR {manifests}/20-ingress.yaml                            # applied live on both ingress nodes
  kill -TERM $(pgrep -f 'ingress --manifests {manifests}' | head -1)   # drain one ingress node:
      # its /healthz turns 503, the balancer stops sending it new flows, open ones finish

logs: {STATE}/logs     stop: make demo-stop
""")
    return 0 if ok else 1


def status():
    st = load()
    if not st:
        print("no demo running")
        return 0
    print(f"mode: {st['mode']}; namespaces: {' '.join(st['namespaces']) or '-'}")
    for pid in st["pids"]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            print(f"  {pid} running: {cmd}")
        except OSError:
            print(f"  {pid} exited")
    return 0


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else "start"
    if cmd == "start":
        return start()
    if cmd == "stop":
        return stop()
    if cmd == "status":
        return status()
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
