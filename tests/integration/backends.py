"""Backends and clients for the proxy integration tests (standard library only).

Backend: a threaded HTTP/1.1 server on 127.0.0.1 with behaviour chosen by the
request path, so one backend serves every test:

  /any/path            200, JSON describing the request (method, path, headers
                       as a list of [name, value], body length and sha256,
                       backend name), Content-Length framing
  /status/NNN          answer with status NNN
  /chunked/N/SIZE      chunked response of N chunks of SIZE bytes
  /download/N          N bytes (Content-Length), generated, not buffered
  /upload              reads the body (Content-Length or chunked) without keeping
                       it; answers {"received": N}
  /echo-body           answers with the request body (chunked when the request
                       was chunked, else Content-Length)
  /sleep/MS            waits MS milliseconds before answering
  /close               answers with Connection: close and closes
  /hop                 response carrying hop-by-hop fields and a field named in
                       Connection (all must be removed by the proxy)
  /dated               response with its own Date and Server fields
  /until-close         HTTP/1.1 response without Content-Length, ended by close
  /ws                  WebSocket echo (RFC 6455 handshake, text/binary frames)
  /reject-early        413 without reading the body, then close

Options: idle_close (seconds an idle keep-alive connection is kept before the
backend closes it), name (reported in responses). `accepts` counts accepted
connections; `requests` counts requests.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import threading
import time

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def shut_server(sock, conns):
    """Stops a test server: its listening socket and every accepted one.
    shutdown() first: it wakes the thread blocked in accept(). A bare close()
    would leave that thread holding the listening socket, still in LISTEN
    and answering one more connection after its test ended."""
    for s in [sock] + list(conns):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Conn:
    """Buffered socket reader for HTTP parsing."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        b = self.sock.recv(1 << 20)
        if not b:
            raise EOFError
        self.buf += b

    def read_until(self, sep, limit=1 << 20):
        while sep not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def discard(self, n):
        """Reads and drops n bytes without keeping them."""
        take = min(n, len(self.buf))
        self.buf = self.buf[take:]
        n -= take
        mv = memoryview(bytearray(1 << 20))
        while n > 0:
            k = self.sock.recv_into(mv, min(n, len(mv)))
            if k == 0:
                raise EOFError
            n -= k


def parse_head(raw):
    lines = raw.decode("latin-1").split("\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        k, _, v = line.partition(":")
        headers.append((k, v.strip()))
    return first, headers


def hget(headers, name, default=None):
    for k, v in headers:
        if k.lower() == name.lower():
            return v
    return default


def read_chunked(conn, sink=None):
    """Reads a chunked body; returns (bytes or None, total length)."""
    total = 0
    parts = [] if sink is None else None
    while True:
        line = conn.read_until(b"\r\n")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while conn.read_until(b"\r\n") != b"\r\n":
                pass
            break
        if parts is None:
            conn.discard(size)
        else:
            parts.append(conn.read_exact(size))
        total += size
        conn.read_exact(2)
    return (b"".join(parts) if parts is not None else None), total


class Backend:
    def __init__(self, name="backend", idle_close=None):
        self.name = name
        self.idle_close = idle_close
        self.accepts = 0
        self.requests = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns = set()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        self.closed = True
        shut_server(self.sock, self.conns)

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepts += 1
            self.conns.add(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(s)
        try:
            while True:
                if self.idle_close and not conn.buf:
                    s.settimeout(self.idle_close)
                try:
                    head = conn.read_until(b"\r\n\r\n", limit=1 << 17)
                except socket.timeout:
                    break  # idle too long: close, like a backend's keep-alive timeout
                s.settimeout(None)
                with self.lock:
                    self.requests += 1
                if not self._handle(conn, head):
                    break
        except (EOFError, OSError, ValueError):
            pass
        finally:
            self.conns.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def _send(self, conn, status, headers, body=b"", close=False):
        h = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'X'}"]
        h += [f"{k}: {v}" for k, v in headers]
        if body is not None:
            h.append(f"Content-Length: {len(body)}")
        if close:
            h.append("Connection: close")
        conn.sock.sendall(("\r\n".join(h) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def _handle(self, conn, head):
        first, headers = parse_head(head)
        method, target, _version = first.split(" ")
        path = target.split("?")[0]
        te = (hget(headers, "transfer-encoding") or "").lower()
        cl = int(hget(headers, "content-length") or 0)
        # The body is read here except where the path streams or ignores it.
        body = b""
        body_len = 0
        if path == "/upload":
            if te == "chunked":
                _, body_len = read_chunked(conn, sink=True)
            else:
                conn.discard(cl)
                body_len = cl
            self._send(conn, 200, [("Content-Type", "application/json")],
                       json.dumps({"received": body_len}).encode())
            return True
        if path == "/reject-early":
            self._send(conn, 413, [], b"too big", close=True)
            return False
        if te == "chunked":
            body, body_len = read_chunked(conn)
        elif cl:
            body = conn.read_exact(cl)
            body_len = cl
        parts = path.strip("/").split("/")
        if path.startswith("/status/"):
            st = int(parts[1])
            no_body = st in (204, 304) or method == "HEAD"
            self._send(conn, st, [], None if no_body else f"status {st}\n".encode())
            return True
        if path.startswith("/chunked/"):
            n, size = int(parts[1]), int(parts[2])
            out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
            for i in range(n):
                chunk = bytes([65 + i % 26]) * size
                out.append(b"%x\r\n" % size + chunk + b"\r\n")
            out.append(b"0\r\nX-Trailer: yes\r\n\r\n")
            conn.sock.sendall(b"".join(out))
            return True
        if path.startswith("/download/"):
            n = int(parts[1])
            conn.sock.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n".encode())
            block = b"x" * (1 << 20)
            while n > 0:
                k = min(n, len(block))
                conn.sock.sendall(block[:k])
                n -= k
            return True
        if path == "/echo-body":
            if te == "chunked":
                out = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
                for i in range(0, len(body), 1000):
                    piece = body[i:i + 1000]
                    out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
                out.append(b"0\r\n\r\n")
                conn.sock.sendall(b"".join(out))
            else:
                self._send(conn, 200, [], body)
            return True
        if path.startswith("/sleep/"):
            time.sleep(int(parts[1]) / 1000.0)
        if path == "/close":
            self._send(conn, 200, [], b"bye", close=True)
            return False
        if path == "/hop":
            self._send(conn, 200, [("Connection", "X-Secret"), ("X-Secret", "1"),
                                   ("Keep-Alive", "timeout=5"), ("Proxy-Connection", "x"),
                                   ("Trailer", "X-T"), ("Upgrade", "foo"), ("X-Kept", "yes")], b"hop")
            return True
        if path == "/dated":
            self._send(conn, 200, [("Date", "Mon, 01 Jan 2001 00:00:00 GMT"), ("Server", "backend/1")], b"d")
            return True
        if path == "/until-close":
            conn.sock.sendall(b"HTTP/1.1 200 OK\r\n\r\nuntil close body")
            return False
        if path == "/ws":
            return self._websocket(conn, headers)
        doc = {
            "backend": self.name,
            "method": method,
            "target": target,
            "version": _version,
            "headers": headers,
            "body_len": body_len,
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        self._send(conn, 200, [("Content-Type", "application/json")], json.dumps(doc).encode())
        return True

    def _websocket(self, conn, headers):
        key = hget(headers, "sec-websocket-key")
        if not key or (hget(headers, "upgrade") or "").lower() != "websocket":
            self._send(conn, 400, [], b"not a websocket request")
            return True
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        conn.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n").encode())
        while True:
            op, payload = ws_read(conn)
            if op == 8:
                ws_send(conn.sock, 8, payload, mask=False)
                return False
            if op in (1, 2):
                ws_send(conn.sock, op, payload, mask=False)


def ws_send(sock, opcode, payload, mask=True):
    hdr = bytes([0x80 | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([mbit | n])
    elif n < 65536:
        hdr += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        hdr += bytes([mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        hdr += key
    sock.sendall(hdr + payload)


def ws_read(conn):
    b0, b1 = conn.read_exact(2)
    op = b0 & 0x0F
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", conn.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", conn.read_exact(8))[0]
    key = conn.read_exact(4) if b1 & 0x80 else None
    payload = conn.read_exact(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return op, payload


# ---------------------------------------------------------------- clients

class Response:
    def __init__(self, status, headers, body, raw_head):
        self.status, self.headers, self.body, self.raw_head = status, headers, body, raw_head

    def header(self, name, default=None):
        return hget(self.headers, name, default)

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


def read_response(conn, method="GET"):
    """Reads one response (skipping 1xx other than 101) from a Conn."""
    while True:
        head = conn.read_until(b"\r\n\r\n", limit=1 << 20)
        first, headers = parse_head(head)
        status = int(first.split(" ")[1])
        if 100 <= status < 200 and status != 101:
            continue
        break
    te = (hget(headers, "transfer-encoding") or "").lower()
    cl = hget(headers, "content-length")
    if method == "HEAD" or status in (101, 204, 304):
        body = b""
    elif te == "chunked":
        body, _ = read_chunked(conn)
    elif cl is not None:
        body = conn.read_exact(int(cl))
    else:
        body = conn.buf
        try:
            while True:
                b = conn.sock.recv(65536)
                if not b:
                    break
                body += b
        except OSError:
            pass
        conn.buf = b""
    return Response(status, headers, body, head)


class Client:
    """A keep-alive HTTP/1.1 client on one connection."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = Conn(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", host="app.test", headers=(), body=None, version="1.1"):
        lines = [f"{method} {path} HTTP/{version}", f"Host: {host}"] if host is not None else \
            [f"{method} {path} HTTP/{version}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        return read_response(self.conn, method)

    def read(self, method="GET"):
        return read_response(self.conn, method)

    def closed_by_peer(self, timeout=2.0):
        """True when the server closed the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            if self.conn.buf:
                return False
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def get(port, path="/", host="app.test", **kw):
    c = Client(port)
    try:
        return c.request(path=path, host=host, **kw)
    finally:
        c.close()
