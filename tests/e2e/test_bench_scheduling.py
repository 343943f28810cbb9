"""`python -m bench.scheduling --quick --json` runs the real system end to end and reports every
figure the benchmark promises (shape and sanity only: timings are the benchmark's business)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"makespan_s", "lower_bound_s", "efficiency", "dispatch_p50_ms", "dispatch_p99_ms", "merge_p50_ms",
          "merge_p99_ms", "peak_agents", "events_per_s", "projection_lag_p99_ms", "cpu_ms_per_task", "tasks"}


def test_quick_benchmark_reports_every_policy_and_scale_point():
    proc = subprocess.run([sys.executable, "-m", "bench.scheduling", "--quick", "--json", "--processes", "--repeats", "3"],
                          cwd=ROOT,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert set(out["policies"]) == {"sequential", "barrier", "default", "processes"}
    assert out["policies"]["processes"]["service_processes"] and not out["policies"]["default"]["service_processes"]
    for name, rec in out["policies"].items():
        assert FIELDS | {"speedup"} <= set(rec), name
        assert rec["completed"] and rec["tasks"] == 9
        assert 0 < rec["efficiency"] <= 1.0 and rec["makespan_s"] >= rec["lower_bound_s"]
        assert 1 <= rec["peak_agents"] <= rec["concurrency"]
    for name, rec in out["policies"].items():  # the median of three runs; sequential once
        runs = rec["efficiency_of_each_run"]
        assert rec["repeats"] == len(runs) == (1 if name == "sequential" else 3), name
        assert rec["efficiency"] == sorted(runs)[len(runs) // 2], name
    assert out["policies"]["sequential"]["peak_agents"] == 1
    # beside each policy without a barrier, what its model allows with no cost and with the run's costs
    assert "model" not in out["policies"]["barrier"]
    for name in ("sequential", "default", "processes"):
        model = out["policies"][name]["model"]
        assert set(model["costs"]) == {"slot_ms", "handoff_ms", "link_ms", "jitter_ms"}, name
        assert all(v >= 0 for v in model["costs"].values()) and model["costs"]["link_ms"] > 0, name
        assert 0 < model["efficiency_with_costs"] <= model["efficiency_no_cost"] <= 1.0, name
        assert set(model["efficiency_without"]) == {"slot", "handoff", "link", "jitter"}, name
    assert out["policies"]["sequential"]["speedup"] == 1.0
    assert [r["plan_tasks"] for r in out["scale"]] == [9, 18]
    for rec in out["scale"]:
        assert FIELDS <= set(rec) and rec["completed"] and rec["cpu_ms_per_task"] > 0
    # the smaller plan ran before and after the largest: its figure is the mean of the two runs'
    small, large = out["scale"]
    assert small["runs"] == 2 and large["runs"] == 1 and len(small["cpu_ms_per_task_of_each_run"]) == 2
    assert small["cpu_ms_per_task"] == round(statistics.fmean(small["cpu_ms_per_task_of_each_run"]), 1)
    assert large["cpu_ms_per_task_of_each_run"] == [large["cpu_ms_per_task"]]
    assert out["cpu_growth_largest_over_smallest"] == round(large["cpu_ms_per_task"] / small["cpu_ms_per_task"], 2)
    assert out["burst"]["events"] == 200 and out["burst"]["publish_per_s"] > 0
    # the host's speed beside the figures, at the start, the end and each scale point (shared machines)
    for host in (out["host"]["start"], out["host"]["end"], *(r["host"] for r in out["scale"])):
        assert host["python_loop_ms"] > 0 and host["python_loop_cpu_ms"] > 0 and host["small_files_ms"] > 0


def test_the_table_shows_the_host_beside_the_figures():
    from bench.scheduling import host_speed, table

    host = host_speed(repeats=1)
    out = {"machine": "m", "seed": 7, "learning": True, "host": {"start": host, "end": host}, "policies": {},
           "scale": [{"tasks": 9, "makespan_s": 1.0, "efficiency": 0.5, "peak_agents": 2, "cpu_ms_per_task": 3.0,
                      "projection_lag_p99_ms": 4.0, "host": host}], "burst": {}}
    text = table(out)
    assert text.count("host at ") == 2 and f"python loop {host['python_loop_ms']:.0f} ms" in text
    assert text.splitlines()[-1].split()[-1] == f"{host['python_loop_cpu_ms']:.0f}"


PLAN_WITH_EPIC_DEPENDENCY = """\
name: outside
epics:
  - id: api
    name: API
    tasks:
      - {id: a1, title: routes, tests: ["pytest -q tests/test_routes.py"]}
      - {id: a2, title: handlers, depends_on: [a1]}
  - id: ui
    name: UI
    depends_on: [api]
    tasks:
      - {id: u1, title: pages, tests: ["npm test"]}
  - id: docs
    name: Docs
    tasks:
      - {id: d1, title: guide}
      - {id: d2, title: reference}
"""


def test_a_plan_it_has_not_seen_runs_with_its_epic_dependencies_in_the_bound(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN_WITH_EPIC_DEPENDENCY)
    proc = subprocess.run([sys.executable, "-m", "bench.scheduling", "--quick", "--json", "--only", "policies",
                           "--repeats", "1", "--plan", str(plan), "--agent-ms", "40", "--concurrency", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    # ui waits for every task of api (its epic's dependency): a1 -> a2 -> u1 is the longest chain
    assert out["plan"] == {"name": "outside", "source": str(plan), "epics": 3, "tasks": 5, "critical_path_tasks": 3,
                           "checks_left_out": 2, "agent_ms": 40, "concurrency": 2}
    assert set(out["policies"]) == {"sequential", "barrier", "default"}
    for name, rec in out["policies"].items():
        assert rec["completed"] and rec["tasks"] == 5, name
        assert rec["lower_bound_s"] == max(3 * 0.040, 5 * 0.040 / rec["concurrency"]), name
        assert rec["makespan_s"] >= rec["lower_bound_s"] and 0 < rec["efficiency"] <= 1.0, name
    assert out["policies"]["default"]["concurrency"] == 2 and out["policies"]["default"]["peak_agents"] <= 2
    assert out["policies"]["sequential"]["makespan_s"] >= 5 * 0.040
    assert out["scale"] == [] and out["burst"] == {}


@pytest.mark.parametrize("args, names", [
    (["--plan", "missing-plan.yaml"], "missing-plan.yaml does not exist"),
    (["--shape", "12x"], "--shape: '12x' is not EPICSxTASKS"),
    (["--shape", "100x100"], "10,000 tasks; at most 5,000"),
    (["--agent-ms", "0"], "--agent-ms: 0 is outside 1..600,000"),
    (["--concurrency", "six"], "--concurrency: 'six' is not a whole number"),
    (["--plan", "x.yaml", "--shape", "2x2"], "give --plan or --shape, not both"),
])
def test_bad_arguments_get_one_line_naming_them_and_nothing_starts(args, names, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench.scheduling", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stdout == ""
    assert names in proc.stderr.splitlines()[-1] and "Traceback" not in proc.stderr


def test_a_cyclic_plan_is_refused_before_any_server_starts(tmp_path):
    plan = tmp_path / "cycle.json"
    plan.write_text(json.dumps({"name": "c", "epics": [{"id": "e", "name": "E", "tasks": [
        {"id": "t1", "title": "x", "depends_on": ["t2"]}, {"id": "t2", "title": "y", "depends_on": ["t1"]}]}]}))
    proc = subprocess.run([sys.executable, "-m", "bench.scheduling", "--plan", str(plan)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "dependency cycle" in proc.stderr and "Traceback" not in proc.stderr


def test_a_plan_the_run_refuses_ends_the_benchmark_with_one_line(tmp_path):
    """Too large for one NATS message as a RunStarted: known only once the bus is up; still one line."""
    plan = tmp_path / "big.json"
    plan.write_text(json.dumps({"name": "big", "epics": [{"id": f"e{e}", "name": f"E{e}", "tasks": [
        {"id": f"e{e}t{t}", "title": "t", "description": "x" * 4000} for t in range(30)]} for e in range(10)]}))
    proc = subprocess.run([sys.executable, "-m", "bench.scheduling", "--plan", str(plan), "--only", "policies",
                           "--repeats", "1", "--agent-ms", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert "over the NATS max payload" in proc.stderr.splitlines()[-1]


def _servers_under(folder: Path) -> list[str]:
    """Command lines of the processes whose command line names `folder` (the embedded servers')."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmd:
            found.append(cmd)
    return found


@pytest.mark.parametrize("moment", ["starting", "running"])
def test_a_terminated_benchmark_stops_its_servers(tmp_path, moment):
    """SIGTERM (a CI timeout, `kill`) ends it like Ctrl-C: one line, and no server left running, whether
    it came while the servers started or while a run was under way."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "bench.scheduling", "--quick", "--only", "scale"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def there() -> bool:
        if moment == "starting":
            return any("nats-server" in c for c in _servers_under(tmp_path))
        return any(tmp_path.glob("yf-sched-bench-*/repo-*/.git"))   # a run's repository: every server up

    try:
        deadline = time.monotonic() + 60
        while not there():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else moment
            time.sleep(0.02)
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.strip().splitlines()[-1].endswith("interrupted") and "Traceback" not in err
    assert _servers_under(tmp_path) == []
