"""The OpenAI **Chat Completions** codec: OpenAI's second API and the wire format of the
OpenAI-compatible providers (OpenRouter, DeepSeek, Mistral, Ollama), which subclass it for
their real differences only.

Sans-IO: :meth:`ChatCompletionsCodec.build_request` turns a
:class:`~sa_llm.providers.base.ChatRequest` into ``POST {base_url}/chat/completions``;
:meth:`~ChatCompletionsCodec.parse_response` and :class:`ChatCompletionsStreamParser` turn a
reply into :class:`~sa_llm.types.Chunk` objects. Overridable pieces: ``endpoint_path``,
``system_role``, :meth:`auth_headers`, :meth:`format_message`, :meth:`format_attachment`,
:meth:`format_tool`, :meth:`usage_tokens`, :meth:`reasoning_text`, :meth:`response_format`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sa_llm.content import Attachment
from sa_llm.providers._responses import inline_text_file
from sa_llm.providers._sse import ServerSentEvent, SSEDecoder
from sa_llm.providers.base import (
    ChatRequest,
    HttpRequest,
    HttpResponse,
    Provider,
    SchemaSpec,
    StreamParser,
    ToolSpec,
    deep_merge,
)
from sa_llm.schema import strict_schema
from sa_llm.types import Chunk, Content, Message, RawContent, Tokens, ToolCallDelta

__all__ = ["ChatCompletionsCodec", "ChatCompletionsStreamParser"]

_AUDIO_FORMATS = {"audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/wav": "wav", "audio/x-wav": "wav"}


class ChatCompletionsCodec(Provider):
    """Codec for ``POST {base_url}/chat/completions``. Subclasses set ``name`` and base URL."""

    endpoint_path = "/chat/completions"
    system_role = "system"

    # -- request ------------------------------------------------------------------------------

    def build_request(self, request: ChatRequest) -> HttpRequest:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [item for m in request.messages for item in self.format_message(m)],
            "stream": request.stream,
        }
        if request.stream:
            body["stream_options"] = {"include_usage": True}
        if request.tools:
            body["tools"] = [self.format_tool(tool) for tool in request.tools]
            if request.tool_choice is not None:
                body["tool_choice"] = self.format_tool_choice(request.tool_choice)
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.schema is not None:
            body["response_format"] = self.response_format(request.schema)
        params = dict(request.params)
        thinking = params.pop("_thinking", None)
        if thinking:
            body.update(self.format_thinking(thinking))
        body = deep_merge(body, params)
        headers = {**self.auth_headers(), "content-type": "application/json", **request.headers}
        return HttpRequest("POST", f"{self.base_url}{self.endpoint_path}", headers, json=body)

    def format_thinking(self, thinking: Mapping[str, Any]) -> dict[str, Any]:
        effort = thinking.get("effort")
        if effort is None and thinking.get("budget") is not None:
            budget = int(thinking["budget"])
            effort = "low" if budget < 2048 else "medium" if budget < 8192 else "high"
        return {"reasoning_effort": effort or "medium"}

    def format_tool(self, tool: ToolSpec) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": dict(tool.parameters),
            },
        }

    def format_tool_choice(self, choice: str) -> Any:
        if choice in ("auto", "none", "required"):
            return choice
        return {"type": "function", "function": {"name": choice}}

    def response_format(self, schema: SchemaSpec) -> dict[str, Any]:
        return {
            "type": "json_schema",
            "json_schema": {
                "name": schema.name,
                "schema": strict_schema(schema.schema) if schema.strict else dict(schema.schema),
                "strict": schema.strict,
            },
        }

    def format_message(self, message: Message) -> list[dict[str, Any]]:
        """The wire messages for one message (a tool result with files is two)."""
        if message.role == "system":
            return [{"role": self.system_role, "content": self.format_content(message.content)}]
        if message.role == "user":
            return [{"role": "user", "content": self.format_content(message.content)}]
        if message.role == "tool":
            return self.format_tool_result(message)
        data: dict[str, Any] = {"role": "assistant"}
        if isinstance(message.content, RawContent):
            data["content"] = message.content.value
        else:
            data["content"] = message.text or None
        if message.tool_calls:
            data["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": json.dumps(call.arguments, ensure_ascii=False),
                    },
                }
                for call in message.tool_calls
            ]
        return [data]

    def format_tool_result(self, message: Message) -> list[dict[str, Any]]:
        content = message.content
        text = content.value if isinstance(content, RawContent) else (message.text or "")
        if not isinstance(text, str):
            text = json.dumps(text, ensure_ascii=False)
        items: list[dict[str, Any]] = [
            {"role": "tool", "tool_call_id": message.tool_call_id, "content": text}
        ]
        if message.attachments:
            parts: list[dict[str, Any]] = [
                {"type": "text", "text": f"Attachments from tool call {message.tool_call_id}:"}
            ]
            parts.extend(self.format_attachment(a) for a in message.attachments)
            items.append({"role": "user", "content": parts})
        return items

    def format_content(self, content: str | Content | RawContent | None) -> Any:
        if isinstance(content, RawContent):
            return content.value
        if not isinstance(content, Content):
            return content or ""
        if not content.attachments:
            return content.text or ""
        parts: list[dict[str, Any]] = []
        if content.text:
            parts.append({"type": "text", "text": content.text})
        parts.extend(self.format_attachment(a) for a in content.attachments)
        return parts

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        kind = attachment.kind
        if kind == "image":
            url = attachment.url if attachment.url and self.accepts_url(attachment.type) else None
            return {"type": "image_url", "image_url": {"url": url or attachment.data_url()}}
        if kind == "text":
            return {"type": "text", "text": inline_text_file(attachment)}
        if kind == "audio":
            audio_format = _AUDIO_FORMATS.get(attachment.type, attachment.type.split("/")[-1])
            return {
                "type": "input_audio",
                "input_audio": {"data": attachment.base64(), "format": audio_format},
            }
        return {
            "type": "file",
            "file": {"filename": attachment.display_name, "file_data": attachment.data_url()},
        }

    def accepts_url(self, mime_type: str) -> bool:
        return mime_type.startswith("image/")

    # -- reply --------------------------------------------------------------------------------

    def usage_tokens(self, usage: Any) -> Tokens | None:
        if not isinstance(usage, Mapping):
            return None
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        cached = (
            prompt_details.get("cached_tokens") if isinstance(prompt_details, Mapping) else None
        )
        if not cached and usage.get("prompt_cache_hit_tokens") is not None:
            cached = usage.get("prompt_cache_hit_tokens")  # DeepSeek
        reasoning = (
            completion_details.get("reasoning_tokens")
            if isinstance(completion_details, Mapping)
            else None
        )
        return Tokens(
            input=usage.get("prompt_tokens"),
            output=usage.get("completion_tokens"),
            cached=cached,
            reasoning=reasoning,
        )

    def reasoning_text(self, message: Mapping[str, Any]) -> str | None:
        """Visible reasoning in a message or delta (``reasoning_content`` / ``reasoning``)."""
        for key in ("reasoning_content", "reasoning"):
            value = message.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    @staticmethod
    def content_text(content: Any) -> str | None:
        if isinstance(content, str):
            return content or None
        if isinstance(content, list):
            texts = [
                str(part.get("text"))
                for part in content
                if isinstance(part, Mapping)
                and part.get("type") in ("text", None)
                and part.get("text")
            ]
            return "".join(texts) or None
        return None

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        body = self.parse_json(response)
        if not isinstance(body, Mapping):
            raise self.malformed("the reply is not a JSON object", body)
        if body.get("error"):
            raise self.stream_error(body)
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self.malformed("the reply has no choices", body)
        choice = choices[0]
        message = choice.get("message") if isinstance(choice, Mapping) else None
        if not isinstance(message, Mapping):
            raise self.malformed("the first choice has no message", body)
        calls = []
        for index, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments or {})
            calls.append(
                ToolCallDelta(
                    key=index,
                    id=str(call.get("id") or f"call_{index}"),
                    name=str(function.get("name") or ""),
                    arguments=arguments,
                )
            )
        return [
            Chunk(
                content=self.content_text(message.get("content")),
                thinking=self.reasoning_text(message),
                tool_calls=tuple(calls),
            ),
            Chunk(
                tokens=self.usage_tokens(body.get("usage")),
                model_id=str(body["model"]) if body.get("model") else None,
                finish_reason=choice.get("finish_reason"),
            ),
        ]

    def stream_parser(self) -> StreamParser:
        return ChatCompletionsStreamParser(self)


class ChatCompletionsStreamParser(StreamParser):
    """Parses ``data: {chunk}`` events up to ``data: [DONE]``."""

    provider: ChatCompletionsCodec

    def __init__(self, provider: ChatCompletionsCodec) -> None:
        super().__init__(provider)
        self.decoder = SSEDecoder()
        self.finish_seen = False

    def feed(self, data: bytes) -> list[Chunk]:
        return [c for event in self.decoder.feed(data) if (c := self.parse_event(event))]

    def close(self) -> list[Chunk]:
        chunks = [c for event in self.decoder.flush() if (c := self.parse_event(event))]
        # Some servers end without [DONE]; a finish reason already said the reply is complete.
        if self.finish_seen:
            self.finished = True
        return chunks + super().close()

    def parse_event(self, event: ServerSentEvent) -> Chunk | None:
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
        if not isinstance(payload, Mapping):
            raise self.provider.malformed("a stream event is not an object", payload)
        if payload.get("error"):
            raise self.provider.stream_error(payload)
        choices = payload.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], Mapping) else {}
        delta = choice.get("delta") or {}
        calls = tuple(
            ToolCallDelta(
                key=int(call.get("index", i)),
                id=call.get("id"),
                name=(call.get("function") or {}).get("name"),
                arguments=(call.get("function") or {}).get("arguments") or "",
            )
            for i, call in enumerate(delta.get("tool_calls") or ())
        )
        finish = choice.get("finish_reason")
        if finish:
            self.finish_seen = True
        tokens = self.provider.usage_tokens(payload.get("usage"))
        chunk = Chunk(
            content=self.provider.content_text(delta.get("content")),
            thinking=self.provider.reasoning_text(delta),
            tool_calls=calls,
            tokens=tokens,
            model_id=str(payload["model"]) if payload.get("model") else None,
            finish_reason=finish,
        )
        if not (chunk.content or chunk.thinking or calls or tokens or finish):
            return None
        return chunk
