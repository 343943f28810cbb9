"""The one pricing table: USD per million tokens for each model, and the cost of a call.

Rates are Anthropic's published list prices (5-minute cache writes). Update this table,
and only this table, when prices change. `register_price` adds a model served by another
Anthropic-compatible endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.llm.types import Usage


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_write: float
    cache_read: float
    # Some models bill every token of a request at higher rates once its prompt passes a size.
    long_prompt_threshold: int | None = None
    long_prompt: "Price | None" = None


class UnknownModel(ValueError):
    pass


def _p(i: float, o: float, w: float, r: float, **kw) -> Price:
    return Price(i, o, w, r, **kw)


FREE = _p(0, 0, 0, 0)

PRICES: dict[str, Price] = {
    "claude-fable-5-1": _p(10, 50, 12.5, 0.25),
    "claude-mythos-5-1": _p(10, 50, 12.5, 0.25),
    "claude-fable-5": _p(10, 50, 12.5, 1.0),
    "claude-mythos-5": _p(10, 50, 12.5, 1.0),
    "claude-opus-5-5": _p(4, 20, 5, 0.20),
    "claude-opus-5": _p(5, 25, 6.25, 0.50),
    "claude-opus-4-8": _p(5, 25, 6.25, 0.50),
    "claude-opus-4-7": _p(5, 25, 6.25, 0.50),
    "claude-opus-4-6": _p(5, 25, 6.25, 0.50),
    "claude-opus-4-5": _p(5, 25, 6.25, 0.50),
    "claude-opus-4-1": _p(15, 75, 18.75, 1.50),
    "claude-opus-4": _p(15, 75, 18.75, 1.50),
    "claude-sonnet-5-5": _p(2, 10, 2.5, 0.10),
    "claude-sonnet-5": _p(2, 10, 2.5, 0.20),
    "claude-sonnet-4-6": _p(3, 15, 3.75, 0.30),
    "claude-sonnet-4-5": _p(3, 15, 3.75, 0.30),
    "claude-sonnet-4": _p(3, 15, 3.75, 0.30),
    "claude-haiku-5-5": _p(0.10, 0.50, 0.125, 0.01, long_prompt_threshold=100_000,
                           long_prompt=_p(0.50, 2.50, 0.625, 0.05)),
    "claude-haiku-4-5": _p(1, 5, 1.25, 0.10),
    "claude-3-5-haiku": _p(0.80, 4, 1, 0.08),
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


def _lookup(model: str) -> Price | None:
    name = resolve_model(model)
    if name in PRICES:
        return PRICES[name]
    family = name.split(":", 1)[0]  # "replay:claude-sonnet-4-5", "sleep:250"
    if family in ("replay", "sleep"):
        return PRICES[family]
    dated = _DATED.match(name)  # "claude-sonnet-4-5-20250929" prices as "claude-sonnet-4-5"
    if dated and dated.group("base") in PRICES:
        return PRICES[dated.group("base")]
    return None


def is_priced(model: str) -> bool:
    return _lookup(model) is not None


def price_for(model: str) -> Price:
    price = _lookup(model)
    if price is None:
        known = ", ".join(sorted([*PRICES, *ALIASES]))
        raise UnknownModel(
            f"no price for model {model!r}: use one of {known}, or add it with "
            "shared.llm.pricing.register_price(model, Price(input, output, cache_write, cache_read))"
        )
    return price


def cost_usd(model: str, usage: Usage) -> float:
    price = price_for(model)
    if price.long_prompt and price.long_prompt_threshold and usage.prompt_tokens > price.long_prompt_threshold:
        price = price.long_prompt
    total = (usage.input_tokens * price.input + usage.output_tokens * price.output
             + usage.cache_write_tokens * price.cache_write + usage.cache_read_tokens * price.cache_read)
    return round(total / 1_000_000, 8)
