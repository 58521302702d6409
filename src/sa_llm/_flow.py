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

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, ClassVar, Generic, TypeVar

import anyio

__all__ = [
    "AsyncCallInSyncDrive",
    "Call",
    "Effect",
    "Emit",
    "Flow",
    "Scope",
    "Sleep",
    "StreamAbandoned",
    "adrive",
    "adrive_iter",
    "drive",
    "drive_iter",
    "protected",
]

T = TypeVar("T")
R = TypeVar("R")


class Scope:
    """What one drive owns: resources (open streams) to close when the flow ends, and the
    means to abort the effect that is running (:meth:`abort`)."""

    __slots__ = (
        "_abort_callbacks",
        "_async_closers",
        "_closers",
        "_lock",
        "_running",
        "abort_error",
        "abortable",
    )

    def __init__(self) -> None:
        self._closers: list[Callable[[], object]] = []
        self._async_closers: list[Callable[[], Awaitable[object]]] = []
        self._abort_callbacks: list[Callable[[], object]] = []
        self._lock = threading.Lock()
        self._running: anyio.CancelScope | None = None
        #: The error :meth:`abort` asked to throw into the flow, until the driver delivers it.
        self.abort_error: BaseException | None = None
        #: Whether :meth:`abort` may be called (the async driver then runs the effects in a
        #: cancel scope that an abort cancels while an interruptible one runs; without it,
        #: nothing is paid for it).
        self.abortable = False

    def on_close(self, closer: Callable[[], object]) -> None:
        """Run ``closer`` when the drive ends, however it ends."""
        self._closers.append(closer)

    def on_aclose(self, closer: Callable[[], Awaitable[object]]) -> None:
        """Await ``closer`` when the async drive ends, however it ends."""
        self._async_closers.append(closer)

    def on_abort(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (from the aborting thread) when :meth:`abort` is called, e.g. to
        shut a blocking socket read down so the effect waiting on it returns."""
        with self._lock:
            self._abort_callbacks.append(callback)

    def abort(self, error: BaseException) -> None:
        """Stop the running interruptible effect and throw ``error`` into the flow.

        Thread-safe for sync drives (a heartbeat thread calls it); for async drives call it
        from a task of the same event loop. Only the first call counts; the flow receives the
        error at its current (or next) ``yield`` and decides how to clean up.
        """
        with self._lock:
            if self.abort_error is not None:
                return
            self.abort_error = error
            callbacks, self._abort_callbacks = self._abort_callbacks, []
            running = self._running
        for callback in callbacks:
            with contextlib.suppress(Exception):  # best effort: a socket already closed
                callback()
        if running is not None:
            running.cancel()

    def _take_abort(self) -> BaseException | None:
        with self._lock:
            error, self.abort_error = self.abort_error, None
            if error is not None:
                self.abort_error = _DELIVERED
            return None if error is _DELIVERED else error

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()

    async def aclose(self) -> None:
        self.close()
        while self._async_closers:
            closer = self._async_closers.pop()
            await protected(closer())


class _Delivered(Exception):
    """Marks an abort already thrown into the flow: later :meth:`Scope.abort` calls are no-ops."""


_DELIVERED = _Delivered()


class Effect(Generic[T]):
    """One step of I/O that a flow asks its driver to perform."""

    __slots__ = ()

    #: Whether :meth:`Scope.abort` may cut this effect short (network reads and waits: yes;
    #: database steps and user code: no, they run to their end).
    interruptible: ClassVar[bool] = False

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


class Sleep(Effect[None]):
    """Wait ``seconds`` (blocking, or on the event loop); an abort cuts it short."""

    __slots__ = ("seconds",)
    interruptible = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self, scope: Scope) -> None:
        time.sleep(self.seconds)

    async def arun(self, scope: Scope) -> None:
        await anyio.sleep(self.seconds)


Flow = Generator[Effect[Any], Any, R]


class StreamAbandoned(Exception):
    """Thrown into a flow when the caller stops iterating a stream before its end.

    The flow cleans up (e.g. deletes a half-written message) and re-raises it; the driver
    swallows it.
    """


async def protected(awaitable: Awaitable[R]) -> R:
    """Await ``awaitable`` to its end even if the task is cancelled, again and again meanwhile.

    Clean-up must complete however often the caller is cancelled (Starlette cancels a
    disconnected response's task repeatedly; ``asyncio.wait_for`` and task groups cancel too).
    Under asyncio a shielded cancel scope does not stop a second native ``Task.cancel()``, so
    the work runs as a task of its own, awaited through ``asyncio.shield`` until it is done;
    the cancellations that arrived meanwhile are re-raised afterwards by the flow itself.
    Elsewhere (trio) a shielded cancel scope is enough.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with anyio.CancelScope(shield=True):
            return await awaitable
    task = asyncio.ensure_future(awaitable)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()  # the work itself was cancelled or failed: raise that


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
            value = None if type(effect) is Emit else await protected(effect.arun(scope))
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
        if scope.abort_error is not None and scope.abort_error is not _DELIVERED:
            aborted = scope._take_abort()
            if aborted is not None:
                value, error = None, aborted


async def _apump(
    flow: Flow[Any], scope: Scope, result: list[Any], *, iterate: bool
) -> AsyncIterator[Any]:
    """The async driver loop (see :func:`_pump`); the flow's result is appended to ``result``.

    When the task is cancelled, the flow sees the cancellation at its ``yield``; the effects it
    yields while handling it (clean-up DB steps) run shielded, so the clean-up completes.
    """
    pump = _AsyncPump(flow, scope)
    while True:
        if scope.abortable:
            # One cancel scope for a run of effects, not one per effect: entering and leaving
            # an anyio scope costs more than a stream read that finds its bytes waiting. Only an
            # interruptible effect is exposed to it (``Scope._running``); a run ends when an
            # abort cancels it, when the flow ends, and before a value is handed to the caller
            # (a scope is never held across this generator's ``yield``).
            with anyio.CancelScope() as cancel_scope:
                emitted = await pump.run(iterate, cancel_scope)
            if cancel_scope.cancelled_caught:
                pump.deliver_abort()
                continue
        else:
            emitted = await pump.run(iterate, None)
        if emitted is _DONE:
            result.append(pump.result)
            return
        if emitted is not _RESCOPE:
            try:
                yield emitted
            except GeneratorExit:
                await protected(_aabandon(flow, scope))
                raise


#: What :meth:`_AsyncPump.run` returns when the flow has ended, and when the run must go on in
#: a new cancel scope (the scope became abortable, or an abort cancelled the current one).
_DONE = object()
_RESCOPE = object()


class _AsyncPump:
    """The state of :func:`_apump` between runs of effects: the value or error to send into
    the flow next, and whether a cancellation of the task has made the rest shielded."""

    __slots__ = ("cancelled", "error", "flow", "result", "scope", "shielded", "value")

    def __init__(self, flow: Flow[Any], scope: Scope) -> None:
        self.flow = flow
        self.scope = scope
        self.value: Any = None
        self.error: BaseException | None = None
        self.result: Any = None
        self.shielded = False
        self.cancelled = anyio.get_cancelled_exc_class()

    async def run(self, iterate: bool, cancel_scope: anyio.CancelScope | None) -> Any:
        """Run effects until the flow ends (:data:`_DONE`), yields an :class:`Emit` value to
        hand over (``iterate``), or needs a new cancel scope (:data:`_RESCOPE`): the scope
        became abortable, or ``cancel_scope`` was cancelled (nothing may run in it after
        that). An abort of an interruptible effect cancels ``cancel_scope``: the cancellation
        leaves this method, and the caller delivers the abort."""
        flow, scope = self.flow, self.scope
        while True:
            try:
                effect = flow.send(self.value) if self.error is None else flow.throw(self.error)
            except StopIteration as stop:
                self.result = stop.value
                return _DONE
            self.error = None
            if iterate and type(effect) is Emit:
                self.value = None
                return effect.value
            try:
                if self.shielded:
                    self.value = await protected(effect.arun(scope))
                elif cancel_scope is not None and effect.interruptible:
                    self.value = await self._interruptible(effect, cancel_scope)
                else:
                    self.value = await effect.arun(scope)
            except BaseException as exc:
                if (
                    cancel_scope is not None
                    and cancel_scope.cancel_called
                    and isinstance(exc, self.cancelled)
                ):
                    raise  # the abort's cancellation: the cancel scope ends it
                # Any other error of an aborted effect gives way to the abort's (below).
                self.value, self.error = None, exc
                self.shielded = self.shielded or isinstance(exc, self.cancelled)
            if scope.abortable and scope.abort_error is not None and not self.shielded:
                self.deliver_abort()
            if cancel_scope is None:
                if scope.abortable and not self.shielded:
                    return _RESCOPE
            elif cancel_scope.cancel_called:
                return _RESCOPE  # an effect returned despite the abort: leave the scope now

    async def _interruptible(self, effect: Effect[Any], cancel_scope: anyio.CancelScope) -> Any:
        scope = self.scope
        with scope._lock:
            if scope.abort_error is not None:
                return None  # aborted before it started: the pump delivers the error
            scope._running = cancel_scope
        try:
            return await effect.arun(scope)
        finally:
            with scope._lock:
                scope._running = None

    def deliver_abort(self) -> None:
        """Throw the abort's error into the flow next (once)."""
        aborted = self.scope._take_abort()
        if aborted is not None:
            self.value, self.error = None, aborted


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
