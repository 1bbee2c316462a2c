"""Client certificates per Ingress (auth-tls-secret and the other auth-tls-*
annotations), answered like ingress-nginx: 400 with nginx's texts, the
ssl-client-* fields to the backend."""
import ssl
import urllib.parse

from backends import get
from conftest import INGRESS_CLASS
from tls_env import (CA, TLSClient, backend_manifests, client_context, header_of, headers_of, start,
                     tls_ingress, tls_secret)

A = "nginx.ingress.kubernetes.io/"


def start_app(tidegate, backend, tmp_path, verify="on", extra_ann=None):
    server_ca = CA(tmp_path / "server-ca", "Server CA")
    client_ca = CA(tmp_path / "client-ca", "Client CA")
    crt, key = server_ca.issue("app.test", sans=["app.test", "open.test"])
    ann = {A + "auth-tls-secret": "default/client-ca", A + "auth-tls-verify-client": verify}
    ann.update(extra_ann or {})
    b = backend()
    m = {"00-class.yaml": INGRESS_CLASS, "10-app.yaml": backend_manifests([b.port]),
         "20-secret.yaml": tls_secret("app-tls", crt, key) + "---" +
         tls_secret("client-ca", ca=client_ca.pem()),
         "30-app.yaml": tls_ingress("app", ["app.test"], "app-tls", annotations=ann),
         "31-open.yaml": tls_ingress("open", ["open.test"], "app-tls")}
    tg = start(tidegate, m)
    return tg, client_ca, b


def request(tg, ctx, host="app.test", headers=()):
    c = TLSClient(tg.https, sni=host, ctx=ctx)
    try:
        return c.request(host=host, headers=headers)
    finally:
        c.close()


def test_verify_on(tidegate, backend, tmp_path):
    tg, client_ca, _ = start_app(tidegate, backend, tmp_path, extra_ann={
        A + "auth-tls-pass-certificate-to-upstream": "true"})
    good = client_ca.issue("alice", client=True)
    r = request(tg, client_context(cert=good[0], key=good[1]),
                headers=[("ssl-client-verify", "FORGED"), ("SSL-Client-Subject-DN", "CN=mallory")])
    assert r.status == 200, r.body
    j = r.json()
    assert headers_of(j, "ssl-client-verify") == ["SUCCESS"]
    assert headers_of(j, "ssl-client-subject-dn") == ["CN=alice"]
    assert header_of(j, "ssl-client-issuer-dn") == "CN=Client CA"
    pem = urllib.parse.unquote(header_of(j, "ssl-client-cert"))
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and pem == open(good[0]).read()

    # No certificate.
    r = request(tg, client_context())
    assert r.status == 400
    assert b"<title>400 No required SSL certificate was sent</title>" in r.body
    # A certificate from another CA.
    other = CA(tmp_path / "other-ca", "Other CA").issue("eve", client=True)
    r = request(tg, client_context(cert=other[0], key=other[1]))
    assert r.status == 400 and b"400 The SSL certificate error" in r.body
    # Expired, from the right CA.
    old = client_ca.issue("old", client=True, expired=True)
    r = request(tg, client_context(cert=old[0], key=old[1]))
    assert r.status == 400 and b"The SSL certificate error" in r.body
    assert tg.metric("tidegate_tls_client_certificate_rejections_total", reason="missing") == 1
    assert tg.metric("tidegate_tls_client_certificate_rejections_total", reason="invalid") == 2
    # The Ingress without auth-tls on the same certificate: no certificate needed,
    # and a forged ssl-client-* field never reaches the backend.
    r = request(tg, client_context(), host="open.test", headers=[("ssl-client-verify", "SUCCESS")])
    assert r.status == 200 and headers_of(r.json(), "ssl-client-verify") == []
    # Plain HTTP to the protected host: redirected to HTTPS (ssl-redirect).
    assert get(tg.port, "/", host="app.test").status == 308


def test_verify_optional(tidegate, backend, tmp_path):
    tg, client_ca, _ = start_app(tidegate, backend, tmp_path, verify="optional")
    r = request(tg, client_context())
    assert r.status == 200
    assert headers_of(r.json(), "ssl-client-verify") == ["NONE"]
    good = client_ca.issue("bob", client=True)
    r = request(tg, client_context(cert=good[0], key=good[1]))
    assert headers_of(r.json(), "ssl-client-verify") == ["SUCCESS"]
    assert header_of(r.json(), "ssl-client-cert") is None  # not passed without the annotation
    other = CA(tmp_path / "other-ca", "Other CA").issue("eve", client=True)
    assert request(tg, client_context(cert=other[0], key=other[1])).status == 400


def test_verify_optional_no_ca(tidegate, backend, tmp_path):
    tg, _, _ = start_app(tidegate, backend, tmp_path, verify="optional_no_ca")
    other = CA(tmp_path / "other-ca", "Other CA").issue("eve", client=True)
    r = request(tg, client_context(cert=other[0], key=other[1]))
    assert r.status == 200
    assert header_of(r.json(), "ssl-client-verify").startswith("FAILED:")


def test_misdirected_when_sni_selected_another_policy(tidegate, backend, tmp_path):
    tg, client_ca, _ = start_app(tidegate, backend, tmp_path)
    good = client_ca.issue("alice", client=True)
    # SNI open.test (no certificate asked), Host app.test (certificate required).
    c = TLSClient(tg.https, sni="open.test", ctx=client_context(cert=good[0], key=good[1]))
    r = c.request(host="app.test")
    c.close()
    assert r.status == 421


def test_bad_annotation_refuses_ingress_and_missing_ca_secret_answers_503(tidegate, backend, tmp_path):
    tg, client_ca, _ = start_app(tidegate, backend, tmp_path)
    good = client_ca.issue("alice", client=True)
    ctx = client_context(cert=good[0], key=good[1])
    tg.write("30-app.yaml", tls_ingress("app", ["app.test"], "app-tls", annotations={
        A + "auth-tls-secret": "default/client-ca", A + "auth-tls-verify-client": "sometimes"}))
    import time
    end = time.time() + 5
    while "auth-tls-verify-client" not in tg.stderr() and time.time() < end:
        time.sleep(0.05)
    assert 'bad value "sometimes"' in tg.stderr()
    # Refused, not served with the last good version: that one might lack a
    # check the new one asks for. Every path answers 503, with or without a
    # certificate.
    end = time.time() + 5
    while request(tg, ctx).status != 503 and time.time() < end:
        time.sleep(0.05)
    assert request(tg, ctx).status == 503
    assert request(tg, client_context()).status in (400, 503)
    # A policy naming a Secret that does not exist: never served unchecked.
    tg.reload("30-app.yaml", tls_ingress("app", ["app.test"], "app-tls", annotations={
        A + "auth-tls-secret": "default/missing"}))
    assert "auth-tls-secret default/missing not found" in tg.stderr()
    assert request(tg, ctx).status == 503


def test_error_page_redirects_certificate_errors(tidegate, backend, tmp_path):
    """auth-tls-error-page (ingress-nginx: error_page 495 496 = URL): a
    missing or bad certificate gets a 302 to the page instead of the 400; a
    good one is served; a value that is not an absolute URL is logged and the
    400 stays."""
    page = "https://errors.example.test/cert?from=app"
    tg, client_ca, b = start_app(tidegate, backend, tmp_path,
                                 extra_ann={A + "auth-tls-error-page": page})
    r = request(tg, client_context())
    assert r.status == 302 and r.header("Location") == page
    other = CA(tmp_path / "other-ca", "Other CA").issue("eve", client=True)
    r = request(tg, client_context(cert=other[0], key=other[1]))
    assert r.status == 302 and r.header("Location") == page
    assert b.requests == 0
    good = client_ca.issue("alice", client=True)
    assert request(tg, client_context(cert=good[0], key=good[1])).status == 200
    assert tg.metric("tidegate_tls_client_certificate_rejections_total", reason="missing") == 1
    assert tg.metric("tidegate_tls_client_certificate_rejections_total", reason="invalid") == 1

    ann = {A + "auth-tls-secret": "default/client-ca", A + "auth-tls-verify-client": "on",
           A + "auth-tls-error-page": "/cert-error"}
    tg.reload("30-app.yaml", tls_ingress("app", ["app.test"], "app-tls", annotations=ann))
    r = request(tg, client_context())
    assert r.status == 400 and b"No required SSL certificate was sent" in r.body
    assert ('annotation nginx.ingress.kubernetes.io/auth-tls-error-page: "/cert-error" is not '
            'an absolute http(s) URL: certificate errors keep answering 400' in tg.stderr())
