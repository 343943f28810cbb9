"""NATS (file store) and PostgreSQL restarted under a running system: services reconnect, the
log is intact, and the run ends keeping every invariant."""

from __future__ import annotations

import asyncio

from shared import events as ev
from shared.commands import start_run
from shared.infra import EmbeddedNats
from tests.chaos.invariants import check_invariants
from tests.chaos.test_whole_system_faults import PLAN, Fleet, of_run
from tests.support.processes import service_env
from tests.support.system import config, endpoint_for, next_event, wait_for_end


async def test_nats_and_postgresql_restarted_mid_run(pg_server, database_url, unique, git_repo, tmp_path):
    nats = EmbeddedNats(tmp_path / "nats").start()  # this test's own server: the session's stays up
    env = service_env(nats.url, database_url, unique, YOKEFLOW_EXECUTOR_ACK_WAIT="3", YOKEFLOW_MERGER_ACK_WAIT="3")
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2}, agent={"provider": "sleep:300"})
    fleet = Fleet(env, tmp_path)
    bus = await endpoint_for(nats.url, database_url, unique).bus()
    try:
        started = await start_run(bus, PLAN, git_repo, cfg)
        run = started.run_id
        await next_event(bus, of_run(run, ev.AgentStarted), timeout=60)
        nats.stop()  # mid-agent: every service loses its connection
        assert nats.proc is None
        await asyncio.sleep(1.0)
        nats.start()  # same port, same file store
        try:
            await next_event(bus, of_run(run, ev.BranchMerged), timeout=90)
            pg_server.stop()  # the ledger loses its database mid-run
            await asyncio.sleep(1.0)
            pg_server.start()
            end = await wait_for_end(bus, run, timeout=150)
            assert isinstance(end, ev.RunCompleted), end
            await check_invariants(bus, git_repo, run, database_url=database_url)
        except (AssertionError, TimeoutError, asyncio.TimeoutError) as exc:  # what each service said, to see why
            raise AssertionError(f"{exc!r}\n{fleet.outputs()}") from exc
    finally:
        fleet.stop()
        await bus.close()
        nats.stop()
