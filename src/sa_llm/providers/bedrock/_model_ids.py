"""Bedrock model ids: inference-profile prefixes and which API serves a model.

**Inference profiles.** Newer models (Claude 4.x, Nova 2, ...) cannot be called by their base
id in a region ("on-demand"); they are called through a cross-region inference profile whose
id is the base id with a geography prefix: ``us.anthropic.claude-haiku-4-5-20251001-v1:0``.
:func:`inference_profile_id` adds the prefix for the configured region when

1. the id has no prefix yet and is no ARN (those are used exactly as given), and
2. the registry does not list the base model as on-demand (``inference_types`` with
   ``ON_DEMAND``), and
3. the registry lists the prefixed profile for one of the region's geographies, or lists the
   base model as profile-only (``inference_types == ["INFERENCE_PROFILE"]``).

Geographies by region: ``us-gov-*`` -> ``us-gov``; ``us-*`` -> ``us``; ``eu-*`` -> ``eu``;
Tokyo and Osaka -> ``jp`` then ``apac``; Sydney and Melbourne -> ``au`` then ``apac``; other
``ap-*`` and ``me-*`` -> ``apac``. Other regions get no prefix, and ``global.`` profiles are
only used when asked for by id, since they may route a request to any region.

**APIs.** Most models speak Converse. Bedrock's OpenAI-compatible "Mantle" endpoint serves the
models the registry marks ``endpoint: mantle`` (open-weight models such as Mistral's Voxtral,
OpenAI's gpt-oss): gpt-oss and Gemma 4 through ``/v1/responses``, the others through
``/v1/chat/completions``. Dated, versioned (``-v1:0``) and prefixed ids stay on Converse; an
unversioned ``vendor.model`` id the registry does not know goes to Mantle's Chat Completions;
unversioned Claude ids stay on Converse (Mantle's Anthropic Messages API is not supported).

Example::

    inference_profile_id("anthropic.claude-haiku-4-5-20251001-v1:0", "eu-west-1", lookup)
    # 'eu.anthropic.claude-haiku-4-5-20251001-v1:0'
    api_for("mistral.voxtral-mini-3b-2507", lookup)   # 'chat_completions'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

__all__ = ["Api", "Lookup", "api_for", "inference_profile_id", "is_qualified", "region_groups"]

#: ``lookup(model_id)`` -> the registry metadata of that Bedrock model, ``None`` if unknown.
Lookup = Callable[[str], Mapping[str, Any] | None]
Api = Literal["converse", "responses", "chat_completions"]

_PREFIXED = re.compile(r"^(?:us|us-gov|eu|apac|jp|au|ca|global)\.")
_VERSIONED = re.compile(r"-v\d+(?::\d+)?$|:\d+$|-\d{8}(?:-|$)")
_RESPONSES_FAMILIES = ("openai.gpt-oss", "google.gemma-4")


def is_qualified(model_id: str) -> bool:
    """Whether the id already names an inference profile or is an ARN (used as given)."""
    return model_id.startswith("arn:") or _PREFIXED.match(model_id) is not None


def region_groups(region: str) -> tuple[str, ...]:
    """The inference-profile geographies of a region, the most specific first."""
    if region.startswith("us-gov-"):
        return ("us-gov",)
    if region.startswith("us-"):
        return ("us",)
    if region.startswith("eu-"):
        return ("eu",)
    if region in ("ap-northeast-1", "ap-northeast-3"):
        return ("jp", "apac")
    if region in ("ap-southeast-2", "ap-southeast-4"):
        return ("au", "apac")
    if region.startswith(("ap-", "me-")):
        return ("apac",)
    return ()


def _types(metadata: Mapping[str, Any] | None) -> tuple[str, ...]:
    value = metadata.get("inference_types") if metadata else None
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def inference_profile_id(model_id: str, region: str, lookup: Lookup) -> str:
    """The id to call ``model_id`` with from ``region`` (see the module docstring)."""
    if is_qualified(model_id):
        return model_id
    groups = region_groups(region)
    if not groups:
        return model_id
    types = _types(lookup(model_id))
    if "ON_DEMAND" in types:
        return model_id
    for group in groups:
        if lookup(f"{group}.{model_id}") is not None:
            return f"{group}.{model_id}"
    if "INFERENCE_PROFILE" in types:
        return f"{groups[0]}.{model_id}"
    return model_id


def api_for(model_id: str, lookup: Lookup) -> Api:
    """Which API serves ``model_id``: Converse, or Mantle's Responses or Chat Completions."""
    if is_qualified(model_id) or _VERSIONED.search(model_id):
        return "converse"
    metadata = lookup(model_id)
    if metadata is None:
        unversioned_vendor_id = "." in model_id and not model_id.startswith("anthropic.")
        return "chat_completions" if unversioned_vendor_id else "converse"
    if metadata.get("endpoint") != "mantle" or model_id.startswith("anthropic."):
        return "converse"
    if model_id.startswith(_RESPONSES_FAMILIES):
        return "responses"
    return "chat_completions"
