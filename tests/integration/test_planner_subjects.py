"""The planner's consumer, on a real NATS server: every event it folds reaches it, and the expertise
documents (tens of KB per task, which it never reads) do not."""

from __future__ import annotations

import asyncio

from nats.js.errors import NotFoundError

from services.planner.service import Planner, planner_subjects
from shared import events as ev
from shared.expertise.model import new_document, render


async def _settled(bus, durable: str, at_least: int):
    """The consumer's info once everything it matches has been delivered and acknowledged."""
    info = None
    for _ in range(200):
        try:
            info = await bus.js.consumer_info(bus.stream, durable)
        except NotFoundError:  # not bound yet: the planner reads the log before it consumes
            await asyncio.sleep(0.05)
            continue
        if info.delivered.consumer_seq >= at_least and not info.num_pending and not info.num_ack_pending:
            return info
        await asyncio.sleep(0.05)
    return info


async def test_the_planner_folds_every_aggregate_but_is_sent_no_expertise_document(bus):
    doc = new_document("api")
    folded = [
        ev.ProjectCreated(project_id="p", aggregate_id="p", name="p", repo_path="/tmp/p"),
        ev.TaskReady(project_id="p", aggregate_id="r-a", run_id="r", task_id="a"),
        ev.BranchMerged(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", branch="b"),
        ev.BudgetSet(project_id="p", aggregate_id="p", limit_exact="1"),
        ev.LearningExtracted(project_id="p", aggregate_id="api", run_id="r", task_id="a", attempt=1),
    ]
    not_folded = [
        ev.ExpertiseUpdated(project_id="p", aggregate_id="api", domain="api", version=1, content=render(doc),
                            document=doc),
        ev.DiscoveryReported(project_id="p", aggregate_id="api", run_id="r", task_id="a", text="x"),
    ]
    stop = asyncio.Event()
    planner = asyncio.create_task(Planner(bus).serve(stop))
    try:
        for e in [*not_folded, *folded]:
            await bus.publish(e)
        info = await _settled(bus, "planner", len(folded))
    finally:
        stop.set()
        await asyncio.wait_for(planner, 10)
    assert await bus.last_seq() == len(folded) + len(not_folded)  # all of them are in the log
    assert info.delivered.consumer_seq == len(folded)  # what it folds came, the documents did not


def _matches(filter_subject: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` the rest."""
    f, s = filter_subject.split("."), subject.split(".")
    for i, token in enumerate(f):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(f) == len(s)


def test_every_event_type_but_the_expertise_documents_is_in_one_filter_of_the_planner(bus):
    filters = planner_subjects(bus)
    for name, cls in ev.EVENT_TYPES.items():
        subject = bus.subjects.event("p", cls.aggregate, "x", name)
        hits = [f for f in filters if _matches(f, subject)]
        if name in ("ExpertiseUpdated", "DiscoveryReported"):
            assert hits == [], name
        else:
            assert len(hits) == 1, (name, hits)  # NATS refuses overlapping filters of one consumer


async def test_a_planner_consumer_made_by_an_earlier_version_takes_the_new_filters(bus):
    """An installation upgraded in place: the durable consumer made with every event as its filter
    is updated to the planner's subjects when the planner binds, and goes on from where it was."""
    import nats.js.api as jsapi

    await bus.js.add_consumer(bus.stream, config=jsapi.ConsumerConfig(
        durable_name="planner", name="planner", ack_policy=jsapi.AckPolicy.ALL, ack_wait=30.0, max_deliver=10,
        filter_subject=bus.events_subject, max_ack_pending=256))
    doc = new_document("api")
    await bus.publish(ev.ExpertiseUpdated(project_id="p", aggregate_id="api", domain="api", version=1, document=doc))
    await bus.publish(ev.ProjectCreated(project_id="p", aggregate_id="p", name="p", repo_path="/tmp/p"))
    stop = asyncio.Event()
    planner = asyncio.create_task(Planner(bus).serve(stop))
    try:
        info = await _settled(bus, "planner", 1)
        await bus.publish(ev.ExpertiseUpdated(project_id="p", aggregate_id="api", domain="api", version=2,
                                              document=doc))
        await bus.publish(ev.TaskReady(project_id="p", aggregate_id="r-a", run_id="r", task_id="a"))
        info = await _settled(bus, "planner", 2)
    finally:
        stop.set()
        await asyncio.wait_for(planner, 10)
    assert sorted(info.config.filter_subjects or []) == sorted(planner_subjects(bus))
    assert info.delivered.consumer_seq == 2 and info.delivered.stream_seq == 4


async def test_no_agent_slot_is_given_once_the_run_is_cancelled_even_by_a_planner_that_has_not_read_it(bus):
    """A RunCancelled in the log that this planner has not folded yet: its admission of a prepared
    attempt is checked against the run's events when appended, so no AgentAdmitted lands after it."""
    from services.planner.scheduler import decide
    from shared.config import RunSettings
    from shared.plan import PlanDoc

    plan = PlanDoc.of({"name": "p", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "a", "title": "A"}]}]})
    run = ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=plan, repo_path="/repo",
                        settings=RunSettings.of({"parallel": {"strategy": "by_task", "max_concurrency": 1}}))
    planner = Planner(bus)
    await bus.publish(run)
    await planner._reload("r")
    state = planner.runs["r"]
    [ready] = [e for e, _ in decide(state) if isinstance(e, ev.TaskReady)]
    await bus.publish(ready)
    await bus.publish(ev.WorktreeCreated(project_id="p", aggregate_id="r-a", run_id="r", task_id="a", attempt=1,
                                         path="/repo/.worktrees/a", branch="task/a"))
    await planner._reload("r")   # it has the prepared attempt: its next decision is the slot
    cancelled = ev.RunCancelled(project_id="p", aggregate_id="r", run_id="r")
    await bus.publish(cancelled)   # in the log, not folded by this planner
    await planner._decide(planner.runs["r"])
    log = [d.event async for d in bus.read()]
    at = next(i for i, e in enumerate(log) if e.event_id == cancelled.event_id)
    assert not [e for e in log[at:] if isinstance(e, ev.AgentAdmitted)]
    assert planner.runs["r"].cancelled   # it read the run again and decided on what the log holds
