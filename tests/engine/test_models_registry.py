"""The in-memory model registry (``sa_llm.registry``): lookups, aliases, routing, filters, threads.

Expected facts are read from the bundled data file itself, never typed in, so a data refresh
does not break these tests; only the behaviour around the data is pinned here.
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from sa_llm import registry
from sa_llm.errors import ModelNotFoundError, ProviderNotFoundError
from sa_llm.registry import SUPPORTED_PROVIDERS, ModelInfo, Registry

WIRE = Path(__file__).parents[1] / "fixtures" / "wire"

# Recorded against a local Ollama server: RubyLLM's registry lists only Ollama Cloud models,
# so these ids are not in the bundled data (Ollama chats use assume_model_exists).
RECORDED_BUT_NOT_IN_DATA = {("ollama", "granite3.2-vision"), ("ollama", "qwen3")}


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    text = resources.files("sa_llm").joinpath("_data").joinpath("models.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@pytest.fixture(scope="module")
def rows(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["provider"], row["id"]): row for row in data["models"]}


@pytest.fixture(scope="module")
def aliases(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    result: dict[str, dict[str, str]] = data["aliases"]
    return result


@pytest.fixture(scope="module")
def bundled() -> Registry:
    """The bundled data alone: other tests may add entries to ``registry.default_registry``."""
    return Registry.bundled()


@pytest.fixture
def fresh() -> Registry:
    """A private copy of the bundled registry, free to mutate."""
    return Registry.bundled()


def info(model_id: str, provider: str = "openai", **fields: Any) -> ModelInfo:
    return ModelInfo(id=model_id, name=model_id, provider=provider, **fields)


# -- the data file ---------------------------------------------------------------------------------


def test_data_file_shape(data: dict[str, Any]) -> None:
    assert set(data) == {"source", "license", "models", "aliases"}
    assert "MIT" in data["license"] and "Carmine Paolino" in data["license"]
    keys = [(row["provider"], row["id"]) for row in data["models"]]
    assert keys == sorted(keys)
    assert len(keys) == len(set(keys))
    assert {provider for provider, _ in keys} <= set(SUPPORTED_PROVIDERS)
    for targets in data["aliases"].values():
        assert set(targets) <= set(SUPPORTED_PROVIDERS)


def test_every_row_round_trips(rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    for row in rows.values():
        assert ModelInfo.from_dict(row).to_dict() == row


def test_every_alias_target_is_a_model(
    rows: dict[tuple[str, str], dict[str, Any]], aliases: dict[str, dict[str, str]]
) -> None:
    for targets in aliases.values():
        for provider, target in targets.items():
            assert (provider, target) in rows


# -- exact ids and aliases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "provider"),
    [
        ("gpt-4.1-nano", "openai"),
        ("gpt-5-nano", "openai"),
        ("anthropic/claude-haiku-4.5", "openrouter"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock"),
    ],
)
def test_find_exact_id(
    rows: dict[tuple[str, str], dict[str, Any]], model_id: str, provider: str
) -> None:
    row = rows[(provider, model_id)]
    found = registry.find(model_id, provider)
    assert found.to_dict() == row
    # The id alone names the same entry: these ids exist at one provider only.
    assert registry.find(model_id) == found
    assert registry.resolve(model_id) == (model_id, provider)


@pytest.mark.parametrize("alias", ["claude-haiku-4-5", "claude-sonnet-4-5"])
def test_alias_resolves_to_the_dated_id(aliases: dict[str, dict[str, str]], alias: str) -> None:
    dated = aliases[alias]["anthropic"]
    assert dated != alias and dated.startswith(alias)
    assert registry.find(alias, "anthropic").id == dated
    # Without a provider the home provider's alias target wins, not an undated twin row.
    assert registry.resolve(alias) == (dated, "anthropic")
    assert registry.default_registry.resolve_alias(alias) == dated


@pytest.mark.parametrize("provider", ["bedrock", "openrouter"])
@pytest.mark.parametrize("alias", ["claude-haiku-4-5", "claude-sonnet-4-5"])
def test_alias_routes_to_a_router(
    rows: dict[tuple[str, str], dict[str, Any]],
    aliases: dict[str, dict[str, str]],
    alias: str,
    provider: str,
) -> None:
    target = aliases[alias][provider]
    found = registry.find(alias, provider)
    assert (found.id, found.provider) == (target, provider)
    assert found.to_dict() == rows[(provider, target)]
    assert registry.resolve(alias, provider) == (target, provider)
    assert registry.default_registry.resolve_alias(alias, provider) == target


def test_resolve_alias_leaves_other_names_alone() -> None:
    assert registry.default_registry.resolve_alias("gpt-5-nano-nope") == "gpt-5-nano-nope"
    assert (
        registry.default_registry.resolve_alias("claude-haiku-4-5", "mistral") == "claude-haiku-4-5"
    )


def test_gemini_resource_names_are_accepted() -> None:
    # Gemini's API names models "models/<id>" (cachedContents bodies carry that form).
    assert registry.find("models/gemini-2.5-flash", "gemini") == registry.find("gemini-2.5-flash")
    assert registry.resolve("models/gemini-2.5-flash") == ("gemini-2.5-flash", "gemini")
    with pytest.raises(ModelNotFoundError):
        registry.find("models/gemini-2.5-flash", "openai")


# -- which provider without one --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("claude-haiku-4-5", "anthropic"),
        ("gemini-2.5-flash", "gemini"),
        ("gpt-4.1-nano", "openai"),
        ("deepseek-v4-flash", "deepseek"),
        ("deepseek-chat", "deepseek"),
    ],
)
def test_home_provider_wins_over_other_providers(
    rows: dict[tuple[str, str], dict[str, Any]],
    aliases: dict[str, dict[str, str]],
    name: str,
    home: str,
) -> None:
    known_at = {p for (p, i) in rows if i == name} | set(aliases.get(name, {}))
    assert home in known_at and len(known_at) > 1  # otherwise there is nothing to choose
    assert registry.find(name).provider == home


def test_routers_only_when_asked_or_alone() -> None:
    reg = Registry(
        [
            info("claude-x", "openrouter"),
            info("claude-x", "bedrock"),
            info("claude-x", "acme"),
            info("claude-x", "anthropic"),
            info("vendor/only-here", "openrouter"),
        ]
    )
    assert reg.find("claude-x").provider == "anthropic"
    assert reg.find("claude-x", "openrouter").provider == "openrouter"
    reg.replace_all([info("claude-x", "openrouter"), info("claude-x", "acme")])
    assert reg.find("claude-x").provider == "acme"  # any direct provider before a router
    reg.replace_all([info("claude-x", "openrouter"), info("claude-x", "bedrock")])
    assert reg.find("claude-x").provider == "bedrock"  # a stable order, whatever the input
    reg.replace_all([info("claude-x", "bedrock"), info("claude-x", "openrouter")])
    assert reg.find("claude-x").provider == "bedrock"
    assert Registry([info("vendor/only-here", "openrouter")]).resolve("vendor/only-here") == (
        "vendor/only-here",
        "openrouter",
    )


# -- errors ----------------------------------------------------------------------------------------


def test_unknown_model_suggests_close_matches() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        registry.find("gpt-4.1-nan")
    assert caught.value.suggestions[0] == "gpt-4.1-nano"
    assert len(caught.value.suggestions) <= 5
    assert caught.value.model_id == "gpt-4.1-nan" and caught.value.provider is None


def test_suggestions_stay_with_the_provider(
    rows: dict[tuple[str, str], dict[str, Any]], aliases: dict[str, dict[str, str]]
) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        registry.find("claude-sonet-4-5", "bedrock")
    names = {i for (p, i) in rows if p == "bedrock"} | {
        a for a, t in aliases.items() if "bedrock" in t
    }
    assert caught.value.suggestions
    assert set(caught.value.suggestions) <= names
    assert caught.value.provider == "bedrock"


def test_known_id_at_another_provider_is_not_found() -> None:
    with pytest.raises(ModelNotFoundError):
        registry.find("gpt-4.1-nano", "anthropic")


def test_unknown_provider() -> None:
    with pytest.raises(ProviderNotFoundError) as caught:
        registry.find("gpt-4.1-nano", "opnai")
    assert "openai" in caught.value.suggestions
    with pytest.raises(ProviderNotFoundError):
        registry.by_provider("antropic")


def test_errors_pickle() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        registry.find("gpt-4.1-nan")
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.suggestions == caught.value.suggestions


# -- listing and filtering -------------------------------------------------------------------------


def test_by_provider_and_providers(
    bundled: Registry, rows: dict[tuple[str, str], dict[str, Any]]
) -> None:
    counts = Counter(provider for provider, _ in rows)
    assert bundled.providers() == set(counts)
    for provider, count in counts.items():
        listed = bundled.by_provider(provider)
        assert len(listed) == count
        assert {m.provider for m in listed} == {provider}
    assert len(bundled.all()) == len(bundled) == len(rows)
    assert [(m.provider, m.id) for m in bundled] == list(rows)


def test_module_functions_use_the_shared_registry() -> None:
    assert registry.all() == registry.default_registry.all()
    assert registry.providers() == registry.default_registry.providers()
    assert registry.by_provider("xai") == registry.default_registry.by_provider("xai")
    assert registry.chat_models() == registry.default_registry.chat_models()
    assert registry.embedding_models() == registry.default_registry.embedding_models()
    assert registry.where(supports_pdf=True) == registry.default_registry.where(supports_pdf=True)
    assert registry.resolve("gpt-5-nano") == registry.default_registry.resolve("gpt-5-nano")


def test_by_family(bundled: Registry, rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    family = rows[("anthropic", "claude-haiku-4-5-20251001")]["family"]
    expected = {key for key, row in rows.items() if row["family"] == family}
    assert len(expected) > 1
    assert {(m.provider, m.id) for m in bundled.by_family(family)} == expected
    assert bundled.where(family=family, provider="anthropic") == [
        m for m in bundled.by_family(family) if m.provider == "anthropic"
    ]


def test_capability_filters(bundled: Registry, rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    def keys(found: list[ModelInfo]) -> set[tuple[str, str]]:
        return {(m.provider, m.id) for m in found}

    vision = {
        key
        for key, row in rows.items()
        if key[0] == "openai"
        and ("image" in row["modalities"]["input"] or "vision" in row["capabilities"])
    }
    assert keys(bundled.where(provider="openai", supports_vision=True)) == vision
    tools = {key for key, row in rows.items() if "function_calling" in row["capabilities"]}
    assert keys(bundled.where(supports_functions=True)) == tools
    no_tools_reasoning = {
        key
        for key, row in rows.items()
        if "reasoning" in row["capabilities"] and "function_calling" not in row["capabilities"]
    }
    assert (
        keys(bundled.where(supports_reasoning=True, supports_functions=False)) == no_tools_reasoning
    )
    pdf = {key for key, row in rows.items() if "pdf" in row["modalities"]["input"]}
    assert keys(bundled.filter(lambda m: m.supports_pdf)) == pdf
    assert bundled.where(type="embedding") == bundled.embedding_models()
    assert bundled.where(type="chat") == bundled.chat_models()
    with pytest.raises(TypeError, match="supports_visoin"):
        bundled.where(supports_visoin=True)


def test_chat_and_embedding_models(
    bundled: Registry, rows: dict[tuple[str, str], dict[str, Any]]
) -> None:
    embeddings = {k for k, r in rows.items() if "embeddings" in r["modalities"]["output"]}
    assert embeddings <= {(m.provider, m.id) for m in bundled.embedding_models()}
    chat = {(m.provider, m.id) for m in bundled.chat_models()}
    assert ("openai", "gpt-4.1-nano") in chat and ("anthropic", "claude-haiku-4-5-20251001") in chat
    assert not chat & embeddings


def test_contains() -> None:
    assert "gpt-4.1-nano" in registry.default_registry
    assert "claude-haiku-4-5" in registry.default_registry  # an alias
    assert "gpt-4.1-nan" not in registry.default_registry
    assert registry.find("gpt-4.1-nano") in registry.default_registry
    assert info("gpt-4.1-nano") not in registry.default_registry  # same key, other facts
    assert 42 not in registry.default_registry


# -- ModelInfo -------------------------------------------------------------------------------------


def test_properties_match_the_data(
    bundled: Registry, rows: dict[tuple[str, str], dict[str, Any]]
) -> None:
    assert len(bundled) == len(rows)
    for entry in bundled:
        row = rows[(entry.provider, entry.id)]
        inputs, caps = row["modalities"]["input"], row["capabilities"]
        assert entry.supports_vision == ("image" in inputs or "vision" in caps)
        assert entry.supports_functions == ("function_calling" in caps)
        assert entry.supports_structured_output == ("structured_output" in caps)
        assert entry.supports_reasoning == ("reasoning" in caps)
        assert entry.supports_audio_input == ("audio" in inputs)
        assert entry.supports_pdf == ("pdf" in inputs)
        standard = row["pricing"].get("text_tokens", {}).get("standard", {})
        assert entry.input_price_per_million == standard.get("input_per_million")
        assert entry.output_price_per_million == standard.get("output_per_million")
        assert entry.cached_input_price_per_million == standard.get("cache_read_input_per_million")
        assert entry.context_window == row["context_window"]
        assert entry.max_output_tokens == row["max_output_tokens"]
        assert entry.knowledge_cutoff == row["knowledge_cutoff"]
        assert entry.created_at == row["created_at"]


def test_nano_models_facts(rows: dict[tuple[str, str], dict[str, Any]]) -> None:
    for model_id in ("gpt-4.1-nano", "gpt-5-nano"):
        row = rows[("openai", model_id)]
        found = registry.find(model_id)
        assert found.type == "chat"
        assert found.supports_functions and found.supports_vision
        prices = row["pricing"]["text_tokens"]["standard"]
        assert found.input_price_per_million == prices["input_per_million"]
        assert found.output_price_per_million == prices["output_per_million"]
        assert found.name == row["name"]


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"input_modalities": ("text", "image"), "output_modalities": ("text",)}, "chat"),
        ({"input_modalities": ("text",), "output_modalities": ("embeddings",)}, "embedding"),
        ({"input_modalities": ("audio",), "output_modalities": ("text",)}, "transcription"),
        ({"input_modalities": ("text",), "output_modalities": ("image",)}, "image"),
        ({"input_modalities": ("text",), "output_modalities": ("audio",)}, "audio"),
        ({"input_modalities": ("text",), "output_modalities": ("rerank",)}, "rerank"),
        (
            {
                "input_modalities": ("text",),
                "output_modalities": ("text",),
                "capabilities": frozenset({"moderation"}),
            },
            "moderation",
        ),
    ],
)
def test_type_from_modalities(fields: dict[str, Any], kind: str) -> None:
    assert info("some-model", **fields).type == kind


@pytest.mark.parametrize(
    ("model_id", "kind"),
    [
        ("whisper-1", "transcription"),
        ("tts-1-hd", "audio"),
        ("omni-moderation-latest", "moderation"),
        ("gpt-image-2-2026-04-21", "image"),
        ("sora-2", "video"),
        ("gpt-5-2025-08-07", "chat"),
    ],
)
def test_type_when_the_data_has_no_modalities(model_id: str, kind: str) -> None:
    entry = registry.find(model_id, "openai")
    assert entry.input_modalities == entry.output_modalities == ()
    assert entry.type == kind


def test_model_info_is_read_only_all_the_way_down() -> None:
    entry = registry.find("gpt-4.1-nano")
    with pytest.raises(TypeError):
        entry.pricing["text_tokens"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        entry.pricing["text_tokens"]["standard"]["input_per_million"] = 0
    with pytest.raises(AttributeError):
        entry.id = "other"  # type: ignore[misc]
    # Still plain JSON for encoders and database JSON columns.
    assert json.loads(json.dumps(dict(entry.pricing))) == entry.to_dict()["pricing"]
    thawed = entry.to_dict()
    thawed["pricing"]["text_tokens"]["standard"]["input_per_million"] = -1
    assert entry.input_price_per_million != -1


def test_model_info_normalises_its_inputs() -> None:
    entry = ModelInfo(
        id="m",
        name="M",
        provider="openai",
        input_modalities=["text", "image"],  # type: ignore[arg-type]
        capabilities=["vision"],  # type: ignore[arg-type]
        pricing={"text_tokens": {"standard": {"input_per_million": 2}}},
        metadata={"tags": ["a"]},
    )
    assert entry.input_modalities == ("text", "image")
    assert entry.capabilities == frozenset({"vision"})
    assert entry.input_price_per_million == 2.0
    assert entry.metadata["tags"] == ("a",)
    assert entry.to_dict()["metadata"] == {"tags": ["a"]}


def test_model_info_copies_pickles_and_hashes() -> None:
    entry = registry.find("claude-haiku-4-5")
    assert pickle.loads(pickle.dumps(entry)) == entry
    assert copy.deepcopy(entry) == entry
    assert {entry, registry.find("claude-haiku-4-5", "anthropic")} == {entry}
    assert "pricing" not in repr(entry)  # reprs stay readable in logs


def test_assumed_entry() -> None:
    entry = ModelInfo.assumed("my-model-1", "openrouter")
    assert (entry.id, entry.provider, entry.name) == ("my-model-1", "openrouter", "My Model 1")
    assert entry.supports_functions and entry.type == "chat"
    assert entry.metadata["assumed"] is True


# -- changing the registry -------------------------------------------------------------------------


def test_register_adds_and_replaces(fresh: Registry) -> None:
    before = len(fresh)
    fresh.register(info("gpt-test-new", context_window=1))
    assert len(fresh) == before + 1
    assert fresh.find("gpt-test-new").context_window == 1
    old = fresh.find("gpt-4.1-nano")
    fresh.register(info("gpt-4.1-nano", context_window=7))
    assert len(fresh) == before + 1
    assert fresh.find("gpt-4.1-nano").context_window == 7 != old.context_window
    # The shared registry is untouched.
    assert "gpt-test-new" not in registry.default_registry
    assert registry.find("gpt-4.1-nano") == old


def test_replace_all_keeps_aliases_unless_given(fresh: Registry) -> None:
    dated = fresh.resolve("claude-haiku-4-5")
    kept = [m for m in fresh if m.provider == "anthropic"]
    fresh.replace_all(kept)
    assert fresh.providers() == {"anthropic"}
    assert fresh.resolve("claude-haiku-4-5") == dated
    fresh.replace_all(kept, aliases={})
    assert fresh.find("claude-haiku-4-5").id == "claude-haiku-4-5"  # now the undated row


def test_from_dict(data: dict[str, Any]) -> None:
    reg = Registry.from_dict({"models": data["models"][:3], "aliases": {}})
    assert [m.to_dict() for m in reg] == data["models"][:3]


def test_lazy_loader_runs_once_under_contention() -> None:
    calls = 0
    ready = threading.Barrier(8)

    def loader() -> tuple[list[ModelInfo], dict[str, dict[str, str]]]:
        nonlocal calls
        calls += 1
        time.sleep(0.02)  # widen the window in which other threads arrive
        return [info("m1")], {"a": {"openai": "m1"}}

    reg = Registry.lazy(loader)
    assert "not loaded" in repr(reg)
    found: list[str] = []

    def use() -> None:
        ready.wait()
        found.append(reg.find("a").id)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == 1
    assert found == ["m1"] * 8


def test_lazy_loader_failure_is_retried() -> None:
    attempts = 0

    def loader() -> tuple[list[ModelInfo], dict[str, dict[str, str]]]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError("disk hiccup")
        return [info("m1")], {}

    reg = Registry.lazy(loader)
    with pytest.raises(OSError, match="hiccup"):
        len(reg)
    assert len(reg) == 1


def test_register_before_first_use_keeps_the_bundled_data(fresh: Registry) -> None:
    fresh.register(info("gpt-test-early"))
    assert "gpt-4.1-nano" in fresh and "gpt-test-early" in fresh


@pytest.fixture
def busy_switching() -> Iterator[None]:
    # Switch threads far more often than the default 5 ms, to interleave readers and writer.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("busy_switching")
def test_readers_never_see_a_half_replaced_registry() -> None:
    small = [info(f"m{i}", metadata={"generation": "small"}) for i in range(200)]
    large = [info(f"m{i}", metadata={"generation": "large"}) for i in range(300)]
    alias = {"first": {"openai": "m0"}}
    reg = Registry(small, alias)
    done = threading.Event()
    problems: list[str] = []
    reads = Counter[str]()

    def reader() -> None:
        try:
            while not done.is_set():
                seen = list(reg)
                generations = {m.metadata["generation"] for m in seen}
                if (
                    len(generations) != 1
                    or len(seen) != {"small": 200, "large": 300}[generations.pop()]
                ):
                    problems.append(f"mixed snapshot: {len(seen)} models")
                reg.find("first")
                reg.find("m199", "openai")
                reads[threading.current_thread().name] += 1
        except Exception as exc:  # any failure is the finding
            problems.append(repr(exc))

    def writer() -> None:
        for round_ in range(300):
            reg.replace_all(large if round_ % 2 else small)
        done.set()

    readers = [threading.Thread(target=reader, name=f"r{i}") for i in range(4)]
    for thread in readers:
        thread.start()
    writer_thread = threading.Thread(target=writer)
    writer_thread.start()
    writer_thread.join(timeout=60)
    done.set()
    for thread in readers:
        thread.join(timeout=60)
    assert problems == []
    assert sum(reads.values()) > 0


def test_concurrent_registers_are_not_lost(fresh: Registry) -> None:
    before = len(fresh)

    def add(start: int) -> None:
        for n in range(start, start + 50):
            fresh.register(info(f"gpt-concurrent-{n}"))

    threads = [threading.Thread(target=add, args=(i * 50,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fresh) == before + 200


# -- recorded traffic ------------------------------------------------------------------------------


def _recorded_models() -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for path in sorted(WIRE.glob("*/*.json")):
        provider = path.parent.name
        for interaction in json.loads(path.read_text("utf-8"))["interactions"]:
            request = interaction["request"]
            body = request.get("body")
            model = body.get("model") if isinstance(body, dict) else None
            # Bedrock and Gemini name the model in the URL path.
            in_url = re.search(r"/model/([^/]+)/(converse|invoke)", request["url"]) or re.search(
                r"/models/([^/:]+):", request["url"]
            )
            if model is None and in_url:
                model = urllib.parse.unquote(in_url.group(1))
            if isinstance(model, str):
                pairs.add((provider, model))
    return pairs


def test_every_recorded_model_is_found() -> None:
    recorded = _recorded_models()
    if not recorded:
        pytest.skip("no recorded traffic in tests/fixtures/wire")
    missing = set()
    for provider, model_id in recorded:
        try:
            registry.find(model_id, provider)
        except ModelNotFoundError:
            missing.add((provider, model_id))
    assert missing == RECORDED_BUT_NOT_IN_DATA
