"""The learner on a real JetStream log: one learning per attempt, whatever the redeliveries."""

from __future__ import annotations

import pytest

from shared import events as ev
from shared.bus import Delivery
from shared.config import parse_config
from services.learner.service import Learner

pytestmark = pytest.mark.integration


def finished(attempt: int = 1) -> ev.AgentFinished:
    return ev.AgentFinished(project_id="p", aggregate_id="r-t", run_id="r", task_id="t", attempt=attempt,
                            outcome="success", summary="wrote the parser with a table of tokens")


async def kinds(bus) -> list[str]:
    return [d.event.type async for d in bus.read() if d.event.aggregate == "expertise"]


async def test_a_learning_already_in_the_log_is_not_extracted_again(bus):
    learner = Learner(bus, parse_config({}))
    await learner.handle(Delivery(finished(), 1, "", 1))
    assert await kinds(bus) == ["LearningExtracted", "ExpertiseUpdated"]
    # the same attempt delivered again long after (past the de-duplication window): the log answers
    again = finished()
    await learner.handle(Delivery(again, 2, "", 2))
    assert await kinds(bus) == ["LearningExtracted", "ExpertiseUpdated"]
    # a learning recorded by an earlier learner under another message id counts as well
    record = ev.LearningExtracted(project_id="p", aggregate_id="general", run_id="r", task_id="t", attempt=2,
                                  learnings=["x"])
    await bus.publish(record, msg_id="written-long-ago")
    await learner.handle(Delivery(finished(attempt=2), 3, "", 1))
    extracted = [d.event async for d in bus.read() if isinstance(d.event, ev.LearningExtracted)]
    assert [(x.task_id, x.attempt) for x in extracted] == [("t", 1), ("t", 2)]
