"""Model fallbacks: when a provider fails for good, the turn moves on to the next model.

``chat.with_fallbacks("claude-haiku-4-5", "bedrock/claude-haiku-4-5")`` lists models to try, in
order, when a request fails with a provider error that retrying did not fix (after the
transport's own retries): a rate limit, an overloaded or failing server (5xx), a lost or refused
connection, a timeout, a stream cut before its end, and the same errors arriving *inside* a
stream (an ``overloaded_error`` event after the first chunks). ``on=`` names other error
classes. A spec is a registry model id or alias, or ``"provider/model"`` to route it (the part
before the first ``/`` is taken as a provider only when it names one); a
:class:`~sa_llm.registry.ModelInfo` is used as it is.

Each attempt is its own reply, never concatenated with another: when the failed attempt had
already handed chunks on, its message ends (a persisted chat marks its row ``failed`` with the
model that failed, keeping the partial text only with ``keep_partial_output``) and the next
model's reply starts a new message (``on_new_message`` fires again). The rest of the turn (tool
rounds included) stays on the model that answered; the next turn starts with the chat's own
model again. ``on_fallback(callback)`` receives a :class:`FallbackEvent` before each switch.

Example::

    chat = sa_llm.chat("gpt-4.1-nano").with_fallbacks("claude-haiku-4-5", "gemini-2.5-flash")
    chat.on_fallback(lambda event: log.warning("%s -> %s: %s", event.from_model,
                                               event.to_model, event.error))
    chat.ask("Hello")
"""

from __future__ import annotations

from dataclasses import dataclass

from sa_llm.errors import (
    APIConnectionError,
    ProviderError,
    RateLimitError,
    ServerError,
    StreamInterruptedError,
)

__all__ = ["DEFAULT_FALLBACK_ERRORS", "FallbackEvent", "split_spec"]

#: What moves a turn to the next model unless ``on=`` says otherwise: the provider errors that a
#: retry might fix, once the retries are spent (in-band stream errors arrive as these classes).
DEFAULT_FALLBACK_ERRORS: tuple[type[ProviderError], ...] = (
    RateLimitError,
    ServerError,
    APIConnectionError,
    StreamInterruptedError,
)


@dataclass(frozen=True)
class FallbackEvent:
    """One switch to a fallback model, as ``on_fallback`` callbacks see it.

    Attributes:
        from_model: the model id that failed.
        to_model: the model id tried next.
        error: the provider error that ended the attempt.
        attempt: the number of the attempt that failed (1 for the chat's own model).
        streaming: whether the turn streams.
        chunks_delivered: whether the failed attempt had handed chunks on already (its text
            was shown: a UI should start a new message).
    """

    from_model: str
    to_model: str
    error: ProviderError
    attempt: int
    streaming: bool
    chunks_delivered: bool


def split_spec(spec: str, providers: frozenset[str]) -> tuple[str, str | None]:
    """``"provider/model"`` -> ``("model", "provider")`` when the prefix is one of ``providers``;
    anything else is a model id as it is (OpenRouter ids such as ``"openai/gpt-4o"`` have a
    slash: route them with ``"openrouter/openai/gpt-4o"``)."""
    prefix, slash, rest = spec.partition("/")
    if slash and rest and prefix in providers:
        return rest, prefix
    return spec, None
