"""Secret rotation under load: Python TLS clients (keep-alive connections and
new connections with full handshakes) run while the certificate Secret is
replaced again and again; not one request may fail."""
import threading
import time

from conftest import INGRESS_CLASS, SLOWDOWN
from tls_env import CA, TLSClient, backend_manifests, s_client, s_client_cn, start, tls_ingress, tls_secret


def test_secret_rotation_under_load_fails_no_request(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    certs = [ca.issue(f"gen{i}", sans=["app.test"]) for i in range(2)]
    m = {"00-class.yaml": INGRESS_CLASS, "10-app.yaml": backend_manifests([b.port]),
         "20-secret.yaml": tls_secret("app-tls", *certs[0]),
         "30-app.yaml": tls_ingress("app", ["app.test"], "app-tls")}
    tg = start(tidegate, m, workers=2)
    stop = threading.Event()
    ok = [0] * 6
    errors = []

    def keepalive(i):
        c = TLSClient(tg.https)
        try:
            while not stop.is_set():
                r = c.request(path=f"/ka/{i}")
                if r.status != 200:
                    errors.append(f"keep-alive {i}: {r.status}")
                    return
                ok[i] += 1
                if (r.header("Connection") or "").lower() == "close":
                    c.close()  # keep-alive-requests reached: a new connection
                    c = TLSClient(tg.https)
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            errors.append(f"keep-alive {i}: {e!r}")
        finally:
            c.close()

    def fresh(i):
        try:
            while not stop.is_set():
                c = TLSClient(tg.https)
                r = c.request(path=f"/new/{i}")
                c.close()
                if r.status != 200:
                    errors.append(f"new {i}: {r.status}")
                    return
                ok[i] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"new {i}: {e!r}")

    threads = [threading.Thread(target=keepalive, args=(i,)) for i in range(3)] + \
              [threading.Thread(target=fresh, args=(i,)) for i in range(3, 6)]
    for t in threads:
        t.start()
    try:
        for k in range(1, 11):
            tg.reload("20-secret.yaml", tls_secret("app-tls", *certs[k % 2]))
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30 * SLOWDOWN)
    assert not errors, errors
    assert all(n > 0 for n in ok), ok
    assert s_client_cn(s_client(tg.https, sni="app.test")) == "gen0"  # the 10th change
    assert tg.generation() >= 11
