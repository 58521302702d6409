"""Running several calls at once as one effect: the tools of one round, with a concurrency limit.

:class:`Gather` is an effect (:mod:`sa_llm._flow`) over :class:`~sa_llm._flow.Call` effects: the
blocking driver runs them on a thread pool, the async driver as tasks of one task group (plain
functions in worker threads, so they do not block the event loop), at most ``limit`` at a time.
Each call's return value or exception comes back in the order the calls were given, whatever the
order they finished in; an exception of one call does not stop the others.

Example::

    outcomes = yield Gather([Call(f, 1), Call(f, 2)], limit=2)
    values = [o.value for o in outcomes if o.error is None]
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from sa_llm._flow import Call, Effect, Scope

__all__ = ["Gather", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """What one call gave: its ``value``, or the ``error`` it raised."""

    value: Any = None
    error: Exception | None = None


class Gather(Effect[list[Outcome]]):
    """Run ``calls`` concurrently, at most ``limit`` at a time; their outcomes, in order."""

    __slots__ = ("calls", "limit")

    def __init__(self, calls: Sequence[Call], limit: int) -> None:
        self.calls = list(calls)
        self.limit = max(1, limit)

    def run(self, scope: Scope) -> list[Outcome]:
        if not self.calls:
            return []
        with ThreadPoolExecutor(max_workers=min(self.limit, len(self.calls))) as pool:
            futures = [pool.submit(call.run, scope) for call in self.calls]
            outcomes = []
            for future in futures:
                try:
                    outcomes.append(Outcome(value=future.result()))
                except Exception as exc:
                    outcomes.append(Outcome(error=exc))
        return outcomes

    async def arun(self, scope: Scope) -> list[Outcome]:
        outcomes: list[Outcome] = [Outcome()] * len(self.calls)
        limiter = anyio.CapacityLimiter(self.limit)

        async def one(index: int, call: Call) -> None:
            async with limiter:
                try:
                    if inspect.iscoroutinefunction(call.fn):
                        value = await call.arun(scope)
                    else:  # a plain function: in a worker thread, the loop keeps running
                        value = await anyio.to_thread.run_sync(
                            functools.partial(call.fn, *call.args, **call.kwargs)
                        )
                        if inspect.isawaitable(value):
                            value = await value
                    outcomes[index] = Outcome(value=value)
                except Exception as exc:
                    outcomes[index] = Outcome(error=exc)

        async with anyio.create_task_group() as group:
            for index, call in enumerate(self.calls):
                group.start_soon(one, index, call)
        return outcomes
