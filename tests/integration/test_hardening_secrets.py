"""Secrets never reach logs or metrics.

tidegate is given TLS Secrets (good ones, and broken ones whose broken values
are themselves key material) and a kubeconfig with a bearer token (refused by
the API server, then a kubeconfig it cannot use at all); errors are triggered
around each, and tidegate's stderr, stdout (access log) and /metrics are
searched for any piece of the private keys or the token.
"""
import base64
import os
import re
import shutil
import subprocess
import time

import pytest

from backends import get
from conftest import SLOWDOWN, TIDEGATE, Tidegate, app_manifests

pytestmark = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl(1) is needed to make keys")


def make_key_cert(d, name, cn):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + cn],
                   check=True, capture_output=True)
    return open(key, "rb").read(), open(crt, "rb").read()


def pem_body_pieces(pem):
    """Fragments of a PEM's base64 body that must never be printed: every
    24-character window start of each body line (a log that quotes any part
    of a line is caught)."""
    pieces = set()
    for line in pem.decode().splitlines():
        if line.startswith("-----") or len(line) < 24:
            continue
        for i in range(0, len(line) - 23, 8):
            pieces.add(line[i:i + 24])
    return pieces


def tls_secret(name, crt, key, b64=True):
    if b64:
        data = (f"  tls.crt: {base64.b64encode(crt).decode()}\n"
                f"  tls.key: {base64.b64encode(key).decode()}\n")
        section = "data"
    else:
        data = ("  tls.crt: |\n" + "".join("    " + l + "\n" for l in crt.decode().splitlines()) +
                "  tls.key: |\n" + "".join("    " + l + "\n" for l in key.decode().splitlines()))
        section = "stringData"
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: default}}
type: kubernetes.io/tls
{section}:
{data}"""


def tls_ingress(name, host, secret, svc="app"):
    return f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: {name}, namespace: default}}
spec:
  ingressClassName: tidegate
  tls: [{{hosts: ["{host}"], secretName: {secret}}}]
  rules:
    - host: "{host}"
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}
"""


def leaks(text, secrets):
    return sorted(s for s in secrets if s in text)


def test_tls_keys_never_logged_or_exported(tidegate, backend, tmp_path):
    d = str(tmp_path)
    good_key, good_crt = make_key_cert(d, "good", "good.test")
    other_key, _ = make_key_cert(d, "other", "other.test")
    bad_key, bad_crt = make_key_cert(d, "bad", "bad.test")
    secrets = pem_body_pieces(good_key) | pem_body_pieces(other_key) | pem_body_pieces(bad_key)
    # a "key" that is not PEM at all but obviously secret text
    marker = "TGSECRETMARKER0123456789abcdefTGSECRET"
    secrets.add(marker)
    # a key whose PEM body is corrupted half-way (bad value, still key material)
    lines = bad_key.decode().splitlines()
    lines[2] = lines[2][:10] + "!!!" + lines[2][13:]
    corrupt = ("\n".join(lines) + "\n").encode()
    secrets |= pem_body_pieces(corrupt)

    b = backend()
    files = app_manifests([b.port])
    files["30-good.yaml"] = tls_secret("good-tls", good_crt, good_key) + "---" + \
        tls_ingress("good", "good.test", "good-tls")
    files["31-mismatch.yaml"] = tls_secret("mismatch-tls", good_crt, other_key, b64=False) + "---" + \
        tls_ingress("mismatch", "mismatch.test", "mismatch-tls")
    files["32-garbage.yaml"] = tls_secret("garbage-tls", bad_crt, marker.encode()) + "---" + \
        tls_ingress("garbage", "garbage.test", "garbage-tls")
    files["33-corrupt.yaml"] = tls_secret("corrupt-tls", bad_crt, corrupt, b64=False) + "---" + \
        tls_ingress("corrupt", "corrupt.test", "corrupt-tls")
    # data that is not base64, made of key material
    body = "".join(l for l in other_key.decode().splitlines() if not l.startswith("-----"))
    files["34-notb64.yaml"] = f"""
apiVersion: v1
kind: Secret
metadata: {{name: notb64-tls, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: "{base64.b64encode(bad_crt).decode()}"
  tls.key: "{body}%%%{marker}"
"""
    # broken YAML on the key's own line
    files["35-broken.yaml"] = f"""
apiVersion: v1
kind: Secret
metadata: {{name: broken-tls, namespace: default}}
type: kubernetes.io/tls
stringData:
  tls.key: "{body[:60]}{marker}
  tls.crt: [unclosed
"""
    tg = tidegate(files)
    # exercise the data path and a reload with the secrets changed
    assert get(tg.port, "/", host="app.test").status == 200
    get(tg.port, "/?" + marker, host="good.test")  # a query string is logged; not a secret
    tg.write("36-late.yaml", tls_secret("late-tls", good_crt, b"not a key " + marker.encode()))
    time.sleep(0.5 * SLOWDOWN)
    os.kill(tg.proc.pid, 1)  # SIGHUP: everything re-read and re-validated
    time.sleep(0.5 * SLOWDOWN)
    err = tg.stderr()
    # every broken Secret was reported (so the errors around the keys happened)
    for what in ("35-broken.yaml", "notb64-tls", "corrupt-tls", "garbage-tls", "mismatch-tls"):
        assert what in err, f"{what} was not reported:\n" + err[-3000:]
    metrics = tg.metrics()
    assert leaks(err, secrets) == [], "key material in stderr"
    assert leaks(metrics, secrets) == [], "key material in /metrics"
    tg.stop()
    out = "\n".join(tg.access_log())
    secrets.discard(marker)  # the request above put it in a URL on purpose
    assert leaks(out, secrets) == [], "key material in the access log"


def test_kubeconfig_token_never_logged_or_exported(tmp_path):
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")
    from fake_apiserver import FakeApiServer
    from test_kube_api import CLASS, KubeTidegate, kubeconfig
    token = "tg-token-Zq8RvK3mW1xY7pLs9dF2hJ4nB6cV0aE5"
    right = "tg-right-token-not-in-kubeconfig-123456"
    secrets = {token, token[:16], token[-16:]}
    api = FakeApiServer(token=right).start()
    try:
        api.apply(CLASS)
        kc = kubeconfig(str(tmp_path / "kc.json"), f"http://127.0.0.1:{api.port}", {"token": token})
        t = KubeTidegate(tmp_path, kc)
        # the API refuses the token: tidegate keeps retrying and logging why
        end = time.time() + 5 * SLOWDOWN
        while time.time() < end and not re.search(r"401|[Uu]nauthori[sz]ed|forbidden", t.stderr()):
            time.sleep(0.1)
        metrics = ""
        if t.admin_port:
            import urllib.request
            with urllib.request.urlopen(f"http://127.0.0.1:{t.admin_port}/metrics", timeout=5) as r:
                metrics = r.read().decode()
        t.stop()
        err = t.stderr()
        assert re.search(r"401|[Uu]nauthori[sz]ed", err), "the refused token was not reported:\n" + err[-2000:]
        assert leaks(err, secrets) == [], "token in stderr"
        assert leaks(metrics, secrets) == [], "token in /metrics"

        # kubeconfigs tidegate cannot use, each holding the token next to the error
        bad_cases = {
            "token_is_a_list": {"token": [token]},
            "token_and_bad_file": {"token": token, "tokenFile": str(tmp_path / "missing")},
            "client_key_not_base64": {"token": token, "client-key-data": token + "%%%",
                                      "client-certificate-data": "also%%%bad"},
        }
        for name, user in bad_cases.items():
            d = tmp_path / name
            d.mkdir()
            kc = kubeconfig(str(d / "kc.json"), f"http://127.0.0.1:{api.port}", user)
            t = KubeTidegate(d, kc)
            if t.proc.poll() is None:
                t.stop()
            else:
                t.proc.wait()
            err = t.stderr()
            assert leaks(err, secrets) == [], f"{name}: token in stderr:\n{err[-1500:]}"
    finally:
        api.stop()
