"""The ``sa-llm`` command: install the schema and models, upgrade, and manage the registry.

Commands (each has ``--help``)::

    sa-llm install [chat:Conversation] [message:ChatMessage] [tool_call:FunctionCall]
                   [model:AIModel] [--skip-attachments] [--uuid] [--module PATH]
                   [--alembic-dir DIR] [--force]
    sa-llm upgrade [--alembic-dir DIR] [message:ChatMessage ...]
    sa-llm models load [--database-url URL] [--module PATH]
    sa-llm models refresh [--database-url URL] [--module PATH]
    sa-llm models list [--provider P] [--capability C]

Every failure prints one line on stderr and exits non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from sa_llm.errors import SaLLMError

__all__ = ["main"]


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sa-llm", prog_name="sa-llm")
def main() -> None:
    """sa_llm: LLM conversations as SQLAlchemy models."""


@main.command()
@click.argument("mappings", nargs=-1)
@click.option("--skip-attachments", is_flag=True, help="Do not create the attachments table/class.")
@click.option("--uuid", "use_uuid", is_flag=True, help="UUID primary keys instead of integers.")
@click.option(
    "--module",
    "module_path",
    type=click.Path(path_type=Path),
    default=Path("models.py"),
    show_default=True,
    help="Where to write the models module.",
)
@click.option(
    "--alembic-dir",
    type=click.Path(path_type=Path),
    default=Path("alembic"),
    show_default=True,
    help="The Alembic environment (created when missing).",
)
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
@click.option(
    "--alembic-dir",
    type=click.Path(path_type=Path),
    default=Path("alembic"),
    show_default=True,
    help="The existing Alembic environment.",
)
@click.option("--force", is_flag=True, help="Write the revision even if one exists.")
def upgrade(mappings: tuple[str, ...], alembic_dir: Path, force: bool) -> None:
    """Write the revision that brings an older schema up to date (raw content, cache tokens)."""
    from sa_llm import _install

    result = _install.upgrade(mappings=list(mappings), alembic_dir=alembic_dir, force=force)
    for line in result.messages:
        click.echo(line)


@main.group()
def models() -> None:
    """The model registry: load it into your database, refresh it, list it."""


def _registry_class(module_path: Path, class_name: str) -> Any:
    from sa_llm.registry_table import import_model_class

    return import_model_class(module_path, class_name)


@models.command("load")
@click.option("--database-url", envvar="DATABASE_URL", required=True, help="SQLAlchemy URL.")
@click.option(
    "--module",
    "module_path",
    type=click.Path(path_type=Path),
    default=Path("models.py"),
    show_default=True,
    help="The module that defines the registry class.",
)
@click.option("--class", "class_name", default="Model", show_default=True)
def load(database_url: str, module_path: Path, class_name: str) -> None:
    """Upsert the bundled registry into the models table (idempotent, safe to repeat)."""
    from sa_llm import models as registry
    from sa_llm.registry_table import load_models_url

    model_cls = _registry_class(module_path, class_name)
    infos = registry.all()
    with click.progressbar(length=len(infos), label="Loading models") as bar:
        count = load_models_url(database_url, model_cls, infos, progress=bar.update)
    click.echo(f"{count} models in {model_cls.__tablename__}")


@models.command("refresh")
@click.option("--database-url", envvar="DATABASE_URL", default=None, help="Also upsert rows.")
@click.option("--module", "module_path", type=click.Path(path_type=Path), default=Path("models.py"))
@click.option("--class", "class_name", default="Model", show_default=True)
def refresh(database_url: str | None, module_path: Path, class_name: str) -> None:
    """Fetch the providers' model lists with the configured keys and merge them in."""
    from sa_llm import models as registry
    from sa_llm.registry_table import load_models_url

    with click.progressbar(length=len(registry.SUPPORTED_PROVIDERS), label="Providers") as bar:
        report = registry.refresh(progress=lambda provider: bar.update(1))
    for provider, outcome in sorted(report.items()):
        click.echo(f"{provider:<12} {outcome}")
    if database_url:
        model_cls = _registry_class(module_path, class_name)
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
    from sa_llm import models as registry

    rows = [
        info
        for info in registry.all()
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
