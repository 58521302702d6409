"""The names ``sa-llm install`` gives: classes, tables, foreign keys and constraints, from the
mappings (``chat:Conversation``), checked for clashes before anything is written."""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sa_llm._mapping import classify, underscore
from sa_llm._records.chat import ChatMethods
from sa_llm._records.rows import AttachmentMethods, MessageMethods, ModelMethods, ToolCallMethods
from sa_llm.errors import ConfigurationError

TEMPLATES = Path(__file__).resolve().parents[1] / "alembic_templates"

#: Bumped when a release changes the tables or how rows are stored; ``upgrade`` compares it with
#: the versions in the marker lines of the project's sa_llm revisions.
SCHEMA_VERSION = 3

ROLES = ("chat", "message", "tool_call", "model", "event")
_DEFAULT_CLASSES = {
    "chat": "Chat",
    "message": "Message",
    "tool_call": "ToolCall",
    "model": "Model",
    "event": "ChatEvent",
}
_MARKER = re.compile(
    r"^# sa_llm-revision: (?P<kind>install|upgrade) schema=(?P<schema>\d+)\b", re.M
)
_INSTALL_MESSAGE = "Create the sa_llm chat tables"
#: The revisions ``sa-llm upgrade`` writes: the schema version each brings a schema up to, its
#: template directory and its message. An install revision of version N covers 1..N.
_UPGRADES = {
    1: ("upgrade_v1", "Add the sa_llm raw content, cache token and thinking columns"),
    2: ("upgrade_v2", "Store SQL NULL instead of JSON null in sa_llm's content_raw"),
    3: ("upgrade_v3", "Add the sa_llm turn lease, status, thinking, approvals, events, ledger"),
}
_LINE = 100
# PostgreSQL cuts longer identifiers, and then the names no longer match the models.
_MAX_IDENTIFIER = 63
# Names a generated attribute must not take: SQLAlchemy's declarative class attributes.
_RESERVED_ATTRIBUTES = frozenset({"metadata", "registry", "query", "type_annotation_map"})
# The fixed columns of each table (the foreign keys depend on the mappings).
_CHAT_COLUMNS = (
    "id",
    "turn_token",
    "turn_expires_at",
    "cancel_requested_at",
    "event_seq",
    "created_at",
    "updated_at",
)
_MESSAGE_COLUMNS = (
    "id", "role", "status", "content", "content_raw", "input_tokens", "output_tokens",
    "cached_tokens", "cache_creation_tokens", "thinking_text", "thinking_signature",
    "thinking_tokens", "thinking_raw",
    "created_at", "updated_at",
)  # fmt: skip
_TOOL_CALL_COLUMNS = (
    "id", "tool_call_id", "name", "arguments", "thought_signature", "approval",
    "approval_arguments_hash", "approval_decided_by", "approval_decided_at", "approval_reason",
    "created_at",
)  # fmt: skip
_ATTACHMENT_COLUMNS = (
    "id", "filename", "content_type", "byte_size", "sha256", "storage_key", "created_at"
)  # fmt: skip
_EVENT_COLUMNS = ("id", "seq", "kind", "message_id", "data", "created_at")
_MODEL_COLUMNS = (
    "id", "model_id", "name", "provider", "family", "model_created_at", "context_window",
    "max_output_tokens", "knowledge_cutoff", "modalities", "capabilities", "pricing",
    "model_metadata", "created_at", "updated_at",
)  # fmt: skip


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
    roles: dict[str, Role] = {}
    for key in ROLES:
        *namespace, class_name = given.get(key, _DEFAULT_CLASSES[key]).split(".")
        prefix = "".join(f"{underscore(part)}_" for part in namespace)
        if key == "event" and key not in given:
            prefix = roles["chat"].prefix  # the event log sits beside its chats (llm_chat_events)
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
    usage_chat: str
    usage_message: str
    event_chat: str


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
    usage_chat_index: str
    usage_message_index: str
    event_unique: str


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
    event: Role
    attachments: Role | None
    use_uuid: bool
    #: The usage ledger (one row per provider attempt); always generated, named after the chat's
    #: namespace (``llm_usages`` for ``llm.Chat``).
    usage: Role = Role("usage", "Usage")
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
            event=roles["event"],
            attachments=Role("attachment", "Attachment", message.prefix) if attachments else None,
            use_uuid=use_uuid,
            usage=Role("usage", "Usage", roles["chat"].prefix),
            module_name=module_name,
            module_file=module_file,
        )
        schema._check()
        return schema

    @property
    def roles(self) -> list[Role]:
        """The mapped classes, the event log, attachments (when present), the usage ledger."""
        roles = [self.chat, self.message, self.tool_call, self.model, self.event]
        return [*roles, *([self.attachments] if self.attachments else []), self.usage]

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
            usage_chat=self.chat.fk,
            usage_message=self.message.fk,
            event_chat=self.chat.fk,
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
            usage_chat_index=f"ix_{self.usage.table}_{fks.usage_chat}",
            usage_message_index=f"ix_{self.usage.table}_{fks.usage_message}",
            event_unique=f"uq_{self.event.table}_chat_seq",
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

    def usage_table_operations(self, indent: int = 4) -> str:
        """The migration code that creates the usage ledger's table and its indexes (in the
        install revision and in ``upgrade_v3``), laid out as ruff formats it."""
        pad = " " * indent
        table, fks, names, pk = self.usage.table, self.fks, self.names, self.pk_type

        def column(*arguments: str) -> str:
            return pad + "    " + call("sa.Column", list(arguments), indent + 4, ",")

        def foreign(name: str, target: Role, ondelete: str, nullable: bool) -> str:
            key = f"sa.ForeignKey({literal(target.table + '.id')}, ondelete={literal(ondelete)})"
            return column(literal(name), pk, key, f"nullable={nullable}")

        plain = [
            ("provider", "sa.String(64)", False), ("model", "sa.String(255)", False),
            ("attempt", "sa.Integer()", False), ("streamed", "sa.Boolean()", False),
            ("started_at", "sa.DateTime(timezone=True)", False),
            ("finished_at", "sa.DateTime(timezone=True)", True),
            ("outcome", "sa.String(64)", False), ("http_status", "sa.Integer()", True),
            ("input_tokens", "sa.Integer()", True), ("output_tokens", "sa.Integer()", True),
            ("cache_read_tokens", "sa.Integer()", True),
            ("cache_write_tokens", "sa.Integer()", True),
            ("reasoning_tokens", "sa.Integer()", True),
            ("first_chunk_seconds", "sa.Double()", True),
            ("duration_seconds", "sa.Double()", True),
            *[
                (f"{part}_cost", "sa.Numeric(18, 10)", True)
                for part in ("input", "output", "cache_read", "cache_write", "reasoning", "total")
            ],
            ("currency", "sa.String(3)", True),
            ("created_at", "sa.DateTime(timezone=True)", False),
        ]  # fmt: skip
        lines = [
            f"{pad}# The usage ledger: one row per provider attempt, with its tokens and cost.",
            f"{pad}op.create_table(",
            f"{pad}    {literal(table)},",
            column('"id"', pk, "primary_key=True"),
            foreign(fks.usage_chat, self.chat, "CASCADE", False),
            foreign(fks.usage_message, self.message, "SET NULL", True),
            *[
                column(literal(name), kind, f"nullable={nullable}")
                for name, kind, nullable in plain
            ],
            f"{pad})",
        ]
        for index, fk in ((names.usage_chat_index, fks.usage_chat),
                          (names.usage_message_index, fks.usage_message)):  # fmt: skip
            arguments = [literal(index), literal(table), f"[{literal(fk)}]"]
            lines.append(pad + call("op.create_index", arguments, indent))
        return "\n".join(lines)

    @property
    def sqlalchemy_imports(self) -> list[str]:
        """Names the models module imports from ``sqlalchemy``, in isort order."""
        names = ["JSON", "BigInteger", "Boolean", "DateTime", "Double", "ForeignKey", "Index"]
        names += ["Integer", "Numeric", "String", "Text", "UniqueConstraint"]
        if self.use_uuid:
            names.append("Uuid")
        return names

    @property
    def exported(self) -> list[str]:
        """The models module's ``__all__``."""
        return sorted(["Base", "JSONType", *(role.class_name for role in self.roles)])

    @property
    def exported_line(self) -> str:
        """The ``__all__ = [...]`` statement, laid out as ruff would."""
        names = [literal(name) for name in self.exported]
        inline = f"__all__ = [{', '.join(names)}]"
        if len(inline) <= _LINE:
            return inline
        return "__all__ = [\n" + "".join(f"    {name},\n" for name in names) + "]"

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
        elif key == "event":
            association("chat", self.chat.one, "chat", self.chat)
        elif key == "usage":
            # The ledger's links are plain foreign keys: name them where the defaults miss.
            if self.chat.class_name != "Chat":
                options.append(("chat_class", self.chat.class_name))
            if self.fks.usage_chat not in ("chat_id", f"{underscore(self.chat.class_name)}_id"):
                options.append(("chat_foreign_key", self.fks.usage_chat))
            if self.fks.usage_message not in (
                "message_id",
                f"{underscore(self.message.class_name)}_id",
            ):
                options.append(("message_foreign_key", self.fks.usage_message))
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
                [*_CHAT_COLUMNS, fks.chat_model],
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
            self.event.class_name: ([*_EVENT_COLUMNS, fks.event_chat], [], object),
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
