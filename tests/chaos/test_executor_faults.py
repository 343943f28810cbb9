"""Executor faults: frozen (SIGSTOP) past its ack wait, the attempt's lease keeps one live agent;
killed mid-agent or between its agent's end and the commit, the attempt is done once."""

from __future__ import annotations

import subprocess
from pathlib import Path

from shared import events as ev
from shared.commands import start_run
from tests.chaos.faults import crash_point, executor_name, freeze, redelivered, started_by, state_of, thaw, until
from tests.chaos.invariants import check_invariants
from tests.support.processes import ServiceProcess, service_env
from tests.support.system import config, endpoint_for, start_system, wait_for_end

def commits_touching(repo: Path, branch: str, name: str) -> list[str]:
    """Commits on `branch` that add or change a file called `name`."""
    out = subprocess.run(["git", "-C", str(repo), "log", "--format=%H", branch, "--", f"*{name}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


PLAN = {"name": "one", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "t0", "title": "Task 0", "tests": ["test -d yokeflow-sleep"]}]}]}


async def _frozen_executor_run(nats_url, database_url, unique, repo, tmp_path, *, lease_s: str, sleep_ms: int,
                               thaw_when):
    """Two executor processes; the one that starts the agent is frozen mid-agent until `thaw_when`."""
    endpoint = endpoint_for(nats_url, database_url, unique)
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 1}, agent={"provider": f"sleep:{sleep_ms}"})
    system = await start_system(endpoint, cfg, services=("ledger", "planner", "merger", "learner"))
    env = service_env(nats_url, database_url, unique, YOKEFLOW_EXECUTOR_ACK_WAIT="2",
                      YOKEFLOW_EXECUTOR_LEASE_S=lease_s)
    executors = [ServiceProcess("executor", env, tmp_path).start() for _ in range(2)]
    bus = await endpoint.bus()
    try:
        started = await start_run(bus, PLAN, repo, cfg)
        [first] = await until(lambda: started_by(bus, started.run_id), what="the first AgentStarted")
        [holder] = [p for p in executors if executor_name(p) == first.executor]
        freeze(holder)  # mid-agent: the sleep provider is still sleeping, nothing committed or acked
        await until(lambda: redelivered(bus, "executor"), what="a redelivery past the ack wait")
        assert state_of(holder) in ("T", "t")  # still frozen when the message went to the other executor
        await until(lambda: thaw_when(bus, started.run_id), what="the moment to thaw")
        thaw(holder)
        end = await wait_for_end(bus, started.run_id, timeout=120)
        assert isinstance(end, ev.RunCompleted), (end, [p.output()[-1500:] for p in executors])
        await check_invariants(bus, repo, started.run_id, database_url=database_url)
        events = [d.event async for d in bus.read() if getattr(d.event, "run_id", None) == started.run_id]
        return events, holder
    finally:
        for p in executors:
            p.stop()
        await bus.close()
        await system.stop()


async def test_a_frozen_executor_keeps_its_attempt_while_its_lease_lives(nats_server, database_url, unique,
                                                                          git_repo, tmp_path):
    async def soon(bus, run_id):  # the redelivery has waited a while on the live lease
        return await redelivered(bus, "executor") and True

    events, _ = await _frozen_executor_run(nats_server.url, database_url, unique, git_repo, tmp_path,
                                           lease_s="12", sleep_ms=3000, thaw_when=soon)
    starts = [e for e in events if isinstance(e, ev.AgentStarted)]
    finished = [e for e in events if isinstance(e, ev.AgentFinished)]
    assert len(starts) == 1, [s.executor for s in starts]  # the redelivery waited instead of starting another
    assert [(f.attempt, f.outcome) for f in finished] == [(1, "success")]


async def test_a_frozen_executor_loses_an_expired_lease_and_its_agent_stops(nats_server, database_url, unique,
                                                                           git_repo, tmp_path):
    async def taken_over(bus, run_id):  # the other executor took the expired lease and started its agent
        return len(await started_by(bus, run_id)) == 2

    events, holder = await _frozen_executor_run(nats_server.url, database_url, unique, git_repo, tmp_path,
                                                lease_s="3", sleep_ms=3000, thaw_when=taken_over)
    starts = [e for e in events if isinstance(e, ev.AgentStarted)]
    finished = [e for e in events if isinstance(e, ev.AgentFinished)]
    assert len(starts) == 2 and len({s.executor for s in starts}) == 2
    assert [(f.attempt, f.outcome) for f in finished] == [(1, "success")]  # only the new holder finished
    worktrees = [e for e in events if isinstance(e, ev.WorktreeCreated)]
    assert worktrees[-1].reused and worktrees[-1].path == worktrees[0].path  # taken over in the same worktree
    assert "lease" in holder.output() and "lost" in holder.output()  # the thawed agent saw it and stopped


async def test_an_executor_killed_mid_agent_hands_its_attempt_on_once(nats_server, database_url, unique, git_repo,
                                                                      tmp_path):
    endpoint = endpoint_for(nats_server.url, database_url, unique)
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 1}, agent={"provider": "sleep:2000"})
    system = await start_system(endpoint, cfg, services=("ledger", "planner", "merger", "learner"))
    env = service_env(nats_server.url, database_url, unique, YOKEFLOW_EXECUTOR_ACK_WAIT="2")
    executors = [ServiceProcess("executor", env, tmp_path).start() for _ in range(2)]
    bus = await endpoint.bus()
    try:
        started = await start_run(bus, PLAN, git_repo, cfg)
        [first] = await until(lambda: started_by(bus, started.run_id), what="the first AgentStarted")
        [holder] = [p for p in executors if executor_name(p) == first.executor]
        holder.kill()
        assert holder.proc.returncode == -9  # it died of the SIGKILL, mid-agent:
        assert not [d async for d in bus.read([bus.type_filter("AgentFinished")])]  # nothing finished yet
        end = await wait_for_end(bus, started.run_id, timeout=120)
        assert isinstance(end, ev.RunCompleted), end
        await check_invariants(bus, git_repo, started.run_id, database_url=database_url)
        events = [d.event async for d in bus.read() if getattr(d.event, "run_id", None) == started.run_id]
    finally:
        for p in executors:
            p.stop()
        await bus.close()
        await system.stop()
    starts = [e for e in events if isinstance(e, ev.AgentStarted)]
    assert len(starts) == 2 and len({s.executor for s in starts}) == 2  # taken over by the other process
    assert [(f.attempt, f.outcome) for f in events if isinstance(f, ev.AgentFinished)] == [(1, "success")]


async def test_an_executor_killed_between_its_agents_end_and_the_commit_has_the_work_committed_once(
        nats_server, database_url, unique, git_repo, tmp_path):
    """AgentFinished frees the agent's slot before the work is committed: a holder that dies in
    between leaves the commit (and its WorkCommitted) to the attempt's redelivery, which never runs
    the agent again."""
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 1}, agent={"provider": "sleep:50"})
    async with crash_point("executor", "YOKEFLOW_EXECUTOR_CRASH_AFTER_FINISH", nats_url=nats_server.url,
                           database_url=database_url, unique=unique, tmp_path=tmp_path, cfg=cfg,
                           YOKEFLOW_EXECUTOR_ACK_WAIT="2") as (fault, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        await fault.crashed()
        # the fault is where it should be: the agent finished and wrote its file, nothing was committed
        [finished] = [d.event async for d in bus.read([bus.type_filter("AgentFinished")])]
        assert finished.outcome == "success" and finished.commit_follows and not finished.commit
        assert not [d async for d in bus.read([bus.type_filter("WorkCommitted")])]
        left = list((Path(finished.worktree_dir) / "yokeflow-sleep").iterdir())
        assert len(left) == 1 and not commits_touching(git_repo, finished.branch, left[0].name)
        executor = fault.replace()
        end = await wait_for_end(bus, started.run_id, timeout=120)
        assert isinstance(end, ev.RunCompleted), (end, executor.output()[-2000:])
        await check_invariants(bus, git_repo, started.run_id, database_url=database_url)
        events = [d.event async for d in bus.read() if getattr(d.event, "run_id", None) == started.run_id]
    assert len([e for e in events if isinstance(e, ev.AgentStarted)]) == 1  # the agent ran once
    [committed] = [e for e in events if isinstance(e, ev.WorkCommitted)]
    assert committed.commit and not committed.error and "committing its worktree now" in executor.output()
    [merged] = [e for e in events if isinstance(e, ev.BranchMerged)]
    assert commits_touching(git_repo, "main", left[0].name)  # the agent's file reached main
    assert merged.status == "merged"
