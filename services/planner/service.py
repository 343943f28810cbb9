"""The planner's wiring: fold the log into run states, decide, append the decisions.

On start it reads the whole log (so a restarted planner resumes exactly where it was),
decides once for every active run, then follows its durable consumer.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from shared import events as ev
from shared import metrics, telemetry
from shared.bus import Bus, ConcurrencyConflict, Delivery, Published, outage, outage_wait, retry_on_conflict, together
from shared.config import Config
from shared.plan import PlanError
from shared.runner import unless_stopped
from services.planner.models import History
from services.planner.scheduler import RunState, decide

log = logging.getLogger("yokeflow.planner")

# Folded (their stream sequences matter for appends) but never a reason to decide again.
PASSIVE = (ev.AgentStarted, ev.ExpertiseUpdated, ev.BudgetWarning, ev.BatchMerged)


def planner_subjects(bus: Bus) -> list[str]:
    """What the planner folds: every aggregate's events but the expertise documents' (each task's
    version is tens of KB the scheduler never reads, and delivering and decoding it was work on the
    way of every dispatch), and of those only LearningExtracted, the gate of a dependent's start.
    From the event registry, so an aggregate added later is folded too."""
    aggregates = sorted({cls.aggregate for cls in ev.EVENT_TYPES.values()} - {"expertise"})
    return ([bus.subjects.of_aggregate(a) for a in aggregates]
            + [bus.type_filter(ev.LearningExtracted.__name__, aggregate="expertise")])


class Planner:
    def __init__(self, bus: Bus):
        self.bus = bus
        self.runs: dict[str, RunState] = {}
        self.rejected: set[str] = set()
        self.plan_errors: dict[str, str] = {}
        self.aggregate_seq: dict[str, int] = {}
        self.resume_trace: dict[str, dict[str, str]] = {}  # run id -> trace headers of its latest event at start
        self._lock = asyncio.Lock()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.histories: dict[str, History] = {}  # per project: what model selection learns from
        self._also_decide: list[RunState] = []
        metrics.observe_tasks(self.task_counts)

    def task_counts(self) -> dict[str, int]:
        """Tasks of the runs still going, by status (the `yokeflow.tasks` gauge)."""
        counts: dict[str, int] = {}
        for state in list(self.runs.values()):
            if not state.ended:
                for t in state.tasks.values():
                    counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    def fold(self, d: Delivery) -> RunState | ev.RunStarted | None:
        """Fold a delivery in; returns the run it concerns (or a RunStarted whose plan does not parse)."""
        e = d.event
        key = self.bus.aggregate_filter(e)
        self.aggregate_seq[key] = max(self.aggregate_seq.get(key, 0), d.seq)
        history = self.histories.setdefault(e.project_id, History())
        history.apply(e)  # keyed by logical identity: a re-fold changes nothing
        if isinstance(e, ev.RunStarted):
            if e.run_id in self.runs or e.run_id in self.rejected:
                return self.runs.get(e.run_id)
            try:
                self.runs[e.run_id] = RunState.start(e)
            except PlanError as exc:
                self.plan_errors[e.run_id] = str(exc)
                return e
            self.runs[e.run_id].history = history
            return self.runs[e.run_id]
        if isinstance(e, (ev.BudgetSet, ev.BudgetExhausted)) and getattr(e, "scope", "") == "project":
            # the project's budget concerns every running run of the project; decide for the first here
            concerned = [s for s in self.runs.values() if s.project_id == e.project_id and not s.ended]
            for other in concerned:
                other.apply(e)
            self._also_decide = concerned[1:]
            return concerned[0] if concerned else None
        if isinstance(e, ev.RunFailed) and e.run_id not in self.runs:
            self.rejected.add(e.run_id)
            return None
        state = self.runs.get(getattr(e, "run_id", "") or "")
        if state is not None:
            state.apply(e)
        return state

    async def catch_up(self) -> None:
        async for d in self.bus.read(planner_subjects(self.bus), patient=True):  # a NATS outage at start is waited out
            state = self.fold(d)
            if isinstance(state, RunState) and d.headers and "traceparent" in d.headers:
                self.resume_trace[state.run_id] = d.headers

    async def handle(self, d: Delivery) -> None:
        await self.handle_batch([d])

    async def handle_batch(self, deliveries: list[Delivery]) -> None:
        """Fold a run of events, then decide once per run they can change."""
        async with self._lock:
            targets: dict[str, RunState | ev.RunStarted] = {}
            for d in deliveries:
                self._also_decide = []
                target = self.fold(d)
                if isinstance(d.event, PASSIVE):
                    continue
                for concerned in ([target] if target is not None else []) + self._also_decide:
                    targets[concerned.run_id] = concerned
            for target in targets.values():
                if isinstance(target, ev.RunStarted):
                    await self._reject(target)
                else:
                    await self._decide(self.runs.get(target.run_id, target))

    async def _reject(self, e: ev.RunStarted) -> None:
        reason = f"invalid plan: {self.plan_errors.pop(e.run_id, 'it does not parse')}"
        failed = e.caused(ev.RunFailed, aggregate_id=e.run_id, run_id=e.run_id, reason=reason[:4000])
        await self.bus.publish(failed, msg_id=f"{e.run_id}:RunFailed")
        self.rejected.add(e.run_id)

    async def _decide(self, state: RunState, attempts: int = 5) -> None:
        run_id = state.run_id

        async def write() -> None:
            current = self.runs[run_id]  # after a reload, the run as the log has it now
            decisions = decide(current)
            if any(isinstance(e, ev.TaskReady) for e, _ in decisions) and not await self.bus.run_open(
                    current.project_id, run_id):
                raise ConcurrencyConflict(f"run {run_id} was cancelled or ended")  # reload: nothing starts now
            # Sent back to back, their acks awaited together (one round trip, not one per decision),
            # except that an append checked against its aggregate waits for the earlier ones on it.
            group: list[tuple[ev.Event, str, str, int | None]] = []
            for event, msg_id in decisions:
                key = self.bus.aggregate_filter(event)
                # a task's dispatch against its task's events; a run's pause or end against the run's
                # (a RunCancelled this planner has not folded yet makes it reload and decide again)
                own = isinstance(event, ev.TaskReady) or event.aggregate == "run"
                if own and any(k == key for _, _, k, _ in group):
                    await self._append(current, group)
                    group = []
                group.append((event, msg_id, key, self.aggregate_seq.get(key, 0) if own else None))
            await self._append(current, group)
            self._schedule_resume(current)

        try:
            # Someone appended to a task first: reload the run from the log and decide again.
            await retry_on_conflict(write, reload=lambda: self._reload(run_id), attempts=attempts, what=f"run {run_id}")
        except Exception:
            await self._reload(run_id)  # what was folded but not published must not linger
            raise

    async def _append(self, current: RunState, group: list[tuple[ev.Event, str, str, int | None]]) -> None:
        """Append decisions in order (one connection's messages are stored in the order sent) and fold
        each in once appended (its delivery later is a no-op). On a conflict the caller reloads the run
        from the log: what did land is there, and deciding again sends it with the same Msg-Id."""
        if not group:
            return

        async def append(event: ev.Event, msg_id: str, expected: int | None) -> Published:
            if isinstance(event, ev.AgentAdmitted):  # a slot: checked against the run's own events as it lands
                done = await self.bus.publish_in_run(event, current.run_id, msg_id=msg_id)
                if done is None:
                    raise ConcurrencyConflict(f"run {current.run_id} was cancelled or ended")  # reload: no slot now
                return done
            return await self.bus.publish(event, msg_id=msg_id, expected_seq=expected)

        published = await together([append(event, msg_id, expected) for event, msg_id, _, expected in group])
        for (event, _, key, _), done in zip(group, published):
            self.aggregate_seq[key] = max(self.aggregate_seq.get(key, 0), done.seq)
            current.apply(event)

    async def _reload(self, run_id: str, *, patient: bool = False) -> RunState:
        self.runs.pop(run_id, None)
        async for d in self.bus.read(patient=patient):
            e = d.event
            if getattr(e, "run_id", None) == run_id or (isinstance(e, ev.BudgetSet) and e.scope == "project"):
                self.fold(d)
        return self.runs[run_id]

    def _schedule_resume(self, state: RunState) -> None:
        """A paused run resumes by itself once the pause has run its course."""
        pause = state.paused
        if pause is None or pause.event_id in self._timers:
            return
        since = (datetime.now(timezone.utc) - datetime.fromisoformat(pause.occurred_at)).total_seconds()
        delay = max(0.0, pause.resume_after_s - since)
        resumed = pause.caused(ev.RunResumed, aggregate_id=state.run_id, run_id=state.run_id,
                               reason=f"pause of {pause.resume_after_s:g}s is over")

        key = self.bus.aggregate_filter(resumed)

        async def resume() -> None:
            try:  # only if the run has not moved since (cancelled, ended or paused again: nothing to resume)
                await self.bus.publish(resumed, msg_id=f"{pause.event_id}:RunResumed",
                                       expected_seq=self.aggregate_seq.get(key, 0))
            except ConcurrencyConflict:
                log.info("run %s moved on during its pause: not resumed by the timer", state.run_id)

        def fire() -> None:
            asyncio.ensure_future(resume())

        self._timers[pause.event_id] = asyncio.get_running_loop().call_later(delay, fire)

    async def resume(self) -> None:
        """Decide for every open run found at start, each in the trace of its latest event (a planner
        that starts after `yokeflow run` published RunStarted dispatches the run's first tasks here)."""
        for state in list(self.runs.values()):
            if not state.ended:
                with telemetry.span_from_headers("planner resume", self.resume_trace.get(state.run_id),
                                                 {"yf.run_id": state.run_id}):
                    await self._resume_run(state.run_id)
        self.resume_trace.clear()

    async def _resume_run(self, run_id: str) -> None:
        """A run's decisions at start. A NATS outage here (right after the catch-up) is waited out:
        there is no message to redeliver them, so giving up would leave the run undecided until its
        next event. Deciding again is safe: every decision is keyed by its identity."""
        outages = 0
        while True:
            try:
                async with self._lock:
                    if run_id not in self.runs:  # a reload the outage cut short: the run from the log again
                        await self._reload(run_id, patient=True)
                    await self._decide(self.runs[run_id])
                return
            except Exception as exc:
                if not outage(exc) or self.bus.closed:
                    raise
                wait = outage_wait(outages)
                outages += 1
                log.warning("run %s: NATS not answering (%s) as the planner resumes it; deciding again in %gs",
                            run_id, type(exc).__name__, wait)
                await asyncio.sleep(wait)

    async def serve(self, stop: asyncio.Event) -> None:
        async def start_up() -> None:
            await self.catch_up()
            await self.resume()

        try:
            if not await unless_stopped(start_up(), stop):
                return
            await self.bus.consume_batches("planner", planner_subjects(self.bus), self.handle_batch, stop=stop,
                                           max_batch=64, max_deliver=10)
        finally:
            for timer in self._timers.values():
                timer.cancel()


async def serve(bus: Bus, config: Config, stop: asyncio.Event) -> None:
    await Planner(bus).serve(stop)
