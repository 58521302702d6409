"""The OpenAI **Responses** API codec, shared by OpenAI (its default API) and xAI.

Sans-IO: builds the request body from a :class:`~sa_llm.providers.base.ChatRequest`, parses a
whole reply or a stream of SSE events into :class:`~sa_llm.types.Chunk` objects. Reasoning items
come back with ``encrypted_content`` (``store: false`` plus
``include: ["reasoning.encrypted_content"]``) and are replayed on the next turn, so reasoning
models keep their chain of thought across tool calls without server-side state.

Example::

    codec = OpenAI(config)
    http = codec.build_request(ChatRequest(model="gpt-5-nano", messages=[user_message]))
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

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
from sa_llm.providers.sse import ServerSentEvent
from sa_llm.schema import strict_schema
from sa_llm.types import Chunk, Message, RawContent, Tokens, ToolCallDelta

__all__ = ["REASONING_ITEMS", "ResponsesCodec", "ResponsesStreamParser", "inline_text_file"]

#: The key of ``Thinking.extra`` holding a reply's reasoning items as they came (summary,
#: encrypted content), in order, for replay.
REASONING_ITEMS = "reasoning_items"


def inline_text_file(attachment: Attachment) -> str:
    """A text file as the model reads it inline (the form every provider here accepts)."""
    return (
        f"<file name='{attachment.display_name}' mime_type='{attachment.type}'>"
        f"{attachment.text()}</file>"
    )


_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5", "codex", "gpt-oss", "grok-3-mini", "grok-4")


def _function_call_chunk(item: Mapping[str, Any], key: Any) -> Chunk:
    """A ``function_call`` output item as a chunk of one tool call, keyed by ``key`` (the later
    argument deltas name the call by it)."""
    return Chunk(
        tool_calls=(
            ToolCallDelta(
                key=str(key),
                id=str(item.get("call_id") or item.get("id")),
                name=str(item.get("name") or ""),
                arguments=str(item.get("arguments") or ""),
            ),
        )
    )


def _parts(value: Any) -> Sequence[Any]:
    """An output item's ``content`` or ``summary`` list; anything else (absent, or garbled into
    ``true``, a number or a string, as the fuzzer found) holds no parts, the way the Chat
    Completions codec reads a garbled ``tool_calls``."""
    return value if isinstance(value, list) else ()


class ResponsesCodec(Provider):
    """Codec for ``POST {base_url}/responses``. Subclasses set ``name`` and the base URL."""

    endpoint_path = "/responses"
    text_part_type = "input_text"

    # -- request ------------------------------------------------------------------------------

    def is_reasoning_model(self, model: str) -> bool:
        """Whether to ask for encrypted reasoning (only reasoning models accept it)."""
        return model.startswith(_REASONING_PREFIXES)

    def build_request(self, request: ChatRequest) -> HttpRequest:
        instructions = [m.text or "" for m in request.messages if m.role == "system"]
        body: dict[str, Any] = {"model": request.model}
        if instructions:
            body["instructions"] = "\n\n".join(instructions)
        body["input"] = self.format_history(
            request,
            [message for message in request.messages if message.role != "system"],
            self.format_message,
        )
        body["stream"] = request.stream
        body["store"] = False
        if self.is_reasoning_model(request.model):
            body["include"] = ["reasoning.encrypted_content"]
        if request.tools:
            body["tools"] = [self.format_tool(tool) for tool in request.tools]
        if request.tool_choice is not None and request.tools:
            body["tool_choice"] = self.format_tool_choice(request.tool_choice)
        if request.parallel_tool_calls is not None and request.tools:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.schema is not None:
            body["text"] = {"format": self.format_schema(request.schema)}
        params = dict(request.params)
        thinking = params.pop("_thinking", None)
        if thinking:
            body["reasoning"] = self.format_thinking(thinking)
        body = deep_merge(body, params)
        headers = {**self.auth_headers(), "content-type": "application/json"}
        headers.update(request.headers)
        return HttpRequest("POST", f"{self.base_url}{self.endpoint_path}", headers, json=body)

    def format_thinking(self, thinking: Mapping[str, Any]) -> dict[str, Any]:
        return {"effort": reasoning_effort(thinking)}

    def format_tool(self, tool: ToolSpec) -> dict[str, Any]:
        return {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
            "strict": False,
        }

    def format_tool_choice(self, choice: str) -> Any:
        if choice in ("auto", "none", "required"):
            return choice
        return {"type": "function", "name": choice}

    def format_schema(self, schema: SchemaSpec) -> dict[str, Any]:
        return {
            "type": "json_schema",
            "name": schema.name,
            "schema": strict_schema(schema.schema) if schema.strict else dict(schema.schema),
            "strict": schema.strict,
        }

    def format_message(self, message: Message) -> list[dict[str, Any]]:
        """The input items for one message (an assistant turn can be several items)."""
        if message.role == "user":
            return [{"role": "user", "content": self.content_parts(message.content)}]
        if message.role == "tool":
            return self.format_tool_result(message)
        items: list[dict[str, Any]] = []
        thinking = message.thinking
        kept = thinking.extra.get(REASONING_ITEMS) if thinking is not None else None
        if isinstance(kept, list | tuple) and kept:
            # Every reasoning item of the reply, its summary and encrypted content as they came.
            items.extend(self.reasoning_input(item) for item in kept if isinstance(item, Mapping))
        elif thinking is not None and (thinking.signature or thinking.extra.get("reasoning_item")):
            reasoning: dict[str, Any] = {
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": thinking.text}]
                if thinking.text
                else [],
            }
            if thinking.signature:
                reasoning["encrypted_content"] = thinking.signature
            items.append(reasoning)
        if isinstance(message.content, RawContent):
            items.append({"role": "assistant", "content": message.content.value})
        elif message.text:
            items.append(
                {"role": "assistant", "content": [{"type": "output_text", "text": message.text}]}
            )
        for call in message.tool_calls:
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": json.dumps(call.arguments, ensure_ascii=False),
                }
            )
        return items

    def reasoning_input(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """A reasoning item of an earlier reply as input: its summary and encrypted content
        exactly as received (no id: with ``store: false`` there is nothing to refer to)."""
        reasoning: dict[str, Any] = {
            "type": "reasoning",
            "summary": list(_parts(item.get("summary"))),
        }
        if item.get("encrypted_content"):
            reasoning["encrypted_content"] = item["encrypted_content"]
        return reasoning

    def format_tool_result(self, message: Message) -> list[dict[str, Any]]:
        content = message.content
        output = content.value if isinstance(content, RawContent) else (message.text or "")
        if not isinstance(output, str):
            output = json.dumps(output, ensure_ascii=False)
        items: list[dict[str, Any]] = [
            {"type": "function_call_output", "call_id": message.tool_call_id, "output": output}
        ]
        return items + self.tool_attachments_turn(message)

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        kind = attachment.kind
        by_url = attachment.url is not None and self.accepts_url(attachment.type)
        if kind == "image":
            url = attachment.url if by_url else attachment.data_url()
            return {"type": "input_image", "image_url": url}
        if kind == "text":
            return {"type": "input_text", "text": inline_text_file(attachment)}
        if by_url:
            return {"type": "input_file", "file_url": attachment.url}
        return {
            "type": "input_file",
            "filename": attachment.display_name,
            "file_data": attachment.data_url(),
        }

    def accepts_url(self, mime_type: str) -> bool:
        return mime_type.startswith("image/")

    # -- reply --------------------------------------------------------------------------------

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        body = self.parse_json(response)
        if not isinstance(body, Mapping):
            raise self.malformed("the reply is not a JSON object", body)
        if body.get("error"):
            raise self.stream_error(body)
        output = body.get("output")
        if not isinstance(output, list):
            raise self.malformed("the reply has no 'output' list", body)
        chunks = [chunk for item in output for chunk in self.parse_output_item(item, final=True)]
        reasoning = [i for i in output if isinstance(i, Mapping) and i.get("type") == "reasoning"]
        if reasoning:
            chunks.append(
                Chunk(thinking_extra={"reasoning_item": True, REASONING_ITEMS: reasoning})
            )
        chunks.append(self.final_chunk(body))
        return chunks

    def parse_output_item(self, item: Any, *, final: bool) -> Iterable[Chunk]:
        """Chunks for one complete output item (``final``: the whole reply, not a stream)."""
        if not isinstance(item, Mapping):
            raise self.malformed("an output item is not an object", item)
        kind = item.get("type")
        if kind == "message" and final:
            for part in _parts(item.get("content")):
                if not isinstance(part, Mapping):
                    continue
                if part.get("type") == "output_text" and part.get("text"):
                    yield Chunk(content=str(part["text"]))
                elif part.get("type") == "refusal" and part.get("refusal"):
                    yield Chunk(content=str(part["refusal"]))
        elif kind == "function_call" and final:
            yield _function_call_chunk(item, item.get("id") or item.get("call_id"))
        elif kind == "reasoning":
            text = "\n\n".join(
                str(part.get("text"))
                for part in _parts(item.get("summary"))
                if isinstance(part, Mapping) and part.get("text")
            )
            if not text:
                text = "".join(
                    str(part.get("text"))
                    for part in _parts(item.get("content"))
                    if isinstance(part, Mapping) and part.get("text")
                )
            yield Chunk(
                thinking=text if (final and text) else None,
                thinking_signature=item.get("encrypted_content") or None,
                thinking_extra={"reasoning_item": True},
            )

    def final_chunk(self, body: Mapping[str, Any]) -> Chunk:
        """Usage, model and finish reason of a complete response object."""
        status = body.get("status")
        finish = "stop" if status == "completed" else None
        details = body.get("incomplete_details")
        if status == "incomplete" and isinstance(details, Mapping):
            finish = "length" if details.get("reason") == "max_output_tokens" else "incomplete"
        return Chunk(
            tokens=self.usage_tokens(body.get("usage")),
            model_id=str(body["model"]) if body.get("model") else None,
            finish_reason=finish,
        )

    def usage_tokens(self, usage: Any) -> Tokens | None:
        if not isinstance(usage, Mapping):
            return None
        input_details = usage.get("input_tokens_details") or {}
        output_details = usage.get("output_tokens_details") or {}
        return Tokens(
            input=usage.get("input_tokens"),
            output=usage.get("output_tokens"),
            cached=input_details.get("cached_tokens")
            if isinstance(input_details, Mapping)
            else None,
            reasoning=(
                output_details.get("reasoning_tokens")
                if isinstance(output_details, Mapping)
                else None
            ),
        )

    def error_message(self, body: Any) -> tuple[str, str | None]:
        if isinstance(body, Mapping) and isinstance(body.get("response"), Mapping):
            return super().error_message(body["response"])
        return super().error_message(body)

    def stream_parser(self) -> StreamParser:
        return ResponsesStreamParser(self)


class ResponsesStreamParser(SSEStreamParser):
    """Parses the Responses event stream (``response.output_text.delta`` ... ``completed``)."""

    provider: ResponsesCodec

    def __init__(self, provider: ResponsesCodec) -> None:
        super().__init__(provider)
        self._reasoning: list[Any] = []  # the reply's reasoning items, whole, for replay

    def parse_event(self, event: ServerSentEvent) -> Chunk | None:
        if not event.data or event.data == "[DONE]":
            return None
        try:
            payload = json.loads(event.data)
        except ValueError:
            raise self.provider.malformed("a stream event is not JSON", event.data) from None
        if not isinstance(payload, Mapping):
            raise self.provider.malformed("a stream event is not an object", payload)
        kind = payload.get("type") or event.event
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = payload.get("delta")
            return Chunk(content=str(delta)) if delta else None
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = payload.get("delta")
            return Chunk(thinking=str(delta)) if delta else None
        if kind == "response.reasoning_summary_part.added" and payload.get("summary_index"):
            # Summaries come in parts; separate them as the non-streamed form does.
            return Chunk(thinking="\n\n")
        if kind == "response.output_item.added":
            item = payload.get("item")
            if isinstance(item, Mapping) and item.get("type") == "function_call":
                return _function_call_chunk(item, item.get("id") or payload.get("output_index"))
            return None
        if kind == "response.function_call_arguments.delta":
            delta = payload.get("delta")
            if not delta:
                return None
            key = payload.get("item_id") or payload.get("output_index")
            return Chunk(tool_calls=(ToolCallDelta(key=str(key), arguments=str(delta)),))
        if kind == "response.output_item.done":
            item = payload.get("item")
            if isinstance(item, Mapping) and item.get("type") == "reasoning":
                self._reasoning.append(item)
                chunks = list(self.provider.parse_output_item(item, final=False))
                extra = {"reasoning_item": True, REASONING_ITEMS: list(self._reasoning)}
                if not chunks:
                    return Chunk(thinking_extra=extra)
                return replace(chunks[0], thinking_extra=extra)
            return None
        if kind in ("response.completed", "response.incomplete"):
            self.finished = True
            response = payload.get("response")
            if isinstance(response, Mapping):
                return self.provider.final_chunk(response)
            return Chunk(finish_reason="stop")
        if kind in ("error", "response.failed"):
            raise self.provider.stream_error(payload)
        return None
