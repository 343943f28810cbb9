"""Events over the server's max payload: the longest texts are cut, with a marker, until the
event fits (a huge agent summary, error or check output must not fail the attempt's effects).
Plans are never cut: a plan cut short is another plan, so `plan check` refuses those instead."""

from __future__ import annotations

from typing import Any

import msgspec

NEVER_CUT = frozenset({"RunStarted", "PlanProduced", "PlanApproved"})  # plans: refused, never altered
MARKER = " … [{cut:,} bytes cut: the event was over the server's max payload of {limit:,} bytes]"
MIN_TEXT = 256  # shorter texts are left alone: cutting them could not make room that matters
MAX_ROUNDS = 64


def fit(event_type: str, data: bytes, limit: int) -> bytes | None:
    """`data` (an encoded event) cut to at most `limit` bytes, or None when it cannot be (a plan,
    or an event too big for reasons other than long texts)."""
    if len(data) <= limit:
        return data
    if event_type in NEVER_CUT:
        return None
    tree = msgspec.json.decode(data)
    for _ in range(MAX_ROUNDS):
        excess = len(data) - limit
        if excess <= 0:
            return data
        found, runner_up = _longest(tree)
        if found is None:
            return None
        holder, key, text = found
        raw = text.encode()
        if len(raw) < MIN_TEXT:
            return None
        marker = MARKER.format(cut=0, limit=limit)
        # down to what is needed, but no shorter than the next longest text: the cut is shared
        keep = max(0, len(raw) - excess - len(marker) - 32, min(len(runner_up.encode()), len(raw) // 2))
        kept = raw[:keep].decode("utf-8", "ignore")
        holder[key] = kept + MARKER.format(cut=len(raw) - len(kept.encode()), limit=limit)
        data = msgspec.json.encode(tree)
    return data if len(data) <= limit else None


def _longest(node: Any) -> tuple[tuple[Any, Any, str] | None, str]:
    """(container, key, text) of the longest string in a decoded JSON tree, and the next longest."""
    best: tuple[Any, Any, str] | None = None
    second = ""
    stack = [node]
    while stack:
        item = stack.pop()
        pairs = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        for key, value in pairs:
            if isinstance(value, str):
                if best is None or len(value) > len(best[2]):
                    second = best[2] if best is not None else second
                    best = (item, key, value)
                elif len(value) > len(second):
                    second = value
            elif isinstance(value, (dict, list)):
                stack.append(value)
    return best, second
