"""Tools confined to a worktree, run against a real folder and real processes."""

import asyncio
import os
import time
from pathlib import Path

import pytest

from services.executor.agent.tools import Sandbox, ToolRefused


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:  # gone (FileNotFoundError), or going while read (ProcessLookupError)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"  # a zombie has exited; only its parent has not reaped it


def sleepers(seconds: str) -> list[int]:
    """Host pids of `sleep <seconds>` processes (a command's pids inside its sandbox mean nothing here)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes() == f"sleep\0{seconds}\0".encode():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def wait_dead(seconds: str, within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not [p for p in sleepers(seconds) if alive(p)]:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
def worktree(tmp_path):
    root = tmp_path / "wt"
    root.mkdir()
    (root / ".git").write_text("gitdir: /somewhere/else\n")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n")
    (tmp_path / "outside.txt").write_text("secret outside\n")
    return root


@pytest.fixture
def sandbox(worktree):
    return Sandbox(worktree, command_timeout_s=10, output_cap=2000,
                   env={"YOKEFLOW_PORT_BASE": "41000"})


@pytest.mark.parametrize("path", ["../outside.txt", "src/../../outside.txt", "..", "/etc/passwd"])
async def test_paths_leaving_the_worktree_are_refused(sandbox, path):
    with pytest.raises(ToolRefused):
        sandbox.resolve(path)
    outcome = await sandbox.run("read_file", {"path": path})
    assert outcome.is_error and outcome.text.startswith("refused:")
    assert "secret outside" not in outcome.text


async def test_symlink_escapes_are_refused_but_links_inside_work(sandbox, worktree):
    (worktree / "escape").symlink_to(worktree.parent / "outside.txt")
    (worktree / "escape_dir").symlink_to(worktree.parent)
    (worktree / "inner").symlink_to(worktree / "src" / "app.py")
    for path in ("escape", "escape_dir/outside.txt"):
        outcome = await sandbox.run("read_file", {"path": path})
        assert outcome.is_error and "outside the worktree" in outcome.text
    written = await sandbox.run("write_file", {"path": "escape_dir/planted.txt", "content": "x"})
    assert written.is_error and not (worktree.parent / "planted.txt").exists()
    assert "return a + b" in (await sandbox.run("read_file", {"path": "inner"})).text
    listing = (await sandbox.run("list_files", {})).text
    assert "escape\n" not in listing + "\n" and "inner" in listing
    assert "secret outside" not in (await sandbox.run("grep", {"pattern": "secret"})).text


async def test_absolute_path_inside_the_worktree_is_allowed(sandbox, worktree):
    outcome = await sandbox.run("read_file", {"path": str(worktree / "src" / "app.py")})
    assert not outcome.is_error and "def add" in outcome.text


async def test_git_internals_are_off_limits(sandbox):
    for tool, tool_input in (("read_file", {"path": ".git"}), ("write_file", {"path": ".git/config", "content": "x"})):
        outcome = await sandbox.run(tool, tool_input)
        assert outcome.is_error and ".git" in outcome.text
    assert ".git" not in (await sandbox.run("list_files", {"pattern": "**/*"})).text


async def test_read_write_edit_list_and_grep(sandbox, worktree):
    assert not (await sandbox.run("write_file", {"path": "docs/new/notes.md", "content": "one\ntwo\nthree\n"})).is_error
    assert (worktree / "docs/new/notes.md").read_text() == "one\ntwo\nthree\n"
    page = await sandbox.run("read_file", {"path": "docs/new/notes.md", "offset": 2, "limit": 1})
    assert page.text.startswith("     2\ttwo") and "offset=3" in page.text

    ambiguous = await sandbox.run("edit_file", {"path": "src/app.py", "old_text": "return a", "new_text": "return b"})
    assert ambiguous.is_error and "2 times" in ambiguous.text
    absent = await sandbox.run("edit_file", {"path": "src/app.py", "old_text": "return c", "new_text": "x"})
    assert absent.is_error and "not found" in absent.text
    edited = await sandbox.run("edit_file", {"path": "src/app.py", "old_text": "return a + b", "new_text": "return b + a"})
    assert not edited.is_error and "return b + a" in (worktree / "src/app.py").read_text()
    every = await sandbox.run("edit_file", {"path": "src/app.py", "old_text": "(a, b)", "new_text": "(x, y)",
                                            "replace_all": True})
    assert "replaced 2" in every.text and (worktree / "src/app.py").read_text().count("(x, y)") == 2

    assert (await sandbox.run("list_files", {"pattern": "**/*.md"})).text == "docs/new/notes.md"
    assert (await sandbox.run("list_files", {"pattern": "*.py"})).text == "src/app.py"
    grep = await sandbox.run("grep", {"pattern": r"def \w+", "glob": "*.py"})
    assert grep.text.splitlines() == ["src/app.py:1:def add(x, y):", "src/app.py:5:def sub(x, y):"]
    assert (await sandbox.run("grep", {"pattern": "("})).is_error
    bad = await sandbox.run("write_file", {"path": "a.txt"})
    assert bad.is_error and "content" in bad.text


async def test_commands_run_in_the_worktree_without_secrets(sandbox, worktree, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-leak")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-leak")
    monkeypatch.setenv("YOKEFLOW_DATABASE_URL", "postgres://leak")
    monkeypatch.setenv("DB_PASSWORD", "leak")
    monkeypatch.setenv("HARMLESS_SETTING", "kept")
    monkeypatch.setenv("NOT_ALLOWED", "dropped")
    box = Sandbox(worktree, env={"YOKEFLOW_PORT_BASE": "41000"}, env_allow=["HARMLESS_SETTING"])
    outcome = await box.run("run_command", {"command": "pwd; env; tr '\\0' '\\n' < /proc/1/environ"})
    assert outcome.text.splitlines()[1] == str(worktree.resolve())
    assert "leak" not in outcome.text and "dropped" not in outcome.text
    assert "HARMLESS_SETTING=kept" in outcome.text and "YOKEFLOW_PORT_BASE=41000" in outcome.text
    failed = await box.run("run_command", {"command": "echo oops >&2; exit 3"})
    assert failed.is_error and failed.text.startswith("exit code 3") and "oops" in failed.text


async def test_command_output_is_capped_keeping_head_and_tail(sandbox):
    result = await sandbox.run_command("echo START; yes filler | head -c 100000; echo; echo END")
    assert result.exit_code == 0
    assert result.output.startswith("START") and result.output.rstrip().endswith("END")
    assert "bytes of output omitted" in result.output and len(result.output) < 2200


async def test_a_hanging_command_is_killed_with_its_children_at_the_timeout(sandbox, worktree):
    result = await sandbox.run_command("sleep 300.101 & sleep 300", timeout_s=0.5)
    assert result.timed_out and not result.passed
    assert await wait_dead("300.101"), "a background child survived the timeout"
    outcome = await sandbox.run("run_command", {"command": "sleep 300", "timeout_s": 0.3})
    assert outcome.is_error and "timed out after 0.3 s" in outcome.text


async def test_background_children_end_with_their_command_which_does_not_wait_for_them(sandbox, worktree):
    result = await sandbox.run_command("sleep 300.102 & echo started", timeout_s=30)
    assert result.passed and not result.timed_out and result.output == "started\n"
    assert await wait_dead("300.102")


async def test_cancel_kills_a_running_command_and_refuses_new_ones(sandbox, worktree):
    running = asyncio.create_task(sandbox.run_command("sleep 300.103 & sleep 300"))
    for _ in range(250):  # bounded: the child shows up within 5 s
        if sleepers("300.103"):
            break
        await asyncio.sleep(0.02)
    assert sleepers("300.103"), "the command's child should be running"
    sandbox.cancel()
    result = await asyncio.wait_for(running, 2)
    assert result.cancelled and not result.passed
    assert await wait_dead("300.103")
    assert (await sandbox.run_command("echo late")).cancelled
