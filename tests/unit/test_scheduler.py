"""The scheduler as a pure fold: decisions from events, no I/O."""

from __future__ import annotations

import msgspec

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from services.planner.scheduler import RunState, decide

DIAMOND = {"name": "d", "epics": [
    {"id": "E1", "name": "One", "tasks": [
        {"id": "a", "title": "A", "estimate_minutes": 1},
        {"id": "b", "title": "B", "depends_on": ["a"], "estimate_minutes": 5},
    ]},
    {"id": "E2", "name": "Two", "tasks": [
        {"id": "c", "title": "C", "depends_on": ["a"], "estimate_minutes": 1},
        {"id": "d", "title": "D", "depends_on": ["b", "c"], "complexity": "low"},
    ]},
]}


def started(plan=DIAMOND, **parallel):
    settings = {"parallel": {"max_concurrency": 3, "strategy": "by_task", "max_attempts": 2, **parallel},
                "agent": {"provider": "replay", "transcripts": "/t"}, "learning": {"enabled": False}}
    return ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(plan), repo_path="/repo",
                         settings=RunSettings.of(settings))


def apply_all(state, decisions):
    for e, _ in decisions:
        state.apply(e)
    return [e for e, _ in decisions]


def ready_ids(events):
    return [e.task_id for e in events if isinstance(e, ev.TaskReady)]


def admitted_ids(events):
    """Attempts given a free agent slot (not candidates, which wait for a slot handed over)."""
    return [e.task_id for e in events if isinstance(e, ev.AgentAdmitted) and not e.candidate]


def candidate_ids(events):
    return [e.task_id for e in events if isinstance(e, ev.AgentAdmitted) and e.candidate]


def prepared(state, task, attempt=0):
    """The attempt's executor made its worktree and waits for an agent slot."""
    state.apply(ev.WorktreeCreated(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task,
                                   path=f"/w/{task}", branch=f"task/{task}", attempt=attempt))


def wide(n):
    """One epic of `n` tasks that need nothing of each other: x0, x1, ..."""
    return {"name": "w", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": f"x{i}", "title": f"X{i}"} for i in range(n)]}]}


def all_prepared(n, **parallel):
    """A run of `wide(n)` whose dispatched attempts all made their worktrees: its state, and what
    it decides next (folded in)."""
    state = RunState.start(started(wide(n), **parallel))
    for task in ready_ids(apply_all(state, decide(state))):
        prepared(state, task)
    return state, apply_all(state, decide(state))


def finish(state, task, outcome="success", attempt=1, error="", slot_to=""):
    e = ev.AgentFinished(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, attempt=attempt,
                         outcome=outcome, summary=f"did {task}", error=error, commit="c" + task,
                         slot_to=slot_to, slot_to_attempt=1 if slot_to else 0)
    state.apply(e)
    return e


def merge(state, task):
    state.apply(ev.BranchMerged(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task,
                                branch=f"task/{task}", commit="m" + task))


def test_dependents_wait_for_merge_not_just_success():
    state = RunState.start(started())
    first = apply_all(state, decide(state))
    assert [e.type for e in first][:1] == ["BatchesComputed"]
    assert ready_ids(first) == ["a"]
    finish(state, "a")
    after_success = apply_all(state, decide(state))
    assert [e.type for e in after_success] == ["TaskCompleted"]  # not merged yet: nothing new runs
    merge(state, "a")
    after_merge = apply_all(state, decide(state))
    assert ready_ids(after_merge) == ["b", "c"]  # critical path first: b (5 min) before c (1 min)
    ready_b = next(e for e in after_merge if e.task_id == "b")
    assert ready_b.dependency_summaries == [ev.DependencySummary(task_id="a", title="A", summary="did a")]
    assert ready_b.provider_options.transcript == "/t/b.json"


def test_concurrency_cap_and_by_epic_exclusivity():
    two_epics = {"name": "w", "epics": [
        {"id": "E1", "name": "One", "tasks": [{"id": f"x{i}", "title": f"X{i}"} for i in range(5)]},
        {"id": "E2", "name": "Two", "tasks": [{"id": f"y{i}", "title": f"Y{i}"} for i in range(5)]},
    ]}
    state = RunState.start(started(two_epics, max_concurrency=3))
    first = apply_all(state, decide(state))
    # three agents' worth, and three more attempts whose worktrees are made meanwhile
    assert ready_ids(first) == ["x0", "x1", "x2", "x3", "x4", "y0"] and admitted_ids(first) == []
    for task in ready_ids(first):
        prepared(state, task)
    given = apply_all(state, decide(state))
    # the cap holds; the next three are candidates for a slot an ending agent hands over, ranked
    assert admitted_ids(given) == ["x0", "x1", "x2"] and candidate_ids(given) == ["x3", "x4", "y0"]
    assert [e.rank for e in given if isinstance(e, ev.AgentAdmitted) and e.candidate] == [3, 4, 5]
    assert state.in_flight() == 3 and decide(state) == []
    finish(state, "x0")
    after = apply_all(state, decide(state))
    assert ready_ids(after) == ["y1"] and admitted_ids(after) == ["x3"]  # no handover: the earliest ready
    finish(state, "x1", slot_to="y0")  # x1's executor handed its slot to its candidate y0
    assert state.tasks["y0"].running and state.in_flight() == 3
    assert admitted_ids(apply_all(state, decide(state))) == []  # y0 holds the slot: none is free

    state = RunState.start(started(two_epics, max_concurrency=3, slot_handover=False))
    for task in ready_ids(apply_all(state, decide(state))):
        prepared(state, task)
    given = apply_all(state, decide(state))
    assert admitted_ids(given) == ["x0", "x1", "x2"] and candidate_ids(given) == []  # slots only once free

    state = RunState.start(started(two_epics, strategy="by_epic", max_concurrency=3))
    first = ready_ids(apply_all(state, decide(state)))
    assert first == ["x0", "y0"]  # one task per epic at a time
    assert ready_ids(apply_all(state, decide(state))) == []
    finish(state, "x0")
    apply_all(state, decide(state))
    assert ready_ids(apply_all(state, decide(state))) == []  # x0's branch is not merged yet
    merge(state, "x0")
    [x1] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    assert x1.task_id == "x1" and x1.branch == "epic/e1-one"  # the epic's branch, reused


def test_failure_retries_with_a_stronger_model_then_blocks_dependents():
    state = RunState.start(started())
    apply_all(state, decide(state))
    finish(state, "a", outcome="failure", error="tests failed")
    retry = apply_all(state, decide(state))
    assert [e.type for e in retry] == ["TaskFailed", "TaskReady"]
    assert retry[0].final is False and retry[1].attempt == 2
    assert retry[1].previous_attempt.error == "tests failed"
    # a is on the critical path: the strongest tier from the start, and a retry stays there
    assert retry[1].model == "claude-opus-5-5" and retry[1].selection.tier == "opus"
    assert any("critical" in r for r in retry[1].selection.reasons)
    finish(state, "a", outcome="failure", attempt=2, error="still failing")
    final = apply_all(state, decide(state))
    types = [e.type for e in final]
    assert types[0] == "TaskFailed" and final[0].final is True
    blocked = {e.task_id: e for e in final if isinstance(e, ev.TaskBlocked)}
    assert set(blocked) == {"b", "c", "d"}
    assert "a failed" in blocked["b"].reason
    assert types[-1] == "RunFailed" and final[-1].counts == ev.TaskCounts(done=0, failed=1, blocked=3,
                                                             cancelled=0, total=4)


def test_run_completes_with_counts_and_latency_stats():
    state = RunState.start(started())
    apply_all(state, decide(state))
    for wave in (["a"], ["b", "c"], ["d"]):
        for t in wave:
            finish(state, t)
            merge(state, t)
        out = apply_all(state, decide(state))
    assert out[-1].type == "RunCompleted"
    assert out[-1].counts.done == 4
    assert out[-1].stats.dependency_ready_latency_s.count == 3
    assert decide(state) == []


def test_restarted_planner_decides_nothing_twice():
    state = RunState.start(started())
    log = [started()]
    log += apply_all(state, decide(state))
    log.append(finish(state, "a"))
    log += apply_all(state, decide(state))
    # A new planner folds the same log and has nothing left to decide...
    fresh = RunState.start(log[0])
    for e in log[1:]:
        fresh.apply(e)
    assert decide(fresh) == []
    # ...and a redelivered event changes nothing.
    assert fresh.apply(log[-1]) is False


def test_batch_barrier_waits_for_the_whole_previous_batch():
    plan = {"name": "b", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "a", "title": "A"}, {"id": "s", "title": "Slow"},
        {"id": "b", "title": "B", "depends_on": ["a"]}]}]}
    free = RunState.start(started(plan))
    apply_all(free, decide(free))
    finish(free, "a"), merge(free, "a")
    assert ready_ids(apply_all(free, decide(free))) == ["b"]  # default: no barrier

    barrier = RunState.start(started(plan, batch_barrier=True))
    apply_all(barrier, decide(barrier))
    finish(barrier, "a"), merge(barrier, "a")
    assert ready_ids(apply_all(barrier, decide(barrier))) == []  # "s" of batch 0 still running
    finish(barrier, "s"), merge(barrier, "s")
    assert ready_ids(apply_all(barrier, decide(barrier))) == ["b"]


def test_cancellation_and_budget_stop_dispatch():
    state = RunState.start(started())
    apply_all(state, decide(state))
    state.apply(ev.RunCancelled(project_id="p", aggregate_id="r", run_id="r"))
    out = apply_all(state, decide(state))
    assert {e.task_id for e in out if isinstance(e, ev.TaskCancelled)} == {"b", "c", "d"}
    assert not ready_ids(out)

    state = RunState.start(started())
    apply_all(state, decide(state))
    state.apply(ev.BudgetExhausted(project_id="p", aggregate_id="r", run_id="r"))
    finish(state, "a"), merge(state, "a")
    out = apply_all(state, decide(state))
    assert not ready_ids(out)  # nothing new starts, and nothing is cancelled: the run waits for more budget
    assert not [e for e in out if isinstance(e, (ev.TaskCancelled, ev.RunFailed, ev.RunCompleted))]


def test_an_attempt_stopped_by_the_budget_goes_back_to_pending_until_the_budget_is_raised():
    state = RunState.start(started())
    [first] = apply_all(state, decide(state))[1:]
    finish(state, "a", outcome="budget", error="run budget of $1 has no room")
    out = apply_all(state, decide(state))
    assert [e.type for e in out] == ["TaskDeferred"]  # not failed, not retried yet
    assert out[0].reason == "budget" and "no room" in out[0].detail
    assert state.tasks["a"].status == "pending" and state.tasks["a"].tries == 0
    assert decide(state) == []
    state.apply(ev.BudgetSet(project_id="p", aggregate_id="r", run_id="r", scope="run", limit_exact="5"))
    [again] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    assert again.task_id == "a" and again.attempt == 2 and again.selection.inputs.tries == 1
    assert again.cost.run_budget_usd == "5"
    # an attempt refused under the old budget, reporting after the raise, does not stop the run again
    finish(state, "a", outcome="budget", attempt=1)
    assert state.budget_exhausted is False


def test_invalid_plan_fails_the_run_naming_the_cycle():
    cyclic = {"name": "c", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "a", "title": "A", "depends_on": ["b"]}, {"id": "b", "title": "B", "depends_on": ["a"]}]}]}
    state = RunState.start(started(cyclic))
    [(failed, _)] = decide(state)
    assert failed.type == "RunFailed" and "cycle" in failed.reason


def test_rate_limit_pauses_the_run_without_spending_a_try():
    state = RunState.start(started())
    apply_all(state, decide(state))
    e = ev.AgentFinished(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", attempt=1,
                         outcome="rate_limited", error="429 x3", retry_after_s=12.0)
    state.apply(e)
    out = apply_all(state, decide(state))
    assert [x.type for x in out] == ["TaskFailed", "RunPaused"]
    assert out[0].final is False and out[1].resume_after_s == 12.0
    assert not ready_ids(out)  # paused: nothing dispatches
    state.apply(ev.RunResumed(project_id="p", aggregate_id="r", run_id="r"))
    [retry] = [x for x in apply_all(state, decide(state)) if isinstance(x, ev.TaskReady)]
    assert retry.attempt == 2 and retry.selection.inputs.tries == 1  # not escalated: the first try never ran out
    finish(state, "a", outcome="failure", attempt=2, error="real failure")
    out = apply_all(state, decide(state))
    assert out[0].type == "TaskFailed" and out[0].final is False  # one real try spent of two


def test_parallel_disabled_runs_one_attempt_at_a_time():
    state = RunState.start(started(enabled=False, max_concurrency=3))
    apply_all(state, decide(state))
    finish(state, "a")
    merge(state, "a")
    assert ready_ids(apply_all(state, decide(state))) == ["b", "c"]  # both dispatched: their worktrees are made
    prepared(state, "c"), prepared(state, "b")
    assert admitted_ids(apply_all(state, decide(state))) == ["b"]  # one runs


def learned(state, task, attempt=1):
    state.apply(ev.LearningExtracted(project_id="p", aggregate_id="general", run_id="r", task_id=task,
                                     attempt=attempt))


def test_with_learning_on_a_dependent_starts_only_once_its_dependency_s_learning_is_stored():
    learning_on = {"parallel": {"max_concurrency": 3, "strategy": "by_task"}, "agent": {"provider": "replay"}}
    state = RunState.start(msgspec.structs.replace(started(), settings=RunSettings.of(learning_on)))
    first = apply_all(state, decide(state))
    assert ready_ids(first) == ["a"] and first[-1].expertise_domains == ["general"]
    finish(state, "a")
    apply_all(state, decide(state))
    merge(state, "a")
    assert ready_ids(apply_all(state, decide(state))) == []  # merged, but what it taught is not stored yet
    learned(state, "a")
    assert ready_ids(apply_all(state, decide(state))) == ["b", "c"]
    for task in ("b", "c"):
        finish(state, task)
        apply_all(state, decide(state))
        merge(state, task)
        learned(state, task)
    assert ready_ids(apply_all(state, decide(state))) == ["d"]
    finish(state, "d")
    apply_all(state, decide(state))
    merge(state, "d")
    assert not any(isinstance(e, ev.RunCompleted) for e in apply_all(state, decide(state)))  # d's learning pending
    learned(state, "d")
    assert any(isinstance(e, ev.RunCompleted) for e in apply_all(state, decide(state)))


def test_with_learning_off_no_expertise_is_given():
    state = RunState.start(started())
    assert all(e.expertise_domains == [] for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady))


def delivery_failed(of: ev.Event, consumer: str = "executor") -> ev.DeliveryFailed:
    return ev.delivery_failed(of, consumer=consumer, failed_subject="yf.evt.x", stream_seq=7, deliveries=2,
                              error="RuntimeError: handler broke")


def test_a_task_whose_ready_event_no_executor_can_take_fails_then_retries_then_ends_the_run():
    state = RunState.start(started(max_attempts=2))
    [ready] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    failure = delivery_failed(ready)
    assert (failure.run_id, failure.task_id, failure.attempt, failure.failed_event_id) == ("r", "a", 1, ready.event_id)
    state.apply(failure)
    retry = apply_all(state, decide(state))
    failed = [e for e in retry if isinstance(e, ev.TaskFailed)]
    assert len(failed) == 1 and not failed[0].final and "executor gave up on TaskReady" in failed[0].reason
    [again] = [e for e in retry if isinstance(e, ev.TaskReady)]
    assert again.attempt == 2 and again.previous_attempt.error.startswith("delivery failed")
    state.apply(delivery_failed(again))
    end = apply_all(state, decide(state))
    assert [e.type for e in end] == ["TaskFailed", "TaskBlocked", "TaskBlocked", "TaskBlocked", "RunFailed"]
    assert end[0].final and "handler broke" in end[-1].reason and "task a" in end[-1].reason
    assert decide(state) == []


def test_a_merge_no_merger_could_do_fails_the_attempt():
    state = RunState.start(started(max_attempts=1))
    apply_all(state, decide(state))
    done = finish(state, "a")
    assert [e.type for e in apply_all(state, decide(state))] == ["TaskCompleted"]
    state.apply(delivery_failed(done, consumer="merger"))
    out = apply_all(state, decide(state))
    assert out[0].type == "TaskFailed" and out[0].final and "merger gave up on AgentFinished" in out[0].reason
    assert out[-1].type == "RunFailed"


def test_a_run_event_no_consumer_could_handle_fails_the_run_with_its_reason():
    state = RunState.start(started())
    first = apply_all(state, decide(state))
    state.apply(delivery_failed(first[0], consumer="merger"))  # BatchesComputed
    [end] = apply_all(state, decide(state))
    assert isinstance(end, ev.RunFailed) and end.reason.startswith("delivery failed: merger gave up on BatchesComputed")
    assert decide(state) == []


def test_a_read_model_falling_behind_does_not_fail_the_work():
    state = RunState.start(started())
    [ready] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    state.apply(delivery_failed(ready, consumer="ledger"))
    assert decide(state) == []  # a is still running; nothing else to decide


def test_with_learning_on_a_delivery_failure_still_ends_the_run():
    learning_on = {"parallel": {"max_concurrency": 3, "strategy": "by_task", "max_attempts": 1}}
    state = RunState.start(msgspec.structs.replace(started(), settings=RunSettings.of(learning_on)))
    [ready] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    state.apply(delivery_failed(ready))  # no agent ran, so there is no learning to wait for
    assert apply_all(state, decide(state))[-1].type == "RunFailed"


def test_a_learner_that_gives_up_does_not_hold_the_run():
    learning_on = {"parallel": {"max_concurrency": 3, "strategy": "by_task"}}
    state = RunState.start(msgspec.structs.replace(started(), settings=RunSettings.of(learning_on)))
    apply_all(state, decide(state))
    done = finish(state, "a")
    apply_all(state, decide(state))
    merge(state, "a")
    assert ready_ids(apply_all(state, decide(state))) == []  # waiting for a's learning
    state.apply(delivery_failed(done, consumer="learner"))
    assert ready_ids(apply_all(state, decide(state))) == ["b", "c"]


def test_model_selection_is_wired_in_complexity_estimate_budget_left_and_reasons():
    plan = {"name": "m", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "sec", "title": "Encrypt the auth tokens and migrate the schema"},
        {"id": "doc", "title": "Fix a typo in the README docs", "depends_on": []},
        {"id": "later", "title": "Later", "complexity": "medium", "depends_on": ["sec"]}]}]}
    settings = RunSettings.of({"parallel": {"strategy": "by_task"}, "agent": {"provider": "replay"},
                               "learning": {"enabled": False}, "cost": {"run_budget_usd": 1, "models": {"opus": "claude-opus-4-6",
                                                                         "sonnet": "claude-sonnet-4-6",
                                                                         "haiku": "claude-haiku-4-5"}}})
    state = RunState.start(ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(plan), repo_path="/repo",
                                         settings=settings))
    ready = {e.task_id: e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)}
    sec = ready["sec"]
    assert sec.complexity == "high" and sec.model == "claude-opus-4-6"  # the estimator, and ids from cost.models
    assert sec.selection.inputs.complexity_source == "estimated"
    assert ready["doc"].complexity == "low" and ready["doc"].model == "claude-haiku-4-5"
    assert sec.cost.run_budget_usd == "1" and sec.cost.enforcement == "hard"
    # 95 % of the run's budget spent: the next attempt gets the cheapest tier, and says why
    state.apply(ev.CostRecorded(project_id="p", aggregate_id="r-sec", run_id="r", task_id="sec", cost_usd=0.95,
                                cost_exact="0.95"))
    finish(state, "sec")
    apply_all(state, decide(state))
    merge(state, "sec")
    [later] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    assert later.model == "claude-haiku-4-5" and "budget" in later.selection.reasons[0]


def test_decide_leaves_the_state_it_is_given_as_it_was():
    state = RunState.start(started())
    before = (dict((t.id, (t.status, t.attempt)) for t in state.tasks.values()), state.batches_announced)
    first = decide(state)
    assert (dict((t.id, (t.status, t.attempt)) for t in state.tasks.values()), state.batches_announced) == before
    again = decide(state)  # the same state decides the same thing
    assert [(e.type, key) for e, key in first] == [(e.type, key) for e, key in again]
    apply_all(state, first)
    assert state.tasks["a"].status == "dispatched" and decide(state) == []


def test_a_free_slot_goes_only_to_a_staged_attempt_whose_worktree_is_ready():
    state = RunState.start(started(wide(4), max_concurrency=2))
    first = apply_all(state, decide(state))
    assert ready_ids(first) == ["x0", "x1", "x2", "x3"] and admitted_ids(first) == []
    prepared(state, "x1")
    assert admitted_ids(apply_all(state, decide(state))) == ["x1"]
    prepared(state, "x0"), prepared(state, "x3")
    assert admitted_ids(apply_all(state, decide(state))) == ["x0"]
    assert decide(state) == []  # x3 is ready too, but no slot is free
    finish(state, "x0")
    assert admitted_ids(apply_all(state, decide(state))) == ["x3"]  # x2 comes first in order, but only x3 can start
    finish(state, "x1")
    assert admitted_ids(apply_all(state, decide(state))) == []  # a slot is free, but x2's worktree is not ready
    prepared(state, "x2")
    assert admitted_ids(apply_all(state, decide(state))) == ["x2"]
    # a worktree of an earlier attempt says nothing about the current one
    state.apply(ev.WorktreeCreated(project_id="p", aggregate_id="r-x3", run_id="r", task_id="x3", path="/w/x3",
                                   branch="task/x3", attempt=7))
    assert state.tasks["x3"].running

def test_no_agent_is_admitted_while_the_run_is_paused_and_a_cancelled_staged_attempt_frees_its_place():
    state, given = all_prepared(5, max_concurrency=2)
    assert admitted_ids(given) == ["x0", "x1"]
    state.apply(ev.RunPaused(project_id="p", aggregate_id="r", run_id="r", reason="a person paused it"))
    finish(state, "x0")
    out = apply_all(state, decide(state))
    assert not admitted_ids(out) and not ready_ids(out) and state.in_flight() == 1
    state.apply(ev.RunResumed(project_id="p", aggregate_id="r", run_id="r"))
    out = apply_all(state, decide(state))
    assert admitted_ids(out) == ["x2"] and ready_ids(out) == ["x4"]
    # a staged attempt whose executor gave up before its slot (cancelled before start)
    finish(state, "x3", outcome="cancelled", error="cancelled before start")
    out = apply_all(state, decide(state))
    assert [e.type for e in out] == ["TaskCancelled"] and state.in_flight() == 2 and state.staged == {"x4"}


def test_an_attempt_started_by_a_version_without_admission_holds_its_slot():
    log = [started(wide(4), max_concurrency=1)]
    state = RunState.start(log[0])
    ready = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    old = RunState.start(log[0])  # the same run folded from a log an older planner wrote: no AgentAdmitted
    for e in ready:
        old.apply(e)
    old.apply(ev.AgentStarted(project_id="p", aggregate_id="r-x0", run_id="r", task_id="x0", attempt=1))
    assert old.in_flight() == 1 and admitted_ids(apply_all(old, decide(old))) == []


def finish_then_commit(state, task, attempt=1):
    """A success as the executor reports it: AgentFinished (the slot frees), then its WorkCommitted."""
    state.apply(ev.AgentFinished(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, attempt=attempt,
                                 outcome="success", summary=f"did {task}", commit_follows=True))
    between = apply_all(state, decide(state))
    commit = ev.WorkCommitted(project_id="p", aggregate_id=f"r-{task}", run_id="r", task_id=task, attempt=attempt,
                              commit="c" + task, branch=f"task/{task}")
    return between, commit


def test_a_success_is_completed_on_its_commit_while_its_slot_frees_at_its_agents_end():
    plan = {"name": "w", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "a", "title": "A"}, {"id": "b", "title": "B"}, {"id": "c", "title": "C", "depends_on": ["a"]}]}]}
    state = RunState.start(started(plan, max_concurrency=1))
    apply_all(state, decide(state))
    prepared(state, "a"), prepared(state, "b")
    assert admitted_ids(apply_all(state, decide(state))) == ["a"]
    between, commit = finish_then_commit(state, "a")
    assert admitted_ids(between) == ["b"]  # a's slot went to b as a's agent ended, before its commit
    assert not [e for e in between if isinstance(e, ev.TaskCompleted)]  # a is not complete without its commit
    state.apply(commit)
    [completed] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskCompleted)]
    assert completed.task_id == "a" and completed.commit == "ca"


def test_work_that_could_not_be_committed_fails_its_attempt_and_is_tried_again():
    state = RunState.start(started(max_attempts=2))
    apply_all(state, decide(state))
    between, _ = finish_then_commit(state, "a")
    assert not [e for e in between if isinstance(e, (ev.TaskCompleted, ev.TaskFailed))]
    state.apply(ev.WorkCommitted(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", attempt=1,
                                 error="the attempt's worktree /w/a is gone: its work was never committed"))
    out = apply_all(state, decide(state))
    assert [e.type for e in out][:2] == ["TaskFailed", "TaskReady"] and not out[0].final
    assert "worktree /w/a is gone" in out[1].previous_attempt.error and out[1].attempt == 2


def test_an_executor_that_gives_up_on_a_commit_fails_the_attempt():
    state = RunState.start(started(max_attempts=1))
    [ready] = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
    finish_then_commit(state, "a")
    state.apply(delivery_failed(ready))
    out = apply_all(state, decide(state))
    assert out[0].type == "TaskFailed" and out[0].final and out[-1].type == "RunFailed"


def _ready_in_order(state) -> dict[str, ev.TaskReady]:
    """Each task finished and merged as soon as it is dispatched; the TaskReady of each."""
    out: dict[str, ev.TaskReady] = {}
    while True:
        new = [e for e in apply_all(state, decide(state)) if isinstance(e, ev.TaskReady)]
        if not new:
            return out
        for e in new:
            out[e.task_id] = e
            finish(state, e.task_id)
            apply_all(state, decide(state))
            merge(state, e.task_id)


def test_a_chain_on_its_own_branch_does_not_bring_the_target_in():
    """Under by_epic, b needs only a, done on E1's branch before it: b's worktree keeps to its branch.
    c needs a from another epic's branch, d needs b from another: they bring `main` in, as a lane's
    first task and a task without dependencies do. With squash merges, and under by_task, always."""
    def run(strategy: str, mode: str = "merge") -> dict[str, bool]:
        settings = {"parallel": {"max_concurrency": 3, "strategy": strategy}, "merge": {"mode": mode},
                    "agent": {"provider": "replay", "transcripts": "/t"}, "learning": {"enabled": False}}
        state = RunState.start(ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(DIAMOND),
                                             repo_path="/repo", settings=RunSettings.of(settings)))
        return {tid: e.update_from_target for tid, e in sorted(_ready_in_order(state).items())}

    assert run("by_epic") == {"a": True, "b": False, "c": True, "d": True}
    assert run("by_epic", mode="squash") == {"a": True, "b": True, "c": True, "d": True}
    assert run("by_task") == {"a": True, "b": True, "c": True, "d": True}


def test_a_slot_handed_over_is_held_by_its_heir_and_given_again_to_a_new_holder_of_it():
    state, given = all_prepared(3, max_concurrency=1)
    assert admitted_ids(given) == ["x0"] and candidate_ids(given) == ["x1"]  # the window: two dispatched
    finish(state, "x0", slot_to="x1")
    assert state.tasks["x1"].running and state.in_flight() == 1
    out = apply_all(state, decide(state))
    assert admitted_ids(out) == [] and ready_ids(out) == ["x2"]  # x1 holds x0's slot; x2 takes x0's place
    # x1's executor died before its start was appended: its attempt's new holder made the worktree again
    prepared(state, "x1", attempt=1)
    [(again, msg_id)] = [(e, k) for e, k in decide(state) if isinstance(e, ev.AgentAdmitted) and not e.candidate]
    assert again.task_id == "x1" and msg_id == "r:x1:1:AgentAdmitted:again:0"
    state.apply(again)
    assert state.in_flight() == 1 and not [e for e in decide(state) if isinstance(e, ev.AgentAdmitted)
                                          and not e.candidate]  # the slot it held, not another one
    state.apply(ev.AgentStarted(project_id="p", aggregate_id="r-x1", run_id="r", task_id="x1", attempt=1))
    prepared(state, "x1", attempt=1)  # a worktree made again after its start says nothing new
    assert state.in_flight() == 1 and not admitted_ids(apply_all(state, decide(state)))


def test_a_slot_handed_to_an_attempt_already_admitted_is_free_again():
    state, given = all_prepared(4, max_concurrency=2)
    assert admitted_ids(given) == ["x0", "x1"] and candidate_ids(given) == ["x2", "x3"]
    finish(state, "x0")  # no handover there: the scheduler gives x0's slot to x2
    assert admitted_ids(apply_all(state, decide(state))) == ["x2"]
    finish(state, "x1", slot_to="x2")  # x1's executor had not seen that admission: it named x2 too
    assert state.in_flight() == 1  # x2 runs once, in one slot: x1's is free
    assert admitted_ids(apply_all(state, decide(state))) == ["x3"] and state.in_flight() == 2
