"""The pricing table: cost per call from input, output and cache tokens."""

import pytest

from shared.llm import pricing
from shared.llm.types import Usage


def test_cost_counts_every_kind_of_token_at_its_own_rate():
    usage = Usage(input_tokens=1000, output_tokens=200, cache_write_tokens=5000, cache_read_tokens=10_000)
    # sonnet 4.5: $3 in, $15 out, $3.75 cache write, $0.30 cache read per million tokens
    expected = (1000 * 3 + 200 * 15 + 5000 * 3.75 + 10_000 * 0.30) / 1_000_000
    assert pricing.cost_usd("claude-sonnet-4-5", usage) == pytest.approx(expected)


def test_dated_model_ids_price_as_their_family():
    usage = Usage(input_tokens=1_000_000)
    assert pricing.cost_usd("claude-sonnet-4-5-20250929", usage) == pytest.approx(3.0)
    assert pricing.cost_usd("claude-haiku-4-5-20251001", usage) == pytest.approx(1.0)


def test_aliases_name_full_model_ids_that_have_prices():
    for alias in ("opus", "sonnet", "haiku"):
        full = pricing.resolve_model(alias)
        assert full.startswith(f"claude-{alias}-")
        assert pricing.is_priced(full)
    assert pricing.price_for("opus").output > pricing.price_for("sonnet").output > pricing.price_for("haiku").output


def test_offline_pseudo_models_are_free():
    usage = Usage(input_tokens=10**6, output_tokens=10**6, cache_read_tokens=10**6, cache_write_tokens=10**6)
    for model in ("replay", "replay:claude-opus-4-6", "sleep", "sleep:250"):
        assert pricing.cost_usd(model, usage) == 0


def test_long_prompts_switch_to_the_long_prompt_rates():
    short = Usage(input_tokens=100_000, output_tokens=1000)
    long = Usage(input_tokens=60_000, cache_read_tokens=50_000, output_tokens=1000)
    assert pricing.cost_usd("claude-haiku-5-5", short) == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert pricing.cost_usd("claude-haiku-5-5", long) == pytest.approx((60_000 * 0.5 + 50_000 * 0.05 + 1000 * 2.5) / 1e6)


def test_unknown_model_names_the_model_and_the_fix():
    with pytest.raises(pricing.UnknownModel) as err:
        pricing.cost_usd("gpt-imaginary", Usage(input_tokens=1))
    assert "gpt-imaginary" in str(err.value) and "cost.prices.gpt-imaginary" in str(err.value)


def test_registered_price_is_used():
    pricing.register_price("local-compatible-model", pricing.Price(1, 2, 0, 0))
    try:
        assert pricing.cost_usd("local-compatible-model", Usage(input_tokens=10**6, output_tokens=10**6)) == 3
    finally:
        pricing.PRICES.pop("local-compatible-model")


def test_costs_are_exact_decimals():
    from decimal import Decimal

    usage = Usage(input_tokens=1234, output_tokens=567, cache_write_tokens=8901, cache_read_tokens=23456)
    # sonnet 4.6: 3 / 15 / 3.75 / 0.30 per million, exact to the last digit
    assert pricing.cost_decimal("claude-sonnet-4-6", usage) == Decimal("0.05262255")
    assert pricing.usd(Decimal("0.0000001")) == "0.0000001" and pricing.usd(Decimal(0)) == "0"


def test_every_model_the_installed_sdk_lists_has_a_price():
    import typing

    from anthropic.types import Model

    literal = next(a for a in typing.get_args(Model) if typing.get_origin(a) is typing.Literal)
    unpriced = [m for m in typing.get_args(literal) if not pricing.is_priced(m)]
    assert unpriced == []


def test_config_prices_override_and_extend_the_table():
    from decimal import Decimal

    table = pricing.PriceTable.with_overrides({
        "claude-sonnet-4-6": {"input": 1, "output": 2, "cache_write": 3, "cache_read": "0.5"},
        "my-model": {"input": "0.25", "output": 1, "cache_write": 0, "cache_read": 0}})
    usage = Usage(input_tokens=10**6, output_tokens=10**6, cache_write_tokens=10**6, cache_read_tokens=10**6)
    assert table.cost("claude-sonnet-4-6", usage) == Decimal("6.5")
    assert table.cost("my-model-20260101", usage) == Decimal("1.25")
    assert pricing.cost_decimal("claude-sonnet-4-6", usage) == Decimal("22.05")  # the built-in table is untouched


@pytest.mark.parametrize("entry, key", [
    ({"input": 1, "output": 2, "cache_write": 3}, "cost.prices.m.cache_read"),
    ({"input": "x", "output": 2, "cache_write": 3, "cache_read": 0}, "cost.prices.m.input"),
    ({"input": -1, "output": 2, "cache_write": 3, "cache_read": 0}, "cost.prices.m.input"),
    ({"input": 1, "output": 2, "cache_write": 3, "cache_read": 0, "batch": 1}, "cost.prices.m.batch"),
    (5, "cost.prices.m"),
])
def test_a_bad_price_entry_names_its_key(entry, key):
    with pytest.raises(pricing.PriceError) as err:
        pricing.PriceTable.with_overrides({"m": entry})
    assert str(err.value).startswith(key)


def test_worst_case_takes_the_dearest_prompt_rate_and_all_of_max_tokens():
    from decimal import Decimal

    # sonnet 4.6: cache writes (3.75) cost more than input (3)
    assert pricing.DEFAULT.worst_case("claude-sonnet-4-6", 1000, 8192) == Decimal("0.12663")
