"""bench.model replays the default policy on a model of a run: exact makespans on plans whose
schedule is known by hand, and the costs read back from a run's events."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bench.model import Costs, efficiency, explain, measured_costs, simulate
from shared import events as ev


def plan(*epics: list[tuple[str, list[str]]], epic_deps: dict[str, list[str]] | None = None) -> dict:
    return {"name": "p", "epics": [
        {"id": f"e{i}", "name": f"epic {i}", "depends_on": (epic_deps or {}).get(f"e{i}", []),
         "tasks": [{"id": tid, "title": tid, "depends_on": deps} for tid, deps in tasks]}
        for i, tasks in enumerate(epics)]}


def chain(prefix: str, n: int) -> list[tuple[str, list[str]]]:
    return [(f"{prefix}{i}", [f"{prefix}{i - 1}"] if i else []) for i in range(n)]


def test_a_chain_costs_its_agents_and_every_cost_in_between():
    costs = Costs(slot_s=0.01, handoff_s=0.02, link_s=0.1)
    assert simulate(plan(chain("a", 4)), concurrency=3, agent_s=1.0, costs=costs) == pytest.approx(
        4 * (1.0 + 0.01 + 0.02) + 3 * 0.1)


def test_independent_tasks_fill_every_slot_in_rounds():
    tasks = [(f"t{i}", []) for i in range(7)]
    assert simulate(plan(tasks), concurrency=3, agent_s=1.0, strategy="by_task") == pytest.approx(3.0)
    # by_epic: one epic is one lane, one unmerged task at a time
    assert simulate(plan(tasks), concurrency=3, agent_s=1.0, costs=Costs(link_s=0.5)) == pytest.approx(7 + 6 * 0.5)


def test_smart_lanes_are_not_modelled_and_say_so():
    with pytest.raises(ValueError, match="not 'smart'"):
        simulate(plan(chain("a", 2)), concurrency=2, agent_s=1.0, strategy="smart")


def test_the_longest_remaining_path_goes_first():
    # one slot: the chain's head first, or the lone task would delay the whole chain by its length
    p = plan([("lone", [])], chain("c", 3))
    assert simulate(p, concurrency=1, agent_s=1.0, strategy="by_task") == pytest.approx(4.0)
    p = plan(chain("c", 3), [("x", ["c0"])])  # x behind c0; c1 (2 to go) before x (1 to go)
    assert simulate(p, concurrency=2, agent_s=1.0, strategy="by_task") == pytest.approx(3.0)


def test_an_epic_waits_for_every_task_of_the_epics_it_depends_on():
    p = plan(chain("a", 2), [("b0", [])], epic_deps={"e1": ["e0"]})
    assert simulate(p, concurrency=4, agent_s=1.0, costs=Costs(link_s=0.25)) == pytest.approx(3 + 2 * 0.25)


def test_jitter_spreads_agent_ends_deterministically_by_seed():
    tasks = [(f"t{i}", []) for i in range(12)]
    runs = [simulate(plan(tasks), concurrency=4, agent_s=1.0, costs=Costs(jitter_s=0.2), strategy="by_task", seed=s)
            for s in range(5)]
    assert runs == [simulate(plan(tasks), concurrency=4, agent_s=1.0, costs=Costs(jitter_s=0.2), strategy="by_task",
                             seed=s) for s in range(5)]
    assert len(set(runs)) > 1 and all(2.7 <= r <= 3.3 for r in runs)


def test_efficiency_and_its_explanation():
    p = plan(chain("a", 3), chain("b", 3))
    assert efficiency(p, concurrency=2, agent_s=1.0, bound_s=3.0) == 1.0
    out = explain(p, concurrency=2, agent_s=1.0, bound_s=3.0, costs=Costs(slot_s=0.1, link_s=0.2))
    assert out["efficiency_no_cost"] == 1.0
    assert out["efficiency_with_costs"] == round(3.0 / (3 * 1.1 + 2 * 0.2), 3)
    assert out["efficiency_without"]["link"] == round(3.0 / 3.3, 3)
    assert out["efficiency_without"]["slot"] == round(3.0 / 3.4, 3)
    assert out["costs"] == {"slot_ms": 100.0, "handoff_ms": 0.0, "link_ms": 200.0, "jitter_ms": 0.0}


def test_costs_are_read_back_from_a_runs_events():
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def at(s: float) -> str:
        return (t0 + timedelta(seconds=s)).isoformat()

    def task_event(kind, tid: str, s: float, **kw):
        if kind is ev.WorktreeCreated:
            kw.update(path=f"/w/{tid}", branch=f"yf/{tid}")
        return kind(project_id="p", aggregate_id=f"r-{tid}", run_id="r", task_id=tid, occurred_at=at(s), **kw)

    p = plan([("a", []), ("b", ["a"]), ("c", [])])
    events = [
        task_event(ev.WorktreeCreated, "a", 0.00), task_event(ev.WorktreeCreated, "c", 0.01),
        task_event(ev.AgentStarted, "a", 0.02), task_event(ev.AgentFinished, "a", 1.04),   # held 1.02
        task_event(ev.AgentStarted, "c", 1.05),   # prepared at 0.01, a slot came free at 1.04: handoff 0.01
        task_event(ev.LearningExtracted, "a", 1.08), task_event(ev.BranchMerged, "a", 1.10, branch="yf/a"),
        task_event(ev.TaskReady, "b", 1.11), task_event(ev.WorktreeCreated, "b", 1.14),
        # link: a's end -> its merge and learning stored (0.06), then b's worktree (0.03)
        task_event(ev.AgentFinished, "c", 2.03),   # held 0.98
        task_event(ev.AgentStarted, "b", 2.05), task_event(ev.AgentFinished, "b", 3.05),   # held 1.00
    ]
    costs = measured_costs(events, p, agent_s=1.0)
    assert costs.slot_s == pytest.approx(0.0, abs=1e-6)
    assert costs.handoff_s == pytest.approx(0.015, abs=1e-5)   # median of c's 0.01 and b's 0.02
    assert costs.link_s == pytest.approx(0.09, abs=1e-5)   # (timestamps are floats of ~1.8e9 s)
    assert costs.jitter_s == pytest.approx(((0.02 ** 2 * 2 / 3) ** 0.5) * 12 ** 0.5, abs=1e-5)


def test_a_run_that_did_not_complete_has_no_figures_and_ends_the_benchmark_with_one_line(monkeypatch, capsys):
    from bench import scheduling

    from shared.plan import PlanDoc

    started = ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc(name="p"), repo_path="/repo")
    failed = ev.RunFailed(project_id="p", aggregate_id="r", run_id="r", reason="task a: bubblewrap is not installed")
    with pytest.raises(scheduling.RunNotCompleted, match="ended with RunFailed: task a: bubblewrap is not installed"):
        scheduling.require_completed([started, failed], {"name": "p"})
    with pytest.raises(scheduling.RunNotCompleted, match="ended with RunCancelled"):
        scheduling.require_completed([started, ev.RunCancelled(project_id="p", aggregate_id="r", run_id="r")],
                                     {"name": "p"})
    scheduling.require_completed([started, ev.RunCompleted(project_id="p", aggregate_id="r", run_id="r")],
                                 {"name": "p"})

    async def fails(args):
        scheduling.require_completed([started, failed], {"name": "prd-12x10-seed7"})

    monkeypatch.setattr(scheduling, "benchmark", fails)
    assert scheduling.main(["--json"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "prd-12x10-seed7 ended with RunFailed" in err
