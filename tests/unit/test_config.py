"""The config loader: defaults, environment overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, load_config, parse_config


def test_defaults_match_the_documented_ones():
    cfg = load_config(None, {})
    assert cfg.parallel.max_concurrency == 3 and cfg.parallel.strategy == "by_epic"
    assert cfg.parallel.batch_barrier is False and cfg.learning.expertise_max_lines == 1000


def test_file_then_environment(tmp_path):
    (tmp_path / ".yokeflow.yaml").write_text("parallel:\n  max_concurrency: 4\ncost:\n  budget_limit_usd: 5\n")
    cfg = load_config(tmp_path, {"YOKEFLOW_PARALLEL__MAX_CONCURRENCY": "6", "YOKEFLOW_NATS_URL": "nats://x:1"})
    assert cfg.parallel.max_concurrency == 6 and cfg.cost.budget_limit_usd == 5 and cfg.nats_url == "nats://x:1"


@pytest.mark.parametrize("strategy", ["by_epic", "by_task", "smart"])
def test_every_strategy_is_accepted_from_the_file_and_the_environment(strategy, tmp_path):
    assert parse_config({"parallel": {"strategy": strategy}}).parallel.strategy == strategy
    cfg = load_config(tmp_path, {"YOKEFLOW_PARALLEL__STRATEGY": strategy})
    assert cfg.parallel.strategy == strategy and cfg.run_settings()["parallel"]["strategy"] == strategy


@pytest.mark.parametrize("data, key", [
    ({"parallel": {"max_concurrency": "many"}}, "parallel.max_concurrency"),
    ({"parallel": {"max_concurrency": 0}}, "parallel.max_concurrency"),
    ({"parallel": {"strategy": "random"}}, "parallel.strategy"),
    ({"parallel": {"bogus": 1}}, "bogus"),
    ({"cost": {"warn_at_fraction": 2}}, "cost.warn_at_fraction"),
    ({"parallel": {"strategy": "Smart"}}, "parallel.strategy"),  # exact names only
    ({"merge": {"on_conflict": "somebody"}}, "merge.on_conflict"),
    ({"merge": {"max_resolution_attempts": -1}}, "merge.max_resolution_attempts"),
])
def test_a_bad_value_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(data)


def test_malformed_file_is_a_clear_error(tmp_path):
    (tmp_path / ".yokeflow.yaml").write_text("parallel: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path, {})
