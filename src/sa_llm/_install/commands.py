"""The two commands: ``install`` (models, environment, the first revision) and ``upgrade``
(the revisions an older schema lacks)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sa_llm._install.project import (
    InstallResult,
    _backup,
    _create_env,
    _display,
    _Env,
    _ModuleTarget,
    _render,
    _write_revision,
)
from sa_llm._install.schema import (
    _INSTALL_MESSAGE,
    _UPGRADES,
    SCHEMA_VERSION,
    TEMPLATES,
    Schema,
)
from sa_llm.errors import ConfigurationError


def install(
    *,
    mappings: Sequence[str] = (),
    skip_attachments: bool = False,
    use_uuid: bool = False,
    module_path: Path = Path("models.py"),
    alembic_dir: Path = Path("alembic"),
    force: bool = False,
) -> InstallResult:
    """Write the typed models module and the Alembic revision that creates its tables.

    The Alembic environment (``alembic.ini``, ``env.py``, ``script.py.mako``, ``versions/``)
    is created where missing; existing files of it are never touched. The revision's
    ``down_revision`` is the project's current head (all heads, merging them, when there are
    several). Paths are relative to the working directory, the project root.

    Args:
        mappings: ``role:ClassName`` renames (``chat:Conversation``, ``message:llm.Message``).
        skip_attachments: no attachments table and class.
        use_uuid: UUID primary keys instead of integers.
        module_path: where the models module goes.
        alembic_dir: the Alembic environment directory.
        force: overwrite the models module and rewrite the sa_llm install revision in place
            (the old files are kept as ``*.bak``).

    Returns:
        What was written, and the next steps, as lines to print.

    Raises:
        ConfigurationError: a bad mapping or module path, an ``alembic.ini`` that uses another
            environment, or (without ``force``) a models module or sa_llm install revision that
            exists already. Nothing is written then.
    """
    module = _ModuleTarget.locate(module_path)
    schema = Schema.build(
        mappings,
        attachments=not skip_attachments,
        use_uuid=use_uuid,
        module_name=module.name,
        module_file=_display(module.path),
    )
    env = _Env.locate(alembic_dir)
    env_existed = env.exists
    previous = None
    if env.directory.is_dir():
        previous = next((f for f in env.ours(env.scripts()) if f.kind == "install"), None)
    conflicts = []
    if module.path.exists() and not force:
        conflicts.append(_display(module.path))
    if previous is not None and not force:
        conflicts.append(f"{_display(previous.path)} (the sa_llm install revision)")
    if conflicts:
        raise ConfigurationError(
            f"{' and '.join(conflicts)} already exist{'s' if len(conflicts) == 1 else ''}; "
            "pass --force to overwrite (the old files are kept as .bak)."
        )

    result = InstallResult()
    _create_env(env, module, result)
    text = _models_text(schema)
    if not module.path.exists() or module.path.read_text(encoding="utf-8") != text:
        note = ""
        if module.path.exists():
            note = f" (the old file is {_display(_backup(module.path))})"
        module.path.parent.mkdir(parents=True, exist_ok=True)
        module.path.write_text(text, encoding="utf-8")
        result.written.append(module.path)
        result.messages.append(f"{'rewrote' if note else 'created'} {_display(module.path)}{note}")
    _write_revision(env, "install", _INSTALL_MESSAGE, previous, result, schema)
    result.messages.extend(_next_steps(schema, module, env, env_existed))
    return result


def _models_text(schema: Schema) -> str:
    # Rendered through a temporary file: template_to_file is Alembic's renderer and writes files.
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp, "models.py")
        _render(TEMPLATES / "models.py.mako", dest, s=schema)
        return dest.read_text(encoding="utf-8")


def _next_steps(schema: Schema, module: _ModuleTarget, env: _Env, env_existed: bool) -> list[str]:
    """What to do after ``install``; every command in backquotes runs as printed."""
    steps = ["", "Next steps:"]
    env_py = env.directory / "env.py"
    env_text = env_py.read_text(encoding="utf-8", errors="replace") if env_existed else ""
    if env_existed and not _targets_models(env_text, module.name):
        steps.append(
            f"  - your {_display(env_py)} was left as it is: for autogenerate, "
            f"set target_metadata = {module.name}.Base.metadata there"
        )
    if not env_existed or "SA_LLM_DATABASE_URL" in env_text:
        steps.append(
            f"  - set SA_LLM_DATABASE_URL to your database's SQLAlchemy URL ({_display(env_py)} "
            "and the sa-llm commands read it; without it, alembic uses sqlalchemy.url in "
            "alembic.ini), then run `alembic upgrade head`"
        )
    else:
        steps.append(
            f"  - run `alembic upgrade head` ({_display(env_py)} picks the database), and set "
            "SA_LLM_DATABASE_URL to the same URL for the sa-llm commands"
        )
    load = f"sa-llm models load --module {_display(module.path)}"
    if schema.model.class_name != "Model":
        load += f" --class {schema.model.class_name}"
    steps.append(f"  - fill the model registry: `{load}`")
    chat = schema.chat.class_name
    steps.append(
        f'  - talk: from {module.name} import {chat}; chat = {chat}(model="gpt-4.1-nano"); '
        'session.add(chat); session.commit(); chat.ask("Hello")'
    )
    if schema.attachments is None:
        steps.append("  - attachments were skipped: there is no attachments table or class")
    else:
        steps.append(
            "  - attached files go to ./storage/attachments; set attachment_storage (a directory "
            "or s3://...) with sa_llm.configure, and run "
            f"`sa-llm attachments gc --module {_display(module.path)}` now and then"
        )
    return steps


def _targets_models(env_text: str, module_name: str) -> bool:
    """Whether an env.py sets ``target_metadata`` to the models module's ``Base.metadata``."""
    name = re.escape(module_name)
    if re.search(rf"^target_metadata\s*=\s*{name}\.Base\.metadata\b", env_text, re.M):
        return True
    imported = re.search(rf"^from {name} import [^\n]*\bBase\b", env_text, re.M)
    assigned = re.search(r"^target_metadata\s*=\s*Base\.metadata\b", env_text, re.M)
    return bool(imported and assigned)


def upgrade(
    *,
    mappings: Sequence[str] = (),
    alembic_dir: Path = Path("alembic"),
    force: bool = False,
) -> InstallResult:
    """Write the revisions that bring an older chat schema up to date.

    Each revision brings the schema to one version (its marker line says which); only those the
    project lacks are written, chained in order after the current head:

    1. ``upgrade_v1`` adds ``content_raw``, ``cached_tokens``, ``cache_creation_tokens``,
       ``thinking_text``, ``thinking_signature`` and ``thinking_tokens`` to the messages table
       and ``thought_signature`` to the tool calls table, each only where it is missing (the
       revision inspects the tables when it runs).
    2. ``upgrade_v2`` sets ``content_raw`` to SQL NULL where earlier releases stored the JSON
       value ``null`` (every plain message).
    3. ``upgrade_v3`` adds the turn lease (``turn_token``, ``turn_expires_at``,
       ``cancel_requested_at``) to the chats table, ``status`` and ``thinking_raw`` to the
       messages table and the
       tool-approval columns (``approval``, ``approval_arguments_hash``,
       ``approval_decided_by``, ``approval_decided_at``, ``approval_reason``) to the tool
       calls table.

    An sa_llm install revision of version N stands for the upgrades up to N.

    Args:
        mappings: ``role:ClassName`` renames, for the table names (``message:ChatMessage``).
        alembic_dir: the project's Alembic environment.
        force: rewrite the sa_llm upgrade revisions that exist in place (the old files are kept
            as ``.bak``), and write those that are missing.

    Returns:
        What was written and the next step; nothing when the sa_llm install revision of this
        release is there already.

    Raises:
        ConfigurationError: a bad mapping, no Alembic environment, or (without ``force``)
            every upgrade revision the project needs exists already.
    """
    schema = Schema.build(mappings, attachments=False)
    env = _Env.locate(alembic_dir)
    if not env.exists:
        raise ConfigurationError(
            f"No Alembic environment in {_display(env.directory)}/ (no env.py); "
            "run `sa-llm install` first, or pass --alembic-dir."
        )
    ours = env.ours(env.scripts())
    installs = [f for f in ours if f.kind == "install"]
    installed = max((f.schema for f in installs), default=0)
    if installed >= SCHEMA_VERSION:
        newest = max(installs, key=lambda found: found.schema)
        return InstallResult(
            messages=[
                f"Nothing to do: {_display(newest.path)} (sa-llm install) already creates "
                "the schema of this release."
            ]
        )
    # Oldest first, so the newest revision of a version wins.
    existing = {f.schema: f for f in ours if f.kind == "upgrade"}
    wanted = [version for version in sorted(_UPGRADES) if version > installed]
    if all(version in existing for version in wanted) and not force:
        names = " and ".join(_display(existing[version].path) for version in wanted)
        raise ConfigurationError(
            f"{names} {'is' if len(wanted) == 1 else 'are'} already the sa_llm upgrade "
            f"revision{'' if len(wanted) == 1 else 's'}; pass --force to rewrite "
            f"{'it' if len(wanted) == 1 else 'them'}."
        )
    result = InstallResult()
    for version in wanted:
        template, message = _UPGRADES[version]
        previous = existing.get(version)
        if previous is None or force:
            _write_revision(env, template, message, previous, result, schema)
    result.messages += ["", "Next step: alembic upgrade head (review the revisions first)"]
    return result
