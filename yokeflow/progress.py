"""Following a run from its events: progress bars in a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import msgspec

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared import events as ev
from shared.bus import Bus


@dataclass
class RunOutcome:
    event: ev.Event | None = None
    merged: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    cost_usd: float = 0.0
    budget_stop: ev.BudgetExhausted | None = None  # the run is waiting for a budget to be raised

    @property
    def succeeded(self) -> bool:
        return isinstance(self.event, ev.RunCompleted)


def describe(e: ev.Event) -> str:
    """One readable line for an event (shared by progress output and `events tail`)."""
    task = getattr(e, "task_id", "")
    match e:
        case ev.TaskReady() if e.purpose == "resolve_conflict":
            paths = ", ".join(c.path for c in e.conflict.conflicts)
            return f"task {task} resolution agent queued (attempt {e.attempt}, {e.model}) for: {paths}"
        case ev.TaskReady():
            return f"task {task} ready (attempt {e.attempt}, {e.model or e.provider}, branch {e.branch})"
        case ev.AgentAdmitted() if e.candidate:
            return f"task {task} waits for a slot handed over (attempt {e.attempt}, rank {e.rank})"
        case ev.AgentAdmitted():
            return f"task {task} given an agent slot (attempt {e.attempt})"
        case ev.AgentStarted():
            return f"task {task} agent started ({e.provider}/{e.model}) on {e.executor}"
        case ev.AgentFinished():
            extra = f", error: {e.error[:160]}" if e.error else ""
            handed = f"; its slot to task {e.slot_to}" if e.slot_to else ""
            return (f"task {task} agent finished: {e.outcome} in {e.duration_s:.1f}s, {e.turns} turns, "
                    f"{e.input_tokens}+{e.output_tokens} tokens, ${e.cost_usd:.4f}{extra}{handed}")
        case ev.WorkCommitted() if e.error:
            return f"task {task} work not committed (attempt {e.attempt}): {e.error[:160]}"
        case ev.BranchMerged():
            return (f"task {task} merged into {e.target_branch} at {e.commit[:12]} ({e.status})"
                    + "".join(f"\n  warning: {w}" for w in e.warnings))
        case ev.MergeConflicted():
            paths = ", ".join(c.path for c in e.conflicts) or e.reason
            return f"task {task} merge conflict: {paths}"
        case ev.ConflictEscalated():
            return f"task {task} conflict needs a person: {e.reason}"
        case ev.TaskFailed():
            return f"task {task} failed ({'final' if e.final else 'will retry'}): {e.reason[:200]}"
        case ev.TaskBlocked():
            return f"task {task} blocked: {e.reason}"
        case ev.BatchesComputed():
            return f"{len(e.batches)} batches, critical path {' -> '.join(e.critical_path)} ({e.critical_path_minutes:g} min)"
        case ev.BatchMerged():
            return f"batch {e.batch} merged ({', '.join(e.task_ids)})"
        case ev.RunCompleted() | ev.RunFailed():
            counts = ", ".join(f"{k} {v}" for k, v in msgspec.structs.asdict(e.counts).items())
            reason = f": {e.reason}" if isinstance(e, ev.RunFailed) and e.reason else ""
            return f"run {e.run_id} {'completed' if isinstance(e, ev.RunCompleted) else 'failed'} ({counts}){reason}"
        case ev.WorktreeCreated():
            return f"task {task} worktree {e.path} on {e.branch}{' (reused)' if e.reused else ''}"
        case ev.TaskCompleted():
            return f"task {task} completed (attempt {e.attempt})"
        case ev.LearningExtracted():
            return f"task {task} learnings for {e.domain}: {len(e.learnings)}"
        case ev.ExpertiseUpdated():
            return f"expertise {e.domain} v{e.version} ({e.lines} lines)"
        case ev.DeliveryFailed():
            where = f"task {task} attempt {e.attempt}" if task else f"run {e.run_id}" if e.run_id else "project"
            return f"{where}: {e.reason}"
        case ev.CostRecorded():
            return f"task {task} model call {e.call}: {e.model} ${e.cost_usd:.4f}"
        case ev.TaskDeferred():
            return f"task {task} back to pending ({e.reason}): {e.detail[:200]}"
        case ev.BudgetWarning() | ev.BudgetExhausted():
            what = "exhausted" if isinstance(e, ev.BudgetExhausted) else f"{e.fraction:.0%} spent"
            return f"{e.scope} budget {what}: ${e.spent_exact or e.spent_usd} of ${e.limit_exact or e.limit_usd}"
        case ev.BudgetSet():
            return f"{e.scope} budget set to ${e.limit_exact}" + (f" for run {e.run_id}" if e.run_id else "")
        case _:
            return f"{e.type} {e.aggregate}/{e.aggregate_id}"


async def follow_run(bus: Bus, started: ev.RunStarted, *, quiet: bool = False) -> RunOutcome:
    """Watch the log from the run's start until it ends; show progress as it goes."""
    total = started.plan.task_count()
    outcome = RunOutcome()
    tty = sys.stdout.isatty() and not quiet
    console = Console(stderr=False)
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=not tty)
    with progress:
        merged_bar = progress.add_task("merged into main", total=total)
        running_bar = progress.add_task("agents running", total=max(1, total))
        running: set[str] = set()
        awaiting_merge: set[str] = set()
        async for d in bus.read(stop_at_end=False):
            e = d.event
            project_budget = isinstance(e, (ev.BudgetSet, ev.BudgetExhausted)) and e.scope == "project" \
                and e.project_id == started.project_id
            if getattr(e, "run_id", None) != started.run_id and not project_budget:
                continue
            if not quiet and not isinstance(e, ev.CostRecorded):
                line = describe(e)
                progress.console.print(line) if tty else print(line, flush=True)
            match e:
                case ev.AgentStarted():
                    running.add(e.task_id)
                case ev.AgentFinished():
                    running.discard(e.task_id)
                    outcome.cost_usd += e.cost_usd
                case ev.BranchMerged():
                    outcome.merged.add(e.task_id)
                case ev.TaskFailed() if e.final:
                    outcome.failed.add(e.task_id)
            progress.update(merged_bar, completed=len(outcome.merged))
            progress.update(running_bar, completed=len(running))
            if isinstance(e, ev.BudgetExhausted):
                outcome.budget_stop = e
            elif isinstance(e, ev.BudgetSet):
                outcome.budget_stop = None
            if isinstance(e, (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)):
                outcome.event = e
                return outcome
            if isinstance(e, ev.TaskCompleted):
                awaiting_merge.add(e.task_id)
            elif isinstance(e, (ev.BranchMerged, ev.MergeConflicted)):
                awaiting_merge.discard(e.task_id)
            settled = isinstance(e, (ev.TaskDeferred, ev.BranchMerged, ev.MergeConflicted, ev.TaskFailed))
            if outcome.budget_stop is not None and not running and not awaiting_merge and settled:
                return outcome  # stopped by the budget, nothing in flight: the run waits for a person
    return outcome
