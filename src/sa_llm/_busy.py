"""One turn at a time per chat: the gate behind :class:`~sa_llm.errors.ChatBusyError`.

Two turns interleaved on one chat would each send a history missing the other's messages and
could leave a tool call without its result. So a turn first *occupies* its chat's gate, an
in-process lock keyed by the chat (the :class:`~sa_llm.chat.Chat` object, or the table and
primary key of a persisted chat, so two sessions' copies of one row share it). A second turn
waits for it (``concurrent_turns="wait"``, the default, up to ``turn_wait_timeout`` seconds) or
fails at once with :class:`ChatBusyError` (``concurrent_turns="raise"``). The gate is held in
memory only: no database transaction or row lock stays open during the provider call.

Each gate counts the turns that ended on it (``version``). A persisted chat notes the count
when it loads its history; if the count moved while it waited, another turn added messages
meanwhile and it reloads the history before sending it.

Example::

    sa_llm.configure(concurrent_turns="raise")
    try:
        await chat.aask("Hi")
    except sa_llm.ChatBusyError:
        ...  # another request is answering on this chat right now
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

import anyio

from sa_llm._flow import Effect, Scope
from sa_llm.errors import ChatBusyError

__all__ = ["Occupy", "TurnGate"]

# Gates outlive their turns so a chat can tell whether another turn ended since it loaded its
# history; the least recently used idle ones are dropped beyond this many.
_MAX_IDLE_GATES = 10_000
_FIRST_POLL = 0.001
_MAX_POLL = 0.05


class TurnGate:
    """The lock of one chat and the number of turns that ended on it."""

    __slots__ = ("lock", "version")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.version = 0

    def release(self) -> None:
        self.version += 1  # under the lock: no other turn can be counting at the same time
        self.lock.release()


_gates: OrderedDict[Hashable, TurnGate] = OrderedDict()
_gates_lock = threading.Lock()


def gate_for(key: Hashable) -> TurnGate:
    """The gate of ``key``, made on first use."""
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            gate = _gates[key] = TurnGate()
            if len(_gates) > _MAX_IDLE_GATES:
                _evict_idle()
        else:
            _gates.move_to_end(key)
        return gate


def _evict_idle() -> None:
    for key in list(_gates)[: len(_gates) - _MAX_IDLE_GATES]:
        if not _gates[key].lock.locked():
            del _gates[key]


def _busy(waited: float | None) -> ChatBusyError:
    if waited is None:
        return ChatBusyError(
            "Another turn is running on this chat; with concurrent_turns='raise' a second "
            "turn fails instead of waiting."
        )
    return ChatBusyError(
        f"Another turn kept this chat busy for {waited:g} s (turn_wait_timeout); try again later."
    )


class Occupy(Effect[TurnGate]):
    """Take the gate of ``key`` for the rest of the drive (released when the drive ends).

    Args:
        key: what identifies the chat.
        wait: wait for a running turn to end, or raise at once.
        timeout: the longest wait in seconds (``None``: no limit).
    """

    __slots__ = ("key", "timeout", "wait")

    def __init__(self, key: Hashable, wait: bool, timeout: float | None) -> None:
        self.key = key
        self.wait = wait
        self.timeout = timeout

    def run(self, scope: Scope) -> TurnGate:
        gate = gate_for(self.key)
        if not self.wait:
            taken = gate.lock.acquire(blocking=False)
        else:
            taken = gate.lock.acquire(timeout=-1 if self.timeout is None else self.timeout)
        if not taken:
            raise _busy(self.timeout if self.wait else None)
        scope.on_close(gate.release)
        return gate

    async def arun(self, scope: Scope) -> TurnGate:
        gate = gate_for(self.key)
        if not gate.lock.acquire(blocking=False):
            if not self.wait:
                raise _busy(None)
            # A threading lock cannot be awaited, and the holder may be another thread or
            # event loop: poll with a growing delay (1 ms to 50 ms) instead of blocking.
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            delay = _FIRST_POLL
            while not gate.lock.acquire(blocking=False):
                if deadline is not None and time.monotonic() >= deadline:
                    raise _busy(self.timeout)
                await anyio.sleep(delay)
                delay = min(delay * 2, _MAX_POLL)
        scope.on_close(gate.release)
        return gate
