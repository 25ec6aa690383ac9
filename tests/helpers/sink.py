"""A real HTTP destination on loopback that records what it received, with faults on demand."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from helpers.ports import serve_http

# A fault plan gets the request number (1-based) and the idempotency key, and says what to do:
# "ok", "500", "400", "429" (Retry-After: 1), "timeout" (answer too late), "reset" (drop the connection),
# "slow" (answer ok after timeout_sleep), or "hold" (wait until released, at most hold_seconds, then answer ok).
FaultPlan = Callable[[int, str], str]


@dataclass
class Sink:
    plan: FaultPlan = lambda number, key: "ok"
    timeout_sleep: float = 3.0
    hold_seconds: float = 30.0
    received: list[str] = field(default_factory=list)  # idempotency keys of requests it accepted (2xx)
    bodies: dict[str, Any] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)  # every request, accepted or not
    retry_after_gaps: list[float] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    holding: int = 0  # requests waiting for release right now
    _count: int = 0
    _last_429: dict[str, float] = field(default_factory=dict)

    def start(self) -> Sink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle's algorithm and delayed
                # ACKs add 40 ms to every keep-alive request.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                key = self.headers.get("Idempotency-Key", "")
                with sink.lock:
                    sink._count += 1
                    number = sink._count
                    sink.attempts[key] += 1
                    if key in sink._last_429:
                        sink.retry_after_gaps.append(time.monotonic() - sink._last_429.pop(key))
                action = sink.plan(number, key)
                if action == "hold":
                    with sink.lock:
                        sink.holding += 1
                    sink.held.set()
                    sink.release.wait(sink.hold_seconds)
                    with sink.lock:
                        sink.holding -= 1
                    action = "ok"
                if action == "timeout":
                    time.sleep(sink.timeout_sleep)
                    action = "ok-late"
                if action == "slow":
                    time.sleep(sink.timeout_sleep)
                    action = "ok"
                if action == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status = {"ok": 201, "ok-late": 201, "500": 500, "400": 400, "429": 429}[action]
                if action == "ok":
                    with sink.lock:
                        sink.received.append(key)
                        sink.bodies[key] = json.loads(body)
                if action == "429":
                    with sink.lock:
                        sink._last_429[key] = time.monotonic()
                reply = b'{"ok": true}' if status < 300 else b'{"error": "nope"}'
                self.send_response(status)
                if action == "429":
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]
        return self

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @property
    def connection_env(self) -> str:
        return json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": self.port, "schema": "http"})

    def duplicates(self) -> dict[str, int]:
        return {key: n for key, n in Counter(self.received).items() if n > 1}
