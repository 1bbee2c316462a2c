"""Ingress v1 semantics against a real `tidegate ingress`: the scenarios of the
Kubernetes Ingress conformance suite (kubernetes-sigs/ingress-controller-
conformance: path rules, host rules, default backend, IngressClass, load
balancing) and the rest of what translate.h documents (conflict order, Service
ports by name and number, named target ports, ready/terminating endpoints,
IPv6 endpoints, Services without endpoints).

Every answer comes from an EchoBackend started by the test, which reports the
Service it belongs to and the endpoint (address:port) that answered, so each
assertion reads "this request was served by that Service" or "got 404/503".
Scenarios sharing one set of manifests share one tidegate (module fixtures).
"""
import collections
import os
import time

import pytest

from backends import Client
from ingress_env import (EchoBackend, Services, ask, backends_on_one_port, endpoint_slice, ingress,
                         ingress_class, loopback_v6, served_by, service, started, yaml_docs)


def env(tmp_path_factory, name, files, workers=2, args=()):
    return started(tmp_path_factory.mktemp(name), files, workers=workers, args=args)


# ---------------------------------------------------------------- path rules

PATH_SERVICES = ("foo-exact", "foo-prefix", "aaa-slash-bbb-prefix", "aaa-prefix",
                 "aaa-slash-bbb-slash-prefix", "foo-slash-exact", "impl-specific")


@pytest.fixture(scope="module")
def paths_tg(tmp_path_factory):
    svcs = Services(*PATH_SERVICES)
    ing = ingress("path-rules", [
        ("exact-path-rules", [("/foo", "Exact", "foo-exact", 8080)]),
        ("prefix-path-rules", [("/foo", "Prefix", "foo-prefix", 8080),
                               ("/aaa/bbb", "Prefix", "aaa-slash-bbb-prefix", 8080),
                               ("/aaa", "Prefix", "aaa-prefix", 8080)]),
        ("mixed-path-rules", [("/foo", "Prefix", "foo-prefix", 8080),
                              ("/foo", "Exact", "foo-exact", 8080)]),
        ("trailing-slash-path-rules", [("/aaa/bbb/", "Prefix", "aaa-slash-bbb-slash-prefix", 8080),
                                       ("/foo/", "Exact", "foo-slash-exact", 8080)]),
        ("impl-path-rules", [("/impl", "ImplementationSpecific", "impl-specific", 8080)]),
    ])
    files = {"00-class.yaml": yaml_docs(ingress_class()),
             "10-services.yaml": yaml_docs(*svcs.docs()),
             "20-ingress.yaml": yaml_docs(ing)}
    with env(tmp_path_factory, "paths", files) as tg:
        yield tg
    svcs.stop()


@pytest.mark.parametrize("host,path,want", [
    # Exact: the whole path, case-sensitive, no trailing slash
    ("exact-path-rules", "/foo", "foo-exact"),
    ("exact-path-rules", "/foo/", "404"),
    ("exact-path-rules", "/FOO", "404"),
    ("exact-path-rules", "/bar", "404"),
    ("exact-path-rules", "/foo?x=1&y=2", "foo-exact"),  # the query is not part of the path
    # Prefix: whole segments, longest match, trailing slash of the request ignored
    ("prefix-path-rules", "/foo", "foo-prefix"),
    ("prefix-path-rules", "/foo/", "foo-prefix"),
    ("prefix-path-rules", "/foo/bar/baz", "foo-prefix"),
    ("prefix-path-rules", "/foobar", "404"),
    ("prefix-path-rules", "/FOO", "404"),
    ("prefix-path-rules", "/aaa/bbb", "aaa-slash-bbb-prefix"),
    ("prefix-path-rules", "/aaa/bbb/ccc", "aaa-slash-bbb-prefix"),
    ("prefix-path-rules", "/aaa/bbbccc", "aaa-prefix"),
    ("prefix-path-rules", "/aaa/ccc", "aaa-prefix"),
    ("prefix-path-rules", "/aaaccc", "404"),
    ("prefix-path-rules", "/aaa?q=/aaa/bbb", "aaa-prefix"),
    # Exact beats Prefix at the same path
    ("mixed-path-rules", "/foo", "foo-exact"),
    ("mixed-path-rules", "/foo/", "foo-prefix"),
    ("mixed-path-rules", "/foo/x", "foo-prefix"),
    # a trailing slash on a Prefix rule is ignored; on an Exact rule it is not
    ("trailing-slash-path-rules", "/aaa/bbb", "aaa-slash-bbb-slash-prefix"),
    ("trailing-slash-path-rules", "/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
    ("trailing-slash-path-rules", "/aaa/bbb/c", "aaa-slash-bbb-slash-prefix"),
    ("trailing-slash-path-rules", "/aaa/bbbc", "404"),
    ("trailing-slash-path-rules", "/foo", "404"),
    ("trailing-slash-path-rules", "/foo/", "foo-slash-exact"),
    # ImplementationSpecific is treated as Prefix (documented in snapshot.h)
    ("impl-path-rules", "/impl", "impl-specific"),
    ("impl-path-rules", "/impl/x", "impl-specific"),
    ("impl-path-rules", "/implx", "404"),
])
def test_path_rules(paths_tg, host, path, want):
    assert served_by(paths_tg.port, host, path) == want


def test_path_rules_request_reaches_backend_unchanged(paths_tg):
    for host, target in [("prefix-path-rules", "/aaa/bbb/ccc"), ("prefix-path-rules", "/foo/"),
                         ("exact-path-rules", "/foo?x=1&y=%20z")]:
        a = ask(paths_tg.port, host, target)
        assert a.status == 200
        assert a.doc["target"] == target
        assert a.doc["host"] == host


# ---------------------------------------------------------------- host rules

@pytest.fixture(scope="module")
def hosts_tg(tmp_path_factory):
    svcs = Services("wildcard-foo-com", "foo-bar-com", "exact-foo-com")
    ing = ingress("host-rules", [
        ("*.foo.com", [("/", "Prefix", "wildcard-foo-com", 8080)]),  # port by number
        ("foo.bar.com", [("/", "Prefix", "foo-bar-com", "http")]),    # port by name
    ])
    precise = ingress("precise", [("exact.foo.com", [("/", "Prefix", "exact-foo-com", 8080)])])
    files = {"00-class.yaml": yaml_docs(ingress_class()),
             "10-services.yaml": yaml_docs(*svcs.docs()),
             "20-ingress.yaml": yaml_docs(ing, precise)}
    with env(tmp_path_factory, "hosts", files) as tg:
        yield tg
    svcs.stop()


@pytest.mark.parametrize("host,want", [
    ("foo.bar.com", "foo-bar-com"),
    ("FOO.Bar.COM", "foo-bar-com"),        # host names compare without case
    ("foo.bar.com:8080", "foo-bar-com"),   # the port in Host is ignored
    ("foo.bar.com.", "foo-bar-com"),       # absolute form
    ("subdomain.bar.com", "404"),
    ("bar.com", "404"),
    ("xfoo.bar.com", "404"),
    ("bar.foo.com", "wildcard-foo-com"),   # *.foo.com covers one label
    ("BAR.FOO.COM:80", "wildcard-foo-com"),
    ("baz.bar.foo.com", "404"),            # ... exactly one
    ("foo.com", "404"),                    # ... not zero
    ("exact.foo.com", "exact-foo-com"),    # a precise host beats the wildcard
    ("127.0.0.1", "404"),
])
def test_host_rules(hosts_tg, host, want):
    assert served_by(hosts_tg.port, host, "/") == want


def test_host_rules_request_host_reaches_backend(hosts_tg):
    a = ask(hosts_tg.port, "bar.foo.com", "/x")
    assert (a.status, a.service, a.doc["host"]) == (200, "wildcard-foo-com", "bar.foo.com")


def test_request_without_host_header(hosts_tg):
    # HTTP/1.0 without Host: no host rule can match
    c = Client(hosts_tg.port)
    try:
        r = c.request(path="/", host=None, version="1.0")
    finally:
        c.close()
    assert r.status == 404


# ------------------------------------------- host selects one rule set (fallback)

@pytest.fixture(scope="module")
def fallback_tg(tmp_path_factory):
    svcs = Services("api", "site-default", "wildcard", "hostless", "catch-all")
    docs = [
        ingress("catch-all", default=("catch-all", 8080), created="2023-01-01T00:00:00Z"),
        ingress("site", [("api.example.com", [("/api", "Prefix", "api", 8080)])],
                default=("site-default", 8080), created="2024-01-01T00:00:00Z"),
        ingress("plain", [("plain.example.com", [("/only", "Exact", "api", 8080)])],
                created="2024-01-02T00:00:00Z"),
        ingress("wild", [("*.example.com", [("/w", "Prefix", "wildcard", 8080)])],
                created="2024-01-03T00:00:00Z"),
        ingress("anyhost", [(None, [("/any", "Prefix", "hostless", 8080)])],
                created="2024-01-04T00:00:00Z"),
        # declares a host without paths: all of it goes to its defaultBackend
        ingress("bare", [("bare.example.com", [])], default=("site-default", 8080),
                created="2024-01-05T00:00:00Z"),
    ]
    files = {"00-class.yaml": yaml_docs(ingress_class()),
             "10-services.yaml": yaml_docs(*svcs.docs()),
             "20-ingress.yaml": yaml_docs(*docs)}
    with env(tmp_path_factory, "fallback", files) as tg:
        yield tg
    svcs.stop()


@pytest.mark.parametrize("host,path,want", [
    ("api.example.com", "/api/v1", "api"),
    # the host matched: its paths only, then its Ingress's defaultBackend; no
    # fall-through to the wildcard, the rules without host or the catch-all
    ("api.example.com", "/other", "site-default"),
    ("api.example.com", "/w", "site-default"),
    ("api.example.com", "/any", "site-default"),
    ("plain.example.com", "/only", "api"),
    ("plain.example.com", "/only/", "404"),   # its Ingress has no defaultBackend
    ("plain.example.com", "/w", "404"),
    ("plain.example.com", "/any", "404"),
    ("bare.example.com", "/anything", "site-default"),
    # the wildcard's host set: same rule
    ("x.example.com", "/w/1", "wildcard"),
    ("x.example.com", "/any", "404"),
    # no host rule matched: the rules without host, then the catch-all
    ("unknown.org", "/any/1", "hostless"),
    ("unknown.org", "/w", "catch-all"),
    ("a.b.example.com", "/w", "catch-all"),
])
def test_host_selects_one_rule_set(fallback_tg, host, path, want):
    assert served_by(fallback_tg.port, host, path) == want


# ---------------------------------------------------------------- default backend

@pytest.fixture(scope="module")
def default_tg(tmp_path_factory):
    svcs = Services("echo-service")
    files = {"00-class.yaml": yaml_docs(ingress_class()),
             "10-services.yaml": yaml_docs(*svcs.docs()),
             "20-ingress.yaml": yaml_docs(ingress("default-backend", default=("echo-service", 8080)))}
    with env(tmp_path_factory, "default", files) as tg:
        yield tg
    svcs.stop()


@pytest.mark.parametrize("method,host,path", [
    ("GET", "my-host", "/"),
    ("GET", "my-host", "/sub-path"),
    ("POST", "some-host", "/"),
    ("PUT", "127.0.0.1", "/resource"),
    ("DELETE", "some-host", "/resource"),
    ("PATCH", "my-host", "/resource"),
])
def test_default_backend_takes_everything(default_tg, method, host, path):
    a = ask(default_tg.port, host, path, method=method, body=b"x" if method in ("POST", "PUT", "PATCH") else None)
    assert (a.status, a.service) == (200, "echo-service")
    assert a.doc["method"] == method
    assert a.doc["target"] == path


def test_no_match_without_default_backend_is_404(hosts_tg):
    a = ask(hosts_tg.port, "nobody.example", "/")
    assert a.status == 404 and a.service is None


# ---------------------------------------------------------------- IngressClass

def class_case_ingresses():
    rule = lambda host: [(host, [("/", "Prefix", "app", 8080)])]  # noqa: E731
    return [
        ingress("by-class", rule("ours.test"), class_name="tidegate"),
        ingress("other-controller", rule("other.test"), class_name="nginx"),
        ingress("missing-class", rule("missing.test"), class_name="no-such-class"),
        ingress("legacy-ours", rule("legacy-ours.test"), class_name=None, legacy_class="tidegate"),
        ingress("legacy-other", rule("legacy-other.test"), class_name=None, legacy_class="nginx"),
        ingress("classless", rule("classless.test"), class_name=None),
    ]


def class_files(svcs, ours_default=False, other_default=False):
    return {
        "00-class.yaml": yaml_docs(ingress_class("tidegate", default=ours_default),
                                   ingress_class("nginx", "k8s.io/ingress-nginx", default=other_default)),
        "10-services.yaml": yaml_docs(*svcs.docs()),
        "20-ingress.yaml": yaml_docs(*class_case_ingresses()),
    }


def owned_hosts(tg):
    hosts = ["ours.test", "other.test", "missing.test", "legacy-ours.test", "legacy-other.test",
             "classless.test"]
    return {h for h in hosts if served_by(tg.port, h, "/") == "app"}


def test_ingress_class_ownership(tidegate):
    svcs = Services("app")
    try:
        tg = tidegate(class_files(svcs))
        assert owned_hosts(tg) == {"ours.test", "legacy-ours.test"}
        # another controller's class marked default changes nothing for us
        tg.reload("00-class.yaml", class_files(svcs, other_default=True)["00-class.yaml"])
        assert owned_hosts(tg) == {"ours.test", "legacy-ours.test"}
        # our class becomes the cluster default: Ingresses without class are ours
        tg.reload("00-class.yaml", class_files(svcs, ours_default=True)["00-class.yaml"])
        assert owned_hosts(tg) == {"ours.test", "legacy-ours.test", "classless.test"}
        # our IngressClass removed: ingressClassName tidegate no longer names ours
        tg.reload("00-class.yaml", yaml_docs(ingress_class("nginx", "k8s.io/ingress-nginx")))
        assert owned_hosts(tg) == {"legacy-ours.test"}
    finally:
        svcs.stop()


def test_watch_ingress_without_class(tidegate):
    svcs = Services("app")
    try:
        tg = tidegate(class_files(svcs), args=["--watch-ingress-without-class"])
        assert owned_hosts(tg) == {"ours.test", "legacy-ours.test", "classless.test"}
    finally:
        svcs.stop()


def test_other_ingress_class_flag(tidegate):
    """--ingress-class / --controller-class select which class is ours."""
    svcs = Services("app")
    try:
        tg = tidegate(class_files(svcs), args=["--ingress-class", "nginx",
                                               "--controller-class", "k8s.io/ingress-nginx"])
        assert owned_hosts(tg) == {"other.test", "legacy-other.test"}
    finally:
        svcs.stop()


# ---------------------------------------------------------------- conflicts

@pytest.fixture(scope="module")
def conflict_tg(tmp_path_factory):
    svcs = Services("alpha", "beta", "gamma", "n1", "n2", "notime", "withtime")
    team_a, team_b = Services("svc-a", ns="team-a"), Services("svc-b", ns="team-b")
    docs = [
        ingress("alpha", [("shared.test", [("/a", "Prefix", "alpha", 8080),
                                           ("/same", "Prefix", "alpha", 8080),
                                           ("/p/", "Prefix", "alpha", 8080)])],
                created="2024-01-02T00:00:00Z"),
        ingress("beta", [("shared.test", [("/b", "Prefix", "beta", 8080),
                                          ("/same", "Prefix", "beta", 8080),
                                          ("/exact", "Exact", "beta", 8080)])],
                created="2024-01-01T00:00:00Z"),
        ingress("gamma", [("SHARED.test", [("/exact", "Prefix", "gamma", 8080),
                                           ("/p", "Prefix", "gamma", 8080),
                                           ("/same", "Prefix", "gamma", 8080),
                                           ("/g", "Prefix", "gamma", 8080)])],
                created="2024-01-03T00:00:00Z"),
        # equal timestamps: namespace order, then name order
        ingress("zz", [("tie.test", [("/t", "Prefix", "svc-a", 8080)])], ns="team-a",
                created="2024-02-01T00:00:00Z"),
        ingress("aa", [("tie.test", [("/t", "Prefix", "svc-b", 8080)])], ns="team-b",
                created="2024-02-01T00:00:00Z"),
        ingress("n2", [("tie2.test", [("/t", "Prefix", "n2", 8080)])], created="2024-02-01T00:00:00Z"),
        ingress("n1", [("tie2.test", [("/t", "Prefix", "n1", 8080)])], created="2024-02-01T00:00:00Z"),
        # no creationTimestamp counts as the oldest
        ingress("withtime", [("tie3.test", [("/x", "Prefix", "withtime", 8080)])],
                created="2000-01-01T00:00:00Z"),
        ingress("notime", [("tie3.test", [("/x", "Prefix", "notime", 8080)])]),
    ]
    files = {"00-class.yaml": yaml_docs(ingress_class()),
             "10-services.yaml": yaml_docs(*svcs.docs(), *team_a.docs(), *team_b.docs()),
             # one Ingress per file: file order must not matter
             **{f"2{i}-{d['metadata']['name']}.yaml": yaml_docs(d) for i, d in enumerate(docs)}}
    with env(tmp_path_factory, "conflict", files) as tg:
        yield tg
    for s in (svcs, team_a, team_b):
        s.stop()


@pytest.mark.parametrize("host,path,want", [
    ("shared.test", "/a", "alpha"),          # paths of several Ingresses merge on one host
    ("shared.test", "/b", "beta"),
    ("shared.test", "/g/1", "gamma"),
    ("shared.test", "/same", "beta"),        # same host+path+type: the oldest Ingress wins
    ("shared.test", "/exact", "beta"),       # Exact and Prefix at one path coexist
    ("shared.test", "/exact/x", "gamma"),
    ("shared.test", "/p", "alpha"),          # "/p/" and "/p" are the same Prefix: oldest wins
    ("shared.test", "/p/q", "alpha"),
    ("tie.test", "/t", "svc-a"),             # same time: namespace team-a < team-b
    ("tie2.test", "/t", "n1"),               # same time and namespace: name n1 < n2
    ("tie3.test", "/x", "notime"),
])
def test_conflict_order(conflict_tg, host, path, want):
    assert served_by(conflict_tg.port, host, path) == want


def test_conflict_order_survives_reload(conflict_tg):
    """Rewriting the winning Ingress's file (same content, new inode) and the
    loser's keeps the same winner: the order does not depend on events."""
    g = conflict_tg.generation()
    for name in sorted(n for n in os.listdir(conflict_tg.mdir) if n.startswith("2")):
        with open(f"{conflict_tg.mdir}/{name}") as f:
            text = f.read()
        conflict_tg.write(name, text + "\n# touched\n")
    time.sleep(0.3)  # no object changed: nothing to wait for
    assert conflict_tg.generation() == g
    assert served_by(conflict_tg.port, "shared.test", "/same") == "beta"
    assert served_by(conflict_tg.port, "tie.test", "/t") == "svc-a"


# ---------------------------------------------------------------- Service ports

@pytest.fixture(scope="module")
def ports_tg(tmp_path_factory):
    web, admin = EchoBackend("multi"), EchoBackend("multi")
    empty_slice_backend = EchoBackend("empty-slice")
    docs = [
        service("multi", ports=[("http", 80, "web"), ("admin", 9000, 9001)]),
        # the Service's ports by name in the slice; targetPort "web" is a pod port name
        endpoint_slice("multi", ["127.0.0.1"], [("http", web.port), ("admin", admin.port)]),
        service("no-endpoints"),
        service("empty-slice"),
        endpoint_slice("empty-slice", [], empty_slice_backend.port),
        ingress("ports", [("ports.test", [
            ("/by-name", "Prefix", "multi", "http"),
            ("/by-number", "Prefix", "multi", 80),
            ("/admin-by-name", "Prefix", "multi", "admin"),
            ("/admin-by-number", "Prefix", "multi", 9000),
            ("/no-such-port", "Prefix", "multi", 81),
            ("/no-such-port-name", "Prefix", "multi", "grpc"),
            ("/no-such-service", "Prefix", "ghost", 80),
            ("/no-endpoints", "Prefix", "no-endpoints", 8080),
            ("/empty-slice", "Prefix", "empty-slice", 8080),
        ])]),
    ]
    files = {"00-class.yaml": yaml_docs(ingress_class()), "10-all.yaml": yaml_docs(*docs)}
    with env(tmp_path_factory, "ports", files) as tg:
        tg.web, tg.admin = web, admin
        yield tg
    for b in (web, admin, empty_slice_backend):
        b.stop()


def test_service_port_by_name_and_number(ports_tg):
    for path in ("/by-name", "/by-number"):
        a = ask(ports_tg.port, "ports.test", path)
        assert (a.status, a.endpoint) == (200, ports_tg.web.endpoint), path
    for path in ("/admin-by-name", "/admin-by-number"):
        a = ask(ports_tg.port, "ports.test", path)
        assert (a.status, a.endpoint) == (200, ports_tg.admin.endpoint), path


@pytest.mark.parametrize("path", ["/no-such-port", "/no-such-port-name", "/no-such-service",
                                  "/no-endpoints", "/empty-slice"])
def test_missing_port_service_or_endpoints_is_503(ports_tg, path):
    a = ask(ports_tg.port, "ports.test", path)
    assert a.status == 503 and a.service is None


# ---------------------------------------------------------------- endpoint readiness

@pytest.fixture(scope="module")
def ready_tg(tmp_path_factory):
    b = {n: EchoBackend(n.split("-")[0], f"127.0.0.{i + 2}")
         for i, n in enumerate(["mixed-ready", "mixed-notready", "mixed-terminating",
                                "draining-1", "draining-2", "draining-notserving",
                                "noconditions-1", "down-1"])}

    def ep(name, **cond):
        return dict(addr=b[name].addr, **cond)

    # every backend gets its own port: one slice per endpoint
    def slices(svc, eps):
        return [endpoint_slice(svc, [e], b[n].port, name=f"{svc}-{i}") for i, (n, e) in enumerate(eps)]

    docs = [service("mixed"), service("draining"), service("noconditions"), service("down")]
    docs += slices("mixed", [("mixed-ready", ep("mixed-ready", ready=True)),
                             ("mixed-notready", ep("mixed-notready", ready=False, serving=False)),
                             ("mixed-terminating", ep("mixed-terminating", ready=False, serving=True,
                                                      terminating=True))])
    docs += slices("draining", [("draining-1", ep("draining-1", ready=False, serving=True, terminating=True)),
                                ("draining-2", ep("draining-2", ready=False, serving=True, terminating=True)),
                                ("draining-notserving", ep("draining-notserving", ready=False, serving=False,
                                                           terminating=True))])
    docs += slices("noconditions", [("noconditions-1", ep("noconditions-1"))])
    docs += slices("down", [("down-1", ep("down-1", ready=False, serving=False))])
    docs.append(ingress("ready", [("ready.test", [(f"/{s}", "Prefix", s, 8080)
                                                  for s in ("mixed", "draining", "noconditions", "down")])]))
    files = {"00-class.yaml": yaml_docs(ingress_class()), "10-all.yaml": yaml_docs(*docs)}
    with env(tmp_path_factory, "ready", files, workers=1) as tg:
        tg.b = b
        yield tg
    for x in b.values():
        x.stop()


def endpoints_seen(tg, host, path, n):
    c = Client(tg.port)
    try:
        seen = collections.Counter()
        for _ in range(n):
            r = c.request(path=path, host=host)
            seen[r.json()["endpoint"] if r.status == 200 else str(r.status)] += 1
        return seen
    finally:
        c.close()


def test_only_ready_endpoints_get_requests(ready_tg):
    assert set(endpoints_seen(ready_tg, "ready.test", "/mixed", 12)) == {ready_tg.b["mixed-ready"].endpoint}


def test_serving_terminating_endpoints_when_none_is_ready(ready_tg):
    assert set(endpoints_seen(ready_tg, "ready.test", "/draining", 12)) == {
        ready_tg.b["draining-1"].endpoint, ready_tg.b["draining-2"].endpoint}


def test_absent_ready_condition_counts_as_ready(ready_tg):
    assert set(endpoints_seen(ready_tg, "ready.test", "/noconditions", 3)) == {
        ready_tg.b["noconditions-1"].endpoint}


def test_no_usable_endpoint_is_503(ready_tg):
    assert served_by(ready_tg.port, "ready.test", "/down") == "503"
    assert ready_tg.b["down-1"].requests == 0


# ---------------------------------------------------------------- IPv6 endpoints

def test_ipv6_endpoints(tidegate):
    if not loopback_v6():
        pytest.skip("IPv6 loopback (::1) is not configured on this machine")
    v6a, v6b = EchoBackend("dual", "::1"), EchoBackend("dual", "::1")
    v4 = EchoBackend("dual", "127.0.0.1")
    try:
        docs = [service("dual"),
                endpoint_slice("dual", ["::1"], v6a.port, name="dual-v6a", v6=True),
                endpoint_slice("dual", ["0:0:0:0:0:0:0:1"], v6b.port, name="dual-v6b", v6=True),
                endpoint_slice("dual", ["127.0.0.1"], v4.port, name="dual-v4"),
                ingress("dual", [("dual.test", [("/", "Prefix", "dual", 8080)])])]
        tg = tidegate({"00-class.yaml": yaml_docs(ingress_class()), "10-all.yaml": yaml_docs(*docs)},
                      workers=1)
        seen = endpoints_seen(tg, "dual.test", "/", 9)
        assert seen == {v6a.endpoint: 3, v6b.endpoint: 3, v4.endpoint: 3}
    finally:
        for b in (v6a, v6b, v4):
            b.stop()


# ---------------------------------------------------------------- load balancing

@pytest.fixture(scope="module")
def lb_backends():
    bs = backends_on_one_port("echo-service", 10)
    yield bs
    for b in bs:
        b.stop()


def lb_files(bs):
    return {"00-class.yaml": yaml_docs(ingress_class()),
            "10-services.yaml": yaml_docs(service("echo-service"),
                                          endpoint_slice("echo-service", [b.addr for b in bs], bs[0].port)),
            "20-ingress.yaml": yaml_docs(ingress("load-balancing", default=("echo-service", 8080)))}


def test_load_balancing_round_robin_one_worker(tidegate, lb_backends):
    """10 endpoints, 100 requests, one worker: round robin gives exactly 10 each."""
    tg = tidegate(lb_files(lb_backends), workers=1)
    seen = endpoints_seen(tg, "load-balancing", "/", 100)
    assert seen == {b.endpoint: 10 for b in lb_backends}


def test_load_balancing_every_endpoint_gets_a_share(tidegate, lb_backends):
    """The conformance scenario as written: 100 requests (new connections, any
    worker) reach all 10 pods."""
    tg = tidegate(lb_files(lb_backends), workers=2)
    seen = collections.Counter()
    for _ in range(100):
        a = ask(tg.port, "load-balancing", "/")
        assert a.status == 200
        seen[a.endpoint] += 1
    assert set(seen) == {b.endpoint for b in lb_backends}
