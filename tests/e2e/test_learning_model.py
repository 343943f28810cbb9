"""`learning.model`: a cheap model reads each attempt's log (through the real anthropic SDK against
the local Messages API server) and adds entries, checked like a seed file's; its call is priced
as a CostRecorded of the learner, kept inside the run's budget, and made once per attempt even
when the learner handles the same attempt again. Without the key, no call is made."""

from __future__ import annotations

import json
from decimal import Decimal

from shared import events as ev
from shared.commands import start_run
from shared.expertise import distil, store
from shared.llm.pricing import PriceTable
from shared.llm.types import Usage
from tests.e2e.test_learning import A_TURNS, routed_task
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, events_of, running_system, wait_for_end

LEARNER_MODEL = "claude-haiku-4-5"
LEARNER_USAGE = {"input_tokens": 900, "output_tokens": 120}
PROPOSED = {
    "best_practices": [{"text": "calc.add must return a + b; ADD_BROKEN_7731 means the sign is wrong",
                        "files": ["calc.py"]}],
    "patterns": [{"files": ["x.py"]}],  # no text: dropped by the seed file's parser
    "weather": [{"text": "not a section"}],
}
PLAN = {"name": "learn-model", "epics": [{"id": "E1", "name": "API", "tasks": [
    {"id": "a", "title": "Adder", "domain": "api",
     "tests": ["python -c 'import calc; assert calc.add(2, 3) == 5, \"ADD_BROKEN_7731\"'"]},
    {"id": "b", "title": "Use the adder", "domain": "api", "depends_on": ["a"]}]}]}


def answer(body: dict) -> dict:
    if any(t.get("name") == distil.TOOL_NAME for t in body.get("tools") or []):
        return turn({**tool(distil.TOOL_NAME), "input": PROPOSED}, usage=LEARNER_USAGE)
    step = sum(1 for m in body["messages"] if m["role"] == "assistant")
    return A_TURNS[step] if routed_task(body) == "a" else turn(tool("finish", summary="done"))


def learner_requests(api) -> list[dict]:
    return [r.body for r in api.requests if any(t.get("name") == distil.TOOL_NAME for t in r.body.get("tools") or [])]


async def test_the_learning_model_adds_checked_entries_priced_once_per_attempt(nats_server, database_url, unique,
                                                                               git_repo, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([answer] * 20) as api:
        cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "anthropic", "base_url": api.url},
                     learning={"model": "haiku"},
                     cost={"models": {"haiku": LEARNER_MODEL, "sonnet": "claude-sonnet-4-6",
                                      "opus": "claude-opus-4-6"}, "run_budget_usd": 5})
        async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id)
            events = await events_of(bus, started.run_id)
            doc = store.document_of(await store.latest(bus, started.project_id, "api"), "api")
            # the learner handles a's AgentFinished again (a redelivery): no second call, no second cost
            calls_before = len(learner_requests(api))
            from services.learner.service import Learner

            as_learner = await system.endpoint.bus("yokeflow-learner")
            try:
                again = Learner(as_learner, system.config)
                async for d in bus.read([bus.type_filter(k) for k in ("RunStarted", "AgentFinished")]):
                    again.fold(d.event)
                [a_done] = [e for e in events if isinstance(e, ev.AgentFinished) and e.task_id == "a"]
                await again.learn_from(again.runs[started.run_id], a_done)
            finally:
                await as_learner.close()
            calls_after = len(learner_requests(api))
            events_after = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    asked = learner_requests(api)
    assert len(asked) == 2 and calls_after == calls_before  # one per attempt, none on a redelivery
    assert all(r["model"] == LEARNER_MODEL for r in asked)
    assert "ADD_BROKEN_7731" in json.dumps(asked[0]["messages"])  # the model read the attempt's log
    texts = [e.text for e in doc.entries]
    assert PROPOSED["best_practices"][0]["text"] in texts  # the model's checked entry is in the document
    assert "not a section" not in json.dumps(texts) and not any(e.files == ["x.py"] for e in doc.entries)
    assert any(e.kind == "failure" and "ADD_BROKEN_7731" in e.error for e in doc.entries)  # the log's own too
    costs = [e for e in events_after if isinstance(e, ev.CostRecorded) and e.by == "learner"]
    assert sorted(c.task_id for c in costs) == ["a", "b"]
    expected = PriceTable().cost(LEARNER_MODEL, Usage(900, 120))
    assert all(Decimal(c.cost_exact) == expected and c.model == LEARNER_MODEL for c in costs)


async def test_a_learning_model_without_room_in_the_budget_is_not_called(nats_server, database_url, unique, git_repo,
                                                                         monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([answer] * 20) as api:
        # the sleep agents cost nothing; the learner's worst case does not fit a one-cent run budget
        cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10", "base_url": api.url},
                     learning={"model": LEARNER_MODEL}, cost={"run_budget_usd": 0.001})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            started = await start_run(bus, {"name": "x", "epics": [{"id": "E", "name": "E", "tasks": [
                {"id": "t", "title": "T", "domain": "api", "tests": ["true"]}]}]}, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id)
            events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end  # learning goes on without the model
    assert learner_requests(api) == []
    assert [e for e in events if isinstance(e, ev.LearningExtracted)]
    assert not [e for e in events if isinstance(e, ev.CostRecorded) and e.by == "learner"]
