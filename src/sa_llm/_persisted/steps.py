"""Database steps of a persisted turn: the effect that runs one, and rows kept readable.

A :class:`DbStep` is the flow's effect for "run this function on the session": the sync driver
calls it, the async driver runs it through ``AsyncSession.run_sync``. :func:`loaded_values` and
:func:`restore` let a committing step leave the caller's rows readable without a reload (D10).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from sa_llm._flow import Effect, Scope

__all__ = ["DbStep", "loaded_values", "restore"]

T = TypeVar("T")


class DbStep(Effect[T]):
    """Effect: run ``fn(session)``; the async driver runs it through ``run_sync``."""

    __slots__ = ("async_session", "fn", "session")

    def __init__(
        self, fn: Callable[[Session], T], session: Session, async_session: AsyncSession | None
    ) -> None:
        self.fn = fn
        self.session = session
        self.async_session = async_session

    def run(self, scope: Scope) -> T:
        return self.fn(self.session)

    async def arun(self, scope: Scope) -> T:
        if self.async_session is None:
            return self.fn(self.session)
        return await self.async_session.run_sync(self.fn)


def loaded_values(row: Any) -> dict[str, Any] | None:
    """The loaded column values of a mapped row (``None`` for anything else)."""
    try:
        state = instance_state(row)
    except Exception:
        return None
    columns = state.mapper.column_attrs
    return {prop.key: state.dict[prop.key] for prop in columns if prop.key in state.dict}


def restore(rows: Sequence[tuple[Any, dict[str, Any] | None]]) -> None:
    """Mark the saved column values as loaded again where a commit or rollback expired them."""
    for row, values in rows:
        if values is None:
            continue
        state = instance_state(row)
        if state.key is None or state.deleted or state.detached:
            continue
        for key, value in values.items():
            if key not in state.dict:
                set_committed_value(row, key, value)
