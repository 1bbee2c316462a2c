"""Routing annotations as ingress-nginx applies them: permanent-/temporal-
redirect (with their -code), app-root, use-regex (case-insensitive regex
paths, longest path text first, the whole host switched to regex),
rewrite-target with capture groups, upstream-vhost and x-forwarded-prefix."""
from backends import get
from conftest import INGRESS_CLASS, endpoints, ingress, service

A = "nginx.ingress.kubernetes.io/"


def header(r, name):
    vals = [v for k, v in r.json()["headers"] if k.lower() == name.lower()]
    return vals[0] if vals else None


def start(tidegate, b, *ings):
    m = {"00-class.yaml": INGRESS_CLASS,
         "10-app.yaml": service("app") + "---" + endpoints("app", [b.port])}
    for i, text in enumerate(ings):
        m[f"2{i}-ing.yaml"] = text
    return tidegate(m)


def test_redirects(tidegate, backend):
    b = backend()
    tg = start(tidegate, b,
               ingress("moved", [("old.test", [("/", "Prefix", "app", 80)])],
                       annotations={A + "permanent-redirect": "https://new.test$request_uri"}),
               ingress("moved308", [("old308.test", [("/", "Prefix", "app", 80)])],
                       annotations={A + "permanent-redirect": "https://new.test/",
                                    A + "permanent-redirect-code": "308"}),
               ingress("tmp", [("tmp.test", [("/", "Prefix", "app", 80)])],
                       annotations={A + "temporal-redirect": "http://$host:8080/maint?from=$uri"}))
    r = get(tg.port, "/a/b?c=d", host="old.test")
    assert r.status == 301
    assert r.header("Location") == "https://new.test/a/b?c=d"
    assert b"301 Moved Permanently" in r.body
    r = get(tg.port, "/x", host="old308.test")
    assert (r.status, r.header("Location")) == (308, "https://new.test/")
    r = get(tg.port, "/x/y", host="tmp.test:9999")
    assert (r.status, r.header("Location")) == (302, "http://tmp.test:8080/maint?from=/x/y")
    assert b.requests == 0


def test_app_root(tidegate, backend):
    b = backend()
    tg = start(tidegate, b, ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                                    annotations={A + "app-root": "/dashboard"}))
    r = get(tg.port, "/", host="app.test:8080")
    assert (r.status, r.header("Location")) == (302, "http://app.test:8080/dashboard")
    r = get(tg.port, "/?x=1", host="app.test")
    assert r.status == 302
    r = get(tg.port, "/dashboard", host="app.test")
    assert r.status == 200 and r.json()["target"] == "/dashboard"


def test_rewrite_target_with_captures(tidegate, backend):
    b = backend()
    tg = start(tidegate, b,
               ingress("rw", [("app.test", [("/something(/|$)(.*)", "ImplementationSpecific", "app", 80)])],
                       annotations={A + "rewrite-target": "/$2", A + "use-regex": "true"}),
               ingress("plain", [("other.test", [("/api", "Prefix", "app", 80)])],
                       annotations={A + "rewrite-target": "/"}))
    cases = {"/something": "/", "/something/": "/", "/something/new": "/new",
             "/something/a/b?x=1&y=2": "/a/b?x=1&y=2", "/SOMETHING/Case": "/Case"}
    for path, want in cases.items():
        r = get(tg.port, path, host="app.test")
        assert r.status == 200, (path, r.status)
        assert r.json()["target"] == want, (path, r.json()["target"])
    assert get(tg.port, "/somethingelse", host="app.test").status == 404
    # Without capture groups the whole URI becomes the target (ingress-nginx).
    assert get(tg.port, "/api/v1/users", host="other.test").json()["target"] == "/"


def test_regex_order_and_case(tidegate, backend):
    b = backend()
    tg = start(tidegate, b,
               ingress("re", [("app.test", [("/foo/.+", "Prefix", "app", 80)])],
                       annotations={A + "use-regex": "true", A + "upstream-vhost": "re.internal"}),
               ingress("exact", [("app.test", [("/foo/bar", "Prefix", "app", 80)])],
                       annotations={A + "upstream-vhost": "bar.internal"}))
    # /foo/bar is longer: tried first.
    assert header(get(tg.port, "/foo/bar", host="app.test"), "host") == "bar.internal"
    assert header(get(tg.port, "/foo/baz", host="app.test"), "host") == "re.internal"
    assert header(get(tg.port, "/FOO/BAZ", host="app.test"), "host") == "re.internal"
    assert get(tg.port, "/foo/", host="app.test").status == 404


def test_upstream_vhost_and_prefix(tidegate, backend):
    b = backend()
    tg = start(tidegate, b, ingress("app", [("app.test", [("/", "Prefix", "app", 80)])],
                                    annotations={A + "upstream-vhost": "internal.svc.local",
                                                 A + "x-forwarded-prefix": "/shop"}))
    r = get(tg.port, "/cart", host="app.test", headers=[("X-Forwarded-Prefix", "/forged")])
    assert r.status == 200
    assert header(r, "host") == "internal.svc.local"
    assert header(r, "x-forwarded-host") == "app.test"
    vals = [v for k, v in r.json()["headers"] if k.lower() == "x-forwarded-prefix"]
    assert vals == ["/shop"]
