"""Session resumption through tickets whose keys every worker shares: a
session from one connection resumes on the next ones, whichever worker the
kernel hands them to (--workers 2, SO_REUSEPORT spreads them)."""
import os

from conftest import INGRESS_CLASS, configmap
from tls_env import CA, backend_manifests, s_client, start, tls_ingress, tls_secret


def manifests(ca, port, settings=None):
    crt, key = ca.issue("app.test", sans=["app.test"])
    m = {"00-class.yaml": INGRESS_CLASS, "10-app.yaml": backend_manifests([port]),
         "20-secret.yaml": tls_secret("app-tls", crt, key),
         "30-app.yaml": tls_ingress("app", ["app.test"], "app-tls")}
    if settings:
        m["01-cm.yaml"] = configmap(settings)
    return m


def resumed_count(port, sess, n, extra):
    reused = 0
    for _ in range(n):
        out = s_client(port, sni="app.test", sess_in=sess, extra=extra, wait=0.05)
        assert "Reused," in out or "New," in out, out
        reused += "Reused," in out
    return reused


def test_tickets_resume_across_workers(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port), workers=2)
    for flag in ("-tls1_3", "-tls1_2"):
        sess = str(tmp_path / f"sess{flag}.pem")
        out = s_client(tg.https, sni="app.test", sess_out=sess, extra=[flag])
        assert "New," in out and os.path.getsize(sess) > 0, out
        # 16 connections: both workers get some (all on one has odds 2^-15).
        assert resumed_count(tg.https, sess, 16, [flag]) == 16
    assert tg.metric("tidegate_tls_resumed_handshakes_total", protocol="TLSv1.3") >= 16
    assert tg.metric("tidegate_tls_resumed_handshakes_total", protocol="TLSv1.2") >= 16


def test_session_tickets_off_means_no_resumption(tidegate, backend, tmp_path):
    ca = CA(tmp_path / "ca")
    b = backend()
    tg = start(tidegate, manifests(ca, b.port, {"ssl-session-tickets": "false"}))
    for flag in ("-tls1_2", "-tls1_3"):
        sess = str(tmp_path / f"s{flag}.pem")
        out = s_client(tg.https, sni="app.test", sess_out=sess, extra=[flag])
        assert "New," in out
        # Nothing resumable is handed out (no ticket, no session id): s_client
        # writes no session at all, or one that does not resume.
        if os.path.exists(sess):
            assert resumed_count(tg.https, sess, 3, [flag]) == 0
        assert "NewSessionTicket" not in out and "Post-Handshake New Session Ticket" not in out
    assert tg.metric("tidegate_tls_resumed_handshakes_total", protocol="TLSv1.2") == 0


def test_shared_ticket_key_resumes_across_processes(tidegate, backend, tmp_path):
    """ssl-session-ticket-key: two instances (two ingress nodes) with the same
    key resume each other's sessions; a bad key is rejected with the key named."""
    ca = CA(tmp_path / "ca")
    b = backend()
    key = os.urandom(80)
    import base64
    m = manifests(ca, b.port, {"ssl-session-ticket-key": base64.b64encode(key).decode()})
    one = start(tidegate, m)
    two = start(tidegate, m)
    sess = str(tmp_path / "s.pem")
    out = s_client(one.https, sni="app.test", sess_out=sess, extra=["-tls1_3"])
    assert "New," in out
    assert resumed_count(two.https, sess, 2, ["-tls1_3"]) == 2
    two.reload("01-cm.yaml", configmap({"ssl-session-ticket-key": "c2hvcnQ="}))
    assert "key ssl-session-ticket-key: bad value \"(secret)\"" in two.stderr()
    assert "c2hvcnQ" not in two.stderr()  # never logs key material
