"""The lines `yokeflow run` and `events tail` print for a slot given, a candidate, and a slot handed over."""

from __future__ import annotations

from shared import events as ev
from yokeflow.progress import describe


def test_slots_given_and_handed_over_read_as_such():
    task = {"project_id": "p", "aggregate_id": "r-b", "run_id": "r", "task_id": "b", "attempt": 1}
    assert describe(ev.AgentAdmitted(**task)) == "task b given an agent slot (attempt 1)"
    assert describe(ev.AgentAdmitted(**task, candidate=True, rank=3)) == (
        "task b waits for a slot handed over (attempt 1, rank 3)")
    ended = ev.AgentFinished(**{**task, "task_id": "a", "aggregate_id": "r-a"}, outcome="success", duration_s=0.5,
                             turns=2, slot_to="b", slot_to_attempt=1)
    assert describe(ended).endswith("; its slot to task b")
    assert "its slot" not in describe(ev.AgentFinished(**task, outcome="failure"))
