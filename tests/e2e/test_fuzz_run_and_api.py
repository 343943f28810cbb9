"""Bad input, generated, through the front doors: random plans (wrong types, unicode ids and
titles, cycles, missing references, odd sizes) and settings through `yokeflow run` (a real
process) and the gateway's POST /api/runs and /api/projects/{id}/parallel/start. Never a
traceback, a hang or a 5xx: a run starts and ends, or the input is refused in one line / a 4xx
that names the field. Bounded: a few examples each, every wait with a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import events as ev
from tests.integration.test_gateway import PLAN, client, running_gateway
from tests.support.processes import service_env
from tests.support.system import config, running_system, wait_for_end
from tests.unit.test_plan_fuzz import junk, plans as junk_plans

pytestmark = pytest.mark.e2e

# Plans of the right shape with hostile contents: they may run, so each is small.
names = st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["一", "二", "日本語", "x y", "a/b", "..", "é"]))


@st.composite
def shaped_plans(draw) -> dict:
    ids = draw(st.lists(names, min_size=1, max_size=4))
    tasks = [{"id": tid, "title": draw(names), "depends_on": draw(st.lists(st.sampled_from(ids + ["ghost"]),
                                                                            max_size=2))}
             for tid in ids]
    return {"name": draw(names), "epics": [{"id": draw(names), "name": draw(names), "tasks": tasks}]}


any_plan = st.one_of(shaped_plans(), shaped_plans(), junk_plans)  # most of them shaped well enough to run
FUZZ = settings(max_examples=6, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture
async def system(nats_server, database_url, unique):
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 3}, agent={"provider": "sleep:10"},
                 learning={"enabled": False})
    async with running_system(nats_server.url, database_url, unique, cfg) as (running, bus):
        yield running, bus


@pytest.mark.timeout(120)
@FUZZ
@given(plan=any_plan)
async def test_yokeflow_run_starts_and_ends_or_refuses_in_one_line(system, nats_server, database_url, unique,
                                                                   git_repo, tmp_path, plan):
    _, bus = system
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("YOKEFLOW_")},
           **service_env(nats_server.url, database_url, unique)}
    done = subprocess.run([sys.executable, "-m", "yokeflow", "run", str(path), "--repo", str(git_repo), "--detach",
                           "--provider", "sleep:10", "--allow-dirty"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    if done.returncode:
        # one line naming the fault (an invalid plan lists its problems under it)
        assert done.stderr.startswith("yokeflow: ") and done.returncode == 2, done.stderr
        return
    run_id = next(w for w in done.stdout.split() if w.startswith("r") and len(w) > 6)
    end = await wait_for_end(bus, run_id, timeout=60)  # started: it ends, whatever the plan
    assert isinstance(end, (ev.RunCompleted, ev.RunFailed)), end


settings_junk = st.dictionaries(st.sampled_from(["parallel", "agent", "merge", "cost", "turbo"]),
                                st.one_of(junk, st.dictionaries(st.sampled_from(
                                    ["max_concurrency", "strategy", "provider", "on_conflict", "run_budget_usd"]),
                                    junk, max_size=2)), max_size=2)


@pytest.fixture
async def gateway(bus, database_url, git_repo):
    async with running_gateway(bus, database_url) as url:
        async with client(url, timeout=30) as c:
            made = await c.post("/api/runs", params={"wait": "true"}, json={"plan": PLAN, "repo_path": str(git_repo)})
            assert made.status_code == 201, made.text
            yield c, made.json()["project_id"]


def _no_5xx(res) -> None:
    assert res.status_code < 500, (res.status_code, res.text[:500])
    body = res.json()  # JSON either way
    if res.status_code >= 400:
        assert body.get("detail"), body


@pytest.mark.timeout(120)
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(plan=any_plan, run_settings=settings_junk, repo=st.sampled_from(["git", "", "/nowhere", "\x00"]),
       start=st.dictionaries(st.sampled_from(["max_concurrency", "strategy", "batch_barrier", "budget_usd",
                                              "plan_id"]), junk, max_size=3))
async def test_the_api_answers_any_plan_with_a_run_or_a_4xx(gateway, git_repo, plan, run_settings, repo, start):
    c, project = gateway
    body = {"plan": plan, "repo_path": str(git_repo) if repo == "git" else repo, "settings": run_settings}
    # sent as Python writes JSON (NaN and Infinity included, as some clients do)
    raw = {"content-type": "application/json"}
    _no_5xx(await c.post("/api/runs", content=json.dumps(body), headers=raw))
    _no_5xx(await c.post(f"/api/projects/{project}/parallel/start", content=json.dumps({"plan": plan, **start}),
                         headers=raw))
