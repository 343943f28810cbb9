"""The scheduler's indexes (unmet-dependency counters, the ready set, in-flight and lane loads)
always equal a full recomputation from the task statuses, over random plans and random runs."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from services.planner.scheduler import (
    DISPATCHED,
    LANE_BUSY,
    TERMINAL,
    RunState,
    _is_ready,
    decide,
)


def random_plan(rng: random.Random, n: int) -> dict:
    epics = [{"id": f"E{e}", "name": f"E{e}", "tasks": []} for e in range(rng.randint(1, 4))]
    for i in range(n):
        deps = sorted({f"t{j}" for j in range(i) if rng.random() < 0.25})
        task = {"id": f"t{i}", "title": f"T{i}", "depends_on": deps}
        if deps and rng.random() < 0.3:
            task["dependency_type"] = "soft"
        rng.choice(epics)["tasks"].append(task)
    return {"name": "random", "epics": [e for e in epics if e["tasks"]]}


def full_recomputation(state: RunState) -> dict:
    busy_lanes = {state.lane_key.get(t.id, t.id) for t in state.tasks.values() if t.status in LANE_BUSY}
    return {
        "startable": sorted(t.id for t in state.tasks.values() if _is_ready(state, t)),
        "dispatched": sum(1 for t in state.tasks.values() if t.status == DISPATCHED),
        "in_flight": sum(1 for t in state.tasks.values() if t.status == DISPATCHED and t.running),
        "staged": sorted(t.id for t in state.tasks.values() if t.status == DISPATCHED and not t.running
                         and t.attempt not in t.finished_attempts),
        "busy": sorted(tid for tid in state.tasks if state.lane_key.get(tid, tid) in busy_lanes),
        "open": sum(1 for t in state.tasks.values() if t.status not in TERMINAL),
    }


def from_indexes(state: RunState) -> dict:
    return {"startable": sorted(state.startable()), "dispatched": state.dispatched, "in_flight": state.in_flight(),
            "staged": sorted(state.staged),
            "busy": sorted(tid for tid in state.tasks if state.lane_busy(tid)), "open": state.open_tasks}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 14), strategy=st.sampled_from(["by_task", "by_epic"]),
       barrier=st.booleans(), concurrency=st.integers(1, 4), learning=st.booleans(), handover=st.booleans())
def test_incremental_ready_set_equals_full_recomputation(seed, n, strategy, barrier, concurrency, learning, handover):
    rng = random.Random(seed)
    plan = random_plan(rng, n)
    settings_ = {"parallel": {"max_concurrency": concurrency, "strategy": strategy, "batch_barrier": barrier,
                              "max_attempts": 2, "slot_handover": handover}, "agent": {"provider": "sleep:1"},
                 "learning": {"enabled": learning}}
    state = RunState.start(ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(plan),
                                         repo_path="/repo", settings=RunSettings.of(settings_)))
    assert from_indexes(state) == full_recomputation(state)
    for _ in range(6 * n + 10):
        for e, _ in decide(state):
            state.apply(e)
        assert from_indexes(state) == full_recomputation(state)
        assert state.in_flight() <= concurrency and state.dispatched <= 2 * concurrency
        if state.ended:
            break
        unlearned = [(t, a) for t in state.tasks.values() for a in t.finished_attempts if a not in t.learned]
        if learning and unlearned and rng.random() < 0.4:  # the learner stores what an attempt taught
            t, attempt = rng.choice(unlearned)
            state.apply(ev.LearningExtracted(project_id="p", aggregate_id=f"r-{t.id}", run_id="r", task_id=t.id,
                                             attempt=attempt))
            assert from_indexes(state) == full_recomputation(state)
            continue
        staged = [t for t in state.tasks.values() if t.status == DISPATCHED and not t.prepared]
        if staged and rng.random() < 0.5:  # an executor made an attempt's worktree: it waits for a slot
            t = rng.choice(staged)
            state.apply(ev.WorktreeCreated(project_id="p", aggregate_id=f"r-{t.id}", run_id="r", task_id=t.id,
                                           path=f"/w/{t.id}", branch=f"b/{t.id}", attempt=t.attempt))
            assert from_indexes(state) == full_recomputation(state)
            continue
        running = [t for t in state.tasks.values() if t.status == DISPATCHED]
        finished = [t for t in state.tasks.values() if t.status == "succeeded"]
        if finished and (not running or rng.random() < 0.5):
            t = rng.choice(finished)
            kind = ev.BranchMerged if rng.random() < 0.85 else ev.MergeConflicted
            state.apply(kind(project_id="p", aggregate_id=f"r-{t.id}", run_id="r", task_id=t.id,
                             branch=f"b/{t.id}", **({"commit": "m"} if kind is ev.BranchMerged else {})))
        elif running:
            t = rng.choice(running)
            outcome = "success" if rng.random() < 0.8 else "failure"
            # its executor may hand its slot to a candidate there (one whose slot is not yet given)
            heirs = [h for h in running if h.candidate and not h.running and h.id != t.id] if t.running else []
            heir = rng.choice(heirs) if heirs and rng.random() < 0.7 else None
            state.apply(ev.AgentFinished(project_id="p", aggregate_id=f"r-{t.id}", run_id="r", task_id=t.id,
                                         attempt=t.attempt, outcome=outcome, commit="c",
                                         slot_to=heir.id if heir else "", slot_to_attempt=heir.attempt if heir else 0))
            assert state.in_flight() <= concurrency  # a slot handed over is the one that freed
            assert heir is None or state.tasks[heir.id].running
        elif not finished:
            conflicted = [t for t in state.tasks.values() if t.status == "conflict"]
            if not conflicted:
                break
            t = conflicted[0]  # a person resolves it: merged
            state.apply(ev.BranchMerged(project_id="p", aggregate_id=f"r-{t.id}", run_id="r", task_id=t.id,
                                        branch=f"b/{t.id}", commit="m"))
        assert from_indexes(state) == full_recomputation(state)
