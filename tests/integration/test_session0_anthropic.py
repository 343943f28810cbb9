"""Session 0 through the real `anthropic` SDK against a local Messages API server: what the
request carries, and the feedback round trip over HTTP."""

from __future__ import annotations

import json

import pytest

from shared.plan import session0_prompt as prompt
from shared.plan.session0 import produce_plan
from shared.llm import make_provider
from tests.support.fake_anthropic import FakeAnthropic, text, tool, turn

MODEL = "claude-sonnet-4-6"
SPEC = "A URL shortener: a store, an HTTP API and a stats page."


def plan(cycle: bool = False) -> dict:
    return {"name": "shortener", "epics": [
        {"id": 1, "name": "Store", "tasks": [
            {"id": "db", "title": "Links table", "domain": "database", "complexity": "low",
             "depends_on": ["stats"] if cycle else [], "tests": ["pytest -q tests/test_store.py"]}]},
        {"id": 2, "name": "Interfaces", "depends_on": [1], "tasks": [
            {"id": "api", "title": "Shorten and redirect", "domain": "api", "complexity": "medium",
             "tests": ["pytest -q tests/test_api.py"]},
            {"id": "stats", "title": "Stats page", "domain": "frontend", "depends_on": ["api"],
             "tests": ["pytest -q tests/test_stats.py"]}]}]}


def submit(plan: dict) -> dict:
    """A submit_plan call (fake_anthropic's tool() would take the plan's `name` as the tool's)."""
    return {**tool("submit_plan"), "input": plan}


@pytest.fixture
def server():
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
async def provider(server):
    p = make_provider("anthropic", {"api_key": "test-key", "base_url": server.url, "base_delay_s": 0.05})
    yield p
    await p.aclose()


async def test_the_request_offers_only_submit_plan_with_the_plan_schema(server, provider):
    server.add_turns(turn(text("Two layers."), submit(plan()),
                          usage={"input_tokens": 2000, "output_tokens": 600}))
    outcome = await produce_plan(provider, SPEC, model=MODEL)
    assert outcome.valid and outcome.rounds == 1
    assert outcome.usage.input_tokens == 2000 and outcome.cost_usd == pytest.approx(2000 * 3e-6 + 600 * 15e-6)
    [request] = server.requests
    body = request.body
    assert body["model"] == MODEL
    [offered] = body["tools"]
    assert offered["name"] == "submit_plan"
    schema = json.loads(prompt.SCHEMA_PATH.read_text())
    assert offered["input_schema"]["properties"] == schema["properties"]
    assert offered["input_schema"]["$defs"] == schema["$defs"]
    assert "Layer-aware epics" in body["system"][0]["text"]
    assert SPEC in body["messages"][0]["content"][0]["text"]


async def test_the_request_forces_submit_plan_with_tool_choice(server, provider):
    server.add_turns(turn(submit(plan())))
    await produce_plan(provider, SPEC, model=MODEL)
    assert server.requests[0].body.get("tool_choice") == {"type": "tool", "name": "submit_plan"}


async def test_problems_travel_back_as_an_error_tool_result_and_the_fix_is_accepted(server, provider):
    server.add_turns(turn(submit(plan(cycle=True))), turn(submit(plan())))
    outcome = await produce_plan(provider, SPEC, model=MODEL)
    assert outcome.valid and outcome.rounds == 2
    second = server.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    [result] = [b for b in second[2]["content"] if b["type"] == "tool_result"]
    assert result["is_error"] is True
    assert result["tool_use_id"] == second[1]["content"][0]["id"]
    feedback = result["content"][0]["text"]
    assert "[cycle]" in feedback and "(ids: db, stats, api)" in feedback


async def test_a_model_that_keeps_failing_is_rejected_after_the_rounds_allowed(server, provider):
    server.add_turns(*[turn(submit({"name": "x", "epics": [{"id": 1, "name": "E", "tasks": [
        {"id": 1, "title": "t", "depends_on": [7]}]}]})) for _ in range(2)])
    outcome = await produce_plan(provider, SPEC, model=MODEL, max_rounds=2)
    assert outcome.plan is None and outcome.rounds == 2 and len(server.requests) == 2
    assert [p.code for p in outcome.problems] == ["missing_dependency"]
