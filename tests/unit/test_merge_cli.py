"""`yokeflow merge accept|rerun`: bad input is one line and exit 2, before any server starts."""

from __future__ import annotations


def test_accepting_a_resolution_needs_a_full_commit_id(capsys):
    from yokeflow.cli import main

    assert main(["merge", "accept", "t1", "abc123"]) == 2
    assert "not a full commit id" in capsys.readouterr().err
