"""Keeping an expertise document worth reading (pure): near-duplicates reinforce an entry instead of
adding one, a newer fix replaces an older one for the same error, validation against the target
branch flags and then prunes entries whose files are gone, and the document stays under its line
cap by dropping the least valuable entries first (lowest score, least given to agents, longest
unconfirmed)."""

from __future__ import annotations

from typing import Callable

import msgspec

from shared.expertise.model import Document, Entry, head_lines, item_lines

REINFORCE = 1.0


def learn(doc: Document, new: list[Entry], *, now: str) -> Document:
    """`doc` with `new` merged in: a known entry (same kind and key) is confirmed and scores up; a
    failure's newer solution replaces an older or missing one; anything else is added."""
    entries = list(doc.entries)
    index = {e.id: i for i, e in enumerate(entries)}
    for item in new:
        at = index.get(item.id)
        if at is None:
            index[item.id] = len(entries)
            entries.append(msgspec.structs.replace(item, learned_at=item.learned_at or now,
                                                   confirmed_at=item.confirmed_at or now))
            continue
        old = entries[at]
        changes: dict = dict(confirmations=old.confirmations + 1, score=old.score + REINFORCE, confirmed_at=now,
                             flagged="")
        if item.kind == "failure" and item.solution and item.solution != old.solution:
            changes.update(solution=item.solution, files=list(item.files), issue=item.issue or old.issue)
        elif item.files and set(item.files) != set(old.files):
            changes.update(files=sorted(set(old.files) | set(item.files)))
        entries[at] = msgspec.structs.replace(old, **changes)
    return msgspec.structs.replace(doc, entries=entries)


def value_order(given: dict[str, int]) -> Callable[[Entry], tuple]:
    """Sort key, least valuable first: flagged, then lowest score, least given, longest unconfirmed."""
    return lambda e: (not e.flagged, e.score, given.get(e.id, 0), e.confirmed_at or e.learned_at, e.id)


def prune(doc: Document, max_lines: int, *, given: dict[str, int] | None = None) -> Document:
    """Keep the most valuable entries that fit in `max_lines` of YAML, in their original order.
    Lines are counted without rendering (as `line_count` does): the head, then each entry's item."""
    header = head_lines(doc)
    sizes = [item_lines(e) for e in doc.entries]
    if header + sum(sizes) <= max_lines:
        return doc
    order = value_order(given or {})
    budget = max_lines - header
    keep: set[int] = set()
    used = 0
    for i in sorted(range(len(doc.entries)), key=lambda i: order(doc.entries[i]), reverse=True):
        if used + sizes[i] <= budget:
            keep.add(i)
            used += sizes[i]
    kept = sorted(keep)
    # a long overview alone can leave too little room: drop the least valuable until the rest fits
    while kept and header + sum(sizes[i] for i in kept) > max_lines:
        kept.remove(min(kept, key=lambda i: order(doc.entries[i])))
    return msgspec.structs.replace(doc, entries=[doc.entries[i] for i in kept])


def validate(doc: Document, exists: Callable[[str], bool], *, now: str, branch: str = "main",
             pending: Callable[[Entry], bool] | None = None) -> tuple[Document, dict]:
    """Check every entry's files against the target branch: an entry with a missing file is flagged;
    one already flagged whose file is still missing is pruned; one whose files are back is cleared.
    `pending(entry)`: the entry comes from work not merged yet (its files are not on the branch
    because they are still in a worktree), so it is left as it is."""
    kept: list[Entry] = []
    report: dict[str, list] = {"flagged": [], "pruned": [], "cleared": [], "checked": []}
    for e in doc.entries:
        if pending is not None and pending(e):
            kept.append(e)
            continue
        missing = [f for f in e.files if not exists(f)]
        report["checked"].append(e.id)
        if missing and e.flagged:
            report["pruned"].append({"id": e.id, "missing": missing})
            continue
        if missing:
            why = f"{', '.join(missing)} not on {branch} (checked {now})"
            kept.append(msgspec.structs.replace(e, flagged=why))
            report["flagged"].append({"id": e.id, "missing": missing})
        elif e.flagged:
            kept.append(msgspec.structs.replace(e, flagged=""))
            report["cleared"].append({"id": e.id})
        else:
            kept.append(e)
    return msgspec.structs.replace(doc, entries=kept), report
