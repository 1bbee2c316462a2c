"""testssl.sh audit of the HTTPS listener with its defaults (Mozilla
intermediate): no protocol older than TLS 1.2 offered, and no finding in the
vulnerability checks worse than OK/INFO. Run against an RSA certificate
(the default ssl-ciphers then also offer DHE-RSA, which LOGJAM and the DH
checks look at) chosen by SNI."""
import json
import os
import shutil
import subprocess

import pytest

from conftest import INGRESS_CLASS, SLOWDOWN
from tls_env import OPENSSL, backend_manifests, need_openssl, start, tls_ingress, tls_secret

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")


def test_testssl_reports_no_vulnerability_and_nothing_below_tls12(tidegate, backend, tmp_path):
    if not TESTSSL:
        pytest.skip("testssl.sh not installed (Debian package testssl.sh; scripts/setup installs it)")
    need_openssl()
    key, crt = str(tmp_path / "rsa.key"), str(tmp_path / "rsa.crt")
    r = subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "30", "-subj", "/CN=audit.test", "-addext", "subjectAltName=DNS:audit.test"],
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    b = backend()
    m = {"00-class.yaml": INGRESS_CLASS, "10-app.yaml": backend_manifests([b.port]),
         "20-secret.yaml": tls_secret("audit-tls", crt, key),
         "30-app.yaml": tls_ingress("audit", ["audit.test"], "audit-tls")}
    tg = start(tidegate, m)
    out = str(tmp_path / "testssl.json")
    p = subprocess.run([TESTSSL, "--quiet", "--color", "0", "--warnings", "off", "--ip", "127.0.0.1",
                        "-p", "-U", "--jsonfile-pretty", out, f"audit.test:{tg.https}"],
                       capture_output=True, timeout=600 * SLOWDOWN)
    assert os.path.exists(out), p.stdout.decode()[-3000:] + p.stderr.decode()[-2000:]
    scan = json.load(open(out))["scanResult"][0]
    protos = {f["id"]: f["finding"] for f in scan["protocols"]}
    for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert protos.get(old, "").startswith("not offered"), (old, protos)
    assert protos["TLS1_2"].startswith("offered") and protos["TLS1_3"].startswith("offered"), protos
    assert protos["ALPN"] == "http/1.1"
    bad = [(f["id"], f["severity"], f["finding"]) for f in scan["vulnerabilities"]
           if f["severity"] not in ("OK", "INFO")]
    assert not bad, bad
    assert len(scan["vulnerabilities"]) >= 15  # the checks did run
