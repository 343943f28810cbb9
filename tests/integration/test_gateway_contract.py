"""The gateway's contract over real HTTP: bad input is a 4xx naming the field (each case below
was a 500 once), bodies and ids are bounded, and schemathesis, run against the running gateway
with bounded examples, finds no 5xx and no answer outside the served OpenAPI document."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.integration.test_gateway import AUTH, PLAN, client, publish_and_project, run_events, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(bus, database_url):
    async with running_gateway(bus, database_url) as url:
        await publish_and_project(bus, database_url, run_events())
        async with client(url) as c:
            c.url = url
            yield c


async def test_bad_input_is_a_4xx_naming_the_field(gateway, git_repo):
    res = await gateway.post("/api/runs", json={"plan": "x", "repo_path": "/tmp"})
    assert res.status_code == 422 and res.json()["field"] == "plan", res.text
    res = await gateway.get("/api/runs/r1/events", params={"after": "9223372036854775808"})
    assert res.status_code == 422 and res.json()["field"] == "after", res.text
    assert (await gateway.get("/api/runs/r1/events", params={"after": str(2**63 - 1)})).status_code == 200
    for path, field in (("/api/runs/r%001", "run_id"), ("/api/projects/p%00", "project_id"),
                        ("/api/runs/r1/tasks/a%00", "task_id"), ("/api/plans/x%00y", "plan_id"),
                        ("/api/projects/p/expertise/api%00", "domain")):
        res = await gateway.get(path)
        assert res.status_code == 422 and res.json()["field"] == field, (path, res.text)
    res = await gateway.post("/api/runs", json={"plan": PLAN, "repo_path": f"{git_repo}\x00"})
    assert res.status_code == 422 and res.json()["field"] == "repo_path", res.text
    nul_title = {**PLAN, "epics": [{**PLAN["epics"][0], "name": "Data\x00base"}]}
    res = await gateway.post("/api/runs", json={"plan": nul_title, "repo_path": str(git_repo)})
    assert res.status_code == 422 and res.json()["field"] == "plan" and "plan.epics[0].name" in res.json()["detail"]
    res = await gateway.get("/api/projects/p/costs", params={"run": "r1\x00"})  # any route's query, even one
    assert res.status_code == 422 and res.json()["field"] == "run", res.text  # without a pattern of its own
    res = await gateway.get("/api/runs", params={"project": "p" * 65})
    assert res.status_code == 422 and res.json()["field"] == "project"
    res = await gateway.get("/api/runs/" + "r" * 65)
    assert res.status_code == 422 and res.json()["field"] == "run_id"
    res = await gateway.post("/api/projects/p/parallel/start", json={"plan": PLAN, "max_concurrency": 0})
    assert res.status_code == 422 and res.json()["field"] == "max_concurrency"
    res = await gateway.post("/api/projects/p/parallel/start", json={"plan": PLAN, "strategy": "fastest"})
    assert res.status_code == 422 and res.json()["field"] == "strategy"
    res = await gateway.post("/api/runs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert res.status_code == 422 and res.json()["problems"]


async def test_bodies_are_bounded(gateway, git_repo):
    huge = {"plan": PLAN, "repo_path": str(git_repo), "settings": {"parallel": {"x": "y" * (3 << 20)}}}
    res = await gateway.post("/api/runs", json=huge)
    assert res.status_code == 413 and res.json()["field"] == "body"

    async def chunks():
        yield b'{"plan": '
        yield b'null}'
    res = await gateway.post("/api/runs", content=chunks(), headers={"Content-Type": "application/json"})
    assert res.status_code == 413 and "Content-Length" in res.json()["detail"]


async def test_every_error_shape_is_in_the_served_document(gateway):
    spec = (await gateway.get("/api/openapi.json")).json()
    error = spec["components"]["schemas"]["ErrorBody"]
    assert set(error["required"]) == {"detail"} and "field" in error["properties"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            documented = set(operation["responses"])
            assert {"401", "403", "404", "422"} <= documented, (method, path, documented)
            assert operation["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"}, (method, path)


async def test_schemathesis_finds_no_5xx_and_no_schema_mismatch(gateway, tmp_path):
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,"
              "response_schema_conformance,response_headers_conformance")
    st = Path(sys.executable).parent / "st"
    assert st.exists(), "schemathesis is part of the test extra: pip install -e '.[test]'"
    proc = await asyncio.create_subprocess_exec(
        str(st), "run", f"{gateway.url}/api/openapi.json", "--checks", checks, "--max-examples", "6", "--seed", "7",
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--generation-database", "none",
        "--request-timeout", "20", "--no-color", "-H", f"Authorization: {AUTH['Authorization']}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "No issues found" in text or "passed" in text, text[-3000:]
