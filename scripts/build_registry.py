"""Build ``src/sa_llm/_data/models.json`` from RubyLLM's registry data (facts, MIT licence).

    python3 scripts/build_registry.py [--models PATH] [--aliases PATH] [--out PATH]

Keeps the providers sa_llm supports (RubyLLM's ``ollama_cloud`` rows become ``ollama``), drops
bulky metadata, and writes one model per line, sorted, so diffs stay readable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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
KEEP_METADATA = (
    "source",
    "provider_id",
    "open_weights",
    "attachment",
    "temperature",
    "reasoning_options",
    "description",
    "inference_types",
    "converse",
    "supported_parameters",
)


def build(models_path: Path, aliases_path: Path) -> dict[str, object]:
    models = []
    for raw in json.loads(models_path.read_text(encoding="utf-8")):
        provider = RENAMED.get(raw["provider"], raw["provider"])
        if provider not in SUPPORTED:
            continue
        metadata = {k: v for k, v in (raw.get("metadata") or {}).items() if k in KEEP_METADATA}
        if isinstance(metadata.get("description"), str):
            metadata["description"] = metadata["description"][:300]
        models.append(
            {
                "id": raw["id"],
                "name": raw.get("name") or raw["id"],
                "provider": provider,
                "family": raw.get("family"),
                "created_at": raw.get("created_at"),
                "context_window": raw.get("context_window"),
                "max_output_tokens": raw.get("max_output_tokens"),
                "knowledge_cutoff": raw.get("knowledge_cutoff"),
                "modalities": raw.get("modalities") or {"input": [], "output": []},
                "capabilities": sorted(raw.get("capabilities") or []),
                "pricing": raw.get("pricing") or {},
                "metadata": metadata,
            }
        )
    models.sort(key=lambda m: (str(m["provider"]), str(m["id"])))
    aliases: dict[str, dict[str, str]] = {}
    for alias, targets in sorted(json.loads(aliases_path.read_text(encoding="utf-8")).items()):
        kept = {RENAMED.get(p, p): t for p, t in targets.items() if RENAMED.get(p, p) in SUPPORTED}
        if kept:
            aliases[alias] = dict(sorted(kept.items()))
    return {
        "source": "RubyLLM models.json and aliases.json",
        "license": "MIT, Copyright (c) 2025 Carmine Paolino (RubyLLM)",
        "models": models,
        "aliases": aliases,
    }


def render(data: dict[str, object]) -> str:
    compact = {"separators": (",", ":"), "ensure_ascii": False, "sort_keys": True}
    lines = [
        "{",
        f'"source":{json.dumps(data["source"])},',
        f'"license":{json.dumps(data["license"])},',
        '"models":[',
    ]
    models = data["models"]
    assert isinstance(models, list)
    lines.extend(
        json.dumps(m, **compact) + ("," if i < len(models) - 1 else "")
        for i, m in enumerate(models)
    )  # type: ignore[arg-type]
    lines.append("],")
    lines.append(f'"aliases":{json.dumps(data["aliases"], **compact)}')  # type: ignore[arg-type]
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    reference = ROOT.parent / "shared" / "reference"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=reference / "ruby_llm_models.json")
    parser.add_argument("--aliases", type=Path, default=reference / "ruby_llm_aliases.json")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src" / "sa_llm" / "_data" / "models.json"
    )
    args = parser.parse_args()
    data = build(args.models, args.aliases)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(data), encoding="utf-8")
    print(f"wrote {len(data['models'])} models to {args.out}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
