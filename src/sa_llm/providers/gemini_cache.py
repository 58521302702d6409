"""Gemini explicit context caching: create, look up and delete ``cachedContents``.

A long document or system prompt cached once is billed at the cached rate on every request
that names the cache; its hits show in ``message.tokens.cached``. The cache is a resource of
its own on Google's side, so it has its own small client here (sync and async twins, over the
same transport, retries and keys as chats).

Example::

    caches = GeminiCaches(sa_llm.context(gemini_api_key="..."))
    cache = caches.create("gemini-2.5-flash", long_document, ttl=300)
    chat = sa_llm.chat("gemini-2.5-flash").with_params(cachedContent=cache.name)
    chat.ask("What does chapter 3 say?")
    caches.delete(cache.name)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sa_llm._context import Context
from sa_llm._flow import Flow, adrive, drive
from sa_llm.config import get_config
from sa_llm.providers._transport import SendRequest, Transport
from sa_llm.providers.base import HttpRequest, HttpResponse
from sa_llm.providers.gemini import Gemini, model_resource
from sa_llm.types import Message

__all__ = ["CachedContent", "GeminiCaches"]


@dataclass(frozen=True, slots=True)
class CachedContent:
    """A Gemini cache as the API describes it.

    Attributes:
        name: the resource name (``cachedContents/...``), what requests refer to.
        model: the model it was made for (``models/gemini-2.5-flash``).
        expire_time: when Google drops it (RFC 3339), ``None`` if not reported.
        total_tokens: the tokens it holds (billed at the cached rate when used).
    """

    name: str
    model: str | None = None
    display_name: str | None = None
    create_time: str | None = None
    update_time: str | None = None
    expire_time: str | None = None
    total_tokens: int | None = None


class GeminiCaches:
    """Create, get and delete Gemini ``cachedContents`` with a context's key and clients.

    Args:
        context: the configuration to use (keys, base URL, HTTP clients); the global one
            when ``None``.
    """

    def __init__(self, context: Context | None = None) -> None:
        config = context.config if context is not None else get_config()
        self.provider = Gemini(config)
        self.transport = Transport(config, self.provider)

    # -- requests (sans-IO) --

    def create_request(
        self,
        model: str,
        contents: str | Sequence[Message],
        *,
        system: str | None = None,
        ttl: float | None = None,
        display_name: str | None = None,
    ) -> HttpRequest:
        """``POST {base}/cachedContents`` for ``contents`` (a text, or messages)."""
        messages: Sequence[Message] = (
            [Message(role="user", content=contents)] if isinstance(contents, str) else contents
        )
        body: dict[str, Any] = {
            "model": model_resource(model),
            "contents": self.provider.format_contents(messages, model),
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        if ttl is not None:
            body["ttl"] = f"{ttl:g}s"
        if display_name:
            body["displayName"] = display_name
        headers = {**self.provider.auth_headers(), "content-type": "application/json"}
        return HttpRequest("POST", f"{self.provider.base_url}/cachedContents", headers, json=body)

    def resource_request(self, method: str, name: str) -> HttpRequest:
        """``GET`` or ``DELETE`` of one cache by name (``cachedContents/...`` or its id)."""
        path = name if name.startswith("cachedContents/") else f"cachedContents/{name}"
        return HttpRequest(method, f"{self.provider.base_url}/{path}", self.provider.auth_headers())

    def parse(self, response: HttpResponse) -> CachedContent:
        """A :class:`CachedContent` from the API's reply.

        Raises:
            ResponseParseError: the reply has no ``name``.
        """
        body = self.provider.parse_json(response)
        if not isinstance(body, Mapping) or not isinstance(body.get("name"), str):
            raise self.provider.malformed("the cachedContent has no 'name'", body)
        usage = body.get("usageMetadata")
        total = usage.get("totalTokenCount") if isinstance(usage, Mapping) else None

        def text(key: str) -> str | None:
            value = body.get(key)
            return value if isinstance(value, str) and value else None

        return CachedContent(
            name=body["name"],
            model=text("model"),
            display_name=text("displayName"),
            create_time=text("createTime"),
            update_time=text("updateTime"),
            expire_time=text("expireTime"),
            total_tokens=total if isinstance(total, int) else None,
        )

    # -- flows (one implementation, two drivers) --

    def _fetch(self, request: HttpRequest) -> Flow[CachedContent]:
        response = yield SendRequest(self.transport, request)
        return self.parse(response)

    def _delete(self, request: HttpRequest) -> Flow[None]:
        yield SendRequest(self.transport, request)

    def create(
        self,
        model: str,
        contents: str | Sequence[Message],
        *,
        system: str | None = None,
        ttl: float | None = None,
        display_name: str | None = None,
    ) -> CachedContent:
        """Cache ``contents`` for ``model`` (``ttl`` in seconds; Google's default is 1 hour)."""
        request = self.create_request(
            model, contents, system=system, ttl=ttl, display_name=display_name
        )
        return drive(self._fetch(request))

    async def acreate(
        self,
        model: str,
        contents: str | Sequence[Message],
        *,
        system: str | None = None,
        ttl: float | None = None,
        display_name: str | None = None,
    ) -> CachedContent:
        """Async twin of :meth:`create`."""
        request = self.create_request(
            model, contents, system=system, ttl=ttl, display_name=display_name
        )
        return await adrive(self._fetch(request))

    def get(self, name: str) -> CachedContent:
        """The cache called ``name``.

        Raises:
            NotFoundError: no such cache (expired or deleted).
        """
        return drive(self._fetch(self.resource_request("GET", name)))

    async def aget(self, name: str) -> CachedContent:
        """Async twin of :meth:`get`."""
        return await adrive(self._fetch(self.resource_request("GET", name)))

    def delete(self, name: str) -> None:
        """Drop the cache called ``name``."""
        drive(self._delete(self.resource_request("DELETE", name)))

    async def adelete(self, name: str) -> None:
        """Async twin of :meth:`delete`."""
        await adrive(self._delete(self.resource_request("DELETE", name)))
