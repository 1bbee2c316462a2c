"""Timeouts: client header/body, upstream connect/read, and what the client gets."""
import socket
import time

from backends import Client, Conn, read_response
from conftest import app_manifests


def test_proxy_read_timeout_gives_504(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], annotations={
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "1"}))
    c = Client(tg.port)
    r = c.request(path="/sleep/3000")
    assert r.status == 504
    # the client connection is still usable, and a fast request works
    assert c.request(path="/").status == 200


def test_connect_timeout_gives_504(tidegate):
    # A listener whose accept queue is full drops SYNs: connect() never completes.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    time.sleep(0.2)
    tg = tidegate(app_manifests([port], annotations={
        "nginx.ingress.kubernetes.io/proxy-connect-timeout": "1"}))
    c = Client(tg.port, timeout=20)
    r = c.request(path="/")
    assert r.status == 504
    assert tg.metric("tidegate_upstream_connect_errors_total") >= 1
    ls.close()
    for s in fillers:
        s.close()


def test_slowloris_head_gets_408(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"client-header-timeout": "1"}))
    s = socket.create_connection(("127.0.0.1", tg.port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\n")
    # keep trickling bytes: the timeout covers the whole head, not each read
    for _ in range(6):
        time.sleep(0.25)
        try:
            s.sendall(b"X-A: b\r\n")
        except OSError:
            break
    r = read_response(Conn(s))
    assert r.status == 408
    assert b.requests == 0


def test_idle_new_connection_is_closed_without_response(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"client-header-timeout": "1"}))
    c = Client(tg.port)
    assert c.closed_by_peer(timeout=5)


def test_client_body_timeout_gives_408(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"client-body-timeout": "1"}))
    c = Client(tg.port)
    c.send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100\r\n\r\nonly part")
    r = c.read()
    assert r.status == 408
