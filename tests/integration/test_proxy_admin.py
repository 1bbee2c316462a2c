"""Admin endpoints (/healthz, /metrics) and the access log."""
import re
import socket

from backends import Client, get
from conftest import app_manifests


def test_healthz_and_robust_admin_port(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    assert tg.admin("/healthz") == (200, "ok\n")
    assert tg.admin("/nothing")[0] == 404

    def raw(data):
        s = socket.create_connection(("127.0.0.1", tg.admin_port), timeout=10)
        s.sendall(data)
        out = b""
        try:
            while True:
                k = s.recv(65536)
                if not k:
                    break
                out += k
        except OSError:
            pass
        s.close()
        return out

    assert raw(b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(b"POST /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    assert raw(b"GET /" + b"a" * 5000).startswith(b"HTTP/1.1 431")
    assert raw(b"\x00\xff\x16\x03\x01" * 10 + b"\r\n\r\n").startswith(b"HTTP/1.1 400")
    s = socket.create_connection(("127.0.0.1", tg.admin_port))  # half a request, left open
    s.sendall(b"GET /heal")
    assert tg.admin("/healthz")[0] == 200  # others are still served
    s.close()


def test_metrics_content(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    c = Client(tg.port)
    for _ in range(3):
        assert c.request(path="/").status == 200
    assert c.request(path="/status/503").status == 503
    assert get(tg.port, "/", host="nowhere.test").status == 404
    text = tg.metrics()
    for name, kind in [("tidegate_http_requests_total", "counter"),
                       ("tidegate_http_request_duration_seconds", "histogram"),
                       ("tidegate_upstream_connect_errors_total", "counter"),
                       ("tidegate_client_connections", "gauge"),
                       ("tidegate_upstream_connections", "gauge"),
                       ("tidegate_access_log_dropped_total", "counter"),
                       ("tidegate_config_generation", "gauge")]:
        assert f"# TYPE {name} {kind}" in text, name
    assert tg.metric("tidegate_http_requests_total", ingress="app", namespace="default",
                     service="app", status="200") == 3
    assert tg.metric("tidegate_http_requests_total", ingress="app", status="503") == 1
    assert tg.metric("tidegate_http_requests_total", ingress="", status="404") == 1
    assert tg.metric("tidegate_http_request_duration_seconds_count") == 5
    assert tg.metric("tidegate_http_request_duration_seconds_bucket", le="+Inf") == 5
    assert tg.metric("tidegate_client_connections") == 1  # c is still open
    assert tg.metric("tidegate_upstream_connections", state="idle") >= 1
    assert tg.metric("tidegate_access_log_dropped_total") == 0
    # every sample line is well formed and every name is tidegate_*
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r'^tidegate_[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? [0-9.e+-]+$', line), line


def test_access_log_line_format(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    c = Client(tg.port)
    c.request(path="/some/path?q=1", headers=[("User-Agent", 'agent "quoted"'), ("Referer", "http://r.test/"),
                                                ("X-Request-ID", "rid-123")])
    get(tg.port, "/", host="nowhere.test")
    lines = tg.access_log(wait_for=2)
    assert len(lines) == 2
    ok = [l for l in lines if "/some/path" in l][0]
    m = re.fullmatch(
        r'127\.0\.0\.1 - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000)\] "GET /some/path\?q=1 HTTP/1\.1" 200 (\d+) '
        r'"http://r\.test/" "agent \\x22quoted\\x22" (\d+) (\d+\.\d{3}) \[default-app-80\] \[\] '
        r'127\.0\.0\.1:(\d+) (\d+) (\d+\.\d{3}) 200 rid-123 default/app app', ok)
    assert m, ok
    assert int(m.group(5)) == b.port
    nf = [l for l in lines if "nowhere" not in l and "/some/path" not in l][0]
    assert re.search(r'"GET / HTTP/1\.1" 404 \d+ "-" "-" \d+ \d+\.\d{3} \[\] \[\] - - - - - - -$', nf), nf


def test_access_log_can_be_disabled(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"disable-access-log": "true"}))
    for _ in range(3):
        assert get(tg.port, "/").status == 200
    assert tg.access_log(wait_for=1, timeout=0.5) == []
