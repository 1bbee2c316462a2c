#!/usr/bin/env python3
"""Generate a large manifest directory for tidegate's ingress scale test.

Default: 10,000 Ingresses with 2 hosts each (20,000 hosts, 10% of them
wildcards), 2 paths per host (40,000 routes), one Service and one
EndpointSlice of 5 endpoints per Ingress (50,000 endpoints), written 100
Ingresses (with their Services and slices) per file, plus the IngressClass and
ConfigMap.

    bench/gen_manifests.py OUT_DIR [--ingresses N] [--per-file K] [--endpoints E]

Then: TG_SCALE_DIR=OUT_DIR build/tests/unit/ingress/test_scale
"""
import argparse
import os
import sys


def ingress(i, ns, endpoints):
    svc = f"svc-{i}"
    host_a = f"app-{i}.example.com"
    host_b = f"*.wild-{i}.example.com" if i % 10 == 0 else f"api-{i}.example.net"
    ann = ""
    if i % 7 == 0:
        ann = ("  annotations:\n"
               "    nginx.ingress.kubernetes.io/proxy-body-size: 8m\n"
               "    nginx.ingress.kubernetes.io/proxy-read-timeout: \"120\"\n")
    eps = "".join(
        f"  - addresses: [\"10.{(i >> 8) & 255}.{i & 255}.{e + 1}\"]\n"
        f"    conditions: {{ready: true}}\n" for e in range(endpoints))
    ts = f"2024-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
    return f"""---
apiVersion: v1
kind: Service
metadata:
  name: {svc}
  namespace: {ns}
spec:
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {svc}-abcde
  namespace: {ns}
  labels:
    kubernetes.io/service-name: {svc}
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
{eps}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ing-{i}
  namespace: {ns}
  creationTimestamp: "{ts}"
{ann}spec:
  ingressClassName: tidegate
  rules:
  - host: "{host_a}"
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: {svc}
            port:
              number: 80
      - path: /api/v1
        pathType: Exact
        backend:
          service:
            name: {svc}
            port:
              name: http
  - host: "{host_b}"
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: {svc}
            port:
              number: 80
      - path: /static
        pathType: Prefix
        backend:
          service:
            name: {svc}
            port:
              number: 80
"""


HEADER = """apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: tidegate
spec:
  controller: tidegate.io/ingress-controller
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: tidegate
  namespace: tidegate-system
data:
  proxy-read-timeout: "60"
  proxy-body-size: 1m
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--ingresses", type=int, default=10000)
    ap.add_argument("--per-file", type=int, default=100)
    ap.add_argument("--endpoints", type=int, default=5)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "00-class.yaml"), "w") as f:
        f.write(HEADER)
    nfiles = 0
    for start in range(0, a.ingresses, a.per_file):
        ns = f"team-{start // a.per_file % 50}"
        path = os.path.join(a.out, f"apps-{start // a.per_file:05d}.yaml")
        with open(path, "w") as f:
            for i in range(start, min(start + a.per_file, a.ingresses)):
                f.write(ingress(i, ns, a.endpoints))
        nfiles += 1
    print(f"{a.out}: {a.ingresses} Ingresses in {nfiles} files, "
          f"{2 * a.ingresses} hosts, {a.ingresses * a.endpoints} endpoints", file=sys.stderr)


if __name__ == "__main__":
    main()
