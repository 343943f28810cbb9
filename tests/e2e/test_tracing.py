"""One run, one trace: `yokeflow run` in one process, and services as separate processes, export
OTLP/HTTP to a receiver the test runs; the run's spans join the CLI, planner, executor (with its
model and tool calls), merger, learner and ledger under one trace id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shared.infra import free_port
from tests.support.fake_anthropic import tool, turn
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.processes import ServiceProcess, service_env
from tests.support.system import write_transcripts

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ledger", "planner", "executor", "merger", "learner")
PLAN = {"name": "traced", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "one", "title": "One", "tests": ["python -c 'import one'"]},
    {"id": "two", "title": "Two", "depends_on": ["one"], "tests": ["python -c 'import two'"]}]}]}
SCRIPTS = {
    "one": [turn(tool("write_file", path="one.py", content="ONE = 1\n"), usage={"input_tokens": 300, "output_tokens": 40}),
            turn(tool("finish", summary="one.py"))],
    "two": [turn(tool("write_file", path="two.py", content="from one import ONE\nTWO = ONE + 1\n")),
            turn(tool("finish", summary="two.py"))],
}


@pytest.fixture
def state_dir():
    """Embedded servers' state outside pytest's tmp folder: another pytest session starting on
    this machine resets /tmp/pytest-of-<user> to 0700, locking out PostgreSQL's own system user."""
    path = Path(tempfile.mkdtemp(prefix="yf-state-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def yokeflow_run(tmp_path: Path, repo: Path, env: dict[str, str], state: Path) -> subprocess.CompletedProcess:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    transcripts = write_transcripts(tmp_path / "transcripts", SCRIPTS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("YOKEFLOW_", "OTEL_"))}
    return subprocess.run([sys.executable, "-m", "yokeflow", "run", str(plan), "--repo", str(repo), "--quiet",
                           "--provider", "replay", "--transcripts", str(transcripts), "--strategy", "by_task",
                           "--state-dir", str(state)],
                          cwd=tmp_path, env={**clean, **env}, capture_output=True, text=True, timeout=240)


def the_run_trace(spans: list[ReceivedSpan]) -> tuple[str, list[ReceivedSpan]]:
    """The run's one trace: rooted at the CLI command, and holding every span that names the run."""
    [root] = [s for s in spans if s.name == "yokeflow run"]
    run_id = root.attributes["yf.run_id"]
    assert not root.parent_id
    stray = [(s.name, s.service, s.attributes) for s in spans
             if s.attributes.get("yf.run_id") == run_id and s.trace_id != root.trace_id]
    assert not stray, f"spans of run {run_id} outside its trace: {stray}"
    return run_id, [s for s in spans if s.trace_id == root.trace_id]


def assert_joins_every_service(trace: list[ReceivedSpan]) -> None:
    by_id = {s.span_id: s for s in trace}
    consumers = {s.attributes.get("messaging.consumer.group.name") for s in trace}
    assert set(SERVICES) <= consumers, consumers
    for s in trace:  # nothing dangles: every parent was exported in the same trace
        assert not s.parent_id or s.parent_id in by_id, s.name
    processed = [s for s in trace if s.attributes.get("messaging.operation.type") == "process"]
    assert all(s.attributes["messaging.system"] == "nats" and s.attributes["messaging.nats.stream_sequence"] > 0
               and s.attributes["messaging.destination.name"].endswith(s.attributes["yf.event"]) for s in processed)

    calls = [s for s in trace if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(calls) == 4  # two turns per task
    assert {c.attributes["gen_ai.usage.input_tokens"] for c in calls} >= {300, 100}
    assert all("yf.cost_usd" in c.attributes and c.attributes["gen_ai.request.model"] for c in calls)
    tools = [s for s in trace if s.attributes.get("gen_ai.operation.name") == "execute_tool"]
    assert sorted(t.attributes["gen_ai.tool.name"] for t in tools) == ["finish", "finish", "write_file", "write_file"]
    for child in calls + tools:  # model and tool calls are children of the agent session, inside TaskReady
        agent = by_id[child.parent_id]
        assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert by_id[agent.parent_id].name == "executor process TaskReady"
    assert len([s for s in trace if s.name == "check" and s.attributes["yf.check.passed"]]) == 2
    merges = [s for s in trace if s.name.startswith("merge ")]
    assert [m.attributes["yf.merge.status"] for m in merges] == ["merged", "merged"]


def test_yokeflow_run_in_one_process_makes_one_trace_per_run(tmp_path, git_repo, state_dir):
    with OtlpReceiver() as receiver:
        result = yokeflow_run(tmp_path, git_repo, receiver.env(), state_dir)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run_id, trace = the_run_trace(receiver.spans)
    assert f"run {run_id}: 2 task(s) merged" in result.stdout
    assert_joins_every_service(trace)
    # and metrics, through the same OTLP endpoint
    m = receiver.metrics
    assert {a["model"] for a, _ in m["yokeflow.cost"]} and all(v >= 0 for _, v in m["yokeflow.cost"])
    assert m["yokeflow.agents.in_flight"][-1][1] == 0  # every agent that started has finished
    assert max(v for _, v in m["yokeflow.dispatch.latency"]) == 2  # one per task (a histogram's count)
    assert max(v for _, v in m["yokeflow.merge.duration"]) == 2
    assert max(v for _, v in m["yokeflow.projection.lag"]) > 20
    assert {a["consumer"] for a, _ in m["yokeflow.consumer.pending"]} >= {"planner", "executor", "merger"}
    from services.planner.scheduler import CONFLICT, DISPATCHED, MERGED, PENDING, SUCCEEDED, TERMINAL
    statuses = {a["status"] for a, _ in m["yokeflow.tasks"]}
    # which statuses an export happens to see depends on timing (a two-task run can end between two
    # exports, so "merged" may never be exported): some were seen, each one a task can be in
    assert statuses and statuses <= {PENDING, DISPATCHED, SUCCEEDED, MERGED, CONFLICT, *TERMINAL}


async def test_services_as_processes_make_one_trace_per_run(nats_server, database_url, unique, git_repo, tmp_path,
                                                            bus):
    with OtlpReceiver() as receiver:
        env = service_env(nats_server.url, database_url, unique, **receiver.env())
        services = [ServiceProcess(name, env, tmp_path).start() for name in SERVICES]
        try:
            result = yokeflow_run(tmp_path, git_repo, env, tmp_path / "unused")  # the services' servers
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        finally:
            for p in services:
                p.stop()  # SIGTERM: each process flushes its spans on the way out
        assert all(p.proc.returncode == 0 for p in services), [p.output()[-2000:] for p in services]
    run_id, trace = the_run_trace(receiver.spans)
    assert {s.service for s in trace} >= {f"yokeflow-{name}" for name in SERVICES} | {"yokeflow"}
    assert_joins_every_service(trace)
    # the W3C context travels in every event's NATS headers
    last = await bus.last_seq()
    headers = [(await bus.js.get_msg(bus.stream, seq)).headers or {} for seq in range(1, last + 1)]
    assert last > 20 and all("traceparent" in h for h in headers)


def test_up_with_trace_console_prints_spans_and_a_bad_otel_setting_is_one_line(tmp_path, state_dir):
    import signal
    import time
    import urllib.request

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("YOKEFLOW_", "OTEL_"))}
    refused = subprocess.run([sys.executable, "-m", "yokeflow", "up", "--state-dir", str(state_dir)],
                             cwd=tmp_path, env={**clean, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                                                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported" in refused.stderr

    up = subprocess.Popen([sys.executable, "-m", "yokeflow", "up", "--trace-console", "--port", str(port),
                           "--state-dir", str(state_dir)], cwd=tmp_path,
                          env={**clean, "OTEL_BSP_SCHEDULE_DELAY": "100"}, stdout=subprocess.PIPE, text=True)
    try:
        assert "YokeFlow is up" in up.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=30) as response:
            assert response.status == 200
        deadline = time.monotonic() + 60  # bounds the test only; the line arrives within the batch delay
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            if line.startswith("span ") and "GET /api/health" in line:
                break
        else:
            pytest.fail("no span line for the request")
        assert "http.response.status_code=200" in line
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
