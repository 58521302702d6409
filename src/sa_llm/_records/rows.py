"""The record API of message, tool-call, attachment and registry rows.

:class:`MessageMethods` (``@acts_as_message``), :class:`ToolCallMethods`
(``@acts_as_tool_call``), :class:`AttachmentMethods` (``@acts_as_attachment``) and
:class:`ModelMethods` (``@acts_as_model``): each row as a value object (``to_llm``) and the
helpers the reference gives it (``tool_results``, ``supports_vision``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

from sqlalchemy import ColumnElement, String, cast, or_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.hybrid import hybrid_property

from sa_llm import registry
from sa_llm.config import get_config
from sa_llm.content import Attachment
from sa_llm.registry_table import model_info_from, row_values
from sa_llm.types import Content, Message, RawContent, Thinking, Tokens, ToolCall

if TYPE_CHECKING:
    from sa_llm.cost import Cost
    from sa_llm.registry import ModelInfo
    from sa_llm.storage import Storage

__all__ = ["AttachmentMethods", "MessageMethods", "ModelMethods", "ToolCallMethods"]

R = TypeVar("R")


# -- messages -------------------------------------------------------------------------------------


class MessageMethods:
    """The record API of a message row (added by ``@acts_as_message``)."""

    if TYPE_CHECKING:
        # Columns the decorated class maps (the mixins declare them with their real types).
        role: Any

    def _options(self) -> Any:
        return type(self).__sa_llm_message__  # type: ignore[attr-defined]

    @property
    def tokens(self) -> Tokens | None:
        """Token usage, or ``None`` when no count is stored."""
        tokens = Tokens(
            input=getattr(self, "input_tokens", None),
            output=getattr(self, "output_tokens", None),
            cached=getattr(self, "cached_tokens", None),
            cache_creation=getattr(self, "cache_creation_tokens", None),
            reasoning=getattr(self, "thinking_tokens", None),
        )
        return None if tokens == Tokens() else tokens

    @property
    def cache_read_tokens(self) -> int | None:
        """The prompt tokens read from the provider's cache (``cached_tokens``)."""
        return getattr(self, "cached_tokens", None)

    @property
    def cache_write_tokens(self) -> int | None:
        """The prompt tokens written to the provider's cache (``cache_creation_tokens``)."""
        return getattr(self, "cache_creation_tokens", None)

    @property
    def cost(self) -> Cost | None:
        """What this message's tokens cost at its model's prices (the model row's ``pricing``,
        or the registry's in legacy mode); ``None`` without tokens or prices. Computed when
        read, from today's prices: the usage ledger keeps the cost each attempt had."""
        from sa_llm.cost import prices_for

        tokens = self.tokens
        info = self._model_info()
        if tokens is None or info is None:
            return None
        prices = prices_for(info, get_config().price_source)
        return prices.cost_of(tokens, getattr(self, "created_at", None)) if prices else None

    def _model_info(self) -> ModelInfo | None:
        options = self._options()
        if options.model is not None:
            row = getattr(self, options.model, None)
            return row.to_llm() if row is not None else None
        model_id = getattr(self, options.model_id_column, None)
        if not model_id:
            return None
        try:
            return registry.find(model_id)
        except Exception:  # a model the registry does not list: no price
            return None

    @property
    def thinking(self) -> Thinking | None:
        """The reply's reasoning: text, signature and every block as the provider sent it."""
        text = getattr(self, "thinking_text", None)
        signature = getattr(self, "thinking_signature", None)
        raw = getattr(self, "thinking_raw", None)
        if not (text or signature or raw):
            return None
        return Thinking(text=text, signature=signature, extra=raw or {})

    @property
    def is_tool_call(self) -> bool:
        """True for an assistant message that asked for tools."""
        return bool(getattr(self, self._options().tool_calls))

    @property
    def is_tool_result(self) -> bool:
        return getattr(self, "role", None) == "tool"

    @property
    def tool_results(self) -> list[Any]:
        """The tool-result messages answering this message's tool calls."""
        options = self._options()
        calls = getattr(self, options.tool_calls)
        results = []
        for call in calls:
            result = getattr(call, type(call).__sa_llm_tool_call__.result, None)
            if result is not None:
                results.append(result)
        return results

    def to_llm(self) -> Message:
        """This row as a value :class:`~sa_llm.types.Message` (loads its links; sync)."""
        from sa_llm._persisted.history import row_to_message

        options = self._options()
        parent = getattr(self, "parent_tool_call", None)
        model_name = None
        if options.model is not None:
            model_row = getattr(self, options.model, None)
            model_name = model_row.model_id if model_row is not None else None
        else:
            model_name = getattr(self, options.model_id_column, None)
        row = {
            "role": self.role,
            "content": getattr(self, "content", None),
            "content_raw": getattr(self, "content_raw", None),
            "input_tokens": getattr(self, "input_tokens", None),
            "output_tokens": getattr(self, "output_tokens", None),
            "cached_tokens": getattr(self, "cached_tokens", None),
            "cache_creation_tokens": getattr(self, "cache_creation_tokens", None),
            "thinking_text": getattr(self, "thinking_text", None),
            "thinking_signature": getattr(self, "thinking_signature", None),
            "thinking_tokens": getattr(self, "thinking_tokens", None),
            "thinking_raw": getattr(self, "thinking_raw", None),
            "parent_call_id": parent.tool_call_id if parent is not None else None,
            "model_name": model_name,
        }
        calls = [call.to_llm() for call in getattr(self, options.tool_calls)]
        message = row_to_message(row, calls)
        files = self.stored_files()
        if files and not isinstance(message.content, RawContent):
            message = message.copy(content=Content(message.text, files))
        return message

    def stored_files(self, storage: Storage | None = None) -> tuple[Attachment, ...]:
        """This message's stored files as :class:`~sa_llm.Attachment` (read when used).

        ``storage`` defaults to the configured one.
        """
        name = self._options().attachments
        rows = getattr(self, name, None) if name else None
        if not isinstance(rows, Sequence):
            return ()
        # Only rows of an @acts_as_attachment class: "attachments" may be a column of the
        # user's own on a message class that stores no files.
        return tuple(
            row.to_llm(storage)
            for row in rows
            if getattr(type(row), "__sa_llm_attachment__", None) is not None
        )


# -- attachments ----------------------------------------------------------------------------------


class AttachmentMethods:
    """The record API of an attachment row (added by ``@acts_as_attachment``).

    The row is a reference: the bytes are in a storage (``storage=`` or the configured one).
    """

    if TYPE_CHECKING:
        filename: Any
        content_type: Any
        storage_key: Any

    def _storage(self, storage: Storage | None) -> Storage:
        from sa_llm.storage import open_storage

        return storage if storage is not None else open_storage(get_config().attachment_storage)

    def to_llm(self, storage: Storage | None = None) -> Attachment:
        """This file as an :class:`~sa_llm.Attachment`; its bytes are read on first use."""
        return Attachment.from_storage(
            self._storage(storage),
            self.storage_key,
            filename=self.filename,
            mime_type=self.content_type,
            byte_size=getattr(self, "byte_size", None),
            sha256=getattr(self, "sha256", None),
        )

    def open(self, storage: Storage | None = None) -> IO[bytes]:
        """The stored bytes as a binary file object (close it; ``with row.open() as f:``)."""
        return self._storage(storage).open(self.storage_key)

    def read(self, storage: Storage | None = None) -> bytes:
        """The stored bytes."""
        return self._storage(storage).read(self.storage_key)


# -- tool calls -----------------------------------------------------------------------------------


class ToolCallMethods:
    """The record API of a tool-call row (added by ``@acts_as_tool_call``)."""

    if TYPE_CHECKING:
        tool_call_id: Any
        name: Any

    def to_llm(self) -> ToolCall:
        arguments = getattr(self, "arguments", None)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                arguments = {"_raw": arguments}
        signature = getattr(self, "thought_signature", None)
        return ToolCall(
            id=self.tool_call_id,
            name=self.name,
            arguments=dict(arguments or {}),
            extra={"thought_signature": signature} if signature else {},
        )

    @property
    def tool_error_message(self) -> str | None:
        """The ``error`` a failed call's result reported, if its result is a JSON object."""
        result = getattr(self, type(self).__sa_llm_tool_call__.result, None)  # type: ignore[attr-defined]
        content = getattr(result, "content", None) if result is not None else None
        if not content:
            return None
        try:
            value = json.loads(content)
        except ValueError:
            return None
        return str(value["error"]) if isinstance(value, Mapping) and "error" in value else None


# -- registry rows --------------------------------------------------------------------------------


class ModelMethods:
    """The record API of a registry row (added by ``@acts_as_model``)."""

    if TYPE_CHECKING:
        model_id: Any
        provider: Any

    def to_llm(self) -> ModelInfo:
        """This row as a :class:`~sa_llm.registry.ModelInfo`."""
        return model_info_from(lambda name: getattr(self, name, None))

    @classmethod
    def from_llm(cls: type[R], info: ModelInfo) -> R:
        """An unsaved row for ``info``."""
        row = cls()
        mapper = sa_inspect(cls)
        for attr, value in row_values(cls, info).items():
            for name, prop in mapper.column_attrs.items():
                if prop.columns[0].key == attr:
                    setattr(row, name, value)
        return row

    @property
    def type(self) -> str:
        """What the model is for: ``chat``, ``embedding``, ``image``, ``audio``,
        ``transcription``, ``moderation``, ... (see :attr:`sa_llm.registry.ModelInfo.type`)."""
        return self.to_llm().type

    @property
    def label(self) -> str:
        """A display label, e.g. ``"GPT-4.1 nano (OpenAI)"``."""
        return self.to_llm().label

    def supports(self, capability: str) -> bool:
        """Whether the model lists ``capability`` (e.g. ``"function_calling"``)."""
        return capability in (getattr(self, "capabilities", None) or ())

    # Capability flags that work on rows and in SQL on SQLite and PostgreSQL alike:
    # ``select(Model).where(Model.supports_vision)``. JSON arrays are matched on their text
    # form, which both databases produce with each string quoted.

    def _modality(self, direction: str, kind: str) -> bool:
        modalities = getattr(self, "modalities", None) or {}
        return kind in (modalities.get(direction) or ())

    @hybrid_property
    def supports_vision(self) -> bool:
        return self.supports("vision") or self._modality("input", "image")

    @supports_vision.inplace.expression
    @classmethod
    def _supports_vision(cls) -> ColumnElement[bool]:
        return or_(
            _json_has(cls, "capabilities", "vision"), _json_has(cls, "modalities", "image", "input")
        )

    @hybrid_property
    def supports_functions(self) -> bool:
        return self.supports("function_calling")

    @supports_functions.inplace.expression
    @classmethod
    def _supports_functions(cls) -> ColumnElement[bool]:
        return _json_has(cls, "capabilities", "function_calling")

    @hybrid_property
    def supports_structured_output(self) -> bool:
        return self.supports("structured_output")

    @supports_structured_output.inplace.expression
    @classmethod
    def _supports_structured_output(cls) -> ColumnElement[bool]:
        return _json_has(cls, "capabilities", "structured_output")

    @hybrid_property
    def supports_reasoning(self) -> bool:
        return self.supports("reasoning")

    @supports_reasoning.inplace.expression
    @classmethod
    def _supports_reasoning(cls) -> ColumnElement[bool]:
        return _json_has(cls, "capabilities", "reasoning")

    @hybrid_property
    def supports_pdf(self) -> bool:
        return self._modality("input", "pdf")

    @supports_pdf.inplace.expression
    @classmethod
    def _supports_pdf(cls) -> ColumnElement[bool]:
        return _json_has(cls, "modalities", "pdf", "input")

    @hybrid_property
    def supports_audio_input(self) -> bool:
        return self._modality("input", "audio")

    @supports_audio_input.inplace.expression
    @classmethod
    def _supports_audio_input(cls) -> ColumnElement[bool]:
        return _json_has(cls, "modalities", "audio", "input")


def _json_has(cls: Any, column: str, value: str, key: str | None = None) -> ColumnElement[bool]:
    """SQL: the JSON array in ``column`` (or in its ``key``) contains the string ``value``."""
    target = getattr(cls, column)
    if key is not None:
        target = target[key]
    return cast(target, String).contains(f'"{value}"')
