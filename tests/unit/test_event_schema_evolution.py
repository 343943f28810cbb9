"""Events written by an earlier version still decode (docs/architecture.md, "Schema evolution").

tests/fixtures/events_v1/ holds one event of every type as version 1 of the code encoded it
(RunStarted with its settings still an untyped, partial dict). Never edit those files: add a
folder for a new version instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import events as ev

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "events_v1"
FIXTURES = sorted(V1.glob("*.json"))


def test_every_event_type_of_version_1_has_a_fixture():
    assert {p.stem for p in FIXTURES} >= set(ev.EVENT_TYPES) - NEWER_THAN_V1


NEWER_THAN_V1: set[str] = {"AgentAdmitted", "WorkCommitted"}  # event types added after version 1 (they have no v1 sample)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_a_version_1_event_decodes_and_keeps_its_values(path):
    raw = path.read_bytes()
    e = ev.decode(raw)
    assert e.type == path.stem
    written = json.loads(raw)
    again = json.loads(ev.encode(e))
    for key, value in written.items():  # nothing the old writer said is lost or changed in meaning
        if key in again and key not in REINTERPRETED:
            _assert_kept(value, again[key], key)


REINTERPRETED = {"settings"}  # typed since: the same keys, missing ones filled with their defaults


def _assert_kept(written, again, where: str) -> None:
    """`again` says everything `written` said; a payload typed since may add keys with their defaults."""
    if isinstance(written, dict):
        assert isinstance(again, dict), where
        for k, v in written.items():
            assert k in again, f"{where}.{k}"
            _assert_kept(v, again[k], f"{where}.{k}")
    elif isinstance(written, list):
        assert isinstance(again, list) and len(again) == len(written), where
        for i, (w, a) in enumerate(zip(written, again)):
            _assert_kept(w, a, f"{where}[{i}]")
    else:
        assert again == written, where


def test_dict_payloads_of_version_1_decode_into_their_types():
    finished = ev.decode((V1 / "AgentFinished.json").read_bytes())
    assert finished.outcome == "failure" and finished.checks == [
        ev.CheckResult(command="pytest", exit_code=1, output="1 failed", passed=False)]
    conflicted = ev.decode((V1 / "MergeConflicted.json").read_bytes())
    assert conflicted.conflicts == [ev.Conflict(path="todo/cli.py", kind="content")]
    assert ev.decode((V1 / "ConflictEscalated.json").read_bytes()).conflicts[0].path == "todo/cli.py"
    assert ev.decode((V1 / "BranchMerged.json").read_bytes()).status == "merged"
    failed = ev.decode((V1 / "RunFailed.json").read_bytes())
    assert failed.stats.attempts == 3 and failed.stats.dependency_ready_latency_s.count == 0
    ready = ev.decode((V1 / "TaskReady.json").read_bytes())
    assert ready.previous_attempt.attempt == 1 and ready.previous_attempt.checks[0].passed is False
    assert ready.conflict.conflicts[0].path == "todo/cli.py" and ready.dependency_summaries[0].task_id == "t1"
    assert ev.decode((V1 / "TaskFailed.json").read_bytes()).type == "TaskFailed"


def test_version_1_cost_selection_options_errors_and_counts_decode_typed():
    ready = ev.decode((V1 / "TaskReady.json").read_bytes())
    assert ready.provider_options == ev.ProviderOptions(max_turns=40, transcript="/t/t2.json")
    assert ready.provider_options.sandbox.mode == "required"  # absent then: the default jail
    assert ready.selection == ev.ModelSelection() and ready.cost == ev.AttemptBudget()
    rejected = ev.decode((V1 / "PlanRejected.json").read_bytes())
    assert rejected.errors == [ev.PlanIssue(code="cycle", ids=["t1", "t2"], message="t1 -> t2 -> t1")]
    completed = ev.decode((V1 / "RunCompleted.json").read_bytes())
    assert completed.counts == ev.TaskCounts(done=2, total=2)
    failed = ev.decode((V1 / "RunFailed.json").read_bytes())
    assert (failed.counts.failed, failed.counts.blocked) == (1, 1)


def test_version_1_plans_decode_into_the_plan_document_and_parse_into_the_plan():
    from shared.plan import PlanDoc

    for name in ("RunStarted", "PlanProduced"):
        e = ev.decode((V1 / f"{name}.json").read_bytes())
        assert isinstance(e.plan, PlanDoc) and e.plan.task_count() == 2
        plan = e.plan.to_plan()
        assert plan.task("t2").depends_on == ("t1",) and plan.task("t2").files == ("todo/cli.py",)
        assert plan.task("t1").complexity == "low" and plan.task("t2").complexity is None
        assert PlanDoc.of(plan).to_plan() == plan  # the document and the plan say the same


def test_a_plan_missing_fields_still_decodes_and_is_refused_when_read_naming_them():
    from shared.plan import PlanError

    written = json.loads((V1 / "RunStarted.json").read_text())
    for plan in ({}, {"name": "x", "epics": [{"id": "e", "name": "E", "tasks": [{"id": "t"}]}]}):
        started = ev.decode(json.dumps(written | {"plan": plan}).encode())
        with pytest.raises(PlanError, match="name|title"):
            started.plan.to_plan()


def test_a_typed_payload_keeps_its_json_shape():
    ready = ev.TaskReady(project_id="p", aggregate_id="r-t", run_id="r", task_id="t",
                         cost=ev.AttemptBudget(run_budget_usd="2.5", prices={"m": {"input": 1, "output": 2}}),
                         selection=ev.ModelSelection(tier="opus", model="o", reasons=["why"]))
    wire = json.loads(ev.encode(ready))
    assert wire["cost"]["run_budget_usd"] == "2.5" and wire["cost"]["prices"] == {"m": {"input": 1, "output": 2}}
    assert wire["selection"]["tier"] == "opus" and wire["selection"]["inputs"]["tries"] == 0
    assert ev.decode(ev.encode(ready)) == ready
    with pytest.raises(Exception, match="tier"):
        ev.decode(json.dumps(wire | {"selection": {"tier": "gigantic"}}).encode())


def test_worktree_has_one_meaning_a_folder_name_and_version_1_paths_are_still_read():
    ready = ev.decode((V1 / "TaskReady.json").read_bytes())
    assert ready.worktree == "task-t2-cli"  # a name, never a path
    finished = ev.decode((V1 / "AgentFinished.json").read_bytes())
    assert finished.worktree_dir == "/repos/todo/.yokeflow/worktrees/task-t2-cli" and not finished.worktree_path
    now = ev.AgentFinished(project_id="p", aggregate_id="a", run_id="r", task_id="t", worktree_path="/w/task-t")
    assert now.worktree_dir == "/w/task-t" and json.loads(ev.encode(now))["worktree_path"] == "/w/task-t"
    assert not hasattr(now, "worktree")  # the attribute name `worktree` means a folder name only


def test_a_value_outside_a_closed_set_is_refused_by_name():
    written = json.loads((V1 / "AgentFinished.json").read_text()) | {"outcome": "exploded"}
    with pytest.raises(Exception, match="outcome"):
        ev.decode(json.dumps(written).encode())


def test_the_event_literals_match_the_plan_vocabulary():
    from typing import get_args

    from shared.plan import COMPLEXITIES, DOMAINS

    assert set(get_args(ev.Domain)) == set(DOMAINS) and set(get_args(ev.Complexity)) == set(COMPLEXITIES)


def test_old_untyped_settings_decode_typed_with_defaults():
    started = ev.decode((V1 / "RunStarted.json").read_bytes())
    assert started.settings.parallel.max_concurrency == 2 and started.settings.parallel.strategy == "by_task"
    assert started.settings.merge.on_conflict == "agent"
    assert started.settings.parallel.max_attempts == 2 and started.settings.agent.provider == "replay"  # defaults


def test_what_a_newer_version_wrote_is_refused_by_name_so_readers_skip_it():
    with pytest.raises(ev.UnknownEvent, match="SomethingNew"):
        ev.decode(b'{"type": "SomethingNew", "project_id": "p", "aggregate_id": "a"}')
    newer = json.loads((V1 / "ProjectCreated.json").read_text()) | {"schema_version": ev.SCHEMA_VERSION + 1}
    with pytest.raises(ev.UnknownEvent, match="schema_version"):
        ev.decode(json.dumps(newer).encode())
    with_a_new_field = json.loads((V1 / "ProjectCreated.json").read_text()) | {"added_later": 1}
    assert ev.decode(json.dumps(with_a_new_field).encode()).type == "ProjectCreated"  # unknown fields: ignored


def test_every_conflict_kind_the_merge_reports_is_a_known_kind():
    import re
    from typing import get_args

    source = (Path(ev.__file__).parent / "gitops" / "treemerge.py").read_text()
    reported = set(re.findall(r'conflict\(\s*\w+,\s*"([a-z/-]+)"', source))
    assert reported and reported <= set(get_args(ev.ConflictKind))


def test_a_setting_a_newer_version_added_is_read_past_in_events_and_refused_in_a_file():
    """Run settings travel in RunStarted (and the sandbox in TaskReady's provider options): an event
    from a newer writer with a key this version lacks still decodes; the same key in a file is an error."""
    from shared.config import ConfigError, parse_config

    newer = {"type": "RunStarted", "project_id": "p", "aggregate_id": "r", "run_id": "r", "repo_path": "/x",
             "plan": {"name": "n", "epics": []},
             "settings": {"parallel": {"max_concurrency": 5, "future_knob": 1},
                          "agent": {"sandbox": {"mode": "required", "later": 2}}, "newer_section": {}}}
    started = ev.decode(json.dumps(newer).encode())
    assert started.settings.parallel.max_concurrency == 5 and started.settings.agent.sandbox.mode == "required"
    with pytest.raises(ConfigError, match=r"parallel: Object contains unknown field `future_knob`"):
        parse_config({"parallel": {"future_knob": 1}})
    with pytest.raises(ConfigError, match=r"agent\.sandbox: Object contains unknown field `later`"):
        parse_config({"agent": {"sandbox": {"later": 2}}})


def test_a_task_ready_written_before_update_from_target_still_brings_the_target_in():
    """An attempt dispatched by an older scheduler (a redelivery after an upgrade) prepares its
    worktree as that scheduler meant: with the target brought in."""
    ready = ev.decode((V1 / "TaskReady.json").read_bytes())
    assert "update_from_target" not in json.loads((V1 / "TaskReady.json").read_bytes())
    assert ready.update_from_target is True
