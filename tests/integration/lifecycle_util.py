"""Helpers for the lifecycle tests (drain, upgrade, endpoint changes).

Load: N client threads, each on its own keep-alive connection, that honour
Connection: close the way a well-behaved client does (read the response, then
expect the server's FIN, then reconnect). Every request that does not get a
complete 200 is a failure; a refused connect is counted apart; a connection
that ends with a reset instead of a FIN is counted too.

Proc: a `tidegate ingress` process started from any binary path (the upgrade
test runs a copy it can replace), with its log parsed like conftest.Tidegate.

netns(): runs the calling thread (and the threads and processes it starts)
inside a fresh network namespace named tg-life, with
net.ipv4.tcp_migrate_req=1 as README recommends for several processes on one
port.

subreaper(): makes this process adopt orphaned descendants, so that a
tidegate started by another tidegate (SIGUSR2) can be waited for.
"""
import collections
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time

from backends import Conn, read_response
from conftest import SANITIZER_MARKS, SLOWDOWN

CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


class Load:
    """Steady keep-alive load from `conns` threads against 127.0.0.1:port."""

    def __init__(self, port, conns=16, path="/", host="app.test", pause=0.0, tls=False):
        self.port, self.path, self.host, self.pause = port, path, host, pause
        # tls: every connection is HTTPS with SNI = host (the certificate is
        # not verified: these tests check the connection's life, not its
        # identity). A Connection: close response must then end with the
        # server's close_notify and FIN (recv returns b""); a TLS connection
        # cut without close_notify counts as a failure.
        self.ctx = None
        if tls:
            import ssl
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self.ctx.check_hostname = False
            self.ctx.verify_mode = ssl.CERT_NONE
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []  # (time, reason)
        self.refused = 0
        self.resets = 0  # a Connection: close response followed by a reset, not a FIN
        self.fins = collections.Counter()  # backend -> connections ended by a FIN
        self.by_backend = collections.Counter()
        self.connects = 0
        self.stopping = False
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(conns)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(30)
        return self

    def _fail(self, why):
        with self.lock:
            self.failures.append((time.time(), why))

    def _run(self):
        req = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n").encode()
        sock = conn = None
        while not self.stopping:
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                except ConnectionRefusedError:
                    with self.lock:
                        self.refused += 1
                    time.sleep(0.01)
                    continue
                except OSError as e:
                    self._fail(f"connect: {e!r}")
                    time.sleep(0.01)
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.ctx is not None:
                    try:
                        sock = self.ctx.wrap_socket(sock, server_hostname=self.host)
                    except OSError as e:
                        self._fail(f"TLS handshake: {e!r}")
                        sock.close()
                        sock = None
                        continue
                conn = Conn(sock)
                with self.lock:
                    self.connects += 1
            try:
                sock.sendall(req)
                r = read_response(conn)
            except (OSError, EOFError, ValueError) as e:
                self._fail(f"request: {e!r}")
                sock.close()
                sock = None
                continue
            backend = None
            if r.status == 200:
                try:
                    backend = r.json().get("backend")
                except ValueError:
                    pass
                with self.lock:
                    self.ok += 1
                    self.by_backend[backend] += 1
            else:
                self._fail(f"status {r.status}")
            if (r.header("Connection") or "").lower() == "close":
                try:
                    sock.settimeout(5 * SLOWDOWN)
                    end = sock.recv(1)
                    if end == b"":
                        with self.lock:
                            self.fins[backend] += 1
                    else:
                        self._fail("bytes after a Connection: close response")
                except ConnectionResetError:
                    with self.lock:
                        self.resets += 1
                except OSError as e:
                    self._fail(f"waiting for the FIN: {e!r}")
                sock.close()
                sock = None
            if self.pause:
                time.sleep(self.pause)
        if sock is not None:
            sock.close()

    def summary(self):
        return (f"ok={self.ok} failures={len(self.failures)} {self.failures[:5]} "
                f"refused={self.refused} resets={self.resets} connects={self.connects} "
                f"by_backend={dict(self.by_backend)} fins={dict(self.fins)}")

    def assert_clean(self):
        assert not self.failures, self.summary()
        assert self.refused == 0, self.summary()
        assert self.resets == 0, self.summary()
        assert self.ok > 0, self.summary()


class Proc:
    """`BINARY ingress --manifests DIR ...`, logs to files in `d`."""

    def __init__(self, binary, d, mdir, args=(), workers=2, http="127.0.0.1:0"):
        self.out_path = os.path.join(str(d), "tidegate.out")
        self.err_path = os.path.join(str(d), "tidegate.err")
        argv = [binary, "ingress", "--manifests", mdir, "--http-listen", http,
                "--https-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                "--workers", str(workers)] + list(args)
        self.proc = subprocess.Popen(argv, stdout=open(self.out_path, "wb"),
                                     stderr=open(self.err_path, "wb"))
        m = self.wait_log(r"serving http on port (\d+) .*https on port (\d+), admin on port (\d+)")
        self.port, self.https_port, self.admin_port = (int(m.group(1)), int(m.group(2)),
                                                       int(m.group(3)))

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, timeout=10.0, after=0, watch=True):
        """Waits for a stderr line matching pattern (searching from offset
        `after`); with watch, fails early when this process exited."""
        end = time.time() + timeout * SLOWDOWN
        while time.time() < end:
            m = re.search(pattern, self.stderr()[after:])
            if m:
                return m
            if watch and self.proc.poll() is not None and not re.search(pattern, self.stderr()[after:]):
                raise AssertionError(f"tidegate exited ({self.proc.returncode}) before "
                                     f"'{pattern}':\n{self.stderr()[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"no '{pattern}' in tidegate's log:\n{self.stderr()[-3000:]}")

    def admin(self, path, port=None):
        import urllib.error
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port or self.admin_port}{path}",
                                        timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def check_stderr(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            assert mark not in err, f"sanitizer report in tidegate's stderr:\n{err[-6000:]}"

    def stop(self, timeout=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout * SLOWDOWN)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("tidegate did not exit after SIGTERM:\n" + self.stderr()[-3000:])
        self.check_stderr()
        assert self.proc.returncode == 0, f"exit status {self.proc.returncode}:\n{self.stderr()[-3000:]}"


def wait_pid(pid, timeout):
    """waitpid with a timeout; returns the exit status (or raises)."""
    end = time.time() + timeout * SLOWDOWN
    while time.time() < end:
        r, st = os.waitpid(pid, os.WNOHANG)
        if r == pid:
            return os.waitstatus_to_exitcode(st)
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} did not exit")


@contextlib.contextmanager
def subreaper():
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        import pytest
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) failed")
    try:
        yield
    finally:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@contextlib.contextmanager
def netns(name="tg-life"):
    """Runs the calling thread in a new network namespace (loopback up,
    tcp_migrate_req=1); everything it starts inherits it. Skips when the
    machine cannot."""
    import pytest
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {r.stderr.strip()}")
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            pytest.skip(f"setns: {os.strerror(ctypes.get_errno())}")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
                f.write("1")
            yield
        finally:
            _libc.setns(orig, CLONE_NEWNET)
    finally:
        os.close(orig)
        os.close(target)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def slice_doc(svc, ports_conditions, name=None, ns="default"):
    """An EndpointSlice with one endpoint per (port, ready, serving,
    terminating); each endpoint on its own port of 127.0.0.1 needs its own
    slice (a slice has one port list), so this returns several documents."""
    docs = []
    for i, (port, ready, serving, terminating) in enumerate(ports_conditions):
        docs.append(f"""
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name or svc}-{port}
  namespace: {ns}
  labels: {{kubernetes.io/service-name: {svc}}}
addressType: IPv4
ports: [{{name: http, port: {port}, protocol: TCP}}]
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {{ready: {str(ready).lower()}, serving: {str(serving).lower()}, terminating: {str(terminating).lower()}}}
""")
    return "---".join(docs)


def keepalive_client_to(port, backend_name, host="app.test", tries=200):
    """A backends.Client whose connection is served by the instance that
    routes to backend_name (when two instances share a port)."""
    from backends import Client
    for _ in range(tries):
        c = Client(port)
        r = c.request(host=host)
        if r.status == 200 and r.json().get("backend") == backend_name:
            return c
        c.close()
    raise AssertionError(f"no connection reached the instance of backend {backend_name}")
