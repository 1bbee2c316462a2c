"""Rate and connection limits a migrating ingress-nginx user relies on:

- limit-rps / limit-rpm with limit-burst-multiplier (nginx limit_req, burst =
  limit * multiplier, nodelay): burst + 1 requests pass at once, then 503
  (limit-req-status-code), per client address (after trusted
  X-Forwarded-For), shared by all workers, refilled over time, surviving
  unrelated configuration changes;
- limit-connections (nginx limit_conn): requests in progress per client
  address, the slot given back however the exchange ends;
- limit-allowlist / limit-whitelist exempt addresses;
- a bad value refuses the Ingress (503, reason logged).
"""
import base64
import os
import socket
import time

from backends import Client, Conn, get, parse_head, ws_read, ws_send
from conftest import SLOWDOWN, INGRESS_CLASS, configmap, endpoints, ingress, service

A = "nginx.ingress.kubernetes.io/"
FWD = {"use-forwarded-headers": "true", "proxy-real-ip-cidr": "127.0.0.1/32"}


def app_ing(ann, name="app", host="app.test"):
    return ingress(name, [(host, [("/", "Prefix", "app", 80)])], annotations=ann)


def app(port, ann, settings=None):
    m = {"00-class.yaml": INGRESS_CLASS,
         "10-app.yaml": service("app") + "---" + endpoints("app", [port]),
         "20-app-ingress.yaml": app_ing(ann)}
    if settings:
        m["01-configmap.yaml"] = configmap(settings)
    return m


def statuses(port, n, client=None, keep=True):
    """n requests from `client` (X-Forwarded-For, None: the peer itself), on
    one keep-alive connection (keep) or a new connection each."""
    hdrs = [("X-Forwarded-For", client)] if client else []
    out = []
    c = Client(port) if keep else None
    for _ in range(n):
        if keep:
            out.append(c.request(path="/", headers=hdrs).status)
        else:
            out.append(get(port, "/", headers=hdrs).status)
    if c:
        c.close()
    return out


def wait_metric(tg, name, value, timeout=10.0, **labels):
    end = time.time() + timeout * SLOWDOWN
    got = None
    while time.time() < end:
        got = tg.metric(name, **labels)
        if got == value:
            return
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} = {got}, want {value}")


# ------------------------------------------------------------------ limit_req

def test_rps_burst_per_address_and_refill(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rps": "1", A + "limit-burst-multiplier": "4"}, FWD))
    # burst 4: five pass at once, then 503 (ingress-nginx's default status).
    assert statuses(tg.port, 8, "203.0.113.1") == [200] * 5 + [503] * 3
    assert b.requests == 5
    # Another address is unaffected; so is the proxy's own peer address.
    assert statuses(tg.port, 6, "203.0.113.2") == [200] * 5 + [503]
    assert statuses(tg.port, 2) == [200, 200]
    assert tg.metric("tidegate_limit_rejected_total", namespace="default", ingress="app",
                     limit="rps") == 4
    assert tg.metric("tidegate_limit_entries") == 3
    # The rejection is logged like any response.
    assert sum(1 for l in tg.access_log(wait_for=15) if '" 503 ' in l) == 4
    # One request per second drains: after a pause at least one passes again.
    time.sleep(1.2)
    assert statuses(tg.port, 1, "203.0.113.1") == [200]


def test_rpm_exact_count_status_code_and_ipv6(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rpm": "2", A + "limit-burst-multiplier": "3"},
                      dict(FWD, **{"limit-req-status-code": "429"})))
    # rpm 2: one request drains in 30 s, so the count is exact: 7 pass.
    got = statuses(tg.port, 10, "fd00:7467::5", keep=False)
    assert got == [200] * 7 + [429] * 3
    r = get(tg.port, "/", headers=[("X-Forwarded-For", "fd00:7467::5")])
    assert r.status == 429
    assert statuses(tg.port, 1, "fd00:7467::6") == [200]
    # A bad status keeps the previous one (like other ConfigMap keys), logged.
    tg.reload("01-configmap.yaml", configmap(dict(FWD, **{"limit-req-status-code": "200"})))
    assert statuses(tg.port, 1, "fd00:7467::5") == [429]
    assert ('key limit-req-status-code: bad value "200": want an HTTP status from 400 to 599'
            in tg.stderr())
    tg.reload("01-configmap.yaml", configmap(FWD))
    assert statuses(tg.port, 1, "fd00:7467::5") == [503]


def test_allowlist_exempts(tidegate, backend):
    b = backend()
    ann = {A + "limit-rpm": "1", A + "limit-burst-multiplier": "1",
           A + "limit-whitelist": "198.51.100.0/24, fd00:7467::/32"}
    tg = tidegate(app(b.port, ann, FWD))
    assert statuses(tg.port, 10, "198.51.100.7") == [200] * 10
    assert statuses(tg.port, 10, "fd00:7467::1") == [200] * 10
    assert statuses(tg.port, 4, "203.0.113.1") == [200, 200, 503, 503]
    # limit-allowlist is the newer name and wins over limit-whitelist.
    ann[A + "limit-allowlist"] = "203.0.113.0/24"
    tg.reload("20-app-ingress.yaml", app_ing(ann))
    assert statuses(tg.port, 6, "203.0.113.1") == [200] * 6
    assert statuses(tg.port, 3, "198.51.100.7") == [200, 200, 503]


def test_shared_by_workers(tidegate, backend):
    """New connections land on either worker: the total still matches."""
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rpm": "1", A + "limit-burst-multiplier": "10"}, FWD),
                  workers=2)
    got = statuses(tg.port, 30, "203.0.113.9", keep=False)
    assert got.count(200) == 11, got
    assert got == [200] * 11 + [503] * 19


def test_buckets_survive_unrelated_change_and_reset_on_new_value(tidegate, backend):
    b = backend()
    ann = {A + "limit-rpm": "1", A + "limit-burst-multiplier": "2"}
    tg = tidegate(app(b.port, ann, FWD))
    assert statuses(tg.port, 4, "203.0.113.1") == [200, 200, 200, 503]
    # Another Ingress changes (a new snapshot): the bucket is still full.
    tg.reload("30-other.yaml", ingress("other", [("other.test", [("/", "Prefix", "app", 80)])]))
    assert statuses(tg.port, 1, "203.0.113.1") == [503]
    tg.reload("30-other.yaml", ingress("other", [("other.test", [("/x", "Prefix", "app", 80)])]))
    assert statuses(tg.port, 1, "203.0.113.1") == [503]
    # A new value for this Ingress starts its buckets afresh.
    ann[A + "limit-burst-multiplier"] = "3"
    tg.reload("20-app-ingress.yaml", app_ing(ann))
    assert statuses(tg.port, 5, "203.0.113.1") == [200] * 4 + [503]


def test_bad_value_refuses_the_ingress(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rps": "ten"}))
    r = get(tg.port, "/")
    assert r.status == 503
    assert b.requests == 0
    assert ('Ingress default/app: annotation nginx.ingress.kubernetes.io/limit-rps: bad value '
            '"ten" (want an integer from 0 (no limit) to 1000000): refusing to serve this '
            'Ingress without the limit it asks for' in tg.stderr())
    for bad in ({A + "limit-connections": "-1"}, {A + "limit-rpm": "5", A + "limit-burst-multiplier": "0"},
                {A + "limit-rps": "1", A + "limit-whitelist": "10.0.0.0/33"}):
        tg.reload("20-app-ingress.yaml", app_ing({A + "limit-rps": "100"}))
        assert get(tg.port, "/").status == 200
        tg.reload("20-app-ingress.yaml", app_ing(bad))
        assert get(tg.port, "/").status == 503, bad
    assert 'limit-burst-multiplier: bad value "0"' in tg.stderr()
    # 0 means no limit (as in ingress-nginx).
    tg.reload("20-app-ingress.yaml", app_ing({A + "limit-rps": "0"}))
    assert statuses(tg.port, 20) == [200] * 20


# ------------------------------------------------------------------ limit_conn

def send_slow(port, client, ms):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOWDOWN)
    s.sendall((f"GET /sleep/{ms} HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: {client}\r\n\r\n").encode())
    return s


def wait_requests(b, n):
    end = time.time() + 10 * SLOWDOWN
    while b.requests < n and time.time() < end:
        time.sleep(0.02)
    assert b.requests >= n


def test_connections_limit_and_slots_come_back(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-connections": "2"},
                      dict(FWD, **{"limit-conn-status-code": "503"})))
    c = "203.0.113.4"
    slow = [send_slow(tg.port, c, 1500) for _ in range(2)]
    wait_requests(b, 2)
    assert get(tg.port, "/", headers=[("X-Forwarded-For", c)]).status == 503
    # Another address has its own count.
    assert get(tg.port, "/", headers=[("X-Forwarded-For", "203.0.113.5")]).status == 200
    for s in slow:
        r = Conn(s)
        first, _ = parse_head(r.read_until(b"\r\n\r\n"))
        assert first.startswith("HTTP/1.1 200")
        s.close()
    wait_metric(tg, "tidegate_limit_connections_active", 0)
    assert tg.metric("tidegate_limit_rejected_total", ingress="app", limit="connections") == 1
    # Sequential requests on one connection never count twice.
    assert statuses(tg.port, 5, c) == [200] * 5

    # Clients that go away mid-request or mid-response (addresses of their
    # own, so that none is turned away while earlier ones are being noticed):
    # every slot comes back, as the gauge shows.
    base = b.requests
    for i in range(10):
        s = send_slow(tg.port, f"198.51.100.{i}", 300)
        s.close()  # before any response
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", tg.port), timeout=10)
        s.sendall(("GET /download/8000000 HTTP/1.1\r\nHost: app.test\r\n"
                   f"X-Forwarded-For: 198.51.100.{100 + i}\r\n\r\n").encode())
        assert s.recv(1000).startswith(b"HTTP/1.1 200")  # the response has started
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # reset mid-response
    wait_requests(b, base + 10)
    wait_metric(tg, "tidegate_limit_connections_active", 0, timeout=15)
    # A WebSocket tunnel holds its slot until it ends.
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", tg.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nX-Forwarded-For: {c}\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        conn = Conn(s)
        first, _ = parse_head(conn.read_until(b"\r\n\r\n"))
        assert first.startswith("HTTP/1.1 101")
        # The tunnel holds the slot while it lasts.
        assert tg.metric("tidegate_limit_connections_active") == 1
        ws_send(s, 1, b"hi")
        assert ws_read(conn) == (1, b"hi")
        s.close()
    wait_requests(b, base + 13)
    wait_metric(tg, "tidegate_limit_connections_active", 0, timeout=15)
    # And the client can again hold exactly two at once.
    base = b.requests
    slow = [send_slow(tg.port, c, 1000) for _ in range(2)]
    wait_requests(b, base + 2)
    assert get(tg.port, "/", headers=[("X-Forwarded-For", c)]).status == 503
    for s in slow:
        s.close()
    wait_metric(tg, "tidegate_limit_connections_active", 0)
