"""Executors without a shared disk: the merger serves the canonical repository over git smart
HTTP behind a token; two executor processes each clone it into their own scratch folder, work
in worktrees there and push their task branches; the merger merges each task into main once."""

from __future__ import annotations

import subprocess

import pytest

from shared import events as ev
from shared.commands import start_run
from shared.infra import free_port
from tests.support.processes import ServiceProcess, service_env
from tests.support.system import config, endpoint_for, events_of, start_system, wait_for_end

pytestmark = pytest.mark.e2e

TOKEN = "git-endpoint-token-for-tests"
PLAN = {"name": "remote", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "t0", "title": "Task 0", "tests": ["test -d yokeflow-sleep"]},
    {"id": "t1", "title": "Task 1", "tests": ["test -d yokeflow-sleep"]},
    {"id": "t2", "title": "Task 2", "tests": ["test -d yokeflow-sleep"]},
    {"id": "t3", "title": "Task 3", "depends_on": ["t0", "t1"], "tests": ["test -d yokeflow-sleep"]}]}]}


async def test_executors_with_their_own_disks_reach_the_repository_only_over_git_http(
        nats_server, database_url, unique, git_repo, tmp_path):
    endpoint = endpoint_for(nats_server.url, database_url, unique)
    cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2}, agent={"provider": "sleep:300"})
    system = await start_system(endpoint, cfg, services=("ledger", "planner", "learner"))
    port = free_port()
    merger = ServiceProcess("merger", service_env(
        nats_server.url, database_url, unique, YOKEFLOW_GIT_HTTP_PORT=str(port), YOKEFLOW_GIT_HTTP_HOST="127.0.0.1",
        YOKEFLOW_GIT_ROOT=str(git_repo), YOKEFLOW_GIT_TOKEN=TOKEN), tmp_path).start()
    scratch = [tmp_path / "executor-a", tmp_path / "executor-b"]
    executors = [ServiceProcess("executor", service_env(
        nats_server.url, database_url, unique, YOKEFLOW_GIT_REMOTE=f"http://127.0.0.1:{port}",
        YOKEFLOW_GIT_TOKEN=TOKEN, YOKEFLOW_EXECUTOR_SCRATCH=str(s)), tmp_path).start() for s in scratch]
    bus = await endpoint.bus()
    try:
        started = await start_run(bus, PLAN, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id, timeout=180)
        assert isinstance(end, ev.RunCompleted), (end, [p.output()[-2000:] for p in (merger, *executors)])
        events = await events_of(bus, started.run_id)
    finally:
        for p in (merger, *executors):
            p.stop()
        await bus.close()
        await system.stop()
    worktrees = [e for e in events if isinstance(e, ev.WorktreeCreated)]
    assert len(worktrees) == 4
    assert all(any(w.path.startswith(str(s) + "/") for s in scratch) for w in worktrees), [w.path for w in worktrees]
    assert not (git_repo / ".worktrees").exists() or not any((git_repo / ".worktrees").iterdir())
    log = subprocess.run(["git", "log", "--format=%s", "main"], cwd=git_repo, capture_output=True, text=True).stdout
    for task in ("t0", "t1", "t2", "t3"):
        assert [line for line in log.splitlines() if line.startswith(f"task {task}:")] == [f"task {task}: Task {task[1]}"]
    # t3 started from a main that held its dependencies' work, fetched over HTTP
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", "main"], cwd=git_repo, capture_output=True,
                           text=True).stdout.split()
    assert len([f for f in files if f.startswith("yokeflow-sleep/")]) == 4


def test_the_git_endpoint_refuses_a_wrong_token_and_paths_outside_its_root(git_repo, tmp_path):
    import urllib.error
    import urllib.request

    from shared.gitserve import serving

    with serving(git_repo, TOKEN, host="127.0.0.1") as port:
        def status(path: str, password: str) -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}/info/refs?service=git-upload-pack")
            import base64
            request.add_header("Authorization", "Basic " + base64.b64encode(f"x:{password}".encode()).decode())
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status(str(git_repo), TOKEN) == 200
        assert status(str(git_repo), "wrong-token-wrong-token") == 401
        assert status(str(tmp_path), TOKEN) == 404  # the parent of the served root
