"""The usage ledger over recorded traffic of every provider: one row per physical attempt.

A persisted chat with an ``@acts_as_usage`` class talks real HTTP to the fault-injecting server,
which replays a recorded whole reply and a recorded stream of each provider in the wire corpus
(Anthropic, Bedrock, DeepSeek, Gemini, Mistral, Ollama, OpenAI, OpenRouter, xAI), with faults.
Each case checks what an app reading the ledger would see: as many rows as the server received
requests (a retried error is a row of its own), the provider's own token numbers on the row of
the attempt that answered (read from the recorded bytes independently of sa_llm's codecs),
NULL where the provider sent none, the cost the registry's prices give, and the row linked to
the message it produced. SQLite and PostgreSQL, sync and async, whole and streamed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import anyio.to_thread
import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

import sa_llm
from faults_support import first_content_event
from persisted import World
from sa_llm import errors
from sa_llm._mapping import chat_schema
from sa_llm.chat import resolve_model
from sa_llm.cost import Prices
from sa_llm.persistence import (
    InTransactionStrategy,
    PersistenceStrategy,
    SaveOnCompletionStrategy,
    use_strategy,
)
from sa_llm.testing import FakeLLM
from sa_llm.testing.faults import Answer, FaultInjectingServer, RecordedReply, split_events
from sa_llm.testing.server import CloseAfter, Failure
from usage_support import (
    PROVIDERS,
    ProviderCase,
    as_decimal,
    ledger_models,
    provider_case,
    recorded_usage,
)

CASES = {name: provider_case(name) for name in PROVIDERS}


@pytest.fixture
def world_models() -> dict[str, Any]:
    return ledger_models()


@contextlib.asynccontextmanager
async def connected(case: ProviderCase) -> AsyncIterator[tuple[FaultInjectingServer, Any]]:
    """A server replaying ``case``'s provider and a context whose own clients talk to it."""
    async with (
        FaultInjectingServer(case.api, idle_timeout=10, max_seconds=60) as server,
        httpx.AsyncClient() as async_client,
    ):
        with httpx.Client() as sync_client:
            yield (
                server,
                sa_llm.context(
                    **case.settings(
                        server,
                        max_retries=2,
                        retry_interval=0,
                        http_client=sync_client,
                        async_http_client=async_client,
                    )
                ),
            )


async def new_chat(world: World, case: ProviderCase, context: sa_llm.Context) -> Any:
    try:  # a model the registry prices, where it lists it
        resolve_model(case.model, case.provider, False)
        known = True
    except errors.ModelNotFoundError:
        known = False
    chat = world.Chat(
        model=case.model, provider=case.provider, assume_model_exists=not known, context=context
    )
    await world.add(chat)
    return chat


def ledger(world: World, chat_id: Any) -> list[Any]:
    Usage = world.models["Usage"]
    return world.rows(Usage, Usage.chat_id == chat_id)


def tokens_of(row: Any) -> sa_llm.Tokens:
    return sa_llm.Tokens(
        input=row.input_tokens,
        output=row.output_tokens,
        cached=row.cache_read_tokens,
        cache_creation=row.cache_write_tokens,
        reasoning=row.reasoning_tokens,
    )


def reply_ids(world: World, chat_id: Any) -> list[Any]:
    Message = world.Message
    return [m.id for m in world.rows(Message, Message.chat_id == chat_id, Message.role != "user")]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_every_attempt_is_a_row_with_the_providers_numbers(
    world: World, provider: str
) -> None:
    case = CASES[provider]
    async with connected(case) as (server, context):
        server.queue(
            Answer(case.whole, Failure(500)),
            Answer(case.whole),
            Answer(case.streamed, Failure(429)),
            Answer(case.streamed),
        )
        chat = await new_chat(world, case, context)
        chat_id = chat.id
        await world.call(chat.ask, "What is the first answer?")
        await world.call(chat.ask, "And the second one?", on_chunk=lambda chunk: None)
        await anyio.to_thread.run_sync(server.wait_for_requests, 4, 2.0)
        assert server.request_count == 4
    if case.api == "chat_completions":  # usage must be asked for, or a stream reports none
        streamed = [r.body for r in server.requests if r.stream]
        assert streamed and all(b["stream_options"] == {"include_usage": True} for b in streamed)

    rows = ledger(world, chat_id)
    assert len(rows) == server.request_count
    assert [(r.outcome, r.http_status, r.streamed, r.attempt) for r in rows] == [
        ("ServerError", 500, False, 1),
        ("ok", 200, False, 2),
        ("RateLimitError", 429, True, 1),
        ("ok", 200, True, 2),
    ]
    assert {(r.provider, r.model) for r in rows} == {(provider, case.model)}
    # The provider said nothing about the usage of the attempts it refused: NULL, not 0.
    for failed in (rows[0], rows[2]):
        assert tokens_of(failed) == sa_llm.Tokens()
        assert failed.total_cost is None
    assert tokens_of(rows[1]) == recorded_usage(case.api, case.whole)
    assert tokens_of(rows[3]) == recorded_usage(case.api, case.streamed)
    # Both attempts of a call belong to the reply they produced.
    first, second = reply_ids(world, chat_id)
    assert [r.message_id for r in rows] == [first, first, second, second]
    # Time to the first chunk for the stream only; every attempt has a duration.
    assert rows[1].first_chunk_seconds is None and rows[3].first_chunk_seconds is not None
    assert all(r.duration_seconds is not None and r.duration_seconds >= 0 for r in rows)
    assert all(r.started_at <= r.finished_at for r in rows)

    prices = Prices.of(resolve_model(case.model, case.provider, False)) if _listed(case) else None
    for row in (rows[1], rows[3]):
        expected = prices.cost_of(tokens_of(row)) if prices is not None else None
        assert as_decimal(row.total_cost) == (expected.total if expected else None)
        assert row.currency == ("USD" if expected else None)

    usage = await world.call(chat.usage)
    assert (usage.attempts, usage.failed) == (4, 2)
    assert usage.tokens.input == sum(r.input_tokens or 0 for r in rows)


def _listed(case: ProviderCase) -> bool:
    try:
        resolve_model(case.model, case.provider, False)
    except errors.ModelNotFoundError:
        return False
    return True


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_cut_stream_keeps_the_usage_the_provider_had_sent(
    world: World, provider: str
) -> None:
    """Anthropic reports the prompt in ``message_start`` and Gemini in every event: a stream cut
    after the first text keeps those figures; OpenAI-style streams report usage only at their
    end, so their row says NULL (unknown), never 0."""
    case = CASES[provider]
    reply = case.streamed
    cut = first_content_event(case.api, reply) + 1
    sent = RecordedReply(reply.status, reply.headers, b"".join(split_events(reply)[:cut]))
    async with connected(case) as (server, context):
        server.queue(Answer(reply, CloseAfter(cut)))
        chat = await new_chat(world, case, context)
        chat_id = chat.id
        with pytest.raises(errors.APIConnectionError):
            await world.call(chat.ask, "Tell me a story", on_chunk=lambda chunk: None)

    (row,) = ledger(world, chat_id)
    assert (row.outcome, row.http_status, row.streamed) == ("APIConnectionError", 200, True)
    assert row.first_chunk_seconds is not None
    expected = recorded_usage(case.api, sent) or sa_llm.Tokens()
    assert tokens_of(row) == expected
    if provider in ("anthropic", "gemini"):
        assert row.input_tokens is not None and row.input_tokens > 0
    # The blank reply was deleted; the attempt stays, linked to nothing.
    assert row.message_id is None


async def test_an_abandoned_stream_is_a_cancelled_attempt(world: World, fake: FakeLLM) -> None:
    fake.reply("One two three four five six", chunks=6)
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    chat_id = chat.id
    if world.mode == "async":
        chunks = chat.astream("Count")
        await chunks.__anext__()
        await chunks.aclose()
    else:
        chunks = chat.stream("Count")
        next(chunks)
        chunks.close()
    (row,) = ledger(world, chat_id)
    assert (row.outcome, row.http_status, row.streamed) == ("cancelled", 200, True)
    assert row.finished_at is not None


async def test_the_ledger_adds_no_commit(world: World, fake: FakeLLM) -> None:
    """A turn (a tool round: two provider calls) commits as often with the ledger as without
    it: its rows ride along in the steps' own transactions."""
    commits: list[int] = []
    engine = world.sync_engine_for_async()
    schema = chat_schema(world.Chat)
    event.listen(engine, "commit", lambda connection: commits.append(1))
    counts = []
    try:
        for with_ledger in (False, True):
            world.Chat.__sa_llm_schema__ = (
                schema if with_ledger else dataclasses.replace(schema, usage_cls=None)
            )
            chat = world.Chat(model="gpt-4.1-nano", provider="fake")
            await world.add(chat)
            fake.reply("Hello")  # the chat's first turn resolves its model: not measured
            await world.call(chat.ask, "Hi")
            fake.tool_call("clock").reply("It is noon", tokens=sa_llm.Tokens(input=9, output=3))
            chat.with_tool(clock)
            commits.clear()
            await world.call(chat.ask, "What time is it?")
            counts.append(len(commits))
    finally:
        world.Chat.__sa_llm_schema__ = schema
    assert counts[0] == counts[1] > 0
    Usage = world.models["Usage"]
    with Session(world.sync_engine) as session:
        rows = session.scalars(select(Usage).order_by(Usage.id)).all()
        # The measured turn's two calls (after the warm-up's one), each with its own numbers.
        assert [(r.outcome, r.input_tokens, r.output_tokens) for r in rows][1:] == [
            ("ok", rows[1].input_tokens, rows[1].output_tokens),
            ("ok", 9, 3),
        ]
        assert len(rows) == 3


def clock() -> str:
    """The time."""
    return "12:00"


@pytest.mark.parametrize("strategy", [InTransactionStrategy, SaveOnCompletionStrategy])
async def test_other_strategies_write_the_ledger_in_their_steps(
    world: World, fake: FakeLLM, strategy: type[PersistenceStrategy]
) -> None:
    """Inside the caller's transaction the rows appear with the caller's commit; saving on
    completion links them to the one row it writes."""
    use_strategy(world.session, strategy())
    fake.error(500).reply("Paris", tokens=sa_llm.Tokens(input=7, output=1))
    sa_llm.configure(retry_interval=0)
    try:
        chat = world.Chat(model="gpt-4.1-nano", provider="fake")
        await world.add(chat)
        chat_id = chat.id
        await world.call(chat.ask, "Capital of France?")
        await world.commit()
    finally:
        sa_llm.reset_config()
    rows = ledger(world, chat_id)
    assert [(r.outcome, r.input_tokens) for r in rows] == [("ServerError", None), ("ok", 7)]
    (reply,) = reply_ids(world, chat_id)
    assert {r.message_id for r in rows} == {reply}


async def test_each_turn_is_priced_at_the_model_in_force(
    world: World, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row keeps its prices between turns, but never past a change of model."""
    per_token = {"gpt-4.1-nano": Decimal("0.001"), "gpt-4.1": Decimal("0.01")}
    looked_up: list[str] = []

    def prices_for(model: Any, source: str = "registry") -> Prices:
        looked_up.append(model.id)
        return Prices(input=per_token[model.id] * 1_000_000, output=Decimal(0))

    monkeypatch.setattr(sys.modules["sa_llm.chat"], "prices_for", prices_for)
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    for model in (None, None, "gpt-4.1"):
        if model is not None:
            await world.call(chat.with_model, model, provider="fake")
        fake.reply("Hello", tokens=sa_llm.Tokens(input=1000, output=100))
        await world.call(chat.ask, "Hi")
    rows = ledger(world, chat.id)
    assert [as_decimal(row.total_cost) for row in rows] == [Decimal(1), Decimal(1), Decimal(10)]
    assert looked_up == ["gpt-4.1-nano", "gpt-4.1"]  # looked up again only for the new model
