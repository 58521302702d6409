"""``sa-llm chat-ui``: write a chat UI (a FastAPI app module, its templates, script and
stylesheet) into the user's project, over the models ``sa-llm install`` wrote.

The app module is rendered from ``sa_llm/chat_ui_templates/app.py.mako`` with the class names
of the mappings (``chat:Conversation message:ChatMessage model:AIModel``), like the models
module; the templates and static files are copied as they are (the app gives them plain
views, whatever the classes are called). Everything written is the user's to edit; it uses
only sa_llm's public API (:mod:`sa_llm.web`).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sa_llm._install.project import InstallResult, _backup, _display, _ModuleTarget, _render
from sa_llm._install.schema import Schema
from sa_llm.errors import ConfigurationError

__all__ = ["UI_TEMPLATES", "chat_ui"]

UI_TEMPLATES = Path(__file__).resolve().parents[1] / "chat_ui_templates"


def chat_ui(
    *,
    mappings: Sequence[str] = (),
    models_path: Path = Path("models.py"),
    module_path: Path = Path("chat_app.py"),
    assets_dir: str = "chat_ui",
    force: bool = False,
) -> InstallResult:
    """Write the chat UI app module and its assets next to it.

    Args:
        mappings: the ``role:ClassName`` renames given to ``sa-llm install``.
        models_path: the models module ``sa-llm install`` wrote.
        module_path: where the app module goes (``uvicorn <module>:app`` serves it).
        assets_dir: the directory, beside the app module, of its templates and static files.
        force: overwrite files that exist (the old ones are kept as ``*.bak``).

    Raises:
        ConfigurationError: the models module is missing or lacks a mapped class (the message
            gives the ``sa-llm install`` command with the same mappings), a bad mapping, or
            (without ``force``) files that exist already. Nothing is written then.
    """
    schema = Schema.build(mappings)
    models = _ModuleTarget.locate(models_path)
    app = _ModuleTarget.locate(module_path)
    _check_models(models, schema, mappings)
    if app.name == models.name:
        raise ConfigurationError("--module must not be the models module.")
    assets = app.path.parent / assets_dir
    targets: dict[Path, Path | None] = {app.path: None}
    for folder in ("templates", "static"):
        for file in sorted(p for p in (UI_TEMPLATES / folder).rglob("*") if p.is_file()):
            targets[assets / file.relative_to(UI_TEMPLATES)] = file
    existing = [path for path in targets if path.exists()]
    if existing and not force:
        shown = ", ".join(_display(path) for path in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise ConfigurationError(
            f"{shown}{more} already exist{'s' if len(existing) == 1 else ''}; pass --force to "
            "overwrite (the old files are kept as .bak)."
        )
    result = InstallResult()
    text = _app_text(schema, models.name, app.name, assets_dir)
    for path, source in targets.items():
        content = text.encode() if source is None else source.read_bytes()
        if path.exists() and path.read_bytes() == content:
            continue
        note = f" (the old file is {_display(_backup(path))})" if path.exists() else ""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        result.written.append(path)
        if source is None or note:
            result.messages.append(f"{'rewrote' if note else 'created'} {_display(path)}{note}")
    if any(path != app.path for path in result.written):
        result.messages.append(f"created {_display(assets)}/ (templates and static files)")
    result.messages += [
        "",
        "Chat UI installed! Next steps:",
        '  - install its packages: `pip install "sa-llm[ui]"`',
        f"  - serve it: `uvicorn {app.name}:app` (SA_LLM_DATABASE_URL names the database)",
        "  - open http://127.0.0.1:8000/chats",
    ]
    return result


def _check_models(models: _ModuleTarget, schema: Schema, mappings: Sequence[str]) -> None:
    """Refuse when the models module is missing or lacks a mapped class."""
    install = " ".join(["sa-llm install", *mappings, "--module", _display(models.path)])
    if not models.path.is_file():
        raise ConfigurationError(
            f"{_display(models.path)} does not exist; write the models first: `{install}`."
        )
    source = models.path.read_text(encoding="utf-8", errors="replace")
    for role in (schema.chat, schema.message, schema.model):
        if not re.search(rf"^class {re.escape(role.class_name)}\b", source, re.M):
            raise ConfigurationError(
                f"{_display(models.path)} has no class {role.class_name}; give the mappings "
                f"you installed with, or write the models first: `{install}`."
            )
    if not re.search(r"^@acts_as_event\b", source, re.M):
        raise ConfigurationError(
            f"{_display(models.path)} has no @acts_as_event class (the chats' event log the "
            "UI follows): `sa-llm upgrade` adds its table; then declare the class (see "
            "docs/chat-ui.md), or reinstall the models with --force."
        )


def _app_text(schema: Schema, models_name: str, app_name: str, assets: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp, "app.py")
        _render(
            UI_TEMPLATES / "app.py.mako",
            dest,
            s=schema,
            models_name=models_name,
            app_module=app_name,
            assets=assets,
        )
        return dest.read_text(encoding="utf-8")
