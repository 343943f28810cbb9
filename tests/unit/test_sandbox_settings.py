"""agent.sandbox: its shorthand, its ranges, and the one line a missing sandbox gives."""

import pytest

from shared.config import ConfigError, SandboxSettings, load_config, parse_config
from shared.sandbox import settings_from, unavailable_reason


@pytest.mark.parametrize("value, mode", [("off", "off"), (False, "off"), ("required", "required"), (True, "required")])
def test_the_plain_mode_is_shorthand(value, mode):
    assert parse_config({"agent": {"sandbox": value}}).agent.sandbox.mode == mode
    assert settings_from(value).mode == mode


def test_the_full_form_and_the_defaults():
    cfg = parse_config({"agent": {"sandbox": {"network": True, "max_processes": 64}, "env_allow": ["NPM_CONFIG"]}})
    assert cfg.agent.sandbox == SandboxSettings(mode="required", network=True, max_processes=64)
    assert cfg.agent.env_allow == ["NPM_CONFIG"]
    assert parse_config({}).agent.sandbox.mode == "required"
    assert settings_from(cfg.run_settings().to_dict()["agent"]["sandbox"]) == cfg.agent.sandbox


def test_environment_override(tmp_path):
    assert load_config(tmp_path, {"YOKEFLOW_AGENT__SANDBOX": "off"}).agent.sandbox.mode == "off"
    assert load_config(tmp_path, {"YOKEFLOW_AGENT__SANDBOX__NETWORK": "true"}).agent.sandbox.network
    (tmp_path / ".yokeflow.yaml").write_text("agent:\n  sandbox: off\n")
    both = load_config(tmp_path, {"YOKEFLOW_AGENT__SANDBOX__NETWORK": "true"}).agent.sandbox
    assert both.mode == "off" and both.network


@pytest.mark.parametrize("data, key", [({"mode": "maybe"}, "agent.sandbox.mode"), ({"max_processes": 1}, "max_processes"),
                                       ({"memory_mb": 0}, "memory_mb"), ({"nope": 1}, "nope")])
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key):
        parse_config({"agent": {"sandbox": data}})


def test_a_missing_bwrap_is_one_line_naming_the_package():
    reason = unavailable_reason(SandboxSettings(), bwrap=None, platform="linux")
    assert "apt-get install bubblewrap" in reason and "\n" not in reason
    assert unavailable_reason(SandboxSettings(mode="off"), bwrap=None, platform="linux") is None
    mac = unavailable_reason(SandboxSettings(), bwrap=None, platform="darwin")
    assert "agent.sandbox: off" in mac and "Linux" in mac
