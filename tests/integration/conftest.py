"""Shared fixtures for the integration tests.

`tidegate` starts `tidegate ingress` as a real process on loopback (HTTP and
admin ports chosen by the kernel, read back from its log line) with a
manifests directory in the test's temp dir. At teardown every instance gets
SIGTERM and must exit with status 0 within its drain time, and its stderr must
not contain a sanitizer report (the ASan run of the suite relies on this).

Environment: TIDEGATE (binary; default build/tidegate), TG_ASAN=1 (ASan build:
longer waits).
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

TIDEGATE = os.path.abspath(os.environ.get("TIDEGATE", os.path.join(ROOT, "build", "tidegate")))
ASAN = os.environ.get("TG_ASAN") == "1"
SLOWDOWN = 4 if ASAN else 1
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (skipped by the ASan run)")


# ------------------------------------------------------------------ manifests

INGRESS_CLASS = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: tidegate}
spec: {controller: tidegate.io/ingress-controller}
"""


def configmap(data):
    lines = "\n".join(f'  {k}: "{v}"' for k, v in data.items())
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: tidegate, namespace: tidegate-system}}
data:
{lines}
"""


def service(name, ns="default", port=80):
    """A Service whose port `port` (named http) targets the slices' port named http."""
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  ports: [{{name: http, port: {port}, targetPort: http}}]
"""


def endpoints(svc, ports, ns="default", ready=True, name=None, ip="127.0.0.1"):
    """One EndpointSlice per backend port (a slice has a single port list)."""
    docs = []
    for i, p in enumerate(ports):
        docs.append(f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name or svc}-{i}
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {svc}}}
addressType: IPv4
ports: [{{name: http, port: {p}, protocol: TCP}}]
endpoints:
  - addresses: ["{ip}"]
    conditions: {{ready: {"true" if ready else "false"}}}
""")
    return "---".join(docs) if docs else ""


def ingress(name, rules, ns="default", annotations=None):
    """rules: [(host or None, [(path, pathType, service, port)])]"""
    ann = ""
    if annotations:
        ann = "  annotations:\n" + "\n".join(f'    {k}: "{v}"' for k, v in annotations.items()) + "\n"
    out = [f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: {ns}
{ann}spec:
  ingressClassName: tidegate
  rules:"""]
    for host, paths in rules:
        out.append(f"    - host: \"{host}\"\n      http:\n        paths:" if host else
                   "    - http:\n        paths:")
        for path, ptype, svc, port in paths:
            out.append(f"""          - path: {path}
            pathType: {ptype}
            backend: {{service: {{name: {svc}, port: {{number: {port}}}}}}}""")
    return "\n".join(out) + "\n"


def app_manifests(ports, host="app.test", annotations=None, settings=None, svc="app"):
    """The common case: Service `svc` on the given backend ports, Ingress for host /."""
    docs = {
        "00-class.yaml": INGRESS_CLASS,
        f"10-{svc}.yaml": service(svc) + "---" + endpoints(svc, ports) if ports else service(svc),
        f"20-{svc}-ingress.yaml": ingress(svc, [(host, [("/", "Prefix", svc, 80)])], annotations=annotations),
    }
    if settings:
        docs["01-configmap.yaml"] = configmap(settings)
    return docs


# ------------------------------------------------------------------ process

class Tidegate:
    def __init__(self, tmp_path, manifests, workers=2, args=(), grace=None):
        self.dir = tmp_path
        self.mdir = os.path.join(str(tmp_path), "manifests")
        os.makedirs(self.mdir, exist_ok=True)
        for name, text in manifests.items():
            self.write(name, text)
        self.out_path = os.path.join(str(tmp_path), "tidegate.out")
        self.err_path = os.path.join(str(tmp_path), "tidegate.err")
        argv = [TIDEGATE, "ingress", "--manifests", self.mdir, "--http-listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0", "--workers", str(workers)] + list(args)
        self.proc = subprocess.Popen(argv, stdout=open(self.out_path, "wb"), stderr=open(self.err_path, "wb"))
        self.port = self.admin_port = None
        end = time.time() + 10 * SLOWDOWN
        while time.time() < end:
            m = re.search(r"serving http on port (\d+) .*admin on port (\d+)", self.stderr())
            if m:
                self.port, self.admin_port = int(m.group(1)), int(m.group(2))
                break
            if self.proc.poll() is not None:
                raise AssertionError(f"tidegate exited ({self.proc.returncode}): {self.stderr()}")
            time.sleep(0.02)
        assert self.port, "tidegate did not start: " + self.stderr()

    # files
    def write(self, name, text):
        tmp = os.path.join(self.mdir, "." + name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.mdir, name))

    def remove(self, name):
        os.unlink(os.path.join(self.mdir, name))

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def access_log(self, wait_for=0, timeout=5.0):
        """Access log lines (waits until at least wait_for lines are there)."""
        end = time.time() + timeout * SLOWDOWN
        while True:
            with open(self.out_path, "rb") as f:
                lines = [l for l in f.read().decode("utf-8", "replace").split("\n") if l]
            if len(lines) >= wait_for or time.time() > end:
                return lines
            time.sleep(0.02)

    # admin
    def admin(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metrics(self):
        return self.admin("/metrics")[1]

    def metric(self, name, **labels):
        """Sum of the samples of `name` whose labels include `labels`."""
        total = None
        for line in self.metrics().split("\n"):
            if not line.startswith(name) or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(got.get(k) == str(v) for k, v in labels.items()):
                total = (total or 0) + float(m.group(3))
        return total

    def generation(self):
        return int(self.metric("tidegate_config_generation") or 0)

    def wait_generation(self, gen, timeout=10.0):
        end = time.time() + timeout * SLOWDOWN
        while time.time() < end:
            if self.generation() >= gen:
                # Workers pick the new snapshot up on their next loop iteration.
                time.sleep(0.05)
                return
            time.sleep(0.02)
        raise AssertionError(f"configuration generation {gen} not reached: {self.stderr()}")

    def reload(self, name, text):
        """Writes a manifest and waits until the new snapshot is published."""
        g = self.generation()
        self.write(name, text)
        self.wait_generation(g + 1)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, timeout=15.0):
        """SIGTERM, wait for the exit, check status and sanitizer output."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * SLOWDOWN)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("tidegate did not exit after SIGTERM:\n" + self.stderr()[-3000:])
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, f"sanitizer report in tidegate's stderr:\n{err[-6000:]}"
        assert self.proc.returncode == 0, f"tidegate exit status {self.proc.returncode}:\n{err[-3000:]}"


@pytest.fixture
def tidegate(tmp_path):
    """Factory: tidegate(manifests, workers=2, args=()) -> started Tidegate."""
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")
    started = []
    counter = [0]

    def start(manifests, workers=2, args=()):
        counter[0] += 1
        d = tmp_path / f"tg{counter[0]}"
        d.mkdir()
        t = Tidegate(d, manifests, workers=workers, args=args)
        started.append(t)
        return t

    yield start
    errors = []
    for t in started:
        try:
            t.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def backend():
    """Factory: backend(name=..., idle_close=...) -> started backends.Backend."""
    import backends
    made = []

    def make(**kw):
        b = backends.Backend(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def dead_port():
    """A loopback port nobody listens on (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p
