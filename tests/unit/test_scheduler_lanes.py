"""The scheduler under parallel.strategy smart: a shared lane runs like an epic under by_epic
(one branch, one task in flight, busy until merged), a lane of one like by_task."""

from __future__ import annotations

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from services.planner.scheduler import RunState, decide
from tests.unit.test_scheduler import apply_all, finish, merge, ready_ids

PLAN = {"name": "smart", "epics": [
    {"id": "E1", "name": "Words", "tasks": [
        {"id": "a", "title": "Greeting A", "files": ["greeting.txt"]},
        {"id": "b", "title": "Greeting B", "description": "Rewrite greeting.txt"},  # predicted from its text
    ]},
    {"id": "E2", "name": "Other", "tasks": [
        {"id": "c", "title": "Unrelated", "files": ["other/"]},
        {"id": "d", "title": "Later", "depends_on": ["a"], "files": ["other/later.txt"]},
    ]},
]}


def started(plan=PLAN, **settings):
    parallel = {"max_concurrency": 3, "strategy": "smart", "max_attempts": 2, **settings.pop("parallel", {})}
    return ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(plan), repo_path="/repo",
                         settings=RunSettings.of({"parallel": parallel,
                                                  "agent": {"provider": "replay", "transcripts": "/t"},
                                                  "learning": {"enabled": False}, **settings}))


def ready(events) -> dict[str, ev.TaskReady]:
    return {e.task_id: e for e in events if isinstance(e, ev.TaskReady)}


def test_a_shared_lane_runs_one_task_at_a_time_on_its_branch_and_others_run_beside_it():
    state = RunState.start(started())
    assert state.lane_key == {"a": "a", "b": "a", "c": "c", "d": "c"}
    first = ready(apply_all(state, decide(state)))
    assert sorted(first) == ["a", "c"]  # b shares a's lane; d waits for a
    assert first["a"].branch == "lane/a-greeting-a" and first["a"].worktree == "lane-a-greeting-a"
    assert first["c"].branch == "lane/c-unrelated"  # c and d share other/
    finish(state, "a")
    apply_all(state, decide(state))
    assert ready_ids(apply_all(state, decide(state))) == []  # a succeeded but its lane's branch is not merged
    merge(state, "a")
    second = ready(apply_all(state, decide(state)))
    assert sorted(second) == ["b"]  # d is ready too, but c holds its lane
    assert (second["b"].branch, second["b"].worktree) == (first["a"].branch, first["a"].worktree)
    finish(state, "c")
    merge(state, "c")
    assert ready_ids(apply_all(state, decide(state))) == ["d"]


def test_a_lane_of_one_behaves_like_by_task():
    plan = {"name": "alone", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "x", "title": "X", "files": ["x.py"]}, {"id": "y", "title": "Y", "files": ["y.py"]},
        {"id": "z", "title": "Z"}]}]}
    smart = RunState.start(started(plan))
    by_task = RunState.start(started(plan, parallel={"strategy": "by_task"}))
    out_smart, out_task = apply_all(smart, decide(smart)), apply_all(by_task, decide(by_task))
    assert [(e.task_id, e.branch, e.worktree) for e in out_smart if isinstance(e, ev.TaskReady)] == \
        [(e.task_id, e.branch, e.worktree) for e in out_task if isinstance(e, ev.TaskReady)] == \
        [("x", "task/x", "task-x"), ("y", "task/y-y", "task-y-y"), ("z", "task/z-z", "task-z-z")]


def test_a_failed_attempt_frees_the_lane_and_its_retry_waits_its_turn():
    state = RunState.start(started())
    apply_all(state, decide(state))
    finish(state, "a", outcome="failure", error="tests failed")
    out = apply_all(state, decide(state))
    assert [e.type for e in out] == ["TaskFailed", "TaskReady"]  # the retry takes the free lane first
    assert out[1].task_id == "a" and out[1].attempt == 2 and out[1].branch == "lane/a-greeting-a"
    assert ready_ids(apply_all(state, decide(state))) == []


def test_a_conflict_holds_the_lane_and_its_resolution_runs_on_the_lane_branch():
    state = RunState.start(started(merge={"on_conflict": "agent"}))
    apply_all(state, decide(state))
    finish(state, "a")
    apply_all(state, decide(state))
    state.apply(ev.MergeConflicted(project_id="p", aggregate_id="r-a", run_id="r", task_id="a",
                                   branch="lane/a-greeting-a", target_branch="main",
                                   conflicts=[{"path": "greeting.txt", "kind": "content"}], reason="merge conflict"))
    out = ready(apply_all(state, decide(state)))
    assert list(out) == ["a"] and out["a"].purpose == "resolve_conflict"  # not b: the lane is still a's
    assert out["a"].branch == "lane/a-greeting-a"
    finish(state, "a", attempt=2)
    apply_all(state, decide(state))
    merge(state, "a")
    assert "b" in ready_ids(apply_all(state, decide(state)))
