"""The OpenAI **Chat Completions** codec: OpenAI's second API and the wire format of the
OpenAI-compatible providers (OpenRouter, DeepSeek, Mistral, Ollama), which subclass it for
their real differences only.

Sans-IO: :meth:`ChatCompletionsCodec.build_request` turns a
:class:`~sa_llm.providers.base.ChatRequest` into ``POST {base_url}/chat/completions``;
:meth:`~ChatCompletionsCodec.parse_response` and :class:`ChatCompletionsStreamParser` turn a
reply into :class:`~sa_llm.types.Chunk` objects, which :class:`~sa_llm.streaming.Accumulator`
folds into the assistant message.

Every wire detail sits in one small method so a provider overrides only what differs:

* request: ``endpoint_path``, ``system_role``, :meth:`~ChatCompletionsCodec.auth_headers`,
  :meth:`~ChatCompletionsCodec.format_message` (dispatching to ``format_system_message``,
  ``format_user_message``, ``format_assistant_message``, ``format_tool_result``),
  :meth:`~ChatCompletionsCodec.format_user_content`,
  :meth:`~ChatCompletionsCodec.format_attachment`, :meth:`~ChatCompletionsCodec.format_tool`,
  :meth:`~ChatCompletionsCodec.format_tool_call`, :meth:`~ChatCompletionsCodec.format_tool_choice`,
  :meth:`~ChatCompletionsCodec.response_format`, :meth:`~ChatCompletionsCodec.format_thinking`;
* reply: :meth:`~ChatCompletionsCodec.content_text`,
  :meth:`~ChatCompletionsCodec.reasoning_delta`, :meth:`~ChatCompletionsCodec.usage_tokens`,
  :meth:`~ChatCompletionsCodec.message_chunk`, :meth:`~ChatCompletionsCodec.stream_parser`
  (and :meth:`ChatCompletionsStreamParser.delta_chunk`).

Example::

    class DeepSeek(ChatCompletionsCodec):
        name = "deepseek"
        default_base_url = "https://api.deepseek.com"

    http = DeepSeek(config).build_request(ChatRequest(model="deepseek-chat", messages=[...]))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from sa_llm import errors
from sa_llm.content import Attachment
from sa_llm.providers.base import (
    ChatRequest,
    HttpRequest,
    HttpResponse,
    Provider,
    SchemaSpec,
    SSEStreamParser,
    StreamParser,
    ToolSpec,
    deep_merge,
    reasoning_effort,
)
from sa_llm.providers.responses import inline_text_file
from sa_llm.providers.sse import ServerSentEvent
from sa_llm.schema import strict_schema
from sa_llm.types import Chunk, Content, Message, RawContent, Tokens, ToolCall, ToolCallDelta

__all__ = ["ChatCompletionsCodec", "ChatCompletionsStreamParser"]

# ``input_audio`` takes a format name, not a MIME type; these are the ones the API accepts.
_AUDIO_FORMATS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/wave": "wav",
}


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (replies are not trusted)."""
    # ``type() is dict`` first: json.loads makes dicts, and the ABC check costs ~10x more.
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    """``value`` when it is a JSON array, else an empty one (``null``, or a garbled reply)."""
    return value if type(value) is list else []


class ChatCompletionsCodec(Provider):
    """Codec for ``POST {base_url}/chat/completions``. Subclasses set ``name`` and the base URL.

    Attributes:
        endpoint_path: appended to the base URL.
        system_role: the role system messages are sent with.
    """

    endpoint_path: ClassVar[str] = "/chat/completions"
    system_role: ClassVar[str] = "system"

    # -- request ------------------------------------------------------------------------------

    def build_request(self, request: ChatRequest) -> HttpRequest:
        """``POST {base_url}/chat/completions`` with the JSON body for ``request``."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": self.format_history(request, request.messages, self.format_message),
            "stream": request.stream,
        }
        if request.stream:
            # Without it the stream carries no token usage at all.
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = [self.format_tool(tool) for tool in request.tools]
            # Both are rejected by OpenAI when no tools are sent, so only with tools.
            if request.tool_choice is not None:
                body["tool_choice"] = self.format_tool_choice(request.tool_choice)
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.schema is not None:
            body["response_format"] = self.response_format(request.schema)
        params = dict(request.params)
        # "_thinking" is sa_llm's own key (set by with_thinking): translate it, never send it.
        thinking = params.pop("_thinking", None)
        if isinstance(thinking, Mapping) and thinking:
            body.update(self.format_thinking(thinking, request.model))
        body = deep_merge(body, params)
        headers = {**self.auth_headers(), "content-type": "application/json", **request.headers}
        return HttpRequest("POST", f"{self.base_url}{self.endpoint_path}", headers, json=body)

    def format_thinking(self, thinking: Mapping[str, Any], model: str) -> dict[str, Any]:
        """Body fields for ``with_thinking(effort=..., budget=...)``: ``reasoning_effort``.

        The API has no token budget, so a budget alone picks the nearest effort.
        """
        return {"reasoning_effort": reasoning_effort(thinking)}

    def format_tool(self, tool: ToolSpec) -> dict[str, Any]:
        """One entry of ``tools``: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }

    def format_tool_choice(self, choice: str) -> Any:
        """``auto``/``none``/``required`` as they are; a tool name forces that function."""
        if choice in ("auto", "none", "required"):
            return choice
        return {"type": "function", "function": {"name": choice}}

    def response_format(self, schema: SchemaSpec) -> dict[str, Any]:
        """``response_format`` asking for JSON matching ``schema`` (strict mode when asked)."""
        return {
            "type": "json_schema",
            "json_schema": {
                "name": schema.name,
                "schema": strict_schema(schema.schema) if schema.strict else dict(schema.schema),
                "strict": schema.strict,
            },
        }

    def format_message(self, message: Message) -> list[dict[str, Any]]:
        """The wire messages for one message (a tool result with files becomes two)."""
        if message.role == "system":
            return [self.format_system_message(message)]
        if message.role == "user":
            return [self.format_user_message(message)]
        if message.role == "tool":
            return self.format_tool_result(message)
        return [self.format_assistant_message(message)]

    def format_system_message(self, message: Message) -> dict[str, Any]:
        """A system prompt, sent with :attr:`system_role`."""
        return {"role": self.system_role, "content": self.format_user_content(message.content)}

    def format_user_message(self, message: Message) -> dict[str, Any]:
        """A user turn: text, or text and files as content parts."""
        return {"role": "user", "content": self.format_user_content(message.content)}

    def format_assistant_message(self, message: Message) -> dict[str, Any]:
        """An earlier reply, with the tool calls it made (``content`` is null when empty)."""
        data: dict[str, Any] = {"role": "assistant"}
        if isinstance(message.content, RawContent):
            data["content"] = message.content.value
        else:
            data["content"] = message.text or None
        if message.tool_calls:
            data["tool_calls"] = [self.format_tool_call(call) for call in message.tool_calls]
        return data

    def format_tool_call(self, call: ToolCall) -> dict[str, Any]:
        """One entry of an assistant message's ``tool_calls`` (arguments as a JSON string)."""
        return {
            "id": call.id,
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": json.dumps(call.arguments, ensure_ascii=False),
            },
        }

    def format_tool_result(self, message: Message) -> list[dict[str, Any]]:
        """A tool's answer; files it returned follow as a user message.

        Tool messages carry text only, so attachments go in the next user turn, introduced
        with the call id so the model knows where they came from. :class:`RawContent` is
        sent as it is.
        """
        content = message.content
        # RawContent goes verbatim: providers take text (and some, image) parts here too.
        value = content.value if isinstance(content, RawContent) else (message.text or "")
        items: list[dict[str, Any]] = [
            {"role": "tool", "tool_call_id": message.tool_call_id, "content": value}
        ]
        return items + self.tool_attachments_turn(message)

    def format_user_content(self, content: str | Content | RawContent | None) -> Any:
        """A plain string, a list of parts when there are files, or RawContent verbatim."""
        return self.content_parts(content)

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        """The content part for one file: image, audio, text (inlined) or file (PDF, others)."""
        kind = attachment.kind
        if kind == "image":
            by_url = attachment.url is not None and self.accepts_url(attachment.type)
            url = attachment.url if by_url else attachment.data_url()
            return {"type": "image_url", "image_url": {"url": url}}
        if kind == "text":
            return {"type": "text", "text": inline_text_file(attachment)}
        if kind == "audio":
            mime = attachment.type
            audio_format = _AUDIO_FORMATS.get(mime, mime.split("/")[-1])
            return {
                "type": "input_audio",
                "input_audio": {"data": attachment.base64(), "format": audio_format},
            }
        return {
            "type": "file",
            "file": {"filename": attachment.display_name, "file_data": attachment.data_url()},
        }

    def accepts_url(self, mime_type: str) -> bool:
        """Images may be sent by URL; every other file is sent inline."""
        return mime_type.startswith("image/")

    # -- reply --------------------------------------------------------------------------------

    def usage_tokens(self, usage: Any) -> Tokens | None:
        """Token counts from a ``usage`` object (``None`` when there is none)."""
        if type(usage) is not dict:
            return None
        prompt_details = _mapping(usage.get("prompt_tokens_details"))
        completion_details = _mapping(usage.get("completion_tokens_details"))
        cached = prompt_details.get("cached_tokens")
        if cached is None:
            # DeepSeek's own field, from before it also filled prompt_tokens_details.
            cached = usage.get("prompt_cache_hit_tokens")
        return Tokens(
            input=usage.get("prompt_tokens"),
            output=usage.get("completion_tokens"),
            cached=cached,
            reasoning=completion_details.get("reasoning_tokens"),
        )

    def reasoning_delta(self, delta: Mapping[str, Any]) -> str | None:
        """Visible reasoning in a reply message or a stream delta.

        DeepSeek calls it ``reasoning_content``; OpenRouter and Ollama ``reasoning``; Mistral
        sends it as ``thinking`` parts of ``content`` (:meth:`content_thinking`).
        """
        for key in ("reasoning_content", "reasoning"):
            value = delta.get(key)
            if isinstance(value, str) and value:
                return value
        return self.content_thinking(delta.get("content"))

    def content_thinking(self, content: Any) -> str | None:
        """The text of the ``thinking`` parts of ``content``, when it is a list of parts:
        ``{"type": "thinking", "thinking": [{"type": "text", "text": "..."}]}``."""
        if type(content) is not list:
            return None
        texts: list[str] = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "thinking":
                continue
            inner = part.get("thinking")
            if isinstance(inner, str):
                texts.append(inner)
            elif isinstance(inner, list):
                texts.extend(
                    str(piece["text"])
                    for piece in inner
                    if isinstance(piece, Mapping) and isinstance(piece.get("text"), str)
                )
        return "".join(texts) or None

    def content_text(self, content: Any) -> str | None:
        """The text of ``content``: a string, or the text parts some providers return."""
        if isinstance(content, str):
            return content or None
        if isinstance(content, list):
            texts = [
                str(part["text"])
                for part in content
                if isinstance(part, Mapping)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            ]
            return "".join(texts) or None
        return None

    def message_text(self, message: Mapping[str, Any]) -> str | None:
        """The reply text of a message or delta; a refusal stands in for it.

        A refusal is the model's answer when it declines (structured output); keeping it as
        the text means a failed parse still shows why.
        """
        text = self.content_text(message.get("content"))
        if text is None and isinstance(message.get("refusal"), str):
            return message["refusal"] or None
        return text

    def message_chunk(self, message: Mapping[str, Any]) -> Chunk:
        """The content, reasoning and tool calls of a whole reply's ``choices[0].message``."""
        calls = []
        for index, call in enumerate(_list(message.get("tool_calls"))):
            call = _mapping(call)
            function = _mapping(call.get("function"))
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                # A few servers send the arguments as an object rather than a JSON string.
                arguments = json.dumps(arguments if arguments is not None else {})
            calls.append(
                ToolCallDelta(
                    key=index,
                    id=str(call.get("id") or f"call_{index}"),
                    name=str(function.get("name") or ""),
                    arguments=arguments,
                )
            )
        return Chunk(
            content=self.message_text(message),
            thinking=self.reasoning_delta(message),
            tool_calls=tuple(calls),
        )

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        """A whole reply: one chunk for the message, one for usage, model and finish reason.

        Raises:
            ResponseParseError: the body is not JSON or has no ``choices[0].message``.
            ProviderError: the body is an error object (some servers send those with 200).
        """
        body = self.parse_json(response)
        if not isinstance(body, Mapping):
            raise self.malformed("the reply is not a JSON object", body)
        if body.get("error"):
            raise self.stream_error(body)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self.malformed("the reply has no choices", body)
        choice = _mapping(choices[0])
        message = choice.get("message")
        if not isinstance(message, Mapping):
            raise self.malformed("the first choice has no message", body)
        finish = choice.get("finish_reason")
        return [
            self.message_chunk(message),
            Chunk(
                tokens=self.usage_tokens(body.get("usage")),
                model_id=str(body["model"]) if body.get("model") else None,
                finish_reason=str(finish) if finish else None,
            ),
        ]

    def stream_parser(self) -> StreamParser:
        """A fresh :class:`ChatCompletionsStreamParser` for one streamed reply."""
        return ChatCompletionsStreamParser(self)

    # -- errors -------------------------------------------------------------------------------

    def error_message(self, body: Any) -> tuple[str, str | None]:
        """As the base class, plus ``{"detail": ...}`` (FastAPI-style servers, e.g. Mistral)."""
        if isinstance(body, Mapping) and "error" not in body and "message" not in body:
            detail = body.get("detail")
            if isinstance(detail, str) and detail:
                return detail, None
        return super().error_message(body)

    def stream_error(self, payload: Any) -> errors.ProviderError:
        """The typed error for an error object in a stream or in a 200 reply.

        OpenRouter puts the upstream HTTP status in ``error.code``; when the code is a status
        it decides the class, otherwise the message does (as in the base class).
        """
        code = _mapping(_mapping(payload).get("error")).get("code")
        if isinstance(code, int) and 400 <= code <= 599:
            message, _ = self.error_message(payload)
            return self.stream_error_for(code, message, str(code), payload)
        return super().stream_error(payload)


class ChatCompletionsStreamParser(SSEStreamParser):
    """Parses ``data: {chunk}`` events up to ``data: [DONE]``.

    A reply is complete at ``[DONE]``, or, for servers that omit it, when a finish reason
    arrived before the stream ended.
    """

    provider: ChatCompletionsCodec

    def __init__(self, provider: ChatCompletionsCodec) -> None:
        super().__init__(provider)
        self.finish_seen = False
        # Which Accumulator key each wire index currently feeds, and the call id behind a key.
        self._keys: dict[int, int | str] = {}
        self._ids: dict[int | str, str] = {}

    def close(self) -> list[Chunk]:
        """The last event, if its blank line never came; raises if the reply is incomplete."""
        chunks = self.parse_events(self.decoder.flush())
        if self.finish_seen:
            self.finished = True
        # The completeness check of StreamParser, now that the finish reason counts.
        return chunks + StreamParser.close(self)

    def parse_event(self, event: ServerSentEvent) -> Chunk | None:
        """The chunk for one event, ``None`` for events that carry nothing.

        Raises:
            ResponseParseError: the event's data is not a JSON object.
            ProviderError: the event is an error object.
        """
        data = event.data
        if not data:
            return None
        if data == "[DONE]":
            self.finished = True
            return None
        try:
            payload = json.loads(data)
        except ValueError:
            raise self.provider.malformed("a stream event is not JSON", data) from None
        if type(payload) is not dict:
            raise self.provider.malformed("a stream event is not an object", payload)
        if payload.get("error"):
            raise self.provider.stream_error(payload)
        choices = payload.get("choices")
        choice = _mapping(choices[0]) if isinstance(choices, list) and choices else {}
        chunk = self.delta_chunk(_mapping(choice.get("delta")))
        finish = choice.get("finish_reason")
        if finish:
            self.finish_seen = True
        tokens = self.provider.usage_tokens(payload.get("usage"))
        if not (
            chunk.content
            or chunk.thinking
            or chunk.thinking_signature
            or chunk.thinking_extra
            or chunk.tool_calls
            or tokens
            or finish
        ):
            return None
        return Chunk(
            content=chunk.content,
            thinking=chunk.thinking,
            thinking_signature=chunk.thinking_signature,
            thinking_extra=chunk.thinking_extra,
            tool_calls=chunk.tool_calls,
            tokens=tokens,
            model_id=str(payload["model"]) if payload.get("model") else None,
            finish_reason=str(finish) if finish else None,
        )

    def delta_chunk(self, delta: Mapping[str, Any]) -> Chunk:
        """The content, reasoning and tool-call pieces of one ``choices[0].delta``."""
        calls = []
        for position, call in enumerate(_list(delta.get("tool_calls"))):
            call = _mapping(call)
            function = _mapping(call.get("function"))
            arguments = function.get("arguments")
            if arguments is not None and not isinstance(arguments, str):
                arguments = json.dumps(arguments)
            call_id = call.get("id")
            name = function.get("name")
            calls.append(
                ToolCallDelta(
                    key=self.call_key(call, position),
                    id=str(call_id) if call_id else None,
                    name=str(name) if name else None,
                    arguments=arguments or "",
                )
            )
        return Chunk(
            content=self.provider.message_text(delta),
            thinking=self.provider.reasoning_delta(delta),
            tool_calls=tuple(calls),
        )

    def call_key(self, call: Mapping[str, Any], position: int) -> int | str:
        """The key that ties the pieces of one streamed call together.

        Normally the call's ``index``. Some servers number every call 0 and send each whole;
        a new id at a known index therefore starts a new call instead of extending the last.
        """
        index = call.get("index")
        if not isinstance(index, int):
            index = position
        key = self._keys.get(index, index)
        call_id = call.get("id")
        if call_id:
            known = self._ids.get(key)
            if known is not None and known != call_id:
                key = f"{index}:{call_id}"
            self._keys[index] = key
            self._ids[key] = str(call_id)
        return key
