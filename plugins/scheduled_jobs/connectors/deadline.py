"""A total deadline for each HTTP try: connect, send and the whole answer, however slowly the peer answers.

A socket timeout bounds each read, not a request: a peer that sends a byte a second (of its headers or
of its body) never lets one read time out, and holds the request as long as it likes. So each try runs
under a ``Deadline`` of this thread, and one watchdog thread shuts down the sockets of a try whose
deadline has passed: a read blocked on them ends at once, whatever it was reading. The readers of a
body also check the deadline between chunks, and a body that ended after the deadline passed counts as
cut off (a shut-down socket looks like the end of an answer that has no length).

The sockets are known through the connection classes mounted by ``retry.adapter_for``: each connection
tells the deadline of its thread about its socket when it connects and when it sends a request on a
kept-alive socket. ``ConnectorRetry.sleep`` starts a new deadline for each retry.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

if TYPE_CHECKING:
    from collections.abc import Iterator


class Deadline:
    """The deadline of one try, ``seconds`` from its start; ``restart`` for the next try."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        """Set by the watchdog once the deadline passed (and the try's sockets were shut down)."""
        self._sockets: list[socket.socket] = []

    def restart(self) -> None:
        with _watchdog:
            self.at = time.monotonic() + self.seconds
            self.expired = False
            self._sockets.clear()  # a failed try's connection is closed, never reused
            _watchdog.wake_for(self)

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with _watchdog:
            if self.expired:
                _shut(sock)
            elif not any(known is sock for known in self._sockets):
                self._sockets.append(sock)

    def _expire(self) -> None:
        self.expired = True
        for sock in self._sockets:
            _shut(sock)
        self._sockets.clear()

    def _forget(self) -> None:
        self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, on an SSL socket too: SSLSocket.shutdown changes its state, which the
    # thread reading it does not expect; the file descriptor's shutdown just makes that read end.
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """The one thread that shuts down the sockets of every try past its deadline."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._active: set[Deadline] = set()
        self._thread: threading.Thread | None = None
        self._waiting_until = math.inf

    def __enter__(self) -> None:
        self._condition.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._condition.__exit__(None, None, None)

    def add(self, found: Deadline) -> None:
        with self._condition:
            self._active.add(found)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            self.wake_for(found)

    def wake_for(self, found: Deadline) -> None:
        """Wake the watchdog when ``found`` is due before the deadline it waits for (the lock held)."""
        if found.at < self._waiting_until:  # deadlines mostly come later than the one waited for
            self._waiting_until = found.at
            self._condition.notify()

    def remove(self, found: Deadline) -> None:
        with self._condition:
            self._active.discard(found)
            found._forget()

    def _run(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                for found in self._active:
                    if not found.expired and found.at <= now:
                        found._expire()
                pending = [found.at for found in self._active if not found.expired]
                self._waiting_until = min(pending, default=math.inf)
                self._condition.wait(None if not pending else self._waiting_until - now)


_watchdog = _Watchdog()
_local = threading.local()


def current() -> Deadline | None:
    """This thread's deadline, when it is inside ``deadline()``."""
    found: Deadline | None = getattr(_local, "deadline", None)
    return found


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Run a request (its tries and the reading of its answer) with ``seconds`` for each try."""
    found = Deadline(seconds)
    previous = current()
    _local.deadline = found
    _watchdog.add(found)
    try:
        yield found
    finally:
        _watchdog.remove(found)
        _local.deadline = previous


class _Watched:
    """Tells the thread's deadline about the connection's socket, and opens none once it has passed."""

    sock: socket.socket | None

    def connect(self) -> None:
        found = current()
        if found is not None and found.passed():
            raise TimeoutError("the request's deadline passed")
        super().connect()  # type: ignore[misc]
        if found is not None:
            found.watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        found = current()
        if found is not None:
            found.watch(self.sock)  # a kept-alive socket: connect() is not called again
        super().request(*args, **kwargs)  # type: ignore[misc]


class WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {
    "http": WatchedHTTPConnectionPool,
    "https": WatchedHTTPSConnectionPool,
}
"""The pool classes a pool manager uses by scheme, so that every connection it opens is watched."""
