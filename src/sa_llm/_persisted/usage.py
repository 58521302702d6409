"""The usage ledger of a chat: one row per physical provider attempt, and what it adds up to.

A chat whose class has an ``@acts_as_usage`` class gets a row for every attempt its turns made
(:mod:`sa_llm._attempts`): written by :func:`write` in the transaction of the step the attempt
belongs to (the completion of the reply it produced, or the clean-up of a turn that failed), so
the ledger costs one INSERT in a transaction that commits anyway, never a commit of its own.
:func:`summary` adds a chat's rows up (``chat.usage()`` / ``chat.cost()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, insert, literal, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from sa_llm._attempts import Attempt
from sa_llm._mapping import ChatSchema
from sa_llm.cost import Cost, Usage
from sa_llm.types import Tokens

__all__ = ["chat_usage", "ledger_values", "summary", "write"]


_NO_COST = dict.fromkeys(
    (
        "input_cost", "output_cost", "cache_read_cost", "cache_write_cost", "reasoning_cost",
        "total_cost", "currency",
    )
)  # fmt: skip


def ledger_values(
    schema: ChatSchema, chat_id: Any, message_id: Any, attempt: Attempt
) -> dict[str, Any]:
    """The column values of ``attempt``'s ledger row (only the columns the class maps)."""
    tokens = attempt.tokens or Tokens()
    values: dict[str, Any] = {
        "provider": attempt.provider,
        "model": attempt.model,
        "attempt": attempt.number,
        "streamed": attempt.streamed,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "outcome": attempt.outcome or "interrupted",
        "http_status": attempt.http_status,
        "input_tokens": tokens.input,
        "output_tokens": tokens.output,
        "cache_read_tokens": tokens.cached,
        "cache_write_tokens": tokens.cache_creation,
        "reasoning_tokens": tokens.reasoning,
        "first_chunk_seconds": attempt.time_to_first_chunk,
        "duration_seconds": attempt.duration,
    }
    # Every row has every key: one INSERT ... VALUES shape for all the attempts of a step.
    values.update(attempt.cost.as_columns() if attempt.cost is not None else _NO_COST)
    row = {key: value for key, value in values.items() if key in schema.usage_columns}
    row[schema.usage_chat_fk or "chat_id"] = chat_id
    if schema.usage_message_fk is not None:
        row[schema.usage_message_fk] = message_id
    return row


def write(
    session: Session,
    schema: ChatSchema,
    chat_id: Any,
    message_id: Any,
    attempts: Sequence[Attempt],
) -> None:
    """Insert a ledger row per attempt in the session's transaction (a no-op without a ledger
    class or attempts). ``message_id`` is the message the attempts produced, or ``None``."""
    if schema.usage_cls is None or not attempts:
        return
    statement, keys = _insert(schema)
    rows = [
        {keys[name]: value for name, value in ledger_values(schema, chat_id, message_id, a).items()}
        for a in attempts
    ]
    # A Core INSERT of the table (the column defaults apply): the ORM's bulk insert would cost
    # more than the rest of the row's work.
    session.execute(statement, rows[0] if len(rows) == 1 else rows)


def _insert(schema: ChatSchema) -> tuple[Any, dict[str, str]]:
    """The ledger table's INSERT and its attribute -> column key map (made once per class)."""
    usage_cls = schema.usage_cls
    cached: tuple[Any, dict[str, str]] | None = usage_cls.__dict__.get("__sa_llm_usage_insert__")
    if cached is None:
        mapper = sa_inspect(usage_cls)
        keys = {prop.key: prop.columns[0].key for prop in mapper.column_attrs}
        cached = (insert(mapper.local_table), keys)
        type.__setattr__(usage_cls, "__sa_llm_usage_insert__", cached)
    return cached


_TOKEN_COLUMNS = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cached": "cache_read_tokens",
    "cache_creation": "cache_write_tokens",
    "reasoning": "reasoning_tokens",
}
_COST_COLUMNS = {
    "input": "input_cost",
    "output": "output_cost",
    "cache_read": "cache_read_cost",
    "cache_write": "cache_write_cost",
    "reasoning": "reasoning_cost",
    "total": "total_cost",
}


def summary(session: Session, schema: ChatSchema, chat_id: Any) -> Usage:
    """A chat's ledger added up in one SELECT (a group per currency).

    Raises:
        ValueError: the chat's costs are in more than one currency.
    """
    usage_cls = schema.usage_cls
    assert usage_cls is not None
    mapped = schema.usage_columns
    sums = [
        func.sum(getattr(usage_cls, column)).label(column)
        for column in (*_TOKEN_COLUMNS.values(), *_COST_COLUMNS.values())
        if column in mapped
    ]
    has_currency = "currency" in mapped
    currency = usage_cls.currency if has_currency else literal(None)
    failed = func.sum(case((usage_cls.outcome != "ok", 1), else_=0))
    query = (
        select(func.count().label("attempts"), failed.label("failed"), *sums, currency.label("c"))
        .where(getattr(usage_cls, schema.usage_chat_fk or "chat_id") == chat_id)
        .group_by(currency if has_currency else None)
    )
    groups = [row._mapping for row in session.execute(query)]
    priced = [g for g in groups if g.get("total_cost") is not None]
    currencies = {g["c"] for g in priced}
    if len(currencies) > 1:
        raise ValueError(f"The chat's costs are in several currencies: {sorted(currencies)}")

    def total(column: str, rows: Sequence[Any]) -> Any:
        values = [g[column] for g in rows if column in g and g[column] is not None]
        return sum(values) if values else None

    tokens = Tokens(
        **{
            name: None if (value := total(column, groups)) is None else int(value)
            for name, column in _TOKEN_COLUMNS.items()
        }
    )
    cost = None
    if priced:
        parts = {name: _decimal(total(column, priced)) for name, column in _COST_COLUMNS.items()}
        grand = parts.pop("total")
        assert grand is not None
        cost = Cost(**parts, total=grand, currency=priced[0]["c"] or "USD")
    return Usage(
        attempts=sum(int(g["attempts"]) for g in groups),
        failed=sum(int(g["failed"] or 0) for g in groups),
        tokens=tokens,
        cost=cost,
    )


def _decimal(value: Any) -> Decimal | None:
    """A summed cost as a Decimal at the ledger's scale (SQLite sums floats)."""
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal("1e-10"))


def chat_usage(session: Session, schema: ChatSchema, chat_id: Any) -> Usage:
    """The chat's :func:`summary` when it has a ledger; else what its messages recorded (one
    attempt per message with tokens: retries and failed attempts left no trace there)."""
    if schema.usage_cls is not None:
        return summary(session, schema, chat_id)
    M = schema.message_cls
    rows = session.scalars(
        select(M).where(getattr(M, schema.message_chat_fk) == chat_id).order_by(M.created_at, M.id)
    ).all()
    tokens = Tokens()
    cost: Cost | None = None
    attempts = 0
    for row in rows:
        if row.tokens is None:
            continue
        attempts += 1
        tokens = tokens + row.tokens
        priced = row.cost
        if priced is not None:
            cost = priced if cost is None else cost + priced
    return Usage(attempts=attempts, failed=0, tokens=tokens, cost=cost)
