"""Every failure ends somewhere: each of these once hung a run or printed a traceback. Now each
is one clear line with a non-zero exit, or a run that ends with its reason."""

from __future__ import annotations

import json
import subprocess

import pytest

from shared import events as ev
from shared.commands import CommandError, start_run
from tests.conftest import git
from tests.e2e.test_cli import one_clear_line, yokeflow
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.e2e

ONE = {"name": "one", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "t", "title": "T"}]}]}


def write_plan(folder, plan: dict, name: str = "plan.json"):
    path = folder / name
    path.write_text(json.dumps(plan))
    return path


def new_repo(path, branch: str, *, commit: bool = True):
    path.mkdir()
    git(path, "init", "-q", "-b", branch)
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "Test")
    if commit:
        (path / "README.md").write_text("# r\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "initial")
    return path


def test_a_repository_without_commits_is_refused_in_one_line(tmp_path):
    repo = new_repo(tmp_path / "empty", "main", commit=False)
    result = yokeflow("run", str(write_plan(tmp_path, ONE)), "--repo", str(repo), cwd=tmp_path, timeout=60)
    assert "has no commits yet" in one_clear_line(result) and result.returncode == 2


def test_an_unknown_branch_and_a_dirty_checkout_are_refused_in_one_line(tmp_path):
    repo = new_repo(tmp_path / "r", "main")
    plan = str(write_plan(tmp_path, ONE))
    unknown = yokeflow("run", plan, "--repo", str(repo), "--branch", "develop", cwd=tmp_path, timeout=60)
    assert "target branch 'develop' does not exist" in one_clear_line(unknown)
    (repo / "README.md").write_text("my own edit, not committed\n")
    dirty = yokeflow("run", plan, "--repo", str(repo), cwd=tmp_path, timeout=60)
    line = one_clear_line(dirty)
    assert "uncommitted changes on main" in line and "--allow-dirty" in line and dirty.returncode == 2


def test_an_unparsable_database_url_is_one_line(tmp_path):
    result = yokeflow("status", cwd=tmp_path, env={"YOKEFLOW_DATABASE_URL": "postgresql://u@host:notaport/db"},
                      timeout=60)
    assert "YOKEFLOW_DATABASE_URL is not a valid URL" in one_clear_line(result)


@pytest.mark.parametrize("shape", ["50,000 tasks", "a 10 MB description"])
def test_a_plan_over_the_nats_max_payload_is_refused_by_plan_check(tmp_path, shape):
    if shape == "50,000 tasks":
        tasks = [{"id": f"t{i}", "title": f"Task {i}"} for i in range(50_000)]
    else:
        tasks = [{"id": "t", "title": "T", "description": "x" * 10_000_000}]
    plan = write_plan(tmp_path, {"name": "big", "epics": [{"id": "E", "name": "E", "tasks": tasks}]})
    result = yokeflow("plan", "check", str(plan), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "over the NATS max payload of 1,048,576 bytes" in result.stdout


async def test_a_plan_over_the_servers_max_payload_is_refused_by_start_run(bus, git_repo):
    tasks = [{"id": "t", "title": "T", "description": "x" * (bus.max_payload + 1)}]
    with pytest.raises(CommandError, match="over the NATS max payload"):
        await start_run(bus, {"name": "big", "epics": [{"id": "E", "name": "E", "tasks": tasks}]}, git_repo,
                        config())
    assert [d async for d in bus.read()] == []  # nothing appended


@pytest.mark.parametrize("branch", ["master", "trunk"])
async def test_the_target_branch_is_read_from_the_repository(nats_server, database_url, unique, tmp_path, branch):
    repo = new_repo(tmp_path / "r", branch)
    cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10"})
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, ONE, repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
    errors = [e.error for e in events if isinstance(e, ev.AgentFinished)]
    assert started.target_branch == branch and isinstance(end, ev.RunCompleted), (end, errors)
    assert "Merge task t" in git(repo, "log", "--format=%s", branch)


async def _the_failed_attempt(nats_server, database_url, unique, git_repo, cfg) -> tuple[ev.AgentFinished, list]:
    """Run ONE, which fails: its one attempt's AgentFinished and the run's events."""
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, ONE, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id, timeout=60)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunFailed), end
    [finished] = [e for e in events if isinstance(e, ev.AgentFinished)]
    assert finished.outcome == "failure"
    return finished, events


async def test_a_failing_setup_command_fails_the_attempt_with_its_output(nats_server, database_url, unique,
                                                                          git_repo):
    cfg = config(parallel={"strategy": "by_task", "max_attempts": 1,
                           "setup_command": "echo the-setup-said-no; exit 3"}, agent={"provider": "sleep:10"})
    finished, _ = await _the_failed_attempt(nats_server, database_url, unique, git_repo, cfg)
    assert "the-setup-said-no" in finished.error and "exit 3" in finished.error


async def test_a_provider_that_cannot_start_fails_the_attempt_with_its_reason(nats_server, database_url, unique,
                                                                             git_repo):
    """(made in the same turn as the worktree, before the agent's slot)"""
    cfg = config(parallel={"strategy": "by_task", "max_attempts": 1}, agent={"provider": "replay"})
    finished, events = await _the_failed_attempt(nats_server, database_url, unique, git_repo, cfg)
    assert "ProviderUnavailable" in finished.error
    assert "the replay provider needs a transcript" in finished.error
    assert not any(isinstance(e, ev.AgentStarted) for e in events)  # refused before any slot was given


async def test_cjk_only_ids_and_titles_get_distinct_branches_and_all_reach_main(nats_server, database_url, unique,
                                                                               git_repo):
    plan = {"name": "漢字", "epics": [{"id": "甲", "name": "甲", "tasks": [
        {"id": "一", "title": "日本語"}, {"id": "二", "title": "中文"}, {"id": "三", "title": "한국어"}]}]}
    cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10"})
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        started = await start_run(bus, plan, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id, timeout=90)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    merged = {e.task_id: e.branch for e in events if isinstance(e, ev.BranchMerged)}
    assert set(merged) == {"一", "二", "三"} and len(set(merged.values())) == 3
    log = subprocess.run(["git", "log", "--format=%s", "main"], cwd=git_repo, capture_output=True, text=True).stdout
    assert sum(line.startswith("Merge task") for line in log.splitlines()) == 3


def test_a_second_run_on_a_state_folder_in_use_keeps_the_servers_up_until_it_ends(tmp_path):
    import os
    import sys
    import time

    first_repo, second_repo = new_repo(tmp_path / "first", "main"), new_repo(tmp_path / "second", "main")
    quick = write_plan(tmp_path, {"name": "q", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "q", "title": "Quick"}]}]}, "quick.json")
    slow = write_plan(tmp_path, {"name": "s", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "s1", "title": "Slow one"}, {"id": "s2", "title": "Slow two", "depends_on": ["s1"]}]}]}, "slow.json")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("YOKEFLOW_")}

    def run(plan, repo, provider):
        return subprocess.Popen([sys.executable, "-m", "yokeflow", "run", str(plan), "--repo", str(repo),
                                 "--provider", provider, "--strategy", "by_task"], cwd=tmp_path, env=clean,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    owner = run(quick, first_repo, "sleep:4000")
    for _ in range(600):  # the owner's servers are up once it records their endpoint
        if (tmp_path / ".yokeflow" / "endpoint.json").exists() or owner.poll() is not None:
            break
        time.sleep(0.1)
    client = run(slow, second_repo, "sleep:3000")
    owner_out, owner_err = owner.communicate(timeout=240)
    client_out, client_err = client.communicate(timeout=240)
    assert owner.returncode == 0, owner_err[-2000:]
    assert client.returncode == 0, client_err[-2000:]  # its run ended although the owner's ended first
    assert "keeping the servers" in owner_err and "other command(s) using them" in owner_err
    assert "2 task(s) merged" in client_out and "Connect call failed" not in client_err


async def test_with_allow_dirty_a_dirty_checkout_stays_put_and_the_run_says_so(nats_server, database_url, unique,
                                                                               git_repo):
    from yokeflow.progress import describe

    (git_repo / "README.md").write_text("my own edit, not committed\n")
    cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10"})
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        with pytest.raises(CommandError, match="uncommitted changes on main"):
            await start_run(bus, ONE, git_repo, cfg)
        started = await start_run(bus, ONE, git_repo, cfg, allow_dirty=True)
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunCompleted), end
    [merged] = [e for e in events if isinstance(e, ev.BranchMerged)]
    assert merged.warnings and "has local changes" in merged.warnings[0]
    assert "warning:" in describe(merged)  # what `yokeflow run` prints
    assert (git_repo / "README.md").read_text() == "my own edit, not committed\n"  # the person's file is kept


async def test_a_run_with_the_sandbox_off_says_so_on_the_screen(nats_server, database_url, unique, git_repo, tmp_path):
    import asyncio

    from tests.support.processes import service_env

    env = {**service_env(nats_server.url, database_url, unique), "YOKEFLOW_AGENT__SANDBOX": "off",
           "YOKEFLOW_AGENT__PROVIDER": "sleep:10"}
    cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "sleep:10", "sandbox": "off"})
    async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
        result = await asyncio.to_thread(yokeflow, "run", str(write_plan(tmp_path, ONE)), "--repo", str(git_repo),
                                         "--detach", cwd=tmp_path, env=env, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        run_id = result.stdout.strip()
        end = await wait_for_end(bus, run_id)
    assert isinstance(end, ev.RunCompleted), end
    warning = [line for line in result.stderr.splitlines() if line.startswith(f"WARNING: run {run_id}: ")]
    assert len(warning) == 1 and "commands run UNCONFINED" in warning[0]
