"""Upstream side of issue 4: endpoints that turn terminating or disappear get
no new requests and their idle pooled connections are closed while in-flight
requests finish; configuration changes and SIGHUP under load; a backend that
closes idle keep-alive connections aggressively; pooled connections closed
before upstream-keepalive-timeout."""
import random
import signal
import threading
import time

import pytest

from backends import Client, get
from conftest import SLOWDOWN, app_manifests, configmap, ingress, service
from lifecycle_util import Load, slice_doc


def wait_until(pred, timeout=5.0):
    end = time.time() + timeout * SLOWDOWN
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_endpoint_termination_and_config_changes_under_load(tidegate, backend):
    a, b = backend(name="a"), backend(name="b")
    tg = tidegate(app_manifests([a.port, b.port]), workers=2)
    load = Load(tg.port, conns=16).start()
    try:
        # Slow requests are in flight (round robin puts some on b) when b
        # starts terminating.
        time.sleep(0.5)
        assert a.requests > 0 and b.requests > 0
        slow = [Client(tg.port) for _ in range(10)]
        for c in slow:
            c.send(b"GET /sleep/1500 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        time.sleep(0.2)

        # 1. b: ready=false, serving=true, terminating=true (a pod shutting down)
        svc = service("app") + "---"
        tg.reload("10-app.yaml", svc + slice_doc("app", [(a.port, True, True, False),
                                                         (b.port, False, True, True)]))
        b_at_switch = b.requests
        # The requests in flight complete, on b too.
        served = [c.read() for c in slow]
        assert all(r.status == 200 for r in served)
        assert "b" in [r.json()["backend"] for r in served]
        for c in slow:
            c.close()
        # Its idle pooled connections are closed at once; only the in-flight
        # request keeps one, until it completes.
        assert wait_until(lambda: len(b.conns) == 0), f"{len(b.conns)} connections to b still open"
        time.sleep(0.3)
        assert b.requests - b_at_switch <= 16 + 10  # at most what was in flight
        b_quiet = b.requests

        # 2. configuration changes and a full re-read while b terminates
        tg.reload("30-other.yaml", ingress("other", [("other.test", [("/", "Prefix", "app", 80)])]))
        tg.reload("01-configmap.yaml", configmap({"keep-alive-requests": "50"}))
        g = tg.generation()
        tg.proc.send_signal(signal.SIGHUP)
        tg.wait_generation(g + 1)
        time.sleep(0.2)
        assert b.requests == b_quiet  # still nothing new for b

        # 3. a terminating too: nothing is ready, so the serving ones are used
        tg.reload("10-app.yaml", svc + slice_doc("app", [(a.port, False, True, True),
                                                         (b.port, False, True, True)]))
        assert wait_until(lambda: b.requests > b_quiet)
        # 4. b removed from the slices, a back to ready
        tg.reload("10-app.yaml", svc + slice_doc("app", [(a.port, True, True, False)]))
        assert wait_until(lambda: len(b.conns) == 0)
        time.sleep(0.3)
        b_gone = b.requests
        time.sleep(0.5)
        assert b.requests == b_gone
        load.stop()
        load.assert_clean()
        assert get(tg.port, "/", host="other.test").json()["backend"] == "a"
    finally:
        load.stop()


@pytest.mark.slow
def test_backend_closing_idle_connections_after_1s_never_reaches_clients(tidegate, backend):
    """The backend closes keep-alive connections idle for 1 s; clients pause
    around 1 s between requests so pooled connections keep dying just as
    they are reused, while a steady load runs beside them: zero failures."""
    b = backend(idle_close=1.0)
    tg = tidegate(app_manifests([b.port]), workers=2)
    load = Load(tg.port, conns=4).start()
    failures = []
    rng = random.Random(4)

    def pausing_client(seed):
        c = Client(tg.port)
        for i in range(5):
            method = "POST" if (i + seed) % 2 else "GET"
            try:
                r = c.request(method=method, body=b"payload" if method == "POST" else None)
                if r.status != 200:
                    failures.append(r.status)
                if (r.header("Connection") or "").lower() == "close":
                    c.close()
                    c = Client(tg.port)
            except (OSError, EOFError) as e:
                failures.append(repr(e))
                c = Client(tg.port)
            time.sleep(0.95 + rng.random() * 0.1)
        c.close()

    ts = [threading.Thread(target=pausing_client, args=(i,)) for i in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    load.stop()
    assert failures == []
    load.assert_clean()
    assert b.accepts > 1  # connections did die and were replaced


def test_pooled_connections_close_before_upstream_keepalive_timeout(tidegate, backend):
    """tidegate, not the backend, ends an idle pooled connection: it closes it
    a little before upstream-keepalive-timeout (the backend here never
    closes idle connections itself)."""
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"upstream-keepalive-timeout": "2"}), workers=1)
    assert get(tg.port, "/").status == 200
    assert len(b.conns) == 1
    assert tg.metric("tidegate_upstream_connections", state="idle") == 1
    assert wait_until(lambda: len(b.conns) == 0, timeout=4.0)
    assert tg.metric("tidegate_upstream_connections", state="idle") == 0
    assert get(tg.port, "/").status == 200
    assert b.accepts == 2


def test_idle_pool_to_a_removed_endpoint_is_closed_at_the_switch(tidegate, backend):
    a, b = backend(name="a"), backend(name="b")
    tg = tidegate(app_manifests([a.port, b.port]), workers=1)
    for _ in range(4):
        assert get(tg.port, "/").status == 200
    assert len(b.conns) == 1 and len(a.conns) == 1
    tg.reload("10-app.yaml", service("app") + "---" + slice_doc("app", [(a.port, True, True, False)]))
    # b's pooled connection goes at the switch, not 60 s later; a's stays.
    assert wait_until(lambda: len(b.conns) == 0, timeout=2.0)
    assert len(a.conns) == 1
    assert get(tg.port, "/").json()["backend"] == "a"
    assert a.accepts == 1
