"""Live configuration under load: the manifest directory changes continuously
while clients send requests on keep-alive connections to routes that stay
valid throughout, and not one of those requests may fail.

The changes are written the ways tools write files: in place (shell
redirection), through a temporary file renamed over the target (kubectl,
helm, most tools), vim's backup-rename-write (the file is absent for a moment,
then re-created), the same slowly (a writer that pauses with the new file
half written), and deletion. What changes: EndpointSlice endpoints (backends
really started before they are added and stopped after they are removed, as
pods are), paths of an Ingress whose file also carries the steady route, and
whole Ingresses for new hosts.

Also: a broken file keeps its last good objects (requests keep working), shows
in tidegate_config_file_errors, and fixing it clears the metric.

TG_LIVE_SECONDS (default 12) sets how long the changes go on.
"""
import collections
import os
import threading
import time

from backends import Client
from ingress_env import (EchoBackend, ask, endpoint_slice, ingress, ingress_class, service,
                         wait_for, yaml_docs)

SECONDS = float(os.environ.get("TG_LIVE_SECONDS", "12"))


# ---------------------------------------------------------------- file writers

def write_inplace(path, text):
    """`cat > file`: truncate and write the same inode."""
    with open(path, "w") as f:
        f.write(text)


def write_atomic(path, text):
    """kubectl/helm style: a temporary file in the same directory renamed over."""
    d, b = os.path.split(path)
    tmp = os.path.join(d, f".{b}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def write_vim(path, text, slow=False):
    """vim's default save: rename to a backup, write a new file, delete the
    backup. slow: the new file stays half written for a while (a slow disk,
    a big file), cut after its first documents: what is there already parses,
    only the last document is missing."""
    backup = path + "~"
    os.rename(path, backup)
    with open(path, "w") as f:
        half = text.rindex("---\n") if slow else len(text) // 2
        f.write(text[:half])
        if slow:
            f.flush()
            time.sleep(0.15)
        f.write(text[half:])
    os.unlink(backup)


# ---------------------------------------------------------------- load

class Load(threading.Thread):
    """Sends requests on one keep-alive connection, round the targets, and
    records every answer that is not a 200 from the expected Service."""

    def __init__(self, port, targets):
        super().__init__(daemon=True)
        self.port, self.targets = port, targets
        self.stop = threading.Event()
        self.ok = 0
        self.failures = []
        self.endpoints = collections.Counter()
        self.connections = 0

    def run(self):
        c = None
        i = 0
        while not self.stop.is_set():
            host, path, want = self.targets[i % len(self.targets)]
            i += 1
            try:
                if c is None:
                    c = Client(self.port)
                    self.connections += 1
                r = c.request(path=path, host=host)
                doc = r.json() if r.status == 200 else {}
                if r.status != 200 or doc.get("service") != want:
                    self.failures.append((time.time(), host, path, r.status, r.body[:200]))
                else:
                    self.ok += 1
                    self.endpoints[doc["endpoint"]] += 1
                if (r.header("Connection") or "").lower() == "close":
                    c.close()  # announced: not a failure
                    c = None
            except Exception as e:  # noqa: BLE001 - any transport error is a failed request
                self.failures.append((time.time(), host, path, "error", repr(e)))
                if c:
                    c.close()
                c = None
        if c:
            c.close()


def start_load(port, targets, n=3):
    loads = [Load(port, targets[k:] + targets[:k]) for k in range(n)]
    for load in loads:
        load.start()
    return loads


def stop_load(loads):
    for load in loads:
        load.stop.set()
    for load in loads:
        load.join(15)
    failures = [f for load in loads for f in load.failures]
    ok = sum(load.ok for load in loads)
    seen = collections.Counter()
    for load in loads:
        seen.update(load.endpoints)
    return ok, failures, seen


# ---------------------------------------------------------------- manifests

def slice_file(backends):
    return yaml_docs(service("stable"),
                     endpoint_slice("stable", [b.addr for b in backends], backends[0].port))


def routes_file(extra):
    """One file, two Ingresses on live.test: the changing Exact paths, then
    the steady route /stable (last, so that a half-written file lacks it)."""
    changing = ingress("changing", [("live.test", [(p, "Exact", "other", 8080) for p in extra])]) if extra else None
    return yaml_docs(changing, ingress("routes", [("live.test", [("/stable", "Prefix", "stable", 8080)])]))


def host_file(i):
    return yaml_docs(ingress(f"host-{i}", [(f"h{i}.live.test", [("/", "Prefix", "other", 8080)])]))


def stable_backends(n):
    """n pods of one Service: 127.0.0.10.. on one port (one slice, one port)."""
    first = EchoBackend("stable", "127.0.0.10")
    return [first] + [EchoBackend("stable", f"127.0.0.{10 + i}", first.port) for i in range(1, n)]


STEADY = [("live.test", "/stable", "stable"), ("live.test", "/stable/deeper?q=1", "stable"),
          ("fixed.test", "/", "stable"), ("LIVE.test:80", "/stable/x", "stable")]


def setup_files(stable, other):
    return {
        "00-class.yaml": yaml_docs(ingress_class()),
        "10-stable.yaml": slice_file(stable),
        "11-other.yaml": yaml_docs(service("other"), endpoint_slice("other", [other.addr], other.port)),
        "20-routes.yaml": routes_file([]),
        "21-fixed.yaml": yaml_docs(ingress("fixed", [("fixed.test", [("/", "Prefix", "stable", 8080)])])),
    }


class Changer:
    """Applies one change and waits until it is live (bounded)."""

    def __init__(self, tg):
        self.tg = tg
        self.steps = collections.Counter()

    def path(self, name):
        return os.path.join(self.tg.mdir, name)

    def apply(self, kind, fn):
        g = self.tg.generation()
        fn()
        self.tg.wait_generation(g + 1)
        self.steps[kind] += 1


# ---------------------------------------------------------------- tests

def test_changes_under_load_fail_no_request(tidegate):
    stable = stable_backends(3)
    spare_addrs = [f"127.0.0.{i}" for i in range(13, 30)]
    other = EchoBackend("other")
    retired = []
    tg = tidegate(setup_files(stable, other))
    ch = Changer(tg)
    loads = start_load(tg.port, STEADY)
    extra, hosts = [], []
    problems = []
    try:
        end = time.time() + SECONDS
        step = 0
        while time.time() < end:
            op = step % 6
            step += 1
            if op == 0 and spare_addrs:
                # a pod starts, then its endpoint is added (in place)
                try:
                    b = EchoBackend("stable", spare_addrs.pop(0), stable[0].port)
                except OSError:  # that address:port is taken here: next time
                    continue
                stable.append(b)
                ch.apply("endpoint added (in place)", lambda: write_inplace(ch.path("10-stable.yaml"), slice_file(stable)))
            elif op == 1 and len(stable) > 2:
                # an endpoint is removed (atomic rename), then its pod stops
                gone = stable.pop(0)
                ch.apply("endpoint removed (rename)", lambda: write_atomic(ch.path("10-stable.yaml"), slice_file(stable)))
                time.sleep(0.1)  # requests already on their way finish, as a terminating pod would serve them
                gone.stop()
                retired.append(gone)
            elif op in (2, 4):
                # the Ingress carrying /stable gets a new path (vim save, slow every other time)
                extra = (extra + [f"/extra-{step}"])[-3:]
                ch.apply("paths changed (vim%s)" % (" slow" if op == 4 else ""),
                         lambda: write_vim(ch.path("20-routes.yaml"), routes_file(extra), slow=(op == 4)))
                got = ask(tg.port, "live.test", extra[-1])
                if (got.status, got.service) != (200, "other"):
                    problems.append(f"new path {extra[-1]}: {got}")
            elif op == 3:
                # a new host in a new file; the oldest host file is deleted
                hosts.append(step)
                ch.apply("host added (new file)", lambda: write_inplace(ch.path(f"30-host-{step}.yaml"), host_file(step)))
                got = ask(tg.port, f"h{step}.live.test", "/")
                if (got.status, got.service) != (200, "other"):
                    problems.append(f"new host h{step}: {got}")
                if len(hosts) > 2:
                    old = hosts.pop(0)
                    ch.apply("host removed (delete)", lambda: os.unlink(ch.path(f"30-host-{old}.yaml")))
                    if ask(tg.port, f"h{old}.live.test", "/").status != 404:
                        problems.append(f"deleted host h{old} still routed")
            elif op == 5:
                # the same content written again: no change, nothing published
                g = tg.generation()
                write_atomic(ch.path("21-fixed.yaml"), yaml_docs(ingress("fixed", [("fixed.test", [("/", "Prefix", "stable", 8080)])])))
                time.sleep(0.1)
                if tg.generation() != g:
                    problems.append("unchanged file published a new snapshot")
    finally:
        ok, failures, seen = stop_load(loads)
        for b in stable + retired + [other]:
            b.stop()
    summary = (f"{ok} requests ok, {len(failures)} failed, {sum(ch.steps.values())} changes "
               f"({dict(ch.steps)}), generation {tg.generation()}")
    print(summary)
    assert not failures, summary + "\nfirst failures: " + repr(failures[:5]) + "\n" + tg.stderr()[-3000:]
    assert not problems, problems
    assert ok > 100 and sum(ch.steps.values()) >= 6, summary
    # endpoints added during the run took their share of the requests
    assert any(seen[b.endpoint] for b in stable if b.addr not in ("127.0.0.10", "127.0.0.11", "127.0.0.12")), seen


def test_broken_file_keeps_last_good_objects(tidegate):
    stable = stable_backends(2)
    other = EchoBackend("other")
    tg = tidegate(setup_files(stable, other))
    routes = os.path.join(tg.mdir, "20-routes.yaml")
    loads = start_load(tg.port, STEADY, n=2)
    try:
        assert tg.metric("tidegate_config_file_errors", file=routes) is None
        # unparsable YAML, written in place: the file's objects stay in force
        write_inplace(routes, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: {rules: [\n")
        wait_for(lambda: tg.metric("tidegate_config_file_errors", file=routes) == 1, what="file error metric")
        assert tg.metric("tidegate_config_last_reload_successful") == 0
        assert ask(tg.port, "live.test", "/stable").service == "stable"
        # valid YAML with an invalid Ingress: that object keeps its last good version
        bad = routes_file(["/new"]).replace('"Exact"', '"Regex"')
        write_atomic(routes, bad)
        wait_for(lambda: "Regex" in tg.stderr() and "rejected" in tg.stderr(), what="rejection logged")
        assert tg.metric("tidegate_config_file_errors", file=routes) == 1
        assert ask(tg.port, "live.test", "/new").status == 404  # the rejected version is not used
        assert ask(tg.port, "live.test", "/stable").service == "stable"
        # fixed: the change applies and the metric clears
        g = tg.generation()
        write_vim(routes, routes_file(["/new"]))
        tg.wait_generation(g + 1)
        wait_for(lambda: tg.metric("tidegate_config_file_errors", file=routes) is None, what="metric cleared")
        assert tg.metric("tidegate_config_last_reload_successful") == 1
        assert ask(tg.port, "live.test", "/new").service == "other"
    finally:
        ok, failures, _ = stop_load(loads)
        for b in stable + [other]:
            b.stop()
    assert not failures, failures[:5]
    assert ok > 0
