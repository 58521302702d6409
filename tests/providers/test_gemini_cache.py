"""Gemini explicit caching (``cachedContents``) replayed from the recorded round trip.

The recording creates a cache of a long text, finds it again by name and deletes it; the same
three calls through :class:`GeminiCaches`, sync and async, must send what was recorded and
read back what Google answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sa_llm
from sa_llm.providers.gemini_cache import CachedContent, GeminiCaches
from sa_llm.testing import Replay

RECORDING = (
    Path(__file__).parents[1]
    / "fixtures"
    / "wire"
    / "gemini"
    / "cachedcontent_explicit_caching_round-trip_finds_an_existing_cache_by_name.json"
)


def load() -> dict[str, Any]:
    return dict(json.loads(RECORDING.read_text(encoding="utf-8")))


def expected(response: dict[str, Any]) -> CachedContent:
    body = json.loads(response["body"])
    return CachedContent(
        name=body["name"],
        model=body["model"],
        display_name=body["displayName"] or None,
        create_time=body["createTime"],
        update_time=body["updateTime"],
        expire_time=body["expireTime"],
        total_tokens=body["usageMetadata"]["totalTokenCount"],
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_create_find_and_delete_a_cache(mode: str) -> None:
    recording = load()
    create, find, _ = recording["interactions"]
    sent_body = create["request"]["body"]
    text = "".join(p["text"] for c in sent_body["contents"] for p in c["parts"])
    model = sent_body["model"].removeprefix("models/")
    ttl = float(sent_body["ttl"].removesuffix("s"))
    replay = Replay(recording)
    caches = GeminiCaches(replay.context())

    if mode == "sync":
        made = caches.create(model, text, ttl=ttl)
        found = caches.get(made.name)
        caches.delete(made.name)
    else:
        made = await caches.acreate(model, text, ttl=ttl)
        found = await caches.aget(made.name)
        await caches.adelete(made.name)

    assert made == expected(create["response"])
    assert found == expected(find["response"])
    assert [(s.method, s.body) for s in replay.seen] == [
        ("POST", sent_body),
        ("GET", None),
        ("DELETE", None),
    ]
    assert all(s.headers["x-goog-api-key"] == "test-key" for s in replay.seen)
    replay.assert_all_used()


def test_a_cache_is_used_by_name_in_a_chat() -> None:
    """The cache is named in the request body, next to the conversation."""
    chat = sa_llm.context(gemini_api_key="k").chat("gemini-2.5-flash")
    chat.with_params(cachedContent="cachedContents/abc")
    chat.add_message(sa_llm.Message(role="user", content="What does chapter 3 say?"))
    request = chat.provider.build_request(chat.chat_request())
    assert request.json["cachedContent"] == "cachedContents/abc"


def test_a_reply_without_a_name_is_malformed() -> None:
    from sa_llm.providers.base import HttpResponse

    caches = GeminiCaches(sa_llm.context(gemini_api_key="k"))
    with pytest.raises(sa_llm.ResponseParseError, match="name"):
        caches.parse(HttpResponse(200, {}, b'{"model": "models/gemini-2.5-flash"}'))
