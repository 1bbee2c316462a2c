"""HTTPS listener: certificates per SNI, default certificate, protocols and
ciphers, live Secret changes, plain HTTP on the HTTPS port, ssl-redirect,
handshake timeout. Real clients: Python's ssl, openssl s_client, curl."""
import shutil
import socket
import subprocess
import threading
import time

import pytest

from backends import get
from conftest import INGRESS_CLASS, SLOWDOWN, configmap
from tls_env import (CA, OPENSSL, TLSClient, backend_manifests, client_context, header_of, need_openssl,
                     s_client, s_client_cn, self_signed, start, tls_get, tls_ingress, tls_secret)


def manifests(ca, backend_port, extra=None):
    a_crt, a_key = ca.issue("a.test", sans=["a.test"])
    b_crt, b_key = ca.issue("b.test", sans=["b.test"])
    w_crt, w_key = ca.issue("wild", sans=["*.wild.test"])
    m = {
        "00-class.yaml": INGRESS_CLASS,
        "10-app.yaml": backend_manifests([backend_port]),
        "20-secrets.yaml": tls_secret("a-tls", a_crt, a_key) + "---" + tls_secret("b-tls", b_crt, b_key)
        + "---" + tls_secret("wild-tls", w_crt, w_key),
        "30-a.yaml": tls_ingress("a", ["a.test"], "a-tls"),
        "31-b.yaml": tls_ingress("b", ["b.test"], "b-tls"),
        "32-wild.yaml": tls_ingress("wild", ["*.wild.test"], "wild-tls"),
    }
    m.update(extra or {})
    return m


def test_sni_picks_certificate_wildcard_and_default(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port))
    ctx = client_context(ca.crt)  # verifies chain and host name
    for host, cn in [("a.test", "a.test"), ("b.test", "b.test"), ("x.wild.test", "wild")]:
        c = TLSClient(tg.https, sni=host, ctx=ctx)
        assert c.peer_cn() == cn
        r = c.request(host=host)
        assert r.status == 200, r.body
        assert header_of(r.json(), "X-Forwarded-Proto") == "https"
        assert header_of(r.json(), "X-Forwarded-Port") == str(tg.https)
        c.close()
    # Unknown SNI, no SNI, and a name two labels under the wildcard: default.
    assert s_client_cn(s_client(tg.https, sni="other.test")) == "tidegate default"
    assert s_client_cn(s_client(tg.https)) == "tidegate default"
    assert s_client_cn(s_client(tg.https, sni="a.b.wild.test")) == "tidegate default"
    assert tg.metric("tidegate_tls_default_certificate_total") >= 3


def test_host_header_picks_the_route_not_sni(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b1, b2 = backend(name="one"), backend(name="two")
    m = manifests(ca, b1.port)
    m["10-two.yaml"] = backend_manifests([b2.port], svc="two")
    m["31-b.yaml"] = tls_ingress("b", ["b.test"], "b-tls", svc="two")
    tg = start(tidegate, m)
    r = tls_get(tg.https, host="b.test", sni="a.test")
    assert r.status == 200 and r.json()["backend"] == "two"
    r = tls_get(tg.https, host="a.test", sni="a.test")
    assert r.json()["backend"] == "one"


def test_default_ssl_certificate_flag(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    d_crt, d_key = ca.issue("my default")
    m = manifests(ca, b.port, {"21-default.yaml": tls_secret("fallback", d_crt, d_key, ns="infra")})
    tg = start(tidegate, m, args=["--default-ssl-certificate", "infra/fallback"])
    assert s_client_cn(s_client(tg.https, sni="nowhere.test")) == "my default"
    assert s_client_cn(s_client(tg.https, sni="a.test")) == "a.test"


def test_tls12_and_tls13_with_alpn_and_nothing_older(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port))
    for flag, proto in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")]:
        out = s_client(tg.https, sni="a.test", extra=[flag, "-alpn", "h2,http/1.1"])
        assert f"Protocol  : {proto}" in out or f"New, {proto}" in out, out
        assert "ALPN protocol: http/1.1" in out, out
    out = s_client(tg.https, sni="a.test", extra=["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"])
    assert "Cipher is (NONE)" in out or "alert" in out, out
    # curl over TLS 1.2 and 1.3, verifying against the CA.
    for v in ("--tlsv1.2 --tls-max 1.2", "--tlsv1.3"):
        r = subprocess.run(["curl", "-sS", "--cacert", ca.crt, "--resolve", f"a.test:{tg.https}:127.0.0.1",
                            *v.split(), "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                            f"https://a.test:{tg.https}/"], capture_output=True, timeout=20)
        assert r.stdout.decode() == "200 1.1", r.stderr
    assert tg.metric("tidegate_tls_handshakes_total", protocol="TLSv1.2") >= 2
    assert tg.metric("tidegate_tls_handshakes_total", protocol="TLSv1.3") >= 2


def test_ssl_protocols_and_ssl_ciphers_keys(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    m = manifests(ca, b.port, {"01-cm.yaml": configmap({"ssl-protocols": "TLSv1.2",
                                                         "ssl-ciphers": "ECDHE-ECDSA-CHACHA20-POLY1305"})})
    tg = start(tidegate, m)
    out = s_client(tg.https, sni="a.test", extra=["-tls1_3"])
    assert "Cipher is (NONE)" in out or "alert" in out, out
    out = s_client(tg.https, sni="a.test")
    assert "New, TLSv1.2, Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in out, out
    # A bad value is rejected with the key named; the previous value stays.
    tg.reload("01-cm.yaml", configmap({"ssl-protocols": "TLSv1.2 SSLv9", "ssl-ciphers": "NOPE-NOPE"}))
    err = tg.stderr()
    assert "key ssl-protocols: bad value" in err and "SSLv9" in err
    assert "key ssl-ciphers: bad value" in err
    out = s_client(tg.https, sni="a.test")
    assert "New, TLSv1.2, Cipher is ECDHE-ECDSA-CHACHA20-POLY1305" in out, out


def test_secret_change_applies_live_and_bad_secret_keeps_last_good(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port))
    assert s_client_cn(s_client(tg.https, sni="a.test")) == "a.test"
    # A keep-alive connection opened before the change keeps working.
    c = TLSClient(tg.https, sni="a.test")
    assert c.request(host="a.test").status == 200
    crt, key = ca.issue("a.test renewed", sans=["a.test"])
    tg.reload("20-secrets.yaml", tls_secret("a-tls", crt, key))
    assert s_client_cn(s_client(tg.https, sni="a.test")) == "a.test renewed"
    assert c.request(host="a.test").status == 200
    # Key of another certificate: rejected, named, and the renewed one stays.
    other_crt, other_key = ca.issue("mismatch", sans=["a.test"])
    tg.reload("20-secrets.yaml", tls_secret("a-tls", crt, other_key))
    err = tg.stderr()
    assert "default/a-tls:" in err and "does not match" in err, err[-2000:]
    assert s_client_cn(s_client(tg.https, sni="a.test")) == "a.test renewed"
    # Garbage PEM: same.
    tg.reload("20-secrets.yaml", tls_secret("a-tls", crt_pem=b"not a certificate", key_pem=b"nor a key"))
    assert s_client_cn(s_client(tg.https, sni="a.test")) == "a.test renewed"
    assert c.request(host="a.test").status == 200
    c.close()


def test_missing_secret_serves_default_certificate_and_redirects(tidegate, backend, tmp_path):
    b = backend()
    m = {"00-class.yaml": INGRESS_CLASS, "10-app.yaml": backend_manifests([b.port]),
         "30-a.yaml": tls_ingress("a", ["a.test"], "nope-tls")}
    tg = start(tidegate, m)
    assert "default/nope-tls not found" in tg.stderr()
    assert s_client_cn(s_client(tg.https, sni="a.test")) == "tidegate default"
    assert tls_get(tg.https, host="a.test").status == 200


def test_plain_http_on_https_port(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port))
    r = get(tg.https, "/", host="a.test")
    assert r.status == 400
    assert b"The plain HTTP request was sent to HTTPS port" in r.body
    assert tg.metric("tidegate_tls_handshake_errors_total", reason="plain_http") == 1
    assert tls_get(tg.https, host="a.test").status == 200


def test_ssl_redirect(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    m = manifests(ca, b.port, {
        "33-noredirect.yaml": tls_ingress("c", ["c.test"], "a-tls",
                                          annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"}),
        "34-force.yaml": tls_ingress("f", ["f.test"], None,
                                     annotations={"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}),
        "35-plain.yaml": tls_ingress("p", ["p.test"], None),
    })
    tg = start(tidegate, m)
    r = get(tg.port, "/x?y=1", host="a.test")
    assert r.status == 308 and r.header("Location") == "https://a.test/x?y=1"
    assert get(tg.port, "/", host="c.test").status == 200      # annotation ssl-redirect: false
    r = get(tg.port, "/", host="f.test")                        # force-ssl-redirect without spec.tls
    assert r.status == 308 and r.header("Location") == "https://f.test/"
    assert get(tg.port, "/", host="p.test").status == 200      # no TLS at all
    # Over HTTPS nothing redirects.
    for h in ("a.test", "f.test"):
        assert tls_get(tg.https, host=h).status == 200
    # Global ssl-redirect: false.
    tg.reload("01-cm.yaml", configmap({"ssl-redirect": "false"}))
    assert get(tg.port, "/", host="a.test").status == 200
    assert get(tg.port, "/", host="f.test").status == 308


def test_stalled_handshake_times_out_without_blocking_others(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port, {"01-cm.yaml": configmap({"client-header-timeout": "1"})}),
               workers=1)
    # Half a ClientHello record header, then silence.
    stalled = [socket.create_connection(("127.0.0.1", tg.https)) for _ in range(3)]
    for s in stalled:
        s.sendall(b"\x16\x03\x01\x02")
    # The single worker keeps serving full handshakes meanwhile.
    for _ in range(5):
        assert tls_get(tg.https, host="a.test").status == 200
    t0 = time.time()
    for s in stalled:
        s.settimeout(10 * SLOWDOWN)
        assert s.recv(100) == b""  # closed by tidegate
        s.close()
    assert time.time() - t0 < 8 * SLOWDOWN
    assert tg.metric("tidegate_tls_handshake_errors_total", reason="abandoned") == 3
