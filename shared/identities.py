"""Who may publish what: the one table of NATS identities and the event types each owns.

Subjects are `<prefix>.evt.<project>.<aggregate>.<id>.<EventType>`, so a publish permission can
name an event type (`*.evt.*.task.*.TaskReady`). The embedded server's configuration is built
from this table (shared/infra.py), and docs/security.md shows the same for a cluster's accounts.
The prefix token is a wildcard: every prefix on a YokeFlow server belongs to YokeFlow (tests run
many prefixes on one server).
"""

from __future__ import annotations

from shared import events as ev
from shared.subjects import ANY, Subjects

# The person's front doors publish the same commands (expertise versions too: a person imports,
# rolls back and applies a validation through them).
_COMMANDS: tuple[type[ev.Event], ...] = (
    ev.ProjectCreated, ev.RunStarted, ev.RunCancelled, ev.MergeRequested,
    ev.PlanRequested, ev.PlanProduced, ev.PlanRejected, ev.PlanApproved, ev.BudgetSet, ev.ExpertiseUpdated,
)

PUBLISHES: dict[str, tuple[type[ev.Event], ...]] = {
    "planner": (ev.PlanProduced, ev.PlanRejected, ev.BatchesComputed, ev.TaskReady, ev.AgentAdmitted,
                ev.TaskCompleted, ev.TaskFailed, ev.TaskBlocked, ev.TaskCancelled, ev.TaskDeferred,
                ev.ConflictEscalated, ev.RunPaused, ev.RunResumed, ev.RunCompleted, ev.RunFailed, ev.DeliveryFailed),
    # the executor's budget gate announces the levels its reservations cross (shared/budget.py)
    # and its agents' task server reports discoveries and block requests (executor/agent/task_tools.py)
    "executor": (ev.WorktreeCreated, ev.AgentStarted, ev.AgentFinished, ev.WorkCommitted, ev.CostRecorded,
                 ev.BudgetWarning, ev.BudgetExhausted, ev.DiscoveryReported, ev.TaskBlockRequested, ev.DeliveryFailed),
    "merger": (ev.BranchMerged, ev.MergeConflicted, ev.BranchReset, ev.BatchMerged, ev.DeliveryFailed),
    # with learning.model, the learner's own model call is priced and reserved like an agent's
    "learner": (ev.LearningExtracted, ev.ExpertiseUpdated, ev.CostRecorded, ev.BudgetWarning, ev.BudgetExhausted,
                ev.DeliveryFailed),
    "ledger": (ev.BudgetWarning, ev.BudgetExhausted, ev.DeliveryFailed),
    "gateway": _COMMANDS,
    "cli": _COMMANDS,
}
# Agent telemetry (`<prefix>.log.>`): only the executor writes it. Key-value buckets (`<stream>_LEASES`
# for attempt leases, `<stream>_BUDGETS` for budget accounts; a subject wildcard cannot match part of
# a token, so the grant is every bucket): the executor, and the front doors that set a budget.
WRITES_LOGS = frozenset({"executor"})
WRITES_KV = frozenset({"executor", "learner", "gateway", "cli"})
# Every identity above; `admin` may publish anything (operators' tools and the test suite),
# and its password is kept like the PostgreSQL superuser's.
SERVICE_IDENTITIES = tuple(PUBLISHES)
ADMIN = "admin"
IDENTITIES = (*SERVICE_IDENTITIES, ADMIN)

# What every JetStream client needs: the API (streams, consumers, fetch, direct get) and acks.
JETSTREAM_ALLOW = ("$JS.API.>", "$JS.ACK.>")
# No service may delete or purge the log or its messages (the streams deny it too).
JETSTREAM_DENY = ("$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.MSG.DELETE.>")


_ANY_PREFIX = Subjects(ANY)


def event_subject_permission(event_type: type[ev.Event]) -> str:
    return _ANY_PREFIX.of_type(event_type.__name__, aggregate=event_type.aggregate)


def publish_allow(identity: str) -> list[str]:
    """The subjects `identity` may publish to, as NATS permission subjects."""
    if identity == ADMIN:
        return [">"]
    allowed = [*JETSTREAM_ALLOW, *(event_subject_permission(t) for t in PUBLISHES[identity])]
    if identity in WRITES_LOGS:
        allowed.append(_ANY_PREFIX.all_logs)
    if identity in WRITES_KV:
        allowed.append("$KV.*.>")
    return allowed


def publish_deny(identity: str) -> list[str]:
    return [] if identity == ADMIN else list(JETSTREAM_DENY)


def identity_of(connection_name: str) -> str:
    """`yokeflow-planner` -> `planner`, `yokeflow-admin` -> `admin`; anything else is the CLI's."""
    name = connection_name.removeprefix("yokeflow-")
    return name if name in IDENTITIES else "cli"


def may_publish(identity: str, event_type: str) -> bool:
    return identity == ADMIN or any(t.__name__ == event_type for t in PUBLISHES.get(identity, ()))
