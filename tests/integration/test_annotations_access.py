"""Access annotations a migrating ingress-nginx user relies on:

- protections tidegate does not implement (auth-url, auth-type, snippets, ...)
  refuse the Ingress: its routes answer 503, never served unprotected, also
  when an Ingress that was served gains one (no "last good version");
- whitelist-/allowlist-source-range and denylist-source-range (per Ingress
  and ConfigMap), on the client address after PROXY protocol / trusted
  X-Forwarded-For, answered 403 by tidegate;
- auth-tls-match-cn on the client certificate's subject.
"""
import json
import socket

from backends import Client, Conn, get, read_response
from conftest import INGRESS_CLASS, configmap, endpoints, ingress, service
from tls_env import CA, TLSClient, client_context, start, tls_ingress, tls_secret

A = "nginx.ingress.kubernetes.io/"


def app(port, ann=None, settings=None, host="app.test", path="/", name="app"):
    m = {"00-class.yaml": INGRESS_CLASS,
         "10-app.yaml": service("app") + "---" + endpoints("app", [port]),
         f"20-{name}-ingress.yaml": ingress(name, [(host, [(path, "Prefix", "app", 80)])],
                                            annotations=ann)}
    if settings:
        m["01-configmap.yaml"] = configmap(settings)
    return m


def seen_real_ip(r):
    return [v for k, v in r.json()["headers"] if k.lower() == "x-real-ip"][0]


# ------------------------------------------------------------------ refusal

def test_unsupported_protection_refuses_the_ingress(tidegate, backend):
    b = backend()
    m = app(b.port)
    # An open Ingress on another path of the same host: the refused one's
    # paths must not fall through to it.
    m["21-open.yaml"] = ingress("open", [("app.test", [("/", "Prefix", "app", 80)])])
    m["20-app-ingress.yaml"] = ingress("admin", [("app.test", [("/admin", "Prefix", "app", 80)])],
                                       annotations={A + "auth-url": "http://auth.example/verify"})
    tg = tidegate(m)
    r = get(tg.port, "/admin/users", host="app.test")
    assert r.status == 503
    assert b.requests == 0
    assert get(tg.port, "/public", host="app.test").status == 200
    assert ("Ingress default/admin: annotation nginx.ingress.kubernetes.io/auth-url is not "
            "supported: refusing to serve this Ingress without the protection it asks for"
            in tg.stderr())

    # An Ingress that was served and then asks for a protection is not served
    # any more (its previous version does not stay in force).
    tg.reload("20-app-ingress.yaml", ingress("admin", [("app.test", [("/admin", "Prefix", "app", 80)])]))
    assert get(tg.port, "/admin/users", host="app.test").status == 200
    for ann in ({A + "configuration-snippet": "more_set_headers 'X-A: b';"},
                {A + "auth-type": "basic", A + "auth-secret": "htpasswd"},
                {A + "satisfy": "any"}):
        tg.reload("20-app-ingress.yaml",
                  ingress("admin", [("app.test", [("/admin", "Prefix", "app", 80)])], annotations=ann))
        assert get(tg.port, "/admin/users", host="app.test").status == 503, ann
    assert "configuration-snippet is not supported (tidegate cannot run nginx configuration)" in tg.stderr()


# ------------------------------------------------------------------ source ranges

def test_whitelist_and_denylist(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "whitelist-source-range": "10.0.0.0/8, fd00:7467::/32"}))
    r = get(tg.port, "/", host="app.test")
    assert r.status == 403
    assert b"<title>403 Forbidden</title>" in r.body
    assert b.requests == 0
    # The client (127.0.0.1) listed: served.
    tg.reload("20-app-ingress.yaml", ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                                             annotations={A + "allowlist-source-range": "127.0.0.1/32"}))
    assert get(tg.port, "/", host="app.test").status == 200
    # denylist wins over the allow list.
    tg.reload("20-app-ingress.yaml", ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                                             annotations={A + "whitelist-source-range": "127.0.0.0/8",
                                                          A + "denylist-source-range": "127.0.0.1"}))
    assert get(tg.port, "/", host="app.test").status == 403
    # A bad block refuses the Ingress (503), with the reason logged.
    tg.reload("20-app-ingress.yaml", ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                                             annotations={A + "whitelist-source-range": "127.0.0.1/40"}))
    assert get(tg.port, "/", host="app.test").status == 503
    assert 'whitelist-source-range: bad value "127.0.0.1/40"' in tg.stderr()
    # Keep-alive: a 403 does not end the connection.
    tg.reload("20-app-ingress.yaml", ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                                             annotations={A + "whitelist-source-range": "10.0.0.0/8"}))
    c = Client(tg.port)
    assert c.request(path="/").status == 403
    assert c.request(path="/").status == 403
    c.close()


def test_source_range_uses_forwarded_client(tidegate, backend):
    """With trusted X-Forwarded-For the client it names is checked (the same
    address X-Real-IP gets), IPv4 and IPv6."""
    b = backend()
    tg = tidegate(app(b.port, {A + "whitelist-source-range": "203.0.113.0/24, fd00:7467::/32"},
                      settings={"use-forwarded-headers": "true",
                                "proxy-real-ip-cidr": "127.0.0.1/32"}))
    r = get(tg.port, "/", host="app.test", headers=[("X-Forwarded-For", "203.0.113.9")])
    assert r.status == 200
    assert seen_real_ip(r) == "203.0.113.9"
    r = get(tg.port, "/", host="app.test", headers=[("X-Forwarded-For", "fd00:7467::9")])
    assert r.status == 200
    assert seen_real_ip(r) == "fd00:7467::9"
    assert get(tg.port, "/", host="app.test",
               headers=[("X-Forwarded-For", "198.51.100.1")]).status == 403
    # Right to left, skipping trusted proxies: the client is 198.51.100.1.
    assert get(tg.port, "/", host="app.test",
               headers=[("X-Forwarded-For", "203.0.113.9, 198.51.100.1")]).status == 403
    # No X-Forwarded-For: the peer itself (127.0.0.1) is the client.
    assert get(tg.port, "/", host="app.test").status == 403

    # An untrusted peer cannot pick its address.
    tg.reload("01-configmap.yaml", configmap({"use-forwarded-headers": "true",
                                              "proxy-real-ip-cidr": "10.0.0.0/8"}))
    assert get(tg.port, "/", host="app.test",
               headers=[("X-Forwarded-For", "203.0.113.9")]).status == 403


def proxied(port, src, path="/"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"PROXY TCP4 {src} 198.18.0.1 40000 80\r\n".encode() +
              f"GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n".encode())
    r = read_response(Conn(s))
    s.close()
    return r


def test_source_range_uses_proxy_protocol(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "whitelist-source-range": "198.18.0.0/15"},
                      settings={"use-proxy-protocol": "true"}))
    r = proxied(tg.port, "198.18.7.7")
    assert r.status == 200
    assert seen_real_ip(r) == "198.18.7.7"
    assert proxied(tg.port, "192.0.2.1").status == 403


def test_global_source_ranges(tidegate, backend):
    b = backend()
    m = app(b.port, settings={"whitelist-source-range": "10.0.0.0/8"})
    m["21-own.yaml"] = ingress("own", [("own.test", [("/", "Prefix", "app", 80)])],
                               annotations={A + "whitelist-source-range": "127.0.0.1"})
    tg = tidegate(m)
    assert get(tg.port, "/", host="app.test").status == 403  # the ConfigMap's list
    assert get(tg.port, "/", host="own.test").status == 200  # its own replaces it
    tg.reload("01-configmap.yaml", configmap({"denylist-source-range": "127.0.0.0/8"}))
    assert get(tg.port, "/", host="app.test").status == 403
    # A bad global value fails closed (503) for the routes it governs.
    tg.reload("01-configmap.yaml", configmap({"whitelist-source-range": "127.0.0.1/64"}))
    assert get(tg.port, "/", host="app.test").status == 503
    assert "routes without their own source-range annotation answer 503" in tg.stderr()
    tg.reload("01-configmap.yaml", configmap({}))
    assert get(tg.port, "/", host="app.test").status == 200


# ------------------------------------------------------------------ auth-tls-match-cn

def test_auth_tls_match_cn(tidegate, backend, tmp_path):
    server_ca = CA(tmp_path / "server-ca", "Server CA")
    client_ca = CA(tmp_path / "client-ca", "Client CA")
    crt, key = server_ca.issue("app.test", sans=["app.test"])
    b = backend()
    ann = {A + "auth-tls-secret": "default/client-ca", A + "auth-tls-verify-client": "optional",
           A + "auth-tls-match-cn": "CN=(alice|bob)$"}
    m = {"00-class.yaml": INGRESS_CLASS,
         "10-app.yaml": service("app") + "---" + endpoints("app", [b.port]),
         "20-secret.yaml": tls_secret("app-tls", crt, key) + "---" + tls_secret("client-ca", ca=client_ca.pem()),
         "30-app.yaml": tls_ingress("app", ["app.test"], "app-tls", annotations=ann)}
    tg = start(tidegate, m)

    def req(cert=None):
        ctx = client_context(cert=cert[0], key=cert[1]) if cert else client_context()
        c = TLSClient(tg.https, sni="app.test", ctx=ctx)
        try:
            return c.request(host="app.test")
        finally:
            c.close()

    assert req(client_ca.issue("alice", client=True)).status == 200
    assert req(client_ca.issue("bob", client=True)).status == 200
    r = req(client_ca.issue("mallory", client=True))
    assert r.status == 403
    assert req(client_ca.issue("alicex", client=True)).status == 403  # anchored by the user's $
    assert req().status == 403  # optional, none sent: nothing to match
    assert b.requests == 2
