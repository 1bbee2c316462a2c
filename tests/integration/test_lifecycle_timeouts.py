"""Keep-alive and idle timeouts behind an L4 balancer (issue 4): the
tcp-keepalive ConfigMap key arms TCP keepalive on client sockets, and
keep-alive-time ends client connections older than it."""
import shutil
import subprocess
import time

import pytest

from backends import Client
from conftest import app_manifests


def server_side_timers(port):
    """ss's view of the established sockets whose local port is `port`."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return out


def test_tcp_keepalive_setting_arms_keepalive_on_client_sockets(tidegate, backend):
    if not shutil.which("ss"):
        pytest.skip("ss (iproute2) not installed")
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"tcp-keepalive": "30s"}))
    c = Client(tg.port)
    assert c.request().status == 200
    out = server_side_timers(tg.port)
    assert "timer:(keepalive," in out, out
    c.close()

    plain = tidegate(app_manifests([b.port]))  # default: off
    c = Client(plain.port)
    assert c.request().status == 200
    out = server_side_timers(plain.port)
    assert out.strip() and "keepalive" not in out, out
    c.close()


def test_keep_alive_time_closes_old_connections_on_their_next_response(tidegate, backend):
    b = backend()
    tg = tidegate(app_manifests([b.port], settings={"keep-alive-time": "1s"}))
    c = Client(tg.port)
    local = Client(tg.port)
    assert c.request().header("Connection") is None
    assert local.request(host="unknown.test").status == 404
    time.sleep(1.2)
    # proxied response
    r = c.request()
    assert r.status == 200 and r.header("Connection") == "close"
    assert c.closed_by_peer()
    # a response tidegate makes itself (404) follows the same rule
    r = local.request(host="unknown.test")
    assert r.status == 404 and r.header("Connection") == "close"
    assert local.closed_by_peer()
    # a new connection is young again
    c = Client(tg.port)
    assert c.request().header("Connection") is None
