"""The config loader: defaults, environment overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, RunSettings, load_config, parse_config


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
    assert cfg.parallel.strategy == strategy and cfg.run_settings().parallel.strategy == strategy


@pytest.mark.parametrize("data, key", [
    ({"parallel": {"max_concurrency": "many"}}, "parallel.max_concurrency"),
    ({"parallel": {"max_concurrency": 0}}, "parallel.max_concurrency"),
    ({"parallel": {"strategy": "random"}}, "parallel.strategy"),
    ({"parallel": {"bogus": 1}}, "bogus"),
    ({"cost": {"warn_at": [0.5, 2]}}, "cost.warn_at"),
    ({"cost": {"budget_limit_usd": -1}}, "cost.budget_limit_usd"),
    ({"cost": {"budget_limit_usd": "lots"}}, "cost.budget_limit_usd"),
    ({"cost": {"budget_limit_usd": float("nan")}}, "cost.budget_limit_usd"),
    ({"cost": {"run_budget_usd": -0.01}}, "cost.run_budget_usd"),
    ({"cost": {"enforcement": "strict"}}, "cost.enforcement"),
    ({"cost": {"default_model": "gpt-4"}}, "cost.default_model"),
    ({"cost": {"models": {"fable": "claude-fable-5"}}}, "cost.models.fable"),
    ({"cost": {"models": {"opus": "claude-opus-9"}}}, "cost.models.opus"),
    ({"cost": {"models": {"opus": "claude-opus-4-6", "sonnet": "claude-sonnet-4-6"}}}, "cost.models.haiku"),
    ({"cost": {"prices": {"my-model": {"input": 1, "output": 2}}}}, "cost.prices.my-model.cache_write"),
    ({"cost": {"min_success_rate": 1.5}}, "cost.min_success_rate"),
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


def test_runtime_settings_come_from_their_short_environment_names():
    cfg = load_config(None, {"YOKEFLOW_SUBJECT_PREFIX": "t1", "YOKEFLOW_STREAM": "S1", "YOKEFLOW_EXECUTOR_SLOTS": "2",
                             "YOKEFLOW_MERGER_ACK_WAIT": "3", "YOKEFLOW_GATEWAY_PORT": "9001",
                             "YOKEFLOW_API_TOKEN": "yes", "YOKEFLOW_STATE_DIR": "/tmp/st"})
    rt = cfg.runtime
    assert (rt.executor_slots, rt.merger_ack_wait_s, rt.gateway_port, rt.state_dir) == (2, 3.0, 9001, "/tmp/st")
    assert rt.api_token == "yes"  # a token is a string, never YAML's True
    assert rt.bus_options() == {"prefix": "t1", "stream": "S1", "log_stream": "YF_LOGS", "replicas": 1}
    with pytest.raises(ConfigError, match=r"runtime\.executor_slots"):
        load_config(None, {"YOKEFLOW_EXECUTOR_SLOTS": "-1"})
    with pytest.raises(ConfigError, match=r"runtime\.gateway_port"):
        load_config(None, {"YOKEFLOW_GATEWAY_PORT": "eighty"})


def test_a_key_nothing_acts_on_is_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"learning\.self_improve_interval is not supported"):
        parse_config({"learning": {"self_improve_interval": "daily"}})
    assert parse_config({"learning": {"self_improve_interval": ""}}).learning.self_improve_interval == ""


def test_parallel_disabled_means_one_attempt_at_a_time():
    cfg = parse_config({"parallel": {"enabled": False, "max_concurrency": 8}})
    assert cfg.run_settings().parallel.concurrency == 1
    assert parse_config({"parallel": {"max_concurrency": 8}}).parallel.concurrency == 8


def test_run_settings_decode_from_the_dict_old_runs_carried():
    from shared import events as ev
    old = (b'{"type":"RunStarted","project_id":"p","aggregate_id":"r","run_id":"r","plan":{},"repo_path":"/x",'
           b'"settings":{"parallel":{"max_concurrency":5},"merge":{"on_conflict":"agent"},'
           b'"learning":{"self_improve_interval":"daily"}}}')
    started = ev.decode(old)
    assert started.settings.parallel.max_concurrency == 5 and started.settings.merge.on_conflict == "agent"
    assert started.settings.parallel.strategy == "by_epic" and started.settings.cost.budget_limit_usd == 100.0
    no_settings = ev.decode(old.split(b',"settings"')[0] + b"}")
    assert no_settings.settings == RunSettings()
    assert ev.decode(ev.encode(started)) == started


def test_overrides_replace_keys_and_are_checked():
    base = parse_config({}).run_settings()
    assert base.with_overrides({"parallel": {"max_concurrency": 7}}).parallel.max_concurrency == 7
    with pytest.raises(ConfigError, match="no section 'turbo'"):
        base.with_overrides({"turbo": {"on": True}})
    with pytest.raises(ConfigError, match=r"parallel\.max_concurrency"):
        base.with_overrides({"parallel": {"max_concurrency": 0}})


def test_a_model_priced_in_config_may_be_the_default_or_a_tier():
    from shared.config import parse_config

    cfg = parse_config({"cost": {"default_model": "my-model", "models": {"haiku": "my-model", "sonnet": "claude-sonnet-4-6",
                                                                           "opus": "claude-opus-4-6"},
                                 "prices": {"my-model": {"input": 0.1, "output": 0.2, "cache_write": 0.1,
                                                         "cache_read": 0.01}}}})
    assert cfg.cost.default_model == "my-model" and cfg.cost.models["haiku"] == "my-model"


def test_the_merger_crash_point_is_a_runtime_setting_off_by_default():
    assert load_config(None, {}).runtime.merger_crash_after_ref_update is False
    cfg = load_config(None, {"YOKEFLOW_MERGER_CRASH_AFTER_REF_UPDATE": "1"})
    assert cfg.runtime.merger_crash_after_ref_update is True


def test_the_model_api_key_comes_from_the_config_and_never_shows_in_a_repr():
    from shared.config import model_api

    api = model_api({"ANTHROPIC_API_KEY": "sk-ant-api03-not-for-logs", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert api.api_key == "sk-ant-api03-not-for-logs" and api.base_url == "http://127.0.0.1:9"
    assert "sk-ant" not in repr(api) and "sk-ant" not in str(api)
    assert model_api({}).api_key == ""
