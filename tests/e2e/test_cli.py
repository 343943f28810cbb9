"""The CLI as a person runs it: a real process, real embedded servers, a real repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def yokeflow(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("YOKEFLOW_")}
    return subprocess.run([sys.executable, "-m", "yokeflow", *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def one_clear_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _embedded_servers_in(folder: Path) -> list[int]:
    """Pids of the NATS and PostgreSQL servers running in `folder` (embedded servers run in the
    command's folder, PostgreSQL in its data folder under it)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if exe in ("nats-server", "postgres") and (cwd == folder or folder in cwd.parents):
            found.append(int(pid))
    return found


def test_a_command_terminated_while_its_servers_start_leaves_none_running(tmp_path):
    """SIGTERM as the embedded servers start (NATS up, PostgreSQL being made on another thread)
    once ended the command and left both servers running for good."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("YOKEFLOW_")}
    proc = subprocess.Popen([sys.executable, "-m", "yokeflow", "status", "--json"], cwd=tmp_path, env=clean,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _embedded_servers_in(tmp_path):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
        proc.terminate()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert _embedded_servers_in(tmp_path) == []


def test_bad_input_gives_one_clear_line_and_a_non_zero_exit(tmp_path, git_repo):
    missing = yokeflow("run", "nope.yaml", "--repo", str(git_repo), cwd=tmp_path)
    assert "nope.yaml does not exist" in one_clear_line(missing)

    (tmp_path / "bad.yaml").write_text("name: x\nepics: [\n  - id: 1\n")
    malformed = yokeflow("run", "bad.yaml", "--repo", str(git_repo), cwd=tmp_path)
    assert "bad.yaml" in one_clear_line(malformed) and malformed.returncode == 2

    env = {"YOKEFLOW_NATS_URL": "nats://127.0.0.1:1", "YOKEFLOW_DATABASE_URL": "postgresql://u@127.0.0.1:1/x"}
    plan = ROOT / "yokeflow/examples/todo/plan.yaml"
    unreachable = yokeflow("run", str(plan), "--repo", str(git_repo), cwd=tmp_path, env=env, timeout=60)
    assert "cannot reach NATS at nats://127.0.0.1:1" in one_clear_line(unreachable)
    tail = yokeflow("events", "tail", cwd=tmp_path, env=env, timeout=60)
    assert "cannot reach NATS" in one_clear_line(tail)

    (tmp_path / ".yokeflow.yaml").write_text("parallel:\n  max_concurrency: lots\n")
    bad_config = yokeflow("status", cwd=tmp_path)
    assert "parallel.max_concurrency" in one_clear_line(bad_config)


def test_demo_builds_the_example_on_main_and_status_shows_every_task_merged(tmp_path):
    demo = yokeflow("demo", cwd=tmp_path, timeout=600)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "REPLAYED OFFLINE" in demo.stdout
    repo = tmp_path / "yokeflow-demo-todo"
    # main holds the work, and the program's own tests pass on it (the demo ran them; run them again)
    tests = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."], cwd=repo,
                           capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stderr[-2000:]
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True,
                          text=True).stdout.strip() == ""

    status = yokeflow("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    [run] = json.loads(status.stdout)["runs"]
    assert json.loads(status.stdout)["projection_lag_ms"] >= 0
    assert run["status"] == "completed" and len(run["tasks"]) >= 8
    for task in run["tasks"]:
        assert task["status"] == "done" and task["merged"] is True, task
        assert task["attempt"] >= 1 and task["branch"] and len(task["merge_commit"]) == 40
    log = subprocess.run(["git", "log", "--format=%H", "main"], cwd=repo, capture_output=True, text=True).stdout
    assert {t["merge_commit"] for t in run["tasks"]} <= set(log.split())

    # `events tail` prints the log readably as it arrives; with --history it starts from the beginning
    clean = {k: v for k, v in os.environ.items() if not k.startswith("YOKEFLOW_")}
    tail = subprocess.Popen([sys.executable, "-m", "yokeflow", "events", "tail", "--history", "--type",
                             "RunCompleted", "--json"], cwd=tmp_path, env=clean, stdout=subprocess.PIPE, text=True)
    killer = threading.Timer(120, tail.kill)
    killer.start()
    try:
        line = tail.stdout.readline()
    finally:
        killer.cancel()
        tail.terminate()
        tail.wait(30)
    completed = json.loads(line)
    assert completed["type"] == "RunCompleted" and completed["run_id"] == run["id"]
    assert tail.returncode in (0, 130)  # SIGTERM ends it like Ctrl-C, servers stopped cleanly
