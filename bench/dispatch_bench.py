"""Scheduler dispatch benchmark: a run of the whole system on embedded servers with agents that
sleep, measuring how fast a dependent starts once its dependencies are merged (the
dependency-ready latency: a dependency's BranchMerged to the dependent's TaskReady) and the
run's wall time, with and without the PRD's batch barrier, in the same run. For efficiency
against the lower bound, peak agents and the rest, see `python -m bench.scheduling`.

    python bench/dispatch_bench.py [--chains 4] [--length 5] [--sleep-ms 200] [--concurrency 3]

The plan has `chains` independent chains (one epic each) of `length` tasks; under a batch
barrier step k+1 of every chain waits for step k of all chains; ratio = barrier / no barrier."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec  # noqa: E402

from shared import events as ev  # noqa: E402
from shared.commands import start_run  # noqa: E402
from shared.config import parse_config  # noqa: E402
from shared.infra import EmbeddedServers  # noqa: E402
from yokeflow.system import Endpoint, System  # noqa: E402


def plan(chains: int, length: int) -> dict:
    return {"name": "bench", "epics": [{"id": f"c{c}", "name": f"Chain {c}", "tasks": [
        {"id": f"c{c}t{i}", "title": f"Chain {c} step {i}", "depends_on": [f"c{c}t{i-1}"] if i else []}
        for i in range(length)]} for c in range(chains)]}


async def one_run(servers: EmbeddedServers, tag: str, args, barrier: bool) -> dict:
    repo = Path(tempfile.mkdtemp(prefix="yf-bench-"))
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README.md").write_text("bench\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=b@e", "-c", "user.name=B", "commit", "-qm", "init"],
                   check=True)
    import asyncpg

    # Each run its own database: a projection position is the log's, and two logs never share one.
    conn = await asyncpg.connect(servers.postgres.url)
    await conn.execute(f'CREATE DATABASE "dispatch_{tag}"')
    await conn.close()
    endpoint = Endpoint(servers.nats.url, servers.postgres.url.rsplit("/", 1)[0] + f"/dispatch_{tag}", "embedded",
                        bus_options={"prefix": f"b{tag}", "stream": f"B_{tag}", "log_stream": f"BL_{tag}"})
    cfg = parse_config({"parallel": {"strategy": "by_epic", "max_concurrency": args.concurrency,
                                     "batch_barrier": barrier},
                        "agent": {"provider": f"sleep:{args.sleep_ms}"}})
    system = await System(endpoint, cfg).start()
    bus = await endpoint.bus()
    try:
        t0 = time.monotonic()
        started = await start_run(bus, plan(args.chains, args.length), repo, cfg)
        async for d in bus.read(stop_at_end=False):
            if getattr(d.event, "run_id", None) == started.run_id and isinstance(d.event, (ev.RunCompleted, ev.RunFailed)):
                end = d.event
                break
        wall = time.monotonic() - t0
    finally:
        await bus.close()
        await system.stop()
    assert isinstance(end, ev.RunCompleted), end
    return {"wall_s": wall, **msgspec.to_builtins(end.stats.dependency_ready_latency_s)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--length", type=int, default=5)
    parser.add_argument("--sleep-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=3)
    args = parser.parse_args()
    servers = EmbeddedServers(Path(tempfile.mkdtemp(prefix="yf-bench-state-"))).start()
    try:
        free = await one_run(servers, "free", args, barrier=False)
        barrier = await one_run(servers, "barrier", args, barrier=True)
    finally:
        servers.stop()
    print(f"{args.chains} chains x {args.length} tasks, sleep {args.sleep_ms} ms, max_concurrency {args.concurrency}")
    print(f"{'mode':<12} {'wall s':>8} {'ready p50 ms':>13} {'ready max ms':>13} {'n':>4}")
    for name, r in (("no barrier", free), ("barrier", barrier)):
        print(f"{name:<12} {r['wall_s']:>8.2f} {r['p50'] * 1000:>13.1f} {r['max'] * 1000:>13.1f} {r['count']:>4}")
    print(f"wall-time ratio barrier / no barrier: {barrier['wall_s'] / free['wall_s']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
