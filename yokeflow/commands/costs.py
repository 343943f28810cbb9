"""`yokeflow costs` and `yokeflow budget set|show` — what the agents cost, and the limits on it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any, AsyncIterator

from yokeflow.commands.runtime import _config, _state_arg
from yokeflow.errors import CliError
from yokeflow.system import Endpoint, open_endpoint


def register(sub: argparse._SubParsersAction) -> None:
    from shared.readmodel.costs import GROUPINGS

    p = sub.add_parser("costs", help="what the model calls cost, per task, epic, model, domain or run")
    _state_arg(p)
    p.add_argument("--run", help="one run (default: every run)")
    p.add_argument("--project", help="one project (default: every project)")
    p.add_argument("--by", default="task", help=f"grouping: {' | '.join(GROUPINGS)} (default task)")
    p.add_argument("--json", action="store_true", help="one JSON object: total_usd and rows, amounts as decimal strings")
    p.set_defaults(func=lambda a: asyncio.run(cmd_costs(a)))

    p = sub.add_parser("budget", help="the project's and runs' budgets (docs/costs.md)")
    bsub = p.add_subparsers(dest="budget_cmd", metavar="SUBCOMMAND", required=True)
    s = bsub.add_parser("set", help="set the project's budget (all its runs), or one run's with --run")
    s.add_argument("usd", help="the new limit in USD (0: no limit)")
    s.add_argument("--run", help="set this run's budget instead of the project's")
    s.add_argument("--project", help="the project (default: the only one, or the run's)")
    _state_arg(s)
    s.set_defaults(func=lambda a: asyncio.run(cmd_budget_set(a)))
    show = bsub.add_parser("show", help="limit, spent and held by calls in flight, as the executors see them")
    show.add_argument("--run", help="a run's budget as well")
    show.add_argument("--project", help="the project (default: the only one, or the run's)")
    show.add_argument("--json", action="store_true")
    _state_arg(show)
    show.set_defaults(func=lambda a: asyncio.run(cmd_budget_show(a)))


@contextlib.asynccontextmanager
async def _projections(endpoint: Endpoint) -> AsyncIterator[Any]:
    """The projection database, brought up to the log first when no ledger service runs."""
    from shared import db
    from services.ledger.service import Ledger

    database = db.Database(endpoint.database_url_for("cli") if endpoint.services_running else endpoint.database_url)
    try:
        await database.migrate()
        if not endpoint.services_running:
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
        yield database
    finally:
        await database.dispose()


async def cmd_costs(args: argparse.Namespace) -> int:
    from shared.readmodel.costs import GROUPINGS, cost_report

    if args.by not in GROUPINGS:
        raise CliError(f"--by: {args.by!r} is not a grouping; use one of {', '.join(GROUPINGS)}", code=2)
    async with open_endpoint(_config(), args.state_dir) as endpoint:
        async with _projections(endpoint) as database:
            if args.run and not await _run_project(database, args.run):
                raise CliError(f"--run: no run {args.run!r}; `yokeflow status` lists the runs", code=2)
            report = await cost_report(database, project_id=args.project, run_id=args.run, by=args.by)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(args.by, "cost (USD)", "calls", "input", "output", "cache write", "cache read",
                  title=f"costs by {args.by}" + (f" of run {args.run}" if args.run else ""))
    for row in report["rows"]:
        table.add_row(row["key"], row["cost_usd"], str(row["calls"]), f"{row['input_tokens']:,}",
                      f"{row['output_tokens']:,}", f"{row['cache_write_tokens']:,}", f"{row['cache_read_tokens']:,}")
    tokens = report["tokens"]
    table.add_row("total", report["total_usd"], str(report["calls"]), f"{tokens['input_tokens']:,}",
                  f"{tokens['output_tokens']:,}", f"{tokens['cache_write_tokens']:,}", f"{tokens['cache_read_tokens']:,}",
                  style="bold")
    Console().print(table)
    return 0


async def _run_project(database, run_id: str) -> str | None:
    from sqlalchemy import select

    from shared import db

    rows = await database.fetch(select(db.runs.c.project_id).where(db.runs.c.id == run_id))
    return rows[0]["project_id"] if rows else None


async def _project_of(database, args: argparse.Namespace) -> str:
    from sqlalchemy import select

    from shared import db

    if args.run:
        project = await _run_project(database, args.run)
        if project is None:
            raise CliError(f"--run: no run {args.run!r}; `yokeflow status` lists the runs", code=2)
        if args.project and args.project != project:
            raise CliError(f"--project: run {args.run} belongs to project {project}, not {args.project}", code=2)
        return project
    projects = [r["id"] for r in await database.fetch(select(db.projects.c.id))]
    if args.project:
        if args.project not in projects:
            raise CliError(f"--project: no project {args.project!r}; known: {', '.join(projects) or 'none yet'}",
                           code=2)
        return args.project
    if len(projects) != 1:
        raise CliError("--project: name the project (" + (", ".join(projects) or "none has run yet") + ")", code=2)
    return projects[0]


async def cmd_budget_set(args: argparse.Namespace) -> int:
    from shared.budget_commands import BudgetInputError, parse_amount, set_budget

    try:
        amount = parse_amount(args.usd, "USD")
    except BudgetInputError as exc:
        raise CliError(str(exc), code=2) from None
    async with open_endpoint(_config(), args.state_dir) as endpoint:
        async with _projections(endpoint) as database:
            project = await _project_of(database, args)
        bus = await endpoint.bus()
        try:
            event = await set_budget(bus, project, amount, run_id=args.run or "", set_by="cli")
        finally:
            await bus.close()
    what = f"run {args.run}" if args.run else f"project {project}"
    print(f"budget of {what}: ${event.limit_exact}" + (" (no limit)" if amount == 0 else ""))
    return 0


async def cmd_budget_show(args: argparse.Namespace) -> int:
    from shared.budget_commands import budget_status

    async with open_endpoint(_config(), args.state_dir) as endpoint:
        async with _projections(endpoint) as database:
            project = await _project_of(database, args)
        bus = await endpoint.bus()
        try:
            status = await budget_status(bus, project, args.run or "")
        finally:
            await bus.close()
    if args.json:
        print(json.dumps({"project_id": project, "run_id": args.run, **status}, indent=2))
        return 0
    for scope, acct in status.items():
        if acct is None:
            print(f"{scope}: no model call reserved against it yet")
        else:
            limit = "no limit" if acct["limit_usd"] == "0" else f"${acct['limit_usd']}"
            print(f"{scope}: {limit}, spent ${acct['spent_usd']}, held by calls in flight ${acct['reserved_usd']}"
                  + (" — exhausted" if acct["exhausted"] else ""))
    return 0
