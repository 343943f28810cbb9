"""Every event of YokeFlow: frozen, tagged msgspec structs, JSON on the wire.

The class name is the event type, part of the NATS subject and of the contract:
new fields get defaults, a field's type never changes.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal, TypeVar, Union

import msgspec

from shared.config import RunSettings, SandboxSettings
from shared.subjects import Subjects, token
from shared.expertise.model import Document, Entry, render
from shared.plan.doc import PlanDoc
from shared.plan.model import Complexity, Domain

SCHEMA_VERSION = 1
subject_token = token  # a value made safe as one subject token (see shared/subjects.py)


def new_id() -> str:
    """128 random bits as 32 hex digits, like uuid4().hex: the same source, a quarter of the time
    (no UUID object per event)."""
    return secrets.token_hex(16)


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


E = TypeVar("E", bound="Event")


class Event(msgspec.Struct, frozen=True, tag_field="type", kw_only=True):
    """Envelope shared by every event."""

    aggregate: ClassVar[str] = "project"

    project_id: str
    aggregate_id: str
    event_id: str = msgspec.field(default_factory=new_id)
    occurred_at: str = msgspec.field(default_factory=now)
    correlation_id: str = ""
    causation_id: str = ""
    schema_version: int = SCHEMA_VERSION  # of the envelope and payloads; a reader skips a newer one (see decode)

    @property
    def type(self) -> str:
        return type(self).__name__

    def subject(self, prefix: str = "yf") -> str:
        return Subjects(prefix).event(self.project_id, self.aggregate, self.aggregate_id, self.type)

    def caused(self, cls: type[E], **fields: Any) -> E:
        """A new event caused by this one, carrying the correlation chain."""
        fields.setdefault("project_id", self.project_id)
        fields.setdefault("correlation_id", self.correlation_id or self.event_id)
        fields.setdefault("causation_id", self.event_id)
        return cls(**fields)


# ---------------------------------------------------------------- payload types
# Closed sets of values are Literals: a value outside them is refused at decode, by name.
AgentOutcome = Literal["success", "failure", "cancelled", "rate_limited", "budget"]
MergeStatus = Literal["merged", "up_to_date"]
TaskPurpose = Literal["task", "resolve_conflict"]
MergeAction = Literal["retry", "accept", "rerun", "resolve"]
BudgetScope = Literal["run", "project"]
ExpertiseReason = Literal["", "learned", "import", "rollback", "validate"]
ConflictKind = Literal["content", "add/add", "modify/delete", "binary", "mode", "symlink", "submodule", "type",
                       "file/directory", "rename/rename", "rename/delete", "rename/add", "directory-rename"]


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    """One of a task's checks as an attempt ran it."""

    command: str = ""
    passed: bool = False  # absent: it did not pass
    exit_code: int | None = None  # None: killed before it exited
    output: str = ""  # its tail
    timed_out: bool = False


class ConflictHunk(msgspec.Struct, frozen=True, kw_only=True):
    """Lines both sides changed differently (1-based starts in each version)."""

    ours_start: int = 0
    theirs_start: int = 0
    base_start: int = 0
    ours: str = ""
    theirs: str = ""
    base: str = ""


class Conflict(msgspec.Struct, frozen=True, kw_only=True):
    """One conflicting path of a merge (shared/gitops/treemerge.py)."""

    path: str
    kind: ConflictKind = "content"
    message: str = ""
    hunks: list[ConflictHunk] = []
    old_path: str = ""  # rename/delete, rename/add: where the file was
    ours_path: str = ""  # rename/rename: where each side moved it
    theirs_path: str = ""


class DependencySummary(msgspec.Struct, frozen=True, kw_only=True):
    """What a finished dependency did, as the agent of a dependent task is told."""

    task_id: str = ""
    title: str = ""
    summary: str = ""


class PreviousAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """How the task's last attempt failed, for the next one; `attempt` 0: there was none."""

    attempt: int = 0
    outcome: AgentOutcome | Literal[""] = ""
    error: str = ""
    summary: str = ""
    checks: list[CheckResult] = []
    retry_after_s: float = 0.0


class ConflictToResolve(msgspec.Struct, frozen=True, kw_only=True):
    """The MergeConflicted a resolution attempt answers (TaskReady.purpose resolve_conflict)."""

    event_id: str = ""
    target_branch: str = ""
    conflicts: list[Conflict] = []
    reason: str = ""


class LatencySummary(msgspec.Struct, frozen=True, kw_only=True):
    count: int = 0
    mean: float = 0.0
    p50: float = 0.0
    max: float = 0.0


class RunStats(msgspec.Struct, frozen=True, kw_only=True):
    """How a run went, for benchmarks and the UI (RunCompleted / RunFailed)."""

    attempts: int = 0  # every attempt of every task
    # from a task's last hard dependency merged to its TaskReady
    dependency_ready_latency_s: LatencySummary = msgspec.field(default_factory=LatencySummary)


class TaskCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A run's tasks by how they ended (RunCompleted / RunFailed)."""

    done: int = 0  # merged
    failed: int = 0
    blocked: int = 0
    cancelled: int = 0
    total: int = 0


class PlanIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One reason a plan was rejected: a plan problem (shared/plan PlanProblem) or why producing it failed."""

    code: str = ""  # open set: shared/plan PROBLEM_CODES, "too_large", or e.g. "provider_error"
    ids: list[str] = []
    message: str = ""
    path: str = ""  # the plan field at fault, when there is one


ModelTier = Literal["", "haiku", "sonnet", "opus"]  # "": cost.default_model is a model id, not a tier


class SelectionInputs(msgspec.Struct, frozen=True, kw_only=True):
    """What the model choice of an attempt rested on (services/planner/models.py select_model)."""

    complexity: Complexity | Literal[""] = ""
    complexity_source: Literal["", "task", "estimated"] = ""  # the plan said it, or it was estimated
    domain: str = ""
    tries: int = 0  # this attempt's number among the task's real tries
    critical: bool = False  # on the plan's critical path
    budget_left_fraction: float = 1.0
    optimization_enabled: bool = True
    default_model: str = ""


class ModelSelection(msgspec.Struct, frozen=True, kw_only=True):
    """How an attempt's model was chosen (TaskReady.selection)."""

    tier: ModelTier = ""
    model: str = ""
    reasons: list[str] = []
    inputs: SelectionInputs = msgspec.field(default_factory=SelectionInputs)


class AttemptBudget(msgspec.Struct, frozen=True, kw_only=True):
    """The money rules an attempt's model calls are held to (TaskReady.cost; shared/budget.py BudgetGate)."""

    project_budget_usd: str = "0"  # exact decimal strings; "0": no limit
    run_budget_usd: str = "0"
    enforcement: Literal["hard", "soft"] = "hard"
    warn_at: list[float] = msgspec.field(default_factory=lambda: [0.5, 0.8, 0.95])
    # cost.prices exactly as written in .yokeflow.yaml (model id -> price fields), free-form there too:
    # PriceTable.with_overrides checks it, naming the key
    prices: dict[str, Any] = {}


class ProviderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How an attempt's agent runs (TaskReady.provider_options), from the run's `agent` settings;
    the executor hands the provider its share (base_url, transcript, record) and keeps the rest."""

    max_turns: int = 40
    max_fix_rounds: int = 2
    command_timeout_s: float = 300.0
    sandbox: SandboxSettings = msgspec.field(default_factory=SandboxSettings)
    env_allow: list[str] = []
    base_url: str = ""
    transcript: str = ""  # replay: the transcript it plays
    record: str = ""  # a live provider: where its real turns are written as a transcript


def task_aggregate_id(run_id: str, task_id: str) -> str:
    return f"{subject_token(run_id)}-{subject_token(task_id)}"


# ---------------------------------------------------------------- project / plan
class ProjectCreated(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "project"
    name: str
    repo_path: str
    target_branch: str = "main"


class PlanRequested(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "plan"
    spec: str
    repo_path: str = ""


class PlanProduced(Event, frozen=True, kw_only=True):
    """A version of the plan: Session 0's (version 1) or a person's edit of the latest (source "edit")."""

    aggregate: ClassVar[str] = "plan"
    plan: PlanDoc
    source: str = ""
    path: str = ""
    version: int = 0  # 0: before versions were numbered (its place among the plan's PlanProduced says)
    edited_by: str = ""


class PlanRejected(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "plan"
    errors: list[PlanIssue]


class PlanApproved(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "plan"
    approved_by: str = ""
    version: int = 0  # the version approved; 0: before versions, the latest one at the time


class BatchesComputed(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "run"
    run_id: str
    batches: list[list[str]]
    critical_path: list[str] = []
    critical_path_minutes: float = 0.0


# ---------------------------------------------------------------- run
class RunStarted(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "run"
    run_id: str
    plan: PlanDoc
    repo_path: str
    target_branch: str = "main"
    # Typed once here; a run started before it was typed carried the same JSON shape as a dict.
    settings: RunSettings = msgspec.field(default_factory=RunSettings)


class RunCancelled(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "run"
    run_id: str
    reason: str = ""


class RunPaused(Event, frozen=True, kw_only=True):
    """Dispatch stops (e.g. the model API's circuit breaker tripped) until RunResumed."""

    aggregate: ClassVar[str] = "run"
    run_id: str
    reason: str = ""
    resume_after_s: float = 0.0


class RunResumed(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "run"
    run_id: str
    reason: str = ""


class RunCompleted(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "run"
    run_id: str
    counts: TaskCounts = msgspec.field(default_factory=TaskCounts)
    stats: RunStats = msgspec.field(default_factory=RunStats)


class RunFailed(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "run"
    run_id: str
    reason: str = ""
    counts: TaskCounts = msgspec.field(default_factory=TaskCounts)
    stats: RunStats = msgspec.field(default_factory=RunStats)


# ---------------------------------------------------------------- task
class TaskEvent(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "task"
    run_id: str
    task_id: str


class TaskReady(TaskEvent, frozen=True, kw_only=True):
    attempt: int = 1
    epic_id: str = ""
    title: str = ""
    description: str = ""
    domain: Domain = "general"
    complexity: Complexity = "medium"
    tests: list[str] = []
    model: str = ""
    provider: str = "replay"
    provider_options: ProviderOptions = msgspec.field(default_factory=ProviderOptions)
    repo_path: str = ""
    target_branch: str = "main"
    branch: str = ""
    worktree: str = ""  # the worktree's folder name under the repository's worktrees folder (not a path)
    # Whether the worktree brings the target branch in before the agent starts. False when the task
    # has dependencies and every one was done on this same branch (an epic's chain): the branch holds
    # them already, and other lanes' work reaches it through a later task that needs it (merge mode
    # "merge" only).
    update_from_target: bool = True
    dependency_summaries: list[DependencySummary] = []
    previous_attempt: PreviousAttempt = msgspec.field(default_factory=PreviousAttempt)
    # "task": do the work; "resolve_conflict": merge the target branch into the task's branch
    # in its worktree and resolve the conflicts `conflict` describes (merge.on_conflict: agent)
    purpose: TaskPurpose = "task"
    conflict: ConflictToResolve = msgspec.field(default_factory=ConflictToResolve)
    expertise_domains: list[str] = []  # whose expertise the agent is given (none when learning is off)
    cost: AttemptBudget | None = None  # None: no budget gate for this attempt (not written by the scheduler)
    selection: ModelSelection = msgspec.field(default_factory=ModelSelection)


class AgentAdmitted(TaskEvent, frozen=True, kw_only=True):
    """The scheduler gives a dispatched attempt an agent slot: its executor may start the agent.
    An attempt is dispatched (`TaskReady`) ahead of a free slot so that its worktree is ready when
    one frees; at most `max_concurrency` attempts are admitted and not finished at any time.
    A candidate (`candidate`): no slot yet, but the executor holding the attempt may give it the
    slot of an agent of the same run that ends there (its `AgentFinished` names it in `slot_to`),
    the candidate of lowest `rank` (its place in dispatch order) first."""
    attempt: int = 1
    candidate: bool = False
    rank: int = 0


class AgentStarted(TaskEvent, frozen=True, kw_only=True):
    attempt: int = 1
    model: str = ""
    provider: str = ""
    executor: str = ""
    expertise_given: list[str] = []            # ids of the expertise entries put in the agent's prompt
    expertise_versions: dict[str, int] = {}    # domain -> the document version they came from


class AgentFinished(TaskEvent, frozen=True, kw_only=True):
    attempt: int = 1
    outcome: AgentOutcome = "success"
    retry_after_s: float = 0.0
    summary: str = ""
    error: str = ""
    commit: str = ""
    branch: str = ""
    worktree_path: str = ""  # where the attempt's worktree was on the executor's disk
    # Version 1 wrote that path under "worktree", a name that means the worktree's folder name in
    # TaskReady: still read from old events (worktree_dir), never written now.
    v1_worktree_path: str = msgspec.field(default="", name="worktree")
    repo_path: str = ""
    model: str = ""
    turns: int = 0
    duration_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    checks: list[CheckResult] = []
    cost_exact: str = ""  # cost_usd as an exact decimal string (money is Decimal; cost_usd stays a float)
    # A success whose work is committed after this event, in its WorkCommitted (commit is empty
    # here): the agent's slot frees as its agent ends, not after the commit. False: `commit` says it
    # all (other outcomes, and logs of versions that committed before AgentFinished).
    commit_follows: bool = False
    # The attempt its executor gave this agent's slot as it ended (an admitted candidate of the same
    # run there, `AgentAdmitted.candidate`): it holds the slot from this event on, and starts at once.
    slot_to: str = ""
    slot_to_attempt: int = 0

    @property
    def worktree_dir(self) -> str:
        """The worktree's path, from this version's field or version 1's."""
        return self.worktree_path or self.v1_worktree_path


class WorkCommitted(TaskEvent, frozen=True, kw_only=True):
    """A successful attempt's work committed on its branch, after its AgentFinished (commit_follows):
    the merger merges it and the scheduler completes the task on it. `error` instead of `commit`: the
    work could not be committed (its worktree is gone, e.g. with the executor that ran it), so the
    attempt counts as failed."""
    attempt: int = 1
    commit: str = ""
    branch: str = ""
    error: str = ""


class TaskCompleted(TaskEvent, frozen=True, kw_only=True):
    attempt: int = 1
    commit: str = ""


class TaskFailed(TaskEvent, frozen=True, kw_only=True):
    attempt: int = 1
    reason: str = ""
    final: bool = True


class TaskBlocked(TaskEvent, frozen=True, kw_only=True):
    reason: str = ""
    blocked_by: list[str] = []


class TaskCancelled(TaskEvent, frozen=True, kw_only=True):
    reason: str = ""


class TaskDeferred(TaskEvent, frozen=True, kw_only=True):
    """The attempt stopped for a reason that is not the task's fault (e.g. `budget`): the task is
    pending again, its work so far kept on its branch; the try does not count."""

    attempt: int = 1
    reason: str = ""
    detail: str = ""


class CostRecorded(TaskEvent, frozen=True, kw_only=True):
    attempt: int = 1
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    call: int = 0
    cost_exact: str = ""  # tokens × price as an exact decimal string; cost_usd is its float for old readers
    by: Literal["agent", "learner"] = "agent"  # the learner's call reads the attempt's log (learning.model)


# ---------------------------------------------------------------- worktree / merge / batch
class WorktreeCreated(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "worktree"
    run_id: str
    task_id: str
    path: str
    branch: str
    base_commit: str = ""
    reused: bool = False
    attempt: int = 0  # the attempt it was made for (0: written before attempts were recorded here)


class MergeRequested(Event, frozen=True, kw_only=True):
    """A person acts on a conflicted (or never merged) task: `retry` merges the branch again (the
    target may have moved), `accept` merges the branch only while its head is `commit` (a
    resolution the person pushed), `resolve` commits `files` (the person's resolution, written in the
    web UI) as the merge of the target into the branch, then merges it, `rerun` sets the branch aside and runs the task again on the
    target as it is now (the merger resets the branch: BranchReset; the planner starts a new attempt)."""

    aggregate: ClassVar[str] = "merge"
    run_id: str
    task_id: str
    branch: str = ""
    requested_by: str = ""
    action: MergeAction = "retry"
    commit: str = ""  # accept: the commit accepted as the resolution; resolve: the branch head resolved against
    files: dict[str, str] = {}  # resolve: each conflicting file's resolved content, written in the web UI


class BranchMerged(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "merge"
    run_id: str
    task_id: str
    branch: str
    target_branch: str = "main"
    commit: str = ""
    tree: str = ""
    status: MergeStatus = "merged"
    attempt: int = 0  # the attempt whose work was merged: a merge is keyed by (run, task, attempt)
    warnings: list[str] = []  # e.g. a person's checkout of the target left as it was (it had local changes)


class MergeConflicted(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "merge"
    run_id: str
    task_id: str
    branch: str
    target_branch: str = "main"
    conflicts: list[Conflict] = []
    reason: str = ""
    attempt: int = 0


class BranchReset(Event, frozen=True, kw_only=True):
    """The merger set a conflicted task's branch to the target's tip for a person's `rerun`: the
    work of `attempt` stays reachable at `kept_ref`, and the planner starts a new attempt."""

    aggregate: ClassVar[str] = "merge"
    run_id: str
    task_id: str
    branch: str
    target_branch: str = "main"
    attempt: int = 0  # the attempt whose work was set aside
    old_head: str = ""
    new_head: str = ""
    kept_ref: str = ""
    requested_by: str = ""


class ConflictEscalated(Event, frozen=True, kw_only=True):
    """The resolution agent gave up (or may not try again): a person resolves the conflict in the
    task's worktree and runs `yokeflow merge retry TASK`."""

    aggregate: ClassVar[str] = "merge"
    run_id: str
    task_id: str
    branch: str = ""
    reason: str = ""
    conflicts: list[Conflict] = []


class BatchMerged(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "batch"
    run_id: str
    batch: int
    task_ids: list[str] = []


# ---------------------------------------------------------------- learning / budget
class DiscoveryReported(Event, frozen=True, kw_only=True):
    """An agent told its task server something worth knowing; the learner adds it to the domain's
    expertise at once, so the next agent of the domain reads it."""

    aggregate: ClassVar[str] = "expertise"
    run_id: str
    task_id: str
    attempt: int = 1
    domain: str = "general"
    text: str
    files: list[str] = []


class TaskBlockRequested(Event, frozen=True, kw_only=True):
    """An agent asked for its task to be blocked (or split) with a reason; its attempt ends there."""

    aggregate: ClassVar[str] = "task"
    run_id: str
    task_id: str
    attempt: int = 1
    reason: str
    split_into: list[str] = []


class LearningExtracted(Event, frozen=True, kw_only=True):
    """What one attempt taught (failed attempts included), published once the domain's expertise
    holds it: the scheduler starts a dependent task only after this."""

    aggregate: ClassVar[str] = "expertise"
    run_id: str = ""
    task_id: str = ""
    domain: str = "general"
    learnings: list[str] = []
    attempt: int = 0
    entries: list[Entry] = []
    expertise_version: int = 0


class ExpertiseUpdated(Event, frozen=True, kw_only=True):
    """A new version of a domain's expertise document: `document`, whose YAML `yaml()` renders.
    Versions written before 2026-12-05 also carry that YAML as written (`content`); a version
    carried it twice, a third of its bytes, and every task writes one."""

    aggregate: ClassVar[str] = "expertise"
    domain: str
    version: int
    lines: int = 0  # of the YAML
    content: str = ""
    document: Document | None = None
    reason: ExpertiseReason = ""
    source: str = ""  # the attempt (run/task/attempt), seed folder or version it came from

    def yaml(self) -> str:
        """The version's YAML file, byte for byte as `render` writes it."""
        return self.content or (render(self.document) if self.document is not None else "")


class BudgetWarning(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "budget"
    run_id: str = ""
    spent_usd: float = 0.0
    limit_usd: float = 0.0
    scope: BudgetScope = "run"  # run: the run's budget | project: the project's, across its runs
    fraction: float = 0.0  # the share of the limit that was crossed (warnings: 0.5, 0.8, 0.95)
    spent_exact: str = ""  # spent_usd / limit_usd as exact decimal strings
    limit_exact: str = ""


class BudgetExhausted(Event, frozen=True, kw_only=True):
    aggregate: ClassVar[str] = "budget"
    run_id: str = ""
    spent_usd: float = 0.0
    limit_usd: float = 0.0
    scope: BudgetScope = "run"  # run: the run's budget | project: the project's, across its runs
    fraction: float = 0.0  # the share of the limit that was crossed (warnings: 0.5, 0.8, 0.95)
    spent_exact: str = ""  # spent_usd / limit_usd as exact decimal strings
    limit_exact: str = ""


class BudgetSet(Event, frozen=True, kw_only=True):
    """A person set a budget (`yokeflow budget set`, PUT /api/projects/{id}/budget): a run stopped
    by the old one continues if the new one leaves room."""

    aggregate: ClassVar[str] = "budget"
    scope: BudgetScope = "project"
    run_id: str = ""
    limit_exact: str = "0"  # USD, decimal string; "0": no limit
    set_by: str = ""


# ---------------------------------------------------------------- delivery
class DeliveryFailed(Event, frozen=True, kw_only=True):
    """A message a consumer could not handle after its last delivery: visible, never dropped.

    It names the run, task and attempt of the failed event when that event had them: the
    scheduler fails that attempt (or, for a run-level event, the run) with `reason`."""

    aggregate: ClassVar[str] = "project"
    consumer: str
    failed_subject: str
    stream_seq: int
    deliveries: int
    error: str
    event_type: str = ""
    failed_event_id: str = ""
    run_id: str = ""
    task_id: str = ""
    attempt: int = 0

    @property
    def reason(self) -> str:
        return (f"delivery failed: {self.consumer} gave up on {self.event_type or 'an event'} "
                f"after {self.deliveries} deliveries: {self.error}")[:2000]


def delivery_failed(event: Event, *, consumer: str, failed_subject: str, stream_seq: int, deliveries: int,
                    error: str) -> DeliveryFailed:
    """The DeliveryFailed for `event`, naming its run, task and attempt when it has them."""
    return event.caused(
        DeliveryFailed, aggregate_id=event.project_id, consumer=consumer, failed_subject=failed_subject,
        stream_seq=stream_seq, deliveries=deliveries, error=error[:2000], event_type=event.type,
        failed_event_id=event.event_id, run_id=str(getattr(event, "run_id", "") or ""),
        task_id=str(getattr(event, "task_id", "") or ""), attempt=int(getattr(event, "attempt", 0) or 0))


AnyEvent = Union[
    ProjectCreated, PlanRequested, PlanProduced, PlanRejected, PlanApproved, BatchesComputed,
    RunStarted, RunCancelled, RunPaused, RunResumed, RunCompleted, RunFailed,
    TaskReady, AgentAdmitted, AgentStarted, AgentFinished, WorkCommitted, TaskCompleted, TaskFailed, TaskBlocked,
    TaskCancelled, TaskDeferred, CostRecorded,
    WorktreeCreated, MergeRequested, BranchMerged, MergeConflicted, BranchReset, ConflictEscalated, BatchMerged,
    LearningExtracted, ExpertiseUpdated, DiscoveryReported, TaskBlockRequested, BudgetWarning, BudgetExhausted, BudgetSet, DeliveryFailed,
]

EVENT_TYPES: dict[str, type[Event]] = {cls.__name__: cls for cls in AnyEvent.__args__}  # type: ignore[attr-defined]

_decoder = msgspec.json.Decoder(AnyEvent)
_encoder = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


class UnknownEvent(ValueError):
    """An event this version cannot read: a type it does not know, or a newer schema_version."""


def decode(data: bytes) -> Event:
    """One event. Rules (docs/architecture.md, "Schema evolution"): new fields come with defaults
    and old events decode with them; a field's meaning and type never change; an unknown field is
    ignored; an unknown type or a newer schema_version raises UnknownEvent, which readers skip."""
    try:
        event = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        if "Invalid value" in str(exc) and "`$.type`" in str(exc):
            raise UnknownEvent(f"unknown event type: {exc}") from None
        raise
    if event.schema_version > SCHEMA_VERSION:
        raise UnknownEvent(f"{event.type} {event.event_id} has schema_version {event.schema_version}, "
                           f"newer than this version's {SCHEMA_VERSION}")
    return event


def to_dict(event: Event) -> dict[str, Any]:
    return msgspec.to_builtins(event)
