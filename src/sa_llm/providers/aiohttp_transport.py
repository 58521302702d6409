"""An httpx async transport that sends through aiohttp, for many concurrent async calls.

With hundreds of async requests in flight, httpx's own connection pool (httpcore) costs more CPU
than everything else a turn does; aiohttp's connector does the same work for much less.
:class:`AiohttpTransport` keeps the ``httpx.AsyncClient`` interface, so the retries, timeouts
and error mapping of :mod:`sa_llm.providers._transport` work unchanged: only the connection pool
and the HTTP/1.1 machinery underneath are swapped. It needs the ``aiohttp`` extra
(``pip install "sa-llm[aiohttp]"``). Turn it on for sa_llm's shared async client, or put it
under a client of your own::

    import httpx
    import sa_llm
    from sa_llm.providers.aiohttp_transport import AiohttpTransport

    sa_llm.configure(async_http_backend="aiohttp")

    client = httpx.AsyncClient(transport=AiohttpTransport(limit=100), follow_redirects=True)
    tenant = sa_llm.context(async_http_client=client)

Everything httpx does above its transport it still does: redirects, cookies, authentication and
event hooks stay with the ``httpx.AsyncClient`` (aiohttp follows no redirect and keeps no
cookie), and the headers and body go out as httpx built them. The transport adds:

* **The pool as httpx's**: at most ``limit`` requests hold a connection at once, each from the
  moment it is sent until its response is closed; the others wait up to the ``pool`` timeout.
* **Timeouts** taken from each request's httpx timeout: ``pool`` bounds waiting for a
  connection, ``connect`` opening one, ``read`` every wait for bytes (the response head, then
  each piece of the body). aiohttp has no write timeout: a request body the server stops reading
  fails once ``pool + connect + write + read`` have passed in all.
* **httpx's exceptions**, raised while sending and while a body streams: ``ConnectError``
  (refused, DNS, TLS), ``ConnectTimeout``, ``PoolTimeout``, ``ReadTimeout``, ``WriteTimeout``,
  ``RemoteProtocolError`` (the server hung up before the response was complete, or sent no
  HTTP), ``ReadError`` (the connection broke), ``ProxyError``. No aiohttp exception escapes.
* **Compression decoded once**, by aiohttp: a decoded response reaches httpx without its
  ``content-encoding`` and ``content-length``, and the request offers only the encodings aiohttp
  can decode.
* **Proxies and TLS as httpx's defaults**: proxies from the environment (``trust_env``), and
  certificates verified against the same CA bundle httpx uses (certifi, or ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR``), not the system store aiohttp would pick.

The transport opens one ``aiohttp.ClientSession`` on first use, inside the running asyncio loop,
and it belongs to that loop as httpx's async clients do. ``aclose()`` closes it; so does the end
of the loop (``asyncio.run`` finalises async generators, and one of them guards the session), so
a shared client nobody closes leaves no "Unclosed client session" behind. aiohttp runs only under
asyncio, not trio.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING

import anyio
import httpx

from sa_llm._optional import require
from sa_llm.errors import ConfigurationError

if TYPE_CHECKING:
    from ssl import SSLContext

    import aiohttp

__all__ = ["AiohttpTransport"]


# The values of content-encoding aiohttp's parser decodes when auto_decompress is on; it
# compares the whole lower-cased value, so "gzip, br" is passed through undecoded, and so here.
_DECODED = frozenset({"gzip", "deflate", "br", "zstd"})
# httpx wrote these (or chose not to): aiohttp must not add defaults of its own.
_SKIP_AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
# The body is handed to aiohttp whole, which frames it with a content-length of its own.
_NOT_FORWARDED = frozenset({b"transfer-encoding"})
_ACCEPT_ENCODING = b"accept-encoding"
_STRIPPED_WHEN_DECODED = frozenset({b"content-encoding", b"content-length"})


def _require_aiohttp() -> None:
    require(
        "aiohttp", extra="aiohttp", feature='The aiohttp transport (async_http_backend="aiohttp")'
    )


def _decodable_encodings() -> frozenset[str]:
    """Content codings aiohttp can decode here: brotli and zstd depend on optional packages."""
    names = {"gzip", "deflate", "identity"}
    # Read defensively: should aiohttp move its flags, br and zstd are simply not offered.
    try:
        from aiohttp import compression_utils
    except ImportError:  # pragma: no cover - depends on aiohttp's layout
        return frozenset(names)
    if getattr(compression_utils, "HAS_BROTLI", False):
        names.add("br")
    if getattr(compression_utils, "HAS_ZSTD", False):
        names.add("zstd")
    return frozenset(names)


@functools.lru_cache(maxsize=64)
def _client_timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    import aiohttp

    # ``sock_connect`` bounds opening a connection. aiohttp's ``connect`` also covers waiting in
    # its own pool, which the transport's slots keep empty: ``pool`` is added as a backstop. No
    # ``total``: a stream may take as long as it keeps talking, as with httpx.
    acquire = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)


def _send_deadline(
    connect: float | None, read: float | None, write: float | None, pool: float | None
) -> float | None:
    """Seconds after which sending a request and reading its head must stop: the write bound.

    aiohttp starts its read timer only once the body is written, so a stalled upload would wait
    forever. Each other phase is bounded by its own timer, so this deadline passes first only
    when writing took longer than ``write``.
    """
    if connect is None or read is None or write is None or pool is None:
        return None
    return connect + read + write + pool


def _httpx_error(exc: Exception, request: httpx.Request) -> httpx.TransportError | None:
    """The httpx exception an aiohttp (or OS) error stands for; ``None`` for anything else.

    The order matters: aiohttp's timeout errors are ``OSError``s too, and its connector errors
    are connection errors.
    """
    import aiohttp

    error: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        # The pool was waited for before aiohttp saw the request (see ``_acquire``).
        error = httpx.ConnectTimeout
    elif isinstance(exc, asyncio.TimeoutError | TimeoutError):
        error = httpx.ReadTimeout  # SocketTimeoutError: the head or a piece of the body
    elif isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        error = httpx.ConnectError  # refused, unreachable, DNS, TLS
    elif isinstance(exc, aiohttp.ClientHttpProxyError):
        error = httpx.ProxyError
    elif isinstance(
        exc,
        aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
    ):
        # Hung up before a response, cut a body short (content-length or chunked), or not HTTP:
        # h11 calls each of these a protocol error of the remote side.
        error = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.NonHttpUrlClientError):
        error = httpx.UnsupportedProtocol
    elif isinstance(exc, aiohttp.InvalidURL):
        error = httpx.LocalProtocolError
    elif isinstance(exc, aiohttp.ClientConnectionError | OSError):
        error = httpx.ReadError  # reset or closed under an open request
    elif isinstance(exc, aiohttp.ClientError):
        error = httpx.TransportError  # whatever else aiohttp may raise one day
    else:
        return None
    return error(str(exc) or type(exc).__name__, request=request)


async def _close_with_loop(
    transport: AiohttpTransport, session: aiohttp.ClientSession
) -> AsyncGenerator[None, None]:
    """Closes ``session`` when the transport closes, or when the loop finalises async generators.

    Started once, an async generator is known to its loop, and ``asyncio.run`` (like
    ``asyncio.Runner`` and pytest-asyncio) closes every such generator before it closes the
    loop: the session is closed inside its own loop without a task of ours in ``all_tasks()``.
    """
    try:
        yield
    finally:
        await session.close()
        transport._forget(session)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends an ``httpx.AsyncClient``'s requests through one ``aiohttp.ClientSession``.

    See the module documentation for what is kept from httpx and what changes.

    Args:
        limit: the most connections open at once (``0``: no limit). The default is the limit
            of sa_llm's shared httpx client.
        trust_env: take proxies (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) and ``.netrc``
            credentials from the environment, as httpx does by default.
        ssl: ``None`` verifies certificates as httpx does by default
            (``httpx.create_ssl_context()``), ``True`` against the system's trust store (aiohttp's
            default), ``False`` not at all; an ``ssl.SSLContext`` decides everything.

    Raises:
        MissingDependencyError: aiohttp is not installed; the message names the extra.
    """

    def __init__(
        self, *, limit: int = 200, trust_env: bool = True, ssl: SSLContext | bool | None = None
    ) -> None:
        _require_aiohttp()
        if limit < 0:
            raise ValueError(f"limit must be 0 (no limit) or more, not {limit}")
        self.limit = limit
        self.trust_env = trust_env
        self.ssl = ssl
        self._decodable = _decodable_encodings()
        self._offers: dict[bytes, str] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._guard: AsyncGenerator[None, None] | None = None
        # One slot per connection, held from sending a request until its response is closed,
        # as httpx's pool does. aiohttp's connector limits connections too, but its wait cannot
        # be told apart from a connect timeout, and it ends when a response is read, not closed.
        self._slots: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"<AiohttpTransport limit={self.limit}>"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return its response, whose body streams from the connection.

        Raises:
            httpx.TransportError: the subclass httpx itself would raise (see the module doc).
            ConfigurationError: not running under asyncio.
            RuntimeError: the transport's session belongs to another, still running loop.
        """
        import yarl

        session = await self._session_for_running_loop()
        timeouts = request.extensions.get("timeout", {})
        connect, read = timeouts.get("connect"), timeouts.get("read")
        write, pool = timeouts.get("write"), timeouts.get("pool")
        body = await request.aread()
        slots = self._slots
        if slots is not None:
            await _acquire(slots, pool, request)
        try:
            with anyio.move_on_after(_send_deadline(connect, read, write, pool)) as deadline:
                response = await session.request(
                    request.method,
                    # Already percent-encoded by httpx: re-quoting would change signed paths
                    # (Bedrock's SigV4 covers "%3A" in model ids).
                    yarl.URL(str(request.url), encoded=True),
                    headers=self._headers(request),
                    data=body or None,
                    allow_redirects=False,  # httpx follows them, if its client says so
                    timeout=_client_timeout(connect, read, pool),
                )
        except BaseException as exc:
            if slots is not None:
                slots.release()
            error = _httpx_error(exc, request) if isinstance(exc, Exception) else None
            if error is None:
                raise
            raise error from exc
        if deadline.cancelled_caught:
            if slots is not None:
                slots.release()
            raise httpx.WriteTimeout("Timed out sending the request body.", request=request)

        headers = response.raw_headers
        encoding = response.headers.get("content-encoding", "")
        if encoding.isascii() and encoding.lower() in _DECODED:
            # aiohttp decoded the body: httpx must neither decode it again nor trust a length
            # that counted the compressed bytes.
            headers = tuple((k, v) for k, v in headers if k.lower() not in _STRIPPED_WHEN_DECODED)
        version = response.version
        return httpx.Response(
            response.status,
            headers=list(headers),
            stream=_ResponseStream(response, request, slots),
            request=request,
            extensions={
                "http_version": f"HTTP/{version.major}.{version.minor}".encode()
                if version is not None
                else b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        """Close the session and its connections (``httpx.AsyncClient.aclose()`` calls this)."""
        guard = self._guard
        if guard is not None:
            await guard.aclose()  # its ``finally`` closes the session and forgets it

    # -- helpers --

    async def _session_for_running_loop(self) -> aiohttp.ClientSession:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                "The aiohttp transport needs a running asyncio event loop (aiohttp does not "
                'run under trio); use async_http_backend="httpx" there.'
            ) from None
        session = self._session
        if session is not None and not session.closed:
            if loop is self._loop:
                return session
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError(
                    "This AiohttpTransport's connections belong to another event loop that is "
                    "still running; use one client per event loop."
                )
        # First use, or the previous loop has ended (and, finalised, closed the old session).
        session = self._session = self._new_session()
        self._loop = loop
        self._slots = asyncio.Semaphore(self.limit) if self.limit else None
        self._guard = _close_with_loop(self, session)
        await self._guard.asend(None)  # runs to its ``yield``: now the loop knows it
        return session

    def _forget(self, session: aiohttp.ClientSession) -> None:
        # Nothing of a finished loop stays reachable from the transport: sa_llm's shared clients
        # live in a RunVar keyed weakly by their loop, and a session holds its loop.
        if self._session is session:
            self._session, self._loop, self._guard, self._slots = None, None, None, None

    def _new_session(self) -> aiohttp.ClientSession:
        import aiohttp

        # Built per session (once per loop): loading the CA bundle takes milliseconds.
        ssl = httpx.create_ssl_context(trust_env=self.trust_env) if self.ssl is None else self.ssl
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.limit, ssl=ssl),
            auto_decompress=True,
            trust_env=self.trust_env,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx's client keeps the cookies
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            timeout=aiohttp.ClientTimeout(total=None),  # each request brings its own
        )

    def _headers(self, request: httpx.Request) -> list[tuple[str, str]]:
        charset = request.headers.encoding
        headers = []
        for raw_name, raw_value in request.headers.raw:
            name = raw_name.lower()
            if name in _NOT_FORWARDED:
                continue
            value = raw_value.decode(charset)
            if name == _ACCEPT_ENCODING:
                value = self._offer(raw_value)
            headers.append((raw_name.decode(charset), value))
        return headers

    def _offer(self, accept_encoding: bytes) -> str:
        """``accept-encoding`` without codings aiohttp cannot decode (httpx's list may name
        zstd or br because their packages are installed for httpx, not for aiohttp)."""
        offer = self._offers.get(accept_encoding)
        if offer is None:
            parts = accept_encoding.decode("latin-1").split(",")
            kept = [p for p in parts if p.split(";", 1)[0].strip().lower() in self._decodable]
            offer = ",".join(kept).strip() or "identity"
            if len(self._offers) < 16:  # one or two distinct values in practice
                self._offers[accept_encoding] = offer
        return offer


async def _acquire(slots: asyncio.Semaphore, pool: float | None, request: httpx.Request) -> None:
    """Take a connection slot, waiting at most ``pool`` seconds (httpx's ``PoolTimeout``)."""
    if not slots.locked():
        await slots.acquire()  # returns at once: no timer needed on the common path
        return
    with anyio.move_on_after(pool) as waited:
        await slots.acquire()
    if waited.cancelled_caught:
        raise httpx.PoolTimeout(
            "Timed out waiting for a connection from the pool.", request=request
        )


class _ResponseStream(httpx.AsyncByteStream):
    """A response body read from aiohttp as it arrives; its errors are httpx's."""

    __slots__ = ("_closed", "_request", "_response", "_slots")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        request: httpx.Request,
        slots: asyncio.Semaphore | None,
    ) -> None:
        self._response = response
        self._request = request
        self._slots = slots
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while True:
            try:
                piece = await content.readany()
            except Exception as exc:
                await self.aclose()
                error = _httpx_error(exc, self._request)
                if error is None:
                    raise
                raise error from exc
            if not piece:
                return
            yield piece

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._slots is not None:
            self._slots.release()
        if self._response.content.at_eof():
            self._response.release()  # read to the end: the connection goes back to the pool
        else:
            self._response.close()  # abandoned or broken: the connection cannot be reused
