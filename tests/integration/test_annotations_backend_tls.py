"""backend-protocol: HTTPS - TLS from tidegate to the backend, with
ingress-nginx's defaults (no SNI, no verification) and its proxy-ssl-*
annotations (verification against proxy-ssl-secret's ca.crt and
proxy-ssl-name, SNI with proxy-ssl-server-name, a client certificate from the
Secret's tls.crt/tls.key), pooled connections and session reuse; GRPC is
refused with a clear reason instead of being misrouted.

The backend is Python's ssl module in front of backends.Backend."""
import socket
import ssl
import threading

from backends import Backend, get
from conftest import INGRESS_CLASS, endpoints, ingress, service
from tls_env import CA, tls_secret

A = "nginx.ingress.kubernetes.io/"


class TLSBackend(Backend):
    """backends.Backend speaking TLS: records the SNI each handshake carried
    and whether it resumed a session."""

    def __init__(self, crt, key, client_ca=None, **kw):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        if client_ca:
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.snis = []
        self.resumed = []
        self.peer_cns = []
        self.handshake_errors = 0
        self.ctx.sni_callback = self._sni
        super().__init__(**kw)

    def _sni(self, sock, name, ctx):
        self.snis.append(name)

    def _serve(self, s):
        try:
            s.settimeout(10)
            t = self.ctx.wrap_socket(s, server_side=True)
            t.settimeout(None)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.handshake_errors += 1
            s.close()
            return
        with self.lock:
            self.resumed.append(t.session_reused)
            cert = t.getpeercert()
            if cert:
                self.peer_cns.append(dict(x[0] for x in cert["subject"]).get("commonName"))
        self.conns.add(t)
        super()._serve(t)


def manifests(port, ann, extra=""):
    m = {"00-class.yaml": INGRESS_CLASS,
         "10-app.yaml": service("app") + "---" + endpoints("app", [port]),
         "20-app-ingress.yaml": ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                                        annotations=ann)}
    if extra:
        m["15-secret.yaml"] = extra
    return m


def server_cert(tmp_path, names=("app.default.svc",)):
    ca = CA(tmp_path / "backend-ca", "Backend CA")
    crt, key = ca.issue(names[0], sans=list(names))
    return ca, crt, key


def test_https_backend_defaults(tidegate, tmp_path):
    """No SNI and no verification by default (nginx's proxy_ssl_server_name
    and proxy_ssl_verify off): a self-signed backend works; requests reuse the
    pooled TLS connection; a new connection resumes the session."""
    ca, crt, key = server_cert(tmp_path)
    b = TLSBackend(crt, key)
    try:
        tg = tidegate(manifests(b.port, {A + "backend-protocol": "HTTPS"}), workers=1)
        for i in range(3):
            r = get(tg.port, f"/hello/{i}", host="app.test")
            assert r.status == 200, r.body
            assert r.json()["target"] == f"/hello/{i}"
            assert r.json()["backend"] == "backend"
        assert b.accepts == 1, "keep-alive TLS connection not reused"
        assert b.snis == [None], f"SNI sent by default: {b.snis}"
        # The backend closes the connection: the next one resumes the session.
        r = get(tg.port, "/close", host="app.test")
        assert r.status == 200
        r = get(tg.port, "/again", host="app.test")
        assert r.status == 200
        assert b.accepts == 2
        assert b.resumed == [False, True], b.resumed
        # Plain HTTP to the same backend port no longer "works by accident":
        # the Ingress without the annotation gets a 502.
        tg.reload("20-app-ingress.yaml",
                  ingress("app", [("app.test", [("/", "Prefix", "app", 80)])]))
        assert get(tg.port, "/", host="app.test").status == 502
    finally:
        b.close()


def test_https_backend_verify(tidegate, tmp_path):
    """proxy-ssl-verify on: the chain must lead to ca.crt and the certificate
    must name proxy-ssl-name; with proxy-ssl-server-name on, that name is the
    SNI. A failed verification is a failed connect: 502, logged."""
    ca, crt, key = server_cert(tmp_path, ("app.default.svc",))
    b = TLSBackend(crt, key)
    try:
        ann = {A + "backend-protocol": "HTTPS", A + "proxy-ssl-secret": "default/backend-ca",
               A + "proxy-ssl-verify": "on", A + "proxy-ssl-name": "app.default.svc",
               A + "proxy-ssl-server-name": "on"}
        secret = tls_secret("backend-ca", ca=ca.pem())
        tg = tidegate(manifests(b.port, ann, secret), workers=1)
        r = get(tg.port, "/", host="app.test")
        assert r.status == 200, r.body
        assert b.snis == ["app.default.svc"]
        # Another name than the certificate's: refused like nginx does.
        ann[A + "proxy-ssl-name"] = "other.default.svc"
        tg.reload("20-app-ingress.yaml",
                  ingress("app", [("app.test", [("/", "Prefix", "app", 80)])], annotations=ann))
        r = get(tg.port, "/", host="app.test")
        assert r.status == 502
        assert "TLS handshake with backend" in tg.stderr()
        assert "certificate verify failed" in tg.stderr()
        # A CA that did not sign the backend's certificate: 502 too.
        other = CA(tmp_path / "other-ca", "Other CA")
        ann[A + "proxy-ssl-name"] = "app.default.svc"
        tg.write("15-secret.yaml", tls_secret("backend-ca", ca=other.pem()))
        tg.reload("20-app-ingress.yaml",
                  ingress("app", [("app.test", [("/", "Prefix", "app", 80)])], annotations=ann))
        assert get(tg.port, "/", host="app.test").status == 502
        # The Secret gone: the routes answer 503 (ingress-nginx denies them).
        tg.remove("15-secret.yaml")
        tg.wait_generation(tg.generation() + 1)
        assert get(tg.port, "/", host="app.test").status == 503
    finally:
        b.close()


def test_https_backend_client_certificate(tidegate, tmp_path):
    """tls.crt/tls.key of proxy-ssl-secret are presented to a backend that
    requires a client certificate."""
    ca, crt, key = server_cert(tmp_path)
    clients = CA(tmp_path / "clients", "Client CA")
    ccrt, ckey = clients.issue("tidegate-ingress", client=True)
    b = TLSBackend(crt, key, client_ca=clients.crt)
    try:
        ann = {A + "backend-protocol": "HTTPS", A + "proxy-ssl-secret": "backend-auth"}
        tg = tidegate(manifests(b.port, ann, tls_secret("backend-auth", ccrt, ckey, ca=ca.pem())),
                      workers=1)
        r = get(tg.port, "/", host="app.test")
        assert r.status == 200, r.body
        assert b.peer_cns == ["tidegate-ingress"]
        # Without it the backend refuses the handshake: 502.
        tg.reload("20-app-ingress.yaml",
                  ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                          annotations={A + "backend-protocol": "HTTPS"}))
        assert get(tg.port, "/", host="app.test").status == 502
        assert b.handshake_errors >= 1
    finally:
        b.close()


def test_https_backend_large_bodies(tidegate, tmp_path):
    """Bodies larger than a TLS record in both directions, chunked and not."""
    ca, crt, key = server_cert(tmp_path)
    b = TLSBackend(crt, key)
    try:
        tg = tidegate(manifests(b.port, {A + "backend-protocol": "HTTPS",
                                         A + "proxy-body-size": "8m"}), workers=1)
        body = bytes(range(256)) * 4096  # 1 MiB
        s = socket.create_connection(("127.0.0.1", tg.port))
        s.sendall(b"POST /echo-body HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        from backends import Conn, read_response
        r = read_response(Conn(s))
        s.close()
        assert r.status == 200 and r.body == body
        r = get(tg.port, "/download/3000000", host="app.test")
        assert r.status == 200 and len(r.body) == 3000000
        r = get(tg.port, "/chunked/50/10000", host="app.test")
        assert r.status == 200 and len(r.body) == 500000
    finally:
        b.close()


def test_grpc_refused(tidegate, backend):
    b = backend()
    tg = tidegate(manifests(b.port, {A + "backend-protocol": "GRPC"}))
    r = get(tg.port, "/", host="app.test")
    assert r.status == 503
    assert b.requests == 0
    assert "needs HTTP/2 to the backend, not supported yet" in tg.stderr()
    assert "Ingress default/app" in tg.stderr()


def test_https_backend_websocket(tidegate, tmp_path):
    """A WebSocket tunnel through a TLS backend connection, both ways."""
    import os
    from backends import ws_read, ws_send
    from test_proxy_websocket import handshake
    ca, crt, key = server_cert(tmp_path)
    b = TLSBackend(crt, key)
    try:
        tg = tidegate(manifests(b.port, {A + "backend-protocol": "HTTPS"}), workers=1)
        s, conn, _key, first, _h = handshake(tg.port)
        assert first.startswith("HTTP/1.1 101"), first
        for payload in (b"hello", os.urandom(70_000), os.urandom(1 << 20)):
            ws_send(s, 2, payload)
            assert ws_read(conn) == (2, payload)
        ws_send(s, 8, b"\x03\xe8")
        assert ws_read(conn)[0] == 8
        s.close()
    finally:
        b.close()
