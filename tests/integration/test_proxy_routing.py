"""Routing, error statuses and the fields tidegate adds or removes."""
import re
import socket

from backends import Client, get
from conftest import INGRESS_CLASS, app_manifests, configmap, dead_port, endpoints, ingress, service


def two_services(pa, pb):
    return {
        "00-class.yaml": INGRESS_CLASS,
        "10-svc.yaml": service("alpha") + "---" + endpoints("alpha", [pa]) + "---" +
        service("beta") + "---" + endpoints("beta", [pb]) + "---" + service("empty"),
        "20-ing.yaml": ingress("routes", [
            ("a.test", [("/", "Prefix", "alpha", 80), ("/b", "Prefix", "beta", 80),
                        ("/exact", "Exact", "beta", 80), ("/none", "Prefix", "empty", 80)]),
            ("*.wild.test", [("/", "Prefix", "beta", 80)]),
        ]),
    }


def test_routing_by_host_and_path(tidegate, backend):
    a, b = backend(name="alpha"), backend(name="beta")
    tg = tidegate(two_services(a.port, b.port))
    assert get(tg.port, "/", host="a.test").json()["backend"] == "alpha"
    assert get(tg.port, "/b/c", host="a.test").json()["backend"] == "beta"
    assert get(tg.port, "/bc", host="a.test").json()["backend"] == "alpha"  # segment match
    assert get(tg.port, "/exact", host="a.test").json()["backend"] == "beta"
    assert get(tg.port, "/", host="A.TEST:8080").json()["backend"] == "alpha"
    assert get(tg.port, "/", host="x.wild.test").json()["backend"] == "beta"
    assert get(tg.port, "/", host="unknown.test").status == 404
    assert get(tg.port, "/none", host="a.test").status == 503  # no endpoints
    # query strings reach the backend untouched
    assert get(tg.port, "/b/q?x=1&y=%20", host="a.test").json()["target"] == "/b/q?x=1&y=%20"


def test_absolute_form_target_is_sent_in_origin_form(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    c = Client(tg.port)
    r = c.request(path="http://app.test/abs/p?q=1", host="ignored.test")
    doc = r.json()
    assert doc["target"] == "/abs/p?q=1"
    assert dict((k.lower(), v) for k, v in doc["headers"])["host"] == "app.test"


def test_round_robin_over_endpoints(tidegate, backend):
    bs = [backend(name=f"b{i}") for i in range(3)]
    tg = tidegate(app_manifests([b.port for b in bs]), workers=1)
    c = Client(tg.port)
    seen = [c.request(path="/").json()["backend"] for _ in range(9)]
    assert sorted(set(seen)) == ["b0", "b1", "b2"]
    assert all(seen.count(n) == 3 for n in ("b0", "b1", "b2"))


def test_refused_endpoint_is_retried_on_the_next(tidegate, backend):
    b = backend(name="alive")
    tg = tidegate(app_manifests([dead_port(), b.port]), workers=1)
    for _ in range(10):
        r = get(tg.port, "/")
        assert r.status == 200
    assert tg.metric("tidegate_upstream_connect_errors_total") >= 1


def test_all_endpoints_refusing_gives_502(tidegate):
    tg = tidegate(app_manifests([dead_port(), dead_port()]))
    r = get(tg.port, "/")
    assert r.status == 502
    assert r.header("Server") == "tidegate"
    # the connection stays usable for the next request
    c = Client(tg.port)
    assert c.request(path="/").status == 502
    assert c.request(path="/").status == 502


def test_malformed_requests_get_the_parser_status(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))

    def raw(data):
        s = socket.create_connection(("127.0.0.1", tg.port), timeout=5)
        s.sendall(data)
        out = b""
        while True:
            try:
                k = s.recv(65536)
            except ConnectionResetError:
                break
            if not k:
                break
            out += k
        s.close()
        m = re.match(rb"HTTP/1.1 (\d+)", out)
        return int(m.group(1)) if m else None

    assert raw(b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: x\r\n\r\n") == 400
    assert raw(b"GET / HTTP/1.1\r\n\r\n") == 400  # no Host
    assert raw(b"GET / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n") == 400
    assert raw(b"GET / HTTP/2.0\r\nHost: app.test\r\n\r\n") == 505
    assert raw(b"GET / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 501
    assert raw(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: app.test\r\n\r\n") == 414
    assert raw(b"GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n") == 431
    big = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 7000) for i in range(6))
    assert raw(b"GET / HTTP/1.1\r\nHost: app.test\r\n" + big + b"\r\n") == 431  # head > 32 KiB
    many = b"".join(b"X-N%d: v\r\n" % i for i in range(150))
    assert raw(b"GET / HTTP/1.1\r\nHost: app.test\r\n" + many + b"\r\n") == 431  # > 100 fields
    assert raw(b"CONNECT app.test:443 HTTP/1.1\r\nHost: app.test:443\r\n\r\n") == 405
    # nobody else was disturbed
    assert get(tg.port, "/").status == 200


def test_large_head_within_limits_is_forwarded(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "0"}))
    c = Client(tg.port)
    big = [(f"X-Big-{i}", chr(97 + i) * 7000) for i in range(3)]  # ~21 KiB head: larger than one buffer
    doc = c.request("POST", "/big", headers=big, body=b"B" * 50_000).json()
    got = {k: v for k, v in doc["headers"]}
    for k, v in big:
        assert got[k] == v
    assert doc["body_len"] == 50_000
    assert c.request(path="/after").json()["target"] == "/after"


def test_body_over_proxy_body_size_gets_413(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], annotations={
        "nginx.ingress.kubernetes.io/proxy-body-size": "1k"}))
    c = Client(tg.port)
    r = c.request("POST", "/", headers=[("Content-Length", "5000")], body=None)
    assert r.status == 413
    assert r.header("Connection") == "close"
    assert b.requests == 0
    # chunked bodies are counted as they stream
    c = Client(tg.port)
    chunk = b"800\r\n" + b"z" * 0x800 + b"\r\n"
    c.send(b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk)
    assert c.read().status == 413
    # within the limit: fine
    assert get(tg.port, "/", method="POST", body=b"x" * 1000).status == 200


def test_forwarded_fields_and_request_id(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    doc = get(tg.port, "/", host="app.test", headers=[
        ("X-Forwarded-For", "203.0.113.7"), ("X-Real-IP", "6.6.6.6"),
        ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test"),
        ("X-Forwarded-Port", "1")]).json()
    h = {}
    for k, v in doc["headers"]:
        h.setdefault(k.lower(), []).append(v)
    assert h["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert h["x-real-ip"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["app.test"]
    assert h["x-forwarded-port"] == [str(tg.port)]
    assert re.fullmatch(r"[0-9a-f]{32}", h["x-request-id"][0])
    # a client's X-Request-ID is kept
    doc = get(tg.port, "/", headers=[("X-Request-ID", "client-id-1")]).json()
    ids = [v for k, v in doc["headers"] if k.lower() == "x-request-id"]
    assert ids == ["client-id-1"]
    # two requests get different ids
    i1 = [v for k, v in get(tg.port, "/").json()["headers"] if k.lower() == "x-request-id"]
    i2 = [v for k, v in get(tg.port, "/").json()["headers"] if k.lower() == "x-request-id"]
    assert i1 != i2


def test_trusted_forwarded_fields_are_kept(tidegate, backend):
    b = backend()
    m = app_manifests([b.port], settings={"use-forwarded-headers": "true"})
    tg = tidegate(m)
    doc = get(tg.port, "/", headers=[("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "outer.test")]).json()
    h = {k.lower(): v for k, v in doc["headers"]}
    assert h["x-forwarded-proto"] == "https"
    assert h["x-forwarded-host"] == "outer.test"


def test_hop_by_hop_fields_are_stripped_both_ways(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    c = Client(tg.port)
    doc = c.request(path="/", headers=[("Connection", "keep-alive, X-Private"), ("X-Private", "secret"),
                                       ("Keep-Alive", "timeout=1"), ("TE", "trailers"),
                                       ("Proxy-Connection", "keep-alive"), ("X-Public", "ok")]).json()
    names = [k.lower() for k, _ in doc["headers"]]
    for hop in ("connection", "x-private", "keep-alive", "te", "proxy-connection"):
        assert hop not in names
    assert "x-public" in names
    r = c.request(path="/hop")
    names = [k.lower() for k, _ in r.headers]
    for hop in ("x-secret", "keep-alive", "proxy-connection", "trailer", "upgrade"):
        assert hop not in names, hop
    assert r.header("Connection") is None
    assert r.header("X-Kept") == "yes"
    assert r.body == b"hop"
    # the connection is still good
    assert c.request(path="/").status == 200


def test_date_and_server_added_only_when_missing(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    r = get(tg.port, "/")
    assert r.header("Server") == "tidegate"
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", r.header("Date"))
    assert r.header("Content-Length") == str(len(r.body))
    r = get(tg.port, "/dated")
    assert r.header_all("Date") == ["Mon, 01 Jan 2001 00:00:00 GMT"]
    assert r.header_all("Server") == ["backend/1"]


def test_ssl_redirect_for_tls_hosts(tidegate, backend):
    b = backend()
    m = app_manifests([b.port])
    m["20-app-ingress.yaml"] = m["20-app-ingress.yaml"].replace(
        "spec:\n", "spec:\n  tls:\n    - hosts: [app.test]\n      secretName: app-tls\n", 1)
    tg = tidegate(m)
    r = get(tg.port, "/p?q=1", host="app.test:8080")
    assert r.status == 308
    assert r.header("Location") == "https://app.test/p?q=1"
    assert b.requests == 0
