"""What each ``@acts_as_*`` decorator records on a class, and the names resolved from it.

Options hold association names, class names and foreign-key attribute names exactly as given
(or defaulted). :class:`ChatSchema` is the resolved view the persistence flow works with: the
four classes and the attribute names of every link, found once when mappers configure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import ColumnProperty

from sa_llm.errors import ConfigurationError

if TYPE_CHECKING:
    from sa_llm.persistence import PersistenceStrategy

__all__ = [
    "AttachmentOptions",
    "ChatOptions",
    "ChatSchema",
    "MessageOptions",
    "ModelOptions",
    "ToolCallOptions",
    "classify",
    "find_class",
    "underscore",
]

CHAT_OPTIONS = "__sa_llm_chat__"
MESSAGE_OPTIONS = "__sa_llm_message__"
TOOL_CALL_OPTIONS = "__sa_llm_tool_call__"
MODEL_OPTIONS = "__sa_llm_model__"
ATTACHMENT_OPTIONS = "__sa_llm_attachment__"


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
class MessageOptions:
    """Options of ``@acts_as_message``."""

    chat: str = "chat"
    chat_class: str | None = None
    chat_foreign_key: str | None = None
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
class ToolCallOptions:
    """Options of ``@acts_as_tool_call``."""

    message: str = "message"
    message_class: str | None = None
    message_foreign_key: str | None = None
    result: str = "result"
    result_class: str | None = None
    result_foreign_key: str | None = None


@dataclass
class AttachmentOptions:
    """Options of ``@acts_as_attachment``."""

    message: str = "message"
    message_class: str | None = None
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
    for mapper in anchor.registry.mappers:
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
        optional: the optional message columns that exist (cached tokens, thinking, ...).
        attachment_cls: the ``@acts_as_attachment`` class, ``None`` when files are not stored.
        attachment_message_fk: the attachment's FK attribute to its message.
        message_attachments_attr: the message's relationship to its attachments.
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
    messages_attr: str
    optional: frozenset[str] = field(default_factory=frozenset)
    optional_tool_call: frozenset[str] = field(default_factory=frozenset)
    attachment_cls: type[Any] | None = None
    attachment_message_fk: str | None = None
    message_attachments_attr: str | None = None
    #: The history SELECTs, built on first use (see ``sa_llm.persistence.load_history``).
    history_queries: Any = field(default=None, repr=False, compare=False)

    @property
    def legacy(self) -> bool:
        return self.model_cls is None
