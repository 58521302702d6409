"""Replay recorded HTTP traffic (the JSON format of ``tests/fixtures/wire``) to any chat.

Requests are matched by method and URL in order; streamed bodies are sent in small pieces::

    replay = Replay.from_file("openai/chat_basic....json")
    ctx = replay.context()              # a Context whose HTTP clients hit the recording
    ctx.chat("gpt-5-nano").ask("What's 2 + 2?")
    replay.assert_all_used()
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from sa_llm import _http
from sa_llm._context import Context
from sa_llm.config import Config, get_config
from sa_llm.testing.fake import piece_stream, split_pieces

__all__ = ["Replay", "ReplayedRequest", "url_matches"]


def _body_bytes(part: Mapping[str, Any]) -> bytes:
    body = part.get("body")
    if body is None:
        return b""
    if part.get("body_base64"):
        return base64.b64decode(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode("utf-8")


def url_matches(recorded: str, actual: str) -> bool:
    """Whether a live request URL matches a recorded one (placeholders and quoting aside)."""
    act = urlsplit(actual)
    act_path = unquote(act.path).rstrip("/")
    if recorded.startswith("<"):  # "<OLLAMA_API_BASE>/chat/completions"
        path, _, query = recorded.split(">", 1)[1].partition("?")
        return act_path.endswith(unquote(path).rstrip("/")) and act.query == query
    rec = urlsplit(recorded)
    return act_path == unquote(rec.path).rstrip("/") and act.query == rec.query


@dataclass
class ReplayedRequest:
    """A request the replay served: what the library sent and what was recorded."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any
    recorded: Mapping[str, Any]


class Replay(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx (or httpx2) transport that answers with recorded interactions, in order.

    Under an httpx2 client it answers with httpx2 responses: ``httpx2.Client(transport=replay)``
    works (type checkers want a ``cast``), and so does ``replay.context(http_library="httpx2")``.

    Attributes:
        pending: interactions not requested yet.
        seen: the requests served, with the recorded request each matched.
    """

    def __init__(
        self,
        recording: Mapping[str, Any],
        *,
        piece_size: int = 7,
        ignore_unused_downloads: bool = True,
    ) -> None:
        self.recording = recording
        self.pending: list[Mapping[str, Any]] = list(recording.get("interactions", []))
        self.seen: list[ReplayedRequest] = []
        self.piece_size = piece_size
        self.ignore_unused_downloads = ignore_unused_downloads
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Replay:
        """A replay of one recording file."""
        with open(path, encoding="utf-8") as handle:
            return cls(json.load(handle), **options)

    def _serve(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            for index, item in enumerate(self.pending):
                recorded = item["request"]
                if recorded["method"] == request.method and url_matches(
                    recorded["url"], str(request.url)
                ):
                    self.pending.pop(index)
                    break
            else:
                raise AssertionError(f"unexpected request: {request.method} {request.url}")
            try:
                body: Any = json.loads(request.content) if request.content else None
            except ValueError:
                body = request.content
            self.seen.append(
                ReplayedRequest(
                    request.method, str(request.url), dict(request.headers), body, recorded
                )
            )
        response = item["response"]
        data = _body_bytes(response)
        headers = dict(response.get("headers") or {})
        streamed = "event-stream" in headers.get(
            "content-type", ""
        ) or "eventstream" in headers.get("content-type", "")
        pieces = split_pieces(data, self.piece_size) if streamed else [data]
        library = _http.library_of(request)  # answer in the client's own library
        return library.Response(  # type: ignore[no-any-return]
            int(response["status"]), headers=headers, stream=piece_stream(library, pieces)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return self._serve(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self._serve(request)

    def context(self, config: Config | None = None, **settings: Any) -> Context:
        """A :class:`Context` whose HTTP clients hit this replay, with test keys set.

        The clients are of the configured ``http_library`` (``settings`` may name it).
        """
        base = (config or get_config()).replace(
            **{k: v for k, v in settings.items() if k == "http_library"}
        )
        library = base.http_module()
        keys = {
            f"{name}_api_key": "test-key"
            for name in (
                "openai",
                "anthropic",
                "gemini",
                "openrouter",
                "deepseek",
                "mistral",
                "xai",
            )
            if getattr(base, f"{name}_api_key") is None
        }
        return Context(
            base.replace(
                http_client=library.Client(transport=self),
                async_http_client=library.AsyncClient(transport=self),
                max_retries=0,
                **{**keys, **settings},
            )
        )

    @property
    def unused(self) -> list[Mapping[str, Any]]:
        """Recorded interactions never requested (downloads the library skipped excluded)."""
        return [
            item
            for item in self.pending
            if not (self.ignore_unused_downloads and item["request"]["method"] == "GET")
        ]

    def assert_all_used(self) -> None:
        """Fail when a recorded model call was never made."""
        if self.unused:
            urls = ", ".join(item["request"]["url"] for item in self.unused)
            raise AssertionError(f"recorded interactions not replayed: {urls}")
