"""Live configuration changes under load, SIGHUP, SIGTERM drain."""
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from backends import Client, get
from conftest import INGRESS_CLASS, SLOWDOWN, app_manifests, configmap, endpoints, ingress, service


def wrk_ok(out):
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out
    return int(re.search(r"(\d+) requests in", out).group(1))


def test_live_manifest_changes_under_keepalive_load(tidegate, backend):
    if not shutil.which("wrk"):
        pytest.skip("wrk not installed")
    a, b = backend(name="a"), backend(name="b")
    tg = tidegate(app_manifests([a.port]), workers=2)
    res = {}

    def load():
        res["out"] = subprocess.run(["wrk", "-t2", "-c16", f"-d{3 * SLOWDOWN}s", "-H", "Host: app.test",
                                     f"http://127.0.0.1:{tg.port}/"], capture_output=True, text=True).stdout

    t = threading.Thread(target=load)
    t.start()
    time.sleep(0.5)
    # 1. the Service's endpoints move from a to a+b, then to b only
    tg.reload("10-app.yaml", service("app") + "---" + endpoints("app", [a.port, b.port]))
    time.sleep(0.3)
    tg.reload("10-app.yaml", service("app") + "---" + endpoints("app", [b.port]))
    time.sleep(0.3)
    a_before = a.requests
    # 2. an unrelated Ingress appears, the ConfigMap changes
    tg.reload("30-other.yaml", ingress("other", [("other.test", [("/", "Prefix", "app", 80)])]))
    tg.reload("01-configmap.yaml", configmap({"keep-alive-requests": "500"}))
    time.sleep(0.3)
    # 3. SIGHUP: full re-read
    tg.proc.send_signal(signal.SIGHUP)
    t.join()
    n = wrk_ok(res["out"])
    assert n > 100
    assert b.requests > 0
    # nothing new went to a once it was removed (in-flight requests finished on it)
    assert a.requests - a_before <= 16
    assert get(tg.port, "/", host="other.test").json()["backend"] == "b"


def test_bad_manifest_keeps_the_last_good_configuration(tidegate, backend):
    a = backend(name="a")
    tg = tidegate(app_manifests([a.port]))
    g = tg.generation()
    tg.write("20-app-ingress.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\n  bad: [yaml")
    time.sleep(0.5 * SLOWDOWN)
    assert get(tg.port, "/").json()["backend"] == "a"
    assert tg.admin("/healthz")[0] == 200
    assert tg.generation() >= g


def test_sigterm_drain(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]), args=["--shutdown-grace-period", "1"])
    idle = Client(tg.port)
    assert idle.request().status == 200
    busy = Client(tg.port)
    busy.send(b"GET /sleep/1800 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    time.sleep(0.1)
    tg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    # /healthz turns 503 at once
    assert tg.admin("/healthz") == (503, "draining\n")
    # during the grace period new connections are still accepted and served
    assert get(tg.port, "/").status == 200
    # after it: the idle keep-alive connection is closed with a FIN ...
    assert idle.closed_by_peer(timeout=5 * SLOWDOWN)
    # ... new connections are refused (each worker closes its own listener) ...
    refused = False
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", tg.port), timeout=2).close()
        except OSError:
            refused = True
            break
        time.sleep(0.02)
    assert refused
    # ... and the request in flight completes, with Connection: close
    r = busy.read()
    assert r.status == 200
    assert r.header("Connection") == "close"
    assert tg.proc.wait(10 * SLOWDOWN) == 0


def test_empty_configuration_answers_404(tidegate, backend):
    # An empty manifests directory: configured with nothing -> 404 for any host.
    tg = tidegate({"00-class.yaml": INGRESS_CLASS})
    assert get(tg.port, "/").status == 404
    assert tg.admin("/healthz")[0] == 200
