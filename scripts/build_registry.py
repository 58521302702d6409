"""Build ``src/sa_llm/_data/models.json``, the bundled model registry, from RubyLLM's data.

    python scripts/build_registry.py [--models PATH] [--aliases PATH] [--out PATH] [--check]

RubyLLM (MIT, Copyright (c) 2025 Carmine Paolino) keeps a registry of model facts (ids, context
windows, modalities, capabilities, prices) and a map of aliases to each provider's id. This script
keeps the rows of the providers sa_llm supports and writes them in one file::

    {"source": ..., "license": ..., "models": [one model per line], "aliases": {one per line}}

What it changes, and why:

* RubyLLM's ``ollama_cloud`` rows are filed under ``ollama`` (sa_llm has one Ollama provider, for
  the local server and Ollama Cloud alike); ``metadata.source_provider`` keeps the original name.
* ``created_at`` becomes ISO 8601 (``2025-10-15T00:00:00+00:00``), which ``datetime.fromisoformat``
  reads on every supported Python.
* Metadata keeps the keys a provider or an application can act on (reasoning options, Bedrock's
  endpoint and Converse limits, OpenRouter's supported parameters, ...). Keys that repeat a
  top-level field (``cost``, ``limit``, ``knowledge``) are dropped when they agree with it, and
  bulky listing noise (descriptions, OpenRouter's ``architecture``) is dropped outright, so the
  wheel stays small.
* Alias targets that name no kept model are dropped (reported on stderr) so every alias resolves.

The output is deterministic (sorted by provider and id; keys in a fixed order) so that a rebuild
from the same input is byte-identical and a data update reads well as a diff. ``--check`` exits
with status 1 when the file on disk is not what the inputs produce.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference"
DEFAULT_MODELS = REFERENCE / "ruby_llm_models.json"
DEFAULT_ALIASES = REFERENCE / "ruby_llm_aliases.json"
DEFAULT_OUT = ROOT / "src" / "sa_llm" / "_data" / "models.json"

# Kept in step with sa_llm.registry.SUPPORTED_PROVIDERS; not imported so the script runs without
# the package installed.
SUPPORTED = (
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
RENAMED = {"ollama_cloud": "ollama"}

SOURCE = (
    "RubyLLM model registry (https://github.com/crmne/ruby_llm): ruby_llm_models.json and "
    "ruby_llm_aliases.json, filtered by scripts/build_registry.py"
)
LICENSE = "MIT, Copyright (c) 2025 Carmine Paolino (RubyLLM)"

# Metadata worth shipping: each key is something code can act on, not listing prose.
KEEP_METADATA = frozenset(
    {
        "source",  # where RubyLLM got the row (e.g. models.dev)
        "provider_id",
        "open_weights",
        "attachment",  # accepts file attachments
        "temperature",  # accepts a temperature parameter
        "reasoning_options",  # effort levels / thinking budget bounds
        "interleaved",  # where interleaved reasoning goes in the reply
        "status",  # e.g. "deprecated"
        "endpoint",  # Bedrock: "mantle" (OpenAI-compatible) instead of Converse
        "inference_types",  # Bedrock: ON_DEMAND / INFERENCE_PROFILE
        "converse",  # Bedrock Converse limits (max tokens, system role, reasoning)
        "provider_name",  # Bedrock: the model's vendor
        "supported_generation_methods",  # Gemini: generateContent, embedContent, ...
        "supported_parameters",  # OpenRouter: which request parameters the route accepts
        "owned_by",
        # Kept only when they add to the top-level fields (see _metadata):
        "knowledge",
        "limit",
    }
)


def _iso(value: object) -> str | None:
    """RubyLLM's ``2025-10-15 00:00:00 UTC`` as ISO 8601; ``None`` stays ``None``."""
    if value is None:
        return None
    text = str(value)
    try:
        parsed = datetime.strptime(text, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=timezone.utc)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            sys.exit(f"unexpected created_at format: {text!r}")
    return parsed.isoformat()


def _sorted(value: Any) -> Any:
    """Mappings with sorted keys, all the way down, for byte-stable output."""
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _unique(values: Sequence[Any] | None) -> list[str]:
    seen: dict[str, None] = {}
    for value in values or ():
        seen.setdefault(str(value), None)
    return list(seen)


def _metadata(raw: Mapping[str, Any], row: Mapping[str, Any], origin: str) -> dict[str, Any]:
    metadata = {k: v for k, v in (raw.get("metadata") or {}).items() if k in KEEP_METADATA}
    # ``knowledge`` carries month-only cutoffs ("2025-05") that RubyLLM leaves out of
    # ``knowledge_cutoff``; keep it only then.
    if metadata.get("knowledge") in (None, row["knowledge_cutoff"]):
        metadata.pop("knowledge", None)
    # ``limit`` repeats context_window/max_output_tokens; keep it only when it says more
    # (an input limit) or disagrees.
    limit = metadata.get("limit")
    if isinstance(limit, Mapping) and (
        set(limit) <= {"context", "output"}
        and limit.get("context") in (None, row["context_window"])
        and limit.get("output") in (None, row["max_output_tokens"])
    ):
        metadata.pop("limit")
    if origin != row["provider"]:
        metadata["source_provider"] = origin
    return metadata


def _model(raw: Mapping[str, Any], provider: str) -> dict[str, Any]:
    modalities = raw.get("modalities") or {}
    row: dict[str, Any] = {
        "id": str(raw["id"]),
        "name": raw.get("name") or str(raw["id"]),
        "provider": provider,
        "family": raw.get("family"),
        "context_window": raw.get("context_window"),
        "max_output_tokens": raw.get("max_output_tokens"),
        "knowledge_cutoff": raw.get("knowledge_cutoff"),
        "modalities": {
            "input": _unique(modalities.get("input")),
            "output": _unique(modalities.get("output")),
        },
        "capabilities": sorted(_unique(raw.get("capabilities"))),
        "pricing": _sorted(raw.get("pricing") or {}),
        "created_at": _iso(raw.get("created_at")),
    }
    row["metadata"] = _sorted(_metadata(raw, row, str(raw["provider"])))
    return row


def build(
    raw_models: Sequence[Mapping[str, Any]], raw_aliases: Mapping[str, Any]
) -> dict[str, Any]:
    """The registry document for RubyLLM's parsed ``models.json`` and ``aliases.json``."""
    models: dict[tuple[str, str], dict[str, Any]] = {}
    for raw in raw_models:
        origin = str(raw["provider"])
        provider = RENAMED.get(origin, origin)
        if provider not in SUPPORTED:
            continue
        key = (provider, str(raw["id"]))
        # A provider's own row wins over a renamed one with the same id (none today).
        if key in models and origin in RENAMED:
            continue
        models[key] = _model(raw, provider)

    aliases: dict[str, dict[str, str]] = {}
    for alias in sorted(raw_aliases):
        kept: dict[str, str] = {}
        for origin, target in sorted(raw_aliases[alias].items()):
            provider = RENAMED.get(origin, origin)
            if provider not in SUPPORTED:
                continue
            if (provider, target) not in models:
                print(
                    f"dropping alias {alias!r}: {provider} has no model {target!r}", file=sys.stderr
                )
                continue
            kept[provider] = str(target)
        if kept:
            aliases[alias] = kept
    return {
        "source": SOURCE,
        "license": LICENSE,
        "models": [models[key] for key in sorted(models)],
        "aliases": aliases,
    }


def render(document: Mapping[str, Any]) -> str:
    """Compact JSON with one model and one alias per line, so diffs show what changed."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    models = [dump(m) for m in document["models"]]
    aliases = [f"{dump(name)}:{dump(t)}" for name, t in document["aliases"].items()]
    return (
        "{"
        f'"source":{dump(document["source"])},\n'
        f'"license":{dump(document["license"])},\n'
        '"models":[\n' + ",\n".join(models) + "\n],\n"
        '"aliases":{\n' + ",\n".join(aliases) + "\n}}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description="Build sa_llm's bundled model registry.")
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS, help="RubyLLM models.json")
    parser.add_argument(
        "--aliases", type=Path, default=DEFAULT_ALIASES, help="RubyLLM aliases.json"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="file to write")
    parser.add_argument(
        "--check", action="store_true", help="only compare with --out; exit 1 if it differs"
    )
    args = parser.parse_args(argv)

    document = build(
        json.loads(args.models.read_text(encoding="utf-8")),
        json.loads(args.aliases.read_text(encoding="utf-8")),
    )
    text = render(document)
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out} is out of date; run scripts/build_registry.py", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    counts: dict[str, int] = {}
    for model in document["models"]:
        counts[model["provider"]] = counts.get(model["provider"], 0) + 1
    summary = ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes): {len(document['models'])} models "
        f"({summary}), {len(document['aliases'])} aliases"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
