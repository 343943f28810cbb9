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
    assert "gpt-imaginary" in str(err.value) and "register_price" in str(err.value)


def test_registered_price_is_used():
    pricing.register_price("local-compatible-model", pricing.Price(1, 2, 0, 0))
    try:
        assert pricing.cost_usd("local-compatible-model", Usage(input_tokens=10**6, output_tokens=10**6)) == 3
    finally:
        pricing.PRICES.pop("local-compatible-model")
