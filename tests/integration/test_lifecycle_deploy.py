"""deploy/ matches the binary (issue 4): tidegate's own manifest loader
accepts every file, the container arguments are flags `tidegate ingress`
accepts, readiness follows /healthz on the admin port, and Kubernetes waits
longer than the drain can take before it sends SIGKILL."""
import os
import subprocess

import pytest
import yaml

from conftest import ROOT, TIDEGATE

DEPLOY = os.path.join(ROOT, "deploy")


def run(*args):
    return subprocess.run([TIDEGATE, "ingress"] + list(args), capture_output=True, text=True,
                          timeout=30)


def docs():
    for name in sorted(os.listdir(DEPLOY)):
        if name.endswith((".yaml", ".yml")):
            with open(os.path.join(DEPLOY, name)) as f:
                for d in yaml.safe_load_all(f):
                    if d:
                        yield name, d


def seconds(v):
    v = str(v)
    return float(v[:-1]) if v.endswith("s") else float(v)


@pytest.fixture(autouse=True)
def built():
    if not os.access(TIDEGATE, os.X_OK):
        pytest.skip(f"{TIDEGATE} not built")


def test_loader_accepts_every_deploy_manifest():
    r = run("--manifests", DEPLOY, "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(0 failed)" in r.stdout and "(0 rejected)" in r.stdout, r.stdout
    assert "0 ConfigMap keys rejected" in r.stdout, r.stdout


def test_check_reports_what_is_wrong(tmp_path):
    (tmp_path / "good.yaml").write_text(open(os.path.join(DEPLOY, "ingressclass.yaml")).read())
    (tmp_path / "broken.yaml").write_text("kind: Ingress\nmetadata: {name: x\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "cm.yaml").write_text("""apiVersion: v1
kind: ConfigMap
metadata: {name: tidegate, namespace: tidegate-system}
data: {keep-alive: "soon"}
""")
    r = run("--manifests", str(tmp_path), "--check")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "broken.yaml" in r.stderr, r.stderr
    assert "keep-alive" in r.stderr, r.stderr
    r = run("--manifests", str(tmp_path / "missing"), "--check")
    assert r.returncode == 1 and "missing" in r.stderr


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_workload_flags_probes_and_termination_grace(kind):
    objs = [d for _, d in docs() if d.get("kind") == kind]
    assert len(objs) == 1
    spec = objs[0]["spec"]["template"]["spec"]
    (ctr,) = [c for c in spec["containers"] if c["name"] == "tidegate"]
    args = list(ctr["args"])
    assert args[0] == "ingress"
    # The same flags, with the API source swapped for the deploy directory and
    # the listeners moved off privileged ports: --check validates them all.
    flags = [a for a in args[1:] if a != "--in-cluster"]
    assert len(flags) == len(args) - 2, "the manifests are expected to use --in-cluster"
    flags = [f.replace("$(POD_IP)", "192.0.2.1") for f in flags]
    r = run(*flags, "--manifests", DEPLOY, "--http-listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", "--check")
    assert r.returncode == 0, (flags, r.stdout, r.stderr)
    grace = 0.0
    for f in flags:
        if f.startswith("--shutdown-grace-period="):
            grace = seconds(f.split("=", 1)[1])
    assert grace > 0, "a balancer in front needs a grace period to notice /healthz"
    # Readiness on /healthz at the admin port (10254, the default).
    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    probe = ctr["readinessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert ports[probe["port"]] == 10254
    # terminationGracePeriodSeconds > grace + worker-shutdown-timeout.
    (cm,) = [d for _, d in docs() if d.get("kind") == "ConfigMap"
             and d["metadata"]["name"] == "tidegate"]
    wst = seconds(cm["data"].get("worker-shutdown-timeout", "240s"))
    assert spec["terminationGracePeriodSeconds"] > grace + wst
