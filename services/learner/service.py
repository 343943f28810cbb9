"""The learner's wiring: after every finished attempt, what it taught (from its log and outcome,
shared/expertise/extract.py) is curated into the domain's expertise document, a new version of
which is appended (`ExpertiseUpdated`); then `LearningExtracted` says the attempt's learning is
stored, which is what the scheduler waits for before a dependent task starts. After every merge
the project's expertise is validated against the target branch.

Idempotent: a version records the attempt it learned from, so a redelivery (or a learner killed
between the two appends) adds nothing twice; both events carry Msg-Ids keyed by the attempt."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from dataclasses import dataclass, field
from typing import Callable

import msgspec

from shared import events as ev
from shared.bus import Bus, Delivery
from shared.config import Config
from shared.budget import BudgetGate, BudgetRefused
from shared.expertise import AttemptLog, Entry, Origin, describe, distil, extract, learn
from shared.llm import make_provider
from shared.llm.pricing import PriceTable, estimate_prompt_tokens, usd
from shared.scrub import scrub
from shared.expertise.model import normalise
from shared.expertise import store
from shared.gitops.repo import BranchPaths
from shared.plan import PlanError
from shared.runner import unless_stopped

log = logging.getLogger("yokeflow.learner")

LOG_WAIT_S = 5.0  # an attempt's log is stored before its AgentFinished; an older executor sends no end mark


@dataclass
class RunInfo:
    started: ev.RunStarted
    tasks: dict[str, tuple[str, str]] = field(default_factory=dict)  # task id -> (domain, title)
    merged: set[str] = field(default_factory=set)  # tasks whose work is on the target branch
    ended: bool = False
    seq: int = 1  # where the run starts in the log: nothing of its attempts comes before it

    @property
    def enabled(self) -> bool:
        return self.started.settings.learning.enabled

    @property
    def max_lines(self) -> int:
        return self.started.settings.learning.expertise_max_lines


class Learner:
    def __init__(self, bus: Bus, config: Config):
        self.bus = bus
        self.config = config
        self.runs: dict[str, RunInfo] = {}
        self.given: dict[str, dict[str, int]] = {}  # project -> entry id -> times given to an agent
        self._counted: set[str] = set()
        self._domain_locks: dict[tuple[str, str], asyncio.Lock] = {}  # one writer per domain document here

    def _lock(self, project_id: str, domain: str) -> asyncio.Lock:
        return self._domain_locks.setdefault((project_id, domain), asyncio.Lock())

    def fold(self, e: ev.Event, seq: int = 1) -> RunInfo | None:
        if isinstance(e, ev.RunStarted) and e.run_id not in self.runs:
            info = RunInfo(e, seq=seq)
            try:
                plan = e.plan.to_plan()
                info.tasks = {t.id: (t.domain or "general", t.title) for t in plan.tasks()}
            except PlanError:
                pass  # the scheduler fails such a run; nothing runs, nothing is learned
            self.runs[e.run_id] = info
        info = self.runs.get(getattr(e, "run_id", "") or "")
        if isinstance(e, ev.AgentStarted) and e.event_id not in self._counted:
            self._counted.add(e.event_id)
            counts = self.given.setdefault(e.project_id, {})
            for entry_id in e.expertise_given:
                counts[entry_id] = counts.get(entry_id, 0) + 1
        if info is not None and isinstance(e, ev.BranchMerged):
            info.merged.add(e.task_id)
        if info is not None and isinstance(e, (ev.RunCompleted, ev.RunFailed, ev.RunCancelled)):
            info.ended = True
        return info

    async def handle(self, d: Delivery) -> None:
        e = d.event
        info = self.fold(e, d.seq)
        if info is None or info.ended or not info.enabled:
            return
        if isinstance(e, ev.AgentFinished):
            await self.learn_from(info, e, redelivered=d.deliveries > 1)
        elif isinstance(e, ev.DiscoveryReported):
            await self.store_discovery(info, e)
        elif isinstance(e, ev.BranchMerged):
            await self.validate_after_merge(info, e)

    async def _attempt_log(self, e: ev.AgentFinished) -> AttemptLog:
        subject = self.bus.log_subject(e.project_id, e.aggregate_id)
        deadline = asyncio.get_running_loop().time() + LOG_WAIT_S
        while True:
            records = [(d.event.kind, d.event.data) async for d in self.bus.read([subject], logs=True)
                       if d.event.data.get("attempt") == e.attempt]
            if any(kind == "attempt_end" for kind, _ in records) or asyncio.get_running_loop().time() > deadline:
                return AttemptLog(records)
            await asyncio.sleep(0.2)

    async def store_discovery(self, info: RunInfo, e: ev.DiscoveryReported) -> int:
        """What an agent reported through its task server, into its domain's expertise at once."""
        origin = Origin(run_id=e.run_id, task_id=e.task_id, attempt=e.attempt)
        entry = Entry(kind="pattern", key=normalise(e.text), text=e.text, files=list(e.files), origin=origin,
                      learned_at=e.occurred_at, confirmed_at=e.occurred_at)
        source = f"discovery {origin.label()} {e.event_id}"
        return await store.append(
            self.bus, e.project_id, e.domain, lambda doc: learn(doc, [entry], now=e.occurred_at), reason="learned",
            source=source, msg_id=f"{e.event_id}:ExpertiseUpdated", cause=e, max_lines=info.max_lines,
            given=self.given.get(e.project_id), applied=lambda versions: any(v.source == source for v in versions))

    async def _discoveries(self, info: RunInfo, e: ev.AgentFinished) -> list[ev.DiscoveryReported]:
        """The attempt's discoveries as the log holds them, read from its run's start (not the
        project's every discovery since its first run)."""
        subject = self.bus.type_filter("DiscoveryReported", project=ev.subject_token(e.project_id),
                                       aggregate="expertise")
        return [d.event async for d in self.bus.read([subject], start_seq=info.seq)
                if isinstance(d.event, ev.DiscoveryReported)
                and (d.event.run_id, d.event.task_id, d.event.attempt) == (e.run_id, e.task_id, e.attempt)]

    async def learn_from(self, info: RunInfo, e: ev.AgentFinished, *, redelivered: bool = True) -> None:
        """`redelivered` False: this is the event's first delivery, so no earlier learner stored its
        learning, and the domain's latest version is all there is to read."""
        domain, title = info.tasks.get(e.task_id, ("general", ""))
        for found in await self._discoveries(info, e):  # stored before this attempt's learning is announced
            await self.store_discovery(info, found)
        origin = Origin(run_id=e.run_id, task_id=e.task_id, attempt=e.attempt)
        attempt_log = await self._attempt_log(e)
        entries = extract(attempt_log, origin=origin, outcome=e.outcome, checks=msgspec.to_builtins(e.checks),
                          title=title, now=e.occurred_at)
        if info.started.settings.learning.model:
            entries += await self._distil(info, e, attempt_log, domain, title, origin)
        key = f"{e.run_id}:{e.task_id}:{e.attempt}"
        version = 0
        if entries:
            async with self._lock(e.project_id, domain):
                version = await store.append(
                    self.bus, e.project_id, domain, lambda doc: learn(doc, entries, now=e.occurred_at),
                    reason="learned", source=origin.label(), msg_id=f"{key}:ExpertiseUpdated", cause=e,
                    max_lines=info.max_lines, given=self.given.get(e.project_id),
                    applied=(lambda versions: any(v.reason == "learned" and v.source == origin.label()
                                                  for v in versions)) if redelivered else None)
        extracted = e.caused(ev.LearningExtracted, aggregate_id=domain, run_id=e.run_id, task_id=e.task_id,
                             attempt=e.attempt, domain=domain, entries=entries,
                             learnings=[describe(x) for x in entries], expertise_version=version)
        await self.bus.publish_in_run(extracted, e.run_id, msg_id=f"{key}:LearningExtracted")

    async def _distil(self, info: RunInfo, e: ev.AgentFinished, attempt_log: AttemptLog, domain: str, title: str,
                      origin: Origin) -> list[Entry]:
        """`learning.model`'s entries for the attempt: one call, reserved against the attempt's budgets
        and recorded as a CostRecorded of the learner, made at most once per attempt (a redelivery that
        finds the call's cost in the log does not pay again; the log's own entries still count)."""
        task_events = [d.event async for d in self.bus.read([self.bus.aggregate_filter(e)])]
        if any(isinstance(x, ev.CostRecorded) and x.by == "learner" and x.run_id == e.run_id and x.attempt == e.attempt
               for x in task_events):
            log.info("learning of %s: its model call was made before; not calling again", origin.label())
            return []
        ready = next((x for x in task_events if isinstance(x, ev.TaskReady) and x.run_id == e.run_id
                      and x.attempt == e.attempt), None)
        settings = info.started.settings
        model = settings.cost.models.get(settings.learning.model, settings.learning.model)
        prices = PriceTable.with_overrides(settings.cost.prices)
        body = distil.request(attempt_log, task=f"{e.task_id}: {title}", domain=domain, outcome=e.outcome)
        gate = BudgetGate(self.bus, ready, ready.cost) if ready is not None and ready.cost else None
        hold = None
        try:
            if gate is not None:
                hold = await gate.reserve(prices.worst_case(
                    model, estimate_prompt_tokens(body["system"], body["messages"], body["tools"]), body["max_tokens"]))
            provider = make_provider("anthropic", {"base_url": settings.agent.base_url or None})
            turn = await provider.create(model=model, **body)
        except BudgetRefused as exc:
            log.warning("learning of %s without learning.model: %s", origin.label(), exc)
            return []
        except Exception as exc:  # the model is a bonus: the log's entries are stored without it
            if hold is not None:
                await gate.settle(hold, Decimal(0))
            log.warning("learning of %s without learning.model (%s: %s)", origin.label(), type(exc).__name__,
                        scrub(str(exc))[:300])
            return []
        cost = prices.cost(model, turn.usage)
        if hold is not None:
            await gate.settle(hold, cost)
        u = turn.usage
        await self.bus.publish(
            e.caused(ev.CostRecorded, aggregate_id=e.aggregate_id, run_id=e.run_id, task_id=e.task_id, attempt=e.attempt,
                     model=turn.model or model, input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                     cache_read_tokens=u.cache_read_tokens, cache_write_tokens=u.cache_write_tokens,
                     cost_usd=float(cost), cost_exact=usd(cost), call=0, by="learner"),
            msg_id=f"{e.run_id}:{e.task_id}:{e.attempt}:learner:CostRecorded")
        entries, dropped = distil.entries_from(turn.content, origin=origin, now=e.occurred_at)
        if dropped:
            log.info("learning of %s: dropped %d proposed entr%s: %s", origin.label(), len(dropped),
                     "y" if len(dropped) == 1 else "ies", "; ".join(dropped)[:500])
        return entries

    def _unmerged_as_of_now(self) -> Callable[[Entry], bool]:
        """Whether an entry was learned from a task of an open run whose work was not merged when
        this was called: its files are still in that task's worktree, and flagging them (then pruning
        them at the next merge) would lose what a dependent is waiting to read. Taken before the
        branch is read, so a merge that lands while a validation runs (the learner handles several
        events at once) counts as unmerged for it: the branch it read does not hold that work."""
        merged = {run_id: (info.ended, frozenset(info.merged)) for run_id, info in self.runs.items()}

        def unmerged(entry: Entry) -> bool:
            ended, done = merged.get(entry.origin.run_id, (True, frozenset()))
            return not ended and entry.origin.task_id not in done

        return unmerged

    async def validate_after_merge(self, info: RunInfo, e: ev.BranchMerged) -> None:
        repo, branch = info.started.repo_path, e.target_branch
        pending = self._unmerged_as_of_now()  # first: every merge it counts is on the branch read next
        with await asyncio.to_thread(BranchPaths, repo, branch) as paths:
            await self._validate_domains(info, e, paths, branch, pending)

    async def _validate_domains(self, info: RunInfo, e: ev.BranchMerged, paths: BranchPaths, branch: str,
                                pending: Callable[[Entry], bool]) -> None:
        for domain in await store.domains(self.bus, e.project_id):
            # not under the domain's lock: most checks change nothing and write nothing, and one that
            # does is an optimistic append like any other. Held, every merge kept the learnings of
            # the attempts that finished with it waiting (a run's dependents wait for those).
            report = await store.validate_domain(
                self.bus, e.project_id, domain, paths.exists, now=e.occurred_at,
                branch=branch, max_lines=info.max_lines, pending=pending)
            if report["flagged"] or report["pruned"]:
                log.info("expertise %s after merge of %s: %d flagged, %d pruned", domain, e.task_id,
                         len(report["flagged"]), len(report["pruned"]))

    async def serve(self, stop: asyncio.Event) -> None:
        kinds = ("RunStarted", "AgentStarted", "AgentFinished", "DiscoveryReported", "BranchMerged", "RunCompleted",
                 "RunFailed", "RunCancelled")
        subjects = [self.bus.type_filter(k) for k in kinds]

        async def catch_up() -> None:
            async for d in self.bus.read(subjects, patient=True):  # a NATS outage at start is waited out
                self.fold(d.event, d.seq)

        if not await unless_stopped(catch_up(), stop):
            return
        # several attempts at once: a dependent waits for its dependency's learning, so one slow
        # extraction or validation must not hold every other one up (appends are optimistic, keyed by attempt)
        await self.bus.consume("learner", subjects, self.handle, stop=stop, concurrency=8)


async def serve(bus: Bus, config: Config, stop: asyncio.Event) -> None:
    await Learner(bus, config).serve(stop)
