"""Support for the usage ledger's tests: one recorded whole reply and one streamed reply of every
provider in the wire corpus, and an independent reader of the usage each reply reports.

The reader follows each provider's documented convention (docs/providers/): ``input`` is the
whole prompt (Anthropic's and Bedrock's cache reads and writes added to their own input count),
``output`` includes the reasoning tokens (Gemini's thoughts added to its candidates), and a
count the provider did not send is ``None``. It reads the recorded bytes with
``faults_support.events``, never with sa_llm's codecs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sa_llm
from faults_support import WIRE, events
from persisted import default_models
from sa_llm.testing.faults import Api, FaultInjectingServer, RecordedReply

# The recordings each provider's case replays: (whole reply, streamed reply), each the first model
# call of its recording unless ``#n`` names another.
RECORDINGS: dict[str, tuple[str, str]] = {
    "anthropic": (
        "chat_basic_chat_functionality_anthropic_claude-haiku-4-5_can_handle_multi-turn_conversations",
        "chat_streaming_responses_anthropic_claude-haiku-4-5_supports_streaming_responses",
    ),
    "bedrock": (
        "chat_basic_chat_functionality_bedrock_amazon_nova-2-lite-v1_0_can_have_a_basic_conversation",
        "chat_streaming_responses_bedrock_amazon_nova-2-lite-v1_0_reports_consistent_token_counts"
        "_compared_to_non-streaming",
    ),
    "deepseek": (
        "chat_basic_chat_functionality_deepseek_deepseek-chat_can_handle_multi-turn_conversations",
        "chat_streaming_responses_deepseek_deepseek-chat_reports_consistent_token_counts_compared"
        "_to_non-streaming",
    ),
    "gemini": (
        "chat_basic_chat_functionality_gemini_gemini-2_5-flash_can_handle_multi-turn_conversations",
        # The text reply after a tool round: usage in each of its two events.
        "chat_function_calling_gemini_gemini-2_5-flash_can_use_tools_without_parameters_in_multi"
        "-turn_streaming_conversations#1",
    ),
    "mistral": (
        "chat_basic_chat_functionality_mistral_mistral-small-latest_can_have_a_basic_conversation",
        "chat_streaming_responses_mistral_mistral-small-latest_reports_consistent_token_counts"
        "_compared_to_non-streaming",
    ),
    "ollama": (
        "chat_basic_chat_functionality_ollama_cloud_gpt-oss_120b_replaces_previous_system_messages"
        "_by_default",
        "chat_streaming_responses_ollama_cloud_gpt-oss_120b_reports_consistent_token_counts"
        "_compared_to_non-streaming",
    ),
    "openai": (
        "chat_basic_chat_functionality_openai_gpt-5-nano_can_handle_multi-turn_conversations",
        "chat_streaming_responses_openai_gpt-5-nano_reports_consistent_token_counts_compared_to"
        "_non-streaming",
    ),
    "openrouter": (
        "chat_basic_chat_functionality_openrouter_claude-haiku-4-5_can_handle_multi-turn"
        "_conversations",
        "chat_streaming_responses_openrouter_claude-haiku-4-5_supports_streaming_responses",
    ),
    "xai": (
        "chat_basic_chat_functionality_xai_grok-4-1-fast-non-reasoning_can_handle_multi-turn"
        "_conversations",
        "chat_streaming_responses_xai_grok-4-1-fast-non-reasoning_supports_streaming_responses",
    ),
}

_KEYS: dict[str, dict[str, str]] = {
    "bedrock": {
        "bedrock_region": "us-east-1",
        "bedrock_access_key_id": "AKIAFAKEFAKEFAKE",
        "bedrock_secret_access_key": "fake-secret",
    },
}


@dataclass(frozen=True)
class ProviderCase:
    """One provider as the ledger tests drive it: its API, model, base path and replies."""

    provider: str
    api: Api
    model: str
    base_path: str
    whole: RecordedReply
    streamed: RecordedReply

    def settings(self, server: FaultInjectingServer, **extra: Any) -> dict[str, Any]:
        """Context settings that point the provider at ``server`` with fake credentials."""
        keys = _KEYS.get(self.provider, {f"{self.provider}_api_key": "fake-key"})
        return {f"{self.provider}_base_url": server.url + self.base_path, **keys, **extra}

    def reply(self, streamed: bool) -> RecordedReply:
        return self.streamed if streamed else self.whole


def _first_call(provider: str, name: str) -> Mapping[str, Any]:
    """The model call ``name`` names: its first one, or the one after ``#`` (0-based)."""
    name, _, index = name.partition("#")
    recording = json.loads((WIRE / provider / f"{name}.json").read_text(encoding="utf-8"))
    calls = [i for i in recording["interactions"] if i["request"]["method"] == "POST"]
    call: Mapping[str, Any] = calls[int(index or 0)]
    return call


def _api_and_base(url: str) -> tuple[Api, str, str | None]:
    """(API, base path, model named in the URL) of a recorded request URL."""
    path = "/" + url.split("://", 1)[1].split("/", 1)[1]
    path = path.split("?", 1)[0]
    for suffix, api in (
        ("/chat/completions", "chat_completions"),
        ("/responses", "responses"),
        ("/messages", "anthropic"),
    ):
        if path.endswith(suffix):
            return api, path[: -len(suffix)], None  # type: ignore[return-value]
    if "/models/" in path:
        base, _, rest = path.partition("/models/")
        return "gemini", base, rest.split(":")[0]
    return "bedrock", "", path.split("/model/")[1].split("/")[0]


def provider_case(provider: str) -> ProviderCase:
    whole_name, streamed_name = RECORDINGS[provider]
    whole, streamed = _first_call(provider, whole_name), _first_call(provider, streamed_name)
    api, base_path, url_model = _api_and_base(whole["request"]["url"])
    body = whole["request"]["body"] if isinstance(whole["request"]["body"], dict) else {}
    return ProviderCase(
        provider=provider,
        api=api,
        model=str(body.get("model") or url_model),
        base_path=base_path,
        whole=RecordedReply.from_interaction(whole),
        streamed=RecordedReply.from_interaction(streamed),
    )


PROVIDERS = sorted(RECORDINGS)


# -- the usage a recorded reply reports ---------------------------------------------------------


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def recorded_usage(api: Api, reply: RecordedReply) -> sa_llm.Tokens | None:
    """The usage the reply's events report (later figures replace earlier ones), or ``None``
    when no event carries any."""
    found: dict[str, int | None] = {}
    for kind, payload in events(reply):
        figures = _figures(api, kind, payload)
        if figures is not None:
            found.update({k: v for k, v in figures.items() if v is not None or k not in found})
    if not found:
        return None
    return sa_llm.Tokens(**found)


def _figures(api: Api, kind: str, payload: Any) -> dict[str, int | None] | None:
    if not isinstance(payload, Mapping):
        return None
    if api == "chat_completions":
        usage = payload.get("usage")
        if not isinstance(usage, Mapping):
            return None
        prompt = usage.get("prompt_tokens_details") or {}
        completion = usage.get("completion_tokens_details") or {}
        cached = prompt.get("cached_tokens", usage.get("prompt_cache_hit_tokens"))
        return {
            "input": _int(usage.get("prompt_tokens")),
            "output": _int(usage.get("completion_tokens")),
            "cached": _int(cached),
            "reasoning": _int(completion.get("reasoning_tokens")),
        }
    if api == "responses":
        response = payload.get("response", payload)
        usage = response.get("usage") if isinstance(response, Mapping) else None
        if not isinstance(usage, Mapping):
            return None
        return {
            "input": _int(usage.get("input_tokens")),
            "output": _int(usage.get("output_tokens")),
            "cached": _int((usage.get("input_tokens_details") or {}).get("cached_tokens")),
            "reasoning": _int((usage.get("output_tokens_details") or {}).get("reasoning_tokens")),
        }
    if api == "anthropic":
        message = payload.get("message", payload)
        usage = payload.get("usage") or (message.get("usage") if message is not payload else None)
        if not isinstance(usage, Mapping):
            return None
        fresh = _int(usage.get("input_tokens"))
        read = _int(usage.get("cache_read_input_tokens"))
        written = _int(usage.get("cache_creation_input_tokens"))
        figures: dict[str, int | None] = {"output": _int(usage.get("output_tokens"))}
        if fresh is not None:
            figures["input"] = fresh + (read or 0) + (written or 0)
        if read is not None:
            figures["cached"] = read
        if written is not None:
            figures["cache_creation"] = written
        return figures
    if api == "gemini":
        usage = payload.get("usageMetadata")
        if not isinstance(usage, Mapping):
            return None
        candidates = _int(usage.get("candidatesTokenCount"))
        thoughts = _int(usage.get("thoughtsTokenCount"))
        output = (
            None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
        )
        return {
            "input": _int(usage.get("promptTokenCount")),
            "output": output,
            "cached": _int(usage.get("cachedContentTokenCount")),
            "reasoning": thoughts,
        }
    usage = payload.get("usage")
    if not isinstance(usage, Mapping):
        return None
    fresh = _int(usage.get("inputTokens"))
    read = _int(usage.get("cacheReadInputTokens"))
    written = _int(usage.get("cacheWriteInputTokens"))
    return {
        "input": None if fresh is None else fresh + (read or 0) + (written or 0),
        "output": _int(usage.get("outputTokens")),
        "cached": read,
        "cache_creation": written,
    }


# -- models with a ledger -------------------------------------------------------------------------


def ledger_models() -> dict[str, Any]:
    """The default models plus an ``@acts_as_usage`` class, on a new declarative base."""
    return default_models("Usage")


def as_decimal(value: Any) -> Decimal | None:
    """A cost column as read back (SQLite returns floats through Numeric): a Decimal at the
    ledger's scale."""
    return None if value is None else Decimal(str(value)).quantize(Decimal("1e-10"))
