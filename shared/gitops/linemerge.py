"""Three-way line merge with git's decisions (xdiff's merge at the "zealous" level): changes that
touch or overlap conflict unless both sides made the same change; clean results are byte-identical."""

from __future__ import annotations

from dataclasses import dataclass

from shared.gitops.xdiff import _classify, diff_hunks


@dataclass
class _Merge:
    mode: int  # 0 conflict, 1 take ours, 2 take theirs, 4 identical on both sides
    i0: int
    chg0: int
    i1: int
    chg1: int
    i2: int
    chg2: int


def _append(ms: list[_Merge], mode, i0, chg0, i1, chg1, i2, chg2) -> None:
    m = ms[-1] if ms else None
    if m and (i1 <= m.i1 + m.chg1 or i2 <= m.i2 + m.chg2):
        if mode != m.mode:
            m.mode = 0
        m.chg0 = i0 + chg0 - m.i0
        m.chg1 = i1 + chg1 - m.i1
        m.chg2 = i2 + chg2 - m.i2
    else:
        ms.append(_Merge(mode, i0, chg0, i1, chg1, i2, chg2))


@dataclass
class TextMerge:
    content: bytes          # merged text, with conflict markers where it conflicts
    conflicts: list[dict]   # one entry per conflicting hunk; empty when clean


def merge_lines(base: bytes, ours: bytes, theirs: bytes, labels: tuple[str, str] = ("ours", "theirs")) -> TextMerge:
    """Three-way merge of text the way `git merge` does it (clean/conflict and merged bytes)."""
    O, A, B = base.splitlines(True), ours.splitlines(True), theirs.splitlines(True)
    o_ids, a_ids, b_ids = _classify(O, A, B)
    x1, x2 = diff_hunks(o_ids, a_ids), diff_hunks(o_ids, b_ids)
    if not x1:
        return TextMerge(theirs, [])
    if not x2:
        return TextMerge(ours, [])
    ms: list[_Merge] = []
    p = q = 0
    while p < len(x1) and q < len(x2):
        h1, h2 = x1[p], x2[q]
        if h1[0] + h1[1] < h2[0]:
            _append(ms, 1, h1[0], h1[1], h1[2], h1[3], h2[2] - h2[0] + h1[0], h1[1])
            p += 1
            continue
        if h2[0] + h2[1] < h1[0]:
            _append(ms, 2, h2[0], h2[1], h1[2] - h1[0] + h2[0], h2[1], h2[2], h2[3])
            q += 1
            continue
        if h1[0] != h2[0] or h1[1] != h2[1] or h1[3] != h2[3] or a_ids[h1[2]:h1[2] + h1[3]] != b_ids[h2[2]:h2[2] + h2[3]]:
            off = h1[0] - h2[0]
            ffo = off + h1[1] - h2[1]
            i0, i1, i2 = h1[0], h1[2], h2[2]
            if off > 0:
                i0 -= off
                i1 -= off
            else:
                i2 += off
            chg0 = h1[0] + h1[1] - i0
            chg1 = h1[2] + h1[3] - i1
            chg2 = h2[2] + h2[3] - i2
            if ffo < 0:
                chg0 -= ffo
                chg1 -= ffo
            else:
                chg2 += ffo
            _append(ms, 0, i0, chg0, i1, chg1, i2, chg2)
        e1, e2 = h1[0] + h1[1], h2[0] + h2[1]
        if e1 >= e2:
            q += 1
        if e2 >= e1:
            p += 1
    delta2 = len(B) - len(O)
    for h1 in x1[p:]:
        _append(ms, 1, h1[0], h1[1], h1[2], h1[3], h1[0] + delta2, h1[1])
    delta1 = len(A) - len(O)
    for h2 in x2[q:]:
        _append(ms, 2, h2[0], h2[1], h2[0] + delta1, h2[1], h2[2], h2[3])
    ms = _refine(ms, a_ids, b_ids)
    return _render(ms, O, A, B, labels)


def _refine(ms: list[_Merge], a_ids: list[int], b_ids: list[int]) -> list[_Merge]:
    """Zealous level: a conflict whose two sides are identical is resolved; others shrink to where they differ."""
    out: list[_Merge] = []
    for m in ms:
        if m.mode or m.chg1 == 0 or m.chg2 == 0:
            out.append(m)
            continue
        sub = diff_hunks(a_ids[m.i1:m.i1 + m.chg1], b_ids[m.i2:m.i2 + m.chg2])
        if not sub:
            m.mode = 4
            out.append(m)
            continue
        for s1, c1, s2, c2 in sub:
            out.append(_Merge(0, m.i0, m.chg0, m.i1 + s1, c1, m.i2 + s2, c2))
    return out


def _render(ms: list[_Merge], O, A, B, labels) -> TextMerge:
    out: list[bytes] = []
    conflicts: list[dict] = []
    i = 0
    for m in ms:
        if m.mode == 0:
            out.extend(A[i:m.i1])
            ours, theirs = A[m.i1:m.i1 + m.chg1], B[m.i2:m.i2 + m.chg2]
            base = O[m.i0:m.i0 + m.chg0]
            conflicts.append({
                "ours_start": m.i1 + 1, "theirs_start": m.i2 + 1, "base_start": m.i0 + 1,
                "ours": _text(ours), "theirs": _text(theirs), "base": _text(base),
            })
            out.append(b"<<<<<<< " + labels[0].encode() + b"\n")
            out.extend(_nl(ours))
            out.append(b"=======\n")
            out.extend(_nl(theirs))
            out.append(b">>>>>>> " + labels[1].encode() + b"\n")
        elif m.mode == 1:
            out.extend(A[i:m.i1 + m.chg1])
        elif m.mode == 2:
            out.extend(B[m.i2 - m.i1 + i:m.i2 + m.chg2])
        else:
            continue
        i = m.i1 + m.chg1
    out.extend(A[i:])
    return TextMerge(b"".join(out), conflicts)


def _nl(lines: list[bytes]) -> list[bytes]:
    if lines and not lines[-1].endswith(b"\n"):
        return lines[:-1] + [lines[-1] + b"\n"]
    return lines


def _text(lines: list[bytes]) -> str:
    return b"".join(lines).decode("utf-8", errors="replace")
