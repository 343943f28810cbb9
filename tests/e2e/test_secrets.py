"""A hostile run: its setup command and checks print the environment and fail, and the service
environment holds secrets. Neither the event stream, the agent logs nor the database keeps any."""

from __future__ import annotations

import subprocess

import pytest

from shared import events as ev
from shared.commands import start_run
from shared.infra import _pg_bin
from tests.conftest import require_tool
from tests.support.system import config, events_of, running_system, wait_for_end

pytestmark = pytest.mark.e2e

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-api03-Fake0Secret0For0The0Scrubber0Test",
    "GITHUB_PAT": "github_pat_11FAKE0SECRET0VALUE0FOR0TESTS",
    "PGPASSWORD": "pg-fake-password-4711",
    "DEPLOY_TOKEN": "deploy-fake-token-0815",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY",
    "SERVICE_DATABASE_URL": "postgresql://app:url-fake-password-42@db.internal:5432/app",
}
URL_PASSWORD = "url-fake-password-42"


async def _stored_messages(bus) -> list[bytes]:
    """Every message of the event stream and the agent log stream, headers included, as stored."""
    out = []
    for stream in (bus.stream, bus.log_stream):
        last = (await bus.js.stream_info(stream)).state.last_seq
        for seq in range(1, last + 1):
            msg = await bus.js.get_msg(stream, seq)
            out.append(msg.data or b"")
            out.append(repr(msg.headers or {}).encode())
    return out


async def test_no_secret_of_the_service_environment_is_stored(nats_server, database_url, unique, git_repo,
                                                              monkeypatch):
    require_tool("bwrap")
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    # The project even lets its commands see the secrets: the scrubber is the last line and must hold alone.
    setup = ('env; echo "key=$ANTHROPIC_API_KEY pat=$GITHUB_PAT"; '
             'case "$YOKEFLOW_WORKTREE" in *setupfails*) exit 3;; esac')
    check = 'env; echo "Authorization: Bearer $DEPLOY_TOKEN"; printenv SERVICE_DATABASE_URL; exit 1'
    plan = {"name": "hostile", "epics": [{"id": "E", "name": "E", "tasks": [
        {"id": "setupfails", "title": "Setup fails"},
        {"id": "checkfails", "title": "Check fails", "tests": [check]}]}]}
    cfg = config(parallel={"strategy": "by_task", "max_attempts": 1, "setup_command": setup},
                 agent={"provider": "sleep:10", "max_fix_rounds": 0, "env_allow": list(SECRETS)})
    async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
        started = await start_run(bus, plan, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id)
        events = await events_of(bus, started.run_id)
        await system.database.wait_for("ledger", await bus.last_seq())
        stored = await _stored_messages(bus)

    assert isinstance(end, ev.RunFailed), end
    finished = {e.task_id: e for e in events if isinstance(e, ev.AgentFinished)}
    # The commands did print their environment (so the secrets were there to leak) ...
    assert "exit 3" in finished["setupfails"].error and "[REDACTED]" in finished["setupfails"].error
    assert "Bearer [REDACTED]" in finished["checkfails"].checks[0].output
    # ... and nothing stored keeps a secret: every message of both streams, and a dump of the database.
    dump = subprocess.run([str(_pg_bin() / "pg_dump"), "--data-only", f"--dbname={database_url}"],
                          capture_output=True, text=True, check=True).stdout
    assert "setupfails" in dump and "checkfails" in dump  # the dump does hold the run
    blob = b"\n".join(stored).decode("utf-8", "replace") + dump
    for value in [*SECRETS.values(), URL_PASSWORD]:
        assert value not in blob, f"a secret was stored: {value[:12]}…"
