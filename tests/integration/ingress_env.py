"""Helpers for the Ingress conformance and live-configuration tests.

EchoBackend   a pod stand-in: an HTTP/1.1 keep-alive server on any loopback
              address (127.0.0.N or ::1) that answers every request with JSON
              naming the Service it belongs to and the endpoint (address:port)
              that answered, plus the method, target and Host it received.
Manifests     Kubernetes objects as Python dicts, written as YAML documents
              (JSON flow style, which is YAML) so that tests read like the
              objects a user applies: ingress_class, service, endpoint_slice,
              ingress.
ask()         one request on a fresh connection -> Answer(status, service,
              endpoint, doc).
started()     a `tidegate ingress` (conftest.Tidegate) as a context manager,
              for module-scoped fixtures shared by many scenarios.

Standard library only.
"""
import contextlib
import json
import os
import socket
import threading
import time

from backends import Client
from conftest import SLOWDOWN, Tidegate

CONTROLLER = "tidegate.io/ingress-controller"


# ------------------------------------------------------------------ backends

class EchoBackend:
    """A pod: answers every request with {"service", "endpoint", ...}.

    addr: 127.0.0.1 (default), another 127.0.0.N, or ::1. port 0 lets the
    kernel choose. stop() closes the listener and every open connection, as a
    pod that goes away does.
    """

    def __init__(self, service, addr="127.0.0.1", port=0):
        self.service = service
        self.addr = addr
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"[{addr}]:{self.port}" if fam == socket.AF_INET6 else f"{addr}:{self.port}"
        self.requests = 0
        self.lock = threading.Lock()
        self.conns = set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
                c.close()

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    s.close()
                    return
                self.conns.add(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while not self.closed:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = lines[0].split(" ", 2)
                fields = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                n = int(fields.get("content-length", "0") or 0)
                while len(buf) < n:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[n:]
                with self.lock:
                    self.requests += 1
                body = json.dumps({"service": self.service, "endpoint": self.endpoint,
                                   "method": method, "target": target,
                                   "host": fields.get("host", "")}).encode()
                close = fields.get("connection", "").lower() == "close" or version == "HTTP/1.0"
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n%s\r\n" % (len(body), b"Connection: close\r\n" if close else b"")
                          + body)
                if close:
                    return
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.conns.discard(s)
            with contextlib.suppress(OSError):
                s.close()


def loopback_v6():
    """True when ::1 can be bound here (IPv6 loopback configured)."""
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def backends_on_one_port(service, n):
    """n EchoBackends of one Service on 127.0.0.2 .. 127.0.0.(n+1), all on the
    same port, like the pods of a Deployment (one EndpointSlice, one port)."""
    for _ in range(20):
        first = EchoBackend(service, "127.0.0.2")
        out = [first]
        try:
            for i in range(1, n):
                out.append(EchoBackend(service, f"127.0.0.{2 + i}", first.port))
            return out
        except OSError:  # that port is taken on one of the addresses: try another
            for b in out:
                b.stop()
    raise AssertionError("no port free on 127.0.0.2-%d" % (n + 1))


# ------------------------------------------------------------------ manifests

def yaml_docs(*docs):
    """Objects -> one manifest file's text (YAML documents in flow style)."""
    return "".join("---\n" + json.dumps(d, indent=1) + "\n" for d in docs if d)


def ingress_class(name="tidegate", controller=CONTROLLER, default=False):
    meta = {"name": name}
    if default:
        meta["annotations"] = {"ingressclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": meta,
            "spec": {"controller": controller}}


def service(name, ns="default", ports=(("http", 8080, "http"),)):
    """ports: (name, port, targetPort) with targetPort a number or a name."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": pn, "port": p, "targetPort": tp, "protocol": "TCP"}
                               for pn, p, tp in ports]}}


def endpoint_slice(svc, endpoints, port, ns="default", name=None, port_name="http", v6=False):
    """endpoints: addresses (ready), or dicts {"addr", "ready", "serving",
    "terminating"} with absent conditions left out of the object. port: the
    pods' port for the Service port named port_name, or a list of
    (name, port) for a Service with several ports."""
    ports = port if isinstance(port, list) else [(port_name, port)]
    eps = []
    for e in endpoints:
        if isinstance(e, str):
            e = {"addr": e, "ready": True}
        cond = {k: e[k] for k in ("ready", "serving", "terminating") if k in e}
        eps.append({"addresses": [e["addr"]], "conditions": cond})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{svc}-slice", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv6" if v6 else "IPv4",
            "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            "endpoints": eps}


def backend_ref(svc, port):
    """port: a number (Service port number) or a string (Service port name)."""
    return {"service": {"name": svc, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def ingress(name, rules=(), ns="default", class_name="tidegate", default=None, annotations=None,
            created=None, legacy_class=None):
    """rules: [(host or None, [(path, pathType, service, port)])];
    default: (service, port) for spec.defaultBackend."""
    meta = {"name": name, "namespace": ns}
    ann = dict(annotations or {})
    if legacy_class:
        ann["kubernetes.io/ingress.class"] = legacy_class
    if ann:
        meta["annotations"] = ann
    if created:
        meta["creationTimestamp"] = created
    spec = {}
    if class_name:
        spec["ingressClassName"] = class_name
    if default:
        spec["defaultBackend"] = backend_ref(*default)
    out_rules = []
    for host, paths in rules:
        r = {}
        if host:
            r["host"] = host
        if paths:
            r["http"] = {"paths": [{"path": p, "pathType": t, "backend": backend_ref(s, port)}
                                   for p, t, s, port in paths]}
        out_rules.append(r)
    if out_rules:
        spec["rules"] = out_rules
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


class Services:
    """Starts one EchoBackend per Service name and gives the Service and its
    EndpointSlice (Service port 8080 named http -> the backend's port)."""

    def __init__(self, *names, ns="default"):
        self.ns = ns
        self.backends = {n: EchoBackend(n) for n in names}

    def docs(self):
        out = []
        for n, b in self.backends.items():
            out.append(service(n, self.ns))
            out.append(endpoint_slice(n, [b.addr], b.port, ns=self.ns))
        return out

    def stop(self):
        for b in self.backends.values():
            b.stop()


# ------------------------------------------------------------------ clients

class Answer:
    def __init__(self, status, doc):
        self.status = status
        self.doc = doc or {}
        self.service = self.doc.get("service")
        self.endpoint = self.doc.get("endpoint")

    def __repr__(self):
        return f"Answer({self.status}, {self.service}, {self.endpoint})"


def ask(port, host, path="/", method="GET", body=None):
    """One request on a new connection; the answering Service (None when the
    answer did not come from an EchoBackend)."""
    c = Client(port)
    try:
        r = c.request(method=method, path=path, host=host, body=body)
    finally:
        c.close()
    doc = None
    if r.header("Content-Type", "") == "application/json":
        try:
            doc = json.loads(r.body)
        except ValueError:
            doc = None
    return Answer(r.status, doc)


def served_by(port, host, path="/", **kw):
    """"<service>" for a 200 from an EchoBackend, else the status as text."""
    a = ask(port, host, path, **kw)
    return a.service if a.status == 200 and a.service else str(a.status)


@contextlib.contextmanager
def started(tmp_dir, manifests, workers=2, args=()):
    """A Tidegate (conftest) stopped (and checked) on exit."""
    os.makedirs(str(tmp_dir), exist_ok=True)
    t = Tidegate(tmp_dir, manifests, workers=workers, args=args)
    try:
        yield t
    finally:
        t.stop()


def wait_for(fn, timeout=10.0, what="condition"):
    """Polls fn() until it returns a true value (returned); bounded."""
    end = time.time() + timeout * SLOWDOWN
    while True:
        v = fn()
        if v:
            return v
        if time.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
