"""Gemini explicit context caching: create, look up, extend and delete ``cachedContents``.

A long document or system prompt cached once is billed at the cached rate on every request
that names the cache; its hits show in ``message.tokens.cached``. The cache is a resource of
its own on Google's side, so it has its own small client here (sync and async twins, over the
same transport, retries and keys as chats).

Example::

    caches = GeminiCaches(sa_llm.context(gemini_api_key="..."))
    cache = caches.create("gemini-2.5-flash", long_document, ttl=300)
    chat = sa_llm.chat("gemini-2.5-flash").with_params(cachedContent=cache.name)
    chat.ask("What does chapter 3 say?")
    caches.update(cache.name, ttl=600)          # keep it ten more minutes
    caches.delete(cache.name)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from sa_llm._context import Context
from sa_llm._flow import Flow, adrive, drive
from sa_llm.config import get_config
from sa_llm.errors import ConfigurationError, ProviderError
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


def _expire_time(value: str | datetime) -> str:
    """An RFC 3339 timestamp in UTC, as the API takes it (``2026-08-10T23:36:27Z``).

    Raises:
        ConfigurationError: a ``datetime`` without a time zone (its instant is unknown).
    """
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(
            "expire_time must be timezone-aware (e.g. datetime.now(timezone.utc) + ...): "
            "a naive datetime does not say which instant it means."
        )
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class GeminiCaches:
    """Create, get, update and delete Gemini ``cachedContents`` with a context's key and
    clients.

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
        return HttpRequest(method, self._resource_url(name), self.provider.auth_headers())

    def update_request(
        self, name: str, *, ttl: float | None = None, expire_time: str | datetime | None = None
    ) -> HttpRequest:
        """``PATCH {base}/cachedContents/{id}?updateMask=...`` setting a new expiry.

        Only the expiry of a cache can change (its contents cannot): either ``ttl`` seconds
        from now or an absolute ``expire_time``, and ``updateMask`` names the one sent.

        Raises:
            ConfigurationError: neither or both of ``ttl`` and ``expire_time``, a ``ttl`` that
                is not a positive number, or a naive ``expire_time``.
        """
        if (ttl is None) == (expire_time is None):
            raise ConfigurationError(
                "Give a cache either ttl=seconds or expire_time=..., not both."
            )
        body: dict[str, Any]
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
                raise ConfigurationError(f"ttl must be a positive number of seconds, not {ttl!r}.")
            body, mask = {"ttl": f"{ttl:g}s"}, "ttl"
        else:
            assert expire_time is not None
            body, mask = {"expireTime": _expire_time(expire_time)}, "expireTime"
        headers = {**self.provider.auth_headers(), "content-type": "application/json"}
        url = f"{self._resource_url(name)}?updateMask={quote(mask)}"
        return HttpRequest("PATCH", url, headers, json=body)

    def _resource_url(self, name: str) -> str:
        path = name if name.startswith("cachedContents/") else f"cachedContents/{name}"
        return f"{self.provider.base_url}/{path}"

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
        try:
            return self.parse(response)
        except ProviderError as exc:
            self.provider.redact_error(exc)  # a body kept in the error may echo the key
            raise

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

    def update(
        self, name: str, *, ttl: float | None = None, expire_time: str | datetime | None = None
    ) -> CachedContent:
        """Extend (or shorten) the life of the cache called ``name``.

        Args:
            ttl: seconds from now until Google drops it.
            expire_time: when Google drops it: an aware ``datetime`` or an RFC 3339 string.

        Returns:
            The cache as the API describes it after the change (its new ``expire_time``).

        Raises:
            ConfigurationError: neither or both of ``ttl`` and ``expire_time`` (see
                :meth:`update_request`); nothing is sent.
            NotFoundError: no such cache (expired or deleted).
        """
        return drive(self._fetch(self.update_request(name, ttl=ttl, expire_time=expire_time)))

    async def aupdate(
        self, name: str, *, ttl: float | None = None, expire_time: str | datetime | None = None
    ) -> CachedContent:
        """Async twin of :meth:`update`."""
        request = self.update_request(name, ttl=ttl, expire_time=expire_time)
        return await adrive(self._fetch(request))

    def delete(self, name: str) -> None:
        """Drop the cache called ``name``."""
        drive(self._delete(self.resource_request("DELETE", name)))

    async def adelete(self, name: str) -> None:
        """Async twin of :meth:`delete`."""
        await adrive(self._delete(self.resource_request("DELETE", name)))
