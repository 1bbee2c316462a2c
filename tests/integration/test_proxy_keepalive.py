"""Client keep-alive, pipelining, upstream connection pools and retries."""
import re
import socket
import shutil
import subprocess
import threading
import time

import pytest

from backends import Client, get
from conftest import app_manifests


def test_keepalive_and_pipelining_answer_in_order(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    c = Client(tg.port)
    # Three requests in one write, the middle one slow: answers keep the order.
    c.send(b"GET /first HTTP/1.1\r\nHost: app.test\r\n\r\n"
           b"GET /sleep/200 HTTP/1.1\r\nHost: app.test\r\n\r\n"
           b"POST /third HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc")
    targets = [c.read().json()["target"] for _ in range(3)]
    assert targets == ["/first", "/sleep/200", "/third"]
    # and the connection is still open for more
    assert c.request(path="/fourth").json()["target"] == "/fourth"
    assert tg.metric("tidegate_client_connections_accepted_total") == 1


def test_keep_alive_requests_limit_closes_the_connection(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"keep-alive-requests": "3"}))
    c = Client(tg.port)
    assert c.request().header("Connection") is None
    assert c.request().header("Connection") is None
    r = c.request()
    assert r.header("Connection") == "close"
    assert c.closed_by_peer()


def test_client_keepalive_timeout_closes_idle_connection(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"keep-alive": "1"}))
    c = Client(tg.port)
    assert c.request().status == 200
    assert c.closed_by_peer(timeout=5)


def test_http10_persistence(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    # HTTP/1.0 without keep-alive: answered, then closed.
    c = Client(tg.port)
    r = c.request(version="1.0")
    assert r.status == 200
    assert r.json()["version"] == "HTTP/1.0"
    assert c.closed_by_peer()
    # HTTP/1.0 asking for keep-alive: kept, and told so.
    c = Client(tg.port)
    r = c.request(version="1.0", headers=[("Connection", "keep-alive")])
    assert r.header("Connection").lower() == "keep-alive"
    r = c.request(version="1.0", headers=[("Connection", "keep-alive")])
    assert r.status == 200
    # HTTP/1.1 with Connection: close
    c = Client(tg.port)
    assert c.request(headers=[("Connection", "close")]).header("Connection") == "close"
    assert c.closed_by_peer()


def test_upstream_connections_are_pooled(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]), workers=1)
    for _ in range(20):
        assert get(tg.port, "/").status == 200  # a new client connection each time
    assert b.accepts == 1
    assert tg.metric("tidegate_upstream_connections", state="idle") == 1
    assert tg.metric("tidegate_upstream_requests_reused_total") == 19


def test_pooled_connections_survive_configuration_changes(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]), workers=1)
    assert get(tg.port, "/").status == 200
    # a new snapshot where the same endpoint now belongs to another Service
    from conftest import endpoints, ingress, service
    tg.reload("30-more.yaml", service("more") + "---" + endpoints("more", [b.port]) + "---" +
              ingress("more", [("more.test", [("/", "Prefix", "more", 80)])]))
    assert get(tg.port, "/", host="more.test").status == 200
    assert get(tg.port, "/").status == 200
    assert b.accepts == 1


def test_pool_disabled_with_zero_keepalive_connections(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"upstream-keepalive-connections": "0"}), workers=1)
    for _ in range(5):
        assert get(tg.port, "/").status == 200
    assert b.accepts == 5


def test_upstream_keepalive_requests_limit(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"upstream-keepalive-requests": "2"}), workers=1)
    for _ in range(6):
        assert get(tg.port, "/").status == 200
    assert b.accepts == 3


def test_idle_pooled_connection_closed_by_backend_is_not_used(tidegate, backend):
    b = backend(idle_close=0.2)
    tg = tidegate(app_manifests([b.port]), workers=1)
    assert get(tg.port, "/").status == 200
    time.sleep(0.5)  # the backend closed its idle connection meanwhile
    for method in ("GET", "POST"):
        assert get(tg.port, "/", method=method, body=b"x" if method == "POST" else None).status == 200
    assert b.accepts >= 2


def test_until_close_response_and_non_persistent_backend(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]), workers=1)
    c = Client(tg.port)
    r = c.request(path="/until-close")
    assert r.body == b"until close body"
    assert r.header("Connection") == "close"
    c = Client(tg.port)
    assert c.request(path="/close").body == b"bye"
    assert c.request(path="/").status == 200  # the client connection survives


@pytest.mark.slow
def test_stale_pooled_connections_retried_under_load(tidegate, backend):
    """A backend that closes idle keep-alive connections after 0.3 s while
    wrk keeps requests flowing with pauses: zero failures."""
    if not shutil.which("wrk"):
        pytest.skip("wrk not installed")
    b = backend(idle_close=0.3)
    tg = tidegate(app_manifests([b.port]), workers=2)
    # Bursts separated by pauses longer than the backend's idle timeout, so
    # pooled connections die between bursts.
    for _ in range(3):
        out = subprocess.run(["wrk", "-t1", "-c8", "-d1s", "-H", "Host: app.test",
                              f"http://127.0.0.1:{tg.port}/"], capture_output=True, text=True).stdout
        assert "Non-2xx" not in out, out
        assert not re.search(r"Socket errors: connect \d+, read [1-9]", out), out
        assert int(re.search(r"(\d+) requests in", out).group(1)) > 0
        time.sleep(0.4)
    # Python clients racing the backend's close on the same connections.
    failures = []

    def loop():
        for i in range(20):
            r = get(tg.port, "/", method="GET" if i % 2 else "POST", body=None if i % 2 else b"p")
            if r.status != 200:
                failures.append(r.status)
            time.sleep(0.29 + (i % 3) * 0.01)

    ts = [threading.Thread(target=loop) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert failures == []
    assert tg.metric("tidegate_upstream_retries_total") is not None


def _http10(port, path, headers=b""):
    """An HTTP/1.0 request on a raw socket, read until the proxy closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.0\r\nHost: app.test\r\n" + headers + b"\r\n")
    raw = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        raw += chunk
    s.close()
    head, body = raw.split(b"\r\n\r\n", 1)
    return head.decode("latin-1").lower(), body


def test_http10_client_gets_chunked_response_without_framing(tidegate, backend):
    """A chunked response to an HTTP/1.0 client (the backend speaks 1.1 to
    tidegate): the data only, no Transfer-Encoding (RFC 9112 6.1), ended by
    the close, whatever the client asked; many small chunks (more than one
    round of iovecs) and large ones; HTTP/1.1 clients still get chunks."""
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    want = b"".join(bytes([65 + i % 26]) * 3 for i in range(1000))
    head, body = _http10(tg.port, "/chunked/1000/3", b"Connection: keep-alive\r\n")
    assert head.startswith("http/1.1 200")
    assert "transfer-encoding" not in head and "x-trailer" not in head
    assert "connection: close" in head
    assert body == want
    head, body = _http10(tg.port, "/chunked/4/300000")
    assert body == b"".join(bytes([65 + i]) * 300000 for i in range(4))
    # A real HTTP/1.0 client.
    out = subprocess.run(["curl", "-s", "--http1.0", "-H", "Host: app.test",
                          f"http://127.0.0.1:{tg.port}/chunked/5/7"], capture_output=True)
    assert out.returncode == 0 and out.stdout == b"AAAAAAABBBBBBBCCCCCCCDDDDDDDEEEEEEE"
    # HTTP/1.1: the chunks as they came (framing passed through).
    c = Client(tg.port)
    r = c.request(path="/chunked/3/5")
    assert r.header("Transfer-Encoding") == "chunked" and r.body == b"AAAAABBBBBCCCCC"
