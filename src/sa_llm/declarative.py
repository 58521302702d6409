"""``@acts_as_chat``, ``@acts_as_message``, ``@acts_as_tool_call``, ``@acts_as_model``,
``@acts_as_attachment``.

Class decorators that make your own SQLAlchemy declarative models the chat. Each records its
options on the class, adds the relationships you did not declare, attaches the record API
(:mod:`sa_llm._records.rows`) and registers per-class mapper events. Names are resolved when
the mappers configure; a misspelt class, association or column raises
:class:`~sa_llm.errors.ConfigurationError` naming the class and the option.

Example::

    class Base(DeclarativeBase): ...

    @acts_as_chat()
    class Chat(ChatMixin, Base):
        __tablename__ = "chats"

    @acts_as_message()
    class Message(MessageMixin, Base):
        __tablename__ = "messages"

    @acts_as_tool_call()
    class ToolCall(ToolCallMixin, Base):
        __tablename__ = "tool_calls"

    @acts_as_model()
    class Model(ModelMixin, Base):
        __tablename__ = "models"

    @acts_as_attachment()  # optional: store attached files (see docs/attachments.md)
    class Attachment(AttachmentMixin, Base):
        __tablename__ = "attachments"

    chat = Chat(model="gpt-4.1-nano")
    session.add(chat)
    session.commit()
    chat.ask("What is the capital of France?")

Association names are the primary parameters (``messages="messages"``, ``chat="chat"``, ...);
class names default to the singular CamelCase of the association (``chat_messages`` ->
``ChatMessage``) and may be bare, dotted-suffix (``"assistants.BotMessage"``) or full module
paths. Foreign keys default to ``<association>_id`` on the owning side and
``<owner class underscored>_id`` on ``has-many`` sides, falling back to the standard column name
the mixins declare. Legacy mode (``model=None``) keeps the model id as a string column and needs
no registry table.

One concept, one module (over 600 lines): the five decorators and the relationships they wire.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Mapper, relationship

from sa_llm._mapping import (
    ATTACHMENT_OPTIONS,
    CHAT_OPTIONS,
    EVENT_OPTIONS,
    MESSAGE_OPTIONS,
    MODEL_OPTIONS,
    TOOL_CALL_OPTIONS,
    USAGE_OPTIONS,
    AttachmentOptions,
    ChatOptions,
    ChatSchema,
    EventOptions,
    MessageOptions,
    ModelOptions,
    ToolCallOptions,
    UsageOptions,
    attachment_class,
    attachment_foreign_key,
    chat_schema,
    classify,
    column_attribute,
    decorated_class,
    find_class,
    foreign_key,
    has_column,
    underscore,
)
from sa_llm._records.chat import ChatMethods, _runtime
from sa_llm._records.rows import AttachmentMethods, MessageMethods, ModelMethods, ToolCallMethods
from sa_llm.errors import ConfigurationError
from sa_llm.mixins import link_foreign_keys
from sa_llm.registry_table import find_model, model_row_key

__all__ = [
    "acts_as_attachment",
    "acts_as_chat",
    "acts_as_event",
    "acts_as_message",
    "acts_as_model",
    "acts_as_tool_call",
    "acts_as_usage",
    "chat_schema",
]

C = TypeVar("C", bound=type[Any])


def _check_mapped(cls: type[Any], decorator: str) -> Mapper[Any]:
    try:
        mapper = sa_inspect(cls)
    except Exception:
        mapper = None
    if not isinstance(mapper, Mapper):
        raise ConfigurationError(
            f"@{decorator} must decorate a mapped declarative class; {cls.__name__} is not mapped "
            "(it needs a DeclarativeBase and a __tablename__)."
        )
    return mapper


def _attach_methods(cls: type[Any], methods: type[Any]) -> None:
    """Give ``cls`` the record API unless it already inherits it (mixins do)."""
    if issubclass(cls, methods):
        return
    for klass in reversed(methods.__mro__[:-1]):
        for name, value in vars(klass).items():
            if name.startswith("__") or name in vars(cls):
                continue
            setattr(cls, name, value)


_pending: weakref.WeakKeyDictionary[Any, list[tuple[type[Any], str, Callable[[], Any]]]] = (
    weakref.WeakKeyDictionary()
)
_created: weakref.WeakKeyDictionary[type[Any], set[str]] = weakref.WeakKeyDictionary()


class _Deferred:
    """Stands in for a relationship until mappers configure; configures them on first access."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type[Any]) -> Any:
        sa_inspect(owner).registry.configure()
        value = owner.__dict__.get(self.name)
        if isinstance(value, _Deferred):
            raise AttributeError(self.name)
        return getattr(instance if instance is not None else owner, self.name)


def _add_relationship(cls: type[Any], name: str, factory: Callable[[], Any]) -> None:
    """Add relationship ``name`` to ``cls`` when its registry configures, unless declared.

    The factory runs when the first sa_llm class of the registry is about to be configured, so
    every class it names exists by then and back references can be paired.
    """
    mapper = sa_inspect(cls)
    if mapper.has_property(name) or name in vars(cls):
        return
    _pending.setdefault(mapper.registry, []).append((cls, name, factory))
    _created.setdefault(cls, set()).add(name)
    setattr(cls, name, _Deferred(name))
    event.listen(cls, "before_mapper_configured", _wire_registry)


def _created_by_us(cls: type[Any], name: str) -> bool:
    return name in _created.get(cls, set())


def _wire_registry(mapper: Mapper[Any], cls: type[Any]) -> None:
    pending = _pending.get(mapper.registry)
    while pending:
        owner, name, factory = pending[0]
        prop = factory()  # raises ConfigurationError for a misspelt name; the item stays
        pending.pop(0)
        if isinstance(owner.__dict__.get(name), _Deferred):
            delattr(owner, name)
        if prop is not None:  # None: an optional relationship whose other side is absent
            sa_inspect(owner).add_property(name, prop)


def _back(cls: type[Any], name: str, other: type[Any], other_name: str) -> dict[str, Any]:
    """``back_populates`` when we create both sides, so in-memory links stay in sync."""
    if _created_by_us(cls, name) and _created_by_us(other, other_name):
        return {"back_populates": other_name}
    return {"overlaps": other_name}


# -- acts_as_chat ---------------------------------------------------------------------------------


def acts_as_chat(
    messages: str = "messages",
    *,
    message_class: str | None = None,
    messages_foreign_key: str | None = None,
    model: str | None = "model",
    model_class: str | None = None,
    model_foreign_key: str | None = None,
    model_id_column: str = "model_id",
    persistence: Any = None,
    legacy: bool = False,
) -> Callable[[C], C]:
    """Make a mapped class a persisted chat.

    Args:
        messages: name of the relationship to the chat's messages.
        message_class: the message class (default: singular CamelCase of ``messages``).
        messages_foreign_key: the FK attribute on messages (default ``<chat class>_id``).
        model: name of the relationship to the registry row; ``None`` for legacy mode.
        model_class: the registry class (default: CamelCase of ``model``).
        model_foreign_key: the chat's FK attribute to the registry (default ``<model>_id``).
        model_id_column: legacy mode: the string column holding the model id.
        persistence: a :class:`~sa_llm.persistence.PersistenceStrategy` for this class only.
        legacy: same as ``model=None``.

    The class gains ``ask``/``aask``, ``complete``/``acomplete``, ``with_*`` and the other
    methods of :class:`~sa_llm._records.rows.ChatMethods`, and accepts ``model=``,
    ``provider=``, ``assume_model_exists=`` and ``context=`` in its constructor.
    """
    options = ChatOptions(
        messages=messages,
        message_class=message_class,
        messages_foreign_key=messages_foreign_key,
        model=None if legacy else model,
        model_class=model_class,
        model_foreign_key=model_foreign_key,
        model_id_column=model_id_column,
        persistence=persistence,
    )

    def decorate(cls: C) -> C:
        _check_mapped(cls, "acts_as_chat")
        # What every turn needs, imported now: its cost lands at start-up, where the models
        # are declared, not on the first request (measured: ~4 ms of a cold first turn).
        import sa_llm._busy
        import sa_llm.persistence  # noqa: F401

        setattr(cls, CHAT_OPTIONS, options)
        link_foreign_keys(cls)
        _attach_methods(cls, ChatMethods)
        _wrap_init(cls, options)

        def messages_relationship() -> Any:
            def target() -> type[Any]:
                return chat_schema(cls).message_cls

            def foreign() -> Any:
                schema = chat_schema(cls)
                return [getattr(schema.message_cls, schema.message_chat_fk)]

            def order() -> Any:
                schema = chat_schema(cls)
                return [schema.message_cls.created_at, schema.message_cls.id]

            schema = chat_schema(cls)
            chat_name = getattr(schema.message_cls, MESSAGE_OPTIONS).chat
            return relationship(
                target,
                foreign_keys=foreign,
                order_by=order,
                # Not passive: the ORM deletes the rows itself (as dependent: :destroy does), so
                # a delete works on SQLite without PRAGMA foreign_keys and on FKs without CASCADE.
                cascade="all, delete-orphan",
                **_back(cls, messages, schema.message_cls, chat_name),
            )

        _add_relationship(cls, messages, messages_relationship)
        if options.model is not None:
            model_name = options.model

            def model_relationship() -> Any:
                def target() -> type[Any]:
                    model_cls = chat_schema(cls).model_cls
                    assert model_cls is not None
                    return model_cls

                def foreign() -> Any:
                    schema = chat_schema(cls)
                    assert schema.chat_model_attr is not None
                    return [getattr(cls, schema.chat_model_attr)]

                return relationship(target, foreign_keys=foreign)

            _add_relationship(cls, model_name, model_relationship)
        event.listen(cls, "before_insert", _resolve_pending_model)
        event.listen(cls, "before_update", _resolve_pending_model)
        event.listen(cls, "mapper_configured", lambda mapper, klass: chat_schema(klass))
        return cls

    return decorate


def _wrap_init(cls: type[Any], options: ChatOptions) -> None:
    """Accept ``model="gpt-..."``, ``provider=``, ``assume_model_exists=``, ``context=``."""
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # ``model="gpt-..."`` works whatever the association is called (unless ``model`` is
        # one of the class's own attributes); the association name takes a string too.
        if options.legacy:
            names = ["model", options.model_id_column]
        else:
            names = [options.model or "model"]
            if "model" not in names and not sa_inspect(type(self)).has_property("model"):
                names.append("model")
        pending_model = None
        for name in names:
            if isinstance(kwargs.get(name), str):
                value = kwargs.pop(name)
                pending_model = value if pending_model is None else pending_model
        if "model_id" in kwargs and isinstance(kwargs["model_id"], str) and not options.legacy:
            pending_model = kwargs.pop("model_id")
        provider = kwargs.pop("provider", None)
        assume = kwargs.pop("assume_model_exists", False)
        context = kwargs.pop("context", None)
        original(self, *args, **kwargs)
        runtime = _runtime(self)
        runtime.assume_model_exists = bool(assume)
        runtime.context = context
        if pending_model is not None:
            self._set_pending_model(pending_model, provider)
        elif provider is not None:
            runtime.pending_provider = provider

    __init__.__wrapped__ = original  # type: ignore[attr-defined]
    cls.__init__ = __init__


def _resolve_pending_model(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    """On flush: a model given as a string becomes the registry row (found or created)."""
    from sa_llm.chat import resolve_model
    from sa_llm.config import get_config

    runtime = _runtime(target)
    schema = chat_schema(type(target))
    if schema.legacy:
        return
    assert schema.model_cls is not None
    assert schema.chat_model_attr is not None
    model = runtime.pending_model
    if model is None:
        if getattr(target, schema.chat_model_attr) is not None:
            return
        options = type(target).__sa_llm_chat__
        if getattr(target, options.model, None) is not None:
            return
        config = runtime.context.config if runtime.context is not None else get_config()
        model = config.default_model
    # Your table first: it may hold models the bundled registry does not (loaded, refreshed or
    # assumed earlier); then the bundled registry, creating the row from its facts.
    # The row found is read whole, so the chat's first turn need not load it again.
    found = find_model(connection, schema.model_cls, model, runtime.pending_provider)
    resolved = None
    if found is not None:
        key, found_info = found
        if found_info is not None:
            resolved = (key, found_info)
    else:
        config = runtime.context.config if runtime.context is not None else get_config()
        info = resolve_model(model, runtime.pending_provider, runtime.assume_model_exists, config)
        key = model_row_key(connection, schema.model_cls, info)
        resolved = (key, info)
    setattr(target, schema.chat_model_attr, key)
    runtime.pending_model = runtime.pending_provider = None
    runtime.resolved = resolved


# -- acts_as_message ------------------------------------------------------------------------------


def acts_as_message(
    chat: str = "chat",
    *,
    chat_class: str | None = None,
    chat_foreign_key: str | None = None,
    tool_calls: str = "tool_calls",
    tool_call_class: str | None = None,
    tool_calls_foreign_key: str | None = None,
    parent_tool_call_foreign_key: str | None = None,
    model: str | None = "model",
    model_class: str | None = None,
    model_foreign_key: str | None = None,
    model_id_column: str = "model_id",
    touch_chat: bool = False,
    legacy: bool = False,
    attachments: str | None = "attachments",
    attachment_class: str | None = None,
    attachments_foreign_key: str | None = None,
) -> Callable[[C], C]:
    """Make a mapped class a chat message.

    Adds ``chat``, ``tool_calls``, ``model`` (unless legacy), ``parent_tool_call`` relationships
    and the ``to_llm``/``tokens``/``thinking``/``tool_results`` API, plus ``attachments`` when
    an ``@acts_as_attachment`` class for it exists.

    Args:
        chat: relationship to the chat; ``chat_class``/``chat_foreign_key`` override its class
            and FK attribute (default ``<chat>_id``).
        tool_calls: relationship to this message's tool calls.
        parent_tool_call_foreign_key: FK attribute to the call a tool result answers.
        model: relationship to the registry row (must match the chat's); ``None``/``legacy``
            keeps a string ``model_id_column``.
        touch_chat: bump the chat's ``updated_at`` whenever a message is saved.
        attachments: relationship to the message's stored files; ``attachment_class`` /
            ``attachments_foreign_key`` override its class (default: CamelCase of
            ``attachments``) and the FK attribute on it. When no ``@acts_as_attachment`` class
            of that name exists, files are sent but not stored; ``None`` says so explicitly.
    """
    options = MessageOptions(
        chat=chat,
        chat_class=chat_class,
        chat_foreign_key=chat_foreign_key,
        tool_calls=tool_calls,
        tool_call_class=tool_call_class,
        tool_calls_foreign_key=tool_calls_foreign_key,
        parent_tool_call_foreign_key=parent_tool_call_foreign_key,
        model=None if legacy else model,
        model_class=model_class,
        model_foreign_key=model_foreign_key,
        model_id_column=model_id_column,
        touch_chat=touch_chat,
        attachments=attachments,
        attachment_class=attachment_class,
        attachments_foreign_key=attachments_foreign_key,
    )

    def decorate(cls: C) -> C:
        _check_mapped(cls, "acts_as_message")
        setattr(cls, MESSAGE_OPTIONS, options)
        link_foreign_keys(cls)
        _attach_methods(cls, MessageMethods)

        def chat_cls() -> type[Any]:
            return find_class(
                cls, options.chat_class or classify(options.chat), owner=cls, option="chat_class"
            )

        def tool_call_cls() -> type[Any]:
            return find_class(
                cls,
                options.tool_call_class or classify(options.tool_calls),
                owner=cls,
                option="tool_call_class",
            )

        def schema() -> ChatSchema:
            return chat_schema(chat_cls())

        _add_relationship(
            cls,
            chat,
            lambda: relationship(
                chat_cls,
                foreign_keys=lambda: [getattr(cls, schema().message_chat_fk)],
                **_back(cls, chat, chat_cls(), getattr(chat_cls(), CHAT_OPTIONS).messages),
            ),
        )
        _add_relationship(
            cls,
            tool_calls,
            lambda: relationship(
                tool_call_cls,
                foreign_keys=lambda: [
                    getattr(schema().tool_call_cls, schema().tool_call_message_fk)
                ],
                cascade="all, delete-orphan",
                order_by=lambda: [schema().tool_call_cls.id],
                **_back(
                    cls,
                    tool_calls,
                    tool_call_cls(),
                    getattr(tool_call_cls(), TOOL_CALL_OPTIONS).message,
                ),
            ),
        )
        _add_relationship(
            cls,
            "parent_tool_call",
            lambda: relationship(
                tool_call_cls,
                foreign_keys=lambda: [getattr(cls, schema().message_parent_fk)],
                **_back(
                    cls,
                    "parent_tool_call",
                    tool_call_cls(),
                    getattr(tool_call_cls(), TOOL_CALL_OPTIONS).result,
                ),
            ),
        )
        if options.model is not None:

            def model_cls() -> type[Any]:
                model = schema().model_cls
                if model is None:
                    raise ConfigurationError(
                        f"{cls.__name__}: the chat is in legacy mode; declare "
                        "@acts_as_message(model=None) too."
                    )
                return model

            _add_relationship(
                cls,
                options.model,
                lambda: relationship(
                    model_cls,
                    foreign_keys=lambda: [getattr(cls, schema().message_model_attr)],  # type: ignore[arg-type]
                ),
            )
        if attachments is not None:
            _add_relationship(cls, attachments, lambda: _attachments_relationship(cls))
        if touch_chat:
            event.listen(cls, "before_insert", _touch_chat)
            event.listen(cls, "before_update", _touch_chat)
        return cls

    return decorate


def _touch_chat(mapper: Mapper[Any], connection: Any, target: Any) -> None:
    from sa_llm.mixins import utcnow

    options: MessageOptions = type(target).__sa_llm_message__
    chat_cls = mapper.get_property(options.chat).mapper.class_
    if not has_column(chat_cls, "updated_at"):
        return
    # The FK, not the relationship: a new row made by the flow has only its FK set, and a
    # pending row's relationship does not load.
    chat_id = getattr(target, chat_schema(chat_cls).message_chat_fk)
    if chat_id is None:
        chat = getattr(target, options.chat, None)
        identity = sa_inspect(chat).identity if chat is not None else None
        chat_id = identity[0] if identity else None
    if chat_id is not None:
        pk = sa_inspect(chat_cls).primary_key[0]
        connection.execute(
            chat_cls.__table__.update().where(pk == chat_id).values(updated_at=utcnow())
        )


def _attachments_relationship(message_cls: type[Any]) -> Any:
    """``message.attachments``, or ``None`` when the message has no attachment class."""
    attachment = attachment_class(message_cls)
    if attachment is None:
        return None
    options: MessageOptions = getattr(message_cls, MESSAGE_OPTIONS)
    assert options.attachments is not None
    pk = sa_inspect(attachment).primary_key[0]
    return relationship(
        attachment,
        foreign_keys=lambda: [getattr(attachment, attachment_foreign_key(message_cls, attachment))],
        order_by=lambda: [pk],
        cascade="all, delete-orphan",
        **_back(
            message_cls,
            options.attachments,
            attachment,
            getattr(attachment, ATTACHMENT_OPTIONS).message,
        ),
    )


# -- acts_as_tool_call ----------------------------------------------------------------------------


def acts_as_tool_call(
    message: str = "message",
    *,
    message_class: str | None = None,
    message_foreign_key: str | None = None,
    result: str = "result",
    result_class: str | None = None,
    result_foreign_key: str | None = None,
) -> Callable[[C], C]:
    """Make a mapped class a tool call (one function call an assistant message asked for).

    Adds ``message`` (the assistant message that asked) and ``result`` (the tool-result message
    that answers; nullified when the call is deleted).
    """
    options = ToolCallOptions(
        message=message,
        message_class=message_class,
        message_foreign_key=message_foreign_key,
        result=result,
        result_class=result_class,
        result_foreign_key=result_foreign_key,
    )

    def decorate(cls: C) -> C:
        _check_mapped(cls, "acts_as_tool_call")
        setattr(cls, TOOL_CALL_OPTIONS, options)
        link_foreign_keys(cls)
        _attach_methods(cls, ToolCallMethods)

        def message_cls() -> type[Any]:
            return find_class(
                cls,
                options.message_class or classify(options.message),
                owner=cls,
                option="message_class",
            )

        def result_cls() -> type[Any]:
            if options.result_class:
                return find_class(cls, options.result_class, owner=cls, option="result_class")
            return message_cls()

        def message_options() -> MessageOptions:
            return getattr(message_cls(), MESSAGE_OPTIONS)  # type: ignore[no-any-return]

        def fk() -> str:
            return foreign_key(
                cls,
                options.message_foreign_key or message_options().tool_calls_foreign_key,
                [f"{options.message}_id", f"{underscore(message_cls().__name__)}_id", "message_id"],
                "message_foreign_key",
            )

        def parent_fk() -> str:
            return foreign_key(
                result_cls(),
                options.result_foreign_key or message_options().parent_tool_call_foreign_key,
                [f"{underscore(cls.__name__)}_id", "tool_call_id"],
                "result_foreign_key",
            )

        _add_relationship(
            cls,
            message,
            lambda: relationship(
                message_cls,
                foreign_keys=lambda: [getattr(cls, fk())],
                **_back(cls, message, message_cls(), message_options().tool_calls),
            ),
        )
        _add_relationship(
            cls,
            result,
            lambda: relationship(
                result_cls,
                foreign_keys=lambda: [getattr(result_cls(), parent_fk())],
                uselist=False,
                **_back(cls, result, result_cls(), "parent_tool_call"),
            ),
        )
        return cls

    return decorate


# -- acts_as_attachment ---------------------------------------------------------------------------


def acts_as_attachment(
    message: str = "message",
    *,
    message_class: str | None = None,
    message_foreign_key: str | None = None,
) -> Callable[[C], C]:
    """Make a mapped class the stored files of messages (one row per file of a message).

    A row references the bytes in a :mod:`sa_llm.storage` backend: filename, content type,
    size, SHA-256 and storage key. The message class gains ``attachments``; this class gains
    ``message`` and ``to_llm``/``open``/``read``. Pass a row to ``ask(..., attachments=...)``
    to attach the same file to another message without storing it again.

    Args:
        message: relationship to the message; ``message_class``/``message_foreign_key``
            override its class (default: CamelCase of ``message``) and FK attribute (default
            ``<message>_id``).

    Raises:
        ConfigurationError: the class is not mapped or lacks ``filename``, ``content_type``
            or ``storage_key``.
    """
    options = AttachmentOptions(
        message=message, message_class=message_class, message_foreign_key=message_foreign_key
    )

    def decorate(cls: C) -> C:
        _check_mapped(cls, "acts_as_attachment")
        for attr in ("filename", "content_type", "storage_key"):
            column_attribute(cls, attr, option=f"{cls.__name__}.{attr}")
        setattr(cls, ATTACHMENT_OPTIONS, options)
        link_foreign_keys(cls)
        _attach_methods(cls, AttachmentMethods)

        def message_cls() -> type[Any]:
            name = options.message_class or classify(options.message)
            return decorated_class(cls, name, "message_class", MESSAGE_OPTIONS)

        def message_relationship() -> Any:
            target = message_cls()
            back = getattr(target, MESSAGE_OPTIONS).attachments or "attachments"
            return relationship(
                target,
                foreign_keys=lambda: [getattr(cls, attachment_foreign_key(target, cls))],
                **_back(cls, message, target, back),
            )

        _add_relationship(cls, message, message_relationship)
        return cls

    return decorate


# -- acts_as_event ---------------------------------------------------------------------------------


def acts_as_event(
    chat: str = "chat",
    *,
    chat_class: str | None = None,
    chat_foreign_key: str | None = None,
) -> Callable[[C], C]:
    """Make a mapped class the event log of a chat class (see :mod:`sa_llm.events`).

    Every change a viewer needs (a message created, streamed text, a reply completed, failed
    or cancelled, a turn started or ended) becomes a row with a per-chat, gap-free ``seq``,
    written in the transaction of the change. The chat class needs an ``event_seq`` column
    (the mixins declare it); the class needs ``seq``, ``kind``, ``message_id`` and ``data``
    (:class:`~sa_llm.mixins.EventMixin`).

    Args:
        chat: the name of the chat association (its class defaults to its CamelCase).
        chat_class: the chat class, when it is not the CamelCase of ``chat``.
        chat_foreign_key: the FK attribute to the chat (default ``<chat>_id``, then
            ``chat_id``).
    """
    options = EventOptions(chat=chat, chat_class=chat_class, chat_foreign_key=chat_foreign_key)

    def decorate(cls: C) -> C:
        _check_mapped(cls, "acts_as_event")
        for attr in ("seq", "kind", "message_id", "data"):
            column_attribute(cls, attr, option=f"{cls.__name__}.{attr}")
        setattr(cls, EVENT_OPTIONS, options)
        return cls

    return decorate


# -- acts_as_usage ---------------------------------------------------------------------------------


def acts_as_usage(
    chat: str = "chat",
    *,
    chat_class: str | None = None,
    chat_foreign_key: str | None = None,
    message_foreign_key: str | None = None,
) -> Callable[[C], C]:
    """Make a mapped class the usage ledger of a chat class: one row per physical provider
    attempt (retries, failed and cancelled streams included), with its tokens and its cost.

    Rows are written in the transaction of the step the attempt belongs to (the reply's
    completion, or the clean-up of a turn that failed), so the ledger adds no commit. The class
    needs at least ``provider``, ``model``, ``outcome``, ``input_tokens`` and
    ``output_tokens``; sa_llm writes every other column of :class:`~sa_llm.mixins.UsageMixin`
    it maps. Without a usage class, chats work as before.

    Args:
        chat: the name of the chat association (its class defaults to its CamelCase).
        chat_class: the chat class, when it is not the CamelCase of ``chat``.
        chat_foreign_key: the FK attribute to the chat (default ``<chat>_id``, then
            ``chat_id``).
        message_foreign_key: the FK attribute to the message an attempt produced (default
            ``<message class>_id``, then ``message_id``, when the class has it).
    """
    options = UsageOptions(
        chat=chat,
        chat_class=chat_class,
        chat_foreign_key=chat_foreign_key,
        message_foreign_key=message_foreign_key,
    )

    def decorate(cls: C) -> C:
        _check_mapped(cls, "acts_as_usage")
        for attr in ("provider", "model", "outcome", "input_tokens", "output_tokens"):
            column_attribute(cls, attr, option=f"{cls.__name__}.{attr}")
        setattr(cls, USAGE_OPTIONS, options)
        return cls

    return decorate


# -- acts_as_model --------------------------------------------------------------------------------


def acts_as_model(
    chats: str = "chats",
    *,
    chat_class: str | None = None,
    chats_foreign_key: str | None = None,
) -> Callable[[C], C]:
    """Make a mapped class the model registry (rows of models with capabilities and prices).

    Adds a read-only ``chats`` relationship and ``to_llm``/``from_llm``/``supports``.
    """
    options = ModelOptions(chats=chats, chat_class=chat_class, chats_foreign_key=chats_foreign_key)

    def decorate(cls: C) -> C:
        _check_mapped(cls, "acts_as_model")
        setattr(cls, MODEL_OPTIONS, options)
        link_foreign_keys(cls)
        _attach_methods(cls, ModelMethods)
        for attr in ("model_id", "provider", "name"):
            column_attribute(cls, attr, option=f"{cls.__name__}.{attr}")

        def chat_cls() -> type[Any]:
            return find_class(
                cls, options.chat_class or classify(options.chats), owner=cls, option="chat_class"
            )

        def foreign() -> Any:
            klass = chat_cls()
            if options.chats_foreign_key:
                fk = column_attribute(klass, options.chats_foreign_key, option="chats_foreign_key")
                return [getattr(klass, fk)]
            schema = chat_schema(klass)
            assert schema.chat_model_attr is not None
            return [getattr(klass, schema.chat_model_attr)]

        def chats_relationship() -> Any:
            mappers = sa_inspect(cls).registry.mappers
            if options.chat_class is None and not any(
                getattr(m.class_, CHAT_OPTIONS, None) is not None for m in mappers
            ):
                # A registry used on its own (no chat class declared): no ``chats`` to link.
                return None
            return relationship(chat_cls, foreign_keys=foreign, viewonly=True)

        _add_relationship(cls, chats, chats_relationship)
        return cls

    return decorate
