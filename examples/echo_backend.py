#!/usr/bin/env python3
"""A small HTTP/1.1 echo backend for the demo: answers every request with a
JSON document naming itself (service, endpoint) and describing the request it
received, so a user can see which pod answered and which headers tidegate
added. Standard library only.

    echo_backend.py --port 18081 --name echo-1 [--service demo/echo] [--bind 127.0.0.1]
"""
import argparse
import json
import socketserver
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo-backend"

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body_in = self.rfile.read(length) if length else b""
        doc = {
            "service": self.server.service,
            "endpoint": self.server.name,
            "method": self.command,
            "path": self.path,
            "headers": {k: v for k, v in self.headers.items()},
            "body_bytes": len(body_in),
        }
        out = (json.dumps(doc, indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _answer

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--service", default="")
    ap.add_argument("--bind", default="127.0.0.1")
    a = ap.parse_args()
    srv = Server((a.bind, a.port), Handler)
    srv.name, srv.service = a.name, a.service
    srv.serve_forever()


if __name__ == "__main__":
    main()
