"""Google Gemini through the Generative Language API (``generateContent``).

Sans-IO codec for ``POST {base_url}/models/{model}:generateContent`` and, for streams,
``:streamGenerateContent?alt=sse``. The key goes in the ``x-goog-api-key`` header (never in the
URL, which is logged). What Gemini does differently, and how it is handled:

* **Turns**: roles are ``user`` and ``model``; system prompts go in ``systemInstruction``; tool
  results are ``functionResponse`` parts of a user turn (consecutive results share one turn).
  Gemini rejects empty text parts, so none is ever sent: an assistant turn with only tool calls
  carries only ``functionCall`` parts, and a message with nothing to say is left out.
* **Files** are sent inline (``inline_data``: images, PDF, audio, video); text files are
  inlined as text. Remote files are downloaded and sent inline, as the recorded traffic does (a
  Files API or YouTube URI can go in a ``RawContent`` ``file_data`` part). Files a tool returns
  ride along with its ``functionResponse``: nested in it for Gemini 3+ (multimodal function
  responses), as parts next to it for older models.
* **Tool calls** carry no ids on Gemini 2.x: each call gets a stable id from the reply's
  ``responseId`` and its position (Gemini 3's own ``functionCall.id`` is kept when present).
  Results are matched to calls by function name and order; no id is sent back, as in the
  recorded traffic.
* **Thought signatures** (``thoughtSignature``) are kept: on a tool call in
  ``ToolCall.extra["thought_signature"]``, on text in ``Thinking.signature``, and sent back on the
  next turn as the recorded RubyLLM traffic does (a call without its own signature in a reply of
  parallel calls gets the reply's first call signature; a text signature rides on a
  ``thought`` part before the text).
* **Tool schemas** are rewritten into Gemini's OpenAPI subset (:mod:`._gemini_schema`);
  structured output sends the JSON Schema as it is in ``responseJsonSchema``.
* **Thinking**: ``with_thinking`` becomes ``generationConfig.thinkingConfig`` with
  ``includeThoughts``; Gemini 3 takes an effort as ``thinkingLevel``, Gemini 2.x a
  ``thinkingBudget`` (an effort is mapped to a budget).
* **Usage**: ``output`` = ``candidatesTokenCount + thoughtsTokenCount``; ``input`` =
  ``promptTokenCount``, which already includes ``cachedContentTokenCount`` (reported as
  ``cached``, not subtracted).

Example::

    sa_llm.configure(gemini_api_key="...")
    sa_llm.chat("gemini-2.5-flash").with_thinking(budget=1024).ask("What's 2 + 2?")

One concept, one module (over 600 lines): the Gemini provider and its wire format.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from sa_llm import errors
from sa_llm.content import Attachment
from sa_llm.providers import register_provider
from sa_llm.providers._gemini_schema import function_parameters
from sa_llm.providers.base import (
    ChatRequest,
    HttpRequest,
    HttpResponse,
    Provider,
    SSEStreamParser,
    StreamParser,
    ToolSpec,
    deep_merge,
    error_class_for,
)
from sa_llm.providers.responses import inline_text_file
from sa_llm.types import Chunk, Content, Message, RawContent, Tokens, ToolCallDelta

__all__ = ["Gemini", "GeminiStreamParser"]

_GENERATION = re.compile(r"(?:^|/)gemini-(\d+)")

# Finish reasons that mean the reply was withheld, not that it ended normally.
_BLOCKED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)

# Gemini 2.x thinks within a token budget; an effort maps to these (-1 = the model decides).
_EFFORT_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}

_TOOL_CHOICE_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}

_INLINE_KINDS = frozenset({"image", "pdf", "audio", "video"})

_loads = json.loads


def model_generation(model: str) -> int | None:
    """The major version in a model id (``gemini-2.5-flash`` -> 2), ``None`` for aliases."""
    match = _GENERATION.search(model)
    return int(match.group(1)) if match else None


def model_resource(model: str) -> str:
    """The resource path of a model id: ``models/<id>``, or a full path (``tunedModels/...``)."""
    return model if "/" in model else f"models/{model}"


def usage_tokens(usage: Any) -> Tokens | None:
    """Token counts from ``usageMetadata`` (thinking counts as output, as Gemini bills it)."""
    if not isinstance(usage, Mapping):
        return None
    candidates = _count(usage, "candidatesTokenCount")
    thoughts = _count(usage, "thoughtsTokenCount")
    output = (
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    )
    return Tokens(
        input=_count(usage, "promptTokenCount"),
        output=output,
        cached=_count(usage, "cachedContentTokenCount"),
        reasoning=thoughts,
    )


def _count(usage: Mapping[str, Any], key: str) -> int | None:
    """A token count, or ``None`` when it is missing or not a number."""
    value = usage.get(key)
    return value if type(value) is int else None


class _Reply:
    """What parsing one reply remembers between its stream events."""

    __slots__ = (
        "call_signature", "calls", "files", "finished", "model_seen", "produced", "response_id",
    )  # fmt: skip

    def __init__(self) -> None:
        self.calls = 0
        self.files = 0
        self.call_signature: str | None = None
        self.finished = False
        self.model_seen = False
        self.produced = False
        self.response_id: str | None = None

    def call_id(self, index: int) -> str:
        if self.response_id is None:
            # Google always sends responseId; a server that does not still gets unique ids.
            self.response_id = uuid.uuid4().hex
        return f"call_{self.response_id}_{index}"


@register_provider
class Gemini(Provider):
    """Google's Gemini API (AI Studio keys): ``generateContent`` and its SSE stream."""

    name: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com/v1beta"

    def auth_headers(self) -> dict[str, str]:
        key = self.api_key()
        return {"x-goog-api-key": key} if key else {}

    # -- request ------------------------------------------------------------------------------

    def build_request(self, request: ChatRequest) -> HttpRequest:
        """``POST .../models/{model}:generateContent`` (or the SSE stream) for ``request``.

        Raises:
            ConfigurationError: the request asks for something Gemini cannot do (see
                :meth:`check_request`).
            UnsupportedAttachmentError: a file of a type Gemini does not read.
        """
        self.check_request(request)
        body: dict[str, Any] = {"contents": self.format_contents(request.messages, request.model)}
        generation: dict[str, Any] = {}
        if request.temperature is not None:
            generation["temperature"] = request.temperature
        if request.schema is not None:
            generation["responseMimeType"] = "application/json"
            generation["responseJsonSchema"] = dict(request.schema.schema)
        params = dict(request.params)
        # "_thinking" is sa_llm's own key (set by with_thinking): translate it, never send it.
        thinking = params.pop("_thinking", None)
        if isinstance(thinking, Mapping) and thinking:
            generation["thinkingConfig"] = self.thinking_config(request.model, thinking)
        body["generationConfig"] = generation
        system = self.system_instruction(request.messages)
        if system is not None:
            body["systemInstruction"] = system
        if request.tools:
            body["tools"] = [{"functionDeclarations": [self.format_tool(t) for t in request.tools]}]
            if request.tool_choice is not None:
                body["toolConfig"] = {
                    "functionCallingConfig": self.function_calling_config(request.tool_choice)
                }
        body = deep_merge(body, params)
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        url = f"{self.base_url}/{model_resource(request.model)}:{method}"
        headers = {**self.auth_headers(), "content-type": "application/json", **request.headers}
        return HttpRequest("POST", url, headers, json=body)

    def check_request(self, request: ChatRequest) -> None:
        """Refuse, before sending, what Gemini is known to reject.

        Raises:
            ConfigurationError: a JSON schema together with tools on a Gemini 1.x/2.x model
                ("Tool use with a response mime type: 'application/json' is unsupported"), or a
                tool choice naming a tool the chat does not have.
        """
        generation = model_generation(request.model)
        old_model = generation is not None and generation < 3
        if request.schema is not None and request.tools and old_model:
            raise errors.ConfigurationError(
                f"{request.model} cannot use tools and a response schema in the same request "
                "(Gemini 3 models can); remove the schema with with_schema(None) while tools "
                "are set, or use a Gemini 3 model."
            )
        choice = request.tool_choice
        named = choice is not None and choice not in _TOOL_CHOICE_MODES
        if named and request.tools and choice not in {tool.name for tool in request.tools}:
            raise errors.ConfigurationError(
                f"tool_choice names {choice!r}, but the chat has no tool of that name."
            )

    def thinking_config(self, model: str, thinking: Mapping[str, Any]) -> dict[str, Any]:
        """``thinkingConfig`` for ``with_thinking(effort=..., budget=...)``.

        Gemini 3 takes ``thinkingLevel`` (an effort wins over a budget: the API refuses both);
        Gemini 2.x only takes ``thinkingBudget`` (an effort alone maps to a budget).
        """
        config: dict[str, Any] = {"includeThoughts": True}
        effort = thinking.get("effort")
        budget = thinking.get("budget")
        generation = model_generation(model)
        if generation is not None and generation < 3:
            if budget is not None:
                config["thinkingBudget"] = int(budget)
            else:
                config["thinkingBudget"] = _EFFORT_BUDGETS.get(str(effort), -1)
        elif effort is not None:
            config["thinkingLevel"] = str(effort)
        elif budget is not None:
            config["thinkingBudget"] = int(budget)
        return config

    def format_tool(self, tool: ToolSpec) -> dict[str, Any]:
        """One function declaration, its parameters in Gemini's schema subset."""
        declaration: dict[str, Any] = {"name": tool.name}
        if tool.description:
            declaration["description"] = tool.description
        declaration["parameters"] = function_parameters(tool.parameters)
        return declaration

    def function_calling_config(self, choice: str) -> dict[str, Any]:
        """``auto``/``none``/``required`` as ``AUTO``/``NONE``/``ANY``; a name forces that tool."""
        mode = _TOOL_CHOICE_MODES.get(choice)
        if mode is not None:
            return {"mode": mode}
        return {"mode": "ANY", "allowedFunctionNames": [choice]}

    def system_instruction(self, messages: Sequence[Message]) -> dict[str, Any] | None:
        """``systemInstruction`` with one text part per (non-empty) system message."""
        parts = [{"text": m.text} for m in messages if m.role == "system" and m.text]
        return {"parts": parts} if parts else None

    def format_contents(self, messages: Sequence[Message], model: str) -> list[dict[str, Any]]:
        """The ``contents`` turns for the conversation (system messages excluded).

        Raises:
            ConfigurationError: a tool result answers a call id no earlier message made (Gemini
                needs the function's name), or nothing at all is left to send.
        """
        contents: list[dict[str, Any]] = []
        call_names: dict[str, str] = {}
        previous_was_tool = False
        for message in messages:
            if message.role == "system":
                continue
            if message.role == "tool":
                parts = self.function_response_parts(message, call_names, model)
                if previous_was_tool:
                    # Results of parallel calls answer in one turn, in the calls' order.
                    contents[-1]["parts"].extend(parts)
                else:
                    contents.append({"role": "user", "parts": parts})
                previous_was_tool = True
                continue
            previous_was_tool = False
            if message.role == "assistant":
                for call in message.tool_calls:
                    call_names[call.id] = call.name
                parts = self.model_parts(message)
                role = "model"
            else:
                parts = self.content_parts(message.content)
                role = "user"
            if parts:  # Gemini rejects a turn without parts, and an empty text part.
                contents.append({"role": role, "parts": parts})
        if not contents:
            raise errors.ConfigurationError("There is nothing to send: every message is empty.")
        return contents

    def content_parts(self, content: str | Content | RawContent | None) -> list[dict[str, Any]]:
        """Parts for a message's content: text (if any), then its files; RawContent verbatim."""
        if isinstance(content, RawContent):
            value = content.value
            if isinstance(value, str):
                return [{"text": value}] if value else []
            if isinstance(value, Mapping):
                return [dict(value)]
            return list(value) if isinstance(value, Sequence) else []
        if isinstance(content, Content):
            parts = [{"text": content.text}] if content.text else []
            parts.extend(self.format_attachment(a) for a in content.attachments)
            return parts
        return [{"text": content}] if content else []

    def model_parts(self, message: Message) -> list[dict[str, Any]]:
        """An earlier reply: its thought signature, text and tool calls, as recorded traffic shows.

        A text signature is sent on a ``thought`` part (with the thinking text when there is
        some) before the text; a call's signature on its ``functionCall`` part. Signatures of
        replies from other providers (their reasoning blobs) are not Gemini's and are left out.
        """
        parts: list[dict[str, Any]] = []
        thinking = message.thinking
        if thinking is not None and thinking.signature and self._own_reply(message):
            part: dict[str, Any] = {"thought": True}
            if thinking.text:
                part["text"] = thinking.text
            part["thoughtSignature"] = thinking.signature
            parts.append(part)
        parts.extend(self.content_parts(message.content))
        for call in message.tool_calls:
            call_part: dict[str, Any] = {
                "functionCall": {"name": call.name, "args": dict(call.arguments)}
            }
            signature = call.extra.get("thought_signature") if call.extra else None
            if signature:
                call_part["thoughtSignature"] = signature
            parts.append(call_part)
        return parts

    def _own_reply(self, message: Message) -> bool:
        model = message.model_id
        return model is None or "gemini" in model or "gemma" in model

    def function_response_parts(
        self, message: Message, call_names: Mapping[str, str], model: str
    ) -> list[dict[str, Any]]:
        """A tool's result as a ``functionResponse`` part, and the files it returned.

        Gemini 3 takes files inside the function response (``parts`` of inline data); older
        models read them as parts next to it. Text files are always inlined next to it.
        """
        name = call_names.get(message.tool_call_id or "")
        if name is None:
            raise errors.ConfigurationError(
                f"The tool result for call {message.tool_call_id!r} follows no tool call with "
                "that id; Gemini needs the called function's name."
            )
        content = message.content
        if isinstance(content, RawContent):
            result: Any = content.value
        else:
            result = [{"text": message.text or ""}]
        response: dict[str, Any] = {"name": name, "response": {"name": name, "content": result}}
        files = [self.format_attachment(a) for a in message.attachments]
        nested = [f for f in files if "inline_data" in f]
        generation = model_generation(model)
        if nested and generation is not None and generation >= 3:
            response["parts"] = nested
            files = [f for f in files if "inline_data" not in f]
        return [{"functionResponse": response}, *files]

    def format_attachment(self, attachment: Attachment) -> dict[str, Any]:
        """A file as an ``inline_data`` part, or a text part for text files.

        Raises:
            UnsupportedAttachmentError: a type Gemini does not read (archives, office files...).
        """
        kind = attachment.kind
        if kind == "text":
            return {"text": inline_text_file(attachment)}
        if kind in _INLINE_KINDS:
            return {"inline_data": {"mime_type": attachment.type, "data": attachment.base64()}}
        raise errors.UnsupportedAttachmentError(
            f"Gemini cannot read {attachment.display_name!r} ({attachment.type}); it takes "
            "images, PDFs, audio, video and text files."
        )

    # -- reply --------------------------------------------------------------------------------

    def parse_response(self, response: HttpResponse) -> list[Chunk]:
        """A whole ``GenerateContentResponse`` as one chunk.

        Raises:
            ResponseParseError: not JSON, no candidates, or a candidate without content parts
                that did not finish.
            BadRequestError: Gemini blocked the prompt or withheld the whole reply.
        """
        body = self.parse_json(response)
        if not isinstance(body, Mapping):
            raise self.malformed("the reply is not a JSON object", body)
        if body.get("error"):
            raise self.stream_error(body)
        return [self.response_chunk(body, _Reply(), streaming=False)]

    def response_chunk(
        self, payload: Mapping[str, Any], reply: _Reply, *, streaming: bool
    ) -> Chunk:
        """One ``GenerateContentResponse`` (a whole reply, or one stream event) as a chunk."""
        # The hot path of streaming: replies come from json.loads, so the type checks are exact
        # (``type(x) is dict``) and one-part events build no lists.
        if reply.response_id is None:
            response_id = payload.get("responseId")
            reply.response_id = str(response_id) if response_id else None
        candidates = payload.get("candidates")
        if not candidates:
            return self.candidateless_chunk(payload, streaming)
        candidate = candidates[0] if type(candidates) is list else None
        if type(candidate) is not dict:
            raise self.malformed("candidates[0] is not an object", payload)
        finish = candidate.get("finishReason")
        if finish is not None and type(finish) is not str:
            raise self.malformed("candidates[0].finishReason is not a string", payload)
        content = candidate.get("content")
        parts = content.get("parts") if type(content) is dict else None
        if type(parts) is not list:
            if finish is None:
                raise self.malformed("candidates[0] has no content.parts", payload)
            if finish in _BLOCKED and not reply.produced:
                raise self.blocked(
                    f"Gemini withheld the reply (finishReason {finish})",
                    candidate.get("finishMessage"),
                    payload,
                )
            parts = []

        text: str | None = None
        thought: str | None = None
        text_signature: str | None = None
        calls: list[ToolCallDelta] = []
        files: list[Attachment] = []
        for part in parts:
            if type(part) is not dict:
                continue
            signature = part.get("thoughtSignature")
            inline = part.get("inlineData") or part.get("inline_data")
            if inline is not None and not part.get("thought"):
                # A file the model made (an image): returned with the reply, stored with it.
                files.append(self.inline_file(inline, reply))
                if signature:
                    text_signature = str(signature)
                continue
            call = part.get("functionCall")
            if call is not None:
                if reply.call_signature is None:
                    # Of parallel calls only the first is signed; the others carry its signature.
                    reply.call_signature = str(signature) if signature else _call_signature(parts)
                calls.append(self.call_delta(call, signature or reply.call_signature, reply))
                continue
            value = part.get("text")
            if value and type(value) is str:
                if part.get("thought"):
                    thought = value if thought is None else thought + value
                else:
                    text = value if text is None else text + value
            if signature:
                text_signature = str(signature)
        if text is not None or calls or files:
            reply.produced = True

        model_id = None
        if not reply.model_seen and payload.get("modelVersion"):
            reply.model_seen = True
            model_id = str(payload["modelVersion"])
        # Stream events repeat the running usage, each replacing the last (the final event's
        # figures win): a stream cut short keeps what the provider had counted so far.
        tokens = usage_tokens(payload.get("usageMetadata"))
        if finish is not None:
            reply.finished = True
        return Chunk(
            content=text,
            thinking=thought,
            thinking_signature=text_signature,
            tool_calls=tuple(calls) if calls else (),
            tokens=tokens,
            model_id=model_id,
            finish_reason=finish,
            attachments=tuple(files),
        )

    def inline_file(self, inline: Any, reply: _Reply) -> Attachment:
        """An ``inlineData`` part of a reply (base64 bytes and their type) as an attachment.

        Raises:
            ResponseParseError: the part has no valid base64 data.
        """
        if not isinstance(inline, Mapping):
            raise self.malformed("an inlineData part is not an object", inline)
        mime = str(inline.get("mimeType") or inline.get("mime_type") or "application/octet-stream")
        try:
            data = base64.b64decode(str(inline.get("data") or ""), validate=True)
        except (ValueError, binascii.Error):
            raise self.malformed("an inlineData part is not base64", mime) from None
        reply.files += 1
        extension = mimetypes.guess_extension(mime) or ""
        return Attachment.from_bytes(
            data, filename=f"output-{reply.files}{extension}", mime_type=mime
        )

    def candidateless_chunk(self, payload: Mapping[str, Any], streaming: bool) -> Chunk:
        """A reply without candidates: a blocked prompt, a usage-only stream event, or broken.

        Raises:
            BadRequestError: ``promptFeedback.blockReason`` says the prompt was blocked.
            ResponseParseError: nothing a reply must carry.
        """
        feedback = payload.get("promptFeedback")
        if isinstance(feedback, Mapping) and feedback.get("blockReason"):
            raise self.blocked(
                f"Gemini blocked the prompt ({feedback['blockReason']})",
                feedback.get("blockReasonMessage"),
                payload,
            )
        if streaming and "usageMetadata" in payload:
            return Chunk(tokens=usage_tokens(payload["usageMetadata"]))
        raise self.malformed("the reply has no candidates", payload)

    def call_delta(self, call: Any, signature: Any, reply: _Reply) -> ToolCallDelta:
        """A complete ``functionCall`` (Gemini never splits one) as a tool-call piece."""
        if not isinstance(call, Mapping):
            raise self.malformed("a functionCall part is not an object", call)
        index = reply.calls
        reply.calls += 1
        args = call.get("args")
        return ToolCallDelta(
            key=index,
            id=str(call.get("id") or reply.call_id(index)),
            name=str(call.get("name") or ""),
            arguments=json.dumps(args if args is not None else {}, ensure_ascii=False),
            extra={"thought_signature": str(signature)} if signature else None,
        )

    def blocked(self, what: str, detail: Any, payload: Any) -> errors.ContentBlockedError:
        """The error for a prompt or reply Gemini refused to answer (safety, recitation...)."""
        message = f"{what}: {detail}" if detail else f"{what}."
        return errors.ContentBlockedError(message, provider=self.name, body=payload)

    def stream_parser(self) -> StreamParser:
        return GeminiStreamParser(self)

    # -- errors -------------------------------------------------------------------------------

    def error_message(self, body: Any) -> tuple[str, str | None]:
        """Gemini's ``{"error": {"code", "message", "status", "details"}}``: message and status."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping) and error.get("message"):
            status = error.get("status")
            return str(error["message"]), (str(status) if status else None)
        return super().error_message(body)

    def error_for(self, response: HttpResponse) -> errors.APIStatusError:
        """The typed error; a rejected key is an :class:`AuthenticationError` even with 400."""
        error = super().error_for(response)
        if _bad_key(error.body) and not isinstance(error, errors.AuthenticationError):
            return errors.AuthenticationError(
                error.message,
                provider=self.name,
                status=error.status,
                body=error.body,
                request_id=error.request_id,
            )
        if isinstance(error, errors.RateLimitError) and error.retry_after is None:
            error.retry_after = _retry_delay(error.body)
        return error

    def stream_error(self, payload: Any) -> errors.ProviderError:
        """An error object inside a 200 reply or a stream; its ``code`` is the HTTP status."""
        error = payload.get("error") if isinstance(payload, Mapping) else None
        code = error.get("code") if isinstance(error, Mapping) else None
        if not isinstance(code, int):
            return super().stream_error(payload)
        message, _ = self.error_message(payload)
        cls = errors.AuthenticationError if _bad_key(payload) else error_class_for(code, message)
        return cls(message, provider=self.name, status=code, body=payload)

    # -- model listing ------------------------------------------------------------------------

    def list_models_request(self) -> HttpRequest:
        """``GET {base}/models``, in the largest pages Gemini serves (1000)."""
        return HttpRequest("GET", f"{self.base_url}/models?pageSize=1000", self.auth_headers())

    def next_models_request(
        self, request: HttpRequest, response: HttpResponse
    ) -> HttpRequest | None:
        """The page of ``nextPageToken``, while the reply carries one."""
        body = self.parse_json(response)
        token = body.get("nextPageToken") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            return None
        query = urlencode({"pageSize": 1000, "pageToken": token})
        return HttpRequest("GET", f"{self.base_url}/models?{query}", self.auth_headers())

    def parse_model_list(self, response: HttpResponse) -> list[dict[str, Any]]:
        """``models[]`` with ``name`` ``"models/<id>"`` and ``displayName``, as registry entries."""
        body = self.parse_json(response)
        if not isinstance(body, Mapping):
            raise self.malformed("the model list is not a JSON object", body)
        models = body.get("models", [] if not body else None)  # an empty list is sent as {}
        if not isinstance(models, list):
            raise self.malformed("the model list has no 'models' array", body)
        listed = []
        for item in models:
            if not isinstance(item, Mapping) or not item.get("name"):
                continue
            model_id = str(item["name"]).removeprefix("models/")
            listed.append(
                {
                    "id": model_id,
                    "name": str(item.get("displayName") or model_id),
                    "created_at": None,
                }
            )
        return listed


def _call_signature(parts: Sequence[Any]) -> str | None:
    """The first signature on a ``functionCall`` part of a reply."""
    for part in parts:
        if isinstance(part, Mapping) and "functionCall" in part and part.get("thoughtSignature"):
            return str(part["thoughtSignature"])
    return None


def _details(body: Any) -> list[Mapping[str, Any]]:
    error = body.get("error") if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _bad_key(body: Any) -> bool:
    """Whether an error body says the API key was rejected (Gemini answers that with 400)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(error, Mapping) and error.get("status") == "UNAUTHENTICATED":
        return True
    return any(d.get("reason") == "API_KEY_INVALID" for d in _details(body))


def _retry_delay(body: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "31s"``), if any."""
    for detail in _details(body):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                return None
    return None


class GeminiStreamParser(SSEStreamParser):
    """Parses ``streamGenerateContent?alt=sse``: every event is a ``GenerateContentResponse``.

    The stream is complete once a candidate reports its ``finishReason``.
    """

    provider: Gemini

    def __init__(self, provider: Gemini) -> None:
        super().__init__(provider)
        self.reply = _Reply()

    def parse_events(self, events: Sequence[Any]) -> list[Chunk]:
        if not events:
            return []
        chunks = []
        provider = self.provider
        reply = self.reply
        parse = provider.response_chunk
        for event in events:
            data = event.data
            if not data:
                continue
            try:
                payload = _loads(data)
            except ValueError:
                raise provider.malformed("a stream event is not JSON", data) from None
            if type(payload) is not dict:
                raise provider.malformed("a stream event is not an object", payload)
            if "error" in payload:
                raise provider.stream_error(payload)
            chunks.append(parse(payload, reply, streaming=True))
        self.finished = reply.finished
        return chunks
