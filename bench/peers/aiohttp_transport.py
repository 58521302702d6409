"""An httpx async transport that sends through aiohttp, to tell httpx's pool apart from the rest.

With 200 requests in flight, httpcore's async connection pool spends most of the concurrency
workload (W6) rearranging its queue; aiohttp's connector does not. The benchmark runs sa_llm and
the limit a second time with this transport under the same ``httpx.AsyncClient`` interface, so
the difference is the pool and nothing else::

    client = httpx.AsyncClient(transport=AiohttpTransport(limit=200))
    ctx = sa_llm.context(async_http_client=client, ...)

Not a general-purpose transport: no proxies, no HTTP/2, responses are not decompressed twice
because the fake server never compresses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self.response.content.iter_any():
            yield piece

    async def aclose(self) -> None:
        self.response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with one ``aiohttp.ClientSession`` (created on first use)."""

    def __init__(self, limit: int = 200) -> None:
        self.limit = limit
        self.session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.session is None:
            connector = aiohttp.TCPConnector(limit=self.limit)
            self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        response = await self.session.request(
            request.method,
            str(request.url),
            headers=dict(request.headers),
            data=await request.aread(),
        )
        return httpx.Response(
            response.status,
            headers=list(response.headers.items()),
            stream=_Body(response),
            request=request,
        )

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
