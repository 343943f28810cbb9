"""The scheduler under `merge.on_conflict: agent`: a content conflict queues a resolution
agent on the task's branch; failures retry up to a limit, then a person is asked."""

from __future__ import annotations

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from services.planner.scheduler import CONFLICT, RunState, decide
from tests.unit.test_scheduler import apply_all, finish, merge, ready_ids

PAIR = {"name": "pair", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "a", "title": "A", "tests": ["pytest -q"]}, {"id": "b", "title": "B"},
    {"id": "after", "title": "After", "depends_on": ["a", "b"]}]}]}


def started(on_conflict="agent", max_resolution_attempts=2, max_concurrency=3):
    settings = {"parallel": {"max_concurrency": max_concurrency, "strategy": "by_task", "max_attempts": 2},
                "agent": {"provider": "replay", "transcripts": "/t"},
                "merge": {"on_conflict": on_conflict, "max_resolution_attempts": max_resolution_attempts},
                "learning": {"enabled": False}}
    return ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(PAIR), repo_path="/repo",
                         settings=RunSettings.of(settings))


def conflicted(state, task, paths=("greeting.txt",), reason="merge conflict"):
    e = ev.MergeConflicted(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, branch=f"task/{task}",
                           conflicts=[ev.Conflict(path=p, kind="content", message=f"{p}: both") for p in paths],
                           reason=reason)
    state.apply(e)
    return e


def both_done_then_a_conflicts(**settings):
    state = RunState.start(started(**settings))
    apply_all(state, decide(state))
    for t in ("a", "b"):
        finish(state, t)
    merge(state, "b")
    apply_all(state, decide(state))
    return state, conflicted(state, "a")


def resolutions(events):
    return [e for e in events if isinstance(e, ev.TaskReady) and e.purpose == "resolve_conflict"]


def test_a_content_conflict_queues_a_resolution_on_the_same_branch():
    state, conflict = both_done_then_a_conflicts()
    [ready] = resolutions(apply_all(state, decide(state)))
    assert ready.task_id == "a" and ready.attempt == 2 and ready.branch == "task/a"
    assert ready.tests == ["pytest -q"] and ready.selection.inputs.tries == 1
    assert ready.conflict.event_id == conflict.event_id and ready.conflict.conflicts[0].path == "greeting.txt"
    assert ready.provider_options.transcript == "/t/a.resolve.json"
    assert decide(state) == []  # dispatched once
    finish(state, "a", attempt=2)
    assert [e.type for e in apply_all(state, decide(state))] == ["TaskCompleted"]
    merge(state, "a")
    assert ready_ids(apply_all(state, decide(state))) == ["after"]


def test_failed_resolutions_retry_with_a_stronger_model_then_a_person_is_asked():
    state, conflict = both_done_then_a_conflicts()
    apply_all(state, decide(state))
    finish(state, "a", outcome="failure", attempt=2, error="markers left")
    out = apply_all(state, decide(state))
    assert out[0].type == "TaskFailed" and not out[0].final and "conflict resolution" in out[0].reason
    [again] = resolutions(out)
    assert again.attempt == 3 and again.selection.inputs.tries == 2
    assert again.selection.tier == "opus"
    finish(state, "a", outcome="failure", attempt=3, error="markers left")
    out = apply_all(state, decide(state))
    assert [e.type for e in out] == ["TaskFailed", "ConflictEscalated"]
    assert "2 resolution attempt(s)" in out[1].reason and out[1].conflicts == conflict.conflicts
    assert "resolve it in /repo/.worktrees/task-a-a (`git merge main`" in out[1].reason
    assert state.tasks["a"].status == CONFLICT and decide(state) == []  # the run waits for the person
    merge(state, "a")  # `yokeflow merge retry a` after the person resolved it
    assert ready_ids(apply_all(state, decide(state))) == ["after"]


def test_a_throttled_resolution_does_not_spend_a_try():
    state, _ = both_done_then_a_conflicts(max_resolution_attempts=1)
    apply_all(state, decide(state))
    state.apply(ev.AgentFinished(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", attempt=2,
                                 outcome="rate_limited", retry_after_s=5.0))
    assert [e.type for e in apply_all(state, decide(state))] == ["TaskFailed", "RunPaused"]
    state.apply(ev.RunResumed(project_id="p", aggregate_id="r", run_id="r"))
    [again] = resolutions(apply_all(state, decide(state)))
    assert again.attempt == 3


def test_a_resolved_branch_that_conflicts_again_gets_another_resolution():
    state, _ = both_done_then_a_conflicts()
    apply_all(state, decide(state))
    finish(state, "a", attempt=2)
    apply_all(state, decide(state))
    conflicted(state, "a", paths=("other.txt",))  # main moved again meanwhile
    [again] = resolutions(apply_all(state, decide(state)))
    assert again.attempt == 3 and again.conflict.conflicts[0].path == "other.txt"


def test_manual_policy_zero_attempts_and_non_content_failures_never_queue_an_agent():
    state, _ = both_done_then_a_conflicts(on_conflict="manual")
    assert decide(state) == []
    state, _ = both_done_then_a_conflicts(max_resolution_attempts=0)
    out = apply_all(state, decide(state))
    assert [e.type for e in out] == ["ConflictEscalated"] and "max_resolution_attempts is 0" in out[0].reason
    assert decide(state) == []
    state, _ = both_done_then_a_conflicts()
    state.apply(ev.BranchMerged(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", branch="task/a"))
    conflicted(state, "b", paths=(), reason="branch task/b does not exist")  # nothing an agent could resolve
    assert resolutions(decide(state)) == []


def test_resolutions_respect_the_concurrency_cap():
    state, _ = both_done_then_a_conflicts(max_concurrency=1)
    state.tasks["b"].status = "dispatched"  # the only slot is taken
    assert resolutions(decide(state)) == []


def test_a_persons_rerun_is_a_new_attempt_that_does_not_spend_a_try():
    state, _ = both_done_then_a_conflicts(on_conflict="manual")
    assert [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)] == []  # a person decides
    reset = ev.BranchReset(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", branch="task/a", attempt=1)
    state.apply(reset)
    [ready] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    assert (ready.task_id, ready.attempt, ready.purpose, ready.branch) == ("a", 2, "task", "task/a-a")
    assert ready.selection.inputs.tries == 1  # a first try again: no escalation
    state.apply(reset)  # a redelivery changes nothing
    assert decide(state) == []
    finish(state, "a", attempt=2, outcome="failure", error="boom")
    assert [(e.type, getattr(e, "final", None)) for e in apply_all(state, decide(state))
            if isinstance(e, ev.TaskFailed)] == [("TaskFailed", False)]  # max_attempts 2: one more try
