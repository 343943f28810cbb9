"""The scheduler as a fold over a run's events (pure: no I/O).

`RunState.apply(event)` folds; `decide(state)` returns the events the planner must append
next. Because the state is rebuilt from the log, a restarted planner decides exactly what
was left undecided: nothing is lost and nothing is dispatched twice.
"""

from __future__ import annotations

import copy
from decimal import Decimal
import statistics
from collections import ChainMap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from shared import events as ev
from shared.config import RunSettings
from shared.gitops import branch_name, slugify
from shared.gitops.names import worktree_dir_name
from shared.gitops.worktrees import WORKTREES_DIR
from shared.lanes import lane_of
from shared.plan import Plan, task_complexity
from services.planner.models import History
from services.planner import money
from shared.resolver import Resolution, dependencies, dispatch_order_key, remaining_minutes, resolve

# task lifecycle in the scheduler
PENDING, DISPATCHED, SUCCEEDED, MERGED, CONFLICT = "pending", "dispatched", "succeeded", "merged", "conflict"
RETRY, FAILED, BLOCKED, CANCELLED = "retry", "failed", "blocked", "cancelled"
TERMINAL = {MERGED, FAILED, BLOCKED, CANCELLED}
FINISHED = TERMINAL | {SUCCEEDED, CONFLICT}  # "finished, success or not": enough for a soft dependency
OBSERVERS = {"ledger", "learner"}  # consumers whose delivery failures do not fail work
WAITING = {PENDING, RETRY}                   # may be dispatched once its dependencies allow
LANE_BUSY = {DISPATCHED, SUCCEEDED, CONFLICT}  # the lane's branch is in use until merged
DEAD = {FAILED, BLOCKED, CANCELLED}          # a hard dependency in one of these never merges



@dataclass
class TaskState:
    id: str
    epic_id: str
    status: str = PENDING
    attempt: int = 0
    summary: str = ""
    commit: str = ""
    merged_at: str = ""
    ready_at: str = ""
    last_failure: dict[str, Any] = field(default_factory=dict)
    finished_attempts: dict[int, str] = field(default_factory=dict)  # attempt -> outcome
    decided_attempts: set[int] = field(default_factory=set)          # attempts the planner has judged
    uncommitted: set[int] = field(default_factory=set)  # successes judged once their WorkCommitted is in
    throttled: int = 0  # attempts cut short by the model API's rate limits: they do not count as tries
    budget_stops: int = 0  # attempts stopped by the budget (TaskDeferred): they do not count as tries either
    reruns: int = 0  # a person's reruns of a conflicted task: its tries start over
    ready_budget_epoch: dict[int, int] = field(default_factory=dict)  # attempt -> budget changes seen at dispatch
    last_tier: str = ""  # the model tier of the last attempt
    conflict: ev.MergeConflicted | None = None  # the standing conflict, until a merge lands
    resolution_attempts: set[int] = field(default_factory=set)  # attempts that were resolution agents
    escalated: str = ""  # event id of the conflict handed to a person
    learned: set[int] = field(default_factory=set)  # attempts whose learning the learner has stored
    delivery_failures: dict[int, str] = field(default_factory=dict)  # attempt -> why a consumer gave up on it
    running: bool = False  # its dispatched attempt holds an agent slot (admitted, not finished)
    prepared: bool = False  # its dispatched attempt's worktree is ready (WorktreeCreated)
    candidate: bool = False  # its dispatched attempt is admitted as a candidate for a slot handed over
    handed: bool = False  # its attempt was handed a slot (an AgentFinished named it) and has not started
    readmits: int = 0  # admissions of its attempt to a slot it was handed (for a new holder of the attempt)
    owner: Any = field(default=None, repr=False, compare=False)  # the RunState whose indexes follow `status`

    def __setattr__(self, name: str, value: Any) -> None:
        old = self.__dict__.get(name) if name == "status" else None
        object.__setattr__(self, name, value)
        if name == "status" and old is not None and old != value and self.owner is not None:
            self.owner._status_changed(self, old, value)

    @property
    def tries(self) -> int:
        return self.attempt - self.throttled - self.budget_stops - self.reruns

    def copy(self) -> "TaskState":
        return _copied(self)

    @property
    def resolution_tries(self) -> int:
        throttled = sum(1 for a in self.resolution_attempts if self.finished_attempts.get(a) == "rate_limited")
        return len(self.resolution_attempts) - throttled


@dataclass
class RunState:
    run_id: str
    project_id: str
    plan: Plan
    repo_path: str
    target_branch: str
    settings: RunSettings
    started: ev.RunStarted
    tasks: dict[str, TaskState]
    deps: dict[str, list[tuple[str, str]]]
    resolution: Resolution
    batch_index: dict[str, int]
    remaining: dict[str, float]
    invalid: list[dict[str, Any]] = field(default_factory=list)
    batches_announced: bool = False
    cancelled: bool = False
    budget_exhausted: bool = False
    ended: bool = False
    paused: ev.RunPaused | None = None
    delivery_failure: str = ""  # a run-level event no consumer could handle: the run fails with this
    stuck: set[str] = field(default_factory=set)  # tasks with a finished attempt whose next step no consumer took
    seen: set[str] = field(default_factory=set)
    _owned: set[str] | None = field(default=None, repr=False)  # in a copy: the tasks it has copied for itself
    ready_latencies: list[float] = field(default_factory=list)
    lane_key: dict[str, str] = field(default_factory=dict)            # task id -> its lane: one task in flight per lane
    lane_members: dict[str, list[str]] = field(default_factory=dict)  # lane -> its task ids
    lane_branch: dict[str, str] = field(default_factory=dict)         # task id -> branch of its shared smart lane
    history: History = field(default_factory=History)  # the project's attempts (shared by its runs; planner sets it)
    budget_epoch: int = 0  # BudgetSet events seen: an attempt refused under an older budget does not stop the run
    run_limit_set: str = ""  # the run budget a person set, if any
    run_spent: dict[str, str] = field(default_factory=dict)  # CostRecorded of this run by event id
    run_spent_total: Decimal = Decimal(0)  # their sum, kept as they arrive
    # Indexes kept as statuses change, so a decision costs the same whatever the plan's size:
    dependents: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # task -> [(dependent, kind)]
    unmet: dict[str, int] = field(default_factory=dict)       # task -> dependencies not yet satisfied
    dead: dict[str, int] = field(default_factory=dict)        # task -> hard dependencies that never will be
    ready: set[str] = field(default_factory=set)              # waiting, every dependency satisfied
    doomed: set[str] = field(default_factory=set)             # waiting, a hard dependency dead
    conflicted: set[str] = field(default_factory=set)         # in CONFLICT
    unjudged: set[str] = field(default_factory=set)           # with a finished attempt not judged yet
    dispatched: int = 0                                       # attempts in flight (staged or running)
    running: int = 0                                          # of those, attempts holding an agent slot
    staged: set[str] = field(default_factory=set)             # dispatched, waiting for an agent slot
    to_readmit: set[str] = field(default_factory=set)         # handed a slot, to be admitted for a new holder
    lane_load: dict[str, int] = field(default_factory=dict)   # lane -> members whose branch is in use
    open_in_batch: list[int] = field(default_factory=list)    # batch -> tasks not terminal
    open_tasks: int = 0                                       # tasks not terminal
    satisfies: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # task -> (as hard dep, as soft dep)
    position: dict[str, int] = field(default_factory=dict)    # task -> plan order
    rank: dict[str, int] = field(default_factory=dict)        # task -> place in dispatch order
    order_key: dict[str, tuple] = field(default_factory=dict)  # task -> dispatch order key

    @property
    def batches(self) -> list[list[str]]:
        return self.resolution.batches

    def batch_of(self, task_id: str) -> int:
        return self.batch_index.get(task_id, 0)

    def copy(self) -> "RunState":
        """A copy to fold into without touching this state, cheap enough for every decision: the
        plan, graph and lanes are shared (never folded), a task is copied when first folded into."""
        twin = copy.copy(self)
        own = twin.__dict__
        for name, value in self.__dict__.items():
            kind = type(value)
            if name in _SHARED:
                continue
            if kind is dict or kind is ChainMap:  # indexes as big as the plan: written through, not copied
                own[name] = ChainMap({}, value)
            elif kind is set or kind is list:
                own[name] = value.copy()
        twin.seen = _SeenOverlay(self.seen)
        twin.tasks = dict(self.tasks)
        twin._owned = set()
        return twin

    def _task(self, task_id: str) -> TaskState | None:
        """The task to fold into (in a copy, its own copy of it)."""
        task = self.tasks.get(task_id)
        if task is not None and self._owned is not None and task_id not in self._owned:
            task = self.tasks[task_id] = task.copy()
            task.owner = self  # its status changes move this copy's indexes, not the original's
            self._owned.add(task_id)
        return task

    # ------------------------------------------------------------------ settings
    @property
    def max_concurrency(self) -> int:
        return self.settings.parallel.concurrency

    @property
    def strategy(self) -> str:
        return self.settings.parallel.strategy

    @property
    def max_attempts(self) -> int:
        return self.settings.parallel.max_attempts

    @property
    def batch_barrier(self) -> bool:
        return self.settings.parallel.batch_barrier

    @property
    def resolves_conflicts(self) -> bool:
        return self.settings.merge.on_conflict == "agent"

    @property
    def max_resolution_attempts(self) -> int:
        return self.settings.merge.max_resolution_attempts

    @property
    def learning(self) -> bool:
        return self.settings.learning.enabled

    def learned(self, t: "TaskState") -> bool:
        """Whether every finished attempt's learning is stored (always, with learning off)."""
        return not self.learning or all(a in t.learned for a in t.finished_attempts)

    # ------------------------------------------------------------------ fold
    @classmethod
    def start(cls, e: ev.RunStarted) -> "RunState":
        plan = e.plan.to_plan()
        resolution = resolve(plan)
        tasks = {t.id: TaskState(t.id, t.epic_id) for t in plan.tasks()}
        state = cls(
            run_id=e.run_id, project_id=e.project_id, plan=plan, repo_path=e.repo_path,
            target_branch=e.target_branch, settings=e.settings, started=e, tasks=tasks,
            deps=dependencies(plan), resolution=resolution, remaining=remaining_minutes(plan),
            batch_index={tid: i for i, ids in enumerate(resolution.batches) for tid in ids},
            invalid=[{"code": p.code, "ids": list(p.ids), "message": p.message} for p in resolution.errors],
        )
        state._assign_lanes()
        state._build_indexes()
        state.seen.add(e.event_id)
        return state

    def _build_indexes(self) -> None:
        self.position = {tid: i for i, tid in enumerate(self.tasks)}
        self.order_key = {tid: dispatch_order_key(self.plan, tid, self.remaining) for tid in self.tasks}
        self.rank = {tid: i for i, tid in enumerate(sorted(self.tasks, key=self.order_key.__getitem__))}
        self.open_in_batch = [0] * len(self.batches)
        self.lane_load = {lane: 0 for lane in self.lane_members}
        self.satisfies = {tid: (t.status == MERGED and self.learned(t), t.status in FINISHED)
                          for tid, t in self.tasks.items()}
        for tid, t in self.tasks.items():
            deps = [(d, kind) for d, kind in self.deps.get(tid, []) if d in self.tasks]
            self.unmet[tid] = sum(1 for d, kind in deps if not self._satisfied(kind, self.tasks[d]))
            self.dead[tid] = sum(1 for d, kind in deps if kind == "hard" and self.tasks[d].status in DEAD)
            for d, kind in deps:
                self.dependents.setdefault(d, []).append((tid, kind))
            if t.status == DISPATCHED:
                self.dispatched += 1
                if t.running:
                    self.running += 1
                else:
                    self.staged.add(tid)
            if t.status in LANE_BUSY:
                self.lane_load[self.lane_key.get(tid, tid)] = self.lane_load.get(self.lane_key.get(tid, tid), 0) + 1
            if t.status not in TERMINAL:
                self.open_tasks += 1
                if tid in self.batch_index:
                    self.open_in_batch[self.batch_index[tid]] += 1
            if t.status == CONFLICT:
                self.conflicted.add(tid)
            self._refresh(tid)
            t.owner = self

    def _status_changed(self, t: TaskState, old: str, new: str) -> None:
        """Keep the indexes in step with one task's move from `old` to `new`."""
        self.dispatched += (new == DISPATCHED) - (old == DISPATCHED)
        if old == DISPATCHED:
            self._leave_slot(t)
        busy = (new in LANE_BUSY) - (old in LANE_BUSY)
        if busy:
            lane = self.lane_key.get(t.id, t.id)
            self.lane_load[lane] = self.lane_load.get(lane, 0) + busy
        closed = (new in TERMINAL) - (old in TERMINAL)
        if closed:
            self.open_tasks -= closed
            if t.id in self.batch_index:
                self.open_in_batch[self.batch_index[t.id]] -= closed
        (self.conflicted.add if new == CONFLICT else self.conflicted.discard)(t.id)
        for child, kind in self.dependents.get(t.id, ()):
            if kind == "hard":
                self.dead[child] += (new in DEAD) - (old in DEAD)
                self._refresh(child)
        self._touch(t)
        self._refresh(t.id)

    def _start_running(self, t: TaskState) -> None:
        if t.status == DISPATCHED and not t.running:
            t.running = True
            self.running += 1
            self.staged.discard(t.id)

    def _stop_running(self, t: TaskState) -> None:
        if t.running:
            t.running = False
            self.running -= 1

    def _leave_slot(self, t: TaskState) -> None:
        """Its attempt neither holds an agent slot nor waits for one (it ended, or the task moved on)."""
        self._stop_running(t)
        self.staged.discard(t.id)
        self.to_readmit.discard(t.id)

    def _touch(self, t: TaskState) -> None:
        """Re-derive what dependents see of `t` (hard: merged and its learning stored; soft: finished)."""
        now = (t.status == MERGED and self.learned(t), t.status in FINISHED)
        old = self.satisfies.get(t.id, (False, False))
        if now == old:
            return
        self.satisfies[t.id] = now
        for child, kind in self.dependents.get(t.id, ()):
            i = 0 if kind == "hard" else 1
            if now[i] != old[i]:
                self.unmet[child] += -1 if now[i] else 1
                self._refresh(child)

    def _satisfied(self, kind: str, dep: TaskState) -> bool:
        return self.satisfies[dep.id][0 if kind == "hard" else 1]

    def _refresh(self, tid: str) -> None:
        waiting = self.tasks[tid].status in WAITING
        (self.ready.add if waiting and self.unmet.get(tid, 0) == 0 else self.ready.discard)(tid)
        (self.doomed.add if waiting and self.dead.get(tid, 0) > 0 else self.doomed.discard)(tid)

    def _rejudge(self, t: TaskState) -> None:
        pending = any(a not in t.decided_attempts and a not in t.uncommitted for a in t.finished_attempts)
        (self.unjudged.add if pending else self.unjudged.discard)(t.id)

    def in_plan_order(self, ids) -> list[str]:
        return sorted(ids, key=self.position.__getitem__)

    def _assign_lanes(self) -> None:
        """by_epic: an epic's tasks share its branch; by_task: every task alone; smart: shared/lanes.py."""
        if self.strategy == "smart":
            for tid, lane in lane_of(self.plan).items():
                self.lane_key[tid] = lane.key
                if lane.shared:
                    self.lane_branch[tid] = lane.branch
        else:
            by_epic = self.strategy == "by_epic"
            self.lane_key = {t.id: t.epic_id if by_epic else t.id for t in self.tasks.values()}
        for tid, key in self.lane_key.items():
            self.lane_members.setdefault(key, []).append(tid)

    def apply(self, e: ev.Event) -> bool:
        """Fold one event in; False when it was already folded (redelivery)."""
        if e.event_id in self.seen:
            return False
        self.seen.add(e.event_id)
        task = self._task(getattr(e, "task_id", None) or "")
        match e:
            case ev.BatchesComputed():
                self.batches_announced = True
            case ev.TaskReady() if task:
                task.attempt = max(task.attempt, e.attempt)
                self._stop_running(task)  # a new attempt waits for a slot of its own
                task.prepared = task.candidate = task.handed = False
                self.to_readmit.discard(task.id)
                task.status = DISPATCHED
                self.staged.add(task.id)
                task.ready_at = e.occurred_at
                task.ready_budget_epoch[e.attempt] = self.budget_epoch
                task.last_tier = e.selection.tier
                if e.purpose == "resolve_conflict":
                    task.resolution_attempts.add(e.attempt)
                else:
                    self._record_ready_latency(task, e.occurred_at)
            case ev.WorktreeCreated() if task and task.status == DISPATCHED and e.attempt in (0, task.attempt):
                task.prepared = True  # its holder waits for a slot
                if task.handed:  # handed a slot, it never started: its new holder starts on an admission
                    self.to_readmit.add(task.id)
            case ev.AgentAdmitted() if task and e.attempt == task.attempt and e.candidate:
                if task.status == DISPATCHED and not task.running:
                    task.candidate = True
            case ev.AgentAdmitted() if task and e.attempt == task.attempt:
                self._start_running(task)
                if task.id in self.to_readmit:
                    self.to_readmit.discard(task.id)
                    task.readmits += 1
            case ev.AgentStarted() if task and e.attempt == task.attempt:
                self._start_running(task)  # (an attempt of a version that started without admission)
                task.handed = False
                self.to_readmit.discard(task.id)
            case ev.AgentFinished() if task:
                if e.attempt == task.attempt:
                    self._leave_slot(task)
                if e.slot_to:  # the slot went on to a candidate there
                    heir = self._task(e.slot_to)
                    if heir is not None and heir.status == DISPATCHED and heir.attempt == e.slot_to_attempt \
                            and not heir.running:
                        self._start_running(heir)
                        heir.handed = True
                        heir.candidate = False
                task.finished_attempts[e.attempt] = e.outcome
                if e.outcome == "rate_limited":
                    task.throttled += 1
                if e.outcome == "budget" and task.ready_budget_epoch.get(e.attempt, 0) == self.budget_epoch:
                    self.budget_exhausted = True  # refused under the budget in force: no new attempt starts
                if e.outcome == "success":
                    task.summary = e.summary
                    if e.commit_follows:
                        task.uncommitted.add(e.attempt)
                    else:
                        task.commit = e.commit
                else:
                    task.last_failure = {"attempt": e.attempt, "outcome": e.outcome, "error": e.error,
                                         "summary": e.summary, "checks": msgspec.to_builtins(e.checks),
                                         "retry_after_s": e.retry_after_s}
            case ev.WorkCommitted() if task and e.attempt in task.uncommitted:
                if e.error:  # the work was lost with its worktree: the attempt failed
                    self._fail_uncommitted(task, e.attempt, e.error)
                else:
                    task.uncommitted.discard(e.attempt)
                    task.commit = e.commit
            case ev.TaskCompleted() if task:
                task.decided_attempts.add(e.attempt)
                if task.status not in (MERGED, CONFLICT):
                    task.status = SUCCEEDED
            case ev.TaskFailed() if task:
                task.decided_attempts.add(e.attempt)
                if e.attempt in task.resolution_attempts and not e.final:
                    task.status = CONFLICT  # the branch is as it was: the conflict still stands
                else:
                    task.status = FAILED if e.final else RETRY
            case ev.TaskBlocked() if task:
                task.status = BLOCKED
            case ev.TaskCancelled() if task:
                task.status = CANCELLED
                task.decided_attempts.add(task.attempt)
            case ev.TaskDeferred() if task:
                task.decided_attempts.add(e.attempt)
                task.budget_stops += 1
                if task.status not in TERMINAL:
                    task.status = PENDING
            case ev.CostRecorded():
                amount = e.cost_exact or str(e.cost_usd)
                self.run_spent_total += Decimal(amount) - Decimal(self.run_spent.get(e.event_id, "0"))
                self.run_spent[e.event_id] = amount
            case ev.BudgetSet():
                self.budget_epoch += 1
                self.budget_exhausted = False  # the next reservation decides whether the new budget has room
                if e.scope == "run":
                    self.run_limit_set = e.limit_exact
            case ev.BranchMerged() if task:
                task.status = MERGED
                task.merged_at = e.occurred_at
                task.conflict = None
            case ev.BranchReset() if task:
                if task.status == CONFLICT:  # a person's rerun, on the target as it is now
                    task.reruns += 1
                    task.conflict = None
                    task.status = PENDING
            case ev.MergeConflicted() if task:
                if task.status != MERGED:
                    task.status = CONFLICT
                    task.conflict = e
            case ev.ConflictEscalated() if task:
                task.escalated = task.conflict.event_id if task.conflict else e.event_id
            case ev.LearningExtracted() if task:
                task.learned.add(e.attempt)
            case ev.RunCancelled():
                self.cancelled = True
            case ev.RunPaused():
                self.paused = e
            case ev.RunResumed():
                self.paused = None
            case ev.BudgetExhausted():
                self.budget_exhausted = True
            case ev.BudgetWarning():
                pass
            case ev.RunCompleted() | ev.RunFailed():
                self.ended = True
            case ev.DeliveryFailed() if e.consumer == "learner" and task:
                task.learned.add(e.attempt or task.attempt)  # that learning is lost: the run does not wait for it
            case ev.DeliveryFailed() if e.consumer in OBSERVERS:
                pass  # a read model fell behind: shown by the ledger, the work goes on
            case ev.DeliveryFailed() if task:
                self._fold_delivery_failure(task, e)
            case ev.DeliveryFailed() if not e.task_id:
                self.delivery_failure = self.delivery_failure or e.reason
        if task is not None:  # attempts finished, judged or learned: what the indexes derive from them
            self._rejudge(task)
            self._touch(task)
        return True

    def _fail_uncommitted(self, task: TaskState, attempt: int, error: str) -> None:
        task.uncommitted.discard(attempt)
        task.finished_attempts[attempt] = "failure"
        task.last_failure = {"attempt": attempt, "outcome": "failure", "error": error}

    def _fold_delivery_failure(self, task: TaskState, e: ev.DeliveryFailed) -> None:
        """The attempt fails with the consumer's reason: unfinished (or finished, its work never
        committed), it is judged like a failed agent; finished but stuck (its merge gave up),
        `_judge_delivery_failures` fails it."""
        attempt = e.attempt or task.attempt
        if attempt in task.uncommitted:
            self._fail_uncommitted(task, attempt, e.reason)
        elif attempt not in task.finished_attempts:
            task.finished_attempts[attempt] = "failure"
            task.last_failure = {"attempt": attempt, "outcome": "failure", "error": e.reason}
            task.learned.add(attempt)  # no agent ran: nothing to learn, nothing to wait for
        else:
            task.delivery_failures.setdefault(attempt, e.reason)
            self.stuck.add(task.id)

    def _record_ready_latency(self, task: TaskState, ready_at: str) -> None:
        hard = [d for d, kind in self.deps.get(task.id, []) if kind == "hard"]
        merged = [self.tasks[d].merged_at for d in hard if d in self.tasks and self.tasks[d].merged_at]
        if task.attempt == 1 and hard and len(merged) == len(hard):
            self.ready_latencies.append(_seconds_between(max(merged), ready_at))

    # ------------------------------------------------------------------ queries
    def in_flight(self) -> int:
        """Agents running (or admitted to run): at most `max_concurrency`."""
        return self.running

    @property
    def dispatch_window(self) -> int:
        """Attempts that may be dispatched at once: the agent slots, and as many again whose executors
        prepare their worktrees while the slots are busy, so a freed slot starts its next agent at once."""
        return 2 * self.max_concurrency

    def lane_busy(self, task_id: str) -> bool:
        """Whether the task's lane (epic, task or smart lane) has a task whose branch is not merged yet."""
        return self.lane_load.get(self.lane_key.get(task_id, task_id), 0) > 0

    def startable(self) -> list[str]:
        """Waiting tasks whose dependencies (and, with a batch barrier, every earlier batch) allow a
        start, before lanes and the concurrency cap; from the indexes, without scanning the plan."""
        if not self.batch_barrier:
            return list(self.ready)
        front = next((i for i, n in enumerate(self.open_in_batch) if n), len(self.open_in_batch))
        return [tid for tid in self.ready if self.batch_of(tid) <= front]

    def counts(self) -> ev.TaskCounts:
        names = {MERGED: "done", FAILED: "failed", BLOCKED: "blocked", CANCELLED: "cancelled"}
        out = {v: 0 for v in names.values()}
        for t in self.tasks.values():
            if t.status in names:
                out[names[t.status]] += 1
        return ev.TaskCounts(**out, total=len(self.tasks))

    def stats(self) -> ev.RunStats:
        lat = self.ready_latencies
        return ev.RunStats(
            dependency_ready_latency_s=ev.LatencySummary(
                count=len(lat),
                mean=round(statistics.fmean(lat), 4) if lat else 0.0,
                p50=round(statistics.median(lat), 4) if lat else 0.0,
                max=round(max(lat), 4) if lat else 0.0,
            ),
            attempts=sum(t.attempt for t in self.tasks.values()),
        )


_SHARED = {"plan", "deps", "resolution", "batch_index", "remaining", "invalid", "lane_key", "lane_members",
           "lane_branch", "history", "dependents", "position", "order_key", "tasks", "seen"}  # RunState.copy shares these or copies them its own way


def _copied(obj):
    """A dataclass copy whose containers are copies too (so folding into it leaves `obj` alone)."""
    twin = copy.copy(obj)
    own = twin.__dict__  # not through setattr: TaskState's reports status changes to its run
    for name, value in obj.__dict__.items():
        if type(value) in (dict, set, list):
            own[name] = value.copy()
    return twin


class _SeenOverlay:
    """Event ids folded into a copy: the original's (not copied) and the copy's own."""

    def __init__(self, base):
        self.base, self.own = base, set()

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.own or event_id in self.base

    def add(self, event_id: str) -> None:
        self.own.add(event_id)


def _seconds_between(a: str, b: str) -> float:
    return max(0.0, (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds())


# ---------------------------------------------------------------------- decisions
Decision = tuple[ev.Event, str]  # (event, Nats-Msg-Id)


def decide(state: RunState) -> list[Decision]:
    """The events to append next, in order. `state` is left as it was: the caller folds the
    events in once they are appended (decisions later in the list already see earlier ones)."""
    if state.ended:
        return []
    state = state.copy()  # the helpers below fold each decision into the copy as they go
    origin = state.started
    out: list[Decision] = []
    if state.invalid:
        reason = "; ".join(p["message"] for p in state.invalid)
        return [(origin.caused(ev.RunFailed, aggregate_id=state.run_id, run_id=state.run_id,
                               reason=f"invalid plan: {reason}", counts=state.counts()),
                 f"{state.run_id}:RunFailed")]
    if not state.batches_announced:
        res = state.resolution
        out.append((origin.caused(ev.BatchesComputed, aggregate_id=state.run_id, run_id=state.run_id,
                                  batches=res.batches, critical_path=res.critical_path,
                                  critical_path_minutes=res.critical_path_minutes),
                    f"{state.run_id}:BatchesComputed"))
    if state.delivery_failure and not state.cancelled:  # RunCancelled already ended it
        e = origin.caused(ev.RunFailed, aggregate_id=state.run_id, run_id=state.run_id, counts=state.counts(),
                          stats=state.stats(), reason=state.delivery_failure)
        return out + [(e, f"{state.run_id}:RunFailed")]
    out += _judge_finished_attempts(state)
    out += _judge_delivery_failures(state)
    out += _block_or_cancel(state)
    if state.resolves_conflicts:
        out += _escalate_conflicts(state)
    if not state.cancelled and not state.budget_exhausted and state.paused is None:
        if state.resolves_conflicts:
            out += _resolve_conflicts(state)
        out += _dispatch(state)
        out += _admit(state)
    out += _maybe_end(state, out)
    if not out and not state.ended:
        out += _watchdog(state)
    return out


def _task_event(state: RunState, cls, task_id: str, **fields) -> ev.Event:
    return state.started.caused(cls, aggregate_id=ev.task_aggregate_id(state.run_id, task_id),
                                run_id=state.run_id, task_id=task_id, **fields)


def _judge_finished_attempts(state: RunState) -> list[Decision]:
    out: list[Decision] = []
    for t in (state.tasks[tid] for tid in state.in_plan_order(state.unjudged)):
        for attempt, outcome in sorted(t.finished_attempts.items()):
            if attempt in t.decided_attempts or attempt in t.uncommitted:
                continue
            key = f"{state.run_id}:{t.id}:{attempt}"
            if outcome == "success":
                out.append((_task_event(state, ev.TaskCompleted, t.id, attempt=attempt, commit=t.commit),
                            f"{key}:TaskCompleted"))
            elif outcome == "budget" and not state.cancelled:
                out.append((_task_event(state, ev.TaskDeferred, t.id, attempt=attempt, reason="budget",
                                        detail=str(t.last_failure.get("error", ""))[:2000]),
                            f"{key}:TaskDeferred"))
            elif outcome == "cancelled" or state.cancelled:
                out.append((_task_event(state, ev.TaskCancelled, t.id, reason="cancelled while running"),
                            f"{state.run_id}:{t.id}:TaskCancelled"))
            elif outcome == "rate_limited":
                retry = t.last_failure.get("retry_after_s") or 30.0
                out.append((_task_event(state, ev.TaskFailed, t.id, attempt=attempt, final=False,
                                        reason=f"rate limited by the model API: {t.last_failure.get('error', '')}"[:2000]),
                            f"{key}:TaskFailed"))
                if state.paused is None:
                    pause = state.started.caused(ev.RunPaused, aggregate_id=state.run_id, run_id=state.run_id,
                                                 reason="the model API's circuit breaker tripped",
                                                 resume_after_s=float(retry))
                    out.append((pause, f"{key}:RunPaused"))
                    state.apply(pause)
            elif attempt in t.resolution_attempts:
                reason = t.last_failure.get("error") or t.last_failure.get("outcome") or "agent failed"
                out.append((_task_event(state, ev.TaskFailed, t.id, attempt=attempt, final=False,
                                        reason=f"conflict resolution (attempt {attempt}) failed: {reason}"[:2000]),
                            f"{key}:TaskFailed"))
            else:
                final = t.tries >= state.max_attempts
                reason = t.last_failure.get("error") or t.last_failure.get("outcome") or "agent failed"
                out.append((_task_event(state, ev.TaskFailed, t.id, attempt=attempt, final=final,
                                        reason=f"attempt {attempt}/{state.max_attempts}: {reason}"[:2000]),
                            f"{key}:TaskFailed"))
    for e, _ in out:
        state.apply(e)
    return out


def _judge_delivery_failures(state: RunState) -> list[Decision]:
    """An attempt that finished but whose next step no consumer could take (e.g. its merge) fails."""
    out: list[Decision] = []
    for t in (state.tasks[tid] for tid in sorted(state.stuck)):  # few, if any: not a walk over every task
        reason = t.delivery_failures.get(t.attempt)
        if reason is None or t.status not in (SUCCEEDED, CONFLICT):
            continue
        final = t.tries >= state.max_attempts
        e = _task_event(state, ev.TaskFailed, t.id, attempt=t.attempt, final=final,
                        reason=f"attempt {t.attempt}/{state.max_attempts}: {reason}"[:2000])
        out.append((e, f"{state.run_id}:{t.id}:{t.attempt}:DeliveryFailed:TaskFailed"))
        state.apply(e)
    return out


def _block_or_cancel(state: RunState) -> list[Decision]:
    out: list[Decision] = []
    changed = True
    while changed:  # blocking propagates down the graph in one decision
        changed = False
        if state.cancelled or state.budget_exhausted:
            candidates = [t for t in state.tasks.values() if t.status in WAITING]
        else:  # in plan order, each pass also taking the later tasks it dooms (as a full scan would)
            candidates = _doomed_in_order(state)
        for t in candidates:
            if t.status not in (PENDING, RETRY):
                continue
            if state.cancelled:  # (an exhausted budget only stops dispatch: raising it lets the run go on)
                e = _task_event(state, ev.TaskCancelled, t.id, reason="run cancelled")
                out.append((e, f"{state.run_id}:{t.id}:TaskCancelled"))
                state.apply(e)
                changed = True
                continue
            dead = [d for d, kind in state.deps.get(t.id, [])
                    if kind == "hard" and state.tasks[d].status in (FAILED, BLOCKED, CANCELLED)]
            if dead:
                why = ", ".join(f"{d} {state.tasks[d].status}" for d in dead)
                e = _task_event(state, ev.TaskBlocked, t.id, blocked_by=dead,
                                reason=f"hard dependency did not succeed: {why}")
                out.append((e, f"{state.run_id}:{t.id}:TaskBlocked"))
                state.apply(e)
                changed = True
    return out


def _doomed_in_order(state: RunState):
    cursor = -1
    while True:
        later = [tid for tid in state.doomed if state.position[tid] > cursor]
        if not later:
            return
        tid = min(later, key=state.position.__getitem__)
        cursor = state.position[tid]
        yield state.tasks[tid]


def _awaits_resolution(state: RunState, t: TaskState) -> bool:
    """A content conflict (not a missing branch or a failed gate) the agent policy still owns."""
    return (t.status == CONFLICT and t.conflict is not None and bool(t.conflict.conflicts)
            and t.escalated != t.conflict.event_id)


def _escalate_conflicts(state: RunState) -> list[Decision]:
    out: list[Decision] = []
    for t in (state.tasks[tid] for tid in state.in_plan_order(state.conflicted)):
        if not _awaits_resolution(state, t) or t.resolution_tries < state.max_resolution_attempts:
            continue
        conflict = t.conflict
        assert conflict is not None
        tried = t.resolution_tries
        why = (f"{tried} resolution attempt(s) did not resolve it" if tried else
               "merge.max_resolution_attempts is 0")
        e = state.started.caused(
            ev.ConflictEscalated, aggregate_id=ev.task_aggregate_id(state.run_id, t.id), run_id=state.run_id,
            task_id=t.id, branch=conflict.branch, conflicts=conflict.conflicts,
            reason=f"{why}: resolve it in {_worktree_path(state, t)} (`git merge {conflict.target_branch}`, "
                   f"edit, commit) and run `yokeflow merge retry {t.id}`")
        out.append((e, f"{state.run_id}:{t.id}:{conflict.event_id}:ConflictEscalated"))
        state.apply(e)
    return out


def _worktree_path(state: RunState, t: TaskState) -> str:
    name = worktree_dir_name(_worktree_name(_branch_of(state, t)))
    return str(Path(state.repo_path) / WORKTREES_DIR / name)


def _resolve_conflicts(state: RunState) -> list[Decision]:
    out: list[Decision] = []
    for t in (state.tasks[tid] for tid in state.in_plan_order(state.conflicted)):
        if not _awaits_resolution(state, t) or t.resolution_tries >= state.max_resolution_attempts:
            continue
        if state.dispatched >= state.dispatch_window:
            break
        conflict = t.conflict
        assert conflict is not None
        fields = _ready_fields(state, t, resolving=True)
        fields.update(purpose="resolve_conflict", branch=conflict.branch,
                      conflict=ev.ConflictToResolve(event_id=conflict.event_id, target_branch=conflict.target_branch,
                                                    conflicts=conflict.conflicts, reason=conflict.reason))
        e = _task_event(state, ev.TaskReady, t.id, **fields)
        out.append((e, f"{state.run_id}:{t.id}:{e.attempt}:TaskReady"))
        state.apply(e)
    return out


def _is_ready(state: RunState, t: TaskState) -> bool:
    if t.status not in (PENDING, RETRY):
        return False
    for dep, kind in state.deps.get(t.id, []):
        status = state.tasks[dep].status
        if kind == "hard" and (status != MERGED or not state.learned(state.tasks[dep])):
            return False  # merged, and what it taught is stored: the dependent's agent reads it
        if kind == "soft" and status not in FINISHED:
            return False
    if state.batch_barrier:
        for earlier in state.batches[:state.batch_of(t.id)]:
            if any(state.tasks[x].status not in TERMINAL for x in earlier):
                return False
    return True


def _dispatch(state: RunState) -> list[Decision]:
    out: list[Decision] = []
    if state.dispatched >= state.dispatch_window:
        return out
    ready = [state.tasks[tid] for tid in state.startable()]
    ready.sort(key=lambda t: state.order_key[t.id])
    for t in ready:
        if state.dispatched >= state.dispatch_window:
            break
        if state.lane_busy(t.id):
            continue
        e = _task_event(state, ev.TaskReady, t.id, **_ready_fields(state, t))
        out.append((e, f"{state.run_id}:{t.id}:{e.attempt}:TaskReady"))
        state.apply(e)
    return out


def _admit(state: RunState) -> list[Decision]:
    """Free agent slots go to staged attempts whose worktrees are ready, in dispatch order. Only to
    those: an admitted attempt is then always in an executor's hands (it made the worktree and
    waits), never behind attempts that wait for a slot in executors with a slot limit of their own.
    The scheduler alone decides how many agents run."""
    out: list[Decision] = []
    ready = sorted((tid for tid in state.staged if state.tasks[tid].prepared), key=state.order_key.__getitem__)
    free = max(0, state.max_concurrency - state.running)
    for t in (state.tasks[tid] for tid in ready[:free]):
        e = _task_event(state, ev.AgentAdmitted, t.id, attempt=t.attempt)
        out.append((e, f"{state.run_id}:{t.id}:{t.attempt}:AgentAdmitted"))
        state.apply(e)
    for tid in sorted(state.to_readmit):
        t = state.tasks[tid]  # it holds its slot already: an admission for its new holder
        e = _task_event(state, ev.AgentAdmitted, t.id, attempt=t.attempt)
        out.append((e, f"{state.run_id}:{t.id}:{t.attempt}:AgentAdmitted:again:{t.readmits}"))
        state.apply(e)
    if state.settings.parallel.slot_handover:
        for t in (state.tasks[tid] for tid in ready[free:] if not state.tasks[tid].candidate):
            e = _task_event(state, ev.AgentAdmitted, t.id, attempt=t.attempt, candidate=True, rank=state.rank[t.id])
            out.append((e, f"{state.run_id}:{t.id}:{t.attempt}:AgentAdmitted:candidate"))
            state.apply(e)
    return out


def _branch_of(state: RunState, t: TaskState) -> str:
    if state.strategy == "by_epic":
        epic = state.plan.epic(t.epic_id)
        return branch_name("epic", epic.id, epic.name)
    if t.id in state.lane_branch:
        return state.lane_branch[t.id]
    return branch_name("task", t.id, state.plan.task(t.id).title)


def _worktree_name(branch: str) -> str:
    return slugify(branch.replace("/", "-"), 80)


def _needs_target(state: RunState, t: TaskState, branch: str) -> bool:
    """Whether the attempt's worktree must bring the target branch in: unless the task depends on
    something and every dependency was done on its own branch, which holds their work already (an
    epic's chain under `by_epic`, a smart lane's; the lane's first task brought the target in).
    Bringing `main` in before each task wrote every other lane's merged files into the worktree
    (~100 a task at 1,000 tasks, growing with the plan) for work the task does not depend on. A
    squash merge leaves the branch's commits outside the target, so with it the target always
    comes in, as before."""
    deps = state.deps.get(t.id, [])
    if state.settings.merge.mode != "merge" or not deps:
        return True
    return any(d not in state.tasks or _branch_of(state, state.tasks[d]) != branch for d, _ in deps)


def _ready_fields(state: RunState, t: TaskState, *, resolving: bool = False) -> dict[str, Any]:
    """A TaskReady's fields; `resolving`: a conflict resolution (its own transcript, its own model ladder)."""
    task = state.plan.task(t.id)
    epic = state.plan.epic(t.epic_id)
    attempt = t.attempt + 1
    branch = _branch_of(state, t)
    agent = state.settings.agent
    provider = agent.provider
    own = f"{task.id}{'.resolve' if resolving else ''}.json"
    options = ev.ProviderOptions(
        max_turns=agent.max_turns, max_fix_rounds=agent.max_fix_rounds, command_timeout_s=agent.command_timeout_s,
        sandbox=agent.sandbox, env_allow=list(agent.env_allow), base_url=agent.base_url,
        transcript=str(Path(agent.transcripts) / own) if provider == "replay" and agent.transcripts else "",
        # what a live model answered, as a transcript `replay` plays
        record=str(Path(agent.record) / own) if agent.record and provider != "replay" else "")
    deps = [ev.DependencySummary(task_id=d, title=state.plan.task(d).title, summary=state.tasks[d].summary)
            for d, _ in state.deps.get(t.id, []) if state.tasks[d].summary]
    return dict(
        attempt=attempt, epic_id=epic.id, title=task.title, description=task.description,
        domain=task.domain, complexity=task_complexity(task), tests=list(task.tests),
        **money.attempt_fields(state, t, task, tries=t.resolution_tries + 1 if resolving else t.tries + 1),
        provider=provider, provider_options=options, repo_path=state.repo_path,
        target_branch=state.target_branch, branch=branch, worktree=_worktree_name(branch),
        update_from_target=_needs_target(state, t, branch),
        dependency_summaries=deps, previous_attempt=msgspec.convert(t.last_failure, ev.PreviousAttempt),
        expertise_domains=list(dict.fromkeys([task.domain or "general", "general"])) if state.learning else [],
    )


def _first_failure(state: RunState) -> str:
    """Why the first failed task failed, so a failed run names its cause."""
    for t in state.tasks.values():
        if t.status == FAILED and t.last_failure:
            why = t.last_failure.get("error") or t.last_failure.get("outcome") or "agent failed"
            return f"; task {t.id}: {why}"[:1000]
    return ""


def _maybe_end(state: RunState, pending: list[Decision]) -> list[Decision]:
    if state.open_tasks or any(not state.learned(t) for t in state.tasks.values()):
        return []  # a run ends once every task is settled and every attempt's learning is stored
    counts = state.counts()
    origin = state.started
    if state.cancelled:
        return []  # RunCancelled already ends the run
    if state.budget_exhausted and counts.done < counts.total:
        e = origin.caused(ev.RunFailed, aggregate_id=state.run_id, run_id=state.run_id, counts=counts,
                          stats=state.stats(), reason="budget exhausted")
        out = [(e, f"{state.run_id}:RunFailed")]
    elif counts.done == counts.total:
        e = origin.caused(ev.RunCompleted, aggregate_id=state.run_id, run_id=state.run_id, counts=counts,
                          stats=state.stats())
        out = [(e, f"{state.run_id}:RunCompleted")]
    else:
        e = origin.caused(ev.RunFailed, aggregate_id=state.run_id, run_id=state.run_id, counts=counts,
                          stats=state.stats(),
                          reason=f"{counts.failed} failed, {counts.blocked} blocked, {counts.cancelled} cancelled"
                                 f"{_first_failure(state)}"[:4000])
        out = [(e, f"{state.run_id}:RunFailed")]
    state.apply(e)
    return out


def _watchdog(state: RunState) -> list[Decision]:
    """A run with nothing to decide and nothing to wait for would wait forever: it fails, naming
    its open tasks. Checked only when quiet (nothing in flight), so a decision stays cheap."""
    if state.dispatched or state.conflicted or state.cancelled or state.paused or state.budget_exhausted:
        return []
    if not state.open_tasks or any(state.lane_load.values()) or waiting_on(state):  # a branch awaits its merge
        return []
    stuck = [t for t in state.tasks.values() if t.status not in TERMINAL]
    listed = ", ".join(f"{t.id} {t.status}" for t in stuck[:10]) + (" …" if len(stuck) > 10 else "")
    e = state.started.caused(ev.RunFailed, aggregate_id=state.run_id, run_id=state.run_id, counts=state.counts(),
                             stats=state.stats(),
                             reason=f"stalled: nothing is in flight and no open task can start ({listed})"[:4000])
    state.apply(e)
    return [(e, f"{state.run_id}:RunFailed")]


def waiting_on(state: RunState) -> str:
    """What a run that decides nothing now is waiting for, in one line ("" once it has ended, or
    when nothing can move it: the watchdog's case)."""
    if state.ended or state.cancelled:
        return ""
    def named(ids) -> str:
        ids = state.in_plan_order(ids)
        return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    by: dict[str, list[str]] = {}
    for t in state.tasks.values():
        by.setdefault(t.status, []).append(t.id)
    unlearned = [t.id for t in state.tasks.values() if t.status == MERGED and not state.learned(t)]
    parts = []
    if by.get(DISPATCHED):
        parts.append(f"an executor to finish {named(by[DISPATCHED])}")
    if by.get(SUCCEEDED):
        parts.append(f"the merger to merge {named(by[SUCCEEDED])}")
    if unlearned:
        parts.append(f"the learner to store what {named(unlearned)} taught")
    if state.paused is not None:
        parts.append(f"the end of a pause ({state.paused.reason})")
    if state.budget_exhausted:
        parts.append("a person to raise the budget (`yokeflow budget set`)")
    if by.get(CONFLICT):
        parts.append(f"a person to resolve the merge conflict of {named(by[CONFLICT])} "
                     f"(then `yokeflow merge retry TASK`)")
    return "; ".join(parts)
