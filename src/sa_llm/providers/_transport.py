"""The only module that does HTTP I/O: sending requests, opening streams, retrying.

Clients are httpx's or httpx2's (:mod:`sa_llm._http`): a configured client is used with its own
library's timeouts and exceptions; the shared ones are made with the configured
``http_library``.

Retries are decided by pure functions (:func:`retry_delay`): 408, 409, 429 and 5xx statuses
and connection errors are retried with exponential backoff and jitter, honouring
``Retry-After`` / ``retry-after-ms`` and the provider's ``x-should-retry`` hint. A stream is
retried only while opening it, never after a chunk has reached the caller.

The retry loop is written once as a flow (:mod:`sa_llm._flow`) and pumped by :meth:`send` /
:meth:`asend`; the effects :class:`SendRequest`, :class:`OpenStream` and :class:`ReadStream`
let a higher-level flow (the chat) do the same without knowing whether it runs sync or async.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import ModuleType
from typing import Literal, TypeVar

import httpx
from anyio.lowlevel import RunVar

from sa_llm import _http, errors
from sa_llm._attempts import AttemptLog
from sa_llm._flow import Effect, Flow, Scope, Sleep, adrive, drive
from sa_llm._redact import redact_url, strip_userinfo
from sa_llm.config import Config
from sa_llm.providers.base import HttpRequest, HttpResponse, Provider, parse_retry_after

__all__ = [
    "Download",
    "OpenStream",
    "ReadStream",
    "SendRequest",
    "StreamHandle",
    "Transport",
    "retry_delay",
    "should_retry",
]

logger = logging.getLogger("sa_llm.http")
E = TypeVar("E", bound=BaseException)
R = TypeVar("R")

_RETRY_STATUSES = frozenset({408, 409, 429})
_MAX_HONOURED_RETRY_AFTER = 60.0


def should_retry(status: int | None, headers: Mapping[str, str]) -> bool:
    """Whether a failed attempt is worth repeating (a pure function).

    ``status`` is ``None`` when no response arrived (connection error or timeout): those are
    retried because nothing reached the provider or its answer was lost.
    """
    hint = headers.get("x-should-retry")
    if hint == "true":
        return True
    if hint == "false":
        return False
    if status is None:
        return True
    # 408 timeout, 409 lock conflict, 429 rate limit and 5xx are transient by definition.
    return status in _RETRY_STATUSES or status >= 500


def retry_delay(
    attempt: int,
    config: Config,
    status: int | None,
    headers: Mapping[str, str],
    *,
    rand: float | None = None,
) -> float | None:
    """Seconds to wait before retry number ``attempt + 1``, or ``None`` to give up.

    A provider's ``Retry-After`` wins when it is reasonable (0 to 60 s); otherwise the delay is
    ``retry_interval * retry_backoff_factor ** attempt`` capped at ``retry_max_interval``, with
    up to ``retry_jitter`` of it taken off at random so clients do not retry in lockstep.
    """
    if attempt >= config.max_retries or not should_retry(status, headers):
        return None
    asked = parse_retry_after(headers)
    if asked is not None and 0 <= asked <= _MAX_HONOURED_RETRY_AFTER:
        return asked
    base = min(
        config.retry_interval * config.retry_backoff_factor**attempt, config.retry_max_interval
    )
    jitter = config.retry_jitter * (random.random() if rand is None else rand)
    return base * (1.0 - jitter)


# -- default clients ---------------------------------------------------------------------------

_client_lock = threading.Lock()
# One shared client per library (httpx, httpx2), made when first needed.
_default_clients: dict[str, httpx.Client] = {}
# Async clients are bound to the event loop that opened their connections: one per loop run
# (asyncio or trio alike), backend and library, held in a RunVar so they go away with their loop.
_async_clients: RunVar[dict[str, httpx.AsyncClient]] = RunVar("sa_llm_default_async_clients")


def _limits(library: ModuleType = httpx) -> httpx.Limits:
    return library.Limits(max_connections=200, max_keepalive_connections=50)  # type: ignore[no-any-return]


def default_client(library: ModuleType = httpx) -> httpx.Client:
    """The shared pooled client of ``library`` (httpx or httpx2) used when the config names
    none."""
    with _client_lock:
        client = _default_clients.get(library.__name__)
        if client is None or client.is_closed:
            client = library.Client(limits=_limits(library), follow_redirects=True)
            _default_clients[library.__name__] = client
        return client


def default_async_client(
    backend: Literal["httpx", "aiohttp"] = "httpx", library: ModuleType = httpx
) -> httpx.AsyncClient:
    """A shared pooled async client for the running event loop (clients are loop-bound).

    ``backend`` is the config's ``async_http_backend``: ``"aiohttp"`` puts the client on
    :class:`~sa_llm.providers.aiohttp_transport.AiohttpTransport` (which raises
    ``MissingDependencyError`` when aiohttp is not installed); that transport speaks httpx's
    transport API, so its client is an ``httpx.AsyncClient`` whatever ``library`` says.
    Otherwise the client is one of ``library`` (httpx or httpx2). When the loop ends
    (``asyncio.run`` returns) the client is closed and forgotten, so neither it, its sockets nor
    the loop outlive the run.
    """
    try:
        clients = _async_clients.get()
    except LookupError:
        clients = {}
        _async_clients.set(clients)
    key = backend if backend == "aiohttp" else f"{backend}:{library.__name__}"
    client = clients.get(key)
    if client is None or client.is_closed:
        if backend == "aiohttp":
            from sa_llm.providers.aiohttp_transport import AiohttpTransport

            # httpx's "no limit" (None) is aiohttp's 0.
            transport = AiohttpTransport(limit=_limits().max_connections or 0)
            client = httpx.AsyncClient(transport=transport, follow_redirects=True)
        else:
            client = library.AsyncClient(limits=_limits(library), follow_redirects=True)
        clients[key] = client
        guard = _close_with_loop(clients, key, client)
        _start(guard)
        # The loop holds its async generators weakly: the guard lives as long as the client.
        client._sa_llm_guard = guard  # type: ignore[union-attr]
    return client


async def _close_with_loop(
    clients: dict[str, httpx.AsyncClient], key: str, client: httpx.AsyncClient
) -> AsyncIterator[None]:
    """Closes and forgets ``client`` when its loop finalises async generators.

    The RunVar holding the clients is keyed weakly by the loop, but a client refers to its loop
    (its pool's locks, its sockets): without this, every ``asyncio.run`` that used sa_llm would
    leave its loop, the client and its open connections alive.
    """
    try:
        yield
    finally:
        if clients.get(key) is client:
            del clients[key]
        client.__dict__.pop("_sa_llm_guard", None)
        # An aiohttp transport closes its session with the loop itself (its own guard,
        # finalised alongside this one); closing it from here too would race that guard.
        if key != "aiohttp":
            try:
                await client.aclose()
            except Exception:  # the loop is ending: a failed close must not mask anything
                logger.debug("Closing the shared async client failed", exc_info=True)


def _start(guard: AsyncIterator[None]) -> None:
    """Run ``guard`` to its ``yield`` from sync code running in the loop: the loop's async
    generator hooks now know it and will close it (its finally) when the loop ends."""
    step = guard.__anext__()
    try:
        step.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return
    raise RuntimeError("the guard awaited before its yield")  # pragma: no cover


# -- the transport ------------------------------------------------------------------------------


class StreamHandle:
    """An open streamed response; read it with :class:`ReadStream` effects."""

    __slots__ = ("_aiter", "_iter", "response", "transport")

    def __init__(self, transport: Transport, response: httpx.Response) -> None:
        self.transport = transport
        self.response = response
        self._iter: Iterator[bytes] | None = None
        self._aiter: AsyncIterator[bytes] | None = None

    def read(self) -> bytes:
        """The next bytes, or ``b""`` at the end of the stream."""
        if self._iter is None:
            self._iter = self.response.iter_bytes()
        try:
            return next(self._iter, b"")
        except _http.errors() as exc:
            raise self.transport.connection_error(exc) from exc

    async def aread(self) -> bytes:
        if self._aiter is None:
            self._aiter = self.response.aiter_bytes()
        try:
            return await self._aiter.__anext__()
        except StopAsyncIteration:
            return b""
        except _http.errors() as exc:
            raise self.transport.connection_error(exc) from exc


class Transport:
    """Sends a provider's requests through the configured (or shared) httpx clients."""

    def __init__(self, config: Config, provider: Provider) -> None:
        self.config = config
        self.provider = provider
        self._own_clients = provider.http_clients()

    def __repr__(self) -> str:
        return f"<Transport {self.provider.name}>"

    # -- helpers shared by both drivers --

    def client(self) -> httpx.Client:
        """The sync client: the provider's own (the fake's), the configured one (httpx or
        httpx2), else the shared one of the configured ``http_library``."""
        if self._own_clients is not None:
            return self._own_clients[0]
        configured: httpx.Client | None = self.config.http_client
        return configured or default_client(self.config.http_module())

    def async_client(self) -> httpx.AsyncClient:
        if self._own_clients is not None:
            return self._own_clients[1]
        configured: httpx.AsyncClient | None = self.config.async_http_client
        return configured or default_async_client(
            self.config.async_http_backend, self.config.http_module()
        )

    def build(
        self, client: httpx.Client | httpx.AsyncClient, request: HttpRequest
    ) -> httpx.Request:
        content = request.content
        headers = dict(request.headers)
        if request.json is not None:
            content = json.dumps(request.json, ensure_ascii=False, separators=(",", ":")).encode()
            headers.setdefault("content-type", "application/json")
        return client.build_request(
            request.method,
            # Credentials in a URL are never sent: httpx would turn them into HTTP Basic auth
            # over the provider's own key, and proxies and servers log URLs.
            strip_userinfo(request.url),
            headers=headers,
            content=content,
            # Its own short connect timeout: a host that never answers fails in seconds, not
            # after the read timeout that a long reply needs. In the client's own library: an
            # httpx2 client takes no httpx.Timeout.
            timeout=self.config.timeout(_http.library_of(client)),
        )

    def redact(self, error: E) -> E:
        """``error`` with every secret of the configuration redacted (see
        :func:`sa_llm._redact.redact_error`), before it reaches the caller."""
        return self.provider.redact_error(error)

    def connection_error(self, exc: Exception) -> errors.APIConnectionError:
        name = self.provider.name
        library = _http.library_of(exc)
        if isinstance(exc, library.ConnectTimeout):
            return errors.APITimeoutError(
                f"Connecting to {name} timed out after {self.config.connect_seconds():g}s "
                f"({type(exc).__name__}).",
                provider=name,
            )
        if isinstance(exc, library.TimeoutException):
            return errors.APITimeoutError(
                f"Request to {name} timed out after {self.config.request_timeout:g}s "
                f"({type(exc).__name__}).",
                provider=name,
            )
        return self.redact(
            errors.APIConnectionError(
                f"Connection to {name} failed: {type(exc).__name__}: {exc}", provider=name
            )
        )

    def _attempts(
        self, request: HttpRequest, stream: bool, log: AttemptLog | None = None
    ) -> Flow[httpx.Response]:
        """The retry loop, written once: yields attempts and sleeps, returns a 2xx response.

        Each try is recorded in ``log`` (when given): a failed one is closed here, the one that
        succeeds stays open for the caller, who knows when its reply ends.
        """
        attempt = 0
        url = redact_url(request.url)  # as logged
        while True:
            started = time.perf_counter()
            record = log.start() if log is not None else None
            response: httpx.Response | None = None
            try:
                response = yield _Attempt(self, request, stream)
            except _http.errors() as exc:
                error: errors.ProviderError = self.connection_error(exc)
                status, headers = None, {}
            else:
                if record is not None:
                    record.http_status = response.status_code
                if response.status_code < 400:
                    logger.debug(
                        "%s %s -> %s in %.0f ms",
                        request.method,
                        url,
                        response.status_code,
                        (time.perf_counter() - started) * 1000,
                    )
                    return response
                body = yield _ReadBody(response)
                headers = {k.lower(): v for k, v in response.headers.items()}
                status = response.status_code
                error = self.redact(self.provider.error_for(HttpResponse(status, headers, body)))
            if log is not None and record is not None:
                log.failed(record, error, status)
            delay = retry_delay(attempt, self.config, status, headers)
            if delay is None:
                logger.debug("%s %s failed: %s", request.method, url, type(error).__name__)
                raise error
            attempt += 1
            logger.info(
                "Retrying %s request (%d/%d) in %.2fs after %s",
                self.provider.name,
                attempt,
                self.config.max_retries,
                delay,
                type(error).__name__,
            )
            yield Sleep(delay)

    # -- blocking --

    def send(self, request: HttpRequest, log: AttemptLog | None = None) -> HttpResponse:
        """Send ``request`` with retries; return the 2xx response or raise a typed error.

        Every try is recorded in ``log`` when one is given (see :mod:`sa_llm._attempts`).
        """
        response = drive(self._attempts(request, stream=False, log=log))
        return _to_response(response)

    def open_stream(self, request: HttpRequest, log: AttemptLog | None = None) -> StreamHandle:
        """Open a streamed response (retrying until its status arrives); caller closes it."""
        return StreamHandle(self, drive(self._attempts(request, stream=True, log=log)))

    # -- async --

    async def asend(self, request: HttpRequest, log: AttemptLog | None = None) -> HttpResponse:
        response = await adrive(self._attempts(request, stream=False, log=log))
        return _to_response(response)

    async def aopen_stream(
        self, request: HttpRequest, log: AttemptLog | None = None
    ) -> StreamHandle:
        return StreamHandle(self, await adrive(self._attempts(request, stream=True, log=log)))


def _shut_down(response: httpx.Response) -> None:
    """Shut the socket under ``response`` down (from another thread): a read blocked on it in
    the driving thread returns at once. Closing the response instead would not wake it."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _to_response(response: httpx.Response) -> HttpResponse:
    headers = {k.lower(): v for k, v in response.headers.items()}
    return HttpResponse(response.status_code, headers, response.content)


class _Attempt(Effect[httpx.Response]):
    __slots__ = ("request", "stream", "transport")

    def __init__(self, transport: Transport, request: HttpRequest, stream: bool) -> None:
        self.transport = transport
        self.request = request
        self.stream = stream

    def run(self, scope: Scope) -> httpx.Response:
        client = self.transport.client()
        return client.send(self.transport.build(client, self.request), stream=self.stream)

    async def arun(self, scope: Scope) -> httpx.Response:
        client = self.transport.async_client()
        return await client.send(self.transport.build(client, self.request), stream=self.stream)


class _ReadBody(Effect[bytes]):
    __slots__ = ("response",)

    def __init__(self, response: httpx.Response) -> None:
        self.response = response

    def run(self, scope: Scope) -> bytes:
        try:
            return self.response.read()
        except _http.errors():
            return b""
        finally:
            self.response.close()

    async def arun(self, scope: Scope) -> bytes:
        try:
            return await self.response.aread()
        except _http.errors():
            return b""
        finally:
            await self.response.aclose()


class _RequestEffect(Effect[R]):
    """An effect that sends ``request`` through ``transport`` (each try recorded in ``log``)."""

    __slots__ = ("log", "request", "transport")
    interruptible = True

    def __init__(
        self, transport: Transport, request: HttpRequest, log: AttemptLog | None = None
    ) -> None:
        self.transport = transport
        self.request = request
        self.log = log


class SendRequest(_RequestEffect[HttpResponse]):
    """Effect: send a request with retries and return the whole 2xx response (each try
    recorded in ``log``, when given)."""

    __slots__ = ()

    def run(self, scope: Scope) -> HttpResponse:
        return self.transport.send(self.request, self.log)

    async def arun(self, scope: Scope) -> HttpResponse:
        return await self.transport.asend(self.request, self.log)


class OpenStream(_RequestEffect[StreamHandle]):
    """Effect: open a streamed response; it is closed when the drive ends (and its socket is
    shut down if the drive is aborted, so a blocking read returns at once)."""

    __slots__ = ()

    def run(self, scope: Scope) -> StreamHandle:
        handle = self.transport.open_stream(self.request, self.log)
        scope.on_close(handle.response.close)
        scope.on_abort(lambda: _shut_down(handle.response))
        return handle

    async def arun(self, scope: Scope) -> StreamHandle:
        handle = await self.transport.aopen_stream(self.request, self.log)
        scope.on_aclose(handle.response.aclose)
        return handle


class ReadStream(Effect[bytes]):
    """Effect: the next bytes of an open stream, ``b""`` at its end."""

    __slots__ = ("handle",)
    interruptible = True

    def __init__(self, handle: StreamHandle) -> None:
        self.handle = handle

    def run(self, scope: Scope) -> bytes:
        return self.handle.read()

    async def arun(self, scope: Scope) -> bytes:
        return await self.handle.aread()


class Download(Effect[tuple[bytes, str | None]]):
    """Effect: GET a remote attachment through the configured client; ``(bytes, type)``.

    Downloads are limited to ``max_attachment_bytes`` and retried like provider calls.
    """

    __slots__ = ("transport", "url")
    interruptible = True

    def __init__(self, transport: Transport, url: str) -> None:
        self.transport = transport
        self.url = url

    def _result(self, response: HttpResponse) -> tuple[bytes, str | None]:
        limit = self.transport.config.max_attachment_bytes
        if len(response.body) > limit:
            raise errors.AttachmentError(
                f"Remote attachment {redact_url(self.url)!r} is {len(response.body):,} bytes; "
                f"the limit is {limit:,}."
            )
        return response.body, response.headers.get("content-type")

    def run(self, scope: Scope) -> tuple[bytes, str | None]:
        request = HttpRequest("GET", self.url)
        try:
            return self._result(self.transport.send(request))
        except errors.APIStatusError as exc:
            raise errors.AttachmentError(
                f"Could not download {redact_url(self.url)!r}: HTTP {exc.status}"
            ) from exc

    async def arun(self, scope: Scope) -> tuple[bytes, str | None]:
        request = HttpRequest("GET", self.url)
        try:
            return self._result(await self.transport.asend(request))
        except errors.APIStatusError as exc:
            raise errors.AttachmentError(
                f"Could not download {redact_url(self.url)!r}: HTTP {exc.status}"
            ) from exc
