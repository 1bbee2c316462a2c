"""A raw-socket recording backend for the hardening tests (standard library only).

Unlike backends.Backend, this one keeps exactly the bytes tidegate sent on every
connection and parses them with a deliberately strict HTTP/1.1 reader of its
own, so a test can tell how a backend would have seen the stream:

  - `raw[conn_id]`   every byte received on that connection, in order
  - `requests`       one dict per request parsed: conn, method, target,
                     version, headers [(name, value)], body (decoded bytes),
                     framing ("none", "length", "chunked")
  - `anomalies`      anything a lenient backend could read differently: a bare
                     LF, a leading empty line, Content-Length together with
                     Transfer-Encoding, several Content-Length or
                     Transfer-Encoding fields, a Transfer-Encoding other than
                     plain "chunked", a malformed chunk, a non-decimal length.
                     The connection is closed after an anomaly (the stream can
                     no longer be framed).

Answers: GET/POST on any path gets 200 with a small JSON body (path, body length);
/resp/NAME answers with the canned raw bytes `canned[NAME]` instead (used to
send ambiguous responses). reset() forgets everything recorded so far.
"""
import json
import socket
import threading

from backends import shut_server


class RawBackend:
    def __init__(self, canned=None):
        self.canned = dict(canned or {})
        self.lock = threading.Lock()
        self.raw = {}
        self.requests = []
        self.anomalies = []
        self.closed_conns = set()
        self.next_id = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns = set()
        threading.Thread(target=self._accept, daemon=True).start()

    # ------------------------------------------------------------ recording
    def reset(self):
        with self.lock:
            self.raw = {k: bytearray() for k in self.raw}
            self.requests = []
            self.anomalies = []

    def total_bytes(self):
        with self.lock:
            return sum(len(v) for v in self.raw.values())

    def snapshot(self):
        """(requests, anomalies, raw bytes of every connection joined)."""
        with self.lock:
            return (list(self.requests), list(self.anomalies),
                    b"".join(bytes(v) for v in self.raw.values()))

    def close(self):
        self.closed = True
        shut_server(self.sock, self.conns)

    # ------------------------------------------------------------ serving
    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            if self.closed:
                s.close()
                return
            with self.lock:
                cid = self.next_id
                self.next_id += 1
                self.raw[cid] = bytearray()
            self.conns.add(s)
            threading.Thread(target=self._serve, args=(s, cid), daemon=True).start()

    def _serve(self, s, cid):
        reader = _Reader(s, self, cid)
        try:
            while True:
                req = reader.request()
                if req is None:
                    break
                req["conn"] = cid
                with self.lock:
                    self.requests.append(req)
                path = req["target"].split("?")[0]
                if path.startswith("/resp/") and path[6:] in self.canned:
                    s.sendall(self.canned[path[6:]])
                    continue
                body = json.dumps({"backend": "raw", "path": path,
                                   "body_len": len(req["body"])}).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except (EOFError, OSError):
            pass
        except _Anomaly as a:
            with self.lock:
                self.anomalies.append((cid, str(a)))
        finally:
            self.conns.discard(s)
            with self.lock:
                self.closed_conns.add(cid)
            try:
                s.close()
            except OSError:
                pass


class _Anomaly(Exception):
    pass


class _Reader:
    """Strict incremental reader over one connection, recording every byte."""

    def __init__(self, sock, owner, cid):
        self.sock, self.owner, self.cid = sock, owner, cid
        self.buf = b""

    def _fill(self):
        b = self.sock.recv(65536)
        if not b:
            raise EOFError
        with self.owner.lock:
            self.owner.raw.setdefault(self.cid, bytearray()).extend(b)
        self.buf += b

    def _line(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise _Anomaly("line too long")
            self._fill()
        i = self.buf.index(b"\n")
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            raise _Anomaly("bare LF or CR: %r" % line[:80])
        return line[:-2]

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def request(self):
        try:
            while not self.buf:
                self._fill()
        except EOFError:
            return None
        first = self._line()
        if first == b"":
            raise _Anomaly("empty line before the request line")
        parts = first.split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise _Anomaly("bad request line %r" % first[:80])
        headers = []
        while True:
            line = self._line()
            if line == b"":
                break
            if line[:1] in (b" ", b"\t"):
                raise _Anomaly("obs-fold")
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or b"\0" in line:
                raise _Anomaly("bad field line %r" % line[:80])
            headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
        cls = [v for k, v in headers if k.lower() == "content-length"]
        tes = [v for k, v in headers if k.lower() == "transfer-encoding"]
        if cls and tes:
            raise _Anomaly("Content-Length and Transfer-Encoding")
        if len(cls) > 1 or len(tes) > 1:
            raise _Anomaly("repeated framing field")
        framing, body = "none", b""
        if tes:
            if tes[0] != "chunked":
                raise _Anomaly("Transfer-Encoding %r" % tes[0])
            framing, body = "chunked", self._chunked()
        elif cls:
            if not cls[0].isdigit():
                raise _Anomaly("Content-Length %r" % cls[0])
            framing, body = "length", self._exact(int(cls[0]))
        return {"method": parts[0].decode("latin-1"), "target": parts[1].decode("latin-1"),
                "version": parts[2].decode(), "headers": headers, "body": body,
                "framing": framing}

    def _chunked(self):
        out = []
        while True:
            line = self._line()
            size = line.split(b";")[0]
            if not size or any(c not in b"0123456789abcdefABCDEF" for c in size):
                raise _Anomaly("bad chunk size %r" % line[:40])
            n = int(size, 16)
            if n == 0:
                while self._line() != b"":
                    pass
                return b"".join(out)
            out.append(self._exact(n))
            if self._exact(2) != b"\r\n":
                raise _Anomaly("no CRLF after chunk data")
