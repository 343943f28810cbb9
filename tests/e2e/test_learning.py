"""Learning end to end, through the real anthropic SDK against the local Messages API server: what
task A met and fixed reaches task B of its domain (which depends on it), and not task C of another."""

from __future__ import annotations

from shared import events as ev
from shared import readmodel
from shared.commands import start_run
from shared.expertise import store
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import (config, endpoint_for, events_of, next_event, running_system, start_system,
                                  wait_for_end)

CHECK = "python -c 'import calc; assert calc.add(2, 3) == 5, \"ADD_BROKEN_7731\"'"
PLAN = {"name": "learn", "epics": [
    {"id": "E1", "name": "API", "tasks": [
        {"id": "a", "title": "Adder", "domain": "api", "tests": [CHECK]},
        {"id": "b", "title": "Use the adder", "domain": "api", "depends_on": ["a"]},
    ]},
    {"id": "E2", "name": "UI", "tasks": [
        {"id": "c", "title": "Page", "domain": "frontend", "depends_on": ["a"]},
    ]},
]}

A_TURNS = [
    turn(tool("write_file", path="calc.py", content="def add(a, b):\n    return a - b\n")),
    turn(tool("run_command", command=CHECK)),
    turn(tool("edit_file", path="calc.py", old_text="a - b", new_text="a + b")),
    turn(tool("run_command", command=CHECK)),
    turn(tool("finish", summary="adder works")),
]


def routed(body: dict) -> dict:
    first = body["messages"][0]["content"]
    prompt = first if isinstance(first, str) else first[0]["text"]
    step = sum(1 for m in body["messages"] if m["role"] == "assistant")
    if prompt.startswith("# Task a:"):
        return A_TURNS[step]
    return turn(tool("finish", summary="done"))


def system_text(body: dict) -> str:
    return "\n".join(b.get("text", "") for b in body.get("system") or [])


def request_of(api: FakeAnthropic, task: str) -> dict:
    return next(r.body for r in api.requests if routed_task(r.body) == task)


def routed_task(body: dict) -> str:
    first = body["messages"][0]["content"]
    prompt = first if isinstance(first, str) else first[0]["text"]
    return prompt.split(":", 1)[0].removeprefix("# Task ").strip()


def settings(api: FakeAnthropic, **learning):
    return config(parallel={"strategy": "by_task", "max_concurrency": 3},
                  agent={"provider": "anthropic", "base_url": api.url}, learning=learning)


async def test_a_fixed_error_reaches_the_next_agent_of_its_domain_and_no_other(nats_server, database_url, unique,
                                                                             git_repo, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([routed] * 12) as api:
        cfg = settings(api)
        async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id)
            events = await events_of(bus, started.run_id)
            doc = store.document_of(await store.latest(bus, started.project_id, "api"), "api")
            await system.database.wait_for("ledger", await bus.last_seq(), timeout=30)
            [status] = await readmodel.status(system.database, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    measures = status["learning"]
    assert measures["tasks_started"] == 3 and measures["expertise_coverage"] == round(1 / 3, 4)  # only b had any to get
    assert measures["entries_learned"] == 2 and measures["failures_met"] == 1 and measures["repeat_error_rate"] == 0
    b_sees, c_sees = system_text(request_of(api, "b")), system_text(request_of(api, "c"))
    assert "ADD_BROKEN_7731" in b_sees and "`calc.py`" in b_sees  # the error and the file that fixed it
    assert "ADD_BROKEN_7731" not in c_sees and "calc.py" not in c_sees.split("# Repository map")[0]
    [failure] = [e for e in doc.entries if e.kind == "failure"]
    assert failure.files == ["calc.py"] and failure.origin.task_id == "a"
    learned = [e for e in events if isinstance(e, ev.LearningExtracted)]
    assert sorted((e.task_id, e.attempt) for e in learned) == [("a", 1), ("b", 1), ("c", 1)]  # one per attempt
    given = {e.task_id: e.expertise_given for e in events if isinstance(e, ev.AgentStarted)}
    assert failure.id in given["b"] and failure.id not in given["c"] and given["a"] == []
    # ordering by events: b started only after a's learning was stored
    seq = {id(e): i for i, e in enumerate(events)}
    a_learned = next(e for e in learned if e.task_id == "a")
    b_ready = next(e for e in events if isinstance(e, ev.TaskReady) and e.task_id == "b")
    assert seq[id(a_learned)] < seq[id(b_ready)]
    ended = next(i for i, e in enumerate(events) if isinstance(e, ev.RunCompleted))
    assert all(seq[id(e)] < ended for e in learned)  # nothing learned for the run after its end


async def test_a_learner_that_is_down_between_a_and_b_still_gets_the_learning_to_b(nats_server, database_url,
                                                                                  unique, git_repo, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([routed] * 12) as api:
        cfg = settings(api)
        endpoint = endpoint_for(nats_server.url, database_url, unique)
        system = await start_system(endpoint, cfg, services=("ledger", "planner", "executor", "merger"))
        bus = await endpoint.bus()
        learner = None
        try:
            started = await start_run(bus, PLAN, git_repo, cfg)
            await next_event(bus, lambda e: isinstance(e, ev.BranchMerged) and e.task_id == "a")
            assert len(api.requests) == len(A_TURNS)  # a is merged, and b has not started: no learning yet
            learner = await start_system(endpoint, cfg, services=("learner",))
            end = await wait_for_end(bus, started.run_id)
        finally:
            await bus.close()
            if learner is not None:
                await learner.stop()
            await system.stop()
    assert isinstance(end, ev.RunCompleted), end
    assert "ADD_BROKEN_7731" in system_text(request_of(api, "b"))


async def test_with_learning_off_nothing_is_learned_or_given(nats_server, database_url, unique, git_repo,
                                                            monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([routed] * 12) as api:
        cfg = settings(api, enabled=False)
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id)
            events = await events_of(bus, started.run_id)
            assert await store.domains(bus, started.project_id) == []
    assert isinstance(end, ev.RunCompleted), end
    assert not [e for e in events if isinstance(e, ev.LearningExtracted)]
    assert "ADD_BROKEN_7731" not in system_text(request_of(api, "b"))
