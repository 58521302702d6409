"""Isolated configuration for one tenant, request or job.

:func:`context` copies the global configuration with some settings changed and returns a
:class:`Context`; chats made from it use those settings and nothing else. Nothing global is
mutated, so contexts are safe across threads and asyncio tasks.

Example::

    tenant = sa_llm.context(openai_api_key=tenant.openai_key)
    reply = tenant.chat("gpt-4.1-nano").ask("Hello")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sa_llm.config import Config, get_config

if TYPE_CHECKING:
    from sa_llm.chat import Chat

__all__ = ["Context", "context"]


class Context:
    """A frozen configuration and a factory for chats that use it.

    Attributes:
        config: the settings in force for chats of this context.
    """

    __slots__ = ("config",)

    def __init__(self, config: Config) -> None:
        self.config = config

    def __repr__(self) -> str:
        # Never show the configuration: it holds keys (SecretStr would mask them anyway).
        return f"<Context default_model={self.config.default_model!r}>"

    def chat(
        self,
        model: str | None = None,
        *,
        provider: str | None = None,
        assume_model_exists: bool = False,
    ) -> Chat:
        """A new :class:`~sa_llm.Chat` that uses this context's settings."""
        from sa_llm.chat import Chat

        return Chat(model, provider=provider, assume_model_exists=assume_model_exists, context=self)

    def replace(self, **settings: Any) -> Context:
        """A new context with some settings changed (this one is unchanged)."""
        return Context(self.config.replace(**settings))


def context(**settings: Any) -> Context:
    """A :class:`Context` from the global configuration with ``settings`` changed.

    Raises:
        ConfigurationError: an unknown setting or a wrong value.
    """
    return Context(get_config().replace(**settings))
