"""The bundled model registry: ids, providers, context windows, modalities, capabilities, prices.

Facts come from RubyLLM's registry (MIT) via ``scripts/build_registry.py`` and load lazily on
first use. Lookups resolve aliases per provider (``claude-haiku-4-5`` is Anthropic's dated id, or
the Bedrock id when routed through ``bedrock``) and fail with close matches.

Example::

    from sa_llm import models

    info = models.find("gpt-4.1-nano")
    info.context_window, info.supports_vision
    models.find("claude-haiku-4-5", provider="bedrock").id
    [m.id for m in models.where(supports_functions=True, provider="openai")]
"""

from __future__ import annotations

import builtins
import difflib
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

from sa_llm.errors import ModelNotFoundError

__all__ = [
    "SUPPORTED_PROVIDERS",
    "ModelInfo",
    "Registry",
    "all",
    "by_provider",
    "chat_models",
    "embedding_models",
    "find",
    "providers",
    "refresh",
    "register",
    "registry",
    "resolve",
    "where",
]

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

# Which provider a model "belongs to" when no provider is given: never a router.
_HOME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("claude", "anthropic"),
    ("gemini", "gemini"),
    ("gemma", "gemini"),
    ("grok", "xai"),
    ("deepseek", "deepseek"),
    ("mistral", "mistral"),
    ("codestral", "mistral"),
    ("magistral", "mistral"),
    ("pixtral", "mistral"),
    ("ministral", "mistral"),
    ("devstral", "mistral"),
    ("voxtral", "mistral"),
)
_PROVIDER_PREFERENCE = (
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


def _frozen(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the registry knows about one model of one provider."""

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
    pricing: Mapping[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
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
            pricing=_frozen(data.get("pricing")),
            created_at=data.get("created_at"),
            metadata=_frozen(data.get("metadata")),
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
            metadata=_frozen({"assumed": True}),
        )

    def to_dict(self) -> dict[str, Any]:
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
            "pricing": dict(self.pricing),
            "created_at": self.created_at,
            "metadata": dict(self.metadata),
        }

    def supports(self, capability: str) -> bool:
        return capability in self.capabilities

    @property
    def supports_vision(self) -> bool:
        return "image" in self.input_modalities or "vision" in self.capabilities

    @property
    def supports_functions(self) -> bool:
        return "function_calling" in self.capabilities

    @property
    def supports_structured_output(self) -> bool:
        return "structured_output" in self.capabilities

    @property
    def supports_audio_input(self) -> bool:
        return "audio" in self.input_modalities

    @property
    def supports_pdf(self) -> bool:
        return "pdf" in self.input_modalities or "file" in self.input_modalities

    @property
    def supports_reasoning(self) -> bool:
        return "reasoning" in self.capabilities

    @property
    def type(self) -> str:
        """``chat``, ``embedding``, ``image``, ``audio`` or ``moderation``."""
        outputs = set(self.output_modalities)
        if "embeddings" in outputs or "embedding" in self.id:
            return "embedding"
        if "text" in outputs:
            return "chat"
        if "image" in outputs:
            return "image"
        if "audio" in outputs:
            return "audio"
        return "chat"

    def _standard_price(self, key: str) -> float | None:
        text = self.pricing.get("text_tokens") if isinstance(self.pricing, Mapping) else None
        standard = text.get("standard") if isinstance(text, Mapping) else None
        value = standard.get(key) if isinstance(standard, Mapping) else None
        return float(value) if isinstance(value, int | float) else None

    @property
    def input_price_per_million(self) -> float | None:
        return self._standard_price("input_per_million")

    @property
    def output_price_per_million(self) -> float | None:
        return self._standard_price("output_per_million")

    @property
    def cached_input_price_per_million(self) -> float | None:
        return self._standard_price("cache_read_input_per_million")


@dataclass(frozen=True)
class _Snapshot:
    models: tuple[ModelInfo, ...]
    by_key: Mapping[tuple[str, str], ModelInfo]
    by_id: Mapping[str, tuple[ModelInfo, ...]]
    aliases: Mapping[str, Mapping[str, str]]


def _snapshot(models: tuple[ModelInfo, ...], aliases: Mapping[str, Mapping[str, str]]) -> _Snapshot:
    by_id: dict[str, list[ModelInfo]] = {}
    for info in models:
        by_id.setdefault(info.id, []).append(info)
    return _Snapshot(
        models=models,
        by_key={(m.provider, m.id): m for m in models},
        by_id={k: tuple(v) for k, v in by_id.items()},
        aliases={k: dict(v) for k, v in aliases.items()},
    )


def _home_rank(model_id: str, provider: str) -> tuple[int, int]:
    lowered = model_id.lower()
    home = next((p for prefix, p in _HOME_PREFIXES if lowered.startswith(prefix)), "openai")
    order = _PROVIDER_PREFERENCE.index(provider) if provider in _PROVIDER_PREFERENCE else 99
    return (0 if provider == home else 1, order)


class Registry:
    """An immutable snapshot of models, swapped atomically by :meth:`replace_all`/:meth:`register`.

    Reads never lock: they see one snapshot or the next, never a half-built one.
    """

    def __init__(
        self,
        models: tuple[ModelInfo, ...] = (),
        aliases: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._snap = _snapshot(tuple(models), aliases or {})

    def replace_all(
        self,
        models: tuple[ModelInfo, ...] | list[ModelInfo],
        aliases: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        with self._lock:
            self._snap = _snapshot(
                tuple(models), self._snap.aliases if aliases is None else aliases
            )

    def register(self, *infos: ModelInfo) -> None:
        """Add or replace models (by provider and id)."""
        with self._lock:
            keep = [
                m
                for m in self._snap.models
                if (m.provider, m.id) not in {(i.provider, i.id) for i in infos}
            ]
            self._snap = _snapshot(tuple(keep) + tuple(infos), self._snap.aliases)

    def resolve_alias(self, model_id: str, provider: str | None = None) -> str:
        targets = self._snap.aliases.get(model_id)
        if not targets:
            return model_id
        if provider is not None:
            return targets.get(provider, model_id)
        return model_id

    def find(self, model_id: str, provider: str | None = None) -> ModelInfo:
        """The model with this id or alias (for ``provider``, when given).

        Raises:
            ModelNotFoundError: unknown, with close matches.
        """
        snap = self._snap
        if provider is not None:
            found = snap.by_key.get((provider, model_id))
            if found is None:
                found = snap.by_key.get((provider, self.resolve_alias(model_id, provider)))
            if found is None and model_id in snap.aliases and provider in snap.aliases[model_id]:
                # An alias target the data does not list as a model: still routable.
                target = snap.aliases[model_id][provider]
                home = self._find_any(model_id)
                if home is not None:
                    return ModelInfo(**{**_fields(home), "id": target, "provider": provider})
            if found is not None:
                return found
            raise ModelNotFoundError(model_id, provider, self._suggest(model_id, provider))
        found = self._find_any(model_id)
        if found is not None:
            return found
        raise ModelNotFoundError(model_id, None, self._suggest(model_id, None))

    def _find_any(self, model_id: str) -> ModelInfo | None:
        snap = self._snap
        candidates = list(snap.by_id.get(model_id, ()))
        targets = snap.aliases.get(model_id, {})
        for provider, target in targets.items():
            hit = snap.by_key.get((provider, target))
            if hit is not None:
                candidates.append(hit)
        if not candidates:
            return None
        return min(candidates, key=lambda m: _home_rank(model_id, m.provider))

    def resolve(self, model_id: str, provider: str | None = None) -> tuple[str, str]:
        """``(provider's model id, provider)`` for a model id or alias."""
        info = self.find(model_id, provider)
        return info.id, info.provider

    def _suggest(self, model_id: str, provider: str | None) -> list[str]:
        snap = self._snap
        names = [m.id for m in snap.models if provider is None or m.provider == provider]
        names.extend(a for a, t in snap.aliases.items() if provider is None or provider in t)
        return difflib.get_close_matches(model_id, sorted(set(names)), n=5, cutoff=0.6)

    def all(self) -> list[ModelInfo]:
        return list(self._snap.models)

    def by_provider(self, provider: str) -> list[ModelInfo]:
        return [m for m in self._snap.models if m.provider == provider]

    def chat_models(self) -> list[ModelInfo]:
        return [m for m in self._snap.models if m.type == "chat"]

    def embedding_models(self) -> list[ModelInfo]:
        return [m for m in self._snap.models if m.type == "embedding"]

    def providers(self) -> set[str]:
        return {m.provider for m in self._snap.models}

    def filter(self, predicate: Callable[[ModelInfo], bool]) -> list[ModelInfo]:
        return [m for m in self._snap.models if predicate(m)]

    def where(self, *, provider: str | None = None, **flags: bool) -> list[ModelInfo]:
        """Models whose boolean properties match, e.g. ``where(supports_vision=True)``."""
        return [
            m
            for m in self._snap.models
            if (provider is None or m.provider == provider)
            and builtins.all(bool(getattr(m, name)) == value for name, value in flags.items())
        ]

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self._snap.models)

    def __len__(self) -> int:
        return len(self._snap.models)

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and (
            model_id in self._snap.by_id or model_id in self._snap.aliases
        )


def _fields(info: ModelInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in ModelInfo.__dataclass_fields__}


class _LazyRegistry(Registry):
    """The bundled registry, parsed on first use."""

    def __init__(self) -> None:
        super().__init__()
        self._loaded = False

    def _load(self) -> None:
        with self._lock:
            if self._loaded:
                return
            text = resources.files("sa_llm").joinpath("_data/models.json").read_text("utf-8")
            data = json.loads(text)
            models = tuple(ModelInfo.from_dict(m) for m in data["models"])
            self._snap = _snapshot(models, data.get("aliases") or {})
            self._loaded = True

    def __getattribute__(self, name: str) -> Any:
        if name in (
            "find",
            "all",
            "by_provider",
            "chat_models",
            "embedding_models",
            "providers",
            "filter",
            "where",
            "register",
            "replace_all",
            "resolve",
            "resolve_alias",
            "__iter__",
            "__len__",
            "__contains__",
        ) and not object.__getattribute__(self, "_loaded"):
            object.__getattribute__(self, "_load")()
        return object.__getattribute__(self, name)


registry: Registry = _LazyRegistry()


def refresh(
    config: Any = None,
    *,
    providers: Sequence[str] | None = None,
    progress: Callable[[str], object] | None = None,
) -> dict[str, str]:
    """Fetch each configured provider's model list and merge it into the registry.

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
    known = {(info.provider, info.id) for info in registry.all()}
    for name in providers or SUPPORTED_PROVIDERS:
        try:
            provider = create_provider(name, config)
            request = provider.list_models_request()
            listed = provider.parse_model_list(Transport(config, provider).send(request))
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
                    metadata=_frozen({"source": f"{name} model list"}),
                )
                for item in listed
                if (name, item["id"]) not in known
            ]
            added.extend(new)
            report[name] = f"{len(listed)} listed, {len(new)} new"
        if progress is not None:
            progress(name)
    if added:
        registry.register(*added)
    return report


def find(model_id: str, provider: str | None = None) -> ModelInfo:
    """The bundled registry's entry for a model id or alias (see :meth:`Registry.find`)."""
    return registry.find(model_id, provider)


def resolve(model_id: str, provider: str | None = None) -> tuple[str, str]:
    return registry.resolve(model_id, provider)


def all() -> list[ModelInfo]:
    return registry.all()


def by_provider(provider: str) -> list[ModelInfo]:
    return registry.by_provider(provider)


def chat_models() -> list[ModelInfo]:
    return registry.chat_models()


def embedding_models() -> list[ModelInfo]:
    return registry.embedding_models()


def providers() -> set[str]:
    return registry.providers()


def where(*, provider: str | None = None, **flags: bool) -> list[ModelInfo]:
    return registry.where(provider=provider, **flags)


def register(*infos: ModelInfo) -> None:
    registry.register(*infos)
