"""Providers by name: the codecs that speak each LLM API.

Every provider registers its class under its name here; chats find them through
:func:`create_provider`. Third-party providers register the same way.

Example::

    from sa_llm.providers import register_provider
    register_provider(MyProvider)          # MyProvider.name == "mine"
    sa_llm.chat("my-model", provider="mine", assume_model_exists=True)
"""

from __future__ import annotations

import difflib
import importlib
import threading

from sa_llm.config import Config
from sa_llm.errors import ProviderNotFoundError
from sa_llm.providers.base import Provider

__all__ = ["create_provider", "provider_class", "provider_names", "register_provider"]

_lock = threading.Lock()
_registry: dict[str, type[Provider]] = {}

# Built-in providers are imported on first use, so importing sa_llm stays cheap.
_BUILTIN_MODULES: dict[str, str] = {
    "openai": "sa_llm.providers.openai",
    "anthropic": "sa_llm.providers.anthropic",
    "gemini": "sa_llm.providers.gemini",
    "bedrock": "sa_llm.providers.bedrock",
    "openrouter": "sa_llm.providers.openai_compatible",
    "deepseek": "sa_llm.providers.openai_compatible",
    "mistral": "sa_llm.providers.openai_compatible",
    "ollama": "sa_llm.providers.openai_compatible",
    "xai": "sa_llm.providers.xai",
    "fake": "sa_llm.testing.fake",
}


def register_provider(cls: type[Provider], name: str | None = None) -> type[Provider]:
    """Make ``cls`` available under ``name`` (default ``cls.name``); usable as a decorator."""
    key = name or cls.name
    if not key:
        raise ValueError(f"{cls.__name__} has no name")
    with _lock:
        _registry[key] = cls
    return cls


def provider_names() -> list[str]:
    """Every provider name that can be used, built-in or registered."""
    return sorted(set(_registry) | set(_BUILTIN_MODULES))


def provider_class(name: str) -> type[Provider]:
    """The provider class registered under ``name``.

    Raises:
        ProviderNotFoundError: no such provider (with close matches).
    """
    cls = _registry.get(name)
    if cls is None and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
        cls = _registry.get(name)
    if cls is None:
        raise ProviderNotFoundError(
            name, difflib.get_close_matches(name, provider_names(), n=3, cutoff=0.5)
        )
    return cls


def create_provider(name: str, config: Config, model_id: str | None = None) -> Provider:
    """A provider instance for ``name`` with ``config``; some pick an API by model."""
    cls = provider_class(name)
    return cls.for_model(config, model_id)
