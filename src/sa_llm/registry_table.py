"""The model registry in your database: every SQL statement about ``@acts_as_model`` rows.

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
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sa_llm import registry
from sa_llm._db_url import run_in_session
from sa_llm.chat import resolve_model
from sa_llm.config import Config
from sa_llm.errors import ConfigurationError
from sa_llm.registry import ModelInfo

__all__ = [
    "find_model",
    "import_model_class",
    "load_models",
    "load_models_url",
    "model_info_from",
    "model_row_key",
    "resolve_model_row",
    "row_values",
]

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
        rows = [_with_defaults(table, row_values(model_cls, info)) for info in batch]
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


# -- one row: found, or created from the bundled registry ------------------------------------------


def row_values(model_cls: type[Any], info: ModelInfo) -> dict[str, Any]:
    """Column values of a registry row for ``info``, limited to the columns the table has."""
    created: datetime | None = None
    if info.created_at:
        try:
            created = datetime.fromisoformat(str(info.created_at).replace(" UTC", "+00:00"))
        except ValueError:
            created = None
    values = {
        "model_id": info.id,
        "name": info.name or info.id,
        "provider": info.provider,
        "family": info.family,
        "model_created_at": created,
        "context_window": info.context_window,
        "max_output_tokens": info.max_output_tokens,
        "knowledge_cutoff": info.knowledge_cutoff,
        "modalities": {
            "input": list(info.input_modalities),
            "output": list(info.output_modalities),
        },
        "capabilities": sorted(info.capabilities),
        "pricing": dict(info.pricing),
        "model_metadata": dict(info.metadata),
    }
    mapper = sa_inspect(model_cls)
    table_values: dict[str, Any] = {}
    for attr, value in values.items():
        if attr in mapper.column_attrs:
            column = mapper.column_attrs[attr].columns[0]
            table_values[column.key] = value
    return table_values


def _matching(model_cls: type[Any], model: str, provider: str | None) -> list[Any]:
    """The criteria of the registry rows with this model id (and provider, when given)."""
    attrs = sa_inspect(model_cls).column_attrs
    criteria = [attrs["model_id"].columns[0] == model]
    if provider is not None:
        criteria.append(attrs["provider"].columns[0] == provider)
    return criteria


def model_row_key(connection: Connection, model_cls: type[Any], info: ModelInfo) -> Any:
    """The primary key of the registry row for ``info``, inserting the row if missing.

    Core statements on ``connection``, so it works inside a flush (mapper events) and in a
    session step alike. A concurrent insert of the same model is absorbed by a SAVEPOINT.
    """
    table = model_cls.__table__
    pk = sa_inspect(model_cls).primary_key[0]
    query = select(pk).where(*_matching(model_cls, info.id, info.provider))
    found = connection.execute(query).scalar()
    if found is not None:
        return found
    values = row_values(model_cls, info)
    for column in table.columns:
        if column.key not in values and column.default is not None and column.default.is_callable:
            values[column.key] = column.default.arg(None)
    try:
        with connection.begin_nested():
            result = connection.execute(table.insert().values(**values).returning(pk))
            return result.scalar_one()
    except IntegrityError:
        return connection.execute(query).scalar_one()


#: The registry row's attributes a :class:`ModelInfo` is made of (those the table maps).
INFO_ATTRIBUTES = (
    "model_id",
    "name",
    "provider",
    "family",
    "context_window",
    "max_output_tokens",
    "knowledge_cutoff",
    "modalities",
    "capabilities",
    "pricing",
    "model_created_at",
    "model_metadata",
)


def model_info_from(get: Callable[[str], Any]) -> ModelInfo:
    """The :class:`ModelInfo` of a registry row whose attribute ``name`` is ``get(name)``
    (``None`` for an attribute the table does not have); the inverse of :func:`row_values`."""
    model_id = get("model_id")
    modalities = get("modalities") or {}
    created = get("model_created_at")
    return registry.ModelInfo(
        id=model_id,
        name=get("name") or model_id,
        provider=get("provider"),
        family=get("family"),
        context_window=get("context_window"),
        max_output_tokens=get("max_output_tokens"),
        knowledge_cutoff=get("knowledge_cutoff"),
        input_modalities=tuple(modalities.get("input", ())),
        output_modalities=tuple(modalities.get("output", ())),
        capabilities=frozenset(get("capabilities") or ()),
        pricing=dict(get("pricing") or {}),
        created_at=created.isoformat() if created is not None else None,
        metadata=dict(get("model_metadata") or {}),
    )


def find_model(
    connection: Connection, model_cls: type[Any], model: str, provider: str | None
) -> tuple[Any, ModelInfo | None] | None:
    """The key of the registry row with exactly this model id (and provider), if one exists,
    with the row as a :class:`ModelInfo` read by the same SELECT (``None`` when the class
    builds its ``to_llm`` itself).

    Without a provider, an id that several providers' rows share is ambiguous: ``None``.
    """
    from sa_llm._records.rows import ModelMethods

    mapper = sa_inspect(model_cls)
    pk = mapper.primary_key[0]
    attrs = mapper.column_attrs
    default_info = getattr(model_cls, "to_llm", None) is ModelMethods.to_llm
    names = [name for name in INFO_ATTRIBUTES if name in attrs] if default_info else []
    query = select(pk, *(attrs[name].columns[0] for name in names))
    rows = connection.execute(query.where(*_matching(model_cls, model, provider)).limit(2)).all()
    if len(rows) != 1:
        return None
    row = rows[0]
    if not default_info:
        return row[0], None
    values = dict(zip(names, row[1:], strict=True))
    return row[0], model_info_from(values.get)


def _find_model_row(
    session: Session, model_cls: type[Any], model: str, provider: str | None
) -> Any:
    query = select(model_cls).where(*_matching(model_cls, model, provider))
    rows = session.scalars(query.limit(2)).all()
    return rows[0] if len(rows) == 1 else None


def resolve_model_row(
    session: Session,
    model_cls: type[Any],
    model: str,
    provider: str | None,
    assume_model_exists: bool,
    config: Config | None = None,
) -> Any:
    """The registry row for a model id or alias: found in the table, else created from the
    bundled registry (or, with ``assume_model_exists``, from the id and provider alone).
    ``config`` (a context's) decides provider routing such as Bedrock's region.

    Raises:
        ModelNotFoundError: unknown everywhere and not assumed.
    """
    row = _find_model_row(session, model_cls, model, provider)
    if row is not None:
        return row
    info = resolve_model(model, provider, assume_model_exists, config)
    row = _find_model_row(session, model_cls, info.id, info.provider)
    if row is not None:
        return row
    key = model_row_key(session.connection(), model_cls, info)
    return session.get(model_cls, key)
