"""The merger's decisions, pure: state is a fold over the run's events, and each decision is a
function of that state (the model is services/planner/scheduler.py). No git, no bus here.

A merge is keyed by (run, task, attempt): once the log records a `BranchMerged` for an attempt,
a redelivery re-announces that record instead of merging again, and nothing is published for a
run after its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared import events as ev
from shared.lanes import Lane, lane_of
from shared.plan import Plan, PlanError

ENDINGS = (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)


@dataclass
class RunView:
    started: ev.RunStarted
    batches: list[list[str]] = field(default_factory=list)
    merged: dict[str, ev.BranchMerged] = field(default_factory=dict)  # task -> its latest recorded merge
    by_attempt: dict[tuple[str, int], ev.BranchMerged] = field(default_factory=dict)
    announced: set[int] = field(default_factory=set)
    finished: dict[str, ev.AgentFinished] = field(default_factory=dict)  # task -> latest successful attempt
    reset: dict[tuple[str, int], ev.BranchReset] = field(default_factory=dict)  # (task, attempt) set aside
    ended: bool = False
    _lanes: dict[str, Lane] | None = None
    _plan: Plan | None = None
    _plan_parsed: bool = False

    def plan(self) -> Plan | None:
        """The run's plan, parsed once; None when it does not parse (the scheduler fails such a run)."""
        if not self._plan_parsed:
            self._plan_parsed = True
            try:
                self._plan = self.started.plan.to_plan()
            except PlanError:
                self._plan = None
        return self._plan

    def lanes(self) -> dict[str, Lane]:
        """Task id -> smart lane, computed from the plan as the scheduler computes it."""
        if self._lanes is None:
            plan = self.plan()
            self._lanes = lane_of(plan) if plan is not None else {}
        return self._lanes

    def task_title(self, task_id: str) -> str:
        plan = self.plan()
        try:
            return plan.task(task_id).title if plan is not None else ""
        except KeyError:
            return ""


class MergerState:
    """Every run the merger has seen, folded from the log."""

    def __init__(self) -> None:
        self.runs: dict[str, RunView] = {}

    def apply(self, e: ev.Event) -> RunView | None:
        if isinstance(e, ev.RunStarted):
            self.runs.setdefault(e.run_id, RunView(e))
        view = self.runs.get(getattr(e, "run_id", "") or "")
        if view is None:
            return None
        match e:
            case ev.BatchesComputed():
                view.batches = e.batches
            case ev.BranchMerged():
                view.merged[e.task_id] = e
                view.by_attempt.setdefault((e.task_id, e.attempt), e)
            case ev.BatchMerged():
                view.announced.add(e.batch)
            case ev.AgentFinished() if e.outcome == "success":
                view.finished[e.task_id] = e
            case ev.BranchReset():
                view.reset.setdefault((e.task_id, e.attempt), e)
            case ev.RunCompleted() | ev.RunFailed() | ev.RunCancelled():
                view.ended = True
        return view


@dataclass(frozen=True)
class Merge:
    """Merge `branch` for (run, task, attempt), unless `recorded` already says how it went."""

    task_id: str
    branch: str
    attempt: int
    recorded: ev.BranchMerged | None = None
    commit: str = ""  # accept: merge only while the branch's head is this commit; resolve: the head resolved against
    files: dict[str, str] | None = None  # resolve: commit these contents on the branch first


@dataclass(frozen=True)
class Reset:
    """A person's rerun: set the branch of (run, task, attempt) aside and point it at the target."""

    task_id: str
    branch: str
    attempt: int
    requested_by: str = ""
    recorded: ev.BranchReset | None = None


@dataclass(frozen=True)
class Cleanup:
    """The run ended: release what its merged tasks left behind."""


@dataclass(frozen=True)
class Ignore:
    why: str = ""


Action = Merge | Reset | Cleanup | Ignore


def decide(view: RunView, e: ev.Event) -> Action:
    """What one delivered event asks of the merger."""
    if isinstance(e, ENDINGS):
        return Cleanup()
    if view.ended:
        return Ignore("the run has ended: nothing more is published for it")
    if isinstance(e, ev.AgentFinished) and e.outcome == "success":
        if e.commit_follows:
            return Ignore(f"task {e.task_id}'s work is merged once its WorkCommitted says it is committed")
        return Merge(e.task_id, e.branch, e.attempt, view.by_attempt.get((e.task_id, e.attempt)))
    if isinstance(e, ev.WorkCommitted):
        if e.error:
            return Ignore(f"task {e.task_id}'s work was not committed: {e.error}")
        return Merge(e.task_id, e.branch, e.attempt, view.by_attempt.get((e.task_id, e.attempt)))
    if isinstance(e, ev.MergeRequested):
        finished = view.finished.get(e.task_id)
        branch = e.branch or (finished.branch if finished else "")
        if not branch:
            return Ignore(f"merge of task {e.task_id} requested but no branch is known")
        attempt = finished.attempt if finished else 0
        recorded = view.by_attempt.get((e.task_id, attempt))
        if e.action == "rerun":
            if recorded is not None or e.task_id in view.merged and view.merged[e.task_id].attempt >= attempt:
                return Ignore(f"rerun of task {e.task_id} requested but it is merged already")
            return Reset(e.task_id, branch, attempt, e.requested_by, view.reset.get((e.task_id, attempt)))
        if e.action == "resolve":
            return Merge(e.task_id, branch, attempt, recorded, commit=e.commit, files=dict(e.files))
        return Merge(e.task_id, branch, attempt, recorded, commit=e.commit if e.action == "accept" else "")
    return Ignore()


def set_aside_ref(run_id: str, task_id: str, attempt: int) -> str:
    """Where a rerun keeps the work it set aside: one ref per (run, task, attempt)."""
    return f"refs/yokeflow/set-aside/{ev.subject_token(run_id)}/{ev.subject_token(task_id)}/{attempt}"


def merge_msg_id(run_id: str, task_id: str, attempt: int) -> str:
    """The merge's identity: a redelivery, a restart or a second merger publishes it once."""
    return f"{run_id}:{task_id}:{attempt}:BranchMerged"


def merge_trailers(run_id: str, task_id: str, attempt: int) -> dict[str, str]:
    """What the merge commit records of its identity (found again after a crash by these)."""
    return {"YokeFlow-Task": task_id, "YokeFlow-Run": run_id, "YokeFlow-Attempt": str(attempt)}


def complete_batches(view: RunView) -> list[int]:
    """Batches whose every task is merged and that were not announced yet."""
    return [i for i, ids in enumerate(view.batches)
            if i not in view.announced and ids and all(t in view.merged for t in ids)]


def releases_worktree(view: RunView, task_id: str) -> bool:
    """Whether the merge of `task_id` frees its worktree now: with the last merge of its epic
    (by_epic) or of its smart lane; at once (by_task)."""
    strategy = view.started.settings.parallel.strategy
    if strategy == "by_epic":
        plan = view.plan()
        if plan is None:
            return False  # released at the run's end
        try:
            epic = plan.epic(plan.task(task_id).epic_id)
        except KeyError:
            return False
        return all(t.id in view.merged for t in epic.tasks)
    lane = view.lanes().get(task_id) if strategy == "smart" else None
    return lane is None or all(t in view.merged for t in lane.task_ids)
