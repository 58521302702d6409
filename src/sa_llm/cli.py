"""The ``sa-llm`` command: install the schema and models, upgrade, and manage the registry.

Commands (each has ``--help``)::

    sa-llm install [chat:Conversation] [message:ChatMessage] [tool_call:FunctionCall]
                   [model:AIModel] [--skip-attachments] [--uuid] [--module PATH]
                   [--alembic-dir DIR] [--force]
    sa-llm upgrade [--alembic-dir DIR] [message:ChatMessage ...]
    sa-llm chat-ui [chat:Conversation ...] [--models PATH] [--module PATH] [--force]
    sa-llm models load [--database-url URL] [--module PATH] [--class NAME]
    sa-llm models refresh [--database-url URL] [--module PATH] [--class NAME]
    sa-llm models list [--provider P] [--capability C ...]
    sa-llm attachments gc [--database-url URL] [--module PATH] [--class NAME ...]
                          [--table NAME ...] [--storage DIR_OR_URL] [--older-than 1d]
                          [--dry-run]

The database is ``--database-url``, else ``SA_LLM_DATABASE_URL``, else ``DATABASE_URL``; sync and
async drivers alike (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``).

Exit status: 0 on success; 1 on an error, printed as one ``Error: ...`` line on stderr that says
what to fix (a missing database driver names its pip extra); 2 on a mistake in the command line
(an unknown option, a bad value, no database URL), with click's usage hint above the error line.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from sa_llm.errors import ConfigurationError, SaLLMError

__all__ = ["main"]

#: Where a command's database URL comes from when ``--database-url`` is not given, in order.
DATABASE_URL_ENV = ("SA_LLM_DATABASE_URL", "DATABASE_URL")


class _Group(click.Group):
    """Turns library errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SaLLMError as exc:
            raise click.ClickException(str(exc)) from exc
        except SQLAlchemyError as exc:
            # The driver's own message, without the SQL and parameters SQLAlchemy appends.
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"database error: {reason}") from exc


def _path_option(flag: str, *names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A path option with its default shown: ``_path_option("--module", "module_path",
    "models.py", "Where ...")`` (the destination name is optional, as in ``click.option``)."""
    *dest, default, help_text = names
    return click.option(
        flag,
        *dest,
        type=click.Path(path_type=Path),
        default=Path(default),
        show_default=True,
        help=help_text,
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sa-llm", prog_name="sa-llm")
def main() -> None:
    """sa_llm: LLM conversations as SQLAlchemy models."""


@main.command()
@click.argument("mappings", nargs=-1)
@click.option("--skip-attachments", is_flag=True, help="Do not create the attachments table/class.")
@click.option("--uuid", "use_uuid", is_flag=True, help="UUID primary keys instead of integers.")
@_path_option("--module", "module_path", "models.py", "Where to write the models module.")
@_path_option("--alembic-dir", "alembic", "The Alembic environment (created when missing).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def install(
    mappings: tuple[str, ...],
    skip_attachments: bool,
    use_uuid: bool,
    module_path: Path,
    alembic_dir: Path,
    force: bool,
) -> None:
    """Write a typed models module and an Alembic revision for the chat schema.

    MAPPINGS rename the classes, e.g. chat:Conversation message:ChatMessage.
    """
    from sa_llm import _install

    result = _install.install(
        mappings=list(mappings),
        skip_attachments=skip_attachments,
        use_uuid=use_uuid,
        module_path=module_path,
        alembic_dir=alembic_dir,
        force=force,
    )
    for line in result.messages:
        click.echo(line)


@main.command()
@click.argument("mappings", nargs=-1)
@_path_option("--alembic-dir", "alembic", "The existing Alembic environment.")
@click.option("--force", is_flag=True, help="Rewrite the sa_llm upgrade revisions that exist.")
def upgrade(mappings: tuple[str, ...], alembic_dir: Path, force: bool) -> None:
    """Write the revisions that bring an older schema up to date (columns, stored values)."""
    from sa_llm import _install

    result = _install.upgrade(mappings=list(mappings), alembic_dir=alembic_dir, force=force)
    for line in result.messages:
        click.echo(line)


@main.command("chat-ui")
@click.argument("mappings", nargs=-1)
@_path_option("--models", "models_path", "models.py", "The models module sa-llm install wrote.")
@_path_option(
    "--module",
    "module_path",
    "chat_app.py",
    "Where to write the app module (its templates go beside it, in chat_ui/).",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def chat_ui(mappings: tuple[str, ...], models_path: Path, module_path: Path, force: bool) -> None:
    """Write a chat UI (FastAPI app, templates, script, stylesheet) over the models.

    MAPPINGS are those given to install, e.g. chat:Conversation message:ChatMessage.
    """
    from sa_llm import _install

    result = _install.chat_ui(
        mappings=list(mappings), models_path=models_path, module_path=module_path, force=force
    )
    for line in result.messages:
        click.echo(line)


def _require_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    if not value:
        raise click.UsageError(
            "No database URL: pass --database-url URL, or set SA_LLM_DATABASE_URL "
            "(or DATABASE_URL).",
            ctx,
        )
    return value


def _database_url(*, required: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--database-url``: the flag, else ``SA_LLM_DATABASE_URL``, else ``DATABASE_URL``."""
    what = "The database" if required else "Also upsert the rows into this database"
    return click.option(
        "--database-url",
        envvar=list(DATABASE_URL_ENV),
        show_envvar=True,
        default=None,
        callback=_require_url if required else None,
        metavar="URL",
        help=(
            f"{what} (SQLAlchemy URL; sync or async driver, e.g. sqlite:///app.db or "
            "postgresql+asyncpg://...); default: $SA_LLM_DATABASE_URL, else $DATABASE_URL."
        ),
    )


@main.group()
def models() -> None:
    """The model registry: load it into your database, refresh it, list it."""


def _registry_class(module_path: Path, class_name: str) -> Any:
    from sa_llm.registry_table import import_model_class

    return import_model_class(module_path, class_name)


@models.command("load")
@_database_url(required=True)
@_path_option("--module", "module_path", "models.py", "The module that defines the registry class.")
@click.option("--class", "class_name", default="Model", show_default=True)
def load(database_url: str, module_path: Path, class_name: str) -> None:
    """Upsert the bundled registry into the models table (idempotent, safe to repeat)."""
    from sa_llm import registry
    from sa_llm._db_url import check_driver
    from sa_llm.registry_table import load_models_url

    check_driver(database_url)
    model_cls = _registry_class(module_path, class_name)
    infos = registry.all()
    with click.progressbar(length=len(infos), label="Loading models") as bar:
        count = load_models_url(database_url, model_cls, infos, progress=bar.update)
    click.echo(f"{count} models in {model_cls.__tablename__}")


@models.command("refresh")
@_database_url(required=False)
@_path_option(
    "--module",
    "module_path",
    "models.py",
    "The module that defines the registry class (with --database-url).",
)
@click.option("--class", "class_name", default="Model", show_default=True)
def refresh(database_url: str | None, module_path: Path, class_name: str) -> None:
    """Fetch the providers' model lists with the configured keys and merge them in."""
    from sa_llm import registry
    from sa_llm._db_url import check_driver
    from sa_llm.registry_table import load_models_url

    if database_url:
        check_driver(database_url)
        model_cls = _registry_class(module_path, class_name)
    with click.progressbar(length=len(registry.SUPPORTED_PROVIDERS), label="Providers") as bar:
        report = registry.refresh(progress=lambda provider: bar.update(1))
    for provider, outcome in sorted(report.items()):
        click.echo(f"{provider:<12} {outcome}")
    if database_url:
        count = load_models_url(database_url, model_cls, registry.all())
        click.echo(f"{count} models in {model_cls.__tablename__}")


@models.command("list")
@click.option("--provider", default=None, help="Only this provider's models.")
@click.option(
    "--capability",
    "capabilities",
    multiple=True,
    help="Only models with this capability (function_calling, vision, ...); repeatable.",
)
def list_models(provider: str | None, capabilities: tuple[str, ...]) -> None:
    """Print the registry as a table."""
    from sa_llm import registry

    infos = registry.all()
    if provider is not None:
        providers = set(registry.SUPPORTED_PROVIDERS) | {info.provider for info in infos}
        _check_choice("--provider", "provider", provider, providers)
    known = {c for info in infos for c in info.capabilities} | {"vision"}
    for capability in capabilities:
        _check_choice("--capability", "capability", capability, known)
    rows = [
        info
        for info in infos
        if (provider is None or info.provider == provider)
        and all(info.supports(c) or _modality(info, c) for c in capabilities)
    ]
    click.echo(f"{'provider':<11} {'model':<50} {'context':>9} {'in $/M':>8} {'out $/M':>8}")
    for info in rows:
        price_in = info.input_price_per_million
        price_out = info.output_price_per_million
        click.echo(
            f"{info.provider:<11} {info.id:<50} {info.context_window or '-':>9} "
            f"{'-' if price_in is None else f'{price_in:g}':>8} "
            f"{'-' if price_out is None else f'{price_out:g}':>8}"
        )
    click.echo(f"{len(rows)} models")


def _modality(info: Any, capability: str) -> bool:
    return capability == "vision" and bool(info.supports_vision)


def _check_choice(option: str, what: str, value: str, known: Iterable[str]) -> None:
    """A filter value that matches nothing is a typo: say so, with the closest names."""
    choices = sorted(known)
    if value in choices:
        return
    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
    if close:
        names = [repr(name) for name in close]
        either = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        hint = f"did you mean {either}?"
    else:
        hint = f"known: {', '.join(choices)}"
    raise click.BadParameter(f"unknown {what} {value!r}; {hint}", param_hint=f"'{option}'")


@main.group()
def attachments() -> None:
    """The stored files of persisted chats."""


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value or "")
    if match is None:
        raise click.BadParameter("expected a duration like 0, 90s, 30m, 12h or 2d")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


@attachments.command("gc")
@_database_url(required=True)
@_path_option(
    "--module",
    "module_path",
    "models.py",
    "The module that defines the attachment class.",
)
@click.option(
    "--class",
    "class_names",
    multiple=True,
    help="The attachment class (default Attachment); repeat for several.",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    help="Read the keys from this table's storage_key column instead (no module); repeatable.",
)
@click.option(
    "--storage",
    "storage_setting",
    envvar="SA_LLM_ATTACHMENT_STORAGE",
    default=None,
    help="Directory or fsspec URL of the storage (default ./storage/attachments).",
)
@click.option(
    "--older-than",
    "grace",
    default="1d",
    show_default=True,
    callback=_duration,
    help="Keep unreferenced files written more recently than this (0 keeps none).",
)
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
def gc(
    database_url: str,
    module_path: Path,
    class_names: tuple[str, ...],
    tables: tuple[str, ...],
    storage_setting: str | None,
    grace: timedelta,
    dry_run: bool,
) -> None:
    """Delete stored files that no attachment row references.

    Files written within the grace period are kept: a turn stores its files before the rows
    that reference them are committed.
    """
    from sqlalchemy import column, table
    from sqlalchemy import inspect as sa_inspect

    from sa_llm._db_url import check_driver, run_in_session
    from sa_llm._persisted.attachments import referenced_keys
    from sa_llm.registry_table import import_model_class
    from sa_llm.storage import collect_garbage, open_storage

    check_driver(database_url)
    columns: list[Any] = []
    for name in tables:
        schema, _, table_name = name.rpartition(".")
        columns.append(table(table_name, column("storage_key"), schema=schema or None).c[0])
    if not tables or class_names:
        for class_name in class_names or ("Attachment",):
            cls = import_model_class(module_path, class_name)
            attrs = sa_inspect(cls).column_attrs
            if "storage_key" not in attrs:
                raise ConfigurationError(
                    f"{class_name} has no storage_key column: pass the attachment class with "
                    "--class NAME, or its table with --table NAME."
                )
            columns.append(attrs["storage_key"].columns[0])
    storage = open_storage(storage_setting)
    referenced = run_in_session(
        database_url, lambda session: referenced_keys(session.connection(), columns)
    )
    report = collect_garbage(storage, referenced, older_than=grace, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    if dry_run:
        for key in report.deleted:
            click.echo(f"would delete {key}")
    click.echo(
        f"{storage!r}: {report.referenced} referenced, {verb} {len(report.deleted)} "
        f"unreferenced, kept {len(report.recent)} written within {grace}"
    )


@main.group()
def chats() -> None:
    """Persisted chats as a whole."""


@chats.command("repair")
@_database_url(required=True)
@_path_option("--module", "module_path", "models.py", "The module that defines the chat class.")
@click.option("--class", "class_name", default="Chat", show_default=True)
def repair(database_url: str, module_path: Path, class_name: str) -> None:
    """Settle what turns that died left behind, in every chat no turn holds now.

    Blank unfinished replies are deleted, unfinished replies with text kept as
    "interrupted", and tool calls without a result answered with an "interrupted" result.
    """
    from sa_llm._db_url import check_driver, run_in_session
    from sa_llm.persistence import repair_chats
    from sa_llm.registry_table import import_model_class

    check_driver(database_url)
    chat_cls = import_model_class(module_path, class_name)
    report = run_in_session(database_url, lambda session: repair_chats(session, chat_cls))
    click.echo(
        f"repaired {len(report.chats)} chat(s), {report.rows} row(s) changed"
        + (f"; {len(report.busy)} busy chat(s) skipped" if report.busy else "")
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
