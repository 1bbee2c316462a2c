"""SIGTERM drain (issue 4): /healthz 503 at once, Connection: close from the
first signal, idle keep-alive connections closed with a FIN, grace period,
listeners closed without resetting queued connections, in-flight requests and
streams completed, second signal harmless, worker-shutdown-timeout."""
import os
import re
import signal
import socket
import threading
import time

import backends
from backends import Client, read_response
from conftest import SLOWDOWN, TIDEGATE, app_manifests, configmap
from lifecycle_util import Load, Proc, keepalive_client_to, netns


def write_manifests(d, docs):
    os.makedirs(d, exist_ok=True)
    for name, text in docs.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    return d


def ends_with_fin(client, timeout=5.0):
    """True when the server closed the connection with a FIN (recv -> b''),
    False on a reset or nothing."""
    client.sock.settimeout(timeout * SLOWDOWN)
    try:
        return not client.conn.buf and client.sock.recv(1) == b""
    except OSError:
        return False


def test_sigterm_beside_a_second_instance_loses_nothing(tmp_path):
    """Instance A (grace 2 s) and instance B share one port (SO_REUSEPORT) in a
    namespace with tcp_migrate_req=1. A gets SIGTERM under steady keep-alive
    load: no request fails, no connect is refused, every connection A ends
    is closed with a FIN after a complete response; a 5 s request, a slow
    30 MB stream and a request whose head was half sent before the signal all
    complete; a second SIGTERM changes nothing; A exits 0."""
    if not os.access(TIDEGATE, os.X_OK):
        import pytest
        pytest.skip(f"{TIDEGATE} not built")
    with netns():
        ba, bb = backends.Backend(name="a"), backends.Backend(name="b")
        A = B = None
        load = None
        try:
            A = Proc(TIDEGATE, tmp_path, write_manifests(str(tmp_path / "ma"), app_manifests([ba.port])),
                     args=["--shutdown-grace-period", "2"])
            db = tmp_path / "b"
            db.mkdir()
            B = Proc(TIDEGATE, db, write_manifests(str(tmp_path / "mb"), app_manifests([bb.port])),
                     http=f"127.0.0.1:{A.port}")
            # Connections that A serves (found by asking: both share the port).
            slow = keepalive_client_to(A.port, "a")
            idle = keepalive_client_to(A.port, "a")
            partial = keepalive_client_to(A.port, "a")
            stream = keepalive_client_to(A.port, "a")
            load = Load(A.port, conns=16).start()
            time.sleep(0.5)

            slow.send(b"GET /sleep/5000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
            size = 30_000_000
            got = {}

            def read_stream():
                stream.send(f"GET /download/{size} HTTP/1.1\r\nHost: app.test\r\n\r\n".encode())
                head = stream.conn.read_until(b"\r\n\r\n")
                got["head"] = head
                n = len(stream.conn.buf)
                stream.conn.buf = b""
                stream.sock.settimeout(20 * SLOWDOWN)
                while n < size:
                    k = len(stream.sock.recv(min(65536, size - n)))
                    if k == 0:
                        break
                    n += k
                    time.sleep(0.01)  # a slow reader: the stream outlives the grace period
                got["body"] = n
                got["fin"] = ends_with_fin(stream)

            st = threading.Thread(target=read_stream)
            st.start()
            partial.send(b"GET /partial HTTP/1.1\r\nHost: app.test\r\n")
            time.sleep(0.2)

            A.proc.send_signal(signal.SIGTERM)
            A.wait_log(r"draining: /healthz answers 503")
            assert A.admin("/healthz") == (503, "draining\n")
            m = A.admin("/metrics")[1]
            assert "tidegate_draining 1" in m and "tidegate_listeners_open 1" in m
            A.proc.send_signal(signal.SIGTERM)  # impatience must not cut the grace
            A.wait_log(r"already draining \(\d+ open connections\); the drain goes on")

            # The idle keep-alive connection is closed with a FIN (not a reset).
            assert ends_with_fin(idle)
            # A head that was arriving is not cut, even after the idle time.
            time.sleep(1.2)
            partial.send(b"\r\n")
            r = partial.read()
            assert r.status == 200 and r.json()["target"] == "/partial"
            assert r.header("Connection") == "close"
            assert ends_with_fin(partial)

            # The 5 s request started before SIGTERM completes, with Connection: close.
            r = slow.read()
            assert r.status == 200 and r.json()["target"] == "/sleep/5000"
            assert r.header("Connection") == "close"
            assert ends_with_fin(slow)
            st.join(30 * SLOWDOWN)
            assert got.get("body") == size, got
            assert got.get("fin") is True, got

            assert A.proc.wait(15 * SLOWDOWN) == 0
            time.sleep(0.5)  # B alone now
            load.stop()
            load.assert_clean()
            assert load.fins["a"] > 0, load.summary()  # A's connections ended with FINs
            assert load.by_backend["b"] > 0, load.summary()
            log = A.stderr()
            for phase in (r"SIGTERM|Terminated", r"grace period over: accepting what is queued",
                          r"listeners closed; waiting for \d+ open connections",
                          r"drain complete: no connection left", r"stopped"):
                assert __import__("re").search(phase, log), (phase, log[-3000:])
            A.check_stderr()
            # B still serves.
            c = Client(A.port)
            assert c.request().json()["backend"] == "b"
            c.close()
        finally:
            if load:
                load.stop()
            for p in (A, B):
                if p and p.proc.poll() is None:
                    p.stop()
            ba.close()
            bb.close()
        B.stop()


def test_worker_shutdown_timeout_closes_what_is_left(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"worker-shutdown-timeout": "1s"}))
    c = Client(tg.port)
    c.send(b"GET /sleep/4000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    time.sleep(0.2)
    t0 = time.time()
    tg.proc.send_signal(signal.SIGTERM)
    assert tg.proc.wait(10 * SLOWDOWN) == 0
    assert time.time() - t0 < 3.5 * SLOWDOWN  # did not wait for the 4 s request
    assert "worker-shutdown-timeout reached: closed 1 connections still open" in tg.stderr()
    c.sock.settimeout(2)
    try:
        assert c.sock.recv(100) == b""
    except ConnectionResetError:
        pass  # closed by force: either way no response was sent


def test_sigquit_stops_at_once(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]), args=["--shutdown-grace-period", "30"])
    c = Client(tg.port)
    c.send(b"GET /sleep/3000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    time.sleep(0.2)
    tg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    tg.proc.send_signal(signal.SIGINT)  # a second signal does not stop it ...
    time.sleep(0.3)
    assert tg.proc.poll() is None
    assert get_status(tg.port) == 200  # ... and the grace period still accepts
    tg.proc.send_signal(signal.SIGQUIT)  # this one does
    assert tg.proc.wait(5 * SLOWDOWN) == 0
    # The slow request's connection, and possibly get_status's if tidegate has
    # not seen its close yet.
    assert re.search(r"SIGQUIT: stopping now, closing [12] connections", tg.stderr())


def get_status(port):
    c = Client(port)
    try:
        return c.request().status
    finally:
        c.close()


def test_idle_connections_accepted_during_grace_get_one_request(tidegate, backend):
    """A connection accepted during the grace period is served (once, with
    Connection: close); one that never sends anything is closed with a FIN
    after the drain's idle time, not left open until the timeout."""
    b = backend()
    tg = tidegate(app_manifests([b.port]), args=["--shutdown-grace-period", "3"])
    tg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    c = Client(tg.port)
    r = c.request()
    assert r.status == 200 and r.header("Connection") == "close"
    assert ends_with_fin(c)
    silent = Client(tg.port)
    assert ends_with_fin(silent, timeout=2.5)
    assert tg.proc.wait(10 * SLOWDOWN) == 0
