"""`yokeflow expertise …` against the real NATS server: seed, show, history, rollback byte for byte,
export, validation against the repository, and bad input that leaves stored expertise unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import git
from tests.support.processes import ROOT, service_env

SEED = """domain: database
overview: PostgreSQL patterns for this project
core_files:
  - README.md
  - gone.py
patterns:
  - Always use UUID for primary keys
learned_from_failures:
  - issue: Windows encoding error
    error: UnicodeDecodeError
    solution: Use encoding='utf-8'
"""


def run(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yokeflow", "expertise", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def one_line(result: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_seed_show_history_rollback_export_validate_and_bad_input(nats_server, unique, git_repo, tmp_path):
    env = service_env(nats_server.url, "", unique)
    env.pop("YOKEFLOW_DATABASE_URL")
    repo = ["--repo", str(git_repo)]
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "database.yaml").write_text(SEED)

    imported = run(env, "import", str(seeds), *repo, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    v1 = run(env, "show", "database", *repo, cwd=tmp_path).stdout
    assert "UnicodeDecodeError" in v1 and "core_files:" in v1 and "learned_from_failures:" in v1
    shown = json.loads(run(env, "show", "database", "--json", *repo, cwd=tmp_path).stdout)
    assert shown["version"] == 1 and len(shown["document"]["entries"]) == 4

    # validation: gone.py is not on main — flagged first, pruned at the next validation
    first = json.loads(run(env, "validate", "database", *repo, cwd=tmp_path).stdout)
    assert [f["missing"] for f in first["flagged"]] == [["gone.py"]] and first["version"] == 2
    second = json.loads(run(env, "validate", "database", *repo, cwd=tmp_path).stdout)
    assert [p["missing"] for p in second["pruned"]] == [["gone.py"]] and second["version"] == 3
    assert "gone.py" not in run(env, "show", "database", *repo, cwd=tmp_path).stdout

    back = run(env, "rollback", "database", "1", *repo, cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert run(env, "show", "database", *repo, cwd=tmp_path).stdout == v1  # byte for byte
    history = run(env, "history", "database", *repo, cwd=tmp_path).stdout.splitlines()
    assert [line.split()[0] for line in history] == ["v1", "v2", "v3", "v4"]
    assert [line.split()[2] for line in history] == ["import", "validate", "validate", "rollback"]

    out = tmp_path / "export"
    assert run(env, "export", str(out), *repo, cwd=tmp_path).returncode == 0
    assert (out / "database.yaml").read_text() == v1

    # bad input: one clear line, exit 2, nothing stored
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "api.yaml").write_text("domain: api\npatterns: [unclosed\n")
    (bad / "security.yaml").write_text("domain: security\npatterns:\n  - fine\n")
    for args, says in [(["import", str(bad)], "not valid YAML"),
                       (["show", "nosuchdomain"], "no expertise for domain 'nosuchdomain'"),
                       (["show", "Bad Domain!"], "not a domain name"),
                       (["rollback", "database", "99"], "has no version 99"),
                       (["validate", "database", "--branch", "no-such-branch"], "has no files (or does not exist)")]:
        result = run(env, *args, *repo, cwd=tmp_path)
        assert result.returncode == 2 and says in one_line(result), (args, result.stderr)
    history_after = run(env, "history", "database", *repo, cwd=tmp_path).stdout.splitlines()
    assert len(history_after) == 4
    assert run(env, "show", "security", *repo, cwd=tmp_path).returncode == 2  # the valid file was not stored either
    assert git(git_repo, "status", "--porcelain") == ""


async def test_a_version_carries_its_document_once_and_older_versions_read_as_written(bus):
    """Since 2026-12-05 a version is its document alone and its YAML is rendered on read; a version
    written before (its YAML carried beside the document) still reads as it was written."""
    from shared import events as ev
    from shared.expertise import store
    from shared.expertise.curate import learn
    from shared.expertise.model import Entry, parse, render

    entry = Entry(kind="pattern", key="uuid-keys", text="Always use UUID for primary keys")
    await store.append(bus, "p", "database", lambda doc: learn(doc, [entry], now="2026-12-05T00:00:00+00:00"),
                       reason="learned", source="r/t/1", msg_id="p:database:1", max_lines=1000)
    latest = await store.latest(bus, "p", "database")
    data = ev.encode(latest)
    assert latest.content == "" and b'"content":""' in data  # the YAML is not in the event...
    assert latest.yaml() == render(latest.document) and "Always use UUID" in latest.yaml()  # ...it is rendered
    assert latest.lines == latest.yaml().count("\n")

    as_written = SEED + "# a comment the renderer would not write\n"
    old = ev.ExpertiseUpdated(project_id="p", aggregate_id="database", domain="database", version=2,
                              lines=as_written.count("\n"), content=as_written,
                              document=parse(SEED, domain="database"))
    await bus.publish(old)
    latest = await store.latest(bus, "p", "database")
    assert latest.yaml() == as_written  # byte for byte, as it was stored
    assert store.document_of(latest, "database") == parse(SEED, domain="database")
