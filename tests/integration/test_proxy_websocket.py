"""WebSocket (HTTP Upgrade) tunnelled both ways after the 101."""
import base64
import hashlib
import os
import socket

from backends import WS_GUID, Conn, parse_head, ws_read, ws_send
from conftest import app_manifests


def handshake(port, path="/ws"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    conn = Conn(s)
    head = conn.read_until(b"\r\n\r\n")
    first, headers = parse_head(head)
    return s, conn, key, first, dict((k.lower(), v) for k, v in headers)


def test_websocket_echo_through_tidegate(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    s, conn, key, first, h = handshake(tg.port)
    assert first.startswith("HTTP/1.1 101")
    assert h["upgrade"].lower() == "websocket"
    assert h["connection"].lower() == "upgrade"
    assert h["sec-websocket-accept"] == base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    for payload in (b"hello", os.urandom(70_000), b"x" * 125, os.urandom(1 << 20)):
        ws_send(s, 2, payload)
        op, data = ws_read(conn)
        assert (op, data) == (2, payload)
    ws_send(s, 1, "text ✓".encode())
    assert ws_read(conn) == (1, "text ✓".encode())
    ws_send(s, 8, b"\x03\xe8")
    op, _ = ws_read(conn)
    assert op == 8
    s.settimeout(5)
    assert s.recv(1) == b""  # both sides closed after the close handshake
    # the access log has the 101
    assert any('" 101 ' in line for line in tg.access_log(wait_for=1))


def test_upgrade_refused_by_backend_is_a_normal_response(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port]))
    s = socket.create_connection(("127.0.0.1", tg.port), timeout=10)
    s.sendall(b"GET /other HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    conn = Conn(s)
    from backends import read_response
    r = read_response(conn)
    assert r.status == 200
    assert r.json()["target"] == "/other"
