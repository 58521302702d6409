"""Extending a Gemini explicit cache: ``PATCH cachedContents/{id}?updateMask=...``.

Only a cache's expiry can change. ``GeminiCaches.update``/``aupdate`` send either a new ``ttl``
or an absolute ``expireTime``, name that field in ``updateMask``, and read back the cache as
Google describes it afterwards.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import sa_llm
from sa_llm.providers.gemini_cache import CachedContent, GeminiCaches
from sa_llm.testing import Replay

BASE = "https://generativelanguage.googleapis.com/v1beta"
NAME = "cachedContents/hpjydg0jqe4ve7vo515g16b2uqizznhfgqoigz0p"


def cache_body(expire_time: str) -> dict[str, Any]:
    return {
        "name": NAME,
        "model": "models/gemini-2.5-flash",
        "createTime": "2026-08-10T23:31:28.075714Z",
        "updateTime": "2026-08-10T23:33:02.101010Z",
        "expireTime": expire_time,
        "displayName": "",
        "usageMetadata": {"totalTokenCount": 9602},
    }


def recording(mask: str, sent: dict[str, Any], status: int = 200) -> dict[str, Any]:
    reply: Any = (
        cache_body("2026-08-10T23:43:02.101010Z")
        if status == 200
        else {"error": {"code": 404, "message": "CachedContent not found", "status": "NOT_FOUND"}}
    )
    return {
        "interactions": [
            {
                "request": {
                    "method": "PATCH",
                    "url": f"{BASE}/{NAME}?updateMask={mask}",
                    "body": sent,
                },
                "response": {
                    "status": status,
                    "headers": {"content-type": "application/json"},
                    "body": json.dumps(reply),
                },
            }
        ]
    }


async def update(caches: GeminiCaches, mode: str, name: str, **change: Any) -> CachedContent:
    if mode == "sync":
        return caches.update(name, **change)
    return await caches.aupdate(name, **change)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_new_ttl_is_patched_with_its_update_mask(mode: str) -> None:
    replay = Replay(recording("ttl", {"ttl": "600s"}))
    caches = GeminiCaches(replay.context())

    updated = await update(caches, mode, NAME, ttl=600)

    [sent] = replay.seen
    assert sent.method == "PATCH"
    url = urlsplit(sent.url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{BASE}/{NAME}"
    assert parse_qs(url.query) == {"updateMask": ["ttl"]}
    assert sent.body == {"ttl": "600s"}
    assert sent.headers["x-goog-api-key"] == "test-key"
    assert sent.headers["content-type"] == "application/json"
    assert updated.name == NAME
    assert updated.expire_time == "2026-08-10T23:43:02.101010Z"
    assert updated.update_time == "2026-08-10T23:33:02.101010Z"
    assert updated.total_tokens == 9602
    replay.assert_all_used()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_absolute_expire_time_is_sent_in_utc(mode: str) -> None:
    replay = Replay(recording("expireTime", {"expireTime": "2026-08-11T00:00:00Z"}))
    caches = GeminiCaches(replay.context())
    # The cache's id alone names it too; a zone other than UTC is converted.
    berlin = timezone(timedelta(hours=2))

    await update(
        caches, mode, NAME.split("/")[1], expire_time=datetime(2026, 8, 11, 2, tzinfo=berlin)
    )

    [sent] = replay.seen
    assert urlsplit(sent.url).path.endswith(f"/{NAME}")
    assert parse_qs(urlsplit(sent.url).query) == {"updateMask": ["expireTime"]}
    assert sent.body == {"expireTime": "2026-08-11T00:00:00Z"}


def test_an_rfc3339_string_is_sent_as_given() -> None:
    caches = GeminiCaches(sa_llm.context(gemini_api_key="k"))
    request = caches.update_request(NAME, expire_time="2026-08-11T00:00:00.5Z")
    assert request.json == {"expireTime": "2026-08-11T00:00:00.5Z"}
    assert request.url == f"{BASE}/{NAME}?updateMask=expireTime"


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"ttl": 60, "expire_time": "2026-08-11T00:00:00Z"},
        {"ttl": 0},
        {"ttl": -5},
        {"ttl": "600s"},
        {"expire_time": datetime(2026, 8, 11)},  # naive: which instant?
    ],
    ids=["neither", "both", "zero", "negative", "string-ttl", "naive-datetime"],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_wrong_expiry_is_refused_before_anything_is_sent(
    mode: str, change: dict[str, Any]
) -> None:
    replay = Replay({"interactions": []})
    caches = GeminiCaches(replay.context())
    with pytest.raises(sa_llm.ConfigurationError):
        await update(caches, mode, NAME, **change)
    assert replay.seen == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_expired_cache_cannot_be_extended(mode: str) -> None:
    replay = Replay(recording("ttl", {"ttl": "60s"}, status=404))
    caches = GeminiCaches(replay.context())
    with pytest.raises(sa_llm.NotFoundError, match="CachedContent not found"):
        await update(caches, mode, NAME, ttl=60)
