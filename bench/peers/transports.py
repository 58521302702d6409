"""The async HTTP transports W6 compares, as ``httpx.AsyncClient``s sa_llm and the limit accept.

With 200 requests in flight, httpcore's async pool (under ``httpx.AsyncClient``) was half of the
client's CPU in a profile of the concurrency workload (W6). The variants tell apart what the pool
costs from the rest of the turn; each is a client either system can be given::

    client = async_client("httpx2")          # httpx's API on httpx2's transport (httpcore2)
    ctx = sa_llm.context(async_http_client=client, ...)

* ``httpx``: sa_llm's default (``None`` here: the library builds its client; 200 connections,
  50 kept alive);
* ``httpx-keepalive200``: the same pool keeping all 200 connections alive;
* ``httpx-unlimited``: no limits at all;
* ``httpx-50``: at most 50 connections (requests queue for one);
* ``httpx2``: httpx2's ``AsyncHTTPTransport`` (its own fork of httpcore) behind an adapter, with
  sa_llm's default limits;
* ``httpx2-library``: sa_llm's ``http_library="httpx2"`` setting, the switch a user makes: the
  library builds its own ``httpx2.AsyncClient`` with its default limits (not a client here:
  see the peers);
* ``aiohttp``: sa_llm's ``async_http_backend="aiohttp"`` setting (not a client: see the peers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

#: sa_llm's default limits (``providers/_transport.py``).
DEFAULT_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)

ASYNC_TRANSPORTS = (
    "httpx",
    "httpx-keepalive200",
    "httpx-unlimited",
    "httpx-50",
    "httpx2",
    "httpx2-library",
    "aiohttp",
)
#: The transports that are a setting of sa_llm's rather than a client (sa_llm only).
SETTINGS = {
    "httpx2-library": {"http_library": "httpx2"},
    "aiohttp": {"async_http_backend": "aiohttp"},
}


def async_client(transport: str) -> httpx.AsyncClient | None:
    """The client for ``transport``; ``None`` for sa_llm's default (the library builds it)."""
    if transport == "httpx":
        return None
    if transport == "httpx-keepalive200":
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        return httpx.AsyncClient(limits=limits, follow_redirects=True)
    if transport == "httpx-unlimited":
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        return httpx.AsyncClient(limits=limits, follow_redirects=True)
    if transport == "httpx-50":
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        return httpx.AsyncClient(limits=limits, follow_redirects=True)
    if transport == "httpx2":
        return httpx.AsyncClient(transport=Httpx2Transport(), follow_redirects=True)
    raise ValueError(f"no client for transport {transport!r}")


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: object) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self.response.stream:  # type: ignore[attr-defined]
            yield piece

    async def aclose(self) -> None:
        await self.response.aclose()  # type: ignore[attr-defined]


class Httpx2Transport(httpx.AsyncBaseTransport):
    """Sends httpx requests through ``httpx2.AsyncHTTPTransport`` (httpcore2's pool)."""

    def __init__(self) -> None:
        import httpx2

        limits = httpx2.Limits(
            max_connections=DEFAULT_LIMITS.max_connections,
            max_keepalive_connections=DEFAULT_LIMITS.max_keepalive_connections,
        )
        self.httpx2 = httpx2
        self.inner = httpx2.AsyncHTTPTransport(limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = self.httpx2.Request(
            request.method,
            str(request.url),
            headers=request.headers.raw,
            content=await request.aread(),
        )
        response = await self.inner.handle_async_request(sent)
        return httpx.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_Body(response),
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
