"""A registry model routed through another provider: the provider's own model id is called.

``chat("claude-haiku-4-5", provider="openrouter")`` must send OpenRouter's id for Anthropic's
model, and a persisted chat must keep that route (the row of the routing provider), so a chat
loaded later still goes the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

import sa_llm
from persisted import World
from sa_llm.testing import Replay

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"
BASIC = "chat_basic_chat_functionality_{provider}_claude-haiku-4-5_can_have_a_basic_conversation"


def recording(provider: str) -> dict[str, Any]:
    path = WIRE / provider / f"{BASIC.format(provider=provider)}.json"
    return dict(json.loads(path.read_text(encoding="utf-8")))


def recorded_prompt(body: dict[str, Any]) -> str:
    return str(next(m for m in body["messages"] if m["role"] == "user")["content"])


def recorded_text(response: dict[str, Any]) -> str:
    return str(json.loads(response["body"])["choices"][0]["message"]["content"])


def test_plain_chat_sends_the_routing_providers_id() -> None:
    data = recording("openrouter")
    call = data["interactions"][0]
    replay = Replay(data)
    chat = replay.context().chat("claude-haiku-4-5", provider="openrouter")
    assert chat.model_info.provider == "openrouter"
    reply = chat.ask(recorded_prompt(call["request"]["body"]))
    assert replay.seen[0].body["model"] == call["request"]["body"]["model"]
    assert reply.text == recorded_text(call["response"])


async def test_persisted_chat_keeps_the_route(world: World) -> None:
    data = recording("openrouter")
    call = data["interactions"][0]
    replay = Replay(data)
    chat = world.Chat(model="claude-haiku-4-5", provider="openrouter", context=replay.context())
    await world.add(chat)
    (model_row,) = world.rows(world.Model)
    assert (model_row.provider, model_row.model_id) == ("openrouter", "anthropic/claude-haiku-4.5")

    # A chat loaded afresh (no pending provider any more) still calls through OpenRouter.
    with Session(world.sync_engine) as session:
        loaded = session.get(world.Chat, chat.id)
        assert loaded is not None
        llm = loaded.with_context(replay.context()).to_llm()
        assert (llm.provider.name, llm.model_id) == ("openrouter", "anthropic/claude-haiku-4.5")

    reply = await world.call(chat.ask, recorded_prompt(call["request"]["body"]))
    assert replay.seen[0].body["model"] == "anthropic/claude-haiku-4.5"
    assert reply.content == recorded_text(call["response"])
    roles = [(m.role, m.content) for m in world.messages()]
    assert roles == [
        ("user", recorded_prompt(call["request"]["body"])),
        ("assistant", recorded_text(call["response"])),
    ]


def test_a_model_the_routing_provider_does_not_serve_is_refused() -> None:
    with pytest.raises(sa_llm.ModelNotFoundError):
        sa_llm.chat("gpt-4.1-nano", provider="anthropic")


def test_a_schema_on_a_provider_without_structured_output_fails_before_sending() -> None:
    replay = Replay({"interactions": []})
    chat = replay.context(deepseek_api_key="k").chat("deepseek-chat", provider="deepseek")
    chat.with_schema({"name": "answer", "schema": {"type": "object", "properties": {}}})
    with pytest.raises(sa_llm.UnsupportedFeatureError, match="deepseek"):
        chat.ask("Give me JSON")
    assert replay.seen == []
    assert chat.messages == []  # nothing was added either


BEDROCK_HAIKU = (
    WIRE
    / "bedrock"
    / "chat_with_extended_thinking_bedrock_claude-haiku-4-5_returns_thinking_when_available.json"
)
AWS: dict[str, Any] = {
    "bedrock_access_key_id": "AKIDEXAMPLE",
    "bedrock_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east-1", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("eu-west-1", "eu.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("ap-northeast-1", "jp.anthropic.claude-haiku-4-5-20251001-v1:0"),
    ],
)
def test_bedrock_route_picks_the_regions_inference_profile(region: str, expected: str) -> None:
    ctx = sa_llm.context(bedrock_region=region, **AWS)
    chat = ctx.chat("claude-haiku-4-5", provider="bedrock")
    assert (chat.model_info.provider, chat.model_id) == ("bedrock", expected)


def test_bedrock_route_calls_the_profile_id() -> None:
    """The recorded call (us-east-1) is answered when the alias is routed through Bedrock."""
    replay = Replay(json.loads(BEDROCK_HAIKU.read_text(encoding="utf-8")))
    ctx = replay.context(bedrock_region="us-east-1", **AWS)
    reply = ctx.chat("claude-haiku-4-5", provider="bedrock").ask("Hello")
    url = replay.seen[0].url
    assert "bedrock-runtime.us-east-1.amazonaws.com" in url
    assert url.endswith("/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/converse")
    assert reply.text


def test_a_file_the_model_cannot_read_fails_before_sending(tmp_path: Path) -> None:
    image = tmp_path / "chart.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    replay = Replay({"interactions": []})
    chat = replay.context(deepseek_api_key="k").chat("deepseek-chat")  # text only
    with pytest.raises(sa_llm.UnsupportedAttachmentError, match="deepseek-chat"):
        chat.ask("What is this?", attachments=[image])
    assert replay.seen == []
    assert chat.messages == []


async def test_persisted_bedrock_route_follows_the_chats_context(world: World) -> None:
    """A chat created in an EU tenant's context stores the EU inference profile's row."""
    europe = sa_llm.context(bedrock_region="eu-west-1", **AWS)
    chat = world.Chat(model="claude-haiku-4-5", provider="bedrock", context=europe)
    await world.add(chat)
    (row,) = world.rows(world.Model)
    assert (row.provider, row.model_id) == (
        "bedrock",
        "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
    )
