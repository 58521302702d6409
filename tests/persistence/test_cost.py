"""Cost: the documented formula over the registry's prices, costs frozen on the ledger rows,
``chat.cost()`` / ``chat.usage()`` and ``message.cost``, and the genai-prices source."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import sa_llm
from persisted import World
from sa_llm import registry
from sa_llm.cost import GenaiPrices, Prices, prices_for
from sa_llm.errors import MissingDependencyError
from sa_llm.testing import FakeLLM
from usage_support import as_decimal, ledger_models

M = Decimal(1_000_000)


def test_the_formula_counts_cached_input_once() -> None:
    prices = Prices(
        input=Decimal("2"),
        output=Decimal("8"),
        cache_read=Decimal("0.5"),
        cache_write=Decimal("2.5"),
    )
    cost = prices.cost_of(sa_llm.Tokens(input=1_000, output=300, cached=600, cache_creation=100))
    assert cost is not None
    assert cost.input == (1_000 - 600 - 100) * Decimal(2) / M
    assert cost.cache_read == 600 * Decimal("0.5") / M
    assert cost.cache_write == 100 * Decimal("2.5") / M
    assert cost.output == 300 * Decimal(8) / M
    assert cost.reasoning is None
    parts = (cost.input, cost.cache_read, cost.cache_write, cost.output)
    assert cost.total == sum(parts, Decimal(0)) == Decimal("0.00355")
    assert cost.currency == "USD"


def test_reasoning_priced_apart_and_missing_counts() -> None:
    prices = Prices(input=Decimal(1), output=Decimal(4), reasoning=Decimal(10))
    cost = prices.cost_of(sa_llm.Tokens(input=100, output=50, reasoning=20))
    assert cost is not None
    assert (cost.output, cost.reasoning) == (30 * Decimal(4) / M, 20 * Decimal(10) / M)
    # A cache price the model lacks is the input price; no cache count: no cache cost.
    plain = Prices(input=Decimal(1), output=Decimal(4))
    cached = plain.cost_of(sa_llm.Tokens(input=100, output=0, cached=40))
    assert cached is not None and cached.cache_read == 40 * Decimal(1) / M
    assert cached.total == 100 * Decimal(1) / M
    # Unknown tokens or no price: no cost at all (never a made-up zero).
    assert plain.cost_of(sa_llm.Tokens()) is None
    assert Prices.from_pricing({}) is None


def test_long_context_prices_apply_above_the_threshold() -> None:
    info = next(m for m in registry.all() if "long_context_threshold" in str(m.pricing))
    prices = Prices.of(info)
    assert prices is not None and prices.long_context is not None
    threshold = prices.long_context_threshold
    assert threshold is not None
    below = prices.cost_of(sa_llm.Tokens(input=threshold, output=0))
    above = prices.cost_of(sa_llm.Tokens(input=threshold + 1, output=0))
    assert below is not None and above is not None
    assert below.input == threshold * prices.input / M  # type: ignore[operator]
    assert above.input == (threshold + 1) * prices.long_context.input / M  # type: ignore[operator]


def test_registry_prices_are_decimal_exact() -> None:
    prices = Prices.of(registry.find("gpt-4.1-nano"))
    assert prices is not None and prices.input == Decimal("0.1")


def test_genai_prices_price_an_attempt() -> None:
    source = prices_for(registry.find("gpt-4.1-nano"), "genai-prices")
    assert isinstance(source, GenaiPrices)
    cost = source.cost_of(sa_llm.Tokens(input=1_000, output=100, cached=200))
    assert cost is not None and cost.total > 0
    assert GenaiPrices("openai", "no-such-model").cost_of(sa_llm.Tokens(input=1)) is None


def test_genai_prices_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "genai_prices", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"sa-llm\[prices\]"):
        prices_for(registry.find("gpt-4.1-nano"), "genai-prices")


@pytest.fixture
def world_models() -> dict[str, Any]:
    return ledger_models()


async def test_costs_are_frozen_on_the_ledger(world: World, fake: FakeLLM) -> None:
    """Each attempt keeps the cost of the prices in force when it ran: the model row's prices
    changing later changes ``message.cost`` (computed on read), never the ledger."""
    tokens = sa_llm.Tokens(input=1_000, output=200, cached=400)
    fake.reply("One", tokens=tokens).reply("Two", tokens=tokens)
    # The fake serves any model: a model row priced as the registry prices gpt-4.1-nano.
    listed = registry.find("gpt-4.1-nano")
    priced = registry.ModelInfo(
        id=listed.id, name=listed.name, provider="fake", pricing=listed.pricing
    )
    await world.add(world.Model.from_llm(priced))
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    chat_id = chat.id
    await world.call(chat.ask, "One?")
    await world.call(chat.ask, "Two?")
    doubled = {"text_tokens": {"standard": {"input_per_million": 0.2, "output_per_million": 0.8}}}
    with world.sync_engine.begin() as connection:
        connection.execute(update(world.Model).values(pricing=doubled))

    Usage = world.models["Usage"]
    first, second = world.rows(Usage, Usage.chat_id == chat_id)
    registry_cost = Prices.of(listed).cost_of(tokens)  # type: ignore[union-attr]
    assert registry_cost is not None
    for row in (first, second):
        assert as_decimal(row.total_cost) == registry_cost.total
        assert as_decimal(row.cache_read_cost) == registry_cost.cache_read
        assert row.currency == "USD"
    with Session(world.sync_engine) as session:
        reply = session.scalars(
            select(world.Message).where(world.Message.role == "assistant").limit(1)
        ).one()
        now = Prices(input=Decimal("0.2"), output=Decimal("0.8")).cost_of(tokens)
        assert reply.cost == now != registry_cost

    cost = await world.call(chat.cost)
    assert cost is not None and cost.total == registry_cost.total * 2
    usage = await world.call(chat.usage)
    assert (usage.attempts, usage.failed) == (2, 0)
    assert usage.tokens == tokens + tokens


async def test_message_records_answer_their_cost_and_cache_names(
    world: World, fake: FakeLLM
) -> None:
    fake.reply("Hello", tokens=sa_llm.Tokens(input=50, output=10, cached=20, cache_creation=5))
    chat = world.Chat(model="gpt-4.1-nano", provider="fake")
    await world.add(chat)
    await world.call(chat.ask, "Hi")
    Message = world.Message
    with Session(world.sync_engine) as session:
        reply = session.scalars(select(Message).where(Message.role == "assistant")).one()
        assert (reply.cache_read_tokens, reply.cache_write_tokens) == (20, 5)
        assert (reply.cache_read_tokens, reply.cache_write_tokens) == (
            reply.cached_tokens,
            reply.cache_creation_tokens,
        )
        # The fake's model row carries no prices: no cost, rather than a made-up one.
        assert reply.cost is None


def test_message_cost_uses_its_model_rows_prices() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    models = ledger_models()
    engine = create_engine("sqlite://")
    models["Base"].metadata.create_all(engine)
    info = registry.find("gpt-4.1-nano")
    with Session(engine) as session:
        model = models["Model"].from_llm(info)
        chat = models["Chat"](model=model)
        message = models["Message"](
            chat=chat, role="assistant", model=model, input_tokens=1_000, output_tokens=100
        )
        session.add_all([model, chat, message])
        session.flush()
        expected = Prices.of(info).cost_of(sa_llm.Tokens(input=1_000, output=100))  # type: ignore[union-attr]
        assert message.cost == expected


async def test_usage_without_a_ledger_adds_up_the_messages(fake: FakeLLM) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from persisted import default_models

    models = default_models()
    engine = create_engine("sqlite://")
    models["Base"].metadata.create_all(engine)
    fake.reply("A", tokens=sa_llm.Tokens(input=3, output=1)).reply(
        "B", tokens=sa_llm.Tokens(input=5, output=2)
    )
    with Session(engine) as session:
        chat = models["Chat"](model="gpt-4.1-nano", provider="fake")
        session.add(chat)
        session.commit()
        chat.ask("a")
        chat.ask("b")
        usage = chat.usage()
    assert (usage.attempts, usage.tokens.input, usage.tokens.output) == (2, 8, 3)
    assert usage.cost is None
