"""The one pricing table: USD per million tokens for each model, and the exact cost of a call.

Rates are Anthropic's published list prices (5-minute cache writes); docs/costs.md names the
source and the date they were read. Money is `Decimal`: a call's cost is tokens × rate / 10⁶,
exact. `.yokeflow.yaml` `cost.prices` overrides a rate or adds a model (`PriceTable.with_overrides`);
`register_price` does the same for this process.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from shared.llm.types import Usage

MILLION = Decimal(1_000_000)
PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")


def _dec(value: Any) -> Decimal:
    # str() first: Decimal(0.1) is 0.1000000000000000055…, Decimal("0.1") is 0.1
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    cache_write: Decimal
    cache_read: Decimal
    # Some models bill every token of a request at higher rates once its prompt passes a size.
    long_prompt_threshold: int | None = None
    long_prompt: "Price | None" = None

    def __post_init__(self) -> None:
        for name in PRICE_FIELDS:
            object.__setattr__(self, name, _dec(getattr(self, name)))

    def for_prompt(self, prompt_tokens: int) -> "Price":
        """The rates that apply to a request whose prompt has this many tokens."""
        if self.long_prompt and self.long_prompt_threshold and prompt_tokens > self.long_prompt_threshold:
            return self.long_prompt
        return self


class UnknownModel(ValueError):
    pass


class PriceError(ValueError):
    """A `cost.prices` entry that cannot be used; the message names the key."""


def _p(i: str, o: str, w: str, r: str, **kw) -> Price:
    return Price(Decimal(i), Decimal(o), Decimal(w), Decimal(r), **kw)


FREE = _p("0", "0", "0", "0")

PRICES: dict[str, Price] = {
    # Fable/Mythos 5.2: no list price published when this table was written; priced as 5.1 (docs/costs.md).
    "claude-fable-5-2": _p("10", "50", "12.5", "0.25"),
    "claude-mythos-5-2": _p("10", "50", "12.5", "0.25"),
    "claude-fable-5-1": _p("10", "50", "12.5", "0.25"),
    "claude-mythos-5-1": _p("10", "50", "12.5", "0.25"),
    "claude-fable-5": _p("10", "50", "12.5", "1.0"),
    "claude-mythos-5": _p("10", "50", "12.5", "1.0"),
    "claude-mythos-preview": _p("25", "125", "31.25", "2.5"),
    "claude-opus-5-5": _p("4", "20", "5", "0.20"),
    "claude-opus-5": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-8": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-7": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-6": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-5": _p("5", "25", "6.25", "0.50"),
    "claude-opus-4-1": _p("15", "75", "18.75", "1.50"),
    "claude-opus-4": _p("15", "75", "18.75", "1.50"),
    "claude-sonnet-5-5": _p("2", "10", "2.5", "0.10"),
    "claude-sonnet-5": _p("2", "10", "2.5", "0.20"),
    "claude-sonnet-4-6": _p("3", "15", "3.75", "0.30"),
    "claude-sonnet-4-5": _p("3", "15", "3.75", "0.30"),
    "claude-sonnet-4": _p("3", "15", "3.75", "0.30"),
    "claude-haiku-5-5": _p("0.10", "0.50", "0.125", "0.01", long_prompt_threshold=100_000,
                           long_prompt=_p("0.50", "2.50", "0.625", "0.05")),
    "claude-haiku-4-5": _p("1", "5", "1.25", "0.10"),
    "claude-3-5-haiku": _p("0.80", "4", "1", "0.08"),
    # Offline pseudo-models: replayed transcripts and benchmark sleeps cost nothing.
    "replay": FREE,
    "sleep": FREE,
}

ALIASES: dict[str, str] = {
    "opus": "claude-opus-5-5",
    "sonnet": "claude-sonnet-5-5",
    "haiku": "claude-haiku-5-5",
}

_DATED = re.compile(r"^(?P<base>.+?)(?:-\d{8}|-v\d+(?::\d+)?|\[1m\])+$")


def register_price(model: str, price: Price) -> None:
    """Price a model this table does not know (e.g. one served by a compatible endpoint)."""
    PRICES[model] = price


def resolve_model(model: str) -> str:
    """An alias ("opus", "sonnet", "haiku") becomes its full model id; anything else is kept."""
    return ALIASES.get(model.strip().lower(), model.strip())


def parse_price(entry: Any, where: str) -> Price:
    """A price from config: {input, output, cache_write, cache_read} USD per million tokens,
    optionally {long_prompt_threshold, long_prompt: {the same four}}."""
    if not isinstance(entry, Mapping):
        raise PriceError(f"{where}: expected a mapping with {', '.join(PRICE_FIELDS)} (USD per million tokens)")
    unknown = sorted(set(entry) - {*PRICE_FIELDS, "long_prompt_threshold", "long_prompt"})
    if unknown:
        raise PriceError(f"{where}.{unknown[0]}: unknown price field; use {', '.join(PRICE_FIELDS)}, "
                         "long_prompt_threshold, long_prompt")
    values = {}
    for name in PRICE_FIELDS:
        if name not in entry:
            raise PriceError(f"{where}.{name}: missing; a price needs {', '.join(PRICE_FIELDS)} "
                             "(USD per million tokens)")
        raw = entry[name]
        try:
            if isinstance(raw, bool):
                raise InvalidOperation
            value = _dec(raw)
        except (InvalidOperation, ValueError):
            raise PriceError(f"{where}.{name}: {raw!r} is not a number of USD per million tokens") from None
        if not value.is_finite() or value < 0:
            raise PriceError(f"{where}.{name}: must be a number of USD per million tokens, at least 0")
        values[name] = value
    threshold, long = entry.get("long_prompt_threshold"), entry.get("long_prompt")
    if (threshold is None) != (long is None):
        raise PriceError(f"{where}: long_prompt_threshold and long_prompt go together")
    if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1):
        raise PriceError(f"{where}.long_prompt_threshold: must be a whole number of prompt tokens, at least 1")
    return Price(**values, long_prompt_threshold=threshold,
                 long_prompt=parse_price(long, f"{where}.long_prompt") if long is not None else None)


class PriceTable:
    """The built-in table plus overrides: what a run prices its calls with."""

    def __init__(self, overrides: Mapping[str, Price] | None = None):
        self.overrides = dict(overrides or {})

    @classmethod
    def with_overrides(cls, prices: Mapping[str, Any] | None, where: str = "cost.prices") -> "PriceTable":
        """From `cost.prices` as written in `.yokeflow.yaml` (model id → price mapping)."""
        return cls({str(model): parse_price(entry, f"{where}.{model}") for model, entry in (prices or {}).items()})

    def lookup(self, model: str) -> Price | None:
        name = resolve_model(model)
        for table in (self.overrides, PRICES):
            if name in table:
                return table[name]
        family = name.split(":", 1)[0]  # "replay:claude-sonnet-4-5", "sleep:250"
        if family in ("replay", "sleep"):
            return PRICES[family]
        dated = _DATED.match(name)  # "claude-sonnet-4-5-20250929" prices as "claude-sonnet-4-5"
        if dated:
            for table in (self.overrides, PRICES):
                if dated.group("base") in table:
                    return table[dated.group("base")]
        return None

    def is_priced(self, model: str) -> bool:
        return self.lookup(model) is not None

    def price_for(self, model: str) -> Price:
        price = self.lookup(model)
        if price is None:
            raise UnknownModel(
                f"no price for model {model!r}: set cost.prices.{model} in .yokeflow.yaml "
                "(input, output, cache_write, cache_read in USD per million tokens) or use a model this "
                "table knows (docs/costs.md lists them)")
        return price

    def cost(self, model: str, usage: Usage) -> Decimal:
        """The exact cost of one call."""
        price = self.price_for(model).for_prompt(usage.prompt_tokens)
        return (usage.input_tokens * price.input + usage.output_tokens * price.output
                + usage.cache_write_tokens * price.cache_write + usage.cache_read_tokens * price.cache_read) / MILLION

    def worst_case(self, model: str, prompt_tokens: int, max_tokens: int) -> Decimal:
        """The most a call can cost: every prompt token at the dearest prompt rate (a cache write
        costs more than plain input), `max_tokens` of output."""
        price = self.price_for(model).for_prompt(prompt_tokens)
        dearest = max(price.input, price.cache_write, price.cache_read)
        return (prompt_tokens * dearest + max_tokens * price.output) / MILLION


DEFAULT = PriceTable()
CHARS_PER_TOKEN = 3  # fewer than real text averages: the estimate of a prompt's tokens errs high


def estimate_prompt_tokens(system: list[dict], messages: list[dict], tools: list[dict]) -> int:
    """The tokens a request will send, from its size (a reservation needs it before the call)."""
    size = len(json.dumps([system, messages, tools], ensure_ascii=False, default=str))
    return math.ceil(size / CHARS_PER_TOKEN)


def is_priced(model: str) -> bool:
    return DEFAULT.is_priced(model)


def price_for(model: str) -> Price:
    return DEFAULT.price_for(model)


def cost_decimal(model: str, usage: Usage) -> Decimal:
    return DEFAULT.cost(model, usage)


def cost_usd(model: str, usage: Usage) -> float:
    """The cost as a float, for displays and the float fields events keep (see docs/costs.md)."""
    return float(DEFAULT.cost(model, usage))


def usd(value: Decimal) -> str:
    """A Decimal amount as a plain decimal string ("0.0123", never "1.23E-2")."""
    text = format(value.normalize(), "f") if value else "0"
    return text
