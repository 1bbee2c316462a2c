"""OCSP stapling (ConfigMap enable-ocsp, as ingress-nginx): responses are
fetched in the background from the responder the certificate names (a real
`openssl ocsp` responder on loopback here), checked, and stapled when a client
asks (openssl s_client -status); revoked answers are stapled as they are; a
certificate whose responder is down is served without a staple; off by
default."""
import subprocess
import time

from backends import free_port
from conftest import INGRESS_CLASS, SLOWDOWN, configmap
from tls_env import CA, OPENSSL, backend_manifests, run, s_client, start, tls_ingress, tls_secret


def issue_with_ocsp(ca, cn, url):
    """A server certificate for cn whose AIA names url: (crt, key, serial)."""
    crt, key = ca.issue(cn, sans=[cn], ocsp_url=url)
    return crt, key, ca.serial


def index_line(crt, serial, revoked=False):
    end = run(OPENSSL, "x509", "-in", crt, "-noout", "-enddate").stdout.decode().strip()
    end = end.split("=", 1)[1]
    t = time.strptime(end, "%b %d %H:%M:%S %Y GMT")
    enddate = time.strftime("%y%m%d%H%M%SZ", t)
    subj = run(OPENSSL, "x509", "-in", crt, "-noout", "-subject", "-nameopt", "compat"
               ).stdout.decode().strip().split("=", 1)[1].strip()
    rev = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() - 3600)) if revoked else ""
    return f"{'R' if revoked else 'V'}\t{enddate}\t{rev}\t{serial:02X}\tunknown\t{subj}\n"


def chain_secret(name, crt, key, ca):
    """tls.crt = leaf + issuer (stapling needs the issuer)."""
    pem = open(crt, "rb").read() + ca.pem()
    return tls_secret(name, crt_pem=pem, key_pem=open(key, "rb").read())


def staple(port, host):
    out = s_client(port, sni=host, extra=["-status"], wait=0.1)
    if "OCSP response: no response sent" in out:
        return None
    if "OCSP Response Status: successful" not in out:
        return "?" + out[-400:]
    for line in out.splitlines():
        if "Cert Status:" in line:
            return line.split(":", 1)[1].strip()
    return "?" + out[-400:]


def wait_staple(port, host, want, timeout=15.0):
    end = time.time() + timeout * SLOWDOWN
    got = None
    while time.time() < end:
        got = staple(port, host)
        if got == want:
            return
        time.sleep(0.2)
    raise AssertionError(f"{host}: stapled {got!r}, want {want!r}")


def test_ocsp_stapling(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca", "OCSP CA")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    good = issue_with_ocsp(ca, "good.test", url)
    bad = issue_with_ocsp(ca, "revoked.test", url)
    down = issue_with_ocsp(ca, "down.test", f"http://127.0.0.1:{free_port()}")
    idx = tmp_path / "index.txt"
    idx.write_text(index_line(good[0], good[2]) + index_line(bad[0], bad[2], revoked=True))
    responder = subprocess.Popen(
        [OPENSSL, "ocsp", "-index", str(idx), "-port", str(port), "-rsigner", ca.crt,
         "-rkey", ca.key, "-CA", ca.crt, "-nmin", "10", "-ignore_err"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        b = backend()
        m = {"00-class.yaml": INGRESS_CLASS, "10-app.yaml": backend_manifests([b.port]),
             "20-secrets.yaml": "---".join(chain_secret(n, c[0], c[1], ca) for n, c in
                                           (("good", good), ("revoked", bad), ("down", down))),
             "30-ing.yaml": "---".join(tls_ingress(n, [f"{n}.test"], n) for n in
                                       ("good", "revoked", "down"))}
        # Off by default: nothing stapled, even with a responder.
        tg = start(tidegate, m)
        time.sleep(1.0)
        assert staple(tg.https, "good.test") is None
        # On: the responder's answers, good and revoked, stapled.
        tg.reload("01-configmap.yaml", configmap({"enable-ocsp": "true"}))
        wait_staple(tg.https, "good.test", "good")
        wait_staple(tg.https, "revoked.test", "revoked")
        # A responder that does not answer: served, without a staple, and said.
        assert staple(tg.https, "down.test") is None
        end = time.time() + 15 * SLOWDOWN
        while "OCSP: no response from" not in tg.stderr() and time.time() < end:
            time.sleep(0.2)
        assert "OCSP: no response from http://127.0.0.1:" in tg.stderr()
        assert tg.metric("tidegate_tls_ocsp_certificates", state="stapled") == 2
        assert tg.metric("tidegate_tls_ocsp_certificates", state="without_response") == 1
        assert tg.metric("tidegate_tls_ocsp_fetches_total", result="ok") >= 2
        assert tg.metric("tidegate_tls_ocsp_fetches_total", result="error") >= 1
        assert tg.metric("tidegate_tls_ocsp_staples_total") >= 2
        # The responder going away later does not take the staple with it
        # (the response is valid for 10 minutes).
        responder.terminate()
        responder.wait(5)
        assert staple(tg.https, "good.test") == "good"
        # Off again: no staple.
        tg.reload("01-configmap.yaml", configmap({"enable-ocsp": "false"}))
        assert staple(tg.https, "good.test") is None
        # Once the old contexts are released (workers move to the new
        # snapshot), no certificate is counted any more.
        end = time.time() + 10 * SLOWDOWN
        while (tg.metric("tidegate_tls_ocsp_certificates", state="stapled") != 0
               and time.time() < end):
            s_client(tg.https, sni="good.test", wait=0)
            time.sleep(0.1)
        assert tg.metric("tidegate_tls_ocsp_certificates", state="stapled") == 0
    finally:
        if responder.poll() is None:
            responder.terminate()
            responder.wait(5)
