"""A merger killed between its ref update and its ack: the redelivery finds the merge it made
by the commit's trailers and records it once, under its own commit, before the run ends."""

from __future__ import annotations

from shared import events as ev
from shared.commands import start_run
from tests.chaos.faults import crash_point
from tests.chaos.invariants import check_invariants, commits_on
from tests.support.system import config, wait_for_end

PLAN = {"name": "wide", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": f"t{i}", "title": f"Task {i}", "tests": ["test -d yokeflow-sleep"]} for i in range(4)]}]}


async def test_merger_killed_after_its_ref_update_records_each_merge_once(nats_server, database_url, unique,
                                                                          git_repo, tmp_path):
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2}, agent={"provider": "sleep:50"})
    async with crash_point("merger", "YOKEFLOW_MERGER_CRASH_AFTER_REF_UPDATE", nats_url=nats_server.url,
                           database_url=database_url, unique=unique, tmp_path=tmp_path, cfg=cfg,
                           YOKEFLOW_MERGER_ACK_WAIT="2") as (fault, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        await fault.crashed()
        # the fault is where it should be: main moved, the process died, no BranchMerged was published
        moved = [c for c in commits_on(git_repo) if c["merge"]]
        assert len(moved) == 1
        assert not [d async for d in bus.read([bus.type_filter("BranchMerged")])]
        merger = fault.replace()
        end = await wait_for_end(bus, started.run_id, timeout=120)
        assert isinstance(end, ev.RunCompleted), (end, merger.output()[-2000:])
        await check_invariants(bus, git_repo, started.run_id, database_url=database_url)
        task = moved[0]["trailers"]["YokeFlow-Task"]
        [record] = [d.event async for d in bus.read([bus.type_filter("BranchMerged")]) if d.event.task_id == task]
        assert record.commit == moved[0]["sha"] and record.status == "merged"  # its own, found by trailers
