"""AWS Bedrock: the Converse API, signed with SigV4, streamed as a binary AWS event stream.

Configure a region and credentials (or let the standard AWS chain find them, with the
``bedrock`` extra installed), then route a model through ``provider="bedrock"``::

    sa_llm.configure(bedrock_region="us-east-1",
                     bedrock_access_key_id="AKIA...", bedrock_secret_access_key="...")
    chat = sa_llm.chat("claude-haiku-4-5", provider="bedrock")
    chat.model_id                    # 'us.anthropic.claude-haiku-4-5-20251001-v1:0'
    chat.ask("Hello")

The pieces: :mod:`._converse` (the Converse codec), :mod:`._eventstream` (the binary stream
decoder), :mod:`._sigv4` (request signing), :mod:`._credentials` (where region and keys come
from), :mod:`._model_ids` (inference-profile prefixes, and which API serves a model) and
:mod:`.mantle` (Bedrock's OpenAI-compatible endpoint, chosen for the models it serves).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from sa_llm.config import Config
from sa_llm.errors import ModelNotFoundError
from sa_llm.providers import register_provider
from sa_llm.providers.base import HttpRequest, HttpResponse, Provider
from sa_llm.providers.bedrock._auth import AWSProvider
from sa_llm.providers.bedrock._converse import ConverseCodec, ConverseStreamParser
from sa_llm.providers.bedrock._credentials import MissingAWSConfigurationError, resolve_region
from sa_llm.providers.bedrock._model_ids import Lookup, api_for, inference_profile_id

if TYPE_CHECKING:
    from sa_llm.registry import ModelInfo, Registry

__all__ = ["Bedrock", "ConverseStreamParser", "MissingAWSConfigurationError", "registry_lookup"]


def registry_lookup(models: Registry | None = None) -> Lookup:
    """A :data:`~._model_ids.Lookup` over ``models`` (default: the global model registry)."""

    def lookup(model_id: str) -> Mapping[str, Any] | None:
        # Imported here: the registry sits above the provider layer and loads lazily.
        from sa_llm import registry as registry_module

        registry = models if models is not None else registry_module.default_registry
        if model_id not in registry:
            return None
        try:
            info = registry.find(model_id, "bedrock")
        except ModelNotFoundError:
            return None
        # An alias may route elsewhere; only the entry with exactly this id describes it.
        return info.metadata if info.id == model_id else None

    return lookup


@register_provider
class Bedrock(AWSProvider, ConverseCodec):
    """Bedrock's Converse and ConverseStream APIs (``bedrock-runtime.{region}.amazonaws.com``).

    ``bedrock_base_url`` replaces the runtime endpoint (a VPC endpoint, a proxy); requests are
    still signed for the configured region.
    """

    name: ClassVar[str] = "bedrock"

    @classmethod
    def for_model(cls, config: Config, model_id: str | None) -> Provider:
        """Converse, or the Mantle endpoint for the models it serves (see :mod:`._model_ids`)."""
        api = api_for(model_id, registry_lookup()) if model_id else "converse"
        if api == "converse":
            return cls(config)
        from sa_llm.providers.bedrock.mantle import MantleChatCompletions, MantleResponses

        if api == "responses":
            return MantleResponses(config)
        return MantleChatCompletions(config)

    @classmethod
    def preferred_model(cls, info: ModelInfo, models: Registry, config: Config) -> ModelInfo:
        """The inference-profile entry of ``info`` for the configured region, when the model is
        called through one (``anthropic.claude-...`` -> ``us.anthropic.claude-...``)."""
        try:
            region = resolve_region(config)
        except MissingAWSConfigurationError:
            return info
        target = inference_profile_id(info.id, region, registry_lookup(models))
        if target == info.id:
            return info
        try:
            return models.find(target, "bedrock")
        except ModelNotFoundError:
            return info  # a profile the registry does not list: build_request adds the prefix

    @property
    def base_url(self) -> str:
        """``bedrock_base_url``, else the runtime endpoint of the region."""
        return self.config.base_url(
            self.name, f"https://bedrock-runtime.{self.region}.amazonaws.com"
        )

    def request_model_id(self, model: str) -> str:
        """``model``, with the region's inference-profile prefix when it needs one."""
        return inference_profile_id(model, self.region, registry_lookup())

    def finish_request(self, http: HttpRequest) -> HttpRequest:
        return self.sign(http)

    # -- model listing (registry refresh) --

    def list_models_request(self) -> HttpRequest:
        """``GET https://bedrock.{region}.amazonaws.com/foundation-models``, signed."""
        url = f"https://bedrock.{self.region}.amazonaws.com/foundation-models"
        return self.sign(HttpRequest("GET", url, {"accept": "application/json"}))

    def parse_model_list(self, response: HttpResponse) -> list[dict[str, Any]]:
        """``[{"id", "name", "created_at"}]`` from ``modelSummaries``."""
        body = self.parse_json(response)
        summaries = body.get("modelSummaries") if isinstance(body, Mapping) else None
        if not isinstance(summaries, list):
            raise self.malformed("the model list has no 'modelSummaries' array", body)
        return [
            {
                "id": str(item["modelId"]),
                "name": str(item.get("modelName") or item["modelId"]),
                "created_at": None,
            }
            for item in summaries
            if isinstance(item, Mapping) and item.get("modelId")
        ]
