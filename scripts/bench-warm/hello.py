#!/usr/bin/env python3
"""The same trivial function two ways: a CGI program (no PORT), or an HTTP worker
on $PORT (warm). Used by scripts/bench-warm.sh."""
import os
import sys

BODY = b"hello\n"

if "PORT" not in os.environ:
    sys.stdout.write("Content-Type: text/plain\n\nhello\n")
    sys.exit(0)

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffer the head and body into one write: unbuffered, they go out as two
    # small segments and keep-alive clients wait on a delayed ACK (40 ms).
    wbufsize = -1

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
