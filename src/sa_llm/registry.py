"""The model registry: which models exist, where they are served, and what they can do.

sa_llm ships a snapshot of RubyLLM's model registry (MIT, Copyright (c) 2025 Carmine Paolino),
built by ``scripts/build_registry.py`` into ``sa_llm/_data/models.json`` and parsed on first use.
Each :class:`ModelInfo` describes one model *as one provider serves it*: the same Claude model has
one entry under ``anthropic``, another under ``bedrock`` and another under ``openrouter``, each
with that provider's id.

Lookups take a model id or an alias and, optionally, a provider:

* with a provider, an alias resolves to that provider's id first (``claude-haiku-4-5`` is
  ``claude-haiku-4-5-20251001`` on ``anthropic`` and ``anthropic.claude-haiku-4-5-20251001-v1:0``
  on ``bedrock``), then the id is matched exactly;
* without one, the model's *home* provider wins (Claude on ``anthropic``, Gemini on ``gemini``,
  Grok on ``xai``, GPT on ``openai``, ...). Routers such as ``openrouter`` and ``bedrock`` are only
  chosen when asked for, or when they are the only provider that knows the id
  (``anthropic/claude-haiku-4.5`` is an OpenRouter id);
* an unknown id raises :class:`~sa_llm.errors.ModelNotFoundError` carrying up to five close
  matches.

Example::

    from sa_llm import registry

    info = registry.find("gpt-4.1-nano")
    info.provider, info.context_window, info.supports_vision    # ("openai", 1047576, True)
    registry.find("claude-sonnet-4-5", provider="bedrock").id
    # 'anthropic.claude-sonnet-4-5-20250929-v1:0'
    registry.resolve("claude-haiku-4-5")           # ('claude-haiku-4-5-20251001', 'anthropic')
    [m.id for m in registry.where(provider="openai", supports_functions=True)]

The registry can change at run time: :func:`register` adds or replaces entries (say, from a
provider's model list or a database table) and :meth:`Registry.replace_all` swaps everything.
Readers never lock and never see a half-applied change: every change builds a new immutable
snapshot and publishes it with one reference assignment.

One concept, one module (over 600 lines): the model registry, its lookups and its refresh.
"""

from __future__ import annotations

import builtins
import difflib
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NoReturn

from sa_llm.errors import ModelNotFoundError, ProviderNotFoundError

__all__ = [
    "PROVIDER_LABELS",
    "SUPPORTED_PROVIDERS",
    "ModelInfo",
    "Registry",
    "all",
    "by_provider",
    "chat_models",
    "default_registry",
    "embedding_models",
    "find",
    "providers",
    "refresh",
    "register",
    "resolve",
    "where",
]

#: How each provider is named for people (``ModelInfo.label``); others show their key.
PROVIDER_LABELS: Mapping[str, str] = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "gemini": "Google Gemini",
    "bedrock": "Amazon Bedrock",
    "openrouter": "OpenRouter",
    "deepseek": "DeepSeek",
    "mistral": "Mistral",
    "ollama": "Ollama",
    "xai": "xAI",
    "fake": "Fake (sa_llm.testing)",
}

SUPPORTED_PROVIDERS = (
    "openai",
    "anthropic",
    "gemini",
    "bedrock",
    "openrouter",
    "deepseek",
    "mistral",
    "ollama",
    "xai",
)

# Providers that serve other vendors' models under their own ids. Without an explicit provider
# they lose to any direct provider: silently routing "claude-..." through AWS or OpenRouter
# would need other credentials and bill another account.
_ROUTERS = frozenset({"bedrock", "openrouter"})

# Tie-break among non-home providers (RubyLLM's preference order, restricted to ours).
_PREFERENCE = (
    "openai",
    "anthropic",
    "gemini",
    "xai",
    "deepseek",
    "mistral",
    "ollama",
    "bedrock",
    "openrouter",
)

# The vendor that makes a model, from its id: that provider wins when no provider is given.
_HOME = (
    (re.compile(r"claude"), "anthropic"),
    (re.compile(r"gemini|gemma|imagen|veo-|lyria|learnlm|aqa$|nano-banana"), "gemini"),
    (re.compile(r"grok"), "xai"),
    (re.compile(r"deepseek"), "deepseek"),
    (
        re.compile(
            r"(open-)?(mistral|mixtral|magistral|ministral|codestral|devstral|pixtral|voxtral)"
        ),
        "mistral",
    ),
    (
        re.compile(
            r"gpt-|chatgpt|o\d(-|$)|text-embedding|whisper|tts-|dall-e|davinci|babbage"
            r"|omni-moderation|sora|codex"
        ),
        "openai",
    ),
)

# Resource-name prefixes a provider's API puts before its model ids: Gemini names models
# "models/gemini-2.5-flash" (e.g. in cachedContents), and that form should find the model too.
_RESOURCE_PREFIXES: Mapping[str, tuple[str, ...]] = {"gemini": ("models/",)}

# The boolean ModelInfo properties Registry.where() filters on.
_FLAGS = frozenset(
    {
        "supports_vision",
        "supports_functions",
        "supports_structured_output",
        "supports_audio_input",
        "supports_pdf",
        "supports_reasoning",
    }
)


# -- read-only data --------------------------------------------------------------------------------


class _FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses changes.

    A ``dict`` subclass rather than ``MappingProxyType`` so the values stay what JSON encoders
    and database JSON columns accept at every level (``dict(info.pricing)`` goes straight into a
    row).
    """

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("ModelInfo data is read-only; build a new ModelInfo instead")

    __setitem__ = __delitem__ = __ior__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        # dict's default pickling refills the instance item by item, which would raise.
        return (_FrozenDict, (dict(self),))

    def __copy__(self) -> _FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _FrozenDict:
        return self


def _freeze(value: Any) -> Any:
    if isinstance(value, _FrozenDict):
        return value
    if isinstance(value, Mapping):
        return _FrozenDict({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# -- ModelInfo -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the registry knows about one model as one provider serves it.

    Attributes:
        id: the provider's id for the model, as sent in requests.
        name: a display name.
        provider: the provider's name, one of :data:`SUPPORTED_PROVIDERS` or a registered one.
        family: the model family (``"claude-haiku"``, ``"gpt-5"``), when known.
        context_window: the maximum prompt plus reply length in tokens, when known.
        max_output_tokens: the maximum reply length in tokens, when known.
        knowledge_cutoff: the training data cutoff (ISO date), when known.
        input_modalities: what the model reads: ``text``, ``image``, ``pdf``, ``audio``, ...
        output_modalities: what it writes: ``text``, ``image``, ``audio``, ``embeddings``, ...
        capabilities: ``function_calling``, ``structured_output``, ``reasoning``, ``vision``, ...
        pricing: prices in USD per million tokens, shaped like
            ``{"text_tokens": {"standard": {"input_per_million": 1.0, ...}}}``. Read-only.
        created_at: when the provider released it (ISO 8601), when known.
        metadata: provider-specific extras (reasoning options, Bedrock endpoint, ...). Read-only.
    """

    id: str
    name: str
    provider: str
    family: str | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    knowledge_cutoff: str | None = None
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    capabilities: frozenset[str] = frozenset()
    pricing: Mapping[str, Any] = field(default_factory=dict, repr=False)
    created_at: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Callers (database rows, provider listings) hand in lists and plain dicts; store
        # immutable copies so a shared registry entry cannot be changed through one reference.
        object.__setattr__(self, "input_modalities", tuple(self.input_modalities))
        object.__setattr__(self, "output_modalities", tuple(self.output_modalities))
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        object.__setattr__(self, "pricing", _freeze(self.pricing or {}))
        object.__setattr__(self, "metadata", _freeze(self.metadata or {}))

    def __hash__(self) -> int:
        # The mappings are not hashable; (provider, id) identifies an entry, and equal
        # entries share it.
        return hash((self.provider, self.id))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """An entry from one row of the registry JSON (the shape :meth:`to_dict` returns)."""
        modalities = data.get("modalities") or {}
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            provider=str(data["provider"]),
            family=data.get("family"),
            context_window=data.get("context_window"),
            max_output_tokens=data.get("max_output_tokens"),
            knowledge_cutoff=data.get("knowledge_cutoff"),
            input_modalities=tuple(modalities.get("input") or ()),
            output_modalities=tuple(modalities.get("output") or ()),
            capabilities=frozenset(data.get("capabilities") or ()),
            pricing=data.get("pricing") or {},
            created_at=data.get("created_at"),
            metadata=data.get("metadata") or {},
        )

    @classmethod
    def assumed(cls, model_id: str, provider: str) -> ModelInfo:
        """A minimal entry for a model the registry does not list (``assume_model_exists``)."""
        name = " ".join(part.capitalize() for part in model_id.replace("_", "-").split("-"))
        return cls(
            id=model_id,
            name=name or model_id,
            provider=provider,
            capabilities=frozenset({"function_calling", "streaming"}),
            metadata={"assumed": True},
        )

    def to_dict(self) -> dict[str, Any]:
        """This entry as plain, JSON-ready data in the registry file's shape (e.g. for a DB row)."""
        return {
            "id": self.id,
            "name": self.name,
            "provider": self.provider,
            "family": self.family,
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "knowledge_cutoff": self.knowledge_cutoff,
            "modalities": {
                "input": list(self.input_modalities),
                "output": list(self.output_modalities),
            },
            "capabilities": sorted(self.capabilities),
            "pricing": _thaw(self.pricing),
            "created_at": self.created_at,
            "metadata": _thaw(self.metadata),
        }

    def supports(self, capability: str) -> bool:
        """Whether ``capability`` (e.g. ``"function_calling"``) is listed for the model."""
        return capability in self.capabilities

    @property
    def supports_vision(self) -> bool:
        """Reads images: ``image`` input or the ``vision`` capability."""
        return "image" in self.input_modalities or "vision" in self.capabilities

    @property
    def supports_functions(self) -> bool:
        """Calls tools (``function_calling``)."""
        return "function_calling" in self.capabilities

    @property
    def supports_structured_output(self) -> bool:
        """Replies to a JSON schema (``structured_output``)."""
        return "structured_output" in self.capabilities

    @property
    def supports_audio_input(self) -> bool:
        """Reads audio (``audio`` input)."""
        return "audio" in self.input_modalities

    @property
    def supports_pdf(self) -> bool:
        """Reads PDF documents (``pdf`` input)."""
        return "pdf" in self.input_modalities

    @property
    def supports_reasoning(self) -> bool:
        """Thinks before answering, with controllable effort or budget (``reasoning``)."""
        return "reasoning" in self.capabilities

    @property
    def label(self) -> str:
        """A display label: the model's name and its provider's, e.g. ``"GPT-4.1 nano
        (OpenAI)"``."""
        return f"{self.name or self.id} ({PROVIDER_LABELS.get(self.provider, self.provider)})"

    @property
    def type(self) -> str:
        """What the model is for.

        One of ``chat`` (reads and writes text), ``embedding``, ``rerank``, ``moderation``,
        ``transcription`` (audio or video in, text out), ``image``, ``audio`` or ``video``
        (generation). Taken from the modalities; for entries whose modalities the data leaves
        empty, from the capabilities and the id (``whisper-1``, ``tts-1``), else ``chat``.
        """
        inputs, outputs = set(self.input_modalities), set(self.output_modalities)
        if not inputs and not outputs:
            return self._type_from_id()
        if "embeddings" in outputs:
            return "embedding"
        if "rerank" in outputs:
            return "rerank"
        if "moderation" in self.capabilities:
            return "moderation"
        if "text" in outputs:
            return "chat" if "text" in inputs or not inputs else "transcription"
        for kind in ("image", "audio", "video"):
            if kind in outputs:
                return kind
        return "chat"

    def _type_from_id(self) -> str:
        lowered = self.id.lower()
        if "embed" in lowered:
            return "embedding"
        if "moderation" in self.capabilities or "moderation" in lowered:
            return "moderation"
        if "transcription" in self.capabilities or re.search(r"transcribe|whisper", lowered):
            return "transcription"
        if re.search(r"(^|-)tts(-|$)", lowered):
            return "audio"
        if re.search(r"(^|-)image(-|$)", lowered):
            return "image"
        if re.search(r"^(sora|veo)", lowered):
            return "video"
        return "chat"

    def _standard_price(self, key: str) -> float | None:
        text = self.pricing.get("text_tokens")
        standard = text.get("standard") if isinstance(text, Mapping) else None
        return _number(standard.get(key)) if isinstance(standard, Mapping) else None

    @property
    def input_price_per_million(self) -> float | None:
        """USD per million input tokens (standard text tier), when known."""
        return self._standard_price("input_per_million")

    @property
    def output_price_per_million(self) -> float | None:
        """USD per million output tokens (standard text tier), when known."""
        return self._standard_price("output_per_million")

    @property
    def cached_input_price_per_million(self) -> float | None:
        """USD per million input tokens read from the prompt cache, when known."""
        return self._standard_price("cache_read_input_per_million")


# -- snapshots -------------------------------------------------------------------------------------


def _home_provider(name: str) -> str | None:
    lowered = name.lower()
    return next((provider for pattern, provider in _HOME if pattern.match(lowered)), None)


def _rank(name: str, provider: str) -> tuple[int, int, int, str]:
    """Sort key for the providers that know ``name``: home first, routers last.

    Registered providers outside :data:`SUPPORTED_PROVIDERS` come after the built-in direct
    ones but before the routers; the name breaks the remaining ties so the choice never
    depends on registration order.
    """
    order = _PREFERENCE.index(provider) if provider in _PREFERENCE else len(_PREFERENCE)
    return (
        0 if provider == _home_provider(name) else 1,
        1 if provider in _ROUTERS else 0,
        order,
        provider,
    )


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One immutable state of a registry, with its indexes. Never changed once published."""

    models: tuple[ModelInfo, ...]
    aliases: Mapping[str, Mapping[str, str]]
    by_key: Mapping[tuple[str, str], ModelInfo]
    # (provider, id or alias) -> entry; an alias beats an id of the same name (see _build).
    routes: Mapping[tuple[str, str], ModelInfo]
    # id or alias -> the entry to use when no provider is given.
    defaults: Mapping[str, ModelInfo]
    by_provider: Mapping[str, tuple[ModelInfo, ...]]

    @classmethod
    def build(
        cls, models: Iterable[ModelInfo], aliases: Mapping[str, Mapping[str, str]]
    ) -> _Snapshot:
        by_key: dict[tuple[str, str], ModelInfo] = {}
        for info in models:
            by_key[(info.provider, info.id)] = info  # the last entry for a key wins
        frozen_aliases = {
            str(alias): {str(p): str(t) for p, t in targets.items()}
            for alias, targets in aliases.items()
        }
        routes = dict(by_key)
        for alias, targets in frozen_aliases.items():
            for provider, target in targets.items():
                aliased = by_key.get((provider, target))
                # The alias map is the curated "which id does this name mean here" answer, so
                # it also wins over an undated "latest" row with the alias's name (RubyLLM
                # resolves the alias before matching, too).
                if aliased is not None:
                    routes[(provider, alias)] = aliased
        defaults: dict[str, ModelInfo] = {}
        for (provider, name), info in routes.items():
            best = defaults.get(name)
            if best is None or _rank(name, provider) < _rank(name, best.provider):
                defaults[name] = info
        by_provider: dict[str, list[ModelInfo]] = {}
        for info in by_key.values():
            by_provider.setdefault(info.provider, []).append(info)
        return cls(
            models=tuple(by_key.values()),
            aliases=frozen_aliases,
            by_key=by_key,
            routes=routes,
            defaults=defaults,
            by_provider={p: tuple(infos) for p, infos in by_provider.items()},
        )

    def route(self, name: str, provider: str) -> ModelInfo | None:
        info = self.routes.get((provider, name))
        if info is None:
            for prefix in _RESOURCE_PREFIXES.get(provider, ()):
                if name.startswith(prefix):
                    info = self.routes.get((provider, name[len(prefix) :]))
        return info

    def default(self, name: str) -> ModelInfo | None:
        info = self.defaults.get(name)
        if info is None:
            for provider, prefixes in _RESOURCE_PREFIXES.items():
                for prefix in prefixes:
                    if name.startswith(prefix):
                        info = self.routes.get((provider, name[len(prefix) :]))
                        if info is not None:
                            return info
        return info

    def suggestions(self, name: str, provider: str | None) -> list[str]:
        names = {n for (p, n) in self.routes if provider is None or p == provider}
        return difflib.get_close_matches(name, sorted(names), n=5, cutoff=0.6)


_Loader = Callable[[], tuple[Iterable[ModelInfo], Mapping[str, Mapping[str, str]]]]


class Registry:
    """A set of :class:`ModelInfo` entries plus aliases, indexed for O(1) lookups.

    Safe to share between threads: reads take no lock and see one consistent snapshot per
    call; :meth:`register` and :meth:`replace_all` build a new snapshot under a writers' lock
    and publish it with a single assignment.

    Args:
        models: the entries; a later entry replaces an earlier one with the same provider and id.
        aliases: ``{alias: {provider: provider's model id}}``.
    """

    def __init__(
        self,
        models: Iterable[ModelInfo] = (),
        aliases: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._write_lock = threading.Lock()
        self._loader: _Loader | None = None
        self._snapshot: _Snapshot | None = _Snapshot.build(models, aliases or {})

    @classmethod
    def lazy(cls, loader: _Loader) -> Registry:
        """A registry filled by ``loader()`` (returning ``(models, aliases)``) on first use.

        The loader runs once, even when many threads need the registry at the same moment;
        if it raises, the next use tries again.
        """
        registry = cls()
        registry._snapshot = None
        registry._loader = loader
        return registry

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Registry:
        """A registry from a document shaped like the bundled file.

        ``{"models": [ModelInfo.to_dict() rows], "aliases": {alias: {provider: id}}}``
        """
        return cls(*_parse(data))

    @classmethod
    def bundled(cls) -> Registry:
        """A new registry over the data shipped with sa_llm, parsed on first use."""
        return cls.lazy(_load_bundled)

    # -- snapshots ----------------------------------------------------------------------------

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is None:
            with self._write_lock:
                snapshot = self._loaded()
        return snapshot

    def _loaded(self) -> _Snapshot:
        """The current snapshot, loading it first if needed. Call with the writers' lock held."""
        snapshot = self._snapshot
        if snapshot is None:
            assert self._loader is not None
            models, aliases = self._loader()
            snapshot = _Snapshot.build(models, aliases)
            self._snapshot = snapshot
            self._loader = None
        return snapshot

    def replace_all(
        self,
        models: Iterable[ModelInfo],
        aliases: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Swap in ``models`` (and ``aliases``; by default the current ones are kept)."""
        models = tuple(models)
        with self._write_lock:
            current = self._snapshot
            if aliases is None:
                aliases = self._loaded().aliases if current is None else current.aliases
            self._loader = None
            self._snapshot = _Snapshot.build(models, aliases)

    def register(self, *infos: ModelInfo) -> None:
        """Add entries, replacing any with the same provider and id."""
        with self._write_lock:
            current = self._loaded()
            self._snapshot = _Snapshot.build((*current.models, *infos), current.aliases)

    # -- lookups ------------------------------------------------------------------------------

    def _check_provider(self, snapshot: _Snapshot, provider: str) -> None:
        known = set(SUPPORTED_PROVIDERS) | set(snapshot.by_provider)
        if provider not in known:
            matches = difflib.get_close_matches(provider, sorted(known), n=3, cutoff=0.5)
            raise ProviderNotFoundError(provider, matches)

    def find(self, model_id: str, provider: str | None = None) -> ModelInfo:
        """The entry for a model id or alias, served by ``provider`` when given.

        Args:
            model_id: a provider's model id (``"gpt-4.1-nano"``, ``"anthropic/claude-haiku-4.5"``)
                or an alias (``"claude-haiku-4-5"``).
            provider: route through this provider; ``None`` picks the model's home provider
                (see the module docs).

        Returns:
            The entry, whose ``id`` is what to send to ``provider``.

        Raises:
            ModelNotFoundError: unknown (for this provider), with close matches.
            ProviderNotFoundError: ``provider`` is neither supported nor in the registry.
        """
        snapshot = self._current()
        if provider is None:
            info = snapshot.default(model_id)
        else:
            self._check_provider(snapshot, provider)
            info = snapshot.route(model_id, provider)
        if info is None:
            raise ModelNotFoundError(model_id, provider, snapshot.suggestions(model_id, provider))
        return info

    def resolve(self, model_id: str, provider: str | None = None) -> tuple[str, str]:
        """``(provider's model id, provider)`` for a model id or alias (see :meth:`find`)."""
        info = self.find(model_id, provider)
        return info.id, info.provider

    def resolve_alias(self, model_id: str, provider: str | None = None) -> str:
        """The id an alias stands for at ``provider`` (the home provider when ``None``).

        Returns ``model_id`` unchanged when it is no alias there. Does not check that the model
        exists; :meth:`find` does.
        """
        targets = self._current().aliases.get(model_id)
        if not targets:
            return model_id
        if provider is not None:
            return targets.get(provider, model_id)
        best = min(targets, key=lambda p: _rank(model_id, p))
        return targets[best]

    def all(self) -> list[ModelInfo]:
        """Every entry, in registration order (the bundled data is sorted by provider, id)."""
        return list(self._current().models)

    def by_provider(self, provider: str) -> list[ModelInfo]:
        """The entries ``provider`` serves.

        Raises:
            ProviderNotFoundError: ``provider`` is neither supported nor in the registry.
        """
        snapshot = self._current()
        self._check_provider(snapshot, provider)
        return list(snapshot.by_provider.get(provider, ()))

    def by_family(self, family: str) -> list[ModelInfo]:
        """The entries of a model family (``"claude-haiku"``), across providers."""
        return [m for m in self._current().models if m.family == family]

    def chat_models(self) -> list[ModelInfo]:
        """The entries whose :attr:`~ModelInfo.type` is ``chat``."""
        return [m for m in self._current().models if m.type == "chat"]

    def embedding_models(self) -> list[ModelInfo]:
        """The entries whose :attr:`~ModelInfo.type` is ``embedding``."""
        return [m for m in self._current().models if m.type == "embedding"]

    def providers(self) -> set[str]:
        """The names of the providers with at least one entry."""
        return set(self._current().by_provider)

    def filter(self, predicate: Callable[[ModelInfo], bool]) -> list[ModelInfo]:
        """The entries for which ``predicate`` is true."""
        return [m for m in self._current().models if predicate(m)]

    def where(
        self,
        *,
        provider: str | None = None,
        family: str | None = None,
        type: str | None = None,
        **flags: bool,
    ) -> list[ModelInfo]:
        """The entries matching every given condition.

        Args:
            provider: only this provider's entries.
            family: only this family.
            type: only this :attr:`~ModelInfo.type` (``"chat"``, ``"embedding"``, ...).
            flags: capability properties and the value they must have, e.g.
                ``supports_vision=True, supports_reasoning=False``.

        Raises:
            TypeError: a flag that is not a ``supports_*`` property of :class:`ModelInfo`.
        """
        unknown = sorted(set(flags) - _FLAGS)
        if unknown:
            raise TypeError(f"where() got unknown flags {unknown}; use any of {sorted(_FLAGS)}")
        snapshot = self._current()
        pool: Iterable[ModelInfo] = snapshot.models
        if provider is not None:
            pool = snapshot.by_provider.get(provider, ())
        wanted = list(flags.items())
        return [
            m
            for m in pool
            if (family is None or m.family == family)
            and (type is None or m.type == type)
            and builtins.all(getattr(m, name) == value for name, value in wanted)
        ]

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._current().models)

    def __len__(self) -> int:
        return len(self._current().models)

    def __contains__(self, item: object) -> bool:
        """``"gpt-4.1-nano" in registry`` (an id or alias, any provider) or a ``ModelInfo``."""
        snapshot = self._current()
        if isinstance(item, ModelInfo):
            return snapshot.by_key.get((item.provider, item.id)) == item
        return isinstance(item, str) and snapshot.default(item) is not None

    def __repr__(self) -> str:
        snapshot = self._snapshot
        if snapshot is None:
            return f"<{type(self).__name__} (not loaded yet)>"
        return (
            f"<{type(self).__name__} {len(snapshot.models)} models, "
            f"{len(snapshot.by_provider)} providers>"
        )


def _parse(
    data: Mapping[str, Any],
) -> tuple[list[ModelInfo], Mapping[str, Mapping[str, str]]]:
    models = [ModelInfo.from_dict(row) for row in data.get("models") or ()]
    return models, data.get("aliases") or {}


def _load_bundled() -> tuple[list[ModelInfo], Mapping[str, Mapping[str, str]]]:
    text = (
        resources.files("sa_llm")
        .joinpath("_data")
        .joinpath("models.json")
        .read_text(encoding="utf-8")
    )
    return _parse(json.loads(text))


default_registry: Registry = Registry.bundled()
"""The process-wide registry, loaded from the bundled data on first use."""


# -- module-level shortcuts to ``default_registry`` ------------------------------------------


def find(model_id: str, provider: str | None = None) -> ModelInfo:
    """The entry for a model id or alias (see :meth:`Registry.find`).

    Raises:
        ModelNotFoundError: unknown (for this provider), with close matches.
        ProviderNotFoundError: an unknown provider.
    """
    return default_registry.find(model_id, provider)


def resolve(model_id: str, provider: str | None = None) -> tuple[str, str]:
    """``(provider's model id, provider)`` for a model id or alias (see :meth:`Registry.find`)."""
    return default_registry.resolve(model_id, provider)


def all() -> list[ModelInfo]:
    """Every entry of the default_registry."""
    return default_registry.all()


def by_provider(provider: str) -> list[ModelInfo]:
    """The entries ``provider`` serves."""
    return default_registry.by_provider(provider)


def chat_models() -> list[ModelInfo]:
    """The chat models."""
    return default_registry.chat_models()


def embedding_models() -> list[ModelInfo]:
    """The embedding models."""
    return default_registry.embedding_models()


def providers() -> set[str]:
    """The names of the providers with at least one entry."""
    return default_registry.providers()


def where(
    *,
    provider: str | None = None,
    family: str | None = None,
    type: str | None = None,
    **flags: bool,
) -> list[ModelInfo]:
    """The entries matching every condition (see :meth:`Registry.where`)."""
    return default_registry.where(provider=provider, family=family, type=type, **flags)


def register(*infos: ModelInfo) -> None:
    """Add entries to the registry, replacing any with the same provider and id."""
    default_registry.register(*infos)


#: The most pages one provider's listing may take (a listing that never ends is a bug upstream).
MAX_LISTING_PAGES = 50


def _list_models(provider: Any, transport: Any) -> list[dict[str, Any]]:
    """Every page of ``provider``'s model listing, in order, each model once.

    Raises:
        ResponseParseError: a page repeats the previous one's request (the listing would not
            end) or there are more than :data:`MAX_LISTING_PAGES` pages.
    """
    from sa_llm import errors

    request = provider.list_models_request()
    listed: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(MAX_LISTING_PAGES):
        response = transport.send(request)
        for item in provider.parse_model_list(response):
            if item["id"] not in seen:
                seen.add(item["id"])
                listed.append(item)
        following = provider.next_models_request(request, response)
        if following is None:
            return listed
        if following.url == request.url:
            raise errors.ResponseParseError(
                f"{provider.name}'s model list points at the same page again",
                provider=provider.name,
            )
        request = following
    raise errors.ResponseParseError(
        f"{provider.name}'s model list has more than {MAX_LISTING_PAGES} pages",
        provider=provider.name,
    )


def refresh(
    config: Any = None,
    *,
    providers: Sequence[str] | None = None,
    progress: Callable[[str], object] | None = None,
) -> dict[str, str]:
    """Fetch each configured provider's model list and merge it into the default_registry.

    Known models keep their bundled facts; listed models the registry lacks are added with what
    the listing says. A provider without a key, or whose call fails, keeps its entries. Returns
    what happened per provider, e.g. ``{"openai": "118 listed, 3 new"}``.
    """
    from sa_llm import errors
    from sa_llm.config import get_config
    from sa_llm.providers import create_provider
    from sa_llm.providers._transport import Transport

    config = config or get_config()
    report: dict[str, str] = {}
    added: list[ModelInfo] = []
    known = {(info.provider, info.id) for info in default_registry.all()}
    for name in providers or SUPPORTED_PROVIDERS:
        try:
            provider = create_provider(name, config)
            listed = _list_models(provider, Transport(config, provider))
        except errors.MissingAPIKeyError:
            report[name] = "skipped: no API key"
        except errors.SaLLMError as exc:
            report[name] = f"kept existing entries: {type(exc).__name__}: {exc.message}"
        else:
            new = [
                ModelInfo(
                    id=item["id"],
                    name=item["name"],
                    provider=name,
                    created_at=item.get("created_at"),
                    metadata={"source": f"{name} model list"},
                )
                for item in listed
                if (name, item["id"]) not in known
            ]
            added.extend(new)
            report[name] = f"{len(listed)} listed, {len(new)} new"
        if progress is not None:
            progress(name)
    if added:
        default_registry.register(*added)
    return report
