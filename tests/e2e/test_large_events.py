"""An agent whose summary is far over the NATS max payload: its AgentFinished (and the dependent's
TaskReady that carries the summary on) are cut to fit with a marker, and the run completes,
instead of a MaxPayloadError failing the attempt's every delivery."""

from __future__ import annotations

import pytest

from shared import events as ev
from shared.commands import start_run
from tests.support.fake_anthropic import tool, turn
from tests.support.system import config, events_of, running_system, wait_for_end, write_transcripts

pytestmark = pytest.mark.e2e

PLAN = {"name": "big", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "big", "title": "Big"}, {"id": "after", "title": "After", "depends_on": ["big"]}]}]}


async def test_a_huge_agent_summary_is_cut_to_fit_and_the_run_completes(nats_server, database_url, unique,
                                                                       git_repo, tmp_path):
    huge = "the agent said a great deal. " * 100_000  # ~2.9 MB
    transcripts = write_transcripts(tmp_path / "t", {
        "big": [turn(tool("write_file", path="big.txt", content="big\n")), turn(tool("finish", summary=huge))],
        "after": [turn(tool("write_file", path="after.txt", content="after\n")), turn(tool("finish", summary="ok"))]})
    cfg = config(parallel={"strategy": "by_task"}, agent={"provider": "replay", "transcripts": str(transcripts)})
    async with running_system(nats_server.url, database_url, unique, cfg) as (system, bus):
        started = await start_run(bus, PLAN, git_repo, cfg)
        end = await wait_for_end(bus, started.run_id, timeout=120)
        events = await events_of(bus, started.run_id)
        limit = bus.max_payload
    assert isinstance(end, ev.RunCompleted), end
    [finished] = [e for e in events if isinstance(e, ev.AgentFinished) and e.task_id == "big"]
    assert finished.summary.startswith("the agent said a great deal.")
    assert "bytes cut: the event was over the server's max payload of" in finished.summary
    assert len(ev.encode(finished)) < limit
    [ready] = [e for e in events if isinstance(e, ev.TaskReady) and e.task_id == "after"]
    assert ready.dependency_summaries[0].task_id == "big"
    assert not [e for e in events if isinstance(e, ev.DeliveryFailed)]
