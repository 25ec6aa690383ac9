"""A hostile loopback destination: it answers with the request it received, headers included.

The status comes from the path: ``/answer/401/...`` answers 401, ``/answer/500/...`` 500, any other
path 200. A careless (or malicious) server does exactly this, so whatever a client sends it can come
back in an error body. Every request line is recorded, so a test can also assert what was never sent.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from helpers.ports import serve_http

_STATUS = re.compile(r"^/answer/(\d{3})(?:/|$)")


class Echo:
    def __init__(self) -> None:
        self.requests: list[str] = []  # "METHOD /path?query" of every request received
        self.replies: list[str] = []  # what it answered, the request's headers included
        self.lock = threading.Lock()

    def start(self) -> Echo:
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else b""
                found = _STATUS.match(self.path)
                status = int(found.group(1)) if found else 200
                reply = f"{self.requestline}\n{self.headers}\n".encode() + body
                with echo.lock:
                    echo.requests.append(f"{self.command} {self.path}")
                    echo.replies.append(reply.decode(errors="replace"))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

        self.server = serve_http(Handler)
        self.port: int = self.server.server_address[1]
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
