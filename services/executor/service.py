"""The executor's wiring: a `TaskReady` becomes committed, checked work on a branch.

Several executor processes share one durable consumer; the scheduler, not the executor,
bounds how many tasks run at once. Cancellation reaches every executor through a live
subscription; a task redelivered after a crash resumes in the same worktree.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, NamedTuple

import msgspec

from shared import events as ev
from shared import metrics, telemetry
from shared.threads import Priority, Threads
from shared.gitworker import git_worker
from shared.bus import Bus, Delivery, Lease, Published
from shared.config import Config, process_env
from shared.gitops import GitError, Worktree, abort_resolution, begin_resolution, unresolved
from shared.expertise import for_prompt
from shared.gitops.repo import changed_paths
from shared.expertise import store as expertise_store
from shared.budget import BudgetGate
from shared.llm import make_provider
from shared.llm.pricing import PriceTable, usd
from services.executor.remote import Remote
from services.executor.agent.task_tools import TaskScope, TaskTools
from services.executor.agent.loop import AgentResult, CallRecord, run_agent, run_checks_only
from services.executor.agent.prompt import (
    build_resolution_prompt,
    build_system_prompt,
    build_task_prompt,
    repo_map,
)
from services.executor.agent.tools import Sandbox
from shared.sandbox import unavailable_reason, warn_if_off
from services.executor import domain, gitjobs

_AGAIN = object()  # _attempt: wait for a slot again (a handed slot the log did not record)
_NO_HANDOVER = ("RunPaused", "RunCancelled")  # the run's latest event types under which no slot is handed over


class Handover(NamedTuple):
    """The slot of an agent of the same run that ended here, handed to a candidate: when it ended,
    and the append of its AgentFinished with the candidate's AgentStarted (True once both are in)."""
    at: str
    recorded: asyncio.Future


class _Candidate(NamedTuple):
    rank: int
    handed: asyncio.Future  # gets its Handover
    agent_started: Callable[[], tuple[ev.Event, str]]


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


log = logging.getLogger("yokeflow.executor")

# A live cancellation is believed once read back from the log (core NATS also delivers a publish
# the stream refused): the first pause when the log does not hold it yet, then doubling up to the
# poll (a cancellation not there by then is dropped). An attempt waiting for its slot also reads
# the log this often.
LOG_RECHECK_S = 0.005
LOG_POLL_S = 2.0


class Executor:
    def __init__(self, bus: Bus, config: Config, *, name: str | None = None, concurrency: int = 0,
                 ack_wait: float = 60.0, lease_s: float | None = None, drain_s: float = 30.0):
        self.bus = bus
        self.config = config
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency  # 0: every TaskReady the scheduler lets through (it owns the cap)
        self.running: dict[tuple[str, str], asyncio.Event] = {}
        self.ack_wait = ack_wait  # a crashed executor's task is redelivered after this long
        # a holder that stops renewing (killed, or frozen this long) loses its attempt to a redelivery
        self.lease_s = max(float(lease_s if lease_s is not None else ack_wait), 1.0)
        self.drain_s = drain_s  # on SIGTERM, how long tasks in hand may finish before going back to the log
        rt = config.runtime
        self.remote = Remote(rt.git_remote, rt.git_token or "", Path(rt.executor_scratch)) if rt.git_remote else None
        # Threads of its own for worktree work (made as needed): the default pool has cpu+4 of them,
        # shared with every other service of the process, and each agent's worktree waited its turn.
        self._git = Threads("yokeflow-executor-git", max_workers=32)
        # attempts waiting for their agent slot: each future gets its AgentAdmitted as the stream stored it
        self._admissions: dict[tuple[str, str, int], asyncio.Future] = {}
        # attempts here admitted as candidates, by run: (task, attempt) -> the candidate
        self._candidates: dict[str, dict[tuple[str, int], _Candidate]] = {}
        self._checks: set[asyncio.Task] = set()  # live cancellations being looked up in the log

    # ------------------------------------------------------------------ history
    async def _task_history(self, e: ev.TaskReady) -> list[ev.Event]:
        return [d.event async for d in self.bus.read([self.bus.aggregate_filter(e)])]

    async def _view(self, e: ev.TaskReady, seq: int = 0) -> tuple[domain.AttemptView, list[ev.Event]]:
        """The attempt's task history and its run's endings, folded. `seq`: the TaskReady's place in the log."""
        if seq and e.purpose == "task":
            quick = await self._quick_view(e, seq)
            if quick is not None:
                return quick, [e]
        project = ev.subject_token(e.project_id)

        async def endings() -> list[ev.Event]:
            return [d.event async for d in self.bus.read(
                [self.bus.type_filter(t.__name__, project=project, aggregate="run") for t in domain.RUN_ENDINGS])]

        # both reads at once: each is a few round trips, and this is on the way to the agent's start
        history, ended = await asyncio.gather(self._task_history(e), endings())
        return domain.fold([*history, *ended], e), history

    async def _quick_view(self, e: ev.TaskReady, seq: int) -> domain.AttemptView | None:
        """The common case in one round trip: the TaskReady is still its task's last event. The planner
        appended it expecting the task's last sequence it had folded, so nothing of the task before it
        can change the decision; only the run's endings (each the last event on its own subject) can.
        None: the task moved on since (a redelivery, a cancellation): read its whole history."""
        subjects = self.bus.subjects
        last, endings = await asyncio.gather(self.bus.aggregate_seq(e), self.bus.last_events(
            [subjects.event(e.project_id, "run", e.run_id, t.__name__) for t in domain.RUN_ENDINGS]))
        if last != seq:  # (an admission too: a slot goes only to an attempt whose worktree was made)
            return None
        return domain.fold(endings, e)

    def _admission_subject(self, e: ev.TaskReady) -> str:
        return self.bus.subjects.event(e.project_id, ev.AgentAdmitted.aggregate, e.aggregate_id, "AgentAdmitted")

    async def _admission(self, e: ev.TaskReady, cancel: asyncio.Event,
                         agent_started: Callable[[], tuple[ev.Event, str]]) -> ev.AgentAdmitted | Handover | None:
        """Wait for the attempt's agent slot: its AgentAdmitted as the log holds it, or, admitted as a
        candidate, the slot of an agent of the run that ended here (`_finish`); None when it was
        cancelled (or its lease lost) first. Admissions come as the stream stores them (`Bus.follow`:
        a publish the stream refused, a lost optimistic check, never arrives, so none is read
        back); the log is also read when the wait begins and now and then after, should the
        follower be making its consumer again."""
        key = (e.run_id, e.task_id, e.attempt)
        loop = asyncio.get_running_loop()
        handed: asyncio.Future | None = None
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            while True:
                stored = self._admissions[key]
                found = stored.result() if stored.done() else await self.bus.last_event(self._admission_subject(e))
                if isinstance(found, ev.AgentAdmitted) and found.attempt == e.attempt:
                    if not found.candidate:
                        return found
                    if handed is None:  # an agent of the run that ends here may hand it its slot
                        handed = loop.create_future()
                        self._candidates.setdefault(e.run_id, {})[(e.task_id, e.attempt)] = _Candidate(
                            found.rank, handed, agent_started)
                    if stored.done():  # then wait for the next admission, one that gives a slot
                        stored = self._admissions[key] = loop.create_future()
                await asyncio.wait({stored, cancelled, *([handed] if handed else [])}, timeout=LOG_POLL_S,
                                   return_when=asyncio.FIRST_COMPLETED)
                if handed is not None and handed.done():
                    return handed.result()
                if cancel.is_set():
                    return None
        finally:
            cancelled.cancel()
            if handed is not None:
                pool = self._candidates.get(e.run_id, {})
                pool.pop((e.task_id, e.attempt), None)
                if not pool:
                    self._candidates.pop(e.run_id, None)

    def _heir(self, e: ev.TaskReady) -> tuple[tuple[str, int], _Candidate] | None:
        """The candidate of `e`'s run here to hand a slot to (the lowest rank), taken from the pool;
        none while the run is paused or cancelled as this executor last saw it."""
        pool = self._candidates.get(e.run_id)
        if not pool or self.bus.run_last_known(e.project_id, e.run_id) in _NO_HANDOVER:
            return None
        waiting = [(c.rank, k) for k, c in pool.items() if not c.handed.done() and k[0] != e.task_id]
        if not waiting:
            return None
        _, k = min(waiting)
        return k, pool.pop(k)

    async def _on_admitted(self, e: ev.Event, seq: int) -> None:
        """An AgentAdmitted the stream stored: the attempt waiting for it starts."""
        if isinstance(e, ev.AgentAdmitted):
            waiting = self._admissions.get((e.run_id, e.task_id, e.attempt))
            if waiting is not None and not waiting.done():
                waiting.set_result(e)

    async def _expertise(self, e: ev.TaskReady) -> tuple[str, list[str], dict[str, int]]:
        """The most useful entries of the domains the scheduler named, within the prompt budget;
        the ids given and the versions they came from are recorded on AgentStarted."""
        docs, versions = [], {}
        for name in e.expertise_domains:
            update = await expertise_store.latest(self.bus, e.project_id, name)
            if update is not None:
                docs.append(expertise_store.document_of(update, name))
                versions[name] = update.version
        text, given = for_prompt(docs, budget_tokens=self.config.learning.prompt_tokens)
        return text, given, versions

    def _task_tools(self, e: ev.TaskReady) -> TaskTools:
        """The agent's task server, scoped to this attempt's task and run."""
        async def publish(event: ev.Event, msg_id: str) -> None:
            await self.bus.publish_in_run(event, e.run_id, msg_id=msg_id)

        async def changed_files(dep: str) -> list[str]:
            probe = ev.BranchMerged(project_id=e.project_id, aggregate_id=ev.task_aggregate_id(e.run_id, dep),
                                    run_id=e.run_id, task_id=dep, branch="")
            merges = [d.event async for d in self.bus.read([self.bus.aggregate_filter(probe)])
                      if isinstance(d.event, ev.BranchMerged) and d.event.commit]
            return await self._git.run(changed_paths, e.repo_path, merges[-1].commit) if merges else []

        return TaskTools(TaskScope(origin=e, publish=publish, changed_files=changed_files,
                                   latest_expertise=lambda d: expertise_store.latest(self.bus, e.project_id, d)))

    # ------------------------------------------------------------------ handling
    async def handle(self, d: Delivery) -> None:
        e = d.event
        if not isinstance(e, ev.TaskReady):
            return
        # The view is read under the lease (a skip costs a lease, not a read): a previous holder may
        # have finished before its lease expired. A first delivery has had no holder (each attempt
        # is one TaskReady, appended once against its task's events), so its view is read while
        # its lease is taken: one round trip on the way to every agent's start.
        viewing = asyncio.ensure_future(self._view(e, d.seq)) if d.deliveries == 1 else None
        try:
            lease = await self._hold(e, d.seq)
        except BaseException:
            if viewing is not None:
                viewing.cancel()
            raise
        if lease is None:
            if viewing is not None:
                viewing.cancel()
            return  # its live holder finished it while this delivery waited
        try:
            view, history = await (viewing or self._view(e, d.seq))
            if await self._act_without_agent(e, view, lease):
                return
            if not await self._execute(e, d, view=view, history=history, lease=lease):
                d.leave_unacked()  # the lease went to a redelivery: the message is its holder's now
        finally:
            await self.bus.lease_release(lease)

    async def _act_without_agent(self, e: ev.TaskReady, view: domain.AttemptView, lease: Lease) -> bool:
        action = domain.decide(view)
        if action == "skip":
            return True
        if action == "commit":
            await self._commit_after_crash(e, view.uncommitted, lease)
            return True
        if action == "cancel":
            await self._finish(e, AgentResult(outcome="cancelled", summary="", error="cancelled before start"),
                               commit="", wt=None, started=time.monotonic())
            return True
        return False

    async def _hold(self, e: ev.TaskReady, seq: int = 0) -> Lease | None:
        """The attempt's lease: taken at once, or after its live holder lets go or stops renewing.
        Meanwhile the delivery's heartbeat keeps the message ours; None once nothing is left to run."""
        key, holder = domain.lease_key(e), f"{self.name}:{uuid.uuid4().hex[:8]}"
        while True:
            lease = await self.bus.lease_acquire(key, holder, self.lease_s)
            if lease is not None:
                return lease
            view, _ = await self._view(e, seq)
            if domain.decide(view) not in ("run", "commit"):
                return None  # finished, cancelled or ended by the live holder's side
            await asyncio.sleep(min(1.0, self.lease_s / 4))

    async def _keep(self, lease: Lease, cancel: asyncio.Event) -> None:
        """Renew the lease while the agent works; a renewal refused means another holder has it."""
        while True:
            await asyncio.sleep(lease.ttl / 3)
            try:
                if not await self.bus.lease_renew(lease):
                    log.warning("lease %s lost (this executor was stopped or cut off): stopping its agent", lease.key)
                    cancel.set()
                    return
            except Exception as exc:  # NATS unreachable for a moment: the next beat tries again
                log.warning("lease %s not renewed: %s", lease.key, exc)

    async def _still_holding(self, lease: Lease) -> bool:
        """Checked right before each effect of the attempt (commit, AgentFinished). A lease the
        server renewed less than 0.9 of its TTL ago (by the monotonic clock, which runs on while
        the process is stopped) cannot have expired, so it needs no round trip."""
        if lease.fresh():
            return True
        try:
            return await self.bus.lease_renew(lease)
        except Exception:
            return False

    async def _execute(self, e: ev.TaskReady, d: Delivery, view: domain.AttemptView, history: list[ev.Event],
                       lease: Lease) -> bool:
        """Prepare the attempt's worktree, wait for its agent slot, run its agent under `lease`; False
        when the lease was lost (nothing published after)."""
        key = (e.run_id, e.task_id, e.attempt)
        self._admissions[key] = asyncio.get_running_loop().create_future()
        cancel = asyncio.Event()
        self.running[(e.run_id, e.task_id)] = cancel
        keeper = asyncio.create_task(self._keep(lease, cancel))
        try:
            tries = 0
            while (done := await self._attempt(e, d, view, history, lease, cancel, tries)) is _AGAIN:
                tries += 1  # a slot handed over that the log did not record (the run paused meanwhile)
                view, history = await self._view(e)
                if await self._act_without_agent(e, view, lease):
                    return True
            return done
        finally:
            self.running.pop((e.run_id, e.task_id), None)
            self._admissions.pop(key, None)
            keeper.cancel()

    async def _attempt(self, e: ev.TaskReady, d: Delivery, view: domain.AttemptView, history: list[ev.Event],
                       lease: Lease, cancel: asyncio.Event, tries: int = 0) -> bool | object:
        resumed_after = view.interrupted
        started = time.monotonic()
        parallel = self.config.parallel
        options = e.provider_options
        jail = options.sandbox
        env_allow = list(options.env_allow)
        if reason := unavailable_reason(jail):  # refused before anything runs, in one line
            await self._finish(e, AgentResult(outcome="failure", summary="", error=reason), commit="", wt=None,
                               started=started)
            return True
        resolving = e.purpose == "resolve_conflict"
        working_copy = await self._working_copy(e)

        async def on_log(kind: str, data: dict[str, Any]) -> None:
            await self.bus.log(e.project_id, e.aggregate_id, kind,
                               {"run_id": e.run_id, "task_id": e.task_id, "attempt": e.attempt, **data})

        def provider() -> Any:  # the first use imports the provider's SDK (about a second): off the loop
            try:
                return make_provider(e.provider, _provider_options(e.provider, options, wt, on_log))
            except Exception as exc:  # a provider that cannot start is the task's failure, not the consumer's
                return exc

        setup = dict(setup_command=parallel.setup_command or None, port_base=parallel.port_base, sandbox=jail,
                     env_allow=env_allow, tool_path=_tool_path())
        # In the git worker with the repository map (it reads the clean worktree's index), unless a
        # setup command may run: it can take minutes, so on a thread of its own beside the worker.
        prepare = self._git.run_in_turn if parallel.setup_command else self._git.run_in_worker
        reading = asyncio.ensure_future(self._expertise(e))  # read while the worktree is made: neither needs the other
        try:
            wt, tree = await prepare(Priority.AGENT, gitjobs.prepare, working_copy, e.target_branch, setup,
                                     e.worktree, e.branch, not resolving and e.update_from_target, not resolving)
        except GitError as exc:  # e.g. a failing setup_command: the attempt fails with its output, never hangs
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
            log.warning("task %s attempt %s: worktree not ready: %s", e.task_id, e.attempt, exc)
            await self._finish(e, AgentResult(outcome="failure", summary="", error=str(exc)[:4000]), commit="",
                               wt=None, started=started)
            return True
        except BaseException:
            reading.cancel()
            raise
        expertise, given, versions = await reading
        prepared = None if resolving else await self._git.run(provider)
        if isinstance(prepared, Exception):
            log.error("task %s attempt %s: agent could not start", e.task_id, e.attempt, exc_info=prepared)
            await self._finish(e, AgentResult(outcome="failure", summary="",
                                              error=f"{type(prepared).__name__}: {prepared}"),
                               commit="", wt=wt, started=started)
            return True
        cancelled = AgentResult(outcome="cancelled", summary="", error="cancelled before start")
        created = (e.caused(ev.WorktreeCreated, aggregate_id=ev.task_aggregate_id(e.run_id, e.task_id), run_id=e.run_id,
                            task_id=e.task_id, path=str(wt.path), branch=wt.branch, base_commit=wt.base_commit,
                            reused=wt.reused, attempt=e.attempt),
                   f"{e.run_id}:{e.task_id}:{e.attempt}:{lease.holder}:WorktreeCreated" + (f":{tries}" if tries else ""))

        def agent_started() -> tuple[ev.Event, str]:  # made when it happens: its time is the agent's start
            return (e.caused(ev.AgentStarted, aggregate_id=e.aggregate_id, run_id=e.run_id, task_id=e.task_id,
                             attempt=e.attempt, model=e.model, provider=e.provider, executor=self.name,
                             expertise_given=given, expertise_versions=versions),
                    f"{e.run_id}:{e.task_id}:{e.attempt}:{lease.holder}:AgentStarted")

        admitted = view.admitted  # a redelivery of an attempt admitted before
        slot_at = e.occurred_at
        # WorktreeCreated tells the scheduler this attempt can start at once (a slot goes only to such
        # an attempt); admitted already, both go in one round trip. Neither once the run is over.
        if await self.bus.publish_all_in_run([created, agent_started()] if admitted else [created], e.run_id) is None:
            await self._finish(e, cancelled, commit="", wt=wt, started=started)
            return True
        recorded: asyncio.Future = asyncio.get_running_loop().create_future()
        recorded.set_result(True)
        # what stops the agent: the attempt's cancellation, or a handed slot the log did not record
        agent_cancel = asyncio.Event()
        relay = asyncio.ensure_future(_relay(cancel, agent_cancel))
        handover = None
        if not admitted:
            admission = await self._admission(e, cancel, agent_started)
            if admission is None:
                relay.cancel()
                if not await self._still_holding(lease):
                    return False  # its new holder goes on with it
                await self._finish(e, cancelled, commit="", wt=wt, started=started)
                return True
            if isinstance(admission, Handover):
                # An agent here ended and handed this attempt its slot: its AgentFinished and this
                # AgentStarted are appended together, and the agent starts meanwhile, as below.
                handover, recorded, slot_at = admission, admission.recorded, admission.at
                recorded.add_done_callback(lambda f: None if not f.cancelled() and f.result() else agent_cancel.set())
            else:
                # The agent starts while its AgentStarted is appended (a round trip of the slot's time):
                # its first call's cost waits for the append, and a run found over stops it at once.
                recorded = asyncio.ensure_future(self.bus.publish_all_in_run([agent_started()], e.run_id))
                recorded.add_done_callback(lambda f: None if f.cancelled() or (f.exception() is None and f.result())
                                           else cancel.set())
                slot_at = admission.occurred_at
        metrics.DISPATCH_LATENCY.record(metrics.seconds_since(slot_at), {"yf.resumed": bool(resumed_after)})
        previous = msgspec.to_builtins(e.previous_attempt) if e.previous_attempt.attempt else {}
        if resumed_after:
            previous.setdefault("resumed", f"attempt {e.attempt} was interrupted {resumed_after} time(s); "
                                           f"the worktree holds the branch's last commit {wt.head[:12]}")
        sandbox = Sandbox(wt.path, command_timeout_s=options.command_timeout_s,
                          env={"YOKEFLOW_PORT_BASE": str(wt.port_base), "PATH": _tool_path()},
                          settings=jail, env_allow=env_allow)
        calls = 0
        costs: list[asyncio.Future] = []  # CostRecorded sent while the agent goes on; all acked before it ends

        async def on_call(record: CallRecord) -> None:
            nonlocal calls
            calls += 1
            if not recorded.done():  # (asyncio.wait costs two turns of the loop even on a done future)
                await asyncio.wait([recorded])  # a cost follows its agent's start in the log
            metrics.COST.add(record.cost_usd, {"model": record.model})
            u = record.usage
            costs.append(asyncio.ensure_future(self.bus.publish_in_run(
                e.caused(ev.CostRecorded, aggregate_id=e.aggregate_id, run_id=e.run_id, task_id=e.task_id,
                         attempt=e.attempt, model=record.model, input_tokens=u.input_tokens,
                         output_tokens=u.output_tokens, cache_read_tokens=u.cache_read_tokens,
                         cache_write_tokens=u.cache_write_tokens, cost_usd=record.cost_usd, call=record.call,
                         cost_exact=usd(record.cost)), e.run_id, after_cancel=True,  # paid: recorded even if cancelled
                # keyed by the call: each holder's calls were made (and paid) once each
                msg_id=f"{e.run_id}:{e.task_id}:{e.attempt}:{lease.holder}:{record.call}:CostRecorded"
                + (f":{tries}" if tries else ""))))
            await d.in_progress()
            # the model answered after a pause (e.g. the process was stopped): no tool runs unless still ours
            if not lease.fresh() and not await self._still_holding(lease):
                cancel.set()

        if warning := warn_if_off(jail):
            await on_log("sandbox", {"warning": warning})

        task = {"id": e.task_id, "title": e.title, "description": e.description, "tests": e.tests,
                "domain": e.domain, "complexity": e.complexity}

        prices = PriceTable.with_overrides(e.cost.prices if e.cost else None)
        budget = BudgetGate(self.bus, e, e.cost) if e.cost else None

        async def agent(task_prompt: str, verify=None) -> AgentResult:
            made, repository = (prepared, tree) if prepared is not None else await self._git.run_in_turn(
                Priority.AGENT,
                lambda: (make_provider(e.provider, _provider_options(e.provider, options, wt, on_log)),
                         repo_map(wt.path, tracked=None)))
            with telemetry.span(f"invoke_agent {e.task_id}", {
                    "gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": e.model, "yf.run_id": e.run_id,
                    "yf.task_id": e.task_id, "yf.attempt": e.attempt, "yf.provider": e.provider}) as span:
                metrics.AGENTS_IN_FLIGHT.add(1)
                try:
                    result = await run_agent(
                        budget=budget, prices=prices, provider=made, model=e.model,
                        system=build_system_prompt(expertise=expertise, repo_map=repository),
                        task_prompt=task_prompt, sandbox=sandbox, checks=list(e.tests),
                        max_turns=options.max_turns, max_fix_rounds=options.max_fix_rounds,
                        on_call=on_call, on_log=on_log, cancel=agent_cancel, verify=verify,
                        task_tools=None if resolving else self._task_tools(e))
                finally:
                    metrics.AGENTS_IN_FLIGHT.add(-1)
                telemetry.set_attributes(span, {
                    "yf.outcome": result.outcome, "yf.turns": result.turns, "yf.cost_usd": result.cost_usd,
                    "gen_ai.usage.input_tokens": result.usage.input_tokens,
                    "gen_ai.usage.output_tokens": result.usage.output_tokens})
                if result.outcome != "success":
                    telemetry.mark_failed(span, result.error or result.outcome)
                return result

        try:
            if resolving:
                result = await self._resolve(e, wt, task, agent, sandbox, on_log, agent_cancel, history)
            else:
                result = await agent(build_task_prompt(task, {"id": e.epic_id}, msgspec.to_builtins(e.dependency_summaries),
                                                       previous or None))
        except Exception as exc:  # a provider that cannot start is the task's failure, not the consumer's
            log.exception("task %s attempt %s: agent could not run", e.task_id, e.attempt)
            result = AgentResult(outcome="failure", summary="", error=f"{type(exc).__name__}: {exc}")
        finally:
            relay.cancel()
        # every call's cost is in the log before the attempt's end (the calls were made and paid either way)
        lost = [x for x in await asyncio.gather(*costs, return_exceptions=True) if isinstance(x, BaseException)]
        if not await recorded:  # the run ended before the agent's start was appended: it was stopped
            if handover is not None and not cancel.is_set():
                log.info("task %s attempt %s: the slot handed to it was not recorded (the run paused or ended "
                         "meanwhile); it waits for a slot again", e.task_id, e.attempt)
                return _AGAIN
            await self._finish(e, cancelled, commit="", wt=wt, started=started)
            return True
        if lost:
            log.error("task %s attempt %s: a cost was not recorded: %s", e.task_id, e.attempt, lost[0])
            result = AgentResult(outcome="failure", summary="", error=f"cost not recorded: {lost[0]}")
        if not await self._still_holding(lease):
            log.warning("task %s attempt %s: lease lost; its new holder finishes it", e.task_id, e.attempt)
            return False
        commit = ""
        if result.outcome == "success":
            # The agent's slot frees as its agent ends: AgentFinished goes first, and the work is
            # committed after it, announced by WorkCommitted (which the merger merges on). A holder
            # that dies in between leaves the commit to the attempt's next delivery (domain.decide).
            # The commit is made while AgentFinished is appended (a round trip on the way to every
            # dependent) when the lease is surely still ours; it is announced only after it.
            early = None
            if lease.fresh() and not self.config.runtime.executor_crash_after_finish:
                early = asyncio.ensure_future(self._commit(e, result, wt.path, wt.branch))
                early.add_done_callback(lambda f: f.cancelled() or f.exception())  # (read later, or not needed)
            if await self._finish(e, result, commit="", wt=wt, started=started, commit_follows=True,
                                  held_slot=True) is None:
                if early is not None:
                    await asyncio.gather(early, return_exceptions=True)
                return True  # the run is over: nothing to merge
            if self.config.runtime.executor_crash_after_finish:
                log.critical("crash point: task %s attempt %s finished; dying before its commit", e.task_id,
                             e.attempt)
                os._exit(17)
            return await self._commit_work(e, result, wt.path, wt.branch, lease, early)
        elif result.outcome == "budget" and not resolving:
            # Stopped by the budget: the work so far stays on the branch for the next attempt.
            commit = await self._git.run_in_worker(Priority.FLOW, gitjobs.commit, str(wt.path),
                                                   _commit_message(e, result, partial=True))
        elif resolving:
            await self._git.run(_abort_quietly, wt.path)
        if not await self._still_holding(lease):
            return False
        if commit and self.remote is not None:  # the merger merges from the canonical repository
            await self._git.run(self.remote.push, e.repo_path, wt.branch)
        await self._finish(e, result, commit=commit, wt=wt, started=started, held_slot=True)
        return True

    async def _commit(self, e: ev.TaskReady, done: AgentResult | ev.AgentFinished, path: Path, branch: str) -> str:
        """The worktree's work committed on its branch; with nothing new to commit (e.g. committed by
        a holder that died before announcing it) the branch's head stands."""
        return await self._git.run_in_worker(Priority.FLOW, gitjobs.commit, str(path), _commit_message(e, done), branch,
                                             head_if_nothing=True)

    async def _commit_work(self, e: ev.TaskReady, done: AgentResult | ev.AgentFinished,
                           path: Path | None, branch: str, lease: Lease, early: asyncio.Future | None = None) -> bool:
        """Commit a successful attempt's work on its branch (or take the commit `early` made) and
        announce it (WorkCommitted), after its AgentFinished; False when the lease was lost first
        (its new holder commits)."""
        if early is None and not await self._still_holding(lease):
            return False
        if path is not None and (early is not None or path.is_dir()):
            commit = await (early or self._commit(e, done, path, branch))
            error = ""
            if self.remote is not None:  # the merger merges from the canonical repository
                await self._git.run(self.remote.push, e.repo_path, branch)
        else:
            commit, error = "", f"the attempt's worktree {path} is gone: its work was never committed"
        if not await self._still_holding(lease):
            return False
        await self.bus.publish_in_run(
            e.caused(ev.WorkCommitted, aggregate_id=e.aggregate_id, run_id=e.run_id, task_id=e.task_id,
                     attempt=e.attempt, commit=commit, branch=branch, error=error),
            e.run_id, after_cancel=True, msg_id=f"{e.run_id}:{e.task_id}:{e.attempt}:WorkCommitted")
        return True

    async def _commit_after_crash(self, e: ev.TaskReady, finished: ev.AgentFinished, lease: Lease) -> None:
        """The attempt's AgentFinished is in the log without its WorkCommitted (its holder died in
        between): commit what its worktree holds, as the holder would have."""
        log.warning("task %s attempt %s: finished without its commit; committing its worktree now",
                    e.task_id, e.attempt)
        path = Path(finished.worktree_dir) if finished.worktree_dir else None
        await self._commit_work(e, finished, path, finished.branch, lease)

    async def _working_copy(self, e: ev.TaskReady) -> str:
        """The repository the attempt's worktree lives in: the run's own (shared disk), or this
        executor's clone of it, fetched over git smart HTTP (YOKEFLOW_GIT_REMOTE)."""
        if self.remote is None:
            return e.repo_path
        return str(await self._git.run(self.remote.sync, e.repo_path, e.target_branch, e.branch))

    async def _resolve(self, e: ev.TaskReady, wt: Worktree, task: dict, agent, sandbox: Sandbox, on_log,
                       cancel: asyncio.Event, history: list[ev.Event]) -> AgentResult:
        """Merge the target into the task's branch here; an agent resolves what conflicts, then the
        task's checks (and a check that no conflict marker is left) must pass."""
        target = e.conflict.target_branch or e.target_branch
        res = await self._git.run(begin_resolution, wt.path, target)
        await on_log("resolution", {"target_commit": res.target_commit, "up_to_date": res.up_to_date,
                                    "conflicts": [c["path"] for c in res.conflicts]})
        if res.up_to_date:
            return AgentResult(outcome="success", summary=f"{wt.branch} already contains {target}: nothing to resolve")
        if not res.conflicts:  # the target moved again and now merges cleanly: the checks decide
            result = await run_checks_only(sandbox=sandbox, checks=e.tests, on_log=on_log, cancel=cancel)
            result.summary = f"{target} merged into {wt.branch} without conflicts"
            return result

        async def no_markers_left() -> list[dict]:
            left = await self._git.run(unresolved, wt.path, res.marked_files)
            return [{"command": "no conflict markers left", "exit_code": 1 if left else 0, "passed": not left,
                     "timed_out": False,
                     "output": ("conflict markers remain in: " + ", ".join(left)) if left else ""}]

        resolutions = {h.attempt for h in history if isinstance(h, ev.TaskReady) and h.purpose == "resolve_conflict"}
        # a resolution's own previous attempt, not the task's
        previous = msgspec.to_builtins(e.previous_attempt) if e.previous_attempt.attempt in resolutions else None
        return await agent(build_resolution_prompt(task, branch=wt.branch, target=target, conflicts=res.conflicts,
                                                   marked_files=res.marked_files, previous_attempt=previous),
                           verify=no_markers_left)

    async def _finish(self, e: ev.TaskReady, result: AgentResult, *, commit: str, wt: Worktree | None,
                      started: float, commit_follows: bool = False, held_slot: bool = False) -> Published | None:
        u = result.usage
        # The slot this agent held goes on to the best candidate of the run here, named in its end.
        heir = self._heir(e) if held_slot and result.outcome in ("success", "failure") else None
        msg_id = f"{e.run_id}:{e.task_id}:{e.attempt}:AgentFinished"
        finished = e.caused(
            ev.AgentFinished, aggregate_id=e.aggregate_id, run_id=e.run_id, task_id=e.task_id, attempt=e.attempt,
            outcome=result.outcome, summary=result.summary, error=result.error, commit=commit,
            branch=wt.branch if wt else e.branch, worktree_path=str(wt.path) if wt else "", repo_path=e.repo_path,
            model=e.model, turns=result.turns, duration_s=round(time.monotonic() - started, 3),
            input_tokens=u.input_tokens, output_tokens=u.output_tokens, cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens, cost_usd=result.cost_usd, checks=result.checks,
            cost_exact=usd(result.cost), commit_follows=commit_follows,
            retry_after_s=float(getattr(result, "retry_after_s", None) or 0.0),
            slot_to=heir[0][0] if heir else "", slot_to_attempt=heir[0][1] if heir else 0)
        items: list[tuple[ev.Event, str | None]] = [(finished, msg_id)]
        recorded: asyncio.Future | None = None
        if heir is not None:
            # Its start goes in the same append, after this end, unless the run is paused or
            # cancelled when it lands (then this end alone, naming no one); the heir's agent starts now.
            items.append(heir[1].agent_started())
            alone = [(msgspec.structs.replace(finished, slot_to="", slot_to_attempt=0), msg_id)]
            recorded = asyncio.get_running_loop().create_future()
            heir[1].handed.set_result(Handover(finished.occurred_at, recorded))

        async def append() -> Published | None:
            try:
                done = await self.bus.publish_all_in_run(
                    items, e.run_id, after_cancel=True,
                    refit=(lambda kind: alone if kind in _NO_HANDOVER else items) if heir else None)
            except BaseException:
                if recorded is not None and not recorded.done():
                    recorded.set_result(False)
                raise
            if recorded is not None and not recorded.done():
                recorded.set_result(done is not None and len(done) == 2)
            return done[0] if done else None

        # The log's end mark and AgentFinished in one round trip: the learner reads the attempt's
        # log until its end mark is there, so it learns from the whole log either way. After a
        # cancellation the scheduler still needs the attempt's end; after the run's end nothing.
        _, published = await asyncio.gather(
            self.bus.log(e.project_id, e.aggregate_id, "attempt_end",
                         {"run_id": e.run_id, "task_id": e.task_id, "attempt": e.attempt, "outcome": result.outcome},
                         stored=True),
            append())
        return published

    # ------------------------------------------------------------------ cancellation
    async def _on_cancel(self, msg) -> None:
        try:
            e = ev.decode(msg.data)
        except Exception:
            return
        hit = [cancel for (run_id, task_id), cancel in self.running.items()
               if run_id == getattr(e, "run_id", None) and (isinstance(e, ev.RunCancelled) or task_id == e.task_id)]
        if hit:  # believed once the log holds it (checked aside: one refused message holds up no other)
            checking = asyncio.ensure_future(self._cancel_when_stored(e, hit))
            self._checks.add(checking)
            checking.add_done_callback(self._checks.discard)

    async def _cancel_when_stored(self, e: ev.Event, hit: list[asyncio.Event]) -> None:
        """Stop the agents once the cancellation is in the log: core NATS delivers a publish the stream
        refused too, and an agent stopped by one would end its attempt as cancelled though nobody
        cancelled its task. The store is normally a moment behind the live message; never there
        within the poll (a refused publish), it is dropped."""
        subject, pause, waited = self.bus.subject_of(e), LOG_RECHECK_S, 0.0
        while True:
            try:
                found = await self.bus.last_event(subject)
            except Exception as exc:  # NATS away for a moment: the next look tries again
                log.warning("cancellation of %s not checked yet: %s", getattr(e, "task_id", "") or e.run_id, exc)
                found = None
            if found is not None:  # this cancellation, or a later one of the same task or run
                for cancel in hit:
                    cancel.set()
                return
            if waited >= LOG_POLL_S:
                log.warning("%s %s: not in the log, not acted on", e.type, getattr(e, "task_id", "") or e.run_id)
                return
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, LOG_POLL_S)

    async def serve(self, stop: asyncio.Event) -> None:
        await git_worker().warm(gitjobs.__name__)
        await self.bus.ready_leases()  # a run's first agent waited for the bucket's creation
        subs = [await self.bus.subscribe_live(self.bus.type_filter("RunCancelled"), self._on_cancel),
                await self.bus.subscribe_live(self.bus.type_filter("TaskCancelled"), self._on_cancel)]
        admissions = await self.bus.follow(self.bus.type_filter("AgentAdmitted"), self._on_admitted)
        try:
            await self.bus.consume("executor", [self.bus.type_filter("TaskReady")], self.handle, stop=stop,
                                   concurrency=self.concurrency, ack_wait=self.ack_wait, max_deliver=5,
                                   drain_s=self.drain_s)
        finally:
            for cancel in self.running.values():
                cancel.set()
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await admissions.stop()
            self._git.close()


def _tool_path() -> str:
    """PATH for agent commands: this interpreter's folder first, so `python` is the one running YokeFlow."""
    return os.pathsep.join([os.path.dirname(sys.executable), process_env().get("PATH", os.defpath)])


def _provider_options(spec: str, options: ev.ProviderOptions, wt: Worktree, on_log=None) -> dict[str, Any]:
    """The options a provider takes, out of the attempt's options (the rest steer the loop)."""
    kind = spec.partition(":")[0]
    keys = {"anthropic": ("base_url",), "replay": ("transcript",),
            "claude-code": ("base_url", "sandbox", "env_allow")}.get(kind, ())
    picked = {k: getattr(options, k) for k in (*keys, "record") if getattr(options, k)}
    if kind == "claude-code":  # it runs in the worktree's jail and logs its own steps
        picked.update(cwd=str(wt.path), on_log=on_log)
    return picked


def _abort_quietly(path) -> None:
    try:
        abort_resolution(path)
    except GitError as exc:  # nothing under way (it failed before the merge began)
        log.info("resolution in %s: %s", path, exc)


def _commit_message(e: ev.TaskReady, result: AgentResult | ev.AgentFinished, *, partial: bool = False) -> str:
    body = result.summary.strip() or "(no summary)"
    if partial:
        subject = f"task {e.task_id}: work so far (stopped: {result.outcome})"
        body = result.error
    elif e.purpose == "resolve_conflict":
        target = e.conflict.target_branch or e.target_branch
        subject = f"Merge {target} into {e.branch}: resolve conflicts of task {e.task_id}"
    else:
        subject = f"task {e.task_id}: {e.title}"
    return (f"{subject}\n\n{body}\n\n"
            f"YokeFlow-Task: {e.task_id}\nYokeFlow-Run: {e.run_id}\nYokeFlow-Attempt: {e.attempt}\n"
            f"YokeFlow-Model: {e.model}\nYokeFlow-Cost-USD: {result.cost_usd:.6f}\n")


async def serve(bus: Bus, config: Config, stop: asyncio.Event) -> None:
    await Executor(bus, config, concurrency=config.runtime.executor_slots,
                   ack_wait=config.runtime.executor_ack_wait_s, lease_s=config.runtime.executor_lease_s,
                   drain_s=config.runtime.executor_drain_s).serve(stop)
