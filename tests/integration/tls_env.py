"""Helpers for the TLS integration tests (tests/integration/test_tls_*.py).

Certificates are made with the openssl CLI in the test's temp dir: a CA per
test, leaf certificates signed by it (ECDSA P-256), client certificates from
the same or another CA, and expired ones through `openssl ca` with an explicit
validity window in the past.

Clients: Python's ssl module (requests over TLS on keep-alive connections),
`openssl s_client` (protocol versions, resumption) and curl.
"""
import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from backends import Conn, read_response
from conftest import INGRESS_CLASS, configmap, endpoints, service

OPENSSL = shutil.which("openssl")


def need_openssl():
    if not OPENSSL:
        pytest.skip("openssl(1) not installed")


def run(*args, input=None, timeout=30):
    return subprocess.run(list(args), input=input, capture_output=True, timeout=timeout)


class CA:
    """A throwaway certificate authority in directory d."""

    def __init__(self, d, name="Test CA"):
        need_openssl()
        self.d = str(d)
        os.makedirs(self.d, exist_ok=True)
        tag = re.sub(r"\W", "_", name)
        self.key = os.path.join(self.d, f"{tag}.key")
        self.crt = os.path.join(self.d, f"{tag}.crt")
        self.serial = 1
        r = run(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", self.key, "-out", self.crt, "-days", "30", "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        assert r.returncode == 0, r.stderr

    def pem(self):
        return open(self.crt, "rb").read()

    def issue(self, cn, sans=(), client=False, days=30, expired=False, ocsp_url=None):
        """Returns (cert_path, key_path) of a leaf signed by this CA (serial
        self.serial); ocsp_url: its Authority Information Access responder."""
        self.serial += 1
        base = os.path.join(self.d, f"{re.sub(r'[^A-Za-z0-9]', '_', cn)}-{self.serial}")
        key, csr, crt, ext = base + ".key", base + ".csr", base + ".crt", base + ".ext"
        r = run(OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        assert r.returncode == 0, r.stderr
        with open(ext, "w") as f:
            if sans:
                f.write("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans) + "\n")
            f.write("extendedKeyUsage=" + ("clientAuth" if client else "serverAuth") + "\n")
            if ocsp_url:
                f.write(f"authorityInfoAccess=OCSP;URI:{ocsp_url}\n")
        if expired:
            return expired_cert(self, cn, client, base)
        args = [OPENSSL, "x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", self.key,
                "-set_serial", str(self.serial), "-out", crt, "-extfile", ext]
        args += ["-days", str(days)]
        r = run(*args)
        assert r.returncode == 0, r.stderr
        return crt, key


def expired_cert(ca, cn, client, base):
    """A leaf whose validity ended in the past, signed by ca (openssl ca with
    explicit -startdate/-enddate)."""
    d = base + "-ca"
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        f.write("%04X\n" % (ca.serial + 1000))
    cnf = os.path.join(d, "ca.cnf")
    with open(cnf, "w") as f:
        f.write(f"""[ca]
default_ca = tg
[tg]
dir = {d}
database = {d}/index.txt
serial = {d}/serial
new_certs_dir = {d}
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
[ext]
extendedKeyUsage = {"clientAuth" if client else "serverAuth"}
""")
    key, csr, crt = base + ".key", base + ".csr", base + ".crt"
    r = run(OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
    assert r.returncode == 0, r.stderr
    r = run(OPENSSL, "ca", "-batch", "-config", cnf, "-cert", ca.crt, "-keyfile", ca.key,
            "-in", csr, "-out", crt, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
            "-extensions", "ext", "-notext")
    assert r.returncode == 0, r.stderr
    return crt, key


def self_signed(d, cn, sans=()):
    need_openssl()
    base = os.path.join(str(d), re.sub(r"[^A-Za-z0-9]", "_", cn) + f"-{time.monotonic_ns()}")
    args = [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", base + ".key", "-out", base + ".crt", "-days", "30", "-subj", f"/CN={cn}"]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join(f"DNS:{s}" for s in sans)]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return base + ".crt", base + ".key"


# ------------------------------------------------------------------ manifests

def b64(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def tls_secret(name, crt=None, key=None, ns="default", ca=None, crt_pem=None, key_pem=None):
    """A kubernetes.io/tls Secret from files (or raw PEM bytes); ca adds ca.crt."""
    data = {}
    if crt or crt_pem is not None:
        data["tls.crt"] = b64(crt_pem if crt_pem is not None else open(crt, "rb").read())
    if key or key_pem is not None:
        data["tls.key"] = b64(key_pem if key_pem is not None else open(key, "rb").read())
    if ca is not None:
        data["ca.crt"] = b64(ca)
    lines = "\n".join(f"  {k}: {v}" for k, v in data.items())
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {ns}}}
type: {"kubernetes.io/tls" if "tls.crt" in data else "Opaque"}
data:
{lines}
"""


def tls_ingress(name, hosts, secret, svc="app", ns="default", annotations=None, tls_hosts=None,
                path="/"):
    """An Ingress routing each host / to svc:80, with spec.tls (tls_hosts, default: hosts)
    naming `secret` (None: no spec.tls)."""
    ann = ""
    if annotations:
        ann = "  annotations:\n" + "\n".join(f'    {k}: "{v}"' for k, v in annotations.items()) + "\n"
    tls = ""
    if secret is not None:
        th = hosts if tls_hosts is None else tls_hosts
        tls = "  tls:\n    - hosts: [" + ", ".join(f'"{h}"' for h in th) + "]\n" + \
              (f"      secretName: {secret}\n" if secret else "")
    rules = "".join(f"""    - host: "{h}"
      http:
        paths:
          - path: {path}
            pathType: Prefix
            backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}
""" for h in hosts)
    return f"""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: {ns}
{ann}spec:
  ingressClassName: tidegate
{tls}  rules:
{rules}"""


def backend_manifests(ports, svc="app"):
    return service(svc) + "---" + endpoints(svc, ports)


# ------------------------------------------------------------------ process

def https_port(tg):
    m = re.search(r"https on port (\d+)", tg.stderr())
    assert m, "no https port in the log: " + tg.stderr()[-2000:]
    return int(m.group(1))


def start(tidegate, manifests, workers=2, args=()):
    """Starts tidegate with an HTTPS listener on a kernel-chosen port; tg.https is its port."""
    tg = tidegate(manifests, workers=workers, args=["--https-listen", "127.0.0.1:0", *args])
    tg.https = https_port(tg)
    return tg


# ------------------------------------------------------------------ clients

def client_context(ca_file=None, cert=None, key=None, versions=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_file:
        ctx.load_verify_locations(ca_file)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    if versions:
        ctx.minimum_version, ctx.maximum_version = versions
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class TLSClient:
    """A keep-alive HTTP/1.1 client over TLS (one connection)."""

    def __init__(self, port, sni="app.test", ctx=None, timeout=10):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = (ctx or client_context()).wrap_socket(raw, server_hostname=sni)
        self.conn = Conn(self.sock)

    def request(self, path="/", host="app.test", headers=(), method="GET", body=None):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        return read_response(self.conn, method)

    def peer_cn(self):
        der = self.sock.getpeercert(binary_form=True)
        return cert_cn(der)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def cert_cn(der):
    r = run(OPENSSL, "x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253", input=der)
    m = re.search(r"CN=([^,\n]+)", r.stdout.decode())
    return m.group(1) if m else None


def tls_get(port, path="/", host="app.test", sni=None, ctx=None, headers=()):
    c = TLSClient(port, sni=host if sni is None else sni, ctx=ctx)
    try:
        return c.request(path, host=host, headers=headers)
    finally:
        c.close()


def s_client(port, sni=None, extra=(), sess_in=None, sess_out=None, wait=0.3, timeout=20):
    """Runs openssl s_client; returns its combined output. Stays connected
    `wait` seconds so that TLS 1.3 tickets arrive before it quits."""
    args = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", *extra]
    if sni:
        args += ["-servername", sni]
    else:
        args += ["-noservername"]
    if sess_in:
        args += ["-sess_in", sess_in]
    if sess_out:
        args += ["-sess_out", sess_out]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(wait)
    out, _ = p.communicate(b"", timeout=timeout)
    return out.decode("utf-8", "replace")


def s_client_cn(out):
    m = re.search(r"subject=.*?CN\s*=\s*([^,\n]+)", out)
    return m.group(1).strip() if m else None


def header_of(resp_json, name):
    """A request field as the backend saw it (from the backend's JSON), or None."""
    vals = [v for k, v in resp_json["headers"] if k.lower() == name.lower()]
    return vals[0] if vals else None


def headers_of(resp_json, name):
    return [v for k, v in resp_json["headers"] if k.lower() == name.lower()]
