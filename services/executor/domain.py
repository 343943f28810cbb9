"""The executor's decisions, pure: what one delivery of a `TaskReady` does, given the log.

State is a fold over the attempt's task events and its run's terminal events; the decision is
a function of that state (see services/planner/scheduler.py for the model). The service only
reads the log, holds the attempt's lease and runs the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

from shared import events as ev

RUN_ENDINGS = (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)

Action = Literal["skip", "cancel", "run", "commit"]


@dataclass(frozen=True)
class AttemptView:
    """What the log says about one attempt (run, task, attempt number)."""

    finished: bool = False  # an AgentFinished for this attempt exists: its effects are recorded
    cancelled: bool = False  # the task or the run was cancelled
    run_ended: bool = False  # RunCompleted or RunFailed: nothing more may be published for the run
    interrupted: int = 0  # AgentStarted for this attempt without its AgentFinished (a crashed holder)
    admitted: bool = False  # the scheduler gave the attempt a free agent slot (AgentAdmitted, or it started)
    uncommitted: ev.AgentFinished | None = None  # its success, whose WorkCommitted is not in the log


def fold(events: Iterable[ev.Event], ready: ev.TaskReady) -> AttemptView:
    finished = cancelled = ended = admitted = False
    started = 0
    success: ev.AgentFinished | None = None
    committed = False
    for e in events:
        if getattr(e, "run_id", None) != ready.run_id:
            continue
        match e:
            case ev.AgentFinished() if e.task_id == ready.task_id and e.attempt == ready.attempt:
                finished = True
                success = e if e.commit_follows else None
            case ev.WorkCommitted() if e.task_id == ready.task_id and e.attempt == ready.attempt:
                committed = True
            case ev.AgentStarted() if e.task_id == ready.task_id and e.attempt == ready.attempt:
                started += 1
            case ev.AgentAdmitted() if e.task_id == ready.task_id and e.attempt == ready.attempt and not e.candidate:
                admitted = True  # (a candidate waits for a slot handed over, or for an admission that gives one)
            case ev.TaskCancelled() if e.task_id == ready.task_id:
                cancelled = True
            case ev.RunCancelled():
                cancelled = True
            case ev.RunCompleted() | ev.RunFailed():
                ended = True
    return AttemptView(finished=finished, cancelled=cancelled, run_ended=ended,
                       interrupted=0 if finished else started, admitted=admitted or started > 0,
                       uncommitted=None if committed else success)


def decide(view: AttemptView) -> Action:
    """skip: already done, or the run is over; cancel: say so once; run: start (or resume) the agent;
    commit: the agent finished but its holder died before committing its work (and saying so)."""
    if view.run_ended:
        return "skip"
    if view.finished:
        return "commit" if view.uncommitted is not None else "skip"
    if view.cancelled:
        return "cancel"
    return "run"


def lease_key(ready: ev.TaskReady) -> str:
    """The attempt's identity as a lease key: at most one live agent per (run, task, attempt)."""
    return ".".join((ev.subject_token(ready.run_id), ev.subject_token(ready.task_id), str(ready.attempt)))
