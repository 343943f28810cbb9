"""The executor's decisions without NATS, PostgreSQL or git: what one delivery of a TaskReady
does, given what the log says of its attempt and its run."""

from __future__ import annotations

from shared import events as ev
from services.executor import domain

READY = ev.TaskReady(project_id="p", aggregate_id="r-t", run_id="r", task_id="t", attempt=2)


def task_event(cls, **kw):
    return cls(project_id="p", aggregate_id="r-t", run_id="r", task_id="t", **kw)


def test_a_fresh_attempt_runs():
    view = domain.fold([READY], READY)
    assert domain.decide(view) == "run" and view.interrupted == 0


def test_an_interrupted_attempt_resumes_and_says_how_often():
    view = domain.fold([READY, task_event(ev.AgentStarted, attempt=2), task_event(ev.AgentStarted, attempt=2)],
                       READY)
    assert domain.decide(view) == "run" and view.interrupted == 2


def test_a_finished_attempt_is_never_run_twice():
    view = domain.fold([task_event(ev.AgentStarted, attempt=2), task_event(ev.AgentFinished, attempt=2)], READY)
    assert domain.decide(view) == "skip"


def test_another_attempts_finish_does_not_count():
    view = domain.fold([task_event(ev.AgentFinished, attempt=1)], READY)
    assert domain.decide(view) == "run"


def test_cancelled_task_or_run_is_reported_once_as_cancelled():
    assert domain.decide(domain.fold([task_event(ev.TaskCancelled)], READY)) == "cancel"
    run_cancelled = ev.RunCancelled(project_id="p", aggregate_id="r", run_id="r")
    assert domain.decide(domain.fold([run_cancelled], READY)) == "cancel"


def test_nothing_starts_after_the_run_ended():
    for end in (ev.RunCompleted, ev.RunFailed):
        assert domain.decide(domain.fold([end(project_id="p", aggregate_id="r", run_id="r")], READY)) == "skip"


def test_other_runs_do_not_matter():
    other = ev.RunCompleted(project_id="p", aggregate_id="q", run_id="q")
    assert domain.decide(domain.fold([other], READY)) == "run"


def test_the_lease_key_is_the_attempts_identity():
    assert domain.lease_key(READY) == "r.t.2"
    odd = ev.TaskReady(project_id="p", aggregate_id="x", run_id="r.1", task_id="日本 語", attempt=1)
    assert "." not in domain.lease_key(odd).replace(".", "", 2)


def test_a_success_whose_holder_died_before_the_commit_is_committed_by_its_next_delivery():
    finished = task_event(ev.AgentFinished, attempt=2, commit_follows=True, worktree_path="/w/t", branch="task/t")
    view = domain.fold([task_event(ev.AgentStarted, attempt=2), finished], READY)
    assert domain.decide(view) == "commit" and view.uncommitted == finished and view.interrupted == 0
    committed = task_event(ev.WorkCommitted, attempt=2, commit="c0ffee", branch="task/t")
    assert domain.decide(domain.fold([finished, committed], READY)) == "skip"
    assert domain.decide(domain.fold([finished, task_event(ev.WorkCommitted, attempt=1)], READY)) == "commit"
    run_failed = ev.RunFailed(project_id="p", aggregate_id="r", run_id="r")
    assert domain.decide(domain.fold([finished, run_failed], READY)) == "skip"  # nothing is merged after the end
    # an AgentFinished that carries its commit (other outcomes, older versions) has nothing left to do
    assert domain.decide(domain.fold([task_event(ev.AgentFinished, attempt=2, commit="c0ffee")], READY)) == "skip"


def test_only_an_admission_that_gives_a_slot_lets_a_redelivered_attempt_start_at_once():
    candidate = task_event(ev.AgentAdmitted, attempt=2, candidate=True, rank=4)
    assert not domain.fold([READY, candidate], READY).admitted  # it waits for a slot handed over, or given
    assert domain.fold([READY, candidate, task_event(ev.AgentAdmitted, attempt=2)], READY).admitted
    assert domain.fold([READY, candidate, task_event(ev.AgentStarted, attempt=2)], READY).admitted
