"""`yokeflow up | run | status | events` — the system's front door on one machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from shared import events as ev
from shared import telemetry
from shared.commands import CommandError, check_checkout, check_repo, resolve_target, start_run
from shared.config import Config, ConfigError, load_config
from shared.plan import PlanError, load_plan
from shared.sandbox import OFF_WARNING
from shared.scrub import scrub
from yokeflow.errors import CliError
from yokeflow.progress import describe, follow_run
from yokeflow.system import Endpoint, System, open_endpoint, wait_for_clients


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start NATS, PostgreSQL, every service and the gateway; Ctrl-C stops them")
    _state_arg(p)
    p.add_argument("--host", help="the gateway's address (default YOKEFLOW_GATEWAY_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="the gateway's port (default YOKEFLOW_GATEWAY_PORT or 8765)")
    p.add_argument("--no-auth", action="store_true",
                   help="serve the gateway WITHOUT its API token (loopback only; any local program can then drive it)")
    p.add_argument("--trace-console", action="store_true",
                   help="print every span as one line (besides any OTEL_* exporter)")
    p.set_defaults(func=lambda a: _async(cmd_up(a)))

    p = sub.add_parser("run", help="run a plan file against a git repository")
    p.add_argument("plan", help="plan file (YAML or JSON; see docs/plan-format.md)")
    p.add_argument("--repo", required=True, help="git repository the agents work on")
    _state_arg(p)
    _run_settings_args(p)
    p.add_argument("--detach", action="store_true", help="start the run and return (needs a running `yokeflow up`)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--branch", help="target branch to merge into (default: merge.target_branch, else the "
                                    "repository's checked-out branch, master or trunk)")
    p.add_argument("--allow-dirty", action="store_true",
                   help="start even with uncommitted changes on the target branch's checkout (it then stays put)")
    p.set_defaults(func=lambda a: _async(cmd_run(a)))

    p = sub.add_parser("status", help="projects, runs and tasks as the projections see them")
    _state_arg(p)
    p.add_argument("--run", help="one run (default: the latest run of each project)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=lambda a: _async(cmd_status(a)))

    p = sub.add_parser("events", help="inspect the event log")
    esub = p.add_subparsers(dest="events_cmd", metavar="SUBCOMMAND", required=True)
    t = esub.add_parser("tail", help="print events as they arrive (like `nats sub 'yf.evt.>'`)")
    _state_arg(t)
    t.add_argument("--project", default="*", help="project id")
    t.add_argument("--type", default="*", dest="event_type", help="event type, e.g. AgentFinished")
    t.add_argument("--history", action="store_true", help="print the events already in the log first")
    t.add_argument("--json", action="store_true", help="one JSON object per line")
    t.set_defaults(func=lambda a: _async(cmd_events_tail(a)))


def _state_arg(p: argparse.ArgumentParser) -> None:
    # None: yokeflow.cli fills in the configured runtime.state_dir (YOKEFLOW_STATE_DIR, default ./.yokeflow)
    p.add_argument("--state-dir", type=Path, default=None,
                   help="where the embedded servers keep their data (default YOKEFLOW_STATE_DIR or ./.yokeflow)")


def _run_settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", choices=["by_epic", "by_task", "smart"])
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--provider", help="agent provider: anthropic | replay | sleep:<ms> | claude-code")
    p.add_argument("--transcripts", help="folder of <task_id>.json transcripts for the replay provider")
    p.add_argument("--record", metavar="DIR",
                   help="write every agent's real model turns to DIR/<task_id>.json (replay them with --transcripts DIR)")
    p.add_argument("--batch-barrier", action="store_true", help="run batch by batch (the PRD's mode)")


def _async(coro) -> int:
    return asyncio.run(coro)


def _config(repo: Path | None = None) -> Config:
    try:
        return load_config(repo if repo is not None else Path.cwd())
    except ConfigError as exc:
        raise CliError(str(exc), code=2) from None  # bad input: exit 2, like a bad argument


def settings_override(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"parallel": {}, "agent": {}}
    if getattr(args, "strategy", None):
        out["parallel"]["strategy"] = args.strategy
    if getattr(args, "max_concurrency", None):
        if args.max_concurrency < 1:
            raise CliError("--max-concurrency must be at least 1")
        out["parallel"]["max_concurrency"] = args.max_concurrency
    if getattr(args, "batch_barrier", False):
        out["parallel"]["batch_barrier"] = True
    if getattr(args, "provider", None):
        out["agent"]["provider"] = args.provider
    if getattr(args, "record", None):
        out["agent"]["record"] = str(Path(args.record).resolve())
    if getattr(args, "transcripts", None):
        path = Path(args.transcripts).resolve()
        if not path.is_dir():
            raise CliError(f"transcripts folder {path} does not exist")
        out["agent"]["transcripts"] = str(path)
    return out


# --------------------------------------------------------------------------- up
async def cmd_up(args: argparse.Namespace) -> int:
    config = _config()
    from shared.infra import read_endpoint

    if read_endpoint(args.state_dir):
        raise CliError(f"`yokeflow up` already runs on {args.state_dir}")
    from services.gateway.auth import is_loopback

    host = args.host or config.runtime.gateway_host
    port = config.runtime.gateway_port if args.port is None else args.port
    if args.no_auth and not is_loopback(host):
        raise CliError(f"--no-auth is only for a gateway on loopback, not {host}: drop --no-auth")
    token = None if args.no_auth else gateway_token(args.state_dir, config)
    async with open_endpoint(config, args.state_dir) as endpoint:
        system = System(endpoint, config, gateway=True, gateway_host=host, gateway_port=port,
                        gateway_token=token, no_auth=args.no_auth)
        await system.start()
        if endpoint.servers is not None:
            endpoint.servers.write_endpoint(os.getpid(), system.gateway_url)
        print(f"YokeFlow is up: gateway {system.gateway_url}  NATS {scrub(endpoint.nats_url)}  "
              f"PostgreSQL {scrub(endpoint.database_url)}  (state in {args.state_dir})", flush=True)
        if args.no_auth:
            print("WARNING: --no-auth: the gateway has NO API token; any program on this machine can start runs "
                  "(Host and Origin are still checked)", file=sys.stderr, flush=True)
        else:
            print(f"Open the UI: {system.gateway_url}/?token={token}  (API: Authorization: Bearer <token>, "
                  f"the token is in {args.state_dir / 'api-token'} unless YOKEFLOW_API_TOKEN is set)", flush=True)
        print("Ctrl-C stops everything; data stays for the next `yokeflow up`.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                problem = system.failed()
                if problem:
                    print(f"yokeflow: service stopped: {problem}", file=sys.stderr)
                    break
        print("stopping…", flush=True)
        await system.stop()
        (args.state_dir / "endpoint.json").unlink(missing_ok=True)
    return 0


def gateway_token(state_dir: Path, config: Config | None = None) -> str:
    """YOKEFLOW_API_TOKEN (runtime.api_token), else the token of this state folder (made on the first `up`)."""
    from services.gateway.auth import load_or_create_token
    from services.gateway.deps import GatewayConfigError, check_api_token

    try:
        runtime = (config or _config()).runtime
        return check_api_token(runtime.api_token) or load_or_create_token(state_dir)[0]
    except GatewayConfigError as exc:
        raise CliError(str(exc)) from None


# --------------------------------------------------------------------------- run
def load_plan_or_fail(path: str):
    try:
        return load_plan(path)
    except PlanError as exc:
        raise CliError(str(exc), code=2) from None


async def execute_run(endpoint: Endpoint, config: Config, plan, repo: Path, overrides: dict, *,
                      detach: bool = False, quiet: bool = False, command: str = "run",
                      branch: str | None = None, allow_dirty: bool = False):
    """Start a run on this endpoint and follow it to its end (starting the services here when none run)."""
    # The command's span is the root of the run's trace: every event of the run descends from RunStarted.
    with telemetry.span(f"yokeflow {command}", {"yf.command": command, "yf.repo": str(repo)}) as span:
        started, outcome = await _execute_run(endpoint, config, plan, repo, overrides, detach=detach, quiet=quiet,
                                              branch=branch, allow_dirty=allow_dirty)
        telemetry.set_attributes(span, {"yf.run_id": started.run_id, "yf.project_id": started.project_id})
        if outcome is not None and not outcome.succeeded:
            telemetry.mark_failed(span, f"run {started.run_id} did not complete")
        return started, outcome


async def _execute_run(endpoint: Endpoint, config: Config, plan, repo: Path, overrides: dict, *,
                       detach: bool, quiet: bool, branch: str | None = None, allow_dirty: bool = False):
    system = None
    if not endpoint.services_running:
        if detach:
            raise CliError("--detach needs a running `yokeflow up` (or YOKEFLOW_NATS_URL) to carry the run on")
        system = await System(endpoint, config).start()
        if endpoint.servers is not None:  # other commands on this state folder use these servers meanwhile
            endpoint.servers.write_endpoint(os.getpid())
    bus = await endpoint.bus()
    try:
        try:
            started = await start_run(bus, plan, repo, config, settings_override=overrides, target_branch=branch,
                                      allow_dirty=allow_dirty)
        except CommandError as exc:
            raise CliError(str(exc), code=2) from None
        if started.settings.agent.sandbox.mode == "off":  # loud, on the person's screen, not only in the logs
            print(f"WARNING: run {started.run_id}: {OFF_WARNING}", file=sys.stderr)
        if detach:
            print(started.run_id)
            return started, None
        outcome = await _follow_while_served(bus, started, system, quiet=quiet)
        if system is not None:  # let the ledger project the whole run before the servers go away
            await system.database.wait_for("ledger", await bus.last_seq(), timeout=60)
        return started, outcome
    finally:
        await bus.close()
        if system is not None:
            if endpoint.servers is not None:  # another `yokeflow run` may be using this process's services
                await wait_for_clients(endpoint.servers.state_dir)
            await system.stop()


async def _follow_while_served(bus, started: ev.RunStarted, system: System | None, *, quiet: bool):
    """follow_run, ended by an error if a service of this process stops: nothing else would carry the run on."""
    follow = asyncio.create_task(follow_run(bus, started, quiet=quiet))
    try:
        await asyncio.wait([follow, *(system.tasks.values() if system else ())], return_when=asyncio.FIRST_COMPLETED)
        if follow.done():
            return follow.result()
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)
    assert system is not None
    name, task = next((n, t) for n, t in system.tasks.items() if t.done())
    exc = None if task.cancelled() else task.exception()
    why = f"{type(exc).__name__}: {exc}" if exc else "cancelled" if task.cancelled() else "returned"
    raise CliError(f"the {name} service stopped during run {started.run_id} ({why}), so the run cannot go on; "
                   f"`yokeflow status --run {started.run_id}` shows where it stood")


async def require_approval_if_produced(endpoint: Endpoint, plan_path: str) -> None:
    """A plan Session 0 wrote runs only once a person approved it; a hand-written plan is
    approved by the person who runs it."""
    from shared.plan import versions
    from shared.plan.session0 import plan_history, plan_id_for_file

    bus = await endpoint.bus()
    try:
        plan_id = await plan_id_for_file(bus, plan_path)
        v = versions.fold(await plan_history(bus, plan_id)) if plan_id else None
        if v is not None and v.latest > 1:  # edited in the web UI or the API: the file holds version 1
            raise CliError(f"plan {plan_id} was edited after Session 0 wrote {plan_path} (it is at version "
                           f"{v.latest}): start it by id from the web UI or POST /api/runs with plan_id", code=2)
        if v is not None and not v.is_approved:
            raise CliError(f"plan {plan_id} ({plan_path}) was produced by Session 0 and is not approved yet: "
                           f"review it, then `yokeflow plan approve {plan_id}`", code=2)
    finally:
        await bus.close()


async def cmd_run(args: argparse.Namespace) -> int:
    repo = Path(args.repo).expanduser().resolve()
    plan = load_plan_or_fail(args.plan)
    config = _config(repo)
    overrides = settings_override(args)
    try:  # the repository's faults are one line before any server starts
        check_repo(repo)
        target = resolve_target(repo, args.branch, config.merge.target_branch)
        check_checkout(repo, target, allow_dirty=args.allow_dirty)
    except CommandError as exc:
        raise CliError(str(exc), code=2) from None
    async with open_endpoint(config, args.state_dir) as endpoint:
        await require_approval_if_produced(endpoint, args.plan)
        started, outcome = await execute_run(endpoint, config, plan, repo, overrides,
                                             detach=args.detach, quiet=args.quiet, branch=target,
                                             allow_dirty=args.allow_dirty)
    if outcome is None:
        return 0
    print(f"run {started.run_id}: {len(outcome.merged)} task(s) merged into {started.target_branch}, "
          f"cost ${outcome.cost_usd:.4f}")
    if outcome.budget_stop is not None:
        stop = outcome.budget_stop
        print(f"run {started.run_id} stopped by its {stop.scope} budget (${stop.limit_exact or stop.limit_usd}); the "
              f"other tasks are pending with their work on their branches: raise it with `yokeflow budget set USD"
              f"{' --run ' + started.run_id if stop.scope == 'run' else ''}` and `yokeflow up` carries the run on")
    return 0 if outcome.succeeded else 1


# --------------------------------------------------------------------------- status
async def collect_status(endpoint: Endpoint, run_id: str | None = None) -> dict[str, Any]:
    """The runs as shared/readmodel.py reads them (the gateway reads the same way)."""
    from shared import db, readmodel
    from services.ledger.service import Ledger

    # With services running the CLI only reads, as its own role; otherwise it projects the log itself.
    database = db.Database(endpoint.database_url_for("cli") if endpoint.services_running else endpoint.database_url)
    try:
        await database.migrate()
        if not endpoint.services_running:  # no ledger runs: bring the projections up to the log first
            bus = await endpoint.bus()
            try:
                ledger = Ledger(bus, database, publish_alerts=False)
                batch = []
                async for d in bus.read(start_seq=await database.position("ledger") + 1):
                    batch.append(d)
                    if len(batch) >= 256:
                        await ledger.handle_batch(batch)
                        batch = []
                if batch:
                    await ledger.handle_batch(batch)
            finally:
                await bus.close()
        runs = await readmodel.status(database, run_id)
        if runs is None:
            raise CliError(f"no run {run_id}: `yokeflow status` lists the runs")
        executors = None
        if any(r["unstarted"] for r in runs):  # work handed out but not started: is any executor there?
            bus = await endpoint.bus()
            try:
                executors = await bus.pullers("executor")
            finally:
                await bus.close()
        return {"runs": runs, "projection_lag_ms": await database.projection_lag_ms(), "executors_pulling": executors}
    finally:
        await database.dispose()


async def cmd_status(args: argparse.Namespace) -> int:
    from shared import readmodel

    config = _config()
    async with open_endpoint(config, args.state_dir) as endpoint:
        status = await collect_status(endpoint, args.run)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    if not status["runs"]:
        print("no runs yet: `yokeflow run PLAN --repo PATH` or `yokeflow demo` starts one")
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for run in status["runs"]:
        console.print(f"[bold]run {run['id']}[/bold] {run['plan']} on {run['repo_path']} — {run['status']}, "
                      f"${run['cost_usd']:.4f}")
        table = Table("task", "epic", "title", "status", "merge", "attempt", "branch", "merge commit")
        for t in run["tasks"]:
            table.add_row(t["id"], t["epic_id"], t["title"], t["status"], t["merge_status"], str(t["attempt"]),
                          t["branch"], t["merge_commit"][:12])
        console.print(table)
        if run.get("unstarted"):
            console.print(readmodel.waiting_line(run["unstarted"], status["executors_pulling"]))
        if (f := run.get("forecast")) and f["remaining_tasks"]:
            console.print(f"forecast: {f['remaining_tasks']} task(s) left" + (
                f", about ${f['expected_cost_usd']} more and {f['expected_seconds']:.0f}s ({f['basis']})"
                if f["expected_cost_usd"] is not None else f" ({f['basis']})"))
    return 0


# --------------------------------------------------------------------------- events
async def cmd_events_tail(args: argparse.Namespace) -> int:
    config = _config()
    async with open_endpoint(config, args.state_dir, need_database=False) as endpoint:
        bus = await endpoint.bus()
        subject = bus.subjects.of_type(args.event_type, args.project)

        def show(e: ev.Event, seq: int | None) -> None:
            if args.json:
                print(json.dumps({"seq": seq, **ev.to_dict(e)}), flush=True)
            else:
                print(f"{e.occurred_at[11:23]} {seq or '':>6} {e.type:<18} {e.project_id:<24} {describe(e)}", flush=True)

        try:
            start = 1 if args.history else await bus.last_seq() + 1
            async for d in bus.read([subject], start_seq=start, stop_at_end=False):
                show(d.event, d.seq)
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass
        finally:
            await bus.close()
    return 0


