"""Writing one row the way ``session.add(row); session.flush()`` would, in Core (D43).

A turn writes two or three single rows per step (the user message, the empty reply row, the
reply). The ORM's flush of one row costs several times the statement it runs: it builds a unit
of work, sorts it, walks cascades, and checks every object in the session. :func:`save_row`
runs the INSERT or UPDATE the flush would run (the same columns, so the same SQL text), with
Core, on the session's own connection and transaction, then puts the row in the state a flush
leaves it in: persistent, in the identity map, its defaults loaded, nothing dirty.

It does so only where the result is the same as a flush's. It falls back to the flush when the
mapper has anything a flush would run and Core would not: ``before/after_insert`` or
``before/after_update`` listeners, a version counter, inheritance or a mapping over several
tables, server-side defaults (the ORM fetches or expires them), SQL-expression defaults; and
per call, when the session has flush listeners or the row has unflushed relationship changes.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam
from sqlalchemy.orm import Mapper, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.exc import StaleDataError

__all__ = ["save_row"]

_PK_PARAM = "_sa_llm_row_pk"
_MISSING = object()


@dataclass(frozen=True)
class _Plan:
    """How to write rows of one mapper in Core (built once per mapper)."""

    table: Table
    #: attribute key -> column key, of every mapped column
    keys: dict[str, str]
    #: an explicit NULL for every column that gets one when the row has no value (as the ORM
    #: sends it): the columns without a default, except those whose ``None`` is a value.
    nulls: dict[str, None]
    #: column keys whose Python ``None`` is a value (JSON ``null``), sent as given.
    eval_none: frozenset[str]
    #: (attribute key, column key) of the columns an INSERT fills when the row has no value (a
    #: Python-side default, an explicit NULL) and of those an UPDATE may set (``onupdate``).
    filled: tuple[tuple[str, str], ...]
    onupdated: tuple[tuple[str, str], ...]
    pk_attr: str
    relationships: frozenset[str]
    insert: Any
    update: Any


_plans: weakref.WeakKeyDictionary[Mapper[Any], _Plan | None] = weakref.WeakKeyDictionary()


def _mapper_listens(mapper: Mapper[Any]) -> bool:
    dispatch = mapper.dispatch
    return bool(
        dispatch.before_insert
        or dispatch.after_insert
        or dispatch.before_update
        or dispatch.after_update
    )


def _plan_for(mapper: Mapper[Any]) -> _Plan | None:
    """The mapper's plan, or ``None`` when only a flush writes its rows faithfully."""
    try:
        return _plans[mapper]
    except KeyError:
        pass
    plan = _build_plan(mapper)
    _plans[mapper] = plan
    return plan


def _build_plan(mapper: Mapper[Any]) -> _Plan | None:
    table = mapper.local_table
    if (
        not isinstance(table, Table)
        or mapper.persist_selectable is not table
        or mapper.inherits is not None
        or mapper.polymorphic_on is not None
        or mapper.version_id_col is not None
        or len(mapper.primary_key) != 1
        # Dataclass-level defaults the flush applies itself (SQLAlchemy 2.1).
        or getattr(mapper, "_insert_orm_defaults", {}).get(table)
    ):
        return None
    pk = mapper.primary_key[0]
    columns: list[tuple[str, Any]] = []
    for prop in mapper.column_attrs:
        if len(prop.columns) != 1 or prop.columns[0].table is not table:
            return None
        columns.append((prop.key, prop.columns[0]))
    if len(columns) != len(table.columns):
        return None  # a column the mapping leaves out (or maps twice)
    as_none = set()
    eval_none = set()
    for _, column in columns:
        server_side = column.server_default is not None or column.server_onupdate is not None
        if server_side and column is not pk:
            return None  # the flush fetches or expires what the database sets
        for default in (column.default, column.onupdate):
            expression = default is not None and not (default.is_scalar or default.is_callable)
            if expression and column is not pk:
                return None  # a SQL expression: its value is known only by reading back
        if column.type.should_evaluate_none:
            eval_none.add(column.key)
        elif column is not pk and column.default is None and column.server_default is None:
            as_none.add(column.key)
    pk_attr = next(attr for attr, column in columns if column is pk)
    if pk.default is None and pk.server_default is None and not pk.autoincrement:
        return None
    # The statements list their columns in table order whatever the parameters' order, as the
    # flush's do.
    return _Plan(
        table=table,
        keys={attr: column.key for attr, column in columns},
        nulls=dict.fromkeys(sorted(as_none)),
        eval_none=frozenset(eval_none),
        filled=tuple(
            (attr, column.key)
            for attr, column in columns
            if column is not pk and (column.default is not None or column.key in as_none)
        ),
        onupdated=tuple((a, c.key) for a, c in columns if c.onupdate is not None),
        pk_attr=pk_attr,
        relationships=frozenset(rel.key for rel in mapper.relationships),
        insert=table.insert(),
        update=table.update().where(pk == bindparam(_PK_PARAM)),
    )


def _session_listens(session: Session) -> bool:
    dispatch = session.dispatch
    return bool(dispatch.before_flush or dispatch.after_flush or dispatch.after_flush_postexec)


def save_row(session: Session, row: Any) -> None:
    """Write ``row`` (new: INSERT; changed: UPDATE of the changed columns) in the session's
    transaction, leaving it as ``session.add(row); session.flush()`` would."""
    state = instance_state(row)
    mapper = state.mapper
    plan = _plan_for(mapper)
    if (
        plan is None
        or _mapper_listens(mapper)
        or _session_listens(session)
        or state.session_id not in (None, session.hash_key)
        or (state.key is None and state.session_id is not None)  # pending: added elsewhere
        or state.deleted
        or not plan.relationships.isdisjoint(state.committed_state)
    ):
        session.add(row)
        session.flush()
        return
    if state.key is None:
        _insert(session, plan, mapper, state, row)
    else:
        _update(session, plan, mapper, state)


def _insert(session: Session, plan: _Plan, mapper: Mapper[Any], state: Any, row: Any) -> None:
    values = state.dict
    # The flush's parameters: the row's values, an explicit NULL where the flush sends one,
    # and nothing for a column whose default (or the database) fills it.
    params: dict[str, Any] = dict(plan.nulls)
    keys, eval_none = plan.keys, plan.eval_none
    for attr, value in values.items():
        key = keys.get(attr)
        if key is not None and (value is not None or key in eval_none):
            params[key] = value
    connection = session.connection(bind_arguments={"mapper": mapper})
    result = connection.execute(plan.insert, params)
    written = cast("dict[str, Any]", result.last_inserted_params())  # one row: a dict
    primary_key = result.inserted_primary_key
    assert primary_key is not None
    values[plan.pk_attr] = primary_key[0]
    for attr, key in plan.filled:
        if key in written:  # the row's value, or what the statement filled in (as a flush)
            values[attr] = written[key]
    make_transient_to_detached(row)
    if plan.relationships.isdisjoint(values):
        # What ``session.add`` does for a detached row, without its cascade walk over every
        # mapped property (nothing to cascade: no related object is set on the row).
        session._update_impl(state)
    else:
        session.add(row)


def _update(session: Session, plan: _Plan, mapper: Mapper[Any], state: Any) -> None:
    values = state.dict
    params: dict[str, Any] = {}
    committed = state.committed_state
    manager = state.manager
    for attr in committed:
        key = plan.keys.get(attr)
        if key is None:
            continue
        value = values.get(attr, _MISSING)
        # Changed as the flush decides it: the value differs from the one loaded.
        if (
            value is not _MISSING
            and manager[attr].impl.is_equal(value, committed[attr]) is not True
        ):
            params[key] = value
    if params:
        params[_PK_PARAM] = state.key[1][0]
        connection = session.connection(bind_arguments={"mapper": mapper})
        result = connection.execute(plan.update, params)
        if result.rowcount != 1:
            raise StaleDataError(
                f"UPDATE statement on table '{plan.table.name}' expected to update 1 row(s); "
                f"{result.rowcount} were matched."
            )
        written = cast("dict[str, Any]", result.last_updated_params())
        for attr, key in plan.onupdated:
            if key not in params and key in written:
                values[attr] = written[key]
    # What a flush ends with: every attribute committed, the row no longer dirty.
    state._commit_all(values, session.identity_map)
