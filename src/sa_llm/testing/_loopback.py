"""The loopback HTTP server both test servers are built on, and the faults they can inject.

:class:`LoopbackServer` runs a threaded ``http.server`` on ``127.0.0.1`` that stops by itself;
:class:`LoopbackHandler` is its request handler base. The fault vocabulary (:class:`Refuse`,
:class:`Hang`, :class:`Failure`, :class:`CloseAfter`, :class:`Malformed`, :class:`ErrorEvent`,
:class:`Drip`) is shared by :mod:`sa_llm.testing.server` (a scripted OpenAI server) and
:mod:`sa_llm.testing.faults` (recorded replies of any provider), which render each fault in
their own wire format.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, TypeVar

__all__ = [
    "LAST_CHUNK",
    "CloseAfter",
    "Drip",
    "Dropped",
    "ErrorEvent",
    "Failure",
    "Fault",
    "Hang",
    "LoopbackHTTPServer",
    "LoopbackHandler",
    "LoopbackServer",
    "Malformed",
    "Refuse",
    "dumps",
    "http_chunk",
]

# -- the faults -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """An HTTP error for a turn: ``status`` with OpenAI's error body, on ``times`` requests."""

    status: int = 500
    message: str = "The server had an error while processing your request."
    times: int = 1
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refuse:
    """Close the connection after reading the request, without any response."""


@dataclass(frozen=True)
class Hang:
    """Read the request, then send nothing for ``seconds`` (or until the server stops)."""

    seconds: float = 30.0


@dataclass(frozen=True)
class CloseAfter:
    """Drop the connection after ``chunks`` SSE events (or that many body pieces if JSON)."""

    chunks: int = 1


@dataclass(frozen=True)
class Malformed:
    """Send invalid JSON: the whole body, or for a stream one event after ``after`` good ones."""

    after: int = 0


@dataclass(frozen=True)
class ErrorEvent:
    """Send an error event in the stream after ``after`` events, then end the stream."""

    after: int = 1
    message: str = "The server had an error while processing your request."
    code: str = "server_error"


@dataclass(frozen=True)
class Drip:
    """Send the response in pieces of ``size`` bytes, ``interval`` seconds apart."""

    interval: float = 0.001
    size: int = 1


Fault = Refuse | Hang | CloseAfter | Malformed | ErrorEvent | Drip
"""A misbehaviour the server can be told to show on one request."""

# -- wire helpers ---------------------------------------------------------------------------------


def dumps(value: Any) -> str:
    """Compact JSON, as the providers send it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def http_chunk(payload: bytes) -> bytes:
    """``payload`` framed as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


#: The chunk that ends a chunked HTTP/1.1 body.
LAST_CHUNK = b"0\r\n\r\n"


# -- the HTTP side --------------------------------------------------------------------------------


class Dropped(Exception):
    """The response was cut off on purpose (a fault) or the client went away."""


class LoopbackHandler(BaseHTTPRequestHandler):
    """Request handler base of the loopback servers: HTTP/1.1 keep-alive, no stderr log, no
    Nagle delay, and every open connection known to the server (which drops them on stop)."""

    protocol_version = "HTTP/1.1"
    server: LoopbackHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks read the exchanges, not a log on stderr

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK hold the second write back ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def drop(self) -> None:
        """Cut the connection (after a fault, or when the client went away)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def write(self, data: bytes, fault: object = None) -> None:
        """Send ``data``; a :class:`Drip` fault sends it in small pieces, slowly."""
        if not isinstance(fault, Drip):
            self.wfile.write(data)
            return
        stopping = self.server.owner._stopping
        size = max(1, fault.size)
        for start in range(0, len(data), size):
            if start and stopping.wait(fault.interval):
                raise Dropped
            self.wfile.write(data[start : start + size])

    def start_response(
        self, status: int, headers: Mapping[str, str], *, length: int | None
    ) -> None:
        """Send the status line and headers; ``length=None`` makes the body chunked."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length is None:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("content-length", str(length))
        self.end_headers()


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The ``http.server`` of a :class:`LoopbackServer` (``owner``) on an ephemeral port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: LoopbackServer, handler: type[LoopbackHandler], backlog: int) -> None:
        self.owner = owner
        # Hundreds of clients may connect at once (a concurrency benchmark): the default
        # backlog of 5 would make the kernel drop SYNs and clients wait a second to retry.
        self.request_queue_size = backlog
        super().__init__(("127.0.0.1", 0), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up mid-response is normal here, not worth a traceback


# -- the server lifecycle -------------------------------------------------------------------------


_ServerT = TypeVar("_ServerT", bound="LoopbackServer")


class LoopbackServer:
    """Lifecycle of a threaded HTTP server on 127.0.0.1 that stops by itself.

    Subclasses set :attr:`name` and :attr:`handler` (a :class:`LoopbackHandler` subclass);
    the handler reports every connection through :meth:`_track`, which also counts as activity.
    Serving runs in background threads; a watchdog stops the server after ``idle_timeout``
    seconds without a request or ``max_seconds`` in all. Usable as a sync or async context
    manager.
    """

    name: ClassVar[str] = "loopback server"
    handler: ClassVar[type[LoopbackHandler]] = LoopbackHandler
    poll_interval: ClassVar[float] = 0.05
    backlog: ClassVar[int] = 128

    def __init__(self, *, idle_timeout: float, max_seconds: float) -> None:
        self.idle_timeout = idle_timeout
        self.max_seconds = max_seconds
        self.stop_reason: str | None = None
        self._lock = threading.Lock()
        self._last_activity = time.monotonic()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: LoopbackHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        """A connection opened (``add``) or closed; either way the server is not idle."""
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)
            self._last_activity = time.monotonic()

    def start(self: _ServerT) -> _ServerT:
        """Bind an ephemeral port on 127.0.0.1 and serve in background threads."""
        if self._httpd is not None:
            raise RuntimeError(f"the {self.name} is already started")
        self._httpd = LoopbackHTTPServer(self, self.handler, self.backlog)
        self._last_activity = time.monotonic()
        serving = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=self.name,
            daemon=True,
        )
        watchdog = threading.Thread(target=self._watch, name=f"{self.name}-watchdog", daemon=True)
        self._threads = [serving, watchdog]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, reason: str = "stopped") -> None:
        """Stop serving, drop open connections and wait for the server threads (idempotent)."""
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            httpd, self._httpd = self._httpd, None
            connections = list(self._connections)
        self._stopping.set()
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    @property
    def running(self) -> bool:
        """Whether the server still accepts requests."""
        return self._httpd is not None and not self._stopping.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped (by itself or not); false on timeout."""
        return self._stopping.wait(timeout)

    @property
    def port(self) -> int:
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError(f"the {self.name} is not running")
        return int(httpd.server_address[1])

    def __enter__(self: _ServerT) -> _ServerT:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self: _ServerT) -> _ServerT:
        return self.start()  # binding and starting threads does not block

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        import anyio.to_thread

        # Joining the threads blocks for up to a poll interval: keep it off the event loop.
        await anyio.to_thread.run_sync(self.stop)

    def _watch(self) -> None:
        started = time.monotonic()
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            with self._lock:
                idle = now - self._last_activity
                busy = bool(self._connections) and idle < self.idle_timeout * 2
            if now - started >= self.max_seconds:
                self._stop_later("max_seconds")
                return
            if idle >= self.idle_timeout and not busy:
                self._stop_later("idle_timeout")
                return

    def _stop_later(self, reason: str) -> None:
        # stop() joins the server threads; never run it on one of them.
        threading.Thread(target=self.stop, args=(reason,), daemon=True).start()
