#!/usr/bin/env python3
"""GET /api/form shows a form; POST /api/form reads it from stdin and answers.

Shows form handling with only the standard library: CONTENT_LENGTH says how much
to read, the urlencoded body is parsed, and a missing field is a 400.
"""
import html
import os
import sys
from urllib.parse import parse_qs

method = os.environ["REQUEST_METHOD"]
if method == "GET":
    sys.stdout.write("Content-Type: text/html; charset=utf-8\n\n")
    sys.stdout.write(
        '<form method="post"><input name="name" placeholder="your name">'
        '<button>Send</button></form>\n'
    )
    sys.exit(0)

length = int(os.environ.get("CONTENT_LENGTH") or 0)
fields = parse_qs(sys.stdin.buffer.read(length).decode("utf-8", "replace"))
name = fields.get("name", [""])[0].strip()
if not name:
    sys.stdout.write("Status: 400 Bad Request\nContent-Type: text/plain\n\nthe form needs a name\n")
else:
    sys.stdout.write("Content-Type: text/html; charset=utf-8\n\n")
    sys.stdout.write(f"<p>Thanks, {html.escape(name)}.</p>\n")
