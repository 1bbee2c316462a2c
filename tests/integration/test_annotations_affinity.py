"""Session affinity as ingress-nginx users write it (affinity: cookie and the
session-cookie-* annotations): a request without the cookie is balanced as
usual and told its endpoint in a Set-Cookie; requests carrying it go to that
endpoint while it exists; a cookie naming an endpoint that is gone (or
nothing at all) is replaced. Three real backends behind one Service."""
import re
import time

from backends import Client
from conftest import INGRESS_CLASS, SLOWDOWN, endpoints, ingress, service

A = "nginx.ingress.kubernetes.io/"


def app(ports, ann):
    return {"00-class.yaml": INGRESS_CLASS,
            "10-app.yaml": service("app") + "---" + endpoints("app", ports),
            "20-ing.yaml": ingress("app", [("app.test", [("/shop", "Prefix", "app", 80)])],
                                   annotations=ann)}


def get(port, cookie=None):
    c = Client(port)
    r = c.request(path="/shop/cart", headers=[("Cookie", cookie)] if cookie else [])
    c.close()
    assert r.status == 200, r.status
    return r.json()["backend"], r.header("Set-Cookie")


def test_cookie_affinity(tidegate, backend):
    bs = [backend(name=f"b{i}") for i in range(3)]
    ports = [b.port for b in bs]
    tg = tidegate(app(ports, {A + "affinity": "cookie", A + "session-cookie-max-age": "3600",
                              A + "session-cookie-samesite": "Lax"}), workers=2)
    first, sc = get(tg.port)
    m = re.fullmatch(r"INGRESSCOOKIE=([0-9a-f]{16}); Path=/shop; Max-Age=3600; "
                     r"SameSite=Lax; HttpOnly", sc or "")
    assert m, sc
    cookie = f"other=1; INGRESSCOOKIE={m.group(1)}; x=y"
    # Sticky: every request with the cookie (new connections, either worker)
    # reaches the same backend and is not told again.
    for _ in range(12):
        name, again = get(tg.port, cookie)
        assert name == first and again is None
    # Without it, requests are balanced as usual, each told its endpoint.
    seen = {get(tg.port)[0] for _ in range(12)}
    assert seen == {"b0", "b1", "b2"}
    # Garbage or a foreign value: balanced and re-told.
    for bad in ("INGRESSCOOKIE=zz", "INGRESSCOOKIE=0123456789abcdef"):
        _, sc = get(tg.port, bad)
        assert sc and sc.startswith("INGRESSCOOKIE=")
    # The session's endpoint goes away: another one answers and the cookie
    # is replaced; the new one sticks.
    keep = [p for b, p in zip(bs, ports) if b.name != first]
    tg.reload("10-app.yaml", service("app") + "---" + endpoints("app", keep))
    name, sc = get(tg.port, cookie)
    assert name != first and sc and sc != f"INGRESSCOOKIE={m.group(1)}"
    new = re.match(r"INGRESSCOOKIE=([0-9a-f]{16})", sc).group(1)
    for _ in range(6):
        assert get(tg.port, f"INGRESSCOOKIE={new}") == (name, None)


def test_cookie_options_and_bad_values(tidegate, backend):
    b = backend(name="b0")
    tg = tidegate(app([b.port], {A + "affinity": "cookie", A + "session-cookie-name": "route",
                                 A + "session-cookie-path": "/", A + "session-cookie-secure": "true",
                                 A + "session-cookie-expires": "60"}))
    _, sc = get(tg.port)
    assert re.fullmatch(r"route=[0-9a-f]{16}; Path=/; Expires=\w{3}, \d\d \w{3} \d{4} "
                        r"\d\d:\d\d:\d\d GMT; Secure; HttpOnly", sc), sc
    # A bad value is rejected with the reason and the last good version stays.
    tg.write("20-ing.yaml", ingress("app", [("app.test", [("/shop", "Prefix", "app", 80)])],
                                    annotations={A + "affinity": "ip"}))
    want = 'annotation nginx.ingress.kubernetes.io/affinity: bad value "ip" (want cookie)'
    end = time.time() + 10 * SLOWDOWN
    while want not in tg.stderr() and time.time() < end:
        time.sleep(0.05)
    assert want in tg.stderr()
    assert get(tg.port)[1].startswith("route=")
