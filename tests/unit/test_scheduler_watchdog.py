"""The run's watchdog: whatever the plan and whatever the world answers, a run ends, or it is
waiting for something outside the planner that `waiting_on` names (an agent, a merge, a
learning, a person, a budget, a pause). Driven through the pure scheduler, with hypothesis."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings, strategies as st

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from services.planner.scheduler import RunState, decide, waiting_on


def _plan(draw) -> dict:
    n = draw(st.integers(1, 9))
    epics = draw(st.integers(1, 3))
    tasks = []
    for i in range(n):
        deps = draw(st.lists(st.integers(0, max(i - 1, 0)), max_size=3, unique=True)) if i else []
        tasks.append({"id": f"t{i}", "title": f"T{i} src/m{i % 3}.py", "depends_on": [f"t{d}" for d in deps],
                      "dependency_type": draw(st.sampled_from(["hard", "hard", "soft"])),
                      "files": [f"src/m{i % 3}.py"] if draw(st.booleans()) else []})
    groups = [{"id": f"E{j}", "name": f"E{j}", "tasks": [],
               "depends_on": ["E0"] if j and draw(st.booleans()) else []} for j in range(epics)]
    for i, t in enumerate(tasks):
        groups[i % epics]["tasks"].append(t)
    return {"name": "fuzz", "epics": [g for g in groups if g["tasks"]]}


@st.composite
def runs(draw):
    settings_ = {"parallel": {"max_concurrency": draw(st.integers(1, 3)),
                              "strategy": draw(st.sampled_from(["by_task", "by_epic", "smart"])),
                              "max_attempts": draw(st.integers(1, 3)),
                              "batch_barrier": draw(st.booleans())},
                 "agent": {"provider": "replay", "transcripts": "/t"},
                 "merge": {"on_conflict": draw(st.sampled_from(["agent", "manual"])),
                           "max_resolution_attempts": draw(st.integers(0, 2))},
                 "learning": {"enabled": draw(st.booleans())}}
    started = ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(_plan(draw)), repo_path="/repo",
                            settings=RunSettings.of(settings_))
    return started, draw(st.integers(0, 2**32 - 1))


def _gave_up(e, consumer: str) -> ev.DeliveryFailed:
    return ev.DeliveryFailed(project_id="p", aggregate_id="p", consumer=consumer, failed_subject="s", stream_seq=1,
                             deliveries=5, error="gave up", event_type=e.type, failed_event_id=e.event_id,
                             run_id="r", task_id=e.task_id, attempt=e.attempt)


def _answers(e: ev.Event, rng: random.Random) -> list[ev.Event]:
    """What the executor, the merger and the learner would append after `e`."""
    def on_task(cls, **fields):
        return cls(project_id="p", aggregate_id=f"r-{e.task_id}", run_id="r", task_id=e.task_id, **fields)

    if isinstance(e, ev.TaskReady):
        outcome = rng.choice(["success", "success", "success", "failure", "rate_limited", "budget", "cancelled",
                              "undeliverable"])
        if outcome == "undeliverable":  # no executor could take it
            return [_gave_up(e, "executor")]
        return [on_task(ev.AgentFinished, attempt=e.attempt, outcome=outcome, summary="s", commit="c",
                        branch=e.branch)]
    if isinstance(e, ev.AgentFinished):
        out: list[ev.Event] = [on_task(ev.LearningExtracted, attempt=e.attempt)]
        if e.outcome == "success":
            roll = rng.random()
            if roll < 0.05:  # no merger could take it
                out.append(_gave_up(e, "merger"))
            elif roll < 0.7:
                out.append(on_task(ev.BranchMerged, attempt=e.attempt, branch=e.branch, commit="m"))
            else:  # a content conflict, or one no agent can resolve (its branch is gone)
                paths = [{"path": "x", "kind": "content", "message": "both"}] if roll < 0.9 else []
                out.append(on_task(ev.MergeConflicted, branch=e.branch, conflicts=paths, reason="conflict"))
        return out
    if isinstance(e, ev.RunPaused):
        return [ev.RunResumed(project_id="p", aggregate_id="r", run_id="r", reason="over")]
    return []


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(runs())
def test_a_run_ends_or_names_what_it_waits_for(run):
    started, seed = run
    rng = random.Random(seed)
    state = RunState.start(started)
    pending: list[ev.Event] = []
    for _ in range(500):  # bounded: a few hundred steps settle any of these plans
        decided = [e for e, _ in decide(state)]
        for e in decided:
            state.apply(e)
            pending += _answers(e, rng)
        if not decided and not pending:
            break
        if pending:
            e = pending.pop(rng.randrange(len(pending)))
            state.apply(e)
            pending += _answers(e, rng)
    assert not pending
    if not state.ended:  # quiet: only a person can move it now, and the run says whom and why
        why = waiting_on(state)
        assert why and "person" in why, (why, {t.id: t.status for t in state.tasks.values()})


def test_a_run_no_decision_can_move_fails_naming_its_tasks():
    from tests.unit.test_scheduler import apply_all, started as diamond

    state = RunState.start(diamond())
    apply_all(state, decide(state))
    assert waiting_on(state) == "an executor to finish a"
    # a status no decision moves (a newer planner's, say): nothing in flight, nothing startable
    state.tasks["a"].status = "parked"
    assert waiting_on(state) == ""
    [(end, msg_id)] = decide(state)
    assert isinstance(end, ev.RunFailed) and msg_id == "r:RunFailed"
    assert end.reason.startswith("stalled: nothing is in flight and no open task can start (a parked, b pending")


def test_a_run_waiting_for_a_person_is_not_stalled():
    from tests.unit.test_scheduler import apply_all, finish, started as diamond

    state = RunState.start(diamond())
    apply_all(state, decide(state))
    finish(state, "a")
    apply_all(state, decide(state))
    state.apply(ev.MergeConflicted(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", branch="task/a",
                                   conflicts=[], reason="branch task/a does not exist"))
    assert decide(state) == []
    assert waiting_on(state) == ("a person to resolve the merge conflict of a (then `yokeflow merge retry TASK`)")
