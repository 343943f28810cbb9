"""Expertise files (pure): learnings from a finished attempt, merged into a bounded,
de-duplicated, versioned per-domain document that later agents read in their prompt."""

from __future__ import annotations

import re

from shared import events as ev

HEADER = "# {domain} expertise\n\nLearned by YokeFlow from finished tasks; newest last. Verify against the code.\n"
_ENTRY = re.compile(r"^- ")


def extract_learnings(e: ev.AgentFinished, title: str = "") -> list[str]:
    """What a later agent in the same domain should know from this attempt."""
    out: list[str] = []
    label = f"task {e.task_id}" + (f" ({title})" if title else "")
    if e.outcome == "success" and e.summary.strip():
        first = " ".join(e.summary.split())[:400]
        out.append(f"{label}: {first}")
    for check in e.checks:
        if not check.get("passed", True):
            output = str(check.get("output", "")).strip().splitlines()
            last = output[-1][:200] if output else "no output"
            out.append(f"{label}: check `{check.get('command', '')}` failed at first with: {last}")
    if e.outcome != "success" and e.error:
        out.append(f"{label}: attempt {e.attempt} failed: {' '.join(e.error.split())[:300]}")
    return out


def merge_expertise(current: str, learnings: list[str], domain: str, max_lines: int) -> str:
    """Add new learnings (skipping ones already present) and prune the oldest to stay under max_lines."""
    entries = [line[2:] for line in current.splitlines() if _ENTRY.match(line)]
    known = set(entries)
    for item in learnings:
        item = item.replace("\n", " ").strip()
        if item and item not in known:
            entries.append(item)
            known.add(item)
    header = HEADER.format(domain=domain)
    room = max(1, max_lines - header.count("\n") - 1)
    entries = entries[-room:]
    return header + "\n" + "".join(f"- {entry}\n" for entry in entries)
