"""Shared fixtures: one real NATS and one real PostgreSQL per test session (embedded,
on free ports), and per-test isolation by unique stream, subject prefix and database."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from shared.infra import EmbeddedNats, EmbeddedPostgres

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a tool a test needs: a skip on a developer machine, a failure in CI."""
    path = shutil.which(name)
    if path:
        return path
    if IN_CI:
        pytest.fail(f"{name} is required in CI but was not found on PATH")
    pytest.skip(f"{name} not installed")


@pytest.fixture(scope="session")
def session_dir():
    d = Path(tempfile.mkdtemp(prefix="yf-tests-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_server(session_dir):
    # Every test's log stream reserves its 1 GiB limit: hundreds of them outgrow the default
    # reservation ceiling (75% of the free disk) though they hold a few KiB each.
    server = EmbeddedNats(session_dir / "nats", max_file_store=1 << 50).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_server(session_dir):
    server = EmbeddedPostgres(session_dir / "pgdata").start()
    yield server
    server.stop()


@pytest.fixture
def unique(request):
    value = uuid.uuid4().hex[:10]
    yield value
    if "nats_server" in request.fixturenames:
        _drop_streams(request.getfixturevalue("nats_server"), value)


def _drop_streams(server, unique: str) -> None:
    """Give the test's streams back: JetStream reserves each log stream's max_bytes, and a session's
    server would refuse new streams ("insufficient storage resources") after a few dozen tests."""
    import asyncio
    import threading

    from shared.bus import Bus

    async def drop() -> None:
        bus = await Bus.connect(server.url, identity="admin", prefix=f"t{unique}", stream=f"EV_{unique}",
                                log_stream=f"LOG_{unique}")  # only the operator's identity may delete a stream
        try:
            for name in (f"EV_{unique}", f"LOG_{unique}"):
                try:
                    await bus.js.delete_stream(name)
                except Exception:  # already gone, or never made
                    pass
        finally:
            await bus.close()

    worker = threading.Thread(target=lambda: asyncio.run(drop()), daemon=True)
    worker.start()
    worker.join(15)


@pytest.fixture
async def bus(nats_server, unique):
    from shared.bus import Bus

    # The tests' own bus may publish any event (as an operator's tools may); services connect as themselves.
    b = await Bus.connect(nats_server.url, identity="admin", prefix=f"t{unique}", stream=f"EV_{unique}",
                          log_stream=f"LOG_{unique}")
    yield b
    await b.close()


@pytest.fixture
async def database_url(pg_server, unique):
    import asyncpg

    name = f"db_{unique}"
    conn = await asyncpg.connect(pg_server.url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return pg_server.url.rsplit("/", 1)[0] + f"/{name}"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path) -> Path:
    """A fresh repository with one commit on main."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "Test")
    (repo / "README.md").write_text("# test\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return repo
