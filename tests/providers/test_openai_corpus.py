"""Every recorded OpenAI exchange, replayed through the public API, sync and async.

Table-driven over ``tests/fixtures/wire/openai``: the conversation of each file is rebuilt from
its recorded requests (see ``wire_responses``), run through ``Chat`` against a replay of the
recorded replies, and the parsed results are compared with what the recorded replies say. The
essentials of every request the library sent are compared with the recorded request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

import sa_llm
from persisted import default_models
from sa_llm.testing import Replay
from sa_llm.types import Chunk, Message
from wire_responses import (
    WIRE,
    configure_turn,
    expected_calls,
    expected_text,
    expected_tokens,
    load,
    make_tool,
    model_calls,
    recorded_rounds,
    reply_object,
    split_user_content,
    tool_outputs,
    tool_rounds,
    turns,
)

# Providers that speak the Responses API, and the settings that make them use it.
RESPONSES_PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {},
    "xai": {},
    "deepseek": {"deepseek_api": "responses"},
}
FILES = [path for name in RESPONSES_PROVIDERS for path in sorted((WIRE / name).glob("*.json"))]
RESPONSES_FILES = [
    path
    for path in FILES
    if all(c["request"]["url"].endswith("/responses") for c in model_calls(load(path)))
]


def expected_error(status: int, body: Mapping[str, Any]) -> type[Exception]:
    error = body.get("error")
    code = error.get("code") if isinstance(error, Mapping) else body.get("code")
    message = error.get("message", "") if isinstance(error, Mapping) else str(error or "")
    if "API key" in message:
        return sa_llm.AuthenticationError  # xAI answers a bad key with 400
    if code == "context_length_exceeded":
        return sa_llm.ContextLengthExceededError
    return {
        400: sa_llm.BadRequestError,
        401: sa_llm.AuthenticationError,
        403: sa_llm.PermissionDeniedError,
        404: sa_llm.NotFoundError,
        429: sa_llm.RateLimitError,
    }.get(status, sa_llm.ServerError)


def history_message(item: Mapping[str, Any]) -> Message:
    text, _ = split_user_content(item["content"])
    if item["role"] == "assistant":
        text = "".join(part["text"] for part in item["content"])
    return Message(role=item["role"], content=text)


def new_chat(ctx: sa_llm.Context, recording: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
    provider = str(recording.get("_provider", "openai"))
    chat = ctx.chat(body["model"], provider=provider, assume_model_exists=provider != "openai")
    tools = body.get("tools") or []
    if tools:
        outputs = tool_outputs(recording)
        choice = body.get("tool_choice")
        chat.with_tools(
            *[make_tool(spec, outputs) for spec in tools],
            choice=choice["name"] if isinstance(choice, dict) else choice,
            calls=None
            if body.get("parallel_tool_calls") is None
            else ("many" if body["parallel_tool_calls"] else "one"),
        )
    return chat


async def run_ask(
    chat: Any, mode: str, prompt: str | None, files: list[Any], stream: bool
) -> tuple[Message, list[Chunk]]:
    chunks: list[Chunk] = []
    on_chunk = chunks.append if stream else None
    if mode in ("sync", "persisted"):
        return chat.ask(prompt, attachments=files or None, on_chunk=on_chunk), chunks
    return await chat.aask(prompt, attachments=files or None, on_chunk=on_chunk), chunks


def essentials(item: Mapping[str, Any]) -> Any:
    """What must match in one input item: kind, role, texts, files, tool ids and outputs."""
    kind = item.get("type") or f"message:{item.get('role')}"
    if item.get("role") == "user":
        text, files = split_user_content(item["content"])
        return (kind, text, [(f.filename, f.type if not f.is_remote else f.url) for f in files])
    if item.get("role") == "assistant":
        return (kind, "".join(p.get("text", "") for p in item["content"]))
    if kind == "function_call":
        return (kind, item["call_id"], item["name"], json.loads(item["arguments"] or "{}"))
    if kind == "function_call_output":
        return (kind, item["call_id"], item["output"])
    return (kind,)


def assert_request_matches(sent: Mapping[str, Any], recorded: Mapping[str, Any]) -> None:
    for key in ("model", "stream", "instructions", "tool_choice", "parallel_tool_calls"):
        assert sent.get(key) == recorded.get(key), key
    assert [essentials(i) for i in sent["input"]] == [essentials(i) for i in recorded["input"]]
    assert [t["name"] for t in sent.get("tools", [])] == [
        t["name"] for t in recorded.get("tools", [])
    ]
    sent_format = (sent.get("text") or {}).get("format")
    recorded_format = (recorded.get("text") or {}).get("format")
    if recorded_format is None:
        assert sent_format is None
    else:
        assert sent_format is not None
        assert sent_format["type"] == recorded_format["type"]
        if recorded_format["type"] == "json_schema":
            assert sent_format["name"] == recorded_format["name"]
            assert set(sent_format["schema"]["properties"]) == set(
                recorded_format["schema"]["properties"]
            )
    assert sent.get("reasoning") == recorded.get("reasoning")
    assert sent.get("include") == recorded.get("include")


ChatFactory = Callable[[sa_llm.Context, Mapping[str, Any], Mapping[str, Any]], Any]


async def replay_recording(path: Path, mode: str, make_chat: ChatFactory) -> None:
    """Drive the conversation of one recording through ``make_chat``'s chats and check it."""
    recording = load(path)
    recording["_provider"] = path.parent.name
    replay = Replay(recording)
    ctx = replay.context(**RESPONSES_PROVIDERS[path.parent.name])
    history, asks = turns(recording)
    chat = make_chat(ctx, recording, asks[0].body)
    for item in history:
        chat.add_message(history_message(item))

    for turn in asks:
        if turn.fresh:
            chat = make_chat(ctx, recording, turn.body)
        configure_turn(chat, turn.body)
        stream = bool(turn.body.get("stream"))
        last = turn.calls[-1]["response"]
        if last["status"] >= 400:
            error = expected_error(last["status"], json.loads(last["body"]))
            with pytest.raises(error) as caught:
                await run_ask(chat, mode, turn.prompt, turn.files, stream)
            assert caught.value.status == last["status"]  # type: ignore[attr-defined]
            assert caught.value.provider == recording.get("_provider", "openai")  # type: ignore[attr-defined]
            continue
        before = len(chat.messages)
        reply, chunks = await run_ask(chat, mode, turn.prompt, turn.files, stream)
        expected = reply_object(last)
        assert expected is not None
        messages = chat.messages
        final = reply
        if expected_calls(expected):
            # The recording ends on a tool call: the tool halted the loop, as the original did.
            assert reply.role == "tool"
            final = [m for m in messages if m.role == "assistant"][-1]
        assert final.text == expected_text(expected)
        assert final.tokens == expected_tokens(expected)
        if mode != "persisted":
            assert final.model_id == expected["model"]
        if stream:
            assert "".join(c.content or "" for c in chunks) == (final.text or "")
        # Every tool round the recording shows produced the same calls in the history.
        new_messages = messages[before:]
        rounds = tool_rounds(new_messages)
        assert rounds == recorded_rounds(turn.calls)
        asked = {call_id for calls in rounds for call_id, _, _ in calls}
        for message in new_messages:
            if message.role == "tool":
                assert message.tool_call_id in asked

    posts = [s for s in replay.seen if s.method == "POST"]
    assert len(posts) == len(model_calls(recording))
    for sent, call in zip(posts, model_calls(recording), strict=True):
        assert_request_matches(sent.body, call["request"]["body"])
        assert sent.headers["authorization"] == "Bearer test-key"
    replay.assert_all_used()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", RESPONSES_FILES, ids=lambda p: p.stem)
async def test_replay_responses_recording(path: Path, mode: str) -> None:
    await replay_recording(path, mode, new_chat)


class PersistedChatAdapter:
    """A chat row behind the in-memory chat's interface, so the same driver runs it."""

    def __init__(self, session: Session, models: dict[str, Any], record: Any) -> None:
        self.session = session
        self.models = models
        self.record = record

    def __getattr__(self, name: str) -> Any:
        return getattr(self.record, name)

    @property
    def messages(self) -> list[Message]:
        # Rebuilt from the rows: what was stored must be enough to continue the chat.
        return list(self.record.to_llm().messages)


def _carries_files_across_turns(path: Path) -> bool:
    _, asks = turns(load(path))
    return any(turn.files for turn in asks[:-1])


PERSISTED_FILES = [p for p in RESPONSES_FILES if not _carries_files_across_turns(p)]


@pytest.mark.parametrize("path", PERSISTED_FILES, ids=lambda p: p.stem)
async def test_replay_responses_recording_through_a_persisted_chat(path: Path, db_url: str) -> None:
    """The same recordings through ``@acts_as_chat`` rows; history is rebuilt from the database.

    Recordings that re-send an earlier turn's files are left out: stored attachments are the
    attachments issue's work.
    """
    models = default_models()
    engine = create_engine(db_url)
    models["Base"].metadata.create_all(engine)
    session = Session(engine)

    def make_chat(
        ctx: sa_llm.Context, recording: Mapping[str, Any], body: Mapping[str, Any]
    ) -> PersistedChatAdapter:
        provider = str(recording.get("_provider", "openai"))
        record = models["Chat"](
            model=body["model"],
            provider=provider,
            context=ctx,
            assume_model_exists=provider != "openai",
        )
        session.add(record)
        session.commit()
        plain = new_chat(ctx, recording, body)
        record.with_tools(*plain.tools.values(), choice=plain.tool_choice)
        if plain.parallel_tool_calls is not None:
            record.with_tools(calls="many" if plain.parallel_tool_calls else "one")
        return PersistedChatAdapter(session, models, record)

    try:
        await replay_recording(path, "persisted", make_chat)
        roles = [m.role for m in session.scalars(select(models["Message"])).all()]
        assert "user" in roles and "" not in roles
    finally:
        session.close()
        engine.dispose()


AUDIO = WIRE / "openai" / "chat_audio_models_openai_gpt-audio-mini_can_understand_mp3_audio.json"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_replay_audio_through_chat_completions(mode: str) -> None:
    import base64

    recording = load(AUDIO)
    recorded = recording["interactions"][0]
    parts = recorded["request"]["body"]["messages"][0]["content"]
    audio = next(p for p in parts if p["type"] == "input_audio")
    mp3 = sa_llm.Attachment.from_bytes(base64.b64decode(audio["input_audio"]["data"]), "speech.mp3")
    replay = Replay(recording)
    chat = replay.context().chat(recorded["request"]["body"]["model"], provider="openai")
    prompt = next(p["text"] for p in parts if p["type"] == "text")
    reply, _ = await run_ask(chat, mode, prompt, [mp3], False)
    body = json.loads(recorded["response"]["body"])
    assert reply.text == body["choices"][0]["message"]["content"]
    assert reply.tokens is not None and reply.tokens.input == body["usage"]["prompt_tokens"]
    sent = replay.seen[0].body
    assert sent["model"] == recorded["request"]["body"]["model"]
    sent_audio = next(p for p in sent["messages"][0]["content"] if p["type"] == "input_audio")
    assert sent_audio == audio
    replay.assert_all_used()
