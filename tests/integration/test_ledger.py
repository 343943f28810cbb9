"""Projections in real PostgreSQL from a real JetStream log: exactly-once, rebuildable."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import select

from shared import db
from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from services.ledger.projector import PROJECTION
from services.ledger.service import Ledger, rebuild

pytestmark = pytest.mark.integration

PLAN = {"name": "p", "epics": [{"id": "1", "name": "E", "tasks": [
    {"id": "a", "title": "A"}, {"id": "b", "title": "B", "depends_on": ["a"]}]}]}


def run_events(run="r1", budget=1.0):
    t = lambda task, cls, **kw: cls(project_id="p", aggregate_id=ev.task_aggregate_id(run, task), run_id=run,
                                     task_id=task, **kw)
    return [
        ev.ProjectCreated(project_id="p", aggregate_id="p", name="demo", repo_path="/tmp/x"),
        ev.RunStarted(project_id="p", aggregate_id=run, run_id=run, plan=PlanDoc.of(PLAN), repo_path="/tmp/x",
                      settings=RunSettings.of({"cost": {"budget_limit_usd": budget}})),
        ev.BatchesComputed(project_id="p", aggregate_id=run, run_id=run, batches=[["a"], ["b"]]),
        t("a", ev.TaskReady, attempt=1, model="sonnet", branch="task/a-a"),
        t("a", ev.AgentStarted, attempt=1, model="sonnet"),
        t("a", ev.CostRecorded, attempt=1, model="sonnet", input_tokens=10, output_tokens=5, cost_usd=0.6),
        t("a", ev.AgentFinished, attempt=1, outcome="success", commit="c1", summary="did a", cost_usd=0.6),
        t("a", ev.TaskCompleted, attempt=1, commit="c1"),
        ev.BranchMerged(project_id="p", aggregate_id=ev.task_aggregate_id(run, "a"), run_id=run, task_id="a",
                        branch="task/a-a", commit="m1"),
        t("b", ev.TaskReady, attempt=1),
        t("b", ev.CostRecorded, attempt=1, model="sonnet", cost_usd=0.5, cost_exact="0.500000000001"),
    ]


async def project_all(bus, database, stop_after: int):
    ledger = Ledger(bus, database)
    await database.migrate()
    stop = asyncio.Event()
    task = asyncio.create_task(bus.consume("ledger", [bus.events_subject], ledger.handle, stop=stop))
    await database.wait_for(PROJECTION, stop_after, timeout=20)
    stop.set()
    await task


async def snapshot(database):
    out = {}
    for table in db.metadata.sorted_tables:
        rows = await database.fetch(select(table))
        # projected_at says when a row was written (projection lag), not what the log holds
        out[table.name] = sorted((sorted((k, v) for k, v in r.items() if k != "projected_at") for r in rows),
                                 key=repr)
    return out


async def test_projection_is_exactly_once_and_rebuild_equals_live(bus, database_url):
    for e in run_events():
        await bus.publish(e)
    database = db.Database(database_url)
    last = await bus.last_seq()
    await project_all(bus, database, last)

    tasks = {r["id"]: r for r in await database.fetch(select(db.tasks))}
    assert tasks["a"]["status"] == "done" and tasks["a"]["merge_status"] == "merged"
    # money is NUMERIC, read back as Decimal: an old float event as printed, a new one to its last digit
    assert tasks["a"]["merge_commit"] == "m1" and tasks["a"]["cost_usd"] == Decimal("0.6")
    assert tasks["b"]["status"] == "ready" and tasks["b"]["batch"] == 1
    [run] = await database.fetch(select(db.runs))
    assert run["cost_usd"] == Decimal("1.100000000001")

    # a redelivery of an already-applied event changes nothing
    live = await snapshot(database)
    ledger = Ledger(bus, database)
    async for d in bus.read():
        await ledger.handle(d)
    assert await snapshot(database) == live

    # dropping the projections and replaying the log gives the same rows
    result = await rebuild(bus, database_url)
    assert result["events"] == last
    assert await snapshot(database) == live
    await database.dispose()


async def test_gap_in_delivery_is_filled_from_the_log(bus, database_url):
    for e in run_events("r2"):
        await bus.publish(e)
    database = db.Database(database_url)
    await database.migrate()
    ledger = Ledger(bus, database, publish_alerts=False)
    deliveries = [d async for d in bus.read()]
    # the consumer hands over the 5th event first (as after a rebuild swap): 1-4 are read from the log
    await ledger.handle(deliveries[4])
    assert await database.position(PROJECTION) == deliveries[4].seq
    rows = await database.fetch(select(db.event_log))
    assert sorted(r["seq"] for r in rows) == [d.seq for d in deliveries[:5]]
    await database.dispose()


async def test_an_expertise_version_is_projected_whole_and_indexed_without_its_document(bus, database_url):
    """expertise_files holds each version's YAML; event_log names the version without its document
    (tens of kB a task, most of the bytes the ledger wrote, for an index nothing reads them from)."""
    from shared.expertise.model import Entry, Origin, new_document, render

    doc = new_document("api")
    doc = type(doc)(domain="api", overview="the API", entries=[Entry(
        kind="core_file", key="api/app.py", path="api/app.py", text="the app", files=["api/app.py"],
        origin=Origin(run_id="r", task_id="a", attempt=1), learned_at="2026-12-06T10:00:00+00:00")])
    version = ev.ExpertiseUpdated(project_id="p", aggregate_id="api", domain="api", version=1, lines=12, document=doc,
                                  reason="learned", source="r/a/1")
    old = ev.ExpertiseUpdated(project_id="p", aggregate_id="api", domain="api", version=2, lines=3,
                              content="domain: api\noverview: ''\n", reason="import", source="seed")
    for e in (version, old):
        await bus.publish(e)
    database = db.Database(database_url)
    await project_all(bus, database, await bus.last_seq())
    files = {r["version"]: r for r in await database.fetch(select(db.expertise_files))}
    assert files[1]["content"] == render(doc) and "api/app.py" in files[1]["content"]
    assert files[2]["content"] == "domain: api\noverview: ''\n"
    logged = {r["data"]["version"]: r for r in await database.fetch(select(db.event_log))}
    for n in (1, 2):
        data = logged[n]["data"]
        assert logged[n]["type"] == "ExpertiseUpdated" and data["domain"] == "api"
        assert data.get("document") is None and not data.get("content")
    assert logged[1]["data"]["source"] == "r/a/1" and logged[1]["data"]["lines"] == 12
    await database.dispose()


async def test_a_database_from_before_attempt_purposes_is_migrated(database_url):
    from sqlalchemy import text

    database = db.Database(database_url, schema="yf_old")
    assert await database.migrate() == db.MIGRATIONS[-1][0]
    async with database.engine.begin() as conn:  # as a version-1 database made before the column existed
        await conn.execute(text('ALTER TABLE "yf_old".attempts DROP COLUMN purpose'))
        await conn.execute(text('DELETE FROM "yf_old".schema_version WHERE version >= 2'))
    assert await database.migrate() == db.MIGRATIONS[-1][0]
    async with database.begin() as conn:
        conn = await database.execution(conn)
        await conn.execute(db.attempts.insert().values(run_id="r", task_id="t", attempt=1))
    [row] = await database.fetch(select(db.attempts))
    assert row["purpose"] == "task"
    await database.dispose()


async def test_a_conflict_resolution_shows_as_resolving_then_waiting_for_a_person(bus, database_url):
    t = lambda cls, **kw: cls(project_id="p", aggregate_id=ev.task_aggregate_id("r3", "a"), run_id="r3",
                              task_id="a", **kw)
    for e in run_events("r3")[:2] + [
            t(ev.TaskReady, attempt=1), t(ev.AgentFinished, attempt=1, outcome="success"),
            t(ev.TaskCompleted, attempt=1),
            t(ev.MergeConflicted, branch="task/a", conflicts=[{"path": "x.txt", "kind": "content"}]),
            t(ev.TaskReady, attempt=2, purpose="resolve_conflict", conflict={"conflicts": [{"path": "x.txt"}]})]:
        await bus.publish(e)
    database = db.Database(database_url)
    await project_all(bus, database, await bus.last_seq())
    task = next(r for r in await database.fetch(select(db.tasks)) if r["id"] == "a")
    assert task["merge_status"] == "resolving" and task["status"] == "ready"
    purposes = {r["attempt"]: r["purpose"] for r in await database.fetch(select(db.attempts))}
    assert purposes == {1: "task", 2: "resolve_conflict"}

    await bus.publish(t(ev.AgentFinished, attempt=2, outcome="failure", error="markers left"))
    await bus.publish(t(ev.TaskFailed, attempt=2, final=False, reason="conflict resolution failed"))
    await bus.publish(t(ev.ConflictEscalated, branch="task/a", reason="resolve it by hand"))
    await project_all(bus, database, await bus.last_seq())
    task = next(r for r in await database.fetch(select(db.tasks)) if r["id"] == "a")
    assert (task["status"], task["merge_status"], task["reason"]) == ("done", "conflict", "resolve it by hand")
    await database.dispose()


async def projected_one_at_a_time(bus, database_url):
    """The log's deliveries, a database where a ledger applied them one event at a time, and an
    empty one beside it for the batching under test (both migrated)."""
    deliveries = [d async for d in bus.read()]
    single, batched = db.Database(database_url, schema="yf_single"), db.Database(database_url)
    await single.migrate()
    await batched.migrate()
    one_by_one = Ledger(bus, single, publish_alerts=False)
    for d in deliveries:
        await one_by_one.handle(d)
    return deliveries, single, batched


async def test_a_batch_projects_what_single_events_do_and_a_recreated_stream_is_applied_again(bus, database_url):
    for e in run_events("r4"):
        await bus.publish(e)
    deliveries, single, batched = await projected_one_at_a_time(bus, database_url)
    ledger = Ledger(bus, batched, publish_alerts=False)
    await ledger.handle_batch(deliveries[:6])
    await ledger.handle_batch(deliveries[3:])  # a redelivered overlap is applied once
    assert await snapshot(batched) == await snapshot(single)
    assert await batched.position(PROJECTION) == deliveries[-1].seq

    # The stream is deleted and made again: its sequences start over, and nothing is skipped.
    await bus.js.delete_stream(bus.stream)
    await bus.ensure_streams()
    again = run_events("r5")[:3]
    for e in again:
        await bus.publish(e)
    fresh = [d async for d in bus.read()]
    await Ledger(bus, batched, publish_alerts=False).handle_batch(fresh)
    assert await batched.position(PROJECTION) == fresh[-1].seq < deliveries[-1].seq
    runs = {r["id"] for r in await batched.fetch(select(db.runs))}
    assert runs == {"r4", "r5"}
    await single.dispose()
    await batched.dispose()


async def test_float_money_columns_become_exact_decimals(database_url):
    from sqlalchemy import text

    database = db.Database(database_url, schema="yf_float")
    await database.migrate()
    async with database.engine.begin() as conn:  # as a database from before money was NUMERIC
        await conn.execute(text('ALTER TABLE "yf_float".agent_costs ALTER COLUMN cost_usd TYPE DOUBLE PRECISION'))
        await conn.execute(text('DELETE FROM "yf_float".schema_version WHERE version >= 4'))
        await conn.execute(text(
            'INSERT INTO "yf_float".agent_costs (event_id, project_id, run_id, task_id, attempt, model, input_tokens, '
            "output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, occurred_at) "
            "VALUES ('e', 'p', 'r', 't', 1, 'm', 0, 0, 0, 0, 0.1, 'now')"))
    assert await database.migrate() == db.MIGRATIONS[-1][0]
    [row] = await database.fetch(select(db.agent_costs))
    assert row["cost_usd"] == Decimal("0.1")
    await database.dispose()


def busy_log(rng, run: str) -> list[ev.Event]:
    """A run with every projected event type, in an order the services could produce it and some they
    would not (a merge before its worktree, an agent started before its attempt was queued)."""
    ids = [f"t{i}" for i in range(6)]
    plan = {"name": "busy", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": t, "title": t.upper(), "depends_on": ids[:i][-1:]} for i, t in enumerate(ids)]}]}
    t = lambda task, cls, **kw: cls(project_id="p", aggregate_id=ev.task_aggregate_id(run, task), run_id=run,
                                     task_id=task, **kw)
    out: list[ev.Event] = [
        ev.ProjectCreated(project_id="p", aggregate_id="p", name="démo", repo_path="/tmp/x"),
        ev.RunStarted(project_id="p", aggregate_id=run, run_id=run, plan=plan, repo_path="/tmp/x",
                      settings=RunSettings.of({})),
        ev.BatchesComputed(project_id="p", aggregate_id=run, run_id=run, batches=[ids[:3], ids[3:]])]
    makers = [
        lambda task, a: t(task, ev.TaskReady, attempt=a + 1, model=rng.choice(["sonnet", "opus"]), branch=f"b/{task}",
                          worktree=f"/w/{task}", purpose=rng.choice(["task", "resolve_conflict"])),
        lambda task, a: t(task, ev.AgentStarted, attempt=max(a, 1), model="sonnet", provider="x"),
        lambda task, a: t(task, ev.WorktreeCreated, path=rng.choice([f"/w/{task}", "/w/shared"]), branch=f"b/{task}"),
        lambda task, a: t(task, ev.CostRecorded, attempt=max(a, 1), model="sonnet", cost_usd=rng.random(),
                          cost_exact=rng.choice(["", "0.000123456789"])),
        lambda task, a: t(task, ev.AgentFinished, attempt=max(a, 1), outcome=rng.choice(["success", "failure"]),
                          commit="c", summary="sümmary", cost_usd=0.25, turns=3, model=rng.choice(["", "haiku"])),
        lambda task, a: t(task, ev.TaskCompleted, attempt=max(a, 1), commit="c2"),
        lambda task, a: t(task, ev.TaskFailed, attempt=max(a, 1), reason="boom", final=rng.random() < 0.5),
        lambda task, a: t(task, ev.TaskDeferred, reason="budget", detail=rng.choice(["", "later"])),
        lambda task, a: t(task, ev.TaskBlocked, reason="blocked"),
        lambda task, a: t(task, ev.TaskCancelled, reason="cancelled"),
        lambda task, a: ev.BranchMerged(project_id="p", aggregate_id=ev.task_aggregate_id(run, task), run_id=run,
                                        task_id=task, branch=f"b/{task}", commit="m"),
        lambda task, a: ev.MergeConflicted(project_id="p", aggregate_id=ev.task_aggregate_id(run, task), run_id=run,
                                           task_id=task, branch=f"b/{task}", conflicts=[ev.Conflict(path="a.py")]),
        lambda task, a: t(task, ev.ConflictEscalated, reason="escalated"),
        lambda task, a: t(task, ev.BranchReset, branch=f"b/{task}", target_branch="main"),
        lambda task, a: ev.BatchMerged(project_id="p", aggregate_id=run, run_id=run, batch=rng.randint(0, 1)),
        lambda task, a: ev.BudgetWarning(project_id="p", aggregate_id=run, run_id=run, fraction=0.8),
        lambda task, a: ev.DeliveryFailed(project_id="p", aggregate_id="p", run_id=run, task_id=rng.choice(["", task]),
                                          attempt=rng.choice([0, 1]), consumer="x", failed_subject="s",
                                          stream_seq=1, deliveries=5, error="gave up"),
        lambda task, a: ev.ExpertiseUpdated(project_id="p", aggregate_id="p-api", domain="api",
                                            version=rng.randint(1, 2), lines=1, content="x"),
    ]
    attempts = dict.fromkeys(ids, 0)
    for _ in range(90):
        task, i = rng.choice(ids), rng.randrange(len(makers))
        out.append(makers[i](task, attempts[task]))
        attempts[task] += i == 0
    out.append(ev.RunCompleted(project_id="p", aggregate_id=run, run_id=run, counts={"done": 3}))
    return out


async def test_any_batching_of_a_busy_log_projects_what_one_event_at_a_time_does(bus, database_url):
    import random

    rng = random.Random(17)
    for run in ("r6", "r7"):
        for e in busy_log(rng, run):
            await bus.publish(e)
    deliveries, single, batched = await projected_one_at_a_time(bus, database_url)
    ledger = Ledger(bus, batched, publish_alerts=False)
    done = 0
    while done < len(deliveries):  # runs of any length, some overlapping (redelivered), some skipping (a gap)
        n = rng.randint(1, 40)
        run = deliveries[max(0, done - rng.randint(0, 4)):done + n]
        await ledger.handle_batch(run[2:] if rng.random() < 0.2 and len(run) > 3 else run)
        done += n
    assert await snapshot(batched) == await snapshot(single)

    # A writer whose idea of the position is stale (another ledger moved it) writes nothing twice.
    from services.ledger.writer import Tracked, write_batch

    async with batched.engine.connect() as conn:
        pg = (await conn.get_raw_connection()).driver_connection
        stale = Tracked(deliveries[5].seq, await bus.stream_identity(), True)
        applied, now = await write_batch(pg, batched.schema, [(d.seq, d.event) for d in deliveries[6:12]],
                                         ledger.read_gap, stale.stream, stale)
    assert applied == [] and now.seq == deliveries[-1].seq
    assert await snapshot(batched) == await snapshot(single)
    await single.dispose()
    await batched.dispose()


async def test_a_ledger_acked_event_by_event_before_goes_on_with_one_ack_per_batch_from_where_it_was(bus, database_url):
    """The ledger's consumer acks one message per batch (AckPolicy.ALL); one made before, with an ack
    per event, cannot change its policy in place: it is made again from the first message it had not
    acknowledged, and every event is projected once."""
    events = run_events()
    database = db.Database(database_url)
    try:
        for e in events[:5]:
            await bus.publish(e)
        await project_all(bus, database, stop_after=5)  # the consumer as it was: an ack per event
        for e in events[5:]:
            await bus.publish(e)
        stop = asyncio.Event()
        serving = asyncio.create_task(Ledger(bus, database).serve(stop))
        await database.wait_for(PROJECTION, len(events), timeout=20)
        info = await bus.js.consumer_info(bus.stream, "ledger")
        stop.set()
        await asyncio.wait_for(serving, 20)
        assert info.config.ack_policy == "all"
        assert info.delivered.consumer_seq == len(events) - 5  # started after the old one's ack floor
        assert info.ack_floor.stream_seq == len(events) and info.num_ack_pending == 0
        logged = await database.fetch(select(db.event_log.c.seq))
        assert sorted(r["seq"] for r in logged) == list(range(1, len(events) + 1))
        # bound again (a restart): the consumer it made is kept, where it starts included
        stop = asyncio.Event()
        serving = asyncio.create_task(Ledger(bus, database).serve(stop))
        await bus.publish(ev.ProjectCreated(project_id="p2", aggregate_id="p2", name="more", repo_path="/tmp/y"))
        await database.wait_for(PROJECTION, len(events) + 1, timeout=20)
        stop.set()
        await asyncio.wait_for(serving, 20)
        again = await bus.js.consumer_info(bus.stream, "ledger")
        assert again.config.ack_policy == "all" and again.ack_floor.stream_seq == len(events) + 1
    finally:
        await database.dispose()
