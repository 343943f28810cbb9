"""Events over the max payload: the longest texts are cut with a marker until the event fits;
plans are never cut."""

from __future__ import annotations

from shared import events as ev
from shared.plan import PlanDoc
from shared.payload import fit


def finished(summary: str, outputs: list[str]) -> ev.AgentFinished:
    return ev.AgentFinished(project_id="p", aggregate_id="r-t", run_id="r", task_id="t", attempt=1, outcome="success",
                            summary=summary, checks=[ev.CheckResult(command=f"check {i}", passed=True, output=o)
                                                     for i, o in enumerate(outputs)])


def test_the_longest_texts_are_cut_with_a_marker_until_the_event_fits():
    e = finished("日本語の要約 " * 100_000, ["x\n" * 200_000, "short"])
    data = ev.encode(e)
    cut = fit(e.type, data, 64 * 1024)
    assert cut is not None and len(cut) <= 64 * 1024 < len(data)
    back = ev.decode(cut)
    assert isinstance(back, ev.AgentFinished) and back.event_id == e.event_id
    assert back.summary.startswith("日本語の要約") and "bytes cut: the event was over the server's max payload" in back.summary
    assert "bytes cut" in back.checks[0].output and back.checks[1].output == "short"


def test_an_event_that_fits_is_left_as_it_is_and_a_plan_is_never_cut():
    small = ev.encode(finished("done", []))
    assert fit("AgentFinished", small, 64 * 1024) is small
    started = ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", repo_path="/r",
                            plan=PlanDoc.of({"name": "big", "epics": [{"id": "e", "name": "E", "tasks": [
                                {"id": "t", "title": "T", "description": "x" * 100_000}]}]}))
    assert fit("RunStarted", ev.encode(started), 64 * 1024) is None


def test_many_small_texts_that_cannot_be_cut_enough_give_up():
    e = finished("", ["y" * 100] * 2000)
    assert fit(e.type, ev.encode(e), 64 * 1024) is None
