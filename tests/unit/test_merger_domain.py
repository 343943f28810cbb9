"""The merger's decisions without NATS, PostgreSQL or git: a merge is keyed by (run, task,
attempt), a recorded merge answers its redelivery, a run's end silences it, batches complete."""

from __future__ import annotations

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from services.merger import domain

PLAN = {"name": "p", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "a", "title": "A"}, {"id": "b", "title": "B"}, {"id": "c", "title": "C", "depends_on": ["a"]}]}]}


def started(strategy: str = "by_task") -> ev.RunStarted:
    return ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(PLAN), repo_path="/repo",
                         settings=RunSettings.of({"parallel": {"strategy": strategy}}))


def finished(task: str, attempt: int = 1, outcome: str = "success") -> ev.AgentFinished:
    return ev.AgentFinished(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, attempt=attempt,
                            outcome=outcome, branch=f"task/{task}", worktree_path=f"/repo/.worktrees/task-{task}")


def merged(task: str, attempt: int = 1, commit: str = "c0ffee") -> ev.BranchMerged:
    return ev.BranchMerged(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, attempt=attempt,
                           branch=f"task/{task}", commit=commit)


def fold(*events: ev.Event) -> tuple[domain.MergerState, domain.RunView]:
    state = domain.MergerState()
    for e in (started(), *events):
        view = state.apply(e)
    return state, view


def test_a_finished_attempt_is_merged_under_its_identity():
    _, view = fold(finished("a"))
    action = domain.decide(view, finished("a"))
    assert action == domain.Merge("a", "task/a", 1, None)
    assert domain.merge_msg_id("r", "a", 1) == "r:a:1:BranchMerged"
    assert domain.merge_trailers("r", "a", 1)["YokeFlow-Attempt"] == "1"


def test_a_redelivered_attempt_gets_its_recorded_merge_not_a_second_one():
    record = merged("a", commit="m1")
    _, view = fold(finished("a"), record)
    action = domain.decide(view, finished("a"))
    assert isinstance(action, domain.Merge) and action.recorded == record


def test_a_later_attempt_of_the_same_task_is_a_new_merge():
    _, view = fold(finished("a"), merged("a"), finished("a", attempt=2))
    action = domain.decide(view, finished("a", attempt=2))
    assert isinstance(action, domain.Merge) and action.attempt == 2 and action.recorded is None


def test_a_merge_request_merges_the_latest_successful_attempt():
    _, view = fold(finished("a", attempt=3))
    request = ev.MergeRequested(project_id="p", aggregate_id="r-a", run_id="r", task_id="a")
    assert domain.decide(view, request) == domain.Merge("a", "task/a", 3, None)
    unknown = ev.MergeRequested(project_id="p", aggregate_id="r-z", run_id="r", task_id="z")
    assert isinstance(domain.decide(view, unknown), domain.Ignore)


def test_nothing_is_merged_after_the_run_ends():
    completed = ev.RunCompleted(project_id="p", aggregate_id="r", run_id="r")
    _, view = fold(finished("a"), completed)
    assert isinstance(domain.decide(view, finished("a")), domain.Ignore)
    assert isinstance(domain.decide(view, completed), domain.Cleanup)


def test_failed_attempts_are_not_merged():
    _, view = fold()
    assert isinstance(domain.decide(view, finished("a", outcome="failure")), domain.Ignore)


def test_a_batch_completes_once_when_its_last_task_is_merged():
    batches = ev.BatchesComputed(project_id="p", aggregate_id="r", run_id="r", batches=[["a", "b"], ["c"]])
    _, view = fold(batches, merged("a"))
    assert domain.complete_batches(view) == []
    _, view = fold(batches, merged("a"), merged("b"))
    assert domain.complete_batches(view) == [0]
    done = ev.BatchMerged(project_id="p", aggregate_id="r-0", run_id="r", batch=0, task_ids=["a", "b"])
    _, view = fold(batches, merged("a"), merged("b"), done)
    assert domain.complete_batches(view) == []


def test_worktrees_are_released_by_strategy():
    view = domain.MergerState().apply(started("by_task"))
    assert domain.releases_worktree(view, "a") is True  # by task: with its own merge
    state = domain.MergerState()  # by epic: with the epic's last merge (its worktree is the epic's)
    for e in (started("by_epic"), merged("a"), merged("c")):
        view = state.apply(e)
    assert domain.releases_worktree(view, "c") is False
    view = state.apply(merged("b"))
    assert domain.releases_worktree(view, "b") is True


def test_a_persons_accept_pins_the_commit_and_a_rerun_sets_the_attempt_aside_once():
    _, view = fold(finished("a"))
    accept = ev.MergeRequested(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", action="accept",
                               commit="f" * 40)
    assert domain.decide(view, accept) == domain.Merge("a", "task/a", 1, None, commit="f" * 40)
    rerun = ev.MergeRequested(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", action="rerun",
                              requested_by="ada")
    assert domain.decide(view, rerun) == domain.Reset("a", "task/a", 1, "ada")
    assert domain.set_aside_ref("r", "a", 1) == "refs/yokeflow/set-aside/r/a/1"
    reset = ev.BranchReset(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", branch="task/a", attempt=1)
    _, view = fold(finished("a"), reset)
    assert domain.decide(view, rerun).recorded == reset  # a repeat re-announces, never resets twice
    _, view = fold(finished("a"), merged("a"))
    assert isinstance(domain.decide(view, rerun), domain.Ignore)  # merged already: nothing to rerun


def test_a_merge_commit_is_titled_from_the_plan_parsed_once():
    view = domain.RunView(ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", repo_path="/repo", plan=PlanDoc.of({
        "name": "x", "epics": [{"id": "E", "name": "E", "tasks": [{"id": 7, "title": "Seven"}]}]})))
    assert view.task_title("7") == "Seven" and view.task_title("missing") == ""
    assert view.plan() is view.plan()
    broken = domain.RunView(ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", repo_path="/repo", plan=PlanDoc(name="x")))
    assert broken.task_title("7") == "" and broken.lanes() == {}


def test_work_committed_after_its_agent_finished_is_merged_on_its_work_committed():
    follows = ev.AgentFinished(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", attempt=1,
                               outcome="success", branch="task/a", commit_follows=True)
    _, view = fold(follows)
    assert isinstance(domain.decide(view, follows), domain.Ignore)  # nothing committed yet
    committed = ev.WorkCommitted(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", attempt=1,
                                 commit="c0ffee", branch="task/a")
    _, view = fold(follows, committed)
    assert domain.decide(view, committed) == domain.Merge("a", "task/a", 1, None)
    record = merged("a")
    _, view = fold(follows, committed, record)
    assert domain.decide(view, committed) == domain.Merge("a", "task/a", 1, record)  # redelivered: its record
    lost = ev.WorkCommitted(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", attempt=1,
                            branch="task/a", error="the attempt's worktree /w is gone")
    assert isinstance(domain.decide(fold(follows, lost)[1], lost), domain.Ignore)
