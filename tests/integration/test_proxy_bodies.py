"""Request and response bodies: Content-Length and chunked in both directions,
streaming with bounded memory, Expect: 100-continue, early answers."""
import hashlib
import os
import socket
import threading
import time

import pytest

from backends import Client, Conn, read_response
from conftest import app_manifests

UNLIMITED = {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}


def test_content_length_body_round_trip(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], annotations=UNLIMITED))
    c = Client(tg.port)
    body = os.urandom(300_000)
    r = c.request("POST", "/echo-body", body=body)
    assert r.status == 200
    assert r.header("Content-Length") == str(len(body))
    assert r.body == body
    assert c.request("GET", "/").status == 200  # the connection stays usable


def test_chunked_both_ways(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], annotations=UNLIMITED))
    c = Client(tg.port)
    payload = os.urandom(70_000)
    chunks = b"".join(b"%x;ext=1\r\n" % len(payload[i:i + 7000]) + payload[i:i + 7000] + b"\r\n"
                      for i in range(0, len(payload), 7000))
    c.send(b"POST /echo-body HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n" +
           chunks + b"0\r\nX-Trailer: t\r\n\r\n")
    r = c.read()
    assert r.status == 200
    assert r.header("Transfer-Encoding") == "chunked"
    assert r.body == payload
    # a chunked response with many chunks and a trailer, then the next request
    r = c.request("GET", "/chunked/50/1000")
    assert r.header("Transfer-Encoding") == "chunked"
    assert len(r.body) == 50_000
    assert c.request("GET", "/").status == 200


def test_chunked_request_sent_slowly(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    c = Client(tg.port)
    c.send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n")
    for piece in (b"5\r\nhe", b"llo\r", b"\n0\r", b"\n\r\n"):
        time.sleep(0.05)
        c.send(piece)
    r = c.read()
    assert r.json() == {"received": 5}


def test_bad_chunked_body_gets_400(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    c = Client(tg.port)
    c.send(b"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert c.read().status == 400


def test_expect_100_continue_is_answered_by_tidegate(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    s = socket.create_connection(("127.0.0.1", tg.port), timeout=5)
    s.sendall(b"POST /echo-body HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    conn = Conn(s)
    assert conn.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(b"hello")
    r = read_response(conn)
    assert r.body == b"hello"
    # ... and not when the answer is known without the body
    s.sendall(b"POST /x HTTP/1.1\r\nHost: nowhere.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert read_response(conn).status == 404


def test_backend_answering_before_the_body_is_read(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], annotations=UNLIMITED))
    c = Client(tg.port)
    c.send(b"POST /reject-early HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000)
    r = c.read()
    assert r.status == 413
    assert r.header("Connection") == "close"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


GIB = 1 << 30


@pytest.mark.slow
def test_1gib_upload_and_download_with_flat_memory(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], annotations=UNLIMITED), workers=1)
    # warm up: buffers and pools exist before the first measurement
    c = Client(tg.port, timeout=60)
    c.request("POST", "/upload", body=b"x" * 1_000_000)
    c.request("GET", "/download/1000000")
    before = tg.rss_kb()

    # upload 1 GiB
    c.send(b"POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n" % GIB)
    block = b"u" * (1 << 20)
    peak = [before]
    for i in range(GIB // len(block)):
        c.sock.sendall(block)
        if i % 64 == 0:
            peak[0] = max(peak[0], tg.rss_kb())
    assert c.read().json() == {"received": GIB}

    # download 1 GiB
    c.send(b"GET /download/%d HTTP/1.1\r\nHost: app.test\r\n\r\n" % GIB)
    head = c.conn.read_until(b"\r\n\r\n")
    assert b"Content-Length: %d" % GIB in head
    left = GIB - len(c.conn.buf)
    c.conn.buf = b""
    mv = memoryview(bytearray(1 << 20))
    got = 0
    while left > 0:
        n = c.sock.recv_into(mv, min(left, len(mv)))
        assert n > 0
        left -= n
        got += n
        if got >= 64 << 20:
            got = 0
            peak[0] = max(peak[0], tg.rss_kb())
    after = tg.rss_kb()
    # Bounded memory: a few buffers, never anything proportional to 1 GiB.
    assert peak[0] - before < 16 * 1024, (before, peak[0], after)
    assert c.request("GET", "/").status == 200
