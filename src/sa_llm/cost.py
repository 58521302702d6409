"""What tokens cost: prices per million tokens, and the cost of a usage as exact decimals.

Prices come from the model registry (:mod:`sa_llm.registry`: the bundled data, or the
``pricing`` column of your ``@acts_as_model`` rows), or from pydantic's ``genai-prices`` data
when it is installed and asked for (``price_source="genai-prices"``, ``pip install
"sa-llm[prices]"``). Token counts follow the library's convention: ``input`` includes the
tokens read from and written to the prompt cache, which also have their own counts, and
``output`` includes the reasoning tokens. So::

    cost = (input - cache_read - cache_write) x input price
         + cache_read x cache-read price
         + cache_write x cache-write price
         + (output - reasoning) x output price + reasoning x reasoning price

with every price per million tokens. A cache or reasoning count the provider did not report
counts as zero; a cache price the registry lacks is the input price; reasoning without a price
of its own is output. Above a model's ``long_context_threshold`` of input tokens, its
long-context prices apply. Amounts are :class:`~decimal.Decimal` rounded to 10 places, the
scale of the ledger's columns.

Example::

    from sa_llm import registry
    from sa_llm.cost import Prices
    from sa_llm.types import Tokens, _add_optional

    prices = Prices.of(registry.find("gpt-4.1-nano"))
    cost = prices.cost_of(Tokens(input=1_000, output=200, cached=400))
    print(cost.total, cost.currency)   # 0.0001500000 USD
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from sa_llm.errors import ConfigurationError
from sa_llm.types import Tokens, _add_optional

if TYPE_CHECKING:
    from sa_llm.registry import ModelInfo

__all__ = ["Cost", "GenaiPrices", "PriceSource", "Prices", "Usage", "prices_for"]

PriceSource = Literal["registry", "genai-prices"]
"""Where prices come from: the registry's data, or the ``genai-prices`` package."""

_MILLION = Decimal(1_000_000)
#: The scale of the ledger's cost columns (``Numeric(18, 10)``).
_PLACES = Decimal("1e-10")


def _decimal(value: Any) -> Decimal | None:
    """A price as a Decimal (through ``str``: 0.1 stays 0.1, not its binary float)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    return None


def _round(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(_PLACES)


@dataclass(frozen=True, slots=True)
class Cost:
    """The cost of some usage, by part, in ``currency``.

    Attributes:
        input: the uncached input tokens (``None``: input count unknown, or no price).
        output: the output tokens (without reasoning when that is priced on its own).
        cache_read: the input tokens read from the prompt cache (``None``: not reported).
        cache_write: the input tokens written to the prompt cache (``None``: not reported).
        reasoning: the reasoning tokens, when the model prices them on their own.
        total: the sum of the parts that are known.
        currency: ISO 4217 code (``USD``).
    """

    input: Decimal | None
    output: Decimal | None
    cache_read: Decimal | None
    cache_write: Decimal | None
    reasoning: Decimal | None
    total: Decimal
    currency: str = "USD"

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        if other.currency != self.currency:
            raise ValueError(f"Cannot add {self.currency} and {other.currency} costs.")
        return Cost(
            input=_add_optional(self.input, other.input),
            output=_add_optional(self.output, other.output),
            cache_read=_add_optional(self.cache_read, other.cache_read),
            cache_write=_add_optional(self.cache_write, other.cache_write),
            reasoning=_add_optional(self.reasoning, other.reasoning),
            total=self.total + other.total,
            currency=self.currency,
        )

    def as_columns(self) -> dict[str, Any]:
        """The ledger's cost columns (``input_cost``, ..., ``total_cost``, ``currency``)."""
        values: dict[str, Any] = {
            f"{f.name}_cost": getattr(self, f.name) for f in fields(self) if f.name != "currency"
        }
        values["currency"] = self.currency
        return values


@dataclass(frozen=True, slots=True)
class Usage:
    """What a chat's attempts add up to (``chat.usage()``).

    Attributes:
        attempts: physical provider attempts (retries, failures and cancels included).
        failed: attempts whose outcome is not ``ok``.
        tokens: the sums of each count over the attempts that reported it (``None``: no
            attempt did).
        cost: the sum of the frozen costs, by part (``None``: no attempt has a cost).
    """

    attempts: int
    failed: int
    tokens: Tokens
    cost: Cost | None


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices per million tokens of one model, from the registry's ``pricing`` data.

    Attributes:
        input: uncached input tokens.
        output: output tokens.
        cache_read: input tokens read from the prompt cache (``None``: the input price).
        cache_write: input tokens written to the prompt cache (``None``: the input price).
        reasoning: reasoning tokens (``None``: they cost what output costs).
        currency: ISO 4217 code; the registry's prices are in USD.
        long_context_threshold: input tokens above which ``long_context`` applies.
        long_context: the prices above the threshold.
    """

    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None
    currency: str = "USD"
    long_context_threshold: int | None = None
    long_context: Prices | None = None

    @classmethod
    def from_pricing(cls, pricing: Mapping[str, Any] | None) -> Prices | None:
        """Prices from a registry ``pricing`` mapping (``{"text_tokens": {"standard": ...}}``);
        ``None`` when it prices neither input nor output."""
        text = (pricing or {}).get("text_tokens")
        if not isinstance(text, Mapping):
            return None
        standard = _tier(text.get("standard"))
        if standard is None:
            return None
        long_context = _tier(text.get("long_context"))
        threshold = text.get("long_context_threshold")
        if long_context is not None and isinstance(threshold, int) and threshold > 0:
            return replace(standard, long_context_threshold=threshold, long_context=long_context)
        return standard

    @classmethod
    def of(cls, model: ModelInfo) -> Prices | None:
        """The registry prices of ``model`` (a :class:`~sa_llm.registry.ModelInfo`)."""
        return cls.from_pricing(model.pricing)

    def tier(self, tokens: Tokens) -> Prices:
        """The prices that apply to ``tokens``: long-context ones above the threshold."""
        threshold = self.long_context_threshold
        above = threshold is not None and tokens.input is not None and tokens.input > threshold
        return self.long_context if above and self.long_context is not None else self

    def cost_of(self, tokens: Tokens, at: datetime | None = None) -> Cost | None:
        """The cost of ``tokens`` (see the module docstring for the formula); ``None`` when
        neither the input nor the output count is known. ``at`` is ignored (the registry keeps
        one price per model)."""
        prices = self.tier(tokens)
        cached, written = tokens.cached, tokens.cache_creation
        cache_read_price = prices.cache_read if prices.cache_read is not None else prices.input
        cache_write_price = prices.cache_write if prices.cache_write is not None else prices.input
        input_cost = cache_read_cost = cache_write_cost = None
        if tokens.input is not None and prices.input is not None:
            uncached = max(0, tokens.input - (cached or 0) - (written or 0))
            input_cost = uncached * prices.input / _MILLION
        if cached is not None and cache_read_price is not None:
            cache_read_cost = cached * cache_read_price / _MILLION
        if written is not None and cache_write_price is not None:
            cache_write_cost = written * cache_write_price / _MILLION
        output_cost = reasoning_cost = None
        if tokens.output is not None and prices.output is not None:
            output = tokens.output
            if prices.reasoning is not None and tokens.reasoning is not None:
                reasoning_cost = tokens.reasoning * prices.reasoning / _MILLION
                output = max(0, output - tokens.reasoning)
            output_cost = output * prices.output / _MILLION
        parts = [input_cost, output_cost, cache_read_cost, cache_write_cost, reasoning_cost]
        known = [part.quantize(_PLACES) for part in parts if part is not None]
        if (tokens.input is None and tokens.output is None) or not known:
            return None
        return Cost(
            input=_round(input_cost),
            output=_round(output_cost),
            cache_read=_round(cache_read_cost),
            cache_write=_round(cache_write_cost),
            reasoning=_round(reasoning_cost),
            total=sum(known, Decimal(0)).quantize(_PLACES),
            currency=prices.currency,
        )


def _tier(data: Any) -> Prices | None:
    if not isinstance(data, Mapping):
        return None
    prices = Prices(
        input=_decimal(data.get("input_per_million")),
        output=_decimal(data.get("output_per_million")),
        cache_read=_decimal(data.get("cache_read_input_per_million")),
        cache_write=_decimal(data.get("cache_write_input_per_million")),
        reasoning=_decimal(data.get("reasoning_output_per_million")),
    )
    return None if prices.input is None and prices.output is None else prices


@dataclass(frozen=True, slots=True)
class GenaiPrices:
    """Prices from the ``genai-prices`` package for one provider and model.

    Its data knows when each price was in force, so :meth:`cost_of` prices an attempt at the
    time it ran. It reports input (cache reads and writes included) and output; the other parts
    of the :class:`Cost` are ``None``.
    """

    provider: str
    model: str

    def cost_of(self, tokens: Tokens, at: datetime | None = None) -> Cost | None:
        """The cost of ``tokens`` at ``at`` (default: now); ``None`` when genai-prices does not
        know the model or neither count is known."""
        from sa_llm._optional import require

        genai_prices = require(
            "genai_prices", extra="prices", feature="price_source='genai-prices'"
        )
        if tokens.input is None and tokens.output is None:
            return None
        usage = genai_prices.Usage(
            input_tokens=tokens.input,
            output_tokens=tokens.output,
            cache_read_tokens=tokens.cached,
            cache_write_tokens=tokens.cache_creation,
        )
        try:
            calculated = genai_prices.calc_price(
                usage,
                self.model,
                provider_id=_GENAI_PROVIDERS.get(self.provider, self.provider),
                genai_request_timestamp=at,
            )
        except LookupError:  # genai-prices raises LookupError for an unknown model or provider
            return None
        return Cost(
            input=_round(_decimal(calculated.input_price)),
            output=_round(_decimal(calculated.output_price)),
            cache_read=None,
            cache_write=None,
            reasoning=None,
            total=Decimal(calculated.total_price).quantize(_PLACES),
            currency="USD",
        )


# sa_llm's provider names where genai-prices names the provider otherwise.
_GENAI_PROVIDERS = {"gemini": "google", "bedrock": "aws", "xai": "x-ai"}


def prices_for(model: ModelInfo, source: PriceSource = "registry") -> Prices | GenaiPrices | None:
    """The prices of ``model`` from ``source``; ``None`` when the registry has none.

    Raises:
        MissingDependencyError: ``genai-prices`` asked for but not installed.
        ConfigurationError: an unknown source.
    """
    if source == "registry":
        return Prices.of(model)
    if source == "genai-prices":
        from sa_llm._optional import require

        # Fail now, not at the first attempt.
        require("genai_prices", extra="prices", feature="price_source='genai-prices'")
        return GenaiPrices(model.provider, model.id)
    raise ConfigurationError(f"price_source must be 'registry' or 'genai-prices', not {source!r}.")
