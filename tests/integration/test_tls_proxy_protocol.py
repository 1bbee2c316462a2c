"""use-proxy-protocol on both listeners, and the use-forwarded-headers /
proxy-real-ip-cidr trust rules (see src/proxy/tls_io.h)."""
import socket
import ssl
import struct
import time

from backends import Client, Conn, get, read_response
from conftest import INGRESS_CLASS, SLOWDOWN, configmap
from tls_env import CA, backend_manifests, client_context, header_of, start, tls_get, tls_ingress, tls_secret


def manifests(ca, port, settings):
    crt, key = ca.issue("app.test", sans=["app.test"])
    return {"00-class.yaml": INGRESS_CLASS, "01-cm.yaml": configmap(settings),
            "10-app.yaml": backend_manifests([port]),
            "20-secret.yaml": tls_secret("app-tls", crt, key),
            # ssl-redirect off: plain HTTP requests reach the backend.
            "30-app.yaml": tls_ingress("app", ["app.test"], "app-tls",
                                       annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"})}


def v1(src, dst=None, sport=40000, dport=443):
    fam = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst="127.0.0.1", sport=40000, dport=443, local=False):
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    if local:
        return sig + b"\x20\x00\x00\x00"
    if ":" in src:
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1") + \
            struct.pack("!HH", sport, dport)
        return sig + b"\x21\x21" + struct.pack("!H", len(addrs)) + addrs
    addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return sig + b"\x21\x11" + struct.pack("!H", len(addrs)) + addrs


def plain_request(port, header, host="app.test", extra=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOWDOWN)
    s.sendall(header + f"GET / HTTP/1.1\r\nHost: {host}\r\n".encode() + extra + b"\r\n")
    try:
        return read_response(Conn(s))
    finally:
        s.close()


def tls_request(port, header, host="app.test"):
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOWDOWN)
    raw.sendall(header)
    s = client_context().wrap_socket(raw, server_hostname=host)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    try:
        return read_response(Conn(s))
    finally:
        s.close()


def closed_without_answer(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOWDOWN)
    s.sendall(data)
    try:
        got = s.recv(4096)
    except ConnectionResetError:
        got = b""
    s.close()
    return got == b""


def test_proxy_protocol_v1_v2_on_both_listeners(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port, {"use-proxy-protocol": "true"}))
    cases = [(plain_request, tg.port, v1("203.0.113.7")),
             (plain_request, tg.port, v2("198.51.100.9")),
             (tls_request, tg.https, v1("2001:db8::5")),
             (tls_request, tg.https, v2("192.0.2.44"))]
    want = ["203.0.113.7", "198.51.100.9", "2001:db8::5", "192.0.2.44"]
    for (fn, port, hdr), ip in zip(cases, want):
        r = fn(port, hdr)
        assert r.status == 200, r.body
        j = r.json()
        assert header_of(j, "X-Real-IP") == ip
        assert header_of(j, "X-Forwarded-For") == ip
    log = tg.access_log(wait_for=4)
    assert sorted(l.split(" ")[0] for l in log[-4:]) == sorted(want)  # workers log apart
    # v2 LOCAL (a balancer's own health check): the socket's address.
    r = plain_request(tg.port, v2("", local=True))
    assert header_of(r.json(), "X-Real-IP") == "127.0.0.1"


def test_malformed_proxy_header_closes_only_that_connection(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port, {"use-proxy-protocol": "true"}))
    # A keep-alive connection in progress is unaffected by the bad ones.
    keep = socket.create_connection(("127.0.0.1", tg.port), timeout=10)
    keep.sendall(v1("203.0.113.1"))
    kc = Conn(keep)
    keep.sendall(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert read_response(kc).status == 200
    bad = [b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\nGET / HTTP/1.1\r\n\r\n",     # bad address
           b"PROXY TCP4 1.2.3.4 4.5.6.7 1 2\nGET / HTTP/1.1\r\n\r\n",      # lone LF
           b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",                     # no header at all
           b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + b"\x00" * 12,       # v2 version 3
           b"PROXY " + b"X" * 200 + b"\r\n"]                               # too long
    for data in bad:
        assert closed_without_answer(tg.port, data), data
        assert closed_without_answer(tg.https, data), data
    keep.sendall(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert read_response(kc).status == 200
    keep.close()
    assert "PROXY protocol header from" in tg.stderr()
    # A header that never completes is timed out with the handshake timeout.
    assert plain_request(tg.port, v1("203.0.113.2")).status == 200


def test_proxy_header_timeout(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port, {"use-proxy-protocol": "true",
                                                "client-header-timeout": "1"}))
    s = socket.create_connection(("127.0.0.1", tg.https), timeout=10 * SLOWDOWN)
    s.sendall(b"PROXY TCP4 203.0.113.3 ")
    t0 = time.time()
    assert s.recv(10) == b""
    assert time.time() - t0 < 8 * SLOWDOWN
    s.close()


def test_forwarded_headers_trust_rules(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port, {}))
    xff = b"X-Forwarded-For: 203.0.113.7, 10.1.2.3\r\nX-Forwarded-Proto: https\r\n" \
          b"X-Forwarded-Port: 8443\r\nX-Forwarded-Host: public.example\r\n"

    def check(**want):
        r = plain_request(tg.port, b"", extra=xff)
        j = r.json()
        got = {k: header_of(j, k.replace("_", "-")) for k in want}
        assert got == want, got
        return r

    # use-forwarded-headers off (default): nothing the client says is trusted
    # except that its X-Forwarded-For list is extended.
    check(X_Real_IP="127.0.0.1", X_Forwarded_For="203.0.113.7, 10.1.2.3, 127.0.0.1",
          X_Forwarded_Proto="http", X_Forwarded_Port=str(tg.port), X_Forwarded_Host="app.test")
    # On, default proxy-real-ip-cidr 0.0.0.0/0: every IPv4 address is a
    # trusted proxy, so the leftmost address is the client.
    tg.reload("01-cm.yaml", configmap({"use-forwarded-headers": "true"}))
    check(X_Real_IP="203.0.113.7", X_Forwarded_For="203.0.113.7, 10.1.2.3, 127.0.0.1",
          X_Forwarded_Proto="https", X_Forwarded_Port="8443", X_Forwarded_Host="public.example")
    line = tg.access_log(wait_for=2)[-1]
    assert line.startswith("203.0.113.7 "), line
    # Only the peer and 10/8 trusted: the first untrusted address from the right.
    tg.reload("01-cm.yaml", configmap({"use-forwarded-headers": "true",
                                       "proxy-real-ip-cidr": "127.0.0.1/32, 10.0.0.0/8"}))
    check(X_Real_IP="203.0.113.7", X_Forwarded_Proto="https")
    tg.reload("01-cm.yaml", configmap({"use-forwarded-headers": "true",
                                       "proxy-real-ip-cidr": "127.0.0.1"}))
    check(X_Real_IP="10.1.2.3")
    # The peer itself is not trusted: as if use-forwarded-headers were off.
    tg.reload("01-cm.yaml", configmap({"use-forwarded-headers": "true",
                                       "proxy-real-ip-cidr": "192.0.2.0/24"}))
    check(X_Real_IP="127.0.0.1", X_Forwarded_Proto="http", X_Forwarded_Port=str(tg.port))
    # A bad list is rejected with the key named, the previous one stays.
    tg.reload("01-cm.yaml", configmap({"use-forwarded-headers": "true",
                                       "proxy-real-ip-cidr": "10.0.0.0/33"}))
    assert "key proxy-real-ip-cidr: bad value" in tg.stderr()


def test_trusted_forwarded_proto_https_is_not_redirected(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    m = manifests(ca, b.port, {"use-forwarded-headers": "true"})
    m["30-app.yaml"] = tls_ingress("app", ["app.test"], "app-tls")  # ssl-redirect on
    tg = start(tidegate, m)
    assert plain_request(tg.port, b"").status == 308
    assert plain_request(tg.port, b"", extra=b"X-Forwarded-Proto: https\r\n").status == 200
    tg.reload("01-cm.yaml", configmap({"use-forwarded-headers": "false"}))
    assert plain_request(tg.port, b"", extra=b"X-Forwarded-Proto: https\r\n").status == 308
