"""What your models inherit: column mixins (the standard schema) and record bases (methods only).

**Column mixins** (``ChatMixin``, ``MessageMixin``, ``ToolCallMixin``, ``ModelMixin``,
``AttachmentMixin`` and the legacy ``LegacyChatMixin``/``LegacyMessageMixin``) make a
persisted model a few lines. Each mixin declares the columns sa_llm reads and writes, with the
default names of ``docs/decisions.md`` and the Alembic templates. Foreign keys point at the
table of the class that plays the other part (``chat_id`` at the chat class's table, ...)
whatever it is named, so Flask-SQLAlchemy's generated names (``chat``, ``message``) work as
well as the default ``chats``, ``messages``, ``tool_calls`` and ``models``; with several
classes of one part in one registry, set ``__sa_llm_tables__`` on your class to say which, or
declare the foreign-key column yourself. Foreign keys take the type of the primary key they
reference, so integer and UUID keys both work.

Example::

    class Base(DeclarativeBase): ...

    @acts_as_chat()
    class Chat(ChatMixin, Base):
        __tablename__ = "chats"

**Record bases** (``ChatRecord``, ``MessageRecord``, ``ToolCallRecord``, ``ModelRecord``,
``AttachmentRecord``) carry the methods the ``@acts_as_*`` decorators add, and no columns: for a
model that declares every column by hand. The decorators add the same methods to any mapped
class at runtime, which a type checker cannot see; inheriting the base lets ``mypy --strict``
know that ``chat.ask(...)`` returns a :class:`~sa_llm.types.Message`::

    @acts_as_chat()
    class Chat(ChatRecord, Base):
        __tablename__ = "chats"
        id: Mapped[int] = mapped_column(primary_key=True)
        model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
        ...

The column mixins inherit the record bases.
"""

from __future__ import annotations

import weakref
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, Mapper, declared_attr, mapped_column

from sa_llm._mapping import (
    ATTACHMENT_OPTIONS,
    CHAT_OPTIONS,
    MESSAGE_OPTIONS,
    MODEL_OPTIONS,
    TOOL_CALL_OPTIONS,
)
from sa_llm._records.chat import ChatMethods
from sa_llm._records.rows import AttachmentMethods, MessageMethods, ModelMethods, ToolCallMethods
from sa_llm.errors import ConfigurationError

__all__ = [
    "AttachmentMixin",
    "AttachmentRecord",
    "ChatMixin",
    "ChatRecord",
    "EventMixin",
    "JSONType",
    "LegacyChatMixin",
    "LegacyMessageMixin",
    "MessageMixin",
    "MessageRecord",
    "ModelMixin",
    "ModelRecord",
    "ToolCallMixin",
    "ToolCallRecord",
    "UsageMixin",
    "link_foreign_keys",
    "utcnow",
]

#: JSON everywhere, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")

# content_raw's type: Python None is SQL NULL, not the JSON value null that plain JSON stores
# for it, so `content_raw IS NULL` tells plain messages from raw ones.
_NullableJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# thinking_raw's type: JSON kept as written (PostgreSQL's json, not jsonb, which reorders keys
# and drops duplicates), with Python None as SQL NULL.
_RawJSON = JSON(none_as_null=True)

_DEFAULT_TABLES = {
    "chats": "chats",
    "messages": "messages",
    "tool_calls": "tool_calls",
    "models": "models",
    "attachments": "attachments",
}


def utcnow() -> datetime:
    """Timestamps are timezone-aware UTC with microseconds, so ordering rarely ties."""
    return datetime.now(timezone.utc)


# -- record bases ---------------------------------------------------------------------------------


class ChatRecord(ChatMethods):
    """The record API of a chat row (``ask``, ``complete``, ``with_*``, ...), without columns."""


class MessageRecord(MessageMethods):
    """The record API of a message row (``to_llm``, ``tokens``, ...), without columns."""


class ToolCallRecord(ToolCallMethods):
    """The record API of a tool-call row (``to_llm``, ...), without columns."""


class ModelRecord(ModelMethods):
    """The record API of a registry row (``to_llm``, ``supports_vision``, ...), without columns."""


class AttachmentRecord(AttachmentMethods):
    """The record API of an attachment row (``open``, ``read``, ``to_llm``), without columns."""


# -- foreign keys that follow the referenced class's table ---------------------------------------
#
# A mixin's foreign key is declared while its class is created, when the class it references may
# not exist yet, and frameworks name tables their own way (Flask-SQLAlchemy: ``chat``, not
# ``chats``). So the target is taken from the class that plays the referenced part when one is
# mapped already; otherwise the default name is used and the key is remembered, and when the
# referenced class is mapped under another name the key is pointed at its table (see
# docs/decisions.md, "Foreign keys follow the referenced class").

#: Options attribute of the ``@acts_as_*`` decorator, and record base, of each part.
_PARTS: dict[str, tuple[str, type[Any]]] = {}

#: The mapped classes that play a part, as they are mapped.
_mapped: weakref.WeakKeyDictionary[type[Any], tuple[str, Table]] = weakref.WeakKeyDictionary()

#: Foreign keys declared with a default table name that may still need pointing elsewhere.
_pending: weakref.WeakKeyDictionary[ForeignKey, str] = weakref.WeakKeyDictionary()


def _part_of(cls: type[Any]) -> str | None:
    """The part (``"chats"``, ``"messages"``, ...) ``cls`` plays, from its record base or the
    ``@acts_as_*`` decorator applied to it."""
    for part, (options, record) in _PARTS.items():
        if options in vars(cls) or issubclass(cls, record):
            return part
    return None


def _tables_of(metadata: Any, part: str) -> list[Table]:
    """The tables in ``metadata`` of the mapped classes that play ``part``."""
    tables: list[Table] = []
    for played, table in list(_mapped.values()):
        if played == part and table.metadata is metadata and table not in tables:
            tables.append(table)
    return tables


def _foreign_key(cls: Any, part: str, **options: Any) -> ForeignKey:
    """A foreign key to the ``id`` of the table playing ``part`` for the class ``cls``."""
    explicit = (getattr(cls, "__sa_llm_tables__", None) or {}).get(part)
    if explicit:
        return ForeignKey(f"{explicit}.id", **options)
    default = _DEFAULT_TABLES[part]
    metadata = getattr(cls, "metadata", None)
    tables = getattr(metadata, "tables", {})
    candidates = _tables_of(metadata, part)
    if default not in tables and len(candidates) == 1:
        return ForeignKey(f"{candidates[0].key}.id", **options)
    key = ForeignKey(f"{default}.id", **options)
    if default not in tables:
        _pending[key] = part
    return key


def _owner_key(cls: Any, part: str) -> Mapped[Any]:
    """The required, indexed FK to the row (playing ``part``) this one belongs to and is
    deleted with."""
    return mapped_column(_foreign_key(cls, part, ondelete="CASCADE"), nullable=False, index=True)


def _created_at() -> Mapped[Any]:
    """The time a row was inserted (a new column for each class that declares it)."""
    return mapped_column(DateTime(timezone=True), default=utcnow, nullable=False)


def _repoint(key: ForeignKey, table: Table) -> None:
    """Point ``key`` (unresolved, at a default table name) at ``table.id`` instead."""
    column = key.parent
    parent = column.table
    # The unresolved key waits in its metadata's memo for a table of the default name.
    key._remove_from_metadata(parent.metadata)
    if key.constraint is not None:
        parent.constraints.discard(key.constraint)
    parent.foreign_keys.discard(key)
    column.foreign_keys.discard(key)
    column.append_foreign_key(
        ForeignKey(
            f"{table.key}.id",
            name=key.name,
            ondelete=key.ondelete,
            onupdate=key.onupdate,
            use_alter=key.use_alter,
        )
    )


def link_foreign_keys(cls: type[Any]) -> None:
    """Point the mixins' pending foreign keys at the table of ``cls`` (a mapped class playing
    a part: chat, message, tool call, model or attachment) when it is not the default name.

    Called for you when a subclass of a mixin or record base is mapped, and by every
    ``@acts_as_*`` decorator; idempotent. A key is left alone when its metadata has a table of
    the default name, or when more than one class plays the part (name the table with
    ``__sa_llm_tables__`` then).
    """
    mapper = sa_inspect(cls, raiseerr=False)
    if isinstance(mapper, Mapper):
        _link(mapper, cls)


def _link(mapper: Mapper[Any], cls: type[Any]) -> None:
    part = _part_of(cls)
    table = mapper.local_table
    if part is None or not isinstance(table, Table):
        return
    metadata = table.metadata
    _mapped[cls] = (part, table)
    for key, wanted in list(_pending.items()):
        parent = getattr(getattr(key, "parent", None), "table", None)
        if wanted != part or not isinstance(parent, Table) or parent.metadata is not metadata:
            continue
        if _DEFAULT_TABLES[part] in metadata.tables:
            _pending.pop(key, None)  # resolves by its name
        elif _tables_of(metadata, part) == [table]:
            _pending.pop(key, None)
            _repoint(key, table)


# -- column mixins --------------------------------------------------------------------------------


class _Columns:
    """Base of the column mixins: refuses SQLModel, which cannot take them (see below)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if any(
            base.__name__ == "SQLModel" and base.__module__.startswith("sqlmodel")
            for base in cls.__mro__
        ):
            mixin = next(b.__name__ for b in cls.__mro__ if b.__module__ == __name__)
            # SQLModel makes a table model's columns from pydantic fields; the mixins' columns
            # are SQLAlchemy ``Mapped[...]`` declarations (with ``declared_attr`` foreign keys)
            # that pydantic cannot read, so the class would fail to build with a pydantic error.
            raise ConfigurationError(
                f"{cls.__name__}: sa_llm's column mixins ({mixin}) cannot be used with SQLModel: "
                "SQLModel builds a table model's columns from pydantic fields, and the mixins "
                "declare SQLAlchemy Mapped[...] columns that pydantic cannot read. Declare the "
                f"columns as SQLModel fields and inherit {mixin.replace('Legacy', '')[:-5]}"
                "Record instead (it adds the methods, no columns), then decorate the class as "
                "usual; see docs/recipes/sqlmodel.md."
            )
        super().__init_subclass__(**kwargs)


class _TurnLease:
    """The turn lease of a chat: which turn holds it, until when, and a cancel request.

    Written by sa_llm only (one short conditional UPDATE in the steps a turn commits anyway);
    they make one turn per chat hold across processes and hosts (docs/persistence.md).
    """

    #: The running turn's token; ``None`` when no turn runs.
    turn_token: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
    #: When the running turn's lease ends unless its heartbeat renews it.
    turn_expires_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, default=None
    )
    #: Set by ``chat.cancel()`` (from any process); the running turn stops within a second.
    cancel_requested_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True, default=None
    )


class _EventCounter:
    """The chat's event-log counter: the ``seq`` of its last event (chats with an event log)."""

    event_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")


class _Timestamps:
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow, nullable=False
    )


class ChatMixin(ChatRecord, _TurnLease, _EventCounter, _Timestamps, _Columns):
    """Columns of a chat: ``id``, ``model_id`` (FK to the registry), the turn lease,
    timestamps."""

    __sa_llm_tables__: ClassVar[dict[str, str]] = {}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)

    @declared_attr
    def model_id(cls) -> Mapped[Any]:
        return mapped_column(
            _foreign_key(cls, "models", ondelete="SET NULL"),
            nullable=True,
            index=True,
        )


class LegacyChatMixin(ChatRecord, _TurnLease, _EventCounter, _Timestamps, _Columns):
    """Columns of a chat without the registry: the model id is a plain string."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class _MessageColumns(_Timestamps, _Columns):
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    #: Where the message is: ``pending`` / ``streaming`` (a turn is writing it), ``complete``,
    #: ``failed`` / ``cancelled`` / ``interrupted`` (kept partial output). ``None``: complete.
    status: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)
    content: Mapped[str | None] = mapped_column(Text, nullable=True)
    content_raw: Mapped[Any | None] = mapped_column(_NullableJSON, nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cached_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cache_creation_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    thinking_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    thinking_signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    thinking_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Every thinking/reasoning block of the reply as the provider sent it (signatures,
    #: redacted blocks, reasoning items), replayed byte for byte on later turns. Plain JSON
    #: on PostgreSQL too: JSONB would reorder the blocks' keys.
    thinking_raw: Mapped[Any | None] = mapped_column(_RawJSON, nullable=True)

    @declared_attr
    def chat_id(cls) -> Mapped[Any]:
        return mapped_column(_foreign_key(cls, "chats", ondelete="CASCADE"), nullable=False)

    @declared_attr
    def tool_call_id(cls) -> Mapped[Any]:
        # The call this tool result answers (an FK), not the provider's string id.
        return mapped_column(
            _foreign_key(
                cls,
                "tool_calls",
                ondelete="SET NULL",
                use_alter=True,
                # ALTER-created constraints need a name to be dropped again (PostgreSQL).
                name=f"fk_{cls.__tablename__}_tool_call_id",  # type: ignore[attr-defined]
            ),
            nullable=True,
            index=True,
        )

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # History is read by chat in (created_at, id) order: one index serves it.
        return (Index(f"ix_{cls.__tablename__}_chat_order", "chat_id", "created_at", "id"),)  # type: ignore[attr-defined]


class MessageMixin(MessageRecord, _MessageColumns):
    """Columns of a message: role, content, raw content, tokens, thinking, FKs, timestamps."""

    __sa_llm_tables__: ClassVar[dict[str, str]] = {}

    @declared_attr
    def model_id(cls) -> Mapped[Any]:
        return mapped_column(_foreign_key(cls, "models", ondelete="SET NULL"), nullable=True)


class LegacyMessageMixin(MessageRecord, _MessageColumns):
    """Columns of a message without the registry: the model id is a plain string."""

    __sa_llm_tables__: ClassVar[dict[str, str]] = {}

    model_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


class ToolCallMixin(ToolCallRecord, _Columns):
    """Columns of a tool call: provider id, name, JSON arguments, message FK, approval."""

    __sa_llm_tables__: ClassVar[dict[str, str]] = {}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tool_call_id: Mapped[str] = mapped_column(String(255), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    arguments: Mapped[Any] = mapped_column(JSONType, nullable=False, default=dict)
    thought_signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Tool approval (sa_llm.approval): ``pending`` (the turn parked on it), ``approved`` or
    #: ``denied``; ``None`` for calls that needed no decision.
    approval: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)
    #: SHA-256 of the arguments the approval state is about: a decision never applies to
    #: arguments that changed since.
    approval_arguments_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Who decided (what the application passed to ``approve(by=...)`` / ``deny``).
    approval_decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: When the decision was recorded.
    approval_decided_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    #: Why the call was denied (the model reads it).
    approval_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = _created_at()

    @declared_attr
    def message_id(cls) -> Mapped[Any]:
        return _owner_key(cls, "messages")

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # The provider's id is unique within its message, not globally.
        return (
            UniqueConstraint(
                "message_id",
                "tool_call_id",
                name=f"uq_{cls.__tablename__}_message_call",  # type: ignore[attr-defined]
            ),
        )


class ModelMixin(ModelRecord, _Timestamps, _Columns):
    """Columns of a registry row: ids, provider, limits, modalities, capabilities, pricing."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(255), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    provider: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    family: Mapped[str | None] = mapped_column(String(255), nullable=True)
    model_created_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    context_window: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    knowledge_cutoff: Mapped[str | None] = mapped_column(String(32), nullable=True)
    modalities: Mapped[Any] = mapped_column(JSONType, nullable=False, default=dict)
    capabilities: Mapped[Any] = mapped_column(JSONType, nullable=False, default=list)
    pricing: Mapped[Any] = mapped_column(JSONType, nullable=False, default=dict)
    model_metadata: Mapped[Any] = mapped_column("metadata", JSONType, nullable=False, default=dict)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            UniqueConstraint("provider", "model_id", name=f"uq_{cls.__tablename__}_provider_model"),  # type: ignore[attr-defined]
        )


class AttachmentMixin(AttachmentRecord, _Columns):
    """Columns of a stored file: message FK, filename, content type, size, SHA-256, storage key.

    The bytes live in a :mod:`sa_llm.storage` backend, never in the database.
    """

    __sa_llm_tables__: ClassVar[dict[str, str]] = {}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    content_type: Mapped[str] = mapped_column(String(255), nullable=False)
    byte_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    storage_key: Mapped[str] = mapped_column(String(1024), nullable=False)
    created_at: Mapped[datetime] = _created_at()

    @declared_attr
    def message_id(cls) -> Mapped[Any]:
        return _owner_key(cls, "messages")


class EventMixin(_Columns):
    """Columns of a chat's event log (``@acts_as_event``): chat FK, ``seq``, ``kind``,
    ``message_id``, ``data``, ``created_at``; unique ``(chat_id, seq)``.

    One row per change a viewer needs (see :mod:`sa_llm.events`), written by sa_llm in the
    transaction of the change itself.
    """

    __sa_llm_tables__: ClassVar[dict[str, str]] = {}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    #: The event's place in its chat's log: 1, 2, 3, ... with no gap.
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    #: What happened: ``message.created``, ``message.delta``, ``message.completed``, ...
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    #: The message it is about, as a string (integer and UUID keys alike); no foreign key: the
    #: event of a deleted placeholder outlives it.
    message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: The details (text of a delta, status, content, ...).
    data: Mapped[Any] = mapped_column(JSONType, nullable=False)
    created_at: Mapped[datetime] = _created_at()

    @declared_attr
    def chat_id(cls) -> Mapped[Any]:
        return mapped_column(_foreign_key(cls, "chats", ondelete="CASCADE"), nullable=False)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # Viewers read a chat's events in seq order; the pair is unique (no doubled seq).
        table = cls.__tablename__  # type: ignore[attr-defined]
        return (UniqueConstraint("chat_id", "seq", name=f"uq_{table}_chat_seq"),)


_PARTS.update(
    chats=(CHAT_OPTIONS, ChatRecord),
    messages=(MESSAGE_OPTIONS, MessageRecord),
    tool_calls=(TOOL_CALL_OPTIONS, ToolCallRecord),
    models=(MODEL_OPTIONS, ModelRecord),
    attachments=(ATTACHMENT_OPTIONS, AttachmentRecord),
)
for _record in (ChatRecord, MessageRecord, ToolCallRecord, ModelRecord, AttachmentRecord):
    # Per record base (so per mixin), not Mapper-wide: only sa_llm's classes are looked at.
    event.listen(_record, "after_mapper_constructed", _link, propagate=True)


#: The type of the ledger's cost columns: exact decimals, 10 places (a token of the cheapest
#: model costs a few billionths of a dollar). SQLite has no decimal type and stores floats.
CostType = Numeric(18, 10, asdecimal=True)


class UsageMixin(_Columns):
    """Columns of a chat's usage ledger (``@acts_as_usage``): one row per physical provider
    attempt, retries and failed or cancelled streams included.

    Token columns are ``NULL`` when the provider did not report them and ``0`` when it reported
    zero; ``input_tokens`` includes the cache reads and writes, which have their own columns
    too. The cost is computed when the attempt ends, from the prices in force then, and never
    recomputed: later price changes do not rewrite history. The foreign keys keep a deleted
    message's rows (``ON DELETE SET NULL``) and delete a deleted chat's (``ON DELETE CASCADE``),
    where the database enforces foreign keys.
    """

    __sa_llm_tables__: ClassVar[dict[str, str]] = {}

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    #: The provider's name (``openai``, ``anthropic``, ...).
    provider: Mapped[str] = mapped_column(String(64), nullable=False)
    #: The model id as sent in the request.
    model: Mapped[str] = mapped_column(String(255), nullable=False)
    #: 1 for the first attempt of a provider call, 2 for its first retry, ...
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    #: Whether the request asked for a stream.
    streamed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: ``ok``, ``cancelled``, or the class name of the error (``RateLimitError``, ...).
    outcome: Mapped[str] = mapped_column(String(64), nullable=False)
    #: The provider's HTTP status; ``NULL`` when no response arrived.
    http_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cache_read_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cache_write_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Seconds from the request to the first chunk of a stream.
    first_chunk_seconds: Mapped[float | None] = mapped_column(Double, nullable=True)
    #: Seconds from the request to the end of the attempt.
    duration_seconds: Mapped[float | None] = mapped_column(Double, nullable=True)
    input_cost: Mapped[Decimal | None] = mapped_column(CostType, nullable=True)
    output_cost: Mapped[Decimal | None] = mapped_column(CostType, nullable=True)
    cache_read_cost: Mapped[Decimal | None] = mapped_column(CostType, nullable=True)
    cache_write_cost: Mapped[Decimal | None] = mapped_column(CostType, nullable=True)
    reasoning_cost: Mapped[Decimal | None] = mapped_column(CostType, nullable=True)
    #: The attempt's cost; ``NULL`` when its tokens or the model's prices are unknown.
    total_cost: Mapped[Decimal | None] = mapped_column(CostType, nullable=True)
    #: ISO 4217 code of the costs (``USD``).
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    created_at: Mapped[datetime] = _created_at()

    @declared_attr
    def chat_id(cls) -> Mapped[Any]:
        return _owner_key(cls, "chats")

    @declared_attr
    def message_id(cls) -> Mapped[Any]:
        return mapped_column(
            _foreign_key(cls, "messages", ondelete="SET NULL"), nullable=True, index=True
        )
