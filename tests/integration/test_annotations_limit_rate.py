"""Response bandwidth per request, as ingress-nginx users write it:

- limit-rate (KB/s) and limit-rate-after (KB) annotations, nginx's
  limit_rate / limit_rate_after: by t seconds after the request, at most
  rate x (t + 1) + after bytes have been sent (nginx counts the first second
  too), so a body of B bytes takes at least (B - after) / rate - 1 seconds;
- the ConfigMap keys limit-rate / limit-rate-after (bytes, as in
  ingress-nginx's ConfigMap) as the default, an annotation "0" lifting it;
- the upstream is read only as fast as the client is written (no unbounded
  buffering while a response is held back);
- a bad value refuses the Ingress (503, reason logged), like the other limits.

Only lower bounds on durations are asserted (a limit must hold however fast
the machine is); the upper bounds used to tell "limited" from "not limited"
have a margin of several times the expected duration.
"""
import socket
import time

from backends import Client, get
from conftest import SLOWDOWN
from test_annotations_ratelimit import A, app, app_ing

KB = 1024


def timed_download(port, n, marks=()):
    """GET /download/n on a new connection; returns (seconds to the whole
    body, {mark: (bytes received, seconds)} taken at the first read after
    each mark, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(f"GET /download/{n} HTTP/1.1\r\nHost: app.test\r\n\r\n".encode())
    t0 = time.monotonic()
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200"), head
    received = len(body)
    seen = {}
    pending = sorted(marks)
    while received < n:
        chunk = s.recv(65536)
        assert chunk, f"connection closed after {received} of {n} bytes"
        now = time.monotonic() - t0
        while pending and now >= pending[0]:
            seen[pending.pop(0)] = (received, now)
        received += len(chunk)
    elapsed = time.monotonic() - t0
    for m in pending:
        seen[m] = (received, elapsed)
    s.close()
    return elapsed, seen, received


def test_limit_rate_paces_the_body(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rate": "128"}))
    # 512 KB at 128 KB/s with nginx's first second: at least 3 s.
    elapsed, seen, n = timed_download(tg.port, 512 * KB, marks=(1.0,))
    got, at = seen[1.0]
    print(f"\n512 KB at limit-rate 128: {elapsed:.2f} s, {got} bytes by {at:.2f} s")
    assert n == 512 * KB
    assert elapsed >= 2.7
    # Never ahead of the budget: (t + 1) seconds' worth, + the head.
    assert got <= 128 * KB * (at + 1) + 1 * KB
    # Unlimited routes of the same proxy are not paced (another Ingress).
    tg.reload("21-other.yaml", app_ing({}, name="other", host="other.test"))
    c = Client(tg.port)
    r = c.request(path="/download/4096", host="other.test")
    assert r.status == 200 and len(r.body) == 4096
    c.close()


def test_limit_rate_after_sends_the_first_bytes_at_once(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rate": "16", A + "limit-rate-after": "448"}))
    # 448 KB at once, then 64 KB at 16 KB/s (first second included): >= 3 s.
    # Without limit-rate-after the same body would take 31 s.
    elapsed, seen, n = timed_download(tg.port, 512 * KB, marks=(2.0,))
    got, at = seen[2.0]
    print(f"\n512 KB at limit-rate 16 after 448 KB: {elapsed:.2f} s, {got} bytes by {at:.2f} s")
    assert n == 512 * KB
    assert elapsed >= 2.7
    assert elapsed < 20 * SLOWDOWN
    assert got >= 448 * KB
    assert got <= 448 * KB + 16 * KB * (at + 1) + 1 * KB


def test_configmap_default_and_annotation_zero(tidegate, backend):
    b = backend()
    # ConfigMap values are bytes (ingress-nginx's ConfigMap): 32 KB/s.
    tg = tidegate(app(b.port, {}, {"limit-rate": str(32 * KB)}))
    elapsed, _, n = timed_download(tg.port, 96 * KB)
    print(f"\n96 KB at ConfigMap limit-rate 32 KB/s: {elapsed:.2f} s")
    assert n == 96 * KB and elapsed >= 1.7
    # "0" on the Ingress lifts the default: 512 KB would take >= 15 s paced.
    tg.reload("20-app-ingress.yaml", app_ing({A + "limit-rate": "0"}))
    elapsed, _, n = timed_download(tg.port, 512 * KB)
    print(f"512 KB with limit-rate 0 on the Ingress: {elapsed:.2f} s")
    assert n == 512 * KB and elapsed < 5 * SLOWDOWN


def test_paced_response_holds_the_upstream_back(tidegate, backend):
    """While the client is paced, tidegate reads the upstream only as fast as
    it writes: a 64 MB body at 64 KB/s has not been read whole after 2 s."""
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rate": "64"}))
    assert get(tg.port, "/").status == 200  # warmed up: pools, snapshot
    before = tg.rss_kb()
    s = socket.create_connection(("127.0.0.1", tg.port), timeout=10)
    s.sendall(b"GET /download/67108864 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    time.sleep(2.0)
    grown = tg.rss_kb() - before
    s.close()
    print(f"\nRSS growth while a 64 MB body is paced at 64 KB/s: {grown} kB")
    # The whole body buffered would be 64 MB; what is not sent yet waits in
    # the kernel's socket buffers and the backend, not in tidegate.
    assert grown < 16 * 1024


def test_bad_value_refuses(tidegate, backend):
    b = backend()
    tg = tidegate(app(b.port, {A + "limit-rate": "fast"}))
    assert get(tg.port, "/").status == 503
    assert b.requests == 0
    assert ('annotation nginx.ingress.kubernetes.io/limit-rate: bad value "fast" (want a whole '
            'number of kilobytes per second, 0 for none): refusing to serve this Ingress '
            'without the limit it asks for' in tg.stderr())
    tg.reload("20-app-ingress.yaml", app_ing({A + "limit-rate-after": "-5"}))
    assert get(tg.port, "/").status == 503
    assert 'limit-rate-after: bad value "-5"' in tg.stderr()
