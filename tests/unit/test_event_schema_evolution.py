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


NEWER_THAN_V1: set[str] = set()  # event types added after version 1 (they have no v1 sample)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_a_version_1_event_decodes_and_keeps_its_values(path):
    raw = path.read_bytes()
    e = ev.decode(raw)
    assert e.type == path.stem
    written = json.loads(raw)
    again = json.loads(ev.encode(e))
    for key, value in written.items():  # nothing the old writer said is lost or changed in meaning
        if key in again and key not in REINTERPRETED:
            assert again[key] == value, key


REINTERPRETED = {"settings"}  # typed since: the same keys, missing ones filled with their defaults


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
