"""Nothing stored on the bus keeps a secret of the publishing process's environment."""

from __future__ import annotations

import json

import pytest

from shared.events import AgentFinished, encode, task_aggregate_id
from shared.scrub import REDACTED

pytestmark = pytest.mark.integration


async def test_events_and_agent_logs_are_scrubbed_before_they_are_stored(bus, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake-key-from-the-service-env")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret-db-pass@db/app")
    leak = "ANTHROPIC_API_KEY=sk-ant-fake-key-from-the-service-env url=postgresql://app:s3cret-db-pass@db/app"
    published = await bus.publish(AgentFinished(
        project_id="p", aggregate_id=task_aggregate_id("r", "1"), run_id="r", task_id="1", outcome="failure",
        error=leak, checks=[{"command": "env", "output": leak}]))
    assert "sk-ant-fake" not in published.event.error  # the caller sees what was stored

    [stored] = [d async for d in bus.read()]
    assert REDACTED in stored.event.error and "sk-ant-fake" not in stored.event.error
    assert "s3cret-db-pass" not in encode(stored.event).decode()

    sub = await bus.nc.subscribe(f"{bus.prefix}.log.>")
    await bus.log("p", "r-1", "tool", {"output": leak})
    msg = await sub.next_msg(timeout=5)
    assert "sk-ant-fake" not in msg.data.decode() and "s3cret-db-pass" not in msg.data.decode()
    assert json.loads(msg.data)["output"].startswith("ANTHROPIC_API_KEY=")
