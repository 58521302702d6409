"""The user's project: where the models module and the Alembic environment are, and how the
templates are rendered into it."""

from __future__ import annotations

import keyword
import shutil
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import util as alembic_util
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from sa_llm._install.schema import _LINE, _MARKER, TEMPLATES, Schema, call, literal
from sa_llm.errors import ConfigurationError


@dataclass
class InstallResult:
    """What ``install``/``upgrade`` did.

    Attributes:
        messages: lines for the user (files written, next steps).
        written: the files created or overwritten.
        revision: the id of the revision written, if any.
    """

    messages: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    revision: str | None = None


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class _ModuleTarget:
    """Where the models module goes and the dotted name env.py imports it by."""

    path: Path
    name: str
    root: Path

    @classmethod
    def locate(cls, module_path: Path) -> _ModuleTarget:
        path = (Path.cwd() / module_path).absolute()
        if path.suffix != ".py":
            raise ConfigurationError(
                f"--module {module_path}: the models module must be a .py file."
            )
        # Packages above it (directories with __init__.py) are part of the import name.
        parts, root = [path.stem], path.parent
        while (root / "__init__.py").is_file():
            parts.insert(0, root.name)
            root = root.parent
        name = ".".join(parts)
        if not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
            raise ConfigurationError(
                f"--module {module_path}: {name!r} is not an importable module name "
                "(letters, digits and underscores)."
            )
        top = parts[0]
        if top in {"alembic", "sqlalchemy", "sa_llm"} or top in sys.stdlib_module_names:
            raise ConfigurationError(
                f"--module {module_path}: {top!r} would hide the module of the same name; "
                "choose another file name."
            )
        return cls(path, name, root)


@contextmanager
def _sys_path_kept() -> Iterator[None]:
    # ScriptDirectory.from_config prepends alembic.ini's prepend_sys_path to sys.path for good;
    # we import nothing through it, so the caller's path is put back.
    saved = list(sys.path)
    try:
        yield
    finally:
        sys.path[:] = saved


@dataclass
class _Found:
    """A revision sa-llm wrote earlier, found by its marker line."""

    kind: str
    schema: int
    script: Script

    @property
    def path(self) -> Path:
        return Path(self.script.path)


@dataclass
class _Env:
    """The project's Alembic environment (which may not exist yet)."""

    directory: Path
    ini: Path

    @classmethod
    def locate(cls, alembic_dir: Path) -> _Env:
        directory = (Path.cwd() / alembic_dir).absolute()
        env = cls(directory, Path.cwd().absolute() / "alembic.ini")
        location = env._ini_script_location()
        if location is not None and location.resolve() != directory.resolve():
            raise ConfigurationError(
                f"alembic.ini uses the Alembic environment in {_display(location)}/, not "
                f"{_display(directory)}/; pass --alembic-dir {_display(location)}."
            )
        return env

    def _ini_script_location(self) -> Path | None:
        if not self.ini.is_file():
            return None
        location = Config(str(self.ini)).get_main_option("script_location")
        if not location or (":" in location and not Path(location).is_absolute()):
            return None  # not set here (pyproject.toml), or a package resource
        return (Path.cwd() / location).absolute()

    @property
    def exists(self) -> bool:
        """Whether there is an ``env.py`` to run migrations with."""
        return (self.directory / "env.py").is_file()

    def scripts(self) -> ScriptDirectory:
        """The project's script directory, configured from alembic.ini when there is one."""
        try:
            with _sys_path_kept():
                if self.ini.is_file() and self._ini_script_location() is not None:
                    return ScriptDirectory.from_config(Config(str(self.ini)))
                return ScriptDirectory(self.directory)
        except alembic_util.CommandError as exc:
            raise ConfigurationError(f"Alembic: {exc}") from exc

    def ours(self, scripts: ScriptDirectory) -> list[_Found]:
        """The revisions sa-llm wrote, oldest first."""
        if not self.versions_exist(scripts):
            return []
        found = []
        try:
            for script in scripts.walk_revisions():
                path = Path(script.path)
                if path.suffix != ".py" or not path.is_file():
                    continue
                match = _MARKER.search(path.read_text(encoding="utf-8", errors="replace"))
                if match:
                    found.append(_Found(match["kind"], int(match["schema"]), script))
        except alembic_util.CommandError as exc:
            raise ConfigurationError(f"Alembic: {exc}") from exc
        return found[::-1]

    @staticmethod
    def versions_exist(scripts: ScriptDirectory) -> bool:
        locations = scripts.version_locations or [str(Path(scripts.dir, "versions"))]
        return any(Path(location).is_dir() for location in locations)


def _render(template: Path, dest: Path, **context: Any) -> None:
    """Render a Mako template with Alembic's renderer (its errors name the template line)."""
    try:
        alembic_util.template_to_file(template, dest, "utf-8", **_HELPERS, **context)
    except alembic_util.CommandError as exc:  # pragma: no cover - a bug in a template
        raise ConfigurationError(f"Rendering {template.name} failed: {exc}") from exc


def wrap(text: str) -> str:
    """Prose for a docstring, filled to the line length."""
    return textwrap.fill(text, _LINE, break_on_hyphens=False)


_HELPERS: dict[str, Any] = {"q": literal, "call": call, "wrap": wrap}


def _backup(path: Path) -> Path:
    """Copy ``path`` aside (``models.py.bak``, then ``.bak1``, ...) before overwriting it."""
    backup = path.with_name(path.name + ".bak")
    number = 0
    while backup.exists():
        number += 1
        backup = path.with_name(f"{path.name}.bak{number}")
    shutil.copy2(path, backup)
    return backup


def _create_env(env: _Env, module: _ModuleTarget, result: InstallResult) -> None:
    """Write a new Alembic environment where there is none; never touch a file that exists.

    A project with an ``env.py`` keeps its environment as it is (its configuration may live in
    ``pyproject.toml``); only a missing versions directory is created.
    """
    env_templates = TEMPLATES / "env"
    root = Path.cwd().absolute()
    fresh = not env.exists
    if fresh and not env.ini.exists():
        try:
            location = "%(here)s/" + env.directory.relative_to(root).as_posix()
        except ValueError:
            location = env.directory.as_posix()
        try:
            relative = module.root.relative_to(root).as_posix()
            sys_path = "%(here)s" if relative == "." else f"%(here)s/{relative}"
        except ValueError:
            sys_path = module.root.as_posix()
        _render(
            env_templates / "alembic.ini.mako",
            env.ini,
            script_location=location,
            prepend_sys_path=sys_path,
            database_url="sqlite:///%(here)s/app.sqlite3",
            module_file=_display(module.path),
        )
        result.written.append(env.ini)
        result.messages.append(f"created {_display(env.ini)}")
    env.directory.mkdir(parents=True, exist_ok=True)
    for name in ("env.py", "script.py.mako", "README"):
        dest = env.directory / name
        if not fresh or dest.exists():
            continue
        if name == "env.py":
            _render(
                env_templates / "env.py.mako",
                dest,
                module_name=module.name,
                module_file=_display(module.path),
            )
        else:
            # Copied, not rendered: script.py.mako is itself a template, as in ``alembic init``.
            shutil.copyfile(env_templates / name, dest)
        result.written.append(dest)
        result.messages.append(f"created {_display(dest)}")
    versions = env.directory / "versions"
    if not versions.exists() and not env.scripts().version_locations:
        versions.mkdir()
        result.messages.append(f"created {_display(versions)}/")


def _write_revision(
    env: _Env,
    template: str,
    message: str,
    existing: _Found | None,
    result: InstallResult,
    schema: Schema,
) -> None:
    """Write a revision from ``alembic_templates/<template>/script.py.mako``.

    New revisions go through ``ScriptDirectory.generate_revision`` of a script directory whose
    templates are ours and whose versions are the project's: Alembic then picks the head(s),
    the file name, the date and runs the post-write hooks exactly as for ``alembic revision``.
    ``existing`` (``--force``) is rewritten in place with its own id and ``down_revision``, so
    the revisions after it stay chained.
    """
    template_dir = TEMPLATES / template
    if existing is not None:
        script = existing.script
        backup = _backup(existing.path)
        alembic_util.template_to_file(
            template_dir / "script.py.mako",
            existing.path,
            "utf-8",
            up_revision=script.revision,
            down_revision=script.down_revision,
            branch_labels=tuple(script.branch_labels) or None,
            depends_on=script.dependencies,
            create_date=datetime.now(),
            comma=alembic_util.format_as_comma,
            message=message,
            s=schema,
            **_HELPERS,
        )
        result.written.append(existing.path)
        result.revision = script.revision
        result.messages.append(
            f"rewrote {_display(existing.path)} (revision {script.revision}; "
            f"the old file is {_display(backup)}); a database already at this revision needs "
            "`alembic downgrade` past it first"
        )
        return
    project = env.scripts()
    generator = ScriptDirectory(
        template_dir,
        file_template=project.file_template,
        truncate_slug_length=project.truncate_slug_length,
        version_locations=project.version_locations or [str(Path(project.dir, "versions"))],
        sourceless=project.sourceless,
        output_encoding=project.output_encoding,
        timezone=project.timezone,
        hooks=project.hooks,
        recursive_version_locations=project.recursive_version_locations,
        messaging_opts={"quiet": True},
    )
    try:
        with _sys_path_kept():
            written = generator.generate_revision(
                alembic_util.rev_id(), message, head="heads", s=schema, **_HELPERS
            )
    except alembic_util.CommandError as exc:
        raise ConfigurationError(f"Alembic: {exc}") from exc
    assert written is not None  # generate_revision returns None only for non-.py file names
    path = Path(written.path)
    after = written.down_revision
    parents = after if isinstance(after, str) else ", ".join(after or ()) or "base"
    result.written.append(path)
    result.revision = written.revision
    result.messages.append(
        f"created {_display(path)} (revision {written.revision}, after {parents})"
    )
