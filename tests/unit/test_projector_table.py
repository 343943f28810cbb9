"""The ledger's projection is a table: every event type is projected or explicitly ignored."""

from __future__ import annotations

from shared import events as ev
from services.ledger.projector import IGNORED, PROJECTORS


def test_every_event_type_is_projected_or_listed_as_ignored():
    every = set(ev.EVENT_TYPES.values())
    assert not set(PROJECTORS) & IGNORED, "an event type is both projected and ignored"
    missing = every - set(PROJECTORS) - IGNORED
    assert not missing, f"add these to PROJECTORS or IGNORED in services/ledger/projector.py: {sorted(c.__name__ for c in missing)}"
    assert set(PROJECTORS) | IGNORED <= every
