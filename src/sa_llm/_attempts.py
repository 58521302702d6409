"""The record of each physical provider attempt: what the usage ledger and the spans are made of.

One provider call (one request a turn sends) may take several attempts: the transport's retry
loop (:mod:`sa_llm.providers._transport`) starts an :class:`Attempt` for every try and closes
the ones that failed (an error status, a lost connection); the chat's flow closes the last one
when the reply is parsed, the stream ends, breaks or is cancelled. Both are the shared,
sans-IO logic that every driver runs, so sync and async turns record the same attempts.

Token counts follow the library's convention (:class:`~sa_llm.types.Tokens`): ``None`` means
the provider did not say, ``0`` that it said zero. A failed attempt has no counts unless the
provider sent some before it failed (a cut stream keeps what arrived).

Example::

    log = AttemptLog("openai", "gpt-4.1-nano", streamed=False)
    first = log.start()
    log.failed(first, RateLimitError("slow down"), 429)
    second = log.start()
    log.close(outcome="ok", tokens=Tokens(input=12, output=3))
    assert [a.outcome for a in log] == ["RateLimitError", "ok"]
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sa_llm.types import Tokens

if TYPE_CHECKING:
    from sa_llm.cost import Cost

__all__ = ["CANCELLED", "OK", "Attempt", "AttemptLog", "outcome_of"]

#: The outcome of an attempt whose reply arrived whole.
OK = "ok"
#: The outcome of an attempt stopped by the caller (a cancel, an abandoned stream, a cancelled
#: task): the provider may have billed what it produced until then.
CANCELLED = "cancelled"


def outcome_of(error: BaseException) -> str:
    """The outcome an attempt that ended with ``error`` records: ``cancelled`` when the caller
    stopped it, else the error's class name (``RateLimitError``, ``APIConnectionError``...)."""
    name = type(error).__name__
    if name in ("TurnCancelledError", "StreamAbandoned", "CancelledError", "GeneratorExit"):
        return CANCELLED
    if not isinstance(error, Exception):  # KeyboardInterrupt, trio's Cancelled, SystemExit
        return CANCELLED
    return name


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True, eq=False)
class Attempt:
    """One physical attempt of a provider call.

    Attributes:
        provider: the provider's name (``openai``, ``anthropic``...).
        model: the model id as sent in the request.
        streamed: whether the request asked for a stream.
        number: 1 for the first attempt of the call, 2 for its first retry, ...
        started_at: when the request was sent (UTC).
        finished_at: when the attempt ended; ``None`` while it runs.
        outcome: ``ok``, ``cancelled`` or the class name of the error that ended it; ``None``
            while it runs.
        http_status: the status the provider answered; ``None`` when no response arrived.
        tokens: the usage the provider reported (``None``: it reported none).
        time_to_first_chunk: seconds from the request to the first chunk of a stream (``None``
            when not streamed or no chunk arrived).
        duration: seconds from the request to the end of the attempt.
        response_model: the model the provider says answered.
        finish_reason: why the model stopped, in the provider's words.
        cost: its cost, computed when it closed (``None``: unknown tokens or no price).
        error: the exception that ended it, if any (for the spans' ``error.type``).
    """

    provider: str
    model: str
    streamed: bool
    number: int
    started_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    outcome: str | None = None
    http_status: int | None = None
    tokens: Tokens | None = None
    time_to_first_chunk: float | None = None
    duration: float | None = None
    response_model: str | None = None
    finish_reason: str | None = None
    cost: Cost | None = None
    error: BaseException | None = field(default=None, repr=False)
    _clock: float = field(default_factory=time.perf_counter, repr=False)

    @property
    def closed(self) -> bool:
        """Whether the attempt has ended (its outcome is known)."""
        return self.outcome is not None

    def first_chunk(self) -> None:
        """Note that the first chunk of the stream arrived now (later calls change nothing)."""
        if self.time_to_first_chunk is None:
            self.time_to_first_chunk = time.perf_counter() - self._clock

    def end(self, outcome: str, error: BaseException | None = None) -> None:
        """Close the attempt now with ``outcome``."""
        self.outcome = outcome
        self.error = error
        self.finished_at = _now()
        self.duration = time.perf_counter() - self._clock


class AttemptLog:
    """The attempts of one provider call, in order; the last one may still be running."""

    __slots__ = ("attempts", "model", "provider", "streamed", "written")

    def __init__(self, provider: str, model: str, streamed: bool) -> None:
        self.provider = provider
        self.model = model
        self.streamed = streamed
        self.attempts: list[Attempt] = []
        #: Whether the attempts were handed to the ledger (a chat writes each call once).
        self.written = False

    def __iter__(self) -> Iterator[Attempt]:
        return iter(self.attempts)

    def __len__(self) -> int:
        return len(self.attempts)

    def __repr__(self) -> str:
        outcomes = [a.outcome or "running" for a in self.attempts]
        return f"<AttemptLog {self.provider}/{self.model} {outcomes}>"

    def start(self) -> Attempt:
        """A new attempt, starting now."""
        attempt = Attempt(self.provider, self.model, self.streamed, len(self.attempts) + 1)
        self.attempts.append(attempt)
        return attempt

    def failed(self, attempt: Attempt, error: BaseException, status: int | None) -> None:
        """Close ``attempt``: the provider answered ``status`` with an error, or (``None``) no
        response arrived."""
        attempt.http_status = status
        attempt.end(outcome_of(error), error)

    @property
    def current(self) -> Attempt | None:
        """The attempt still running (the last one), if any."""
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and not last.closed else None

    def close(
        self,
        *,
        outcome: str,
        tokens: Tokens | None = None,
        error: BaseException | None = None,
        response_model: str | None = None,
        finish_reason: str | None = None,
        prices: Any = None,
    ) -> None:
        """Close the running attempt (if any) with what the reply said, and cost every closed
        attempt that has no cost yet from ``prices`` (a :class:`~sa_llm.cost.Prices`)."""
        attempt = self.current
        if attempt is not None:
            attempt.tokens = tokens
            attempt.response_model = response_model
            attempt.finish_reason = finish_reason
            attempt.end(outcome, error)
        if prices is not None:
            for each in self.attempts:
                if each.cost is None and each.tokens is not None:
                    each.cost = prices.cost_of(each.tokens)
