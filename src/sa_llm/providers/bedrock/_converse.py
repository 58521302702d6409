"""The Bedrock **Converse** codec: request bodies, replies, stream events and errors.

Sans-IO like every codec: :class:`ConverseCodec` turns a
:class:`~sa_llm.providers.base.ChatRequest` into ``POST /model/{modelId}/converse`` (or
``/converse-stream``), a reply into :class:`~sa_llm.types.Chunk` objects, and the binary event
stream into the same chunks through :class:`ConverseStreamParser`. Authentication (SigV4) and the
endpoint are added by :class:`~sa_llm.providers.bedrock.Bedrock`.

The wire format, in short:

* ``system`` is a list of blocks; ``messages`` alternate ``user``/``assistant`` and hold content
  blocks: ``text``, ``image`` (``format`` + base64 ``source.bytes``), ``document`` (``format``,
  ``name``, ``source``), ``toolUse``, ``toolResult`` and ``reasoningContent``. Tool results are
  blocks of a user turn; consecutive turns of one role are merged into one.
* ``toolConfig`` holds ``tools`` (``toolSpec`` with ``inputSchema.json``) and ``toolChoice``
  (``auto``/``any``/``tool``); ``inferenceConfig`` the sampling settings;
  ``additionalModelRequestFields`` model-specific fields such as reasoning switches;
  ``outputConfig.textFormat`` a JSON schema for structured output.
* Provider-native blocks go through :class:`~sa_llm.types.RawContent` verbatim, which is how a
  prompt-cache point is set: ``RawContent([{"text": doc}, {"cachePoint": {"type": "default"}}])``.

Example::

    body = ConverseCodec(config).converse_body(ChatRequest(model=model_id, messages=[...]))

One concept, one module (over 600 lines): the Converse wire format, both directions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from sa_llm import errors
from sa_llm.content import Attachment
from sa_llm.providers.base import (
    ChatRequest,
    HttpRequest,
    HttpResponse,
    Provider,
    SchemaSpec,
    StreamParser,
    ToolSpec,
    deep_merge,
    error_class_for,
    reasoning_effort,
)
from sa_llm.providers.bedrock._eventstream import EventStreamDecoder, EventStreamMessage
from sa_llm.providers.responses import inline_text_file
from sa_llm.schema import strict_schema
from sa_llm.types import Chunk, Content, Message, RawContent, Tokens, ToolCall, ToolCallDelta

__all__ = [
    "REASONING_BLOCKS",
    "ConverseCodec",
    "ConverseStreamParser",
    "converse_error_class",
    "converse_tokens",
    "thinking_fields",
]

EVENT_STREAM = "application/vnd.amazon.eventstream"
# json.loads on bytes first sniffs the encoding; the payloads are UTF-8 by definition.
_decode_json = json.JSONDecoder().decode

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
_VIDEO_FORMATS = {
    "video/mp4": "mp4",
    "video/quicktime": "mov",
    "video/x-matroska": "mkv",
    "video/webm": "webm",
    "video/x-flv": "flv",
    "video/mpeg": "mpeg",
    "video/x-ms-wmv": "wmv",
    "video/3gpp": "three_gp",
}
# Document names may hold letters, digits, single spaces, hyphens, parentheses and brackets.
_NAME_DISALLOWED = re.compile(r"[^A-Za-z0-9\s\-()\[\]_]+")
# Token budgets for an effort, for the Claude models, which take a budget and no effort.
_CLAUDE_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}

# ``x-amzn-errortype`` / exception names (lower case) -> error class.
_ERROR_TYPES: dict[str, type[errors.APIStatusError]] = {
    "throttlingexception": errors.RateLimitError,
    "servicequotaexceededexception": errors.RateLimitError,
    "toomanyrequestsexception": errors.RateLimitError,
    "accessdeniedexception": errors.PermissionDeniedError,
    "unrecognizedclientexception": errors.AuthenticationError,
    "invalidsignatureexception": errors.AuthenticationError,
    "incompletesignatureexception": errors.AuthenticationError,
    "incompletesignature": errors.AuthenticationError,
    "missingauthenticationtokenexception": errors.AuthenticationError,
    "missingauthenticationtoken": errors.AuthenticationError,
    "expiredtokenexception": errors.AuthenticationError,
    "expiredtoken": errors.AuthenticationError,
    "invalidclienttokenid": errors.AuthenticationError,
    "signaturedoesnotmatch": errors.AuthenticationError,
    "resourcenotfoundexception": errors.NotFoundError,
    "validationexception": errors.BadRequestError,
    "modelnotreadyexception": errors.OverloadedError,
    "serviceunavailableexception": errors.OverloadedError,
    "internalserverexception": errors.ServerError,
    "modelerrorexception": errors.ServerError,
    "modelstreamerrorexception": errors.ServerError,
    "modeltimeoutexception": errors.ServerError,
}
_CONTEXT_LENGTH = re.compile(
    r"input tokens? exceed|too many (?:input )?tokens|too long|context (?:length|window)"
    r"|exceeds? (?:the )?max(?:imum)? (?:length|context|tokens)|prompt is too long",
    re.IGNORECASE,
)


def converse_error_class(
    error_type: str | None, status: int | None, message: str
) -> type[errors.APIStatusError]:
    """The error class for a Bedrock error type (``ValidationException``, ...) and message.

    Unknown types fall back to the HTTP status (:func:`~sa_llm.providers.base.error_class_for`).
    """
    cls = _ERROR_TYPES.get((error_type or "").lower())
    if cls is errors.BadRequestError and _CONTEXT_LENGTH.search(message):
        return errors.ContextLengthExceededError
    if cls is not None:
        return cls
    if status is None:
        return errors.ServerError
    return error_class_for(status, message)


def _count(value: Any) -> int | None:
    return value if type(value) is int else None


def converse_tokens(usage: Any) -> Tokens | None:
    """Token counts from a ``usage`` object.

    Bedrock counts ``inputTokens`` apart from ``cacheReadInputTokens`` and
    ``cacheWriteInputTokens``; :attr:`Tokens.input` holds all prompt tokens, so it is their sum.
    """
    if type(usage) is not dict:
        return None
    fresh = _count(usage.get("inputTokens"))
    cached = _count(usage.get("cacheReadInputTokens"))
    created = _count(usage.get("cacheWriteInputTokens"))
    return Tokens(
        input=None if fresh is None else fresh + (cached or 0) + (created or 0),
        output=_count(usage.get("outputTokens")),
        cached=cached,
        cache_creation=created,
    )


#: The key of ``Thinking.extra`` holding a reply's ``reasoningContent`` blocks as they came
#: (text with its signature, or redacted content), in order, for replay.
REASONING_BLOCKS = "bedrock_reasoning"


def _replayable(block: Any) -> bool:
    """Whether a reasoning block may go back: redacted content, or signed text (unsigned text
    cannot be verified and is rejected by Claude, ignored by Nova)."""
    if not isinstance(block, Mapping):
        return False
    if block.get("redactedContent"):
        return True
    text = block.get("reasoningText")
    return isinstance(text, Mapping) and bool(text.get("signature"))


def thinking_fields(thinking: Mapping[str, Any], model: str) -> dict[str, Any]:
    """``additionalModelRequestFields`` for ``with_thinking(effort=..., budget=...)``.

    Claude takes ``reasoning_config`` with a token budget, Amazon Nova ``reasoningConfig`` with
    a maximum effort, OpenAI's open-weight models ``reasoning_effort``. Effort ``"none"`` turns
    reasoning off where the model has a switch.

    Raises:
        ConfigurationError: a model of another family (or an ARN, which names no family): its
            fields differ per model and are passed with ``with_params``.
    """
    effort = reasoning_effort(thinking)
    family = _family(model)
    if family == "anthropic":
        if effort == "none":
            return {"reasoning_config": {"type": "disabled"}}
        budget = thinking.get("budget")
        tokens = int(budget) if budget is not None else _CLAUDE_BUDGETS.get(effort, 4096)
        return {"reasoning_config": {"type": "enabled", "budget_tokens": tokens}}
    if family == "openai":
        return {"reasoning_effort": effort}
    if family != "amazon":
        raise errors.ConfigurationError(
            f"with_thinking() does not know the reasoning fields of Bedrock model {model!r}: "
            "pass them with with_params(additionalModelRequestFields={...})."
        )
    if effort == "none":
        return {"reasoningConfig": {"type": "disabled"}}
    return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": effort}}


def _family(model: str) -> str:
    """The vendor part of a Bedrock model id (``us.anthropic.claude...`` -> ``anthropic``)."""
    for part in model.rsplit("/", 1)[-1].split("."):
        if part in ("anthropic", "amazon", "openai", "meta", "mistral", "deepseek", "qwen"):
            return part
    return "anthropic" if "claude" in model else ""


def _document_name(attachment: Attachment, taken: dict[str, int]) -> str:
    """A name Bedrock accepts, unique within the request (``sample``, ``sample_2``, ...)."""
    filename = attachment.filename or "document"
    stem = filename.rsplit(".", 1)[0] if "." in filename.strip(".") else filename
    name = " ".join(_NAME_DISALLOWED.sub("-", stem).split()) or "document"
    count = taken.get(name, 0) + 1
    taken[name] = count
    return name if count == 1 else f"{name}_{count}"


def _blocks(value: Any) -> list[Any]:
    """RawContent's value as a list of blocks (a string becomes one text block)."""
    if isinstance(value, str):
        return [{"text": value}]
    if isinstance(value, Mapping):
        return [dict(value)]
    return list(value)


class ConverseCodec(Provider):
    """Codec for ``POST /model/{modelId}/converse`` and ``/converse-stream``.

    Subclasses add the endpoint (:attr:`base_url`) and authentication (:meth:`finish_request`).
    """

    accepted_images: ClassVar[Mapping[str, str]] = _IMAGE_FORMATS

    # -- request ------------------------------------------------------------------------------

    def build_request(self, request: ChatRequest) -> HttpRequest:
        """The Converse (or ConverseStream) call for ``request``."""
        model = self.request_model_id(request.model)
        suffix = "converse-stream" if request.stream else "converse"
        headers = {
            "content-type": "application/json",
            "accept": EVENT_STREAM if request.stream else "application/json",
            **{name.lower(): value for name, value in request.headers.items()},
        }
        # Model ids hold ':' and ARNs '/': the id is one path segment, encoded as the SDKs do.
        url = f"{self.base_url}/model/{quote(model, safe='')}/{suffix}"
        http = HttpRequest("POST", url, headers, json=self.converse_body(request, model))
        return self.finish_request(http)

    def request_model_id(self, model: str) -> str:
        """The model id the request is sent to (Bedrock adds inference-profile prefixes)."""
        return model

    def finish_request(self, http: HttpRequest) -> HttpRequest:
        """The request as sent (Bedrock signs it here)."""
        return http

    def converse_body(self, request: ChatRequest, model: str | None = None) -> dict[str, Any]:
        """The JSON body: system, messages, inferenceConfig and the optional sections."""
        system: list[Any] = []
        turns: list[dict[str, Any]] = []
        names: dict[str, int] = {}
        for message in request.messages:
            if message.role == "system":
                system.extend(self.system_blocks(message))
                continue
            role = "assistant" if message.role == "assistant" else "user"
            blocks = self.message_blocks(message, names)
            if not blocks:
                continue
            if turns and turns[-1]["role"] == role:
                # Converse wants alternating roles: tool results and the files or prompt that
                # follow them form one user turn.
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        body: dict[str, Any] = {"messages": turns}
        if system:
            body["system"] = system
        inference: dict[str, Any] = {}
        if request.temperature is not None:
            inference["temperature"] = request.temperature
        body["inferenceConfig"] = inference
        if request.tools:
            body["toolConfig"] = self.tool_config(request.tools, request.tool_choice)
        params = dict(request.params)
        # "_thinking" is sa_llm's own key (set by with_thinking): translate it, never send it.
        thinking = params.pop("_thinking", None)
        if isinstance(thinking, Mapping) and thinking:
            body["additionalModelRequestFields"] = thinking_fields(thinking, model or request.model)
        if request.schema is not None:
            body["outputConfig"] = {"textFormat": self.text_format(request.schema)}
        return deep_merge(body, params)

    def system_blocks(self, message: Message) -> list[Any]:
        """A system prompt as blocks; RawContent (e.g. with a ``cachePoint``) verbatim."""
        if isinstance(message.content, RawContent):
            return _blocks(message.content.value)
        text = message.text
        return [{"text": text}] if text else []

    def message_blocks(self, message: Message, names: dict[str, int]) -> list[Any]:
        """The content blocks of one user, assistant or tool message."""
        content = message.content
        if message.role == "tool":
            return [self.tool_result_block(message, names)]
        if message.role == "assistant":
            return self.assistant_blocks(message)
        if isinstance(content, RawContent):
            return _blocks(content.value)
        return self.content_blocks(content, names)

    def content_blocks(self, content: str | Content | None, names: dict[str, int]) -> list[Any]:
        """Text and file blocks for user content (or a tool's result)."""
        if content is None or isinstance(content, str):
            return [{"text": content}] if content else []
        blocks: list[Any] = [{"text": content.text}] if content.text else []
        blocks.extend(self.attachment_block(a, names) for a in content.attachments)
        return blocks

    def attachment_block(self, attachment: Attachment, names: dict[str, int]) -> dict[str, Any]:
        """The block for one file: image, document, video, or text inlined as a text block.

        Raises:
            UnsupportedAttachmentError: a file type Converse does not take (audio, for one).
        """
        mime = attachment.type
        kind = attachment.kind
        if kind == "image" and mime in self.accepted_images:
            image_format = self.accepted_images[mime]
            return {"image": {"format": image_format, "source": {"bytes": attachment.base64()}}}
        if mime in _DOCUMENT_FORMATS:
            return {
                "document": {
                    "format": _DOCUMENT_FORMATS[mime],
                    "name": _document_name(attachment, names),
                    "source": {"bytes": attachment.base64()},
                }
            }
        if kind == "text":
            return {"text": inline_text_file(attachment)}
        if mime in _VIDEO_FORMATS:
            video_format = _VIDEO_FORMATS[mime]
            return {"video": {"format": video_format, "source": {"bytes": attachment.base64()}}}
        raise errors.UnsupportedAttachmentError(
            f"Bedrock Converse cannot take {attachment.display_name!r} ({mime}): it accepts "
            "PNG, JPEG, GIF and WebP images, PDF and office documents, text files and videos."
        )

    def assistant_blocks(self, message: Message) -> list[Any]:
        """An earlier reply: its signed reasoning first, then text, then tool calls."""
        if isinstance(message.content, RawContent):
            blocks = _blocks(message.content.value)
        else:
            blocks = [{"text": message.text}] if message.text else []
        thinking = message.thinking
        reasoning: list[Any] = []
        kept = thinking.extra.get(REASONING_BLOCKS) if thinking is not None else None
        if isinstance(kept, list | tuple) and kept:
            # Every block as it came, in order (several signed blocks stay several).
            reasoning = [{"reasoningContent": block} for block in kept if _replayable(block)]
        elif thinking is not None:
            # Reasoning goes back only with its signature: unsigned text cannot be verified
            # by the model and is rejected (Claude) or ignored (Nova).
            if thinking.signature:
                reasoning.append(
                    {
                        "reasoningContent": {
                            "reasoningText": {
                                "text": thinking.text or "",
                                "signature": thinking.signature,
                            }
                        }
                    }
                )
            redacted = thinking.extra.get("redacted_reasoning")
            if isinstance(redacted, list | tuple):
                reasoning.extend({"reasoningContent": {"redactedContent": r}} for r in redacted)
        return reasoning + blocks + [self.tool_use_block(call) for call in message.tool_calls]

    def tool_use_block(self, call: ToolCall) -> dict[str, Any]:
        """A tool call of an earlier reply."""
        return {"toolUse": {"toolUseId": call.id, "name": call.name, "input": dict(call.arguments)}}

    def tool_result_block(self, message: Message, names: dict[str, int]) -> dict[str, Any]:
        """A tool's answer, with the files it returned as blocks of the result itself."""
        content = message.content
        if isinstance(content, RawContent):
            blocks = _blocks(content.value)
        else:
            blocks = self.content_blocks(content, names) or [{"text": ""}]
        return {"toolResult": {"toolUseId": message.tool_call_id, "content": blocks}}

    def tool_config(self, tools: Any, choice: str | None) -> dict[str, Any]:
        """``toolConfig``: the tools, and ``toolChoice`` unless the model may choose freely.

        Converse has no "none": with tool choice ``"none"`` the tools are still declared (earlier
        tool calls need them) and the model decides.
        """
        config: dict[str, Any] = {"tools": [self.tool_spec(tool) for tool in tools]}
        if choice == "auto":
            config["toolChoice"] = {"auto": {}}
        elif choice in ("required", "any"):
            config["toolChoice"] = {"any": {}}
        elif choice and choice != "none":
            config["toolChoice"] = {"tool": {"name": choice}}
        return config

    def tool_spec(self, tool: ToolSpec) -> dict[str, Any]:
        """One tool: name, description and the JSON Schema of its input."""
        spec: dict[str, Any] = {"name": tool.name}
        if tool.description:
            spec["description"] = tool.description
        spec["inputSchema"] = {"json": dict(tool.parameters)}
        return {"toolSpec": spec}

    def text_format(self, schema: SchemaSpec) -> dict[str, Any]:
        """``outputConfig.textFormat``: the schema, as a JSON string, for structured output."""
        value = strict_schema(schema.schema) if schema.strict else dict(schema.schema)
        return {
            "type": "json_schema",
            "structure": {
                "jsonSchema": {
                    "schema": json.dumps(value, ensure_ascii=False, separators=(",", ":")),
                    "name": schema.name,
                }
            },
        }

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        """The block for one file (names made unique per call, not per request)."""
        return self.attachment_block(attachment, {})

    # -- reply --------------------------------------------------------------------------------

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        """A whole reply: a chunk per content block, then usage and the stop reason.

        Raises:
            ResponseParseError: the body is not JSON or has no ``output.message.content``.
        """
        body = self.parse_json(response)
        if type(body) is not dict:
            raise self.malformed("the reply is not a JSON object", body)
        output = body.get("output")
        message = output.get("message") if type(output) is dict else None
        content = message.get("content") if type(message) is dict else None
        if not isinstance(content, list):
            raise self.malformed("the reply has no 'output.message.content' list", body)
        chunks = list(self._block_chunks(content))
        stop = body.get("stopReason")
        chunks.append(
            Chunk(
                tokens=converse_tokens(body.get("usage")), finish_reason=str(stop) if stop else None
            )
        )
        return chunks

    def _block_chunks(self, content: list[Any]) -> Iterator[Chunk]:
        redacted: list[Any] = []
        blocks: list[Any] = []  # every reasoningContent block as it came, for replay
        for index, block in enumerate(content):
            if type(block) is not dict:
                raise self.malformed("a content block is not an object", block)
            if "text" in block:
                text = block["text"]
                if text:
                    yield Chunk(content=str(text))
            elif "toolUse" in block:
                use = block["toolUse"]
                if type(use) is not dict or not use.get("name"):
                    raise self.malformed("a toolUse block has no name", block)
                yield Chunk(
                    tool_calls=(
                        ToolCallDelta(
                            key=index,
                            id=str(use.get("toolUseId") or f"call_{index}"),
                            name=str(use["name"]),
                            arguments=json.dumps(use.get("input") or {}, ensure_ascii=False),
                        ),
                    )
                )
            elif "reasoningContent" in block:
                reasoning = block["reasoningContent"]
                if type(reasoning) is not dict:
                    continue
                blocks.append(reasoning)
                yield Chunk(thinking_extra={REASONING_BLOCKS: list(blocks)})
                text_part = reasoning.get("reasoningText")
                if type(text_part) is dict:
                    yield Chunk(
                        thinking=text_part.get("text") or None,
                        thinking_signature=text_part.get("signature") or None,
                    )
                if reasoning.get("redactedContent"):
                    redacted.append(reasoning["redactedContent"])
                    yield Chunk(thinking_extra={"redacted_reasoning": list(redacted)})

    def stream_parser(self) -> StreamParser:
        """A fresh :class:`ConverseStreamParser` for one ConverseStream reply."""
        return ConverseStreamParser(self)

    # -- errors -------------------------------------------------------------------------------

    def error_message(self, body: Any) -> tuple[str, str | None]:
        """Bedrock's ``{"message": ...}`` (or ``Message``) and the ``__type`` it may carry."""
        if isinstance(body, Mapping):
            message = body.get("message") or body.get("Message")
            kind = body.get("__type")
            if message:
                return str(message), (str(kind).rsplit("#", 1)[-1] if kind else None)
        return super().error_message(body)

    def error_class(
        self, response: HttpResponse, message: str, code: str | None
    ) -> type[errors.APIStatusError]:
        """The class named by ``x-amzn-errortype`` (else the body's ``__type``) and the message."""
        # "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        error_type = response.headers.get("x-amzn-errortype", "").split(":", 1)[0] or code
        return converse_error_class(error_type, response.status, message)

    def exception_error(self, error_type: str | None, payload: Any) -> errors.ProviderError:
        """The typed error for an exception message inside the event stream."""
        message, _ = self.error_message(payload)
        cls = converse_error_class(error_type, None, message)
        return cls(f"{error_type or 'error'}: {message}", provider=self.name, body=payload)


class ConverseStreamParser(StreamParser):
    """Turns ConverseStream messages into chunks.

    ``messageStart``, ``contentBlockStart`` (a tool call's id and name),
    ``contentBlockDelta`` (text, tool input JSON, reasoning text or signature),
    ``contentBlockStop``, ``messageStop`` (the stop reason) and ``metadata`` (usage, last).
    The reply is complete once ``messageStop`` has arrived.
    """

    provider: ConverseCodec

    def __init__(self, provider: ConverseCodec) -> None:
        super().__init__(provider)
        self.decoder = EventStreamDecoder(provider.name)
        self._redacted: list[Any] = []
        # Reasoning blocks being streamed, by content block index, rebuilt as a whole reply
        # has them ({"reasoningText": {"text", "signature"}} or {"redactedContent": ...}).
        self._reasoning: dict[Any, dict[str, Any]] = {}

    def feed(self, data: bytes) -> list[Chunk]:
        """Chunks for the messages completed by ``data``."""
        return [c for m in self.decoder.feed(data) if (c := self.parse_message(m)) is not None]

    def close(self) -> list[Chunk]:
        """Raises if the stream stopped inside a message or before ``messageStop``."""
        self.decoder.flush()
        return super().close()

    def parse_message(self, message: EventStreamMessage) -> Chunk | None:
        """The chunk for one stream message, ``None`` for messages that carry nothing.

        Raises:
            ProviderError: an ``exception`` or ``error`` message (throttling, validation, ...).
            ResponseParseError: a payload that is not a JSON object.
        """
        headers = message.headers
        kind = headers.get(":message-type", "event")
        if kind != "event":
            if kind == "exception":
                raise self.provider.exception_error(
                    str(headers.get(":exception-type") or ""), self._payload(message, strict=False)
                )
            code = headers.get(":error-code")
            raise self.provider.exception_error(
                str(code) if code else None,
                {
                    "message": str(
                        headers.get(":error-message") or message.payload.decode("utf-8", "replace")
                    )
                },
            )
        event = headers.get(":event-type")
        payload = self._payload(message)
        if event == "contentBlockDelta":
            return self.delta_chunk(payload)
        if event == "contentBlockStart":
            start = payload.get("start")
            use = start.get("toolUse") if type(start) is dict else None
            if type(use) is dict:
                delta = ToolCallDelta(
                    key=payload.get("contentBlockIndex", 0),
                    id=str(use.get("toolUseId") or ""),
                    name=str(use.get("name") or ""),
                )
                return Chunk(tool_calls=(delta,))
            return None
        if event == "contentBlockStop" and payload.get("contentBlockIndex") in self._reasoning:
            return Chunk(thinking_extra={REASONING_BLOCKS: list(self._reasoning.values())})
        if event == "messageStop":
            self.finished = True
            stop = payload.get("stopReason")
            return Chunk(finish_reason=str(stop)) if stop else None
        if event == "metadata":
            tokens = converse_tokens(payload.get("usage"))
            return Chunk(tokens=tokens) if tokens is not None else None
        return None  # messageStart, contentBlockStop and events added later

    def delta_chunk(self, payload: dict[str, Any]) -> Chunk | None:
        """A ``contentBlockDelta``: text, a piece of tool input, or reasoning."""
        delta = payload.get("delta")
        if type(delta) is not dict:
            return None
        text = delta.get("text")
        if text is not None:
            return Chunk(content=text) if text else None
        use = delta.get("toolUse")
        if type(use) is dict:
            piece = use.get("input")
            if not piece:
                return None
            key = payload.get("contentBlockIndex", 0)
            return Chunk(tool_calls=(ToolCallDelta(key=key, arguments=str(piece)),))
        reasoning = delta.get("reasoningContent")
        if type(reasoning) is dict:
            self._keep_reasoning(payload.get("contentBlockIndex", 0), reasoning)
            if reasoning.get("text"):
                return Chunk(thinking=str(reasoning["text"]))
            if reasoning.get("signature"):
                return Chunk(thinking_signature=str(reasoning["signature"]))
            if reasoning.get("redactedContent"):
                self._redacted.append(reasoning["redactedContent"])
                return Chunk(thinking_extra={"redacted_reasoning": list(self._redacted)})
        return None

    def _keep_reasoning(self, index: Any, piece: dict[str, Any]) -> None:
        """Add a streamed piece of reasoning to its block."""
        if piece.get("redactedContent"):
            self._reasoning[index] = {"redactedContent": piece["redactedContent"]}
            return
        block = self._reasoning.setdefault(index, {"reasoningText": {}})
        part = block.get("reasoningText")
        if not isinstance(part, dict):
            return
        if isinstance(piece.get("text"), str):
            part["text"] = part.get("text", "") + piece["text"]
        if isinstance(piece.get("signature"), str):
            part["signature"] = part.get("signature", "") + piece["signature"]

    def _payload(self, message: EventStreamMessage, *, strict: bool = True) -> dict[str, Any]:
        try:
            payload = _decode_json(message.payload.decode("utf-8")) if message.payload else {}
        except ValueError:
            if not strict:
                return {"message": message.payload.decode("utf-8", "replace")}
            raise self.provider.malformed(
                "a stream event is not JSON", message.payload[:2000].decode("utf-8", "replace")
            ) from None
        if type(payload) is not dict:
            raise self.provider.malformed("a stream event is not an object", payload)
        return payload
