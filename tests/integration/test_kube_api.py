"""`tidegate ingress --kubeconfig FILE`: the Kubernetes API source, end to end.

No Kubernetes API server can run on the test machine, so these tests run
tidegate against fake_apiserver.py, a stand-in written for them that speaks the
documented list/watch wire format (chunked JSON events, bookmarks, 410 Gone as
an ERROR event and as an HTTP status, dropped connections, paginated lists,
status PATCH recording). Requests go through the real proxy to small local
HTTP backends, so each assertion is what a user of the ingress would see.

Covered: routes appear after ADDED, change after MODIFIED, disappear after
DELETED; a 410 relists and the state is right afterwards (an object whose
DELETED event was lost is gone); a dropped watch reconnects; bearer-token
auth over HTTP and client-certificate auth over TLS; the Ingress status is
written once and not rewritten when unchanged; a kubeconfig tidegate cannot
use is refused with a clear error.

Skips (with the reason) while `tidegate ingress` does not dispatch to the API
source yet, and when openssl(1) is missing for the TLS case.
"""
import base64
import os
import re
import signal
import subprocess
import time

import pytest

from backends import get
from conftest import SANITIZER_MARKS, SLOWDOWN, TIDEGATE
from fake_apiserver import FakeApiServer

TOKEN = "tg-integration-token"
WAIT = 15.0 * SLOWDOWN


def wait_for(what, fn, timeout=WAIT):
    """Polls fn until it returns a truthy value; fails naming `what`."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        last = fn()
        if last:
            return last
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------ objects

CLASS = {"kind": "IngressClass", "metadata": {"name": "tidegate"},
         "spec": {"controller": "tidegate.io/ingress-controller"}}


def service(name, ns="default"):
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def slice_(svc, port, ns="default"):
    return {"kind": "EndpointSlice",
            "metadata": {"name": svc + "-1", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


def ingress(name, host, svc, ns="default"):
    return {"kind": "Ingress", "metadata": {"name": name, "namespace": ns},
            "spec": {"ingressClassName": "tidegate", "rules": [{"host": host, "http": {
                "paths": [{"path": "/", "pathType": "Prefix", "backend": {
                    "service": {"name": svc, "port": {"number": 80}}}}]}}]}}


def kubeconfig(path, server, user, cluster_extra=None):
    cluster = {"server": server}
    cluster.update(cluster_extra or {})
    # JSON is YAML: no YAML writer needed.
    import json
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "test",
                   "clusters": [{"name": "fake", "cluster": cluster}],
                   "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "u"}}],
                   "users": [{"name": "u", "user": user}]}, f)
    return path


# ------------------------------------------------------------------ process

class KubeTidegate:
    """`tidegate ingress --kubeconfig` on loopback ports chosen by the kernel."""

    def __init__(self, tmp_path, kc, args=()):
        self.err_path = os.path.join(str(tmp_path), "tidegate.err")
        argv = [TIDEGATE, "ingress", "--kubeconfig", kc, "--http-listen", "127.0.0.1:0",
                "--admin-listen", "127.0.0.1:0", "--workers", "2"] + list(args)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.err_path, "wb"), env=env)
        self.port = self.admin_port = None
        end = time.time() + 20 * SLOWDOWN
        while time.time() < end:
            m = re.search(r"serving http on port (\d+) .*admin on port (\d+)", self.stderr())
            if m:
                self.port, self.admin_port = int(m.group(1)), int(m.group(2))
                return
            if self.proc.poll() is not None:
                return
            time.sleep(0.02)
        raise AssertionError("tidegate did not start: " + self.stderr())

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def metric(self, name, **labels):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics",
                                    timeout=5) as r:
            text = r.read().decode()
        total = None
        for line in text.split("\n"):
            m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            if all(got.get(k) == str(v) for k, v in labels.items()):
                total = (total or 0) + float(m.group(3))
        return total

    def backend_for(self, host):
        """Name of the backend answering GET / for host, or the status."""
        r = get(self.port, "/", host=host)
        return r.json()["backend"] if r.status == 200 else r.status

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20 * SLOWDOWN)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("tidegate did not exit after SIGTERM:\n" +
                                     self.stderr()[-3000:])
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, f"sanitizer report in tidegate's stderr:\n{err[-6000:]}"
        assert self.proc.returncode == 0, f"exit status {self.proc.returncode}:\n{err[-3000:]}"


@pytest.fixture
def kube(tmp_path):
    """Factory: kube(kubeconfig_path, args=()) -> a started KubeTidegate."""
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")
    started = []

    def start(kc, args=(), expect_exit=False):
        d = tmp_path / f"tg{len(started)}"
        d.mkdir()
        t = KubeTidegate(d, kc, args)
        if t.proc.poll() is not None and not expect_exit:
            raise AssertionError(f"tidegate exited ({t.proc.returncode}): {t.stderr()}")
        if not expect_exit:
            started.append(t)
        return t

    yield start
    errors = []
    for t in started:
        try:
            t.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def api():
    made = []

    def make(**kw):
        s = FakeApiServer(**kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def populate(s, a_port, b_port):
    s.apply(CLASS)
    s.apply(service("alpha"))
    s.apply(slice_("alpha", a_port))
    s.apply(service("beta"))
    s.apply(slice_("beta", b_port))
    s.apply(ingress("app", "app.test", "alpha"))


def writes_for(s, name):
    return [w for w in s.status_writes if w["name"] == name]


# ------------------------------------------------------------------ tests

def test_watch_events_drive_routes_and_status(api, kube, backend, tmp_path):
    a, b = backend(name="alpha"), backend(name="beta")
    s = api(token=TOKEN)
    s.set(max_page=1)  # every list is paginated with continue tokens
    populate(s, a.port, b.port)
    kc = kubeconfig(str(tmp_path / "kubeconfig"), f"http://127.0.0.1:{s.port}",
                    {"token": TOKEN})
    tg = kube(kc, ["--publish-status-address", "198.18.0.10,lb.example.test"])

    wait_for("app.test routed to alpha", lambda: tg.backend_for("app.test") == "alpha")
    assert tg.backend_for("other.test") == 404
    reqs = s.requests
    assert all(r["bearer"] for r in reqs)
    assert any("continue" in r["query"] for r in reqs)
    assert any(r["query"].get("allowWatchBookmarks") == "true" and
               r["query"].get("watch") for r in reqs)

    # ADDED: a new host; MODIFIED: its endpoints move; DELETED: it goes.
    s.apply(ingress("second", "second.test", "beta"))
    wait_for("second.test routed to beta", lambda: tg.backend_for("second.test") == "beta")
    s.apply(slice_("beta", a.port))
    wait_for("second.test now on alpha's port", lambda: tg.backend_for("second.test") == "alpha")
    s.delete("Ingress", "default", "second")
    wait_for("second.test gone", lambda: tg.backend_for("second.test") == 404)
    assert tg.backend_for("app.test") == "alpha"

    # Status: written once per owned Ingress, with both addresses, and not
    # rewritten by the MODIFIED event our own write causes or by later builds.
    wait_for("status of app written", lambda: writes_for(s, "app"))
    lb = s.get("Ingress", "default", "app")["status"]["loadBalancer"]["ingress"]
    assert {"ip": "198.18.0.10"} in lb and {"hostname": "lb.example.test"} in lb
    s.apply(slice_("alpha", b.port))
    wait_for("app.test on beta's port", lambda: tg.backend_for("app.test") == "beta")
    assert len(writes_for(s, "app")) == 1
    assert tg.metric("tidegate_kube_status_updates_total", result="success") >= 1
    assert tg.metric("tidegate_kube_events_total", resource="ingresses", type="DELETED") >= 1


def test_410_relists_and_dropped_watch_reconnects(api, kube, backend, tmp_path):
    a, b = backend(name="alpha"), backend(name="beta")
    s = api(token=TOKEN)
    s.set(split_chunks=True)  # events cut at arbitrary points across chunks
    populate(s, a.port, b.port)
    s.apply(ingress("lost", "lost.test", "beta"))
    kc = kubeconfig(str(tmp_path / "kubeconfig"), f"http://127.0.0.1:{s.port}",
                    {"token": TOKEN})
    tg = kube(kc)
    wait_for("lost.test routed", lambda: tg.backend_for("lost.test") == "beta")

    # 410 as an ERROR event. The DELETED event of "lost" falls into the
    # compacted history and is never sent: only the relist can notice.
    s.compact()
    s.delete("Ingress", "default", "lost", silent=True)
    s.expire()
    wait_for("lost.test removed by the relist", lambda: tg.backend_for("lost.test") == 404)
    assert tg.backend_for("app.test") == "alpha"
    assert tg.metric("tidegate_kube_relists_total", resource="ingresses", reason="gone") >= 1

    # 410 as the HTTP status of the watch request, after a dropped connection.
    gone = tg.metric("tidegate_kube_relists_total", resource="services", reason="gone")
    s.set(gone_as_http=True)
    s.compact()
    s.drop()
    wait_for("services relisted after HTTP 410",
             lambda: tg.metric("tidegate_kube_relists_total", resource="services",
                               reason="gone") > gone)
    s.apply(ingress("after", "after.test", "beta"))
    wait_for("after.test routed", lambda: tg.backend_for("after.test") == "beta")

    # A plain dropped connection: reconnect from the last resourceVersion.
    s.set(gone_as_http=False)
    connects = tg.metric("tidegate_kube_watch_connects_total", resource="endpointslices")
    s.drop()
    wait_for("endpointslices watch reconnected",
             lambda: tg.metric("tidegate_kube_watch_connects_total",
                               resource="endpointslices") > connects)
    s.apply(slice_("alpha", b.port))
    wait_for("app.test follows the new endpoints", lambda: tg.backend_for("app.test") == "beta")
    # A bookmark is accepted (and counted) without changing anything.
    # The ingresses watch may still be reconnecting after the drops above, and
    # a bookmark only reaches watches open at that moment: resend until seen.
    def bookmarked():
        if s.open_watches("ingresses"):
            s.bookmark()
        return tg.metric("tidegate_kube_events_total", resource="ingresses", type="BOOKMARK")
    wait_for("bookmark seen", bookmarked)
    assert tg.backend_for("after.test") == "beta"


def make_pki(d):
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=tg-test-ca")
    for name, cn, ext in (("server", "localhost", ["-extfile", "san.ext"]),
                          ("client", "tidegate-test-client", [])):
        run("openssl", "req", *key, "-keyout", name + ".key", "-out", name + ".csr",
            "-subj", "/CN=" + cn)
        run("openssl", "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", name + ".crt", "-days", "2", *ext)


def b64(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def test_client_certificate_auth_over_tls(api, kube, backend, tmp_path):
    if not os.access("/usr/bin/openssl", os.X_OK):
        pytest.skip("needs /usr/bin/openssl to make certificates")
    d = str(tmp_path)
    make_pki(d)
    a, b = backend(name="alpha"), backend(name="beta")
    s = api(tls={"cert": f"{d}/server.crt", "key": f"{d}/server.key",
                 "client_ca": f"{d}/ca.crt", "require_client_cert": True})
    populate(s, a.port, b.port)
    # Everything inline as *-data, the way cloud kubeconfigs carry it.
    kc = kubeconfig(f"{d}/kubeconfig", f"https://127.0.0.1:{s.port}",
                    {"client-certificate-data": b64(f"{d}/client.crt"),
                     "client-key-data": b64(f"{d}/client.key")},
                    {"certificate-authority-data": b64(f"{d}/ca.crt")})
    tg = kube(kc)
    wait_for("app.test routed over TLS", lambda: tg.backend_for("app.test") == "alpha")
    assert s.requests and all(r["cert"] == "tidegate-test-client" for r in s.requests)
    s.apply(ingress("second", "second.test", "beta"))
    wait_for("second.test routed", lambda: tg.backend_for("second.test") == "beta")


def test_unusable_kubeconfig_is_refused_with_the_reason(api, kube, tmp_path):
    s = api(token=TOKEN)
    kc = kubeconfig(str(tmp_path / "kubeconfig"), f"http://127.0.0.1:{s.port}",
                    {"exec": {"command": "aws", "args": ["eks", "get-token"]}})
    tg = kube(kc, expect_exit=True)
    tg.proc.wait(20 * SLOWDOWN)
    err = tg.stderr()
    assert tg.proc.returncode != 0
    assert "exec credential plugins are not supported" in err
