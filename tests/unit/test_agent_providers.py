"""Offline providers and the provider factory."""

import json

import pytest

from shared.llm import (ProviderError, ProviderUnavailable, ReplayExhausted, ReplayProvider, SleepProvider,
                        make_provider)

CALL = dict(model="sonnet", system=[], tools=[], max_tokens=100)


def transcript(tmp_path, turns, model="claude-sonnet-4-5"):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"model": model, "turns": turns}))
    return path


async def test_replay_plays_turns_in_order_whatever_is_asked_and_says_it_is_replayed(tmp_path):
    path = transcript(tmp_path, [
        {"content": [{"type": "text", "text": "one"}], "stop_reason": "end_turn",
         "usage": {"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": 2}},
        {"content": [{"type": "tool_use", "name": "finish", "input": {"summary": "two"}}]},
    ])
    provider = make_provider("replay", {"transcript": str(path)})
    first = await provider.create(messages=[{"role": "user", "content": "anything"}], **CALL)
    second = await provider.create(messages=[{"role": "user", "content": "else"}], **CALL)
    assert first.text() == "one" and first.usage.cache_read_tokens == 2
    assert second.tool_uses()[0]["input"] == {"summary": "two"} and second.tool_uses()[0]["id"]
    assert second.stop_reason == "tool_use"
    assert "replay" in provider.name and first.model == "replay:claude-sonnet-4-5"


async def test_replay_exhausted_says_what_happened(tmp_path):
    provider = ReplayProvider(transcript(tmp_path, [{"content": [{"type": "text", "text": "only"}]}]))
    await provider.create(messages=[], **CALL)
    with pytest.raises(ReplayExhausted, match="1 turn.*call 2"):
        await provider.create(messages=[], **CALL)


def test_bad_transcripts_are_refused_with_the_reason(tmp_path):
    with pytest.raises(ProviderError, match="does not exist"):
        ReplayProvider(tmp_path / "missing.json")
    with pytest.raises(ProviderError, match='"turns"'):
        ReplayProvider({"model": "x"})
    with pytest.raises(ProviderError, match="turn 1.*content"):
        ReplayProvider({"turns": [{"content": "not blocks"}]})


async def test_sleep_provider_waits_writes_one_file_then_finishes():
    provider = make_provider("sleep:20")
    assert isinstance(provider, SleepProvider) and provider.model == "sleep:20"
    first = await provider.create(messages=[{"role": "user", "content": "go"}], **CALL)
    write = first.tool_uses()[0]
    assert write["name"] == "write_file" and write["input"]["path"].startswith("yokeflow-sleep/")
    second = await provider.create(messages=[{"role": "user", "content": "go"},
                                             {"role": "assistant", "content": first.content}], **CALL)
    assert second.tool_uses()[0]["name"] == "finish"
    other = await make_provider("sleep:0").create(messages=[{"role": "user", "content": "go"}], **CALL)
    assert other.tool_uses()[0]["input"]["path"] != write["input"]["path"]


def test_factory_errors_name_the_fix(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ProviderUnavailable, match="ANTHROPIC_API_KEY"):
        make_provider("anthropic", {})
    with pytest.raises(ProviderUnavailable, match="transcript"):
        make_provider("replay", {})
    with pytest.raises(ProviderUnavailable, match="sleep:<milliseconds>"):
        make_provider("sleep:soon")
    with pytest.raises(ProviderUnavailable, match="unknown provider 'gpt'"):
        make_provider("gpt")


def test_claude_code_without_its_package_names_the_package(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as on a machine without the extra
                        lambda name, *a: None if name == "claude_agent_sdk" else real(name, *a))
    with pytest.raises(ProviderUnavailable, match=r"claude-agent-sdk package .*yokeflow\[claude-code\]"):
        make_provider("claude-code", {"cwd": str(tmp_path)})


async def test_a_recorded_run_replays_turn_for_turn(tmp_path):
    path = tmp_path / "recorded" / "t.json"
    live = make_provider("sleep:0", {"record": str(path)})
    messages = [{"role": "user", "content": "go"}]
    first = await live.create(messages=messages, **CALL)
    second = await live.create(messages=messages + [{"role": "assistant", "content": first.content}], **CALL)
    replay = make_provider("replay", {"transcript": str(path)})
    assert (await replay.create(messages=[], **CALL)).content == first.content
    assert (await replay.create(messages=[], **CALL)).content == second.content
    assert replay.model.startswith("replay")


def test_the_anthropic_provider_takes_its_key_and_endpoint_from_the_config(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-the-environment")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    assert make_provider("anthropic", {}).base_url == "http://127.0.0.1:9"
    assert make_provider("anthropic", {"base_url": "http://127.0.0.1:8"}).base_url == "http://127.0.0.1:8"
