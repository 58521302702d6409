"""Runtime instructions: system prompts that apply to this process's turns and are never stored.

An agent whose system prompt lives in code sets it on the chat row instance with
``chat.with_instructions(text, persist=False)``; every request of the instance's turns carries
it, and no row is written. The order a request sends is fixed:

1. the stored instructions (the chat's ``system`` rows, in their order), unless a runtime
   instruction *replaced* them for this instance (``append=False``, the default);
2. the runtime instructions, in the order they were given;
3. the conversation.

``with_instructions(None, persist=False)`` forgets the runtime instructions (the stored ones are
sent again). Example::

    chat.with_instructions("You are the billing agent.", persist=False)   # instead of stored
    chat.with_instructions("Answer in French.", persist=False, append=True)  # after stored
"""

from __future__ import annotations

from collections.abc import Sequence

from sa_llm.types import Message

__all__ = ["RuntimeInstructions"]


class RuntimeInstructions:
    """The runtime instructions of one chat (row instance); copied, never shared."""

    __slots__ = ("messages", "replace")

    def __init__(self) -> None:
        #: Whether the stored instructions are left out of requests (a non-appending runtime
        #: instruction replaced them).
        self.replace = False
        #: The runtime instructions, in the order they are sent.
        self.messages: tuple[Message, ...] = ()

    def set(self, text: str | None, *, append: bool) -> None:
        """Add (``append``) or set (replacing the stored ones too) an instruction; ``None``
        forgets them all."""
        if text is None:
            self.replace = False
            self.messages = ()
            return
        message = Message(role="system", content=text)
        if append:
            self.messages = (*self.messages, message)
        else:
            self.replace = True
            self.messages = (message,)

    def copy(self) -> RuntimeInstructions:
        """An independent copy (later changes to either stay apart)."""
        other = RuntimeInstructions()
        other.replace = self.replace
        other.messages = self.messages
        return other

    def apply(self, messages: Sequence[Message]) -> Sequence[Message]:
        """What a request sends: stored system messages (unless replaced), the runtime ones,
        then the rest of ``messages``. Without runtime instructions, ``messages`` itself."""
        if not self.messages and not self.replace:
            return messages
        stored = [] if self.replace else [m for m in messages if m.role == "system"]
        return [*stored, *self.messages, *(m for m in messages if m.role != "system")]
