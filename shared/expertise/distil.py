"""Optional (`learning.model`): a cheap model reads an attempt's log and proposes further entries.

Pure here: the request (the log, compact and bounded, and one tool whose input is the document's
own sections) and the check of the answer, which goes through the same parser as a seed file
(shared/expertise/model.py), so an entry the model gives in another shape is dropped by name.
The learner (services/learner) makes the call, reserves and records its cost, and stores the
entries with the deterministic ones.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from shared.expertise.extract import AttemptLog
from shared.expertise.model import KIND_OF_SECTION, Entry, ExpertiseError, Origin, parse_entry

TOOL_NAME = "record_learnings"
MAX_LOG_CHARS = 12_000  # the log as the model reads it: enough for a few failures and their fixes
MAX_PROPOSED = 12
MAX_TOKENS = 1024

_ITEM = {"type": "object", "properties": {"text": {"type": "string"},
                                          "files": {"type": "array", "items": {"type": "string"}}},
         "required": ["text"]}
TOOL = {
    "name": TOOL_NAME,
    "description": "Record what the next agent working in this domain should know, learned from this attempt. "
                   "Only facts the log shows; leave a section out when there is nothing for it.",
    "input_schema": {"type": "object", "properties": {
        "core_files": {"type": "array", "items": {"type": "object", "properties": {
            "path": {"type": "string"}, "purpose": {"type": "string"}}, "required": ["path"]}},
        "patterns": {"type": "array", "items": _ITEM},
        "best_practices": {"type": "array", "items": _ITEM},
        "learned_from_failures": {"type": "array", "items": {"type": "object", "properties": {
            "issue": {"type": "string"}, "error": {"type": "string"}, "solution": {"type": "string"},
            "files": {"type": "array", "items": {"type": "string"}}}, "required": ["error"]}},
        "effective_patterns": {"type": "array", "items": _ITEM},
    }},
}
SYSTEM = ("You keep a software project's expertise notes for coding agents. From one agent attempt's log, "
          "record only what is true for this project and useful to the next agent of the same domain: files "
          "that matter, conventions, errors met and what fixed them, commands that verify work. Be brief.")


def request(log: AttemptLog, *, task: str, domain: str, outcome: str) -> dict[str, Any]:
    """The Messages API request (system, messages, tools, tool_choice, max_tokens) for one attempt."""
    lines: list[str] = []
    for kind, data in log.records:
        if kind == "tool_call":
            lines.append(f"call {data.get('name')}: {json.dumps(data.get('input'), ensure_ascii=False)[:400]}")
        elif kind == "tool_result":
            flag = " (error)" if data.get("is_error") else ""
            lines.append(f"result{flag}: {str(data.get('text', ''))[:600]}")
        elif kind == "check_result":
            lines.append(f"check `{data.get('command')}` {'passed' if data.get('passed') else 'failed'}: "
                         f"{str(data.get('output', ''))[-600:]}")
        elif kind == "text":
            lines.append(f"agent: {str(data.get('text', ''))[:400]}")
    text = "\n".join(lines)
    if len(text) > MAX_LOG_CHARS:  # the end says most: how it was fixed, or how it failed
        text = "…\n" + text[-MAX_LOG_CHARS:]
    prompt = (f"Task: {task}\nDomain: {domain}\nOutcome: {outcome}\n\nThe attempt's log:\n{text or '(empty)'}\n\n"
              f"Call {TOOL_NAME} once.")
    return {"system": [{"type": "text", "text": SYSTEM}], "messages": [{"role": "user", "content": prompt}],
            "tools": [TOOL], "tool_choice": {"type": "tool", "name": TOOL_NAME}, "max_tokens": MAX_TOKENS}


def entries_from(content: list[dict], *, origin: Origin, now: str) -> tuple[list[Entry], list[str]]:
    """The entries of the model's `record_learnings` call, each checked like a seed file's; and
    what was dropped and why (a wrong shape, an unknown section, too many)."""
    proposed = next((b.get("input") for b in content if b.get("type") == "tool_use" and b.get("name") == TOOL_NAME),
                    None)
    if not isinstance(proposed, dict):
        return [], [f"the model did not call {TOOL_NAME}"]
    entries: list[Entry] = []
    dropped: list[str] = []
    for section, items in proposed.items():
        kind = KIND_OF_SECTION.get(section)
        if kind is None or not isinstance(items, list):
            dropped.append(f"{str(section)[:40]}: not a list under a section of the document")
            continue
        for i, item in enumerate(items):
            if len(entries) >= MAX_PROPOSED:
                dropped.append(f"{section}[{i}]: more than {MAX_PROPOSED} entries")
                continue
            try:
                entry = parse_entry(kind, item, f"{section}[{i}]")
            except ExpertiseError as exc:
                dropped.append(str(exc))
                continue
            entries.append(msgspec.structs.replace(entry, origin=origin, learned_at=now, confirmed_at=now,
                                                   confirmations=1, score=1.0, flagged=""))
    return entries, dropped
