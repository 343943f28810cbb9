"""Cost reports agree with tokens × pricing to the cent (cache tokens included) for every grouping,
through `yokeflow costs --json` and GET /api/projects/{id}/costs alike; budgets are set through
both, and bad input is one clear error naming the key."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import defaultdict
from decimal import Decimal

import pytest

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from shared.llm.pricing import PriceTable
from shared.llm.types import Usage
from tests.integration.test_gateway import client, publish_and_project, running_gateway

pytestmark = pytest.mark.integration

PLAN = {"name": "shop", "epics": [
    {"id": "E1", "name": "Store", "tasks": [{"id": "t1", "title": "API", "domain": "api"},
                                             {"id": "t2", "title": "Schema", "domain": "database"}]},
    {"id": "E2", "name": "Web", "tasks": [{"id": "t3", "title": "Page", "domain": "frontend"}]}]}
# (run, task, model, input, output, cache write, cache read)
CALLS = [
    ("r1", "t1", "claude-sonnet-4-6", 1234, 567, 8901, 23456),
    ("r1", "t1", "claude-sonnet-4-6", 17, 3, 0, 99_999),
    ("r1", "t2", "claude-haiku-5-5", 120_000, 4000, 500, 1),  # a long prompt: the dearer tier
    ("r1", "t3", "claude-opus-4-6", 3, 7, 11, 13),
    ("r2", "t1", "claude-opus-5-5", 1000, 2000, 3000, 4000),
    ("r2", "t3", "claude-sonnet-4-6", 1, 1, 1, 1),
]
EPIC = {"t1": "E1", "t2": "E1", "t3": "E2"}
DOMAIN = {"t1": "api", "t2": "database", "t3": "frontend"}


def events() -> list[ev.Event]:
    out: list[ev.Event] = [ev.ProjectCreated(project_id="p", aggregate_id="p", name="shop", repo_path="/tmp/shop")]
    for run in ("r1", "r2"):
        out.append(ev.RunStarted(project_id="p", aggregate_id=run, run_id=run, plan=PlanDoc.of(PLAN), repo_path="/tmp/shop",
                                 settings=RunSettings()))
    for i, (run, task, model, inp, outp, write, read) in enumerate(CALLS):
        usage = Usage(inp, outp, cache_read_tokens=read, cache_write_tokens=write)
        cost = PriceTable().cost(model, usage)
        out.append(ev.CostRecorded(project_id="p", aggregate_id=ev.task_aggregate_id(run, task), run_id=run,
                                   task_id=task, attempt=1, model=model, call=i, input_tokens=inp, output_tokens=outp,
                                   cache_write_tokens=write, cache_read_tokens=read, cost_usd=float(cost),
                                   cost_exact=str(cost)))
    # another project's money is not this one's
    out.append(ev.CostRecorded(project_id="other", aggregate_id="x", run_id="rx", task_id="t1", model="claude-opus-4-6",
                               input_tokens=10**6, cost_usd=5.0, cost_exact="5"))
    return out


def expected(by: str, run: str | None = None) -> tuple[Decimal, dict[str, Decimal]]:
    """Tokens × the published rates, computed here by hand (not through the report)."""
    rates = {"claude-sonnet-4-6": (3, 15, "3.75", "0.30"), "claude-opus-4-6": (5, 25, "6.25", "0.50"),
             "claude-opus-5-5": (4, 20, 5, "0.20"), "claude-haiku-5-5": ("0.50", "2.50", "0.625", "0.05")}
    rows: dict[str, Decimal] = defaultdict(Decimal)
    for r, task, model, *tokens in CALLS:
        if run and r != run:
            continue
        cost = sum(Decimal(n) * Decimal(str(rate)) for n, rate in zip(tokens, rates[model])) / 10**6
        key = {"task": f"{r}/{task}", "epic": f"{r}/{EPIC[task]}", "model": model, "domain": DOMAIN[task],
               "run": r}[by]
        if run and by in ("task", "epic"):
            key = key.split("/", 1)[1]
        rows[key] += cost
    return sum(rows.values(), Decimal(0)), dict(rows)


async def yokeflow(bus, database_url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOKEFLOW_")}
    env.update({"YOKEFLOW_NATS_URL": bus.nc.connected_url.geturl(), "YOKEFLOW_DATABASE_URL": database_url,
                "YOKEFLOW_SUBJECT_PREFIX": bus.prefix, "YOKEFLOW_STREAM": bus.stream,
                "YOKEFLOW_LOG_STREAM": bus.log_stream})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "yokeflow", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode, out.decode(), err.decode()


async def test_every_grouping_agrees_with_tokens_times_pricing_in_the_cli_and_the_api(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        async with client(url) as api:
            await publish_and_project(bus, database_url, events())
            cases = [(by, run) for by in ("task", "epic", "model", "domain", "run") for run in (None, "r1")]
            through_cli = [("task", None), ("epic", "r1"), ("model", None), ("domain", None), ("run", None)]
            cli = dict(zip(through_cli, await asyncio.gather(*[
                yokeflow(bus, database_url, "costs", "--project", "p", "--by", by, "--json", *(["--run", run] if run else []))
                for by, run in through_cli])))
            for by, run in cases:
                params = {"by": by, **({"run": run} if run else {})}
                report = (await api.get("/api/projects/p/costs", params=params)).json()
                if (by, run) in cli:
                    code, out, err = cli[(by, run)]
                    assert code == 0, err
                    assert json.loads(out) == report  # the same object
                total, rows = expected(by, run)
                assert Decimal(report["total_usd"]) == total, (by, run)
                assert {row["key"]: Decimal(row["cost_usd"]) for row in report["rows"]} == rows, (by, run)
                assert sum(Decimal(row["cost_usd"]) for row in report["rows"]) == Decimal(report["total_usd"])
                assert isinstance(report["total_usd"], str)
            # every token kind is reported, per row and in total
            report = (await api.get("/api/projects/p/costs", params={"by": "model"})).json()
            sonnet = next(r for r in report["rows"] if r["key"] == "claude-sonnet-4-6")
            assert (sonnet["input_tokens"], sonnet["output_tokens"], sonnet["cache_write_tokens"],
                    sonnet["cache_read_tokens"], sonnet["calls"]) == (1252, 571, 8902, 123456, 3)
            assert report["tokens"]["cache_read_tokens"] == sum(c[6] for c in CALLS)
            # the sum of the rows is the sum of CostRecorded, to the cent (and here to the last digit)
            recorded = sum(Decimal(e.cost_exact) for e in events() if isinstance(e, ev.CostRecorded)
                           and e.project_id == "p")
            assert Decimal(report["total_usd"]) == recorded

            # the run detail forecasts what is left (no attempt has finished yet: it says so)
            forecast = (await api.get("/api/runs/r1")).json()["totals"]["forecast"]
            assert forecast["remaining_tasks"] == 3 and forecast["expected_cost_usd"] is None

            # budgets: set through the API and the CLI, read back as the executors see them
            put = await api.put("/api/projects/p/budget", json={"limit_usd": "12.50"})
            assert put.status_code == 200 and put.json()["limit_usd"] == "12.5"
            code, out, err = await yokeflow(bus, database_url, "budget", "set", "7", "--run", "r1")
            assert code == 0 and "run r1: $7" in out, err
            budget = (await api.get("/api/projects/p/budget", params={"run": "r1"})).json()
            assert budget["project"]["limit_usd"] == "12.5" and budget["run"]["limit_usd"] == "7"
            assert budget["project"]["limit_source"] == "set"
            sets = [d.event async for d in bus.read() if isinstance(d.event, ev.BudgetSet)]
            assert [(s.scope, s.run_id, s.limit_exact) for s in sets] == [("project", "", "12.5"), ("run", "r1", "7")]

            # bad input: one clear error naming the key; HTTP 422 / exit 2
            for body, field in [({"limit_usd": "-1"}, "limit_usd"), ({"limit_usd": "lots"}, "limit_usd"),
                                ({"limit_usd": "NaN"}, "limit_usd")]:
                bad = await api.put("/api/projects/p/budget", json=body)
                assert bad.status_code == 422 and bad.json()["field"] == field, bad.text
            bad = await api.get("/api/projects/p/costs", params={"by": "colour"})
            assert bad.status_code == 422 and "by" in bad.json()["field"]
            assert (await api.get("/api/projects/nope/costs")).status_code == 404
            for args, key in [(("budget", "set", "-5"), "USD"), (("budget", "set", "abc"), "USD"),
                              (("costs", "--by", "colour"), "--by"), (("budget", "set", "5", "--run", "nope"), "--run")]:
                code, out, err = await yokeflow(bus, database_url, *args)
                lines = [x for x in err.splitlines() if x.strip()]
                assert code == 2 and len(lines) == 1 and key in lines[0] and "Traceback" not in err, (args, err)
