"""The model registry in your database: load the bundled registry into the ``models`` table.

:func:`load_models` upserts every model by ``(provider, model_id)`` in one statement per batch,
so it is idempotent and safe to run concurrently (``INSERT ... ON CONFLICT DO UPDATE`` on both
PostgreSQL and SQLite). Rows are never deleted: chats keep pointing at models a provider retired.

Example::

    from sa_llm.registry_table import load_models

    with Session(engine) as session:
        load_models(session, Model)
        session.commit()
        vision = session.scalars(select(Model).where(Model.supports_vision)).all()
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sa_llm import models as registry
from sa_llm._db_url import run_in_session
from sa_llm._records.methods import _row_values
from sa_llm.errors import ConfigurationError
from sa_llm.models import ModelInfo

__all__ = ["import_model_class", "load_models", "load_models_url"]

_BATCH = 200


def load_models(
    session: Session,
    model_cls: type[Any],
    infos: Iterable[ModelInfo] | None = None,
    *,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Upsert ``infos`` (default: the bundled registry) into ``model_cls``'s table.

    Existing rows are updated in place (their keys, and so every chat's link, stay the same).
    The caller commits. Returns the number of rows in the table afterwards.
    """
    infos = list(registry.all() if infos is None else infos)
    table = model_cls.__table__
    mapper = sa_inspect(model_cls)
    provider_col = mapper.column_attrs["provider"].columns[0].key
    model_col = mapper.column_attrs["model_id"].columns[0].key
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        insert: Any = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:  # pragma: no cover - other databases: row by row through the ORM
        return _load_portably(session, model_cls, infos, progress)
    for start in range(0, len(infos), _BATCH):
        batch = infos[start : start + _BATCH]
        rows = [_with_defaults(table, _row_values(model_cls, info)) for info in batch]
        statement = insert(table).values(rows)
        updated = {
            name: statement.excluded[name]
            for name in rows[0]
            if name not in (provider_col, model_col, "created_at")
        }
        statement = statement.on_conflict_do_update(
            index_elements=[provider_col, model_col], set_=updated
        )
        session.execute(statement)
        if progress is not None:
            progress(len(batch))
    return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _with_defaults(table: Any, values: dict[str, Any]) -> dict[str, Any]:
    for column in table.columns:
        default = column.default
        if column.key not in values and default is not None and default.is_callable:
            values[column.key] = default.arg(None)
        elif column.key not in values and default is not None and default.is_scalar:
            values[column.key] = default.arg
    return values


def _load_portably(
    session: Session,
    model_cls: type[Any],
    infos: Sequence[ModelInfo],
    progress: Callable[[int], object] | None,
) -> int:
    from sa_llm._records.methods import model_row_key

    connection = session.connection()
    for info in infos:
        model_row_key(connection, model_cls, info)
        if progress is not None:
            progress(1)
    return int(session.scalar(select(func.count()).select_from(model_cls.__table__)) or 0)


def load_models_url(
    url: str,
    model_cls: type[Any],
    infos: Iterable[ModelInfo] | None = None,
    *,
    progress: Callable[[int], object] | None = None,
) -> int:
    """:func:`load_models` on a database URL, committed.

    The URL may name a sync or an async driver (``sqlite+aiosqlite://``,
    ``postgresql+asyncpg://``): an async one runs the load in an event loop of its own, so call
    this from synchronous code (from async code, ``await session.run_sync(load_models, Model)``).

    Raises:
        ConfigurationError: the URL's database driver is not installed.
    """
    return run_in_session(
        url, lambda session: load_models(session, model_cls, infos, progress=progress)
    )


def import_model_class(module_path: Path, class_name: str) -> type[Any]:
    """The registry class ``class_name`` from the models module at ``module_path``.

    Raises:
        ConfigurationError: the module or class does not exist.
    """
    path = Path(module_path)
    if not path.is_file():
        raise ConfigurationError(f"No models module at {str(path)!r}; pass --module PATH.")
    name = f"_sa_llm_user_models_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"Cannot import {str(path)!r}.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    cls = getattr(module, class_name, None)
    if cls is None or not hasattr(cls, "__table__"):
        raise ConfigurationError(
            f"{str(path)!r} has no mapped class {class_name!r}; pass --class NAME."
        )
    return cls  # type: ignore[no-any-return]
