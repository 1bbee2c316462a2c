#!/usr/bin/python3
"""A stand-in for the Kubernetes API server, for tidegate's API source tests.

This is NOT a Kubernetes API server: no API server can run on the test
machine, so this small program (Python standard library only) speaks the
parts of the documented wire format that `tidegate ingress --kubeconfig`
uses, and lets a test misbehave on purpose:

  * LIST   GET /api/v1/{services,secrets,configmaps,...},
           GET /apis/GROUP/VERSION/RESOURCE and the namespaced forms
           /.../namespaces/NS/RESOURCE; `limit` and `continue` paginate
           (items come without kind/apiVersion, as the real server sends
           them); `fieldSelector=metadata.name=X` filters.
  * WATCH  the same paths with `watch=1`: HTTP/1.1 200 with chunked
           transfer-encoding, one JSON event {"type", "object"} per line
           (optionally split over several chunks at arbitrary points);
           `resourceVersion` picks where to resume; `allowWatchBookmarks`
           enables BOOKMARK events; `timeoutSeconds` ends the stream cleanly.
  * 410    after compact(), a watch from an older resourceVersion gets 410
           Gone, as an ERROR event carrying a Status (the API server's usual
           way) or, with gone_as_http, as the HTTP status; expire() sends the
           ERROR event to every open watch; an expired continue token is 410.
  * drop() closes every open watch connection mid-stream without the
           terminating chunk (a dropped connection).
  * STATUS PATCH (application/merge-patch+json) and PUT on
           /apis/networking.k8s.io/v1/namespaces/NS/ingresses/NAME/status are
           applied, recorded in status_writes, and emitted as MODIFIED.
  * AUTH   a bearer token (401 otherwise) and/or, over TLS, a client
           certificate signed by the given CA.

Tests either import FakeApiServer and drive it directly, or run this file
(`fake_apiserver.py --port 0 ...`), read "PORT <n>" from its stdout and drive
it through the unauthenticated /_control/ endpoints; it exits when its stdin
closes.
"""

import argparse
import base64
import http.server
import json
import random
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

# kind -> (resource, group/version prefix, apiVersion, namespaced)
KINDS = {
    "Ingress": ("ingresses", "/apis/networking.k8s.io/v1", "networking.k8s.io/v1", True),
    "IngressClass": ("ingressclasses", "/apis/networking.k8s.io/v1", "networking.k8s.io/v1",
                     False),
    "Service": ("services", "/api/v1", "v1", True),
    "Secret": ("secrets", "/api/v1", "v1", True),
    "ConfigMap": ("configmaps", "/api/v1", "v1", True),
    "EndpointSlice": ("endpointslices", "/apis/discovery.k8s.io/v1", "discovery.k8s.io/v1",
                      True),
}
RESOURCES = {v[0]: (k, v[1], v[2], v[3]) for k, v in KINDS.items()}


def status_obj(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Watch:
    """One open watch connection."""

    def __init__(self, resource, ns, name_sel, rv, bookmarks, handler):
        self.resource = resource
        self.ns = ns
        self.name_sel = name_sel
        self.cursor = rv          # last resourceVersion delivered
        self.bookmarks = bookmarks
        self.handler = handler
        self.pending = []         # extra events to send (bookmarks, errors)
        self.end = None           # None, "drop" or "expire"


class FakeApiServer:
    """The stand-in's state and HTTP server. Thread-safe."""

    def __init__(self, token=None, tls=None, host="127.0.0.1", port=0):
        self.token = token
        self.lock = threading.Condition()
        self.rv = 100                  # global resourceVersion counter
        self.objects = {r: {} for r in RESOURCES}   # resource -> {(ns, name): obj}
        self.history = {r: [] for r in RESOURCES}   # resource -> [(rv, type, obj)]
        self.compacted = 0             # watches from an older rv get 410
        self.watches = set()
        self.requests = []             # (method, path, query dict, auth, client cert subject)
        self.status_writes = []        # (method, ns, name, body dict)
        self.continues = {}            # token -> (rv, [items])
        # knobs
        self.gone_as_http = False      # 410 as HTTP status instead of an ERROR event
        self.max_page = None           # cap page size below the client's limit
        self.expire_continue = False   # every continue token answers 410
        self.split_chunks = False      # split events over several chunks
        self.fail_status = 0           # answer status writes with this code (0: no)
        self.watch_timeout_cap = None  # end watches after at most this many seconds
        srv = self

        class Handler(_Handler):
            server_state = srv

        self.httpd = _Server((host, port), Handler)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["cert"], tls["key"])
            if tls.get("client_ca"):
                ctx.load_verify_locations(tls["client_ca"])
                ctx.verify_mode = ssl.CERT_REQUIRED if tls.get("require_client_cert") \
                    else ssl.CERT_OPTIONAL
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # ---- lifecycle -------------------------------------------------------
    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.drop()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- objects ---------------------------------------------------------
    def _emit(self, resource, typ, obj):
        self.history[resource].append((int(obj["metadata"]["resourceVersion"]), typ,
                                       json.loads(json.dumps(obj))))
        self.lock.notify_all()

    def apply(self, obj, silent=False):
        """Creates or replaces an object; ADDED/MODIFIED unless silent."""
        obj = json.loads(json.dumps(obj))
        resource, _, api_version, namespaced = KINDS[obj["kind"]]
        obj["apiVersion"] = api_version
        meta = obj.setdefault("metadata", {})
        if namespaced:
            meta.setdefault("namespace", "default")
        key = (meta.get("namespace", ""), meta["name"])
        with self.lock:
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            old = self.objects[resource].get(key)
            meta.setdefault("uid", "uid-%s-%s-%s" % (resource, key[0], key[1]))
            meta.setdefault("creationTimestamp",
                            old["metadata"]["creationTimestamp"] if old else
                            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            if old and "status" in old and "status" not in obj:
                obj["status"] = old["status"]
            self.objects[resource][key] = obj
            if not silent:
                self._emit(resource, "MODIFIED" if old else "ADDED", obj)
            return obj

    def delete(self, kind, ns, name, silent=False):
        resource = KINDS[kind][0]
        with self.lock:
            obj = self.objects[resource].pop((ns if KINDS[kind][3] else "", name), None)
            if obj is None:
                return False
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            if not silent:
                self._emit(resource, "DELETED", obj)
            return True

    def get(self, kind, ns, name):
        with self.lock:
            o = self.objects[KINDS[kind][0]].get((ns if KINDS[kind][3] else "", name))
            return json.loads(json.dumps(o)) if o else None

    # ---- misbehaviour ----------------------------------------------------
    def compact(self):
        """Forgets history: a watch from any older resourceVersion gets 410."""
        with self.lock:
            self.rv += 1
            self.compacted = self.rv
            for r in self.history:
                self.history[r] = []

    def drop(self):
        """Closes every open watch mid-stream (no terminating chunk)."""
        with self.lock:
            for w in self.watches:
                w.end = "drop"
            self.lock.notify_all()

    def expire(self):
        """Sends an ERROR event with a 410 Status to every open watch."""
        with self.lock:
            for w in self.watches:
                w.pending.append({"type": "ERROR", "object": status_obj(
                    410, "Expired", "too old resource version: %d (%d)" %
                    (w.cursor, self.rv))})
                w.end = "expire"
            self.lock.notify_all()

    def bookmark(self):
        """Sends a BOOKMARK at the current resourceVersion to every watch
        that asked for bookmarks."""
        with self.lock:
            for w in self.watches:
                if w.bookmarks:
                    kind, _, api_version, _ = RESOURCES[w.resource]
                    w.pending.append({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(self.rv)}}})
            self.lock.notify_all()

    def open_watches(self, resource=None):
        with self.lock:
            return sum(1 for w in self.watches if resource in (None, w.resource))

    def set(self, **knobs):
        with self.lock:
            for k, v in knobs.items():
                if not hasattr(self, k):
                    raise KeyError(k)
                setattr(self, k, v)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that went away is not an error here


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state = None

    def log_message(self, fmt, *args):
        pass

    # ---- helpers ----------------------------------------------------------
    def _send_json(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code, reason, message):
        self._send_json(code, status_obj(code, reason, message))

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _authorized(self):
        s = self.server_state
        if s.token is None:
            return True
        return self.headers.get("Authorization") == "Bearer " + s.token

    def _record(self, method, path, query):
        s = self.server_state
        auth = self.headers.get("Authorization") or ""
        subject = None
        try:
            cert = self.connection.getpeercert()
            if cert:
                subject = dict(x[0] for x in cert.get("subject", ())).get("commonName")
        except (AttributeError, ValueError):
            pass
        with s.lock:
            s.requests.append({"method": method, "path": path, "query": query,
                               "bearer": auth.startswith("Bearer "), "cert": subject})

    def _route(self, path):
        """(resource, namespace or None, name or None, subresource or None)."""
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            rest = parts[3:]
        else:
            return None
        ns = None
        if len(rest) >= 2 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest or rest[0] not in RESOURCES:
            return None
        return (rest[0], ns, rest[1] if len(rest) > 1 else None,
                rest[2] if len(rest) > 2 else None)

    # ---- verbs -------------------------------------------------------------
    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query, keep_blank_values=True).items()}
        if u.path.startswith("/_control/"):
            return self._control_get(u.path)
        self._record("GET", u.path, q)
        if not self._authorized():
            return self._status(401, "Unauthorized", "Unauthorized")
        r = self._route(u.path)
        if not r or r[2]:
            return self._status(404, "NotFound", "the server could not find the requested "
                                "resource")
        resource, ns, _, _ = r
        name_sel = None
        fs = q.get("fieldSelector")
        if fs:
            if not fs.startswith("metadata.name="):
                return self._status(400, "BadRequest", "unsupported fieldSelector")
            name_sel = fs[len("metadata.name="):]
        if q.get("watch") in ("1", "true"):
            return self._watch(resource, ns, name_sel, q)
        return self._list(resource, ns, name_sel, q)

    def _matches(self, obj, ns, name_sel):
        m = obj["metadata"]
        return (ns is None or m.get("namespace") == ns) and \
            (name_sel is None or m["name"] == name_sel)

    def _list(self, resource, ns, name_sel, q):
        s = self.server_state
        kind = RESOURCES[resource][0]
        limit = int(q.get("limit") or 0)
        if s.max_page:
            limit = min(limit, s.max_page) if limit else s.max_page
        with s.lock:
            if q.get("continue"):
                if s.expire_continue or q["continue"] not in s.continues:
                    return self._status(410, "Expired", "The provided continue parameter is "
                                        "too old to display a consistent list result.")
                rv, rest = s.continues.pop(q["continue"])
            else:
                rv = s.rv
                rest = [json.loads(json.dumps(o)) for k, o in
                        sorted(s.objects[resource].items()) if self._matches(o, ns, name_sel)]
            page, rest = (rest[:limit], rest[limit:]) if limit else (rest, [])
            meta = {"resourceVersion": str(rv)}
            if rest:
                token = base64.b64encode(("%s:%d:%f" % (resource, rv, random.random()))
                                         .encode()).decode()
                s.continues[token] = (rv, rest)
                meta["continue"] = token
                meta["remainingItemCount"] = len(rest)
        for o in page:  # list items carry no kind/apiVersion
            o.pop("kind", None)
            o.pop("apiVersion", None)
        self._send_json(200, {"kind": kind + "List", "apiVersion": RESOURCES[resource][2],
                              "metadata": meta, "items": page})

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _send_event(self, ev):
        data = json.dumps(ev).encode() + b"\n"
        if self.server_state.split_chunks and len(data) > 2:
            cuts = sorted(random.sample(range(1, len(data)), min(3, len(data) - 1)))
            prev = 0
            for c in cuts + [len(data)]:
                self._chunk(data[prev:c])
                self.wfile.flush()
                prev = c
        else:
            self._chunk(data)
        self.wfile.flush()

    def _watch(self, resource, ns, name_sel, q):
        s = self.server_state
        try:
            rv = int(q.get("resourceVersion") or 0)
        except ValueError:
            return self._status(400, "BadRequest", "bad resourceVersion")
        timeout = float(q.get("timeoutSeconds") or 1800)
        if s.watch_timeout_cap:
            timeout = min(timeout, s.watch_timeout_cap)
        with s.lock:
            gone = rv < s.compacted
            if gone and s.gone_as_http:
                self._status(410, "Expired", "too old resource version: %d (%d)" %
                             (rv, s.compacted))
                return
            w = Watch(resource, ns, name_sel, rv, q.get("allowWatchBookmarks") == "true", self)
            if gone:
                w.pending.append({"type": "ERROR", "object": status_obj(
                    410, "Expired", "too old resource version: %d (%d)" % (rv, s.compacted))})
                w.end = "expire"
            s.watches.add(w)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        deadline = time.monotonic() + timeout
        try:
            while True:
                with s.lock:
                    while True:
                        evs = [(r, t, o) for r, t, o in s.history[resource]
                               if r > w.cursor and self._matches(o, ns, name_sel)]
                        if evs or w.pending or w.end == "drop":
                            break
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        s.lock.wait(min(left, 0.5))
                    pending, w.pending = w.pending, []
                    end = w.end
                if end == "drop":
                    # Abrupt close: no terminating chunk.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if not end:
                    for r, t, o in evs:
                        self._send_event({"type": t, "object": o})
                        w.cursor = r
                for ev in pending:
                    self._send_event(ev)
                if end == "expire" or time.monotonic() >= deadline:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            with s.lock:
                s.watches.discard(w)

    def _write_status(self, method):
        s = self.server_state
        u = urllib.parse.urlsplit(self.path)
        body = self._body()
        if u.path.startswith("/_control/"):
            return self._control_post(u.path, body)
        self._record(method, u.path, {})
        if not self._authorized():
            return self._status(401, "Unauthorized", "Unauthorized")
        r = self._route(u.path)
        if not r or r[0] != "ingresses" or not r[1] or not r[2] or r[3] != "status":
            return self._status(405, "MethodNotAllowed", "only ingress status is writable "
                                "in this stand-in")
        if method == "PATCH" and self.headers.get("Content-Type") != \
                "application/merge-patch+json":
            return self._status(415, "UnsupportedMediaType", "want merge-patch+json")
        try:
            doc = json.loads(body)
        except ValueError:
            return self._status(400, "BadRequest", "body is not JSON")
        if s.fail_status:
            return self._status(s.fail_status, "InternalError", "status writes fail (knob)")
        with s.lock:
            obj = s.objects["ingresses"].get((r[1], r[2]))
            if not obj:
                return self._status(404, "NotFound", "ingresses \"%s\" not found" % r[2])
            obj = json.loads(json.dumps(obj))
            if method == "PATCH":
                obj["status"] = _merge(obj.get("status") or {}, doc.get("status") or {})
            else:
                obj["status"] = doc.get("status") or {}
            s.status_writes.append({"method": method, "namespace": r[1], "name": r[2],
                                    "body": doc})
            s.rv += 1
            obj["metadata"]["resourceVersion"] = str(s.rv)
            s.objects["ingresses"][(r[1], r[2])] = obj
            s._emit("ingresses", "MODIFIED", obj)
        self._send_json(200, obj)

    def do_PATCH(self):
        self._write_status("PATCH")

    def do_PUT(self):
        self._write_status("PUT")

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        body = self._body()
        if u.path.startswith("/_control/"):
            return self._control_post(u.path, body)
        self._status(405, "MethodNotAllowed", "not supported by the stand-in")

    # ---- control endpoints (no auth) ----------------------------------------
    def _control_get(self, path):
        s = self.server_state
        with s.lock:
            if path == "/_control/requests":
                return self._send_json(200, s.requests)
            if path == "/_control/status_writes":
                return self._send_json(200, s.status_writes)
            if path == "/_control/watches":
                return self._send_json(200, {"open": len(s.watches)})
        self._status(404, "NotFound", "no such control endpoint")

    def _control_post(self, path, body):
        s = self.server_state
        doc = json.loads(body) if body else {}
        name = path[len("/_control/"):]
        if name == "apply":
            return self._send_json(200, s.apply(doc["object"], doc.get("silent", False)))
        if name == "delete":
            ok = s.delete(doc["kind"], doc.get("namespace", "default"), doc["name"],
                          doc.get("silent", False))
            return self._send_json(200, {"deleted": ok})
        if name in ("compact", "drop", "expire", "bookmark"):
            getattr(s, name)()
            return self._send_json(200, {})
        if name == "set":
            s.set(**doc)
            return self._send_json(200, {})
        self._status(404, "NotFound", "no such control endpoint")


def _merge(dst, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(dst) if isinstance(dst, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    ap.add_argument("--require-client-cert", action="store_true")
    a = ap.parse_args()
    tls = None
    if a.cert:
        tls = {"cert": a.cert, "key": a.key, "client_ca": a.client_ca,
               "require_client_cert": a.require_client_cert}
    srv = FakeApiServer(token=a.token, tls=tls, port=a.port).start()
    print("PORT %d" % srv.port, flush=True)
    # Exit with the parent: it holds our stdin.
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    srv.stop()


if __name__ == "__main__":
    main()
