"""Session 0's planning conversation, played from transcripts: valid plans, plans fixed after
feedback, plans never fixed, and specs refused before any model call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.plan import session0_prompt as prompt
from shared.plan.session0 import MAX_SPEC_BYTES, SpecError, check_submission, produce_plan, read_spec
from shared.llm import ReplayProvider
from shared.plan import load_plan, plan_to_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "yokeflow" / "examples" / "todo"
SPEC = "A to-do list with a SQLite store, an HTTP API and a command line."


def submit(plan: dict, *, tokens: int = 100) -> dict:
    return {"content": [{"type": "tool_use", "name": "submit_plan", "input": plan}],
            "usage": {"input_tokens": tokens, "output_tokens": tokens // 2}}


def diamond(changes: dict | None = None) -> dict:
    tasks = [
        {"id": 1, "title": "schema", "domain": "database", "complexity": "low", "tests": ["pytest -q tests/test_db.py"]},
        {"id": 2, "title": "api", "depends_on": [1], "domain": "api", "tests": ["pytest -q tests/test_api.py"]},
        {"id": 3, "title": "cli", "depends_on": [1], "domain": "frontend", "tests": ["pytest -q tests/test_cli.py"]},
        {"id": 4, "title": "e2e", "depends_on": [2, 3], "domain": "testing", "tests": ["pytest -q tests/test_e2e.py"]},
    ]
    for task in tasks:
        task.update((changes or {}).get(task["id"], {}))
    return {"name": "todo", "epics": [{"id": "core", "name": "Core", "tasks": tasks}]}


def replay(*turns: dict, model: str = "claude-sonnet-4-5") -> ReplayProvider:
    return ReplayProvider({"model": model, "turns": list(turns)})


def tool_results(outcome, round_no: int) -> list[dict]:
    """The tool_result blocks sent back after the given round (1-based)."""
    message = outcome.messages[2 * round_no]
    assert message["role"] == "user"
    return [b for b in message["content"] if b["type"] == "tool_result"]


async def test_a_valid_first_submission_is_the_plan():
    provider = replay(submit(diamond(), tokens=1000))
    outcome = await produce_plan(provider, SPEC, model="sonnet")
    assert outcome.valid and outcome.rounds == 1 and outcome.problems == []
    assert [t.id for t in outcome.plan.tasks()] == ["1", "2", "3", "4"]
    assert outcome.resolution.batches == [["1"], ["2", "3"], ["4"]]
    assert outcome.usage.input_tokens == 1000 and outcome.usage.output_tokens == 500
    assert outcome.model == "replay:claude-sonnet-4-5" and outcome.cost_usd == 0.0
    # the spec reached the model inside the first message
    assert SPEC in outcome.messages[0]["content"][0]["text"]


async def test_a_cycle_goes_back_to_the_model_which_fixes_it():
    provider = replay(submit(diamond({1: {"depends_on": [4]}})), submit(diamond()))
    outcome = await produce_plan(provider, SPEC, model="sonnet")
    assert outcome.valid and outcome.rounds == 2
    [result] = tool_results(outcome, 1)
    assert result["is_error"] is True
    feedback = result["content"][0]["text"]
    assert "- [cycle] at epics[0].tasks[0].depends_on:" in feedback
    assert "1 → 4 → 2 → 1" in feedback and "(ids: 1, 4, 2, 3)" in feedback
    assert "2 attempts left" in feedback
    [accepted] = tool_results(outcome, 2)
    assert "is_error" not in accepted and "valid" in accepted["content"][0]["text"]


async def test_field_errors_and_graph_errors_come_back_together_with_their_paths():
    bad = diamond({2: {"domain": "backend"}, 3: {"depends_on": [1, 99]}, 4: {"owner": "me"}})
    provider = replay(submit(bad), submit(diamond()))
    outcome = await produce_plan(provider, SPEC, model="sonnet")
    feedback = tool_results(outcome, 1)[0]["content"][0]["text"]
    assert "at epics[0].tasks[1].domain" in feedback and "'backend'" in feedback
    assert "at epics[0].tasks[3].owner" in feedback
    assert "[missing_dependency] at epics[0].tasks[2].depends_on[1]" in feedback and "99" in feedback
    assert feedback.startswith("The plan has 3 problems")


async def test_a_model_that_never_submits_a_valid_plan_is_rejected_after_max_rounds():
    cyclic = submit(diamond({1: {"depends_on": [4]}}))
    provider = replay(cyclic, cyclic, cyclic, submit(diamond()))
    outcome = await produce_plan(provider, SPEC, model="sonnet", max_rounds=3)
    assert outcome.plan is None and outcome.rounds == 3
    assert [p.code for p in outcome.problems] == ["cycle"]
    assert provider.remaining == 1  # the fourth (valid) answer was never asked for
    assert "0 attempts left" in tool_results(outcome, 3)[0]["content"][0]["text"]


async def test_prose_instead_of_the_tool_is_sent_back_as_a_request_to_use_it():
    provider = replay({"content": [{"type": "text", "text": "Here is my plan: ..."}]}, submit(diamond()))
    outcome = await produce_plan(provider, SPEC, model="sonnet")
    assert outcome.valid and outcome.rounds == 2
    nudge = outcome.messages[2]["content"]
    assert nudge == [{"type": "text", "text": prompt.NO_TOOL_CALL}]


async def test_prose_every_round_is_rejected_with_the_reason():
    provider = replay(*[{"content": [{"type": "text", "text": "I cannot plan this."}]}] * 2)
    outcome = await produce_plan(provider, SPEC, model="sonnet", max_rounds=2)
    assert outcome.plan is None
    assert "without calling submit_plan" in outcome.problems[0].message
    assert "I cannot plan this." in outcome.problems[0].message


async def test_an_empty_spec_is_refused_without_a_model_call():
    provider = replay(submit(diamond()))
    for spec in ("", "  \n\t "):
        with pytest.raises(SpecError, match="the spec is empty"):
            await produce_plan(provider, spec, model="sonnet")
    assert provider.remaining == 1


async def test_a_5_mb_spec_is_refused_naming_the_limit_and_the_fix(tmp_path):
    provider = replay(submit(diamond()))
    huge = "x" * (5 * 1024 * 1024)
    with pytest.raises(SpecError) as refused:
        await produce_plan(provider, huge, model="sonnet")
    assert "5,242,880 bytes" in str(refused.value) and f"{MAX_SPEC_BYTES:,} bytes" in str(refused.value)
    assert "shorten it" in str(refused.value)
    assert provider.remaining == 1
    spec_file = tmp_path / "app_spec.txt"
    spec_file.write_text(huge)
    with pytest.raises(SpecError, match=r"spec .*app_spec.txt: the spec is 5,242,880 bytes, over"):
        read_spec(spec_file)


def test_spec_files_that_cannot_be_specs_are_refused(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        read_spec(tmp_path / "missing.txt")
    with pytest.raises(SpecError, match="is a folder"):
        read_spec(tmp_path)
    # a device or a pipe says size 0: what it gives is counted, not what it claims
    with pytest.raises(SpecError, match=r"spec /dev/zero: the spec is more than 200,000 bytes, over"):
        read_spec("/dev/zero")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00plan")
    with pytest.raises(SpecError, match="not UTF-8"):
        read_spec(tmp_path / "bin.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(SpecError, match="empty.txt: the spec is empty"):
        read_spec(tmp_path / "empty.txt")


def test_the_tool_input_schema_is_the_plan_file_schema():
    schema = json.loads((Path(prompt.SCHEMA_PATH)).read_text())
    tool = prompt.submit_plan_tool()
    assert tool["name"] == "submit_plan"
    assert tool["input_schema"]["$defs"] == schema["$defs"]
    assert tool["input_schema"]["required"] == ["name", "epics"]
    assert "$schema" not in tool["input_schema"]
    assert prompt.tool_choice() == {"type": "tool", "name": "submit_plan"}


def test_the_system_prompt_asks_for_what_a_parallel_plan_needs():
    text = prompt.SYSTEM_PROMPT
    for phrase in ("Layer-aware epics", "Explicit interfaces", "depends_on", "domain", "complexity", "tests: shell commands"):
        assert phrase in text


async def test_the_bundled_example_transcript_produces_the_example_plan():
    provider = ReplayProvider(EXAMPLE / "session0.json")
    outcome = await produce_plan(provider, (EXAMPLE / "app_spec.txt").read_text(), model="sonnet")
    assert outcome.valid and outcome.rounds == 2 and provider.remaining == 0
    assert plan_to_dict(outcome.plan) == plan_to_dict(load_plan(EXAMPLE / "plan.yaml"))
    first = tool_results(outcome, 1)[0]["content"][0]["text"]
    assert "[cycle]" in first and "[invalid_field] at epics[3].tasks[3].domain" in first


def test_check_submission_reports_a_plan_that_is_not_a_mapping():
    plan, resolution, problems = check_submission(["not", "a", "plan"])
    assert plan is None and problems and problems[0].code == "invalid_field"
