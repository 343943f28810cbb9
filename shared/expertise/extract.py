"""Learnings from what happened in an attempt (pure): its agent log (tool calls, their results,
checks) and its outcome, not only what the agent said about itself.

- a command or check that failed, the files edited after it, and a later passing run of the
  same command → a `learned_from_failures` entry (error signature, the fix);
- a failure never fixed in the attempt → the same entry without a solution (worth most);
- files a successful attempt wrote → `core_files`;
- test or build commands that passed → `effective_patterns`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.expertise.model import Entry, Origin, normalise

_PY_EXC = re.compile(r"^\s*(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Failure|Interrupt)\b.*")
_ERRORISH = re.compile(r"error|failed|failure|fatal|not found|no such|cannot|denied|refused|assert", re.I)
_EXIT_LINE = re.compile(r"^exit code (-?\d+)")
_VERIFYING = re.compile(r"\b(pytest|unittest|test|tests|check|lint|ruff|mypy|flake8|tsc|build|make|cargo|go vet|"
                        r"npm|yarn|pnpm|compileall|doctest)\b")
WRITERS = ("write_file", "edit_file")
MAX_SIGNATURE = 160


def error_signature(output: str) -> str:
    """The line that says what went wrong, without what changes from run to run (numbers, addresses,
    temporary paths), so the same error met twice has the same signature."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not _EXIT_LINE.match(ln.strip())]
    lines = [ln for ln in lines if not ln.startswith("…")]
    pick = next((ln for ln in reversed(lines) if _PY_EXC.match(ln)), None)
    pick = pick or next((ln for ln in reversed(lines) if _ERRORISH.search(ln)), None)
    pick = pick or (lines[-1] if lines else "no output")
    pick = re.sub(r"0x[0-9a-fA-F]+", "0x…", pick)
    pick = re.sub(r"(/tmp|/var/folders)/\S+", "<tmp>", pick)
    pick = re.sub(r"\b\d+(\.\d+)?s\b", "<t>s", pick)
    pick = re.sub(r"line \d+", "line N", pick)
    return pick[:MAX_SIGNATURE]


@dataclass
class _Run:
    """One run of a command (a run_command tool call or a task check) in the attempt."""

    command: str
    passed: bool
    output: str
    at: int  # position in the log
    check: bool


@dataclass
class AttemptLog:
    """An attempt's log records in order: (kind, data) as the executor published them on YF_LOGS."""

    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def runs(self) -> list[_Run]:
        calls: dict[str, str] = {}
        out: list[_Run] = []
        for i, (kind, data) in enumerate(self.records):
            if kind == "tool_call" and data.get("name") == "run_command":
                calls[str(data.get("id"))] = str((data.get("input") or {}).get("command", ""))
            elif kind == "tool_result" and str(data.get("id")) in calls:
                text = str(data.get("text", ""))
                code = _EXIT_LINE.match(text)
                passed = not data.get("is_error") and (code is None or code.group(1) == "0")
                out.append(_Run(calls.pop(str(data.get("id"))), passed, text, i, check=False))
            elif kind == "check_result":
                out.append(_Run(str(data.get("command", "")), bool(data.get("passed")),
                                str(data.get("output", "")), i, check=True))
        return out

    def writes(self) -> list[tuple[int, str]]:
        return [(i, str((data.get("input") or {}).get("path", ""))) for i, (kind, data) in enumerate(self.records)
                if kind == "tool_call" and data.get("name") in WRITERS and (data.get("input") or {}).get("path")]


def extract(log: AttemptLog, *, origin: Origin, outcome: str, checks: list[dict[str, Any]] | None = None,
            title: str = "", now: str = "") -> list[Entry]:
    """The entries this attempt teaches, in a stable order, one per key."""
    runs = log.runs()
    writes = log.writes()
    if checks and not any(r.check for r in runs):  # an older executor logged no check output
        runs += [_Run(str(c.get("command", "")), bool(c.get("passed")), str(c.get("output", "")), len(log.records),
                      check=True) for c in checks]
    stamp = dict(origin=origin, learned_at=now, confirmed_at=now)
    found: dict[tuple[str, str], Entry] = {}

    def add(entry: Entry) -> None:
        found.setdefault((entry.kind, entry.key), entry)

    for n, run in enumerate(runs):
        if run.passed or not run.command:
            continue
        signature = error_signature(run.output)
        fixed = next((later for later in runs[n + 1:] if later.command == run.command and later.passed), None)
        files = sorted({path for at, path in writes if run.at < at < (fixed.at if fixed else len(log.records) + 1)})
        what = "the task's check" if run.check else "a command"
        issue = f"{what} `{run.command}` failed" + (f" (task {origin.task_id}: {title})" if title else "")
        if fixed is not None:
            solution = (f"edited {', '.join(f'`{f}`' for f in files)}; then `{run.command}` passed" if files
                        else f"`{run.command}` passed when run again after other changes")
        else:
            solution = ""
        add(Entry(kind="failure", key=normalise(signature), issue=issue, error=signature, solution=solution,
                  files=files if fixed else [], **stamp))
    if outcome == "success":
        for path in sorted({path for _, path in writes}):
            add(Entry(kind="core_file", key=path, path=path, files=[path],
                      text=f"changed by task {origin.task_id}" + (f" ({title})" if title else ""), **stamp))
        for run in runs:
            if run.passed and run.command and _VERIFYING.search(run.command):
                text = f"`{run.command}` verifies work in this domain"
                add(Entry(kind="effective_pattern", key=normalise(run.command), text=text, **stamp))
    return list(found.values())
