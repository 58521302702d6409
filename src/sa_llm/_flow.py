"""One flow, two drivers: logic written once as a generator of effects, pumped sync or async.

A *flow* is a generator that yields :class:`Effect` objects ("send this request", "read the
next bytes", "run this DB step", "call this callback") and receives each effect's result back
(or its exception, thrown in at the ``yield``). The flow holds all decisions; an effect knows
only how to do one thing in a blocking way (:meth:`Effect.run`) and in a non-blocking way
(:meth:`Effect.arun`). :func:`drive` and :func:`adrive` pump a flow; :func:`drive_iter` and
:func:`adrive_iter` also hand :class:`Emit` values to the caller as an iterator.

This is the pattern of httpx's ``auth_flow``: the conversation, tool loop, retries and the
persistence steps exist once, and sync and async differ only in the drivers below.

Example::

    def flow():
        response = yield Call(fetch, "https://example.invalid")
        return len(response)

    drive(flow())          # in sync code
    await adrive(flow())   # in async code
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Generic, TypeVar

import anyio

__all__ = [
    "AsyncCallInSyncDrive",
    "Call",
    "Effect",
    "Emit",
    "Flow",
    "Scope",
    "StreamAbandoned",
    "adrive",
    "adrive_iter",
    "drive",
    "drive_iter",
]

T = TypeVar("T")
R = TypeVar("R")


class Scope:
    """What one drive owns: resources (open streams) to close when the flow ends."""

    __slots__ = ("_async_closers", "_closers")

    def __init__(self) -> None:
        self._closers: list[Callable[[], object]] = []
        self._async_closers: list[Callable[[], Awaitable[object]]] = []

    def on_close(self, closer: Callable[[], object]) -> None:
        """Run ``closer`` when the drive ends, however it ends."""
        self._closers.append(closer)

    def on_aclose(self, closer: Callable[[], Awaitable[object]]) -> None:
        """Await ``closer`` when the async drive ends, however it ends."""
        self._async_closers.append(closer)

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    async def aclose(self) -> None:
        self.close()
        while self._async_closers:
            closer = self._async_closers.pop()
            with anyio.CancelScope(shield=True):
                await closer()


class Effect(Generic[T]):
    """One step of I/O that a flow asks its driver to perform."""

    __slots__ = ()

    def run(self, scope: Scope) -> T:
        """Perform the step, blocking."""
        raise NotImplementedError(f"{type(self).__name__} has no sync form")

    async def arun(self, scope: Scope) -> T:
        """Perform the step without blocking the event loop."""
        raise NotImplementedError(f"{type(self).__name__} has no async form")


class AsyncCallInSyncDrive(TypeError):
    """An ``async def`` callable was given to a blocking drive (use the async API)."""


class Call(Effect[Any]):
    """Call a function; in async drives its result is awaited when it is awaitable.

    Used for user callbacks and tools, which may be plain or ``async def``.
    """

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def run(self, scope: Scope) -> Any:
        result = self.fn(*self.args, **self.kwargs)
        if inspect.isawaitable(result):
            # A coroutine function given to a sync chat: close it so Python does not warn
            # about a never-awaited coroutine, and say what to do instead.
            if inspect.iscoroutine(result):
                result.close()
            raise AsyncCallInSyncDrive(
                f"{getattr(self.fn, '__qualname__', self.fn)!r} is async; "
                "use the async API (aask/acomplete/astream) to call it"
            )
        return result

    async def arun(self, scope: Scope) -> Any:
        result = self.fn(*self.args, **self.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


class Emit(Effect[None]):
    """Hand a value (a stream chunk) to the caller: its callback, or the iterator form."""

    __slots__ = ("callback", "value")

    def __init__(self, value: Any, callback: Callable[[Any], Any] | None) -> None:
        self.value = value
        self.callback = callback

    def run(self, scope: Scope) -> None:
        if self.callback is not None:
            Call(self.callback, self.value).run(scope)

    async def arun(self, scope: Scope) -> None:
        if self.callback is not None:
            await Call(self.callback, self.value).arun(scope)


Flow = Generator[Effect[Any], Any, R]


class StreamAbandoned(Exception):
    """Thrown into a flow when the caller stops iterating a stream before its end.

    The flow cleans up (e.g. deletes a half-written message) and re-raises it; the driver
    swallows it.
    """


def _abandon(flow: Flow[Any], scope: Scope) -> None:
    """Let a flow whose iterator was closed early run its clean-up effects."""
    error: BaseException | None = StreamAbandoned()
    value: Any = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except (StopIteration, StreamAbandoned):
            return
        error = None
        try:
            value = None if type(effect) is Emit else effect.run(scope)
        except BaseException as exc:
            value, error = None, exc


async def _aabandon(flow: Flow[Any], scope: Scope) -> None:
    error: BaseException | None = StreamAbandoned()
    value: Any = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except (StopIteration, StreamAbandoned):
            return
        error = None
        try:
            value = None if type(effect) is Emit else await effect.arun(scope)
        except BaseException as exc:
            value, error = None, exc


def _pump(flow: Flow[Any], scope: Scope, *, iterate: bool) -> Generator[Any, None, Any]:
    """The blocking driver loop. With ``iterate`` it yields :class:`Emit` values to the caller;
    otherwise it never yields and returns the flow's result."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            return stop.value
        error = None
        if iterate and type(effect) is Emit:
            value = None
            try:
                yield effect.value
            except GeneratorExit:
                _abandon(flow, scope)
                raise
            continue
        try:
            value = effect.run(scope)
        except BaseException as exc:  # the flow decides; it re-raises what it cannot handle
            value, error = None, exc


async def _apump(
    flow: Flow[Any], scope: Scope, result: list[Any], *, iterate: bool
) -> AsyncIterator[Any]:
    """The async driver loop (see :func:`_pump`); the flow's result is appended to ``result``.

    When the task is cancelled, the flow sees the cancellation at its ``yield``; the effects it
    yields while handling it (clean-up DB steps) run shielded, so the clean-up completes.
    """
    value: Any = None
    error: BaseException | None = None
    cancelled = anyio.get_cancelled_exc_class()
    shielded = False
    while True:
        try:
            effect = flow.send(value) if error is None else flow.throw(error)
        except StopIteration as stop:
            result.append(stop.value)
            return
        error = None
        if iterate and type(effect) is Emit:
            value = None
            try:
                yield effect.value
            except GeneratorExit:
                with anyio.CancelScope(shield=True):
                    await _aabandon(flow, scope)
                raise
            continue
        try:
            if shielded:
                with anyio.CancelScope(shield=True):
                    value = await effect.arun(scope)
            else:
                value = await effect.arun(scope)
        except BaseException as exc:
            value, error = None, exc
            shielded = shielded or isinstance(exc, cancelled)


def drive(flow: Flow[R]) -> R:
    """Run ``flow`` to completion in blocking mode and return its result."""
    scope = Scope()
    try:
        pump = _pump(flow, scope, iterate=False)
        try:
            next(pump)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        raise AssertionError("a non-iterating pump yielded")  # pragma: no cover
    finally:
        flow.close()
        scope.close()


async def adrive(flow: Flow[R]) -> R:
    """Run ``flow`` to completion on the event loop and return its result."""
    scope = Scope()
    result: list[Any] = []
    try:
        async for _ in _apump(flow, scope, result, iterate=False):  # pragma: no branch
            pass
        return result[0]  # type: ignore[no-any-return]
    finally:
        flow.close()
        await scope.aclose()


def drive_iter(flow: Flow[Any]) -> Iterator[Any]:
    """Run ``flow`` in blocking mode, yielding the value of every :class:`Emit` it yields.

    Stopping the iteration early throws :class:`StreamAbandoned` into the flow, which cleans
    up and ends.
    """
    scope = Scope()
    try:
        yield from _pump(flow, scope, iterate=True)
    finally:
        flow.close()
        scope.close()


async def adrive_iter(flow: Flow[Any]) -> AsyncIterator[Any]:
    """Async twin of :func:`drive_iter`."""
    scope = Scope()
    pump = _apump(flow, scope, [], iterate=True)
    try:
        async for value in pump:
            yield value
    finally:
        # Closed mid-stream: this lands GeneratorExit at the pump's yield, which lets the flow
        # clean up (StreamAbandoned); after a normal end it does nothing.
        await pump.aclose()  # type: ignore[attr-defined]
        flow.close()
        await scope.aclose()
