"""The resolved schema of your classes: what each ``@acts_as_*`` decorator records, and the
classes and attribute names the persistence layer works with.

Options hold association names, class names and foreign-key attribute names exactly as given
(or defaulted). :func:`chat_schema` resolves them into a :class:`ChatSchema`: the chat's
message, tool-call, model and attachment classes and the attribute name of every link, found
once (after the mappers configure) and cached on the chat class.

This module is a leaf both layers read: the declarative layer (:mod:`sa_llm.declarative`) wires
relationships from it, and the persistence layer (:mod:`sa_llm.persistence`) writes rows
through it, so neither reaches into the other.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import ColumnProperty, Mapper

from sa_llm.errors import ConfigurationError

if TYPE_CHECKING:
    from sa_llm.persistence import PersistenceStrategy

__all__ = [
    "APPROVAL_COLUMNS",
    "CACHE_AND_THINKING_COLUMNS",
    "EVENT_OPTIONS",
    "LEASE_COLUMNS",
    "USAGE_COLUMNS",
    "USAGE_OPTIONS",
    "AttachmentOptions",
    "ChatOptions",
    "ChatSchema",
    "MessageOptions",
    "ModelOptions",
    "ToolCallOptions",
    "UsageOptions",
    "classify",
    "decorated_class",
    "find_class",
    "underscore",
]

CHAT_OPTIONS = "__sa_llm_chat__"
MESSAGE_OPTIONS = "__sa_llm_message__"
TOOL_CALL_OPTIONS = "__sa_llm_tool_call__"
MODEL_OPTIONS = "__sa_llm_model__"
ATTACHMENT_OPTIONS = "__sa_llm_attachment__"
EVENT_OPTIONS = "__sa_llm_event__"
USAGE_OPTIONS = "__sa_llm_usage__"

# The decorator that stores each of the options above.
_DECORATORS = {
    CHAT_OPTIONS: "acts_as_chat",
    MESSAGE_OPTIONS: "acts_as_message",
    TOOL_CALL_OPTIONS: "acts_as_tool_call",
    MODEL_OPTIONS: "acts_as_model",
    ATTACHMENT_OPTIONS: "acts_as_attachment",
    EVENT_OPTIONS: "acts_as_event",
    USAGE_OPTIONS: "acts_as_usage",
}


def underscore(name: str) -> str:
    """``ChatMessage`` -> ``chat_message`` (the last dotted part only)."""
    name = name.rsplit(".", 1)[-1]
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def singularize(word: str) -> str:
    """English singular of an association name, for the usual cases."""
    if word.endswith("ies") and len(word) > 3:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def classify(association: str) -> str:
    """``chat_messages`` -> ``ChatMessage``; ``ai_model`` -> ``AiModel``."""
    return "".join(part[:1].upper() + part[1:] for part in singularize(association).split("_"))


@dataclass
class ChatOptions:
    """Options of ``@acts_as_chat`` (see :func:`sa_llm.declarative.acts_as_chat`)."""

    messages: str = "messages"
    message_class: str | None = None
    messages_foreign_key: str | None = None
    model: str | None = "model"
    model_class: str | None = None
    model_foreign_key: str | None = None
    model_id_column: str = "model_id"
    persistence: PersistenceStrategy | None = None

    @property
    def legacy(self) -> bool:
        return self.model is None


@dataclass
class _ChatLink:
    """The association to a chat: its name, class (default: its CamelCase) and FK attribute."""

    chat: str = "chat"
    chat_class: str | None = None
    chat_foreign_key: str | None = None


@dataclass
class _MessageLink:
    """The association to a message: its name, class (default: its CamelCase), FK attribute."""

    message: str = "message"
    message_class: str | None = None
    message_foreign_key: str | None = None


@dataclass
class MessageOptions(_ChatLink):
    """Options of ``@acts_as_message``."""

    tool_calls: str = "tool_calls"
    tool_call_class: str | None = None
    tool_calls_foreign_key: str | None = None
    parent_tool_call_foreign_key: str | None = None
    model: str | None = "model"
    model_class: str | None = None
    model_foreign_key: str | None = None
    model_id_column: str = "model_id"
    touch_chat: bool = False
    attachments: str | None = "attachments"
    attachment_class: str | None = None
    attachments_foreign_key: str | None = None


@dataclass
class ToolCallOptions(_MessageLink):
    """Options of ``@acts_as_tool_call``."""

    result: str = "result"
    result_class: str | None = None
    result_foreign_key: str | None = None


@dataclass
class AttachmentOptions(_MessageLink):
    """Options of ``@acts_as_attachment``."""


@dataclass
class EventOptions(_ChatLink):
    """Options of ``@acts_as_event``."""


@dataclass
class UsageOptions(_ChatLink):
    """Options of ``@acts_as_usage``."""

    message_foreign_key: str | None = None


@dataclass
class ModelOptions:
    """Options of ``@acts_as_model``."""

    chats: str = "chats"
    chat_class: str | None = None
    chats_foreign_key: str | None = None


def find_class(anchor: type[Any], name: str, *, owner: type[Any], option: str) -> type[Any]:
    """The mapped class called ``name`` in ``anchor``'s registry.

    ``name`` may be a bare class name, a dotted suffix of the module path
    (``"assistants.BotChat"``) or the full ``"module.Class"`` path.

    Raises:
        ConfigurationError: no such class; names the class and option that refer to it.
    """
    candidates: list[type[Any]] = []
    for mapper in sa_inspect(anchor).registry.mappers:
        cls = mapper.class_
        # "module.Class" as SQLAlchemy's own string resolver reads it (by __name__), so
        # classes made inside a function resolve too, and with their full qualified name.
        paths = {f"{cls.__module__}.{cls.__qualname__}", f"{cls.__module__}.{cls.__name__}"}
        if name in (cls.__name__, cls.__qualname__) or any(
            path == name or path.endswith("." + name) for path in paths
        ):
            candidates.append(cls)
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise ConfigurationError(
            f"{owner.__name__}: {option}={name!r} names no mapped class in this registry. "
            f"Pass {option}='ClassName' (or 'module.ClassName') of the right model."
        )
    names = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in candidates)
    raise ConfigurationError(
        f"{owner.__name__}: {option}={name!r} is ambiguous ({names}); qualify it with the module."
    )


def column_attribute(cls: type[Any], name: str, *, option: str) -> str:
    """Check that ``cls`` maps an attribute ``name`` backed by a column; return the name.

    Raises:
        ConfigurationError: no such column attribute; names the class and option.
    """
    if not has_column(cls, name):
        raise ConfigurationError(
            f"{cls.__name__} has no column attribute {name!r} (needed by {option}). "
            f"Add the column, or pass {option}='<your column attribute>'."
        )
    return name


def has_column(cls: type[Any], name: str) -> bool:
    """Whether ``cls`` maps a column attribute ``name`` (without configuring the mappers)."""
    mapper = sa_inspect(cls)
    if not mapper.has_property(name):
        return False
    return isinstance(mapper.get_property(name, _configure_mappers=False), ColumnProperty)


@dataclass
class ChatSchema:
    """The resolved classes and attribute names one chat class persists through.

    Attributes:
        chat_cls, message_cls, tool_call_cls, model_cls: the mapped classes (no model class in
            legacy mode).
        message_chat_fk: the message's FK attribute to its chat.
        message_parent_fk: the message's FK attribute to the tool call it answers.
        message_model_attr: the message's model FK (registry) or model-id string (legacy).
        tool_call_message_fk: the tool call's FK attribute to its message.
        chat_model_attr: the chat's model FK (registry) or model-id string (legacy).
        messages_attr: the chat's relationship to its messages.
        lease: whether the chat class has the turn-lease columns (``turn_token``,
            ``turn_expires_at``, ``cancel_requested_at``): turns are then one at a time across
            processes; without them only within one process (an older schema).
        optional: the optional message columns that exist (cached tokens, thinking, status...).
        attachment_cls: the ``@acts_as_attachment`` class, ``None`` when files are not stored.
        attachment_message_fk: the attachment's FK attribute to its message.
        message_attachments_attr: the message's relationship to its attachments.
        event_cls: the ``@acts_as_event`` class of this chat (its event log), or ``None``.
        event_chat_fk: the event's FK attribute to its chat.
        usage_cls: the ``@acts_as_usage`` class of this chat (its usage ledger), or ``None``.
        usage_chat_fk: the ledger row's FK attribute to its chat.
        usage_message_fk: the ledger row's FK attribute to the message the attempt produced
            (``None``: the class keeps no such link).
        usage_columns: the ledger columns the class maps (those sa_llm writes).
        approval: whether the tool-call class has the approval columns
            (:data:`APPROVAL_COLUMNS`): tool calls can then wait for a decision.
    """

    chat_cls: type[Any]
    message_cls: type[Any]
    tool_call_cls: type[Any]
    model_cls: type[Any] | None
    message_chat_fk: str
    message_parent_fk: str
    message_model_attr: str | None
    tool_call_message_fk: str
    chat_model_attr: str | None
    messages_attr: str = "messages"
    lease: bool = False
    optional: frozenset[str] = field(default_factory=frozenset)
    optional_tool_call: frozenset[str] = field(default_factory=frozenset)
    attachment_cls: type[Any] | None = None
    attachment_message_fk: str | None = None
    message_attachments_attr: str | None = None
    event_cls: type[Any] | None = None
    event_chat_fk: str | None = None
    usage_cls: type[Any] | None = None
    usage_chat_fk: str | None = None
    usage_message_fk: str | None = None
    usage_columns: frozenset[str] = field(default_factory=frozenset)
    approval: bool = False

    @property
    def legacy(self) -> bool:
        return self.model_cls is None

    # The mappers, looked up once: a turn asks for them in several steps.
    @functools.cached_property
    def chat_mapper(self) -> Mapper[Any]:
        """The chat class's mapper."""
        mapper: Mapper[Any] = sa_inspect(self.chat_cls)
        return mapper

    @functools.cached_property
    def chat_table_name(self) -> str:
        """The name of the chat class's table (wake-up and event keys carry it)."""
        table: Any = self.chat_mapper.local_table
        return str(table.name)

    @functools.cached_property
    def message_mapper(self) -> Mapper[Any]:
        """The message class's mapper."""
        mapper: Mapper[Any] = sa_inspect(self.message_cls)
        return mapper


#: The chat columns of the turn lease (all or none).
LEASE_COLUMNS = ("turn_token", "turn_expires_at", "cancel_requested_at")

#: The tool-call columns of tool approval (all or none).
APPROVAL_COLUMNS = (
    "approval",
    "approval_arguments_hash",
    "approval_decided_by",
    "approval_decided_at",
    "approval_reason",
)

#: The optional message columns of a reply's cache counts and thinking (later additions).
CACHE_AND_THINKING_COLUMNS = (
    "cached_tokens",
    "cache_creation_tokens",
    "thinking_text",
    "thinking_signature",
    "thinking_tokens",
    "thinking_raw",
)

_OPTIONAL_MESSAGE_COLUMNS = ("status", "content_raw", *CACHE_AND_THINKING_COLUMNS)


def foreign_key(cls: type[Any], explicit: str | None, candidates: list[str], option: str) -> str:
    """The FK attribute: the explicit one (must exist), else the first candidate that exists."""
    if explicit is not None:
        return column_attribute(cls, explicit, option=option)
    for name in candidates:
        if has_column(cls, name):
            return name
    raise ConfigurationError(
        f"{cls.__name__} has no foreign-key column {candidates[0]!r} (tried "
        f"{', '.join(repr(c) for c in candidates)}). Add it, or pass {option}='<column attribute>'."
    )


def _linked_foreign_key(
    cls: type[Any],
    own: tuple[str | None, str],
    other: tuple[str | None, str],
    candidates: list[str],
) -> str:
    """The FK attribute of a link that both sides may name: ``own`` (this side's option value
    and name) first, else ``other``'s, else the first candidate that exists. Errors name the
    option the user passed (this side's when neither was)."""
    (own_value, own_option), (other_value, other_option) = own, other
    option = own_option if own_value or not other_value else other_option
    return foreign_key(cls, own_value or other_value, candidates, option)


def decorated_class(owner: type[Any], name: str, option: str, options_attr: str) -> type[Any]:
    """The class ``name`` (``owner``'s ``option``, e.g. ``message_class``) resolved, and
    decorated (its options stored under ``options_attr``).

    Raises:
        ConfigurationError: no such class, or it is not decorated.
    """
    found = find_class(owner, name, owner=owner, option=option)
    if getattr(found, options_attr, None) is None:
        kind, decorator = option.replace("_", " "), _DECORATORS[options_attr]
        raise ConfigurationError(
            f"{owner.__name__}: {kind} {found.__name__} is not decorated with @{decorator}."
        )
    return found


def _all_or_none(cls: type[Any], columns: tuple[str, ...], feature: str) -> bool:
    """Whether ``cls`` has the ``columns`` of a feature, which come all together or not at all.

    Raises:
        ConfigurationError: some of them but not all.
    """
    present = [name for name in columns if has_column(cls, name)]
    if present and len(present) != len(columns):
        missing = ", ".join(name for name in columns if name not in present)
        raise ConfigurationError(
            f"{cls.__name__} has some of the {feature} columns but not {missing}: add them all "
            "(sa-llm upgrade writes the migration) or none."
        )
    return bool(present)


# -- schema resolution ----------------------------------------------------------------------------


def chat_schema(chat_cls: type[Any]) -> ChatSchema:
    """The resolved classes and link attributes of a chat class (cached after the first call).

    Raises:
        ConfigurationError: a named class or column does not exist.
    """
    cached = chat_cls.__dict__.get("__sa_llm_schema__")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    options: ChatOptions | None = getattr(chat_cls, CHAT_OPTIONS, None)
    if options is None:
        raise ConfigurationError(f"{chat_cls.__name__} is not decorated with @acts_as_chat.")
    name = options.message_class or classify(options.messages)
    message_cls = decorated_class(chat_cls, name, "message_class", MESSAGE_OPTIONS)
    m_options: MessageOptions = getattr(message_cls, MESSAGE_OPTIONS)
    name = m_options.tool_call_class or classify(m_options.tool_calls)
    tool_call_cls = decorated_class(message_cls, name, "tool_call_class", TOOL_CALL_OPTIONS)
    tc_options: ToolCallOptions = getattr(tool_call_cls, TOOL_CALL_OPTIONS)
    model_cls = None
    chat_model_attr: str | None
    message_model_attr: str | None
    if options.legacy:
        chat_model_attr = column_attribute(
            chat_cls, options.model_id_column, option="model_id_column"
        )
        message_model_attr = (
            m_options.model_id_column
            if has_column(message_cls, m_options.model_id_column)
            else None
        )
    else:
        assert options.model is not None
        model_cls = find_class(
            chat_cls,
            options.model_class or classify(options.model),
            owner=chat_cls,
            option="model_class",
        )
        chat_model_attr = foreign_key(
            chat_cls,
            options.model_foreign_key,
            [f"{options.model}_id", "model_id"],
            "model_foreign_key",
        )
        message_model_attr = (
            foreign_key(
                message_cls,
                m_options.model_foreign_key,
                [f"{m_options.model}_id", "model_id"],
                "model_foreign_key",
            )
            if m_options.model is not None
            else None
        )
    # Errors name the option the user actually passed (each link has two spellings).
    message_chat_fk = foreign_key(
        message_cls,
        options.messages_foreign_key or m_options.chat_foreign_key,
        [f"{m_options.chat}_id", f"{underscore(chat_cls.__name__)}_id", "chat_id"],
        "messages_foreign_key" if options.messages_foreign_key else "chat_foreign_key",
    )
    message_parent_fk = _linked_foreign_key(
        message_cls,
        (tc_options.result_foreign_key, "result_foreign_key"),
        (m_options.parent_tool_call_foreign_key, "parent_tool_call_foreign_key"),
        [f"{underscore(tool_call_cls.__name__)}_id", "tool_call_id"],
    )
    tool_call_message_fk = _linked_foreign_key(
        tool_call_cls,
        (tc_options.message_foreign_key, "message_foreign_key"),
        (m_options.tool_calls_foreign_key, "tool_calls_foreign_key"),
        [f"{tc_options.message}_id", f"{underscore(message_cls.__name__)}_id", "message_id"],
    )
    for attr in ("role", "content", "created_at", "input_tokens", "output_tokens"):
        column_attribute(message_cls, attr, option=f"{message_cls.__name__}.{attr}")
    for attr in ("tool_call_id", "name", "arguments"):
        column_attribute(tool_call_cls, attr, option=f"{tool_call_cls.__name__}.{attr}")
    attachment_cls = attachment_class(message_cls)
    lease = _all_or_none(chat_cls, LEASE_COLUMNS, "turn-lease")
    approval = _all_or_none(tool_call_cls, APPROVAL_COLUMNS, "tool-approval")
    event_cls = event_class(chat_cls)
    event_chat_fk = None
    if event_cls is not None:
        e_options: EventOptions = getattr(event_cls, EVENT_OPTIONS)
        event_chat_fk = foreign_key(
            event_cls, e_options.chat_foreign_key, [f"{e_options.chat}_id", "chat_id"],
            "chat_foreign_key",
        )  # fmt: skip
        for attr in ("seq", "kind", "message_id", "data"):
            column_attribute(event_cls, attr, option=f"{event_cls.__name__}.{attr}")
        column_attribute(chat_cls, "event_seq", option=f"{chat_cls.__name__}.event_seq")
    schema = ChatSchema(
        chat_cls=chat_cls,
        message_cls=message_cls,
        tool_call_cls=tool_call_cls,
        model_cls=model_cls,
        message_chat_fk=message_chat_fk,
        message_parent_fk=message_parent_fk,
        message_model_attr=message_model_attr,
        tool_call_message_fk=tool_call_message_fk,
        chat_model_attr=chat_model_attr,
        messages_attr=options.messages,
        lease=lease,
        optional=frozenset(c for c in _OPTIONAL_MESSAGE_COLUMNS if has_column(message_cls, c)),
        optional_tool_call=frozenset(
            c for c in ("thought_signature",) if has_column(tool_call_cls, c)
        ),
        attachment_cls=attachment_cls,
        attachment_message_fk=(
            attachment_foreign_key(message_cls, attachment_cls)
            if attachment_cls is not None
            else None
        ),
        message_attachments_attr=m_options.attachments if attachment_cls is not None else None,
        event_cls=event_cls,
        event_chat_fk=event_chat_fk,
        approval=approval,
        **_usage_links(chat_cls, message_cls),
    )
    chat_cls.__sa_llm_schema__ = schema
    return schema


def event_class(chat_cls: type[Any]) -> type[Any] | None:
    """The ``@acts_as_event`` class whose ``chat`` is ``chat_cls``, or ``None`` (no event log).

    Raises:
        ConfigurationError: two event classes for one chat class.
    """
    return _linked_class(chat_cls, EVENT_OPTIONS, "event")


def _linked_class(chat_cls: type[Any], options_attr: str, kind: str) -> type[Any] | None:
    """The class whose options (stored under ``options_attr``) link it to ``chat_cls``, or
    ``None``; two such classes are a :class:`ConfigurationError` naming them as ``kind``."""
    found = []
    for mapper in list(sa_inspect(chat_cls).registry.mappers):
        other = mapper.class_
        options: _ChatLink | None = getattr(other, options_attr, None)
        if options is None:
            continue
        target = find_class(
            other, options.chat_class or classify(options.chat), owner=other, option="chat_class"
        )
        if target is chat_cls:
            found.append(other)
    if len(found) > 1:
        names = ", ".join(cls.__name__ for cls in found)
        raise ConfigurationError(f"{chat_cls.__name__} has several {kind} classes: {names}.")
    return found[0] if found else None


def attachment_class(message_cls: type[Any]) -> type[Any] | None:
    """The ``@acts_as_attachment`` class of a message class, or ``None`` if files are not stored.

    The default name (``Attachment``) may be absent, or name an undecorated class (a models
    module written before files were stored): files are then sent but not stored. A name given
    explicitly must resolve.

    Raises:
        ConfigurationError: an explicit class that is missing or not decorated, or a decorated
            attachment class of this message that the default name does not find.
    """
    options: MessageOptions = getattr(message_cls, MESSAGE_OPTIONS)
    if options.attachments is None:
        return None
    name = options.attachment_class or classify(options.attachments)
    explicit = options.attachment_class is not None
    found: type[Any] | None
    try:
        found = find_class(message_cls, name, owner=message_cls, option="attachment_class")
    except ConfigurationError:
        if explicit:
            raise
        found = None
    if found is not None and getattr(found, ATTACHMENT_OPTIONS, None) is not None:
        return found
    if explicit:
        raise ConfigurationError(
            f"{message_cls.__name__}: attachment class {name!r} is not decorated with "
            "@acts_as_attachment."
        )
    for mapper in list(sa_inspect(message_cls).registry.mappers):
        other = mapper.class_
        if other is found or getattr(other, ATTACHMENT_OPTIONS, None) is None:
            continue
        if attachment_message_class(other) is message_cls:
            raise ConfigurationError(
                f"{message_cls.__name__}: {other.__name__} is an @acts_as_attachment class of "
                f"this message, but the message looks for {name!r}; pass "
                f"@acts_as_message(attachments=..., attachment_class={other.__name__!r})."
            )
    return None


def attachment_message_class(attachment_cls: type[Any]) -> type[Any] | None:
    options: AttachmentOptions = getattr(attachment_cls, ATTACHMENT_OPTIONS)
    try:
        return find_class(
            attachment_cls,
            options.message_class or classify(options.message),
            owner=attachment_cls,
            option="message_class",
        )
    except ConfigurationError:
        return None


def attachment_foreign_key(message_cls: type[Any], attachment_cls: type[Any]) -> str:
    options: AttachmentOptions = getattr(attachment_cls, ATTACHMENT_OPTIONS)
    m_options: MessageOptions = getattr(message_cls, MESSAGE_OPTIONS)
    return _linked_foreign_key(
        attachment_cls,
        (options.message_foreign_key, "message_foreign_key"),
        (m_options.attachments_foreign_key, "attachments_foreign_key"),
        [f"{options.message}_id", f"{underscore(message_cls.__name__)}_id", "message_id"],
    )


# -- the usage ledger ----------------------------------------------------------------------------

#: Every column of a usage ledger row sa_llm writes; a class maps these it wants (the first five
#: are required).
USAGE_COLUMNS = (
    "provider", "model", "outcome", "input_tokens", "output_tokens",
    "attempt", "streamed", "started_at", "finished_at", "http_status",
    "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
    "first_chunk_seconds", "duration_seconds",
    "input_cost", "output_cost", "cache_read_cost", "cache_write_cost", "reasoning_cost",
    "total_cost", "currency",
)  # fmt: skip
_REQUIRED_USAGE_COLUMNS = USAGE_COLUMNS[:5]


def usage_class(chat_cls: type[Any]) -> type[Any] | None:
    """The ``@acts_as_usage`` class whose ``chat`` is ``chat_cls``, or ``None`` (no ledger).

    Raises:
        ConfigurationError: two usage classes for one chat class.
    """
    return _linked_class(chat_cls, USAGE_OPTIONS, "usage")


def _usage_links(chat_cls: type[Any], message_cls: type[Any]) -> dict[str, Any]:
    """The :class:`ChatSchema` fields of the chat's usage ledger (empty without one)."""
    usage_cls = usage_class(chat_cls)
    if usage_cls is None:
        return {}
    options: UsageOptions = getattr(usage_cls, USAGE_OPTIONS)
    chat_fk = foreign_key(
        usage_cls,
        options.chat_foreign_key,
        [f"{options.chat}_id", f"{underscore(chat_cls.__name__)}_id", "chat_id"],
        "chat_foreign_key",
    )
    message_fk = None
    if options.message_foreign_key is not None:
        message_fk = column_attribute(
            usage_cls, options.message_foreign_key, option="message_foreign_key"
        )
    else:
        candidates = [f"{underscore(message_cls.__name__)}_id", "message_id"]
        message_fk = next((name for name in candidates if has_column(usage_cls, name)), None)
    for attr in _REQUIRED_USAGE_COLUMNS:
        column_attribute(usage_cls, attr, option=f"{usage_cls.__name__}.{attr}")
    return {
        "usage_cls": usage_cls,
        "usage_chat_fk": chat_fk,
        "usage_message_fk": message_fk,
        "usage_columns": frozenset(c for c in USAGE_COLUMNS if has_column(usage_cls, c)),
    }
