"""Database steps of a persisted turn: the effect that runs one, and rows kept readable.

A :class:`DbStep` is the flow's effect for "run this function on the session": the sync driver
calls it, the async driver runs it through ``AsyncSession.run_sync``. :func:`loaded_values` and
:func:`restore` let a committing step leave the caller's rows readable without a reload (D10).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.collections import collection_adapter

from sa_llm._flow import Effect, Scope

__all__ = [
    "DbStep",
    "commit_failed",
    "commit_keeping",
    "loaded_values",
    "mark_commit_failure",
    "restore",
    "show_messages",
]

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
    """The loaded values of a mapped row (``None`` for anything else); :func:`restore` puts
    back its columns.

    A copy of the row's ``__dict__``, taken before every step and needed only when the step
    fails: the columns are picked out then, not on every step.
    """
    try:
        state = instance_state(row)
    except Exception:
        return None
    return state.dict.copy()


def commit_keeping(session: Session, rows: Sequence[Any]) -> None:
    """``session.commit()``, leaving the loaded columns of ``rows`` loaded.

    A commit expires every row in the session (``expire_on_commit``), so the next read of any
    attribute would SELECT it again; for the rows a step wrote and the caller's chat that read
    is wasted (their values are the ones just committed) and, under an ``AsyncSession``, I/O
    the caller cannot do there. So the commit runs without expiring, and then everything else
    is expired as the commit would have done: other rows whole, these rows' relationships.
    With ``expire_on_commit=False`` it is a plain commit.
    """
    if not session.expire_on_commit:
        session.commit()
        return
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True
    kept = {id(row) for row in rows}
    identity_map = session.identity_map
    modified = identity_map._modified
    for state in list(identity_map.all_states()):
        if id(state.obj()) not in kept:
            # What the commit itself does to every row (``SessionTransaction._remove_snapshot``):
            # no cascade, half the cost of ``session.expire`` per row, which counts when the
            # caller has a long ``chat.messages`` loaded.
            state._expire(state.dict, modified)
            continue
        loaded = [rel.key for rel in state.mapper.relationships if rel.key in state.dict]
        if loaded:
            session.expire(state.obj(), loaded)


def restore(rows: Sequence[tuple[Any, dict[str, Any] | None]]) -> None:
    """Mark the saved column values as loaded again where a commit or rollback expired them."""
    for row, values in rows:
        if values is None:
            continue
        state = instance_state(row)
        if state.key is None or state.deleted or state.detached:
            continue
        for prop in state.mapper.column_attrs:
            key = prop.key
            if key in values and key not in state.dict:
                set_committed_value(row, key, values[key])


_COMMIT_FAILED = "_sa_llm_commit_failed"


def mark_commit_failure(error: BaseException) -> None:
    """Note on ``error`` that it came from ``COMMIT``: the step may have been committed."""
    with contextlib.suppress(AttributeError):  # exceptions with __slots__
        setattr(error, _COMMIT_FAILED, True)


def commit_failed(error: BaseException) -> bool:
    """Whether ``error`` came from the ``COMMIT`` of a step (see :func:`mark_commit_failure`)."""
    return bool(getattr(error, _COMMIT_FAILED, False))


def show_messages(record: Any, attribute: str, added: Sequence[Any]) -> None:
    """Keep a loaded ``record.<attribute>`` collection in step with a step's writes.

    With ``expire_on_commit=False`` (or inside the caller's transaction) a collection loaded
    before a turn would not show the rows the turn wrote: the new ``added`` rows are appended
    and deleted ones dropped, in place (the list a caller holds sees it too), without events
    (nothing to flush) and without a SELECT. A collection that is not loaded is left alone: it
    loads with everything when it is read.
    """
    try:
        state = instance_state(record)
    except Exception:  # pragma: no cover - not a mapped row
        return
    collection = state.dict.get(attribute)
    if collection is None:
        return
    adapter = collection_adapter(collection)
    if adapter is None:  # pragma: no cover - not an instrumented collection
        return
    for row in list(collection):
        row_state = instance_state(row)
        if row_state.was_deleted or row_state.deleted or row_state.detached:
            adapter.remove_without_event(row)
    present = {id(row) for row in collection}
    for row in added:
        try:
            row_state = instance_state(row)
        except Exception:
            continue
        if row_state.key is not None and not row_state.was_deleted and id(row) not in present:
            adapter.append_without_event(row)
            present.add(id(row))
