"""``sa-llm install`` and ``sa-llm upgrade``: the models module and the Alembic revisions.

The templates live in ``sa_llm/alembic_templates`` (see its README) and are rendered with
Alembic's own machinery: :meth:`alembic.script.ScriptDirectory.generate_revision` writes a
revision into the project's versions directory, named by the project's ``file_template``, with
``down_revision`` = the current head(s) and the project's post-write hooks run on it;
:func:`alembic.util.template_to_file` renders the environment and the models module.

Mappings rename the classes as the Rails generators do (``chat:Conversation``,
``message:ChatMessage``, ``tool_call:FunctionCall``, ``model:AIModel``); a dotted value
(``chat:llm.Chat``) is namespaced: the class is ``Chat``, its table ``llm_chats`` and its
associations ``llm_chat``/``llm_chats``. Table names are the underscored, pluralised class names;
foreign keys are ``<association>_id``; the decorators get only the options their own inference
would not find.

Example::

    result = install(mappings=["chat:Conversation"], module_path=Path("models.py"))
    print("\\n".join(result.messages))
"""

from __future__ import annotations

import json
import keyword
import re
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import util as alembic_util
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from sa_llm._mapping import classify, underscore
from sa_llm._records.chat import ChatMethods
from sa_llm._records.rows import AttachmentMethods, MessageMethods, ModelMethods, ToolCallMethods
from sa_llm.errors import ConfigurationError

__all__ = [
    "InstallResult",
    "Role",
    "Schema",
    "call",
    "install",
    "literal",
    "parse_mappings",
    "pluralize",
    "upgrade",
]

TEMPLATES = Path(__file__).parent / "alembic_templates"

#: Bumped when a release changes the tables or how rows are stored; ``upgrade`` compares it with
#: the versions in the marker lines of the project's sa_llm revisions.
SCHEMA_VERSION = 3

ROLES = ("chat", "message", "tool_call", "model")
_DEFAULT_CLASSES = {"chat": "Chat", "message": "Message", "tool_call": "ToolCall", "model": "Model"}
_MARKER = re.compile(
    r"^# sa_llm-revision: (?P<kind>install|upgrade) schema=(?P<schema>\d+)\b", re.M
)
_INSTALL_MESSAGE = "Create the sa_llm chat tables"
#: The revisions ``sa-llm upgrade`` writes: the schema version each brings a schema up to, its
#: template directory and its message. An install revision of version N covers 1..N.
_UPGRADES = {
    1: ("upgrade_v1", "Add the sa_llm raw content, cache token and thinking columns"),
    2: ("upgrade_v2", "Store SQL NULL instead of JSON null in sa_llm's content_raw"),
    3: ("upgrade_v3", "Add the sa_llm turn lease and message status columns"),
}
_LINE = 100
# PostgreSQL cuts longer identifiers, and then the names no longer match the models.
_MAX_IDENTIFIER = 63
# Names a generated attribute must not take: SQLAlchemy's declarative class attributes.
_RESERVED_ATTRIBUTES = frozenset({"metadata", "registry", "query", "type_annotation_map"})
# The fixed columns of each table (the foreign keys depend on the mappings).
_MESSAGE_COLUMNS = (
    "id", "role", "content", "content_raw", "input_tokens", "output_tokens", "cached_tokens",
    "cache_creation_tokens", "thinking_text", "thinking_signature", "thinking_tokens",
    "created_at", "updated_at",
)  # fmt: skip
_TOOL_CALL_COLUMNS = (
    "id", "tool_call_id", "name", "arguments", "thought_signature", "created_at"
)  # fmt: skip
_ATTACHMENT_COLUMNS = (
    "id", "filename", "content_type", "byte_size", "sha256", "storage_key", "created_at"
)  # fmt: skip
_MODEL_COLUMNS = (
    "id", "model_id", "name", "provider", "family", "model_created_at", "context_window",
    "max_output_tokens", "knowledge_cutoff", "modalities", "capabilities", "pricing",
    "model_metadata", "created_at", "updated_at",
)  # fmt: skip


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


# -- names ----------------------------------------------------------------------------------------


def pluralize(word: str) -> str:
    """English plural of an underscored name (``chat_message`` -> ``chat_messages``).

    The decorators' ``singularize`` need not invert it: where the association does not
    classify back to the class name, the generated decorator names the class explicitly.
    """
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


@dataclass(frozen=True)
class Role:
    """One mapped class of the schema: its class name and the names derived from it."""

    key: str
    class_name: str
    prefix: str = ""

    @property
    def one(self) -> str:
        """The to-one association name (``chat_message``; ``llm_chat`` when namespaced)."""
        return self.prefix + underscore(self.class_name)

    @property
    def many(self) -> str:
        """The to-many association name, also the table name (``chat_messages``)."""
        return pluralize(self.one)

    @property
    def table(self) -> str:
        """The table name."""
        return self.many

    @property
    def fk(self) -> str:
        """The foreign-key column that points at this class (``chat_message_id``)."""
        return f"{self.one}_id"


def parse_mappings(mappings: Sequence[str]) -> dict[str, Role]:
    """``["chat:Conversation", "message:llm.Message"]`` -> a :class:`Role` per role.

    Unmapped roles keep their default class (``Chat``, ``Message``, ``ToolCall``, ``Model``).

    Raises:
        ConfigurationError: not ``key:ClassName``, an unknown or repeated key, or a class name
            that is not a Python identifier.
    """
    given: dict[str, str] = {}
    for mapping in mappings:
        key, sep, value = mapping.partition(":")
        key, value = key.strip(), value.strip().replace("::", ".")
        if not sep or not key or not value:
            raise ConfigurationError(
                f"Bad mapping {mapping!r}: expected key:ClassName, e.g. chat:Conversation."
            )
        if key not in ROLES:
            raise ConfigurationError(
                f"Bad mapping {mapping!r}: unknown key {key!r} (use {', '.join(ROLES)})."
            )
        if key in given:
            raise ConfigurationError(f"Bad mapping {mapping!r}: {key!r} is mapped twice.")
        parts = value.split(".")
        if not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
            raise ConfigurationError(
                f"Bad mapping {mapping!r}: {value!r} is not a class name "
                "(letters, digits and underscores; a dotted namespace like llm.Chat)."
            )
        given[key] = value
    roles = {}
    for key in ROLES:
        *namespace, class_name = given.get(key, _DEFAULT_CLASSES[key]).split(".")
        prefix = "".join(f"{underscore(part)}_" for part in namespace)
        roles[key] = Role(key, class_name, prefix)
    return roles


@dataclass(frozen=True)
class _ForeignKeys:
    chat_model: str
    message_chat: str
    message_model: str
    message_parent: str
    tool_call_message: str
    attachment_message: str


@dataclass(frozen=True)
class _ConstraintNames:
    model_unique: str
    model_provider_index: str
    chat_model_index: str
    message_order_index: str
    message_parent_index: str
    message_parent_fk: str
    tool_call_unique: str
    tool_call_message_index: str
    attachment_message_index: str


@dataclass(frozen=True)
class Schema:
    """Everything the templates need: classes, tables, foreign keys, constraint names.

    Column, index and constraint names follow the column mixins of :mod:`sa_llm.mixins`
    (``ix_<messages>_chat_order``, ``fk_<messages>_<fk>``, ``uq_<tool_calls>_message_call``,
    ``uq_<models>_provider_model``), SQLAlchemy's ``ix_<table>_<column>`` otherwise.
    """

    chat: Role
    message: Role
    tool_call: Role
    model: Role
    attachments: Role | None
    use_uuid: bool
    module_name: str = "models"
    module_file: str = "models.py"
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def build(
        cls,
        mappings: Sequence[str],
        *,
        attachments: bool = True,
        use_uuid: bool = False,
        module_name: str = "models",
        module_file: str = "models.py",
    ) -> Schema:
        """Parse ``mappings`` and check the names the schema would use.

        Raises:
            ConfigurationError: a bad mapping, or names that would clash.
        """
        roles = parse_mappings(mappings)
        message = roles["message"]
        schema = cls(
            chat=roles["chat"],
            message=message,
            tool_call=roles["tool_call"],
            model=roles["model"],
            attachments=Role("attachment", "Attachment", message.prefix) if attachments else None,
            use_uuid=use_uuid,
            module_name=module_name,
            module_file=module_file,
        )
        schema._check()
        return schema

    @property
    def roles(self) -> list[Role]:
        """The mapped classes, attachments last when present."""
        roles = [self.chat, self.message, self.tool_call, self.model]
        return [*roles, self.attachments] if self.attachments else roles

    @property
    def fks(self) -> _ForeignKeys:
        """Foreign-key column names: ``<association of the target>_id``."""
        return _ForeignKeys(
            chat_model=self.model.fk,
            message_chat=self.chat.fk,
            message_model=self.model.fk,
            message_parent=self.tool_call.fk,
            tool_call_message=self.message.fk,
            attachment_message=self.message.fk,
        )

    @property
    def names(self) -> _ConstraintNames:
        """Index and constraint names."""
        fks = self.fks
        messages, tool_calls = self.message.table, self.tool_call.table
        attachments = self.attachments.table if self.attachments else ""
        return _ConstraintNames(
            model_unique=f"uq_{self.model.table}_provider_model",
            model_provider_index=f"ix_{self.model.table}_provider",
            chat_model_index=f"ix_{self.chat.table}_{fks.chat_model}",
            message_order_index=f"ix_{messages}_chat_order",
            message_parent_index=f"ix_{messages}_{fks.message_parent}",
            message_parent_fk=f"fk_{messages}_{fks.message_parent}",
            tool_call_unique=f"uq_{tool_calls}_message_call",
            tool_call_message_index=f"ix_{tool_calls}_{fks.tool_call_message}",
            attachment_message_index=f"ix_{attachments}_{fks.attachment_message}",
        )

    @property
    def pk_type(self) -> str:
        """The primary-key type in a migration."""
        return "sa.Uuid()" if self.use_uuid else "sa.Integer()"

    @property
    def pk_annotation(self) -> str:
        """The primary-key type in a ``Mapped[...]`` annotation."""
        return "uuid.UUID" if self.use_uuid else "int"

    @property
    def pk_column(self) -> str:
        """The primary-key ``mapped_column``."""
        if self.use_uuid:
            return "mapped_column(Uuid, primary_key=True, default=uuid.uuid4)"
        return "mapped_column(Integer, primary_key=True)"

    def fk_column(self, attribute: str, target: Role, ondelete: str, *, index: bool) -> str:
        """The models module's line for a foreign-key column (nullable when SET NULL)."""
        nullable = " | None" if ondelete == "SET NULL" else ""
        arguments = [f"ForeignKey({literal(target.table + '.id')}, ondelete={literal(ondelete)})"]
        if index:
            arguments.append("index=True")
        head = f"{attribute}: Mapped[{self.pk_annotation}{nullable}] = mapped_column"
        return call(head, arguments)

    @property
    def sqlalchemy_imports(self) -> list[str]:
        """Names the models module imports from ``sqlalchemy``, in isort order."""
        names = ["JSON", "DateTime", "ForeignKey", "Index", "Integer", "String", "Text"]
        names += ["UniqueConstraint"]
        if self.attachments:
            names.insert(1, "BigInteger")
        if self.use_uuid:
            names.append("Uuid")
        return names

    @property
    def exported(self) -> list[str]:
        """The models module's ``__all__``."""
        return sorted(["Base", "JSONType", *(role.class_name for role in self.roles)])

    @property
    def table_list(self) -> str:
        """``chats, messages, tool_calls and models`` for docstrings."""
        tables = [f"``{role.table}``" for role in self.roles]
        return ", ".join(tables[:-1]) + " and " + tables[-1]

    def decorator(self, key: str) -> str:
        """The ``@acts_as_*(...)`` line of a class, with only the non-default options.

        An option is default when the decorator would infer the same name on its own:
        the association's class is ``classify(association)``, a belongs-to FK is
        ``<association>_id`` and the tool-result FK is ``<underscored tool call class>_id``.
        """
        options: list[tuple[str, str]] = []

        def association(option: str, value: str, default: str, role: Role) -> None:
            if value != default:
                options.append((option, value))
            if classify(value) != role.class_name:
                # messages= -> message_class=, tool_calls= -> tool_call_class=, chat= -> ...
                options.append((f"{option.rstrip('s')}_class", role.class_name))

        if key == "chat":
            association("messages", self.message.many, "messages", self.message)
            association("model", self.model.one, "model", self.model)
        elif key == "message":
            association("chat", self.chat.one, "chat", self.chat)
            association("tool_calls", self.tool_call.many, "tool_calls", self.tool_call)
            association("model", self.model.one, "model", self.model)
            if self.attachments:
                association("attachments", self.attachments.many, "attachments", self.attachments)
        elif key == "attachment":
            association("message", self.message.one, "message", self.message)
        elif key == "tool_call":
            association("message", self.message.one, "message", self.message)
            if self.fks.message_parent != f"{underscore(self.tool_call.class_name)}_id":
                options.append(("result_foreign_key", self.fks.message_parent))
        else:
            association("chats", self.chat.many, "chats", self.chat)
        arguments = [f"{option}={literal(value)}" for option, value in options]
        return call(f"@acts_as_{key}", arguments, indent=0)

    def _check(self) -> None:
        classes = [role.class_name for role in self.roles]
        for name in classes:
            if classes.count(name) > 1 or name in ("Base", "JSONType"):
                raise ConfigurationError(
                    f"Two classes would be called {name!r}; map them to different names"
                    + (" (or pass --skip-attachments)." if name == "Attachment" else ".")
                )
        tables = [role.table for role in self.roles]
        for table in tables:
            if tables.count(table) > 1:
                raise ConfigurationError(
                    f"Two classes would share the table {table!r}; map them to other names."
                )
        fks = self.fks
        message_columns = [*_MESSAGE_COLUMNS, fks.message_chat, fks.message_model]
        attributes = {
            self.chat.class_name: (
                ["id", fks.chat_model, "created_at", "updated_at"],
                [self.message.many, self.model.one],
                ChatMethods,
            ),
            self.message.class_name: (
                [*message_columns, fks.message_parent],
                [
                    self.chat.one,
                    self.tool_call.many,
                    "parent_tool_call",
                    self.model.one,
                    *([self.attachments.many] if self.attachments else []),
                ],
                MessageMethods,
            ),
            self.tool_call.class_name: (
                [*_TOOL_CALL_COLUMNS, fks.tool_call_message],
                [self.message.one, "result"],
                ToolCallMethods,
            ),
            self.model.class_name: (_MODEL_COLUMNS, [self.chat.many], ModelMethods),
        }
        if self.attachments:
            attributes[self.attachments.class_name] = (
                [*_ATTACHMENT_COLUMNS, fks.attachment_message],
                [self.message.one],
                AttachmentMethods,
            )
        for class_name, (columns, associations, methods) in attributes.items():
            names = [*columns, *associations]
            for name in names:
                taken = name in _RESERVED_ATTRIBUTES or (
                    name in associations and hasattr(methods, name)
                )
                if names.count(name) > 1 or taken:
                    raise ConfigurationError(
                        f"{class_name} would get two attributes called {name!r} (columns, "
                        "associations or record methods); map the classes to other names."
                    )
        for name in [*tables, *vars(self.names).values()]:
            if len(name) > _MAX_IDENTIFIER:
                raise ConfigurationError(
                    f"The name {name!r} is longer than {_MAX_IDENTIFIER} characters, which "
                    "PostgreSQL cuts; map the classes to shorter names."
                )


# -- the project ----------------------------------------------------------------------------------


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


def literal(value: object) -> str:
    """A Python literal of a name, a tuple of names or None, in double quotes."""
    if isinstance(value, (tuple, list)):
        items = [literal(item) for item in value]
        return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
    return "None" if value is None else json.dumps(value)


def call(head: str, arguments: Sequence[str], indent: int = 4, tail: str = "") -> str:
    """``head(arguments)tail`` laid out as ruff/black would, for lines of 100 characters.

    Generated code then passes the formatter untouched, whatever the mapped names' lengths:
    one line if it fits, else the arguments on one indented line, else one per line.
    """
    inline = ", ".join(arguments)
    if indent + len(head) + len(inline) + len(tail) + 2 <= _LINE:
        return f"{head}({inline}){tail}"
    pad, close = " " * (indent + 4), " " * indent
    if len(pad) + len(inline) <= _LINE:
        return f"{head}(\n{pad}{inline}\n{close}){tail}"
    return f"{head}(\n" + "".join(f"{pad}{a},\n" for a in arguments) + f"{close}){tail}"


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


# -- commands -------------------------------------------------------------------------------------


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
       ``cancel_requested_at``) to the chats table and ``status`` to the messages table.

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
