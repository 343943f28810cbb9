"""Commands in the bubblewrap jail (shared/sandbox.py): real bwrap, real processes, real sockets."""

import os
import socket
import threading
from pathlib import Path

import pytest

from services.executor.agent.tools import Sandbox
from shared.config import SandboxSettings
from shared.gitops import WorktreeManager
from shared.sandbox import OFF_WARNING, SANDBOX_USER, warn_if_off
from tests.conftest import git, require_tool


@pytest.fixture(autouse=True)
def bwrap():
    return require_tool("bwrap")


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A worktree with a secret file beside it and secrets in YokeFlow's environment."""
    root = tmp_path / "wt"
    root.mkdir()
    (root / "app.py").write_text("print('hi')\n")
    (tmp_path / "beside.txt").write_text("TOP SECRET beside the repository\n")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-sandbox-leak")
    monkeypatch.setenv("GITHUB_PAT", "ghp_sandbox_leak")
    return root


def box(root, **settings) -> Sandbox:
    return Sandbox(root, command_timeout_s=20, output_cap=20_000, env={"YOKEFLOW_PORT_BASE": "41000"},
                   settings=SandboxSettings(**settings))


def outside_files(tmp_path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(tmp_path.rglob("*"))
            if p.is_file() and "wt" not in p.relative_to(tmp_path).parts[:1]}


async def test_writes_outside_the_worktree_land_nowhere(place, tmp_path):
    before = outside_files(tmp_path)
    sb = box(place)
    for command in ("echo x > ../planted.txt", f"echo x > {tmp_path}/planted.txt", "echo x > /planted.txt",
                    f"ln -s {tmp_path} out && echo x > out/planted.txt", "ln -s .. up && echo x > up/planted.txt",
                    f"echo x >> {tmp_path}/beside.txt", "echo x > /usr/planted.txt", "echo x > /etc/planted"):
        await sb.run_command(command)
    assert outside_files(tmp_path) == before
    assert not Path("/planted.txt").exists() and not Path("/usr/planted.txt").exists()
    # inside, work goes on as usual
    result = await sb.run_command("echo made > made.txt && python -c 'print(open(\"made.txt\").read())'")
    assert result.passed and "made" in result.output and (place / "made.txt").read_text() == "made\n"


async def test_nothing_of_the_machine_is_visible_but_the_system(place, tmp_path):
    sb = box(place)
    result = await sb.run_command(f"cat {tmp_path}/beside.txt; ls {tmp_path} | tr '\\n' ' ' | sed 's/^/LISTED: /'; "
                                  f"ls /root /home /work; cat /etc/shadow; echo done")
    assert "TOP SECRET" not in result.output and "/etc/shadow: Permission denied" in result.output
    assert "LISTED: wt " in result.output and "beside" not in result.output.split("LISTED:")[1]
    assert "done" in result.output


async def test_no_secret_reaches_the_command(place):
    sb = box(place)
    result = await sb.run_command(
        "env; tr '\\0' '\\n' < /proc/$PPID/environ; tr '\\0' '\\n' < /proc/1/environ; "
        "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ; done")
    assert "leak" not in result.output
    assert "YOKEFLOW_PORT_BASE=41000" in result.output
    # a new PID namespace: only bwrap, the shell and ps; none of YokeFlow's processes
    listed = (await sb.run_command("ps -e -o pid=,comm=")).output.split("\n")
    assert len([line for line in listed if line.strip()]) <= 4, listed


async def test_commands_run_as_an_unprivileged_user_and_yokeflow_keeps_the_files(place):
    result = await box(place).run_command("id -un; echo new > new.txt; mkdir -p pkg && echo x > pkg/m.py")
    assert result.passed
    if os.geteuid() == 0:
        assert result.output.split()[0] == SANDBOX_USER
    assert (place / "new.txt").read_text() == "new\n" and (place / "pkg" / "m.py").exists()


async def test_network_is_off_unless_enabled(place):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []

    def serve():
        server.settimeout(20)
        try:
            while True:
                conn, _ = server.accept()
                accepted.append(conn.recv(100))
                conn.close()
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    probe = (f"python -c \"import socket; s=socket.create_connection(('127.0.0.1', {port}), timeout=3); "
             f"s.sendall(b'hello'); print('CONNECTED')\"")
    try:
        closed = await box(place).run_command(probe)
        assert not closed.passed and "CONNECTED" not in closed.output
        assert accepted == []
        opened = await box(place, network=True).run_command(probe)
        assert opened.passed and "CONNECTED" in opened.output
    finally:
        server.close()


async def test_a_fork_bomb_is_bounded_and_the_machine_goes_on(place):
    # counted with shell builtins only: the bomb leaves no room to fork `ps`
    result = await box(place, max_processes=40).run_command(
        ":(){ :|:& };:; sleep 1; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo COUNT $n", timeout_s=6)
    counts = [int(line.split()[1]) for line in result.output.splitlines() if line.startswith("COUNT ")]
    assert counts and counts[0] <= 45, result.output[-500:]
    after = await box(place).run_command("echo fine")
    assert after.passed and after.output == "fine\n"


async def test_huge_writes_stop_at_the_file_size_limit(place):
    result = await box(place, max_file_mb=1).run_command("head -c 10G /dev/zero > big.bin; echo exit=$?")
    assert (place / "big.bin").stat().st_size <= 1024 * 1024
    assert "exit=0" not in result.output


async def test_memory_is_limited(place):
    result = await box(place, memory_mb=256).run_command(
        "python -c 'x = bytearray(2 * 1024 ** 3)' 2>&1 | tail -1")
    assert "MemoryError" in result.output


async def test_git_reads_the_repository_but_cannot_change_it(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("g", "task/g")
    gitdir_before = (wt.path / ".git").read_text()
    sb = Sandbox(wt.path, settings=SandboxSettings())
    result = await sb.run_command("git log --oneline | head -1; git status --short; echo hi > file.txt; "
                                  "git add file.txt; git commit -qm sneaky; echo 'gitdir: /tmp' > .git; "
                                  "rm -f .git; echo x > ../../.git/hooks/pre-commit")
    assert result.output.splitlines()[0], result.output
    assert (wt.path / ".git").read_text() == gitdir_before
    assert not (git_repo / ".git" / "hooks" / "pre-commit").exists()
    assert wm.commit_all(wt, "YokeFlow commits the agent's work")
    assert git(git_repo, "show", "task/g:file.txt") == "hi"
    assert git(git_repo, "log", "-1", "--format=%s", "task/g") == "YokeFlow commits the agent's work"


def test_the_setup_command_runs_in_the_sandbox(git_repo, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-setup-leak")
    wm = WorktreeManager(git_repo, setup_command="env > setup-env.txt; echo x > ../../planted.txt; id -u > uid.txt",
                         sandbox=SandboxSettings())
    wt = wm.acquire("s", "task/s")
    assert "leak" not in (wt.path / "setup-env.txt").read_text()
    assert "YOKEFLOW_PORT_BASE" in (wt.path / "setup-env.txt").read_text()
    assert not (git_repo / "planted.txt").exists()
    if os.geteuid() == 0:
        assert (wt.path / "uid.txt").read_text().strip() != "0"


async def test_off_runs_unconfined_with_a_warning(place, tmp_path):
    settings = SandboxSettings(mode="off")
    assert warn_if_off(settings) == OFF_WARNING and warn_if_off(SandboxSettings()) is None
    result = await Sandbox(place, settings=settings).run_command(f"cat {tmp_path}/beside.txt; env")
    assert "TOP SECRET" in result.output  # unconfined indeed: files outside are reachable
    assert "leak" not in result.output   # but secrets are still scrubbed from its environment
