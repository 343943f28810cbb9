"""Line diff with the same hunks as git's merge-ort: histogram diff and change-group
compaction without the indent heuristic (merges never use it)."""

from __future__ import annotations

_MAX_CHAIN = 64  # git gives up on histogram LCS when every common line repeats more often than this


def is_binary(data: bytes) -> bool:
    """git's rule: a NUL byte in the first 8000 bytes makes a file binary."""
    return b"\0" in data[:8000]


def _classify(*seqs: list[bytes]) -> list[list[int]]:
    ids: dict[bytes, int] = {}
    return [[ids.setdefault(line, len(ids)) for line in seq] for seq in seqs]


class _Side:
    """One file of a diff: line ids (1-based with sentinels) and the per-line changed flags."""

    __slots__ = ("rec", "n", "changed")

    def __init__(self, ids: list[int]):
        self.n = len(ids)
        self.rec = [-1] + ids + [-2]
        self.changed = [False] * (self.n + 2)


def _myers_mark(a: _Side, b: _Side, l1: int, c1: int, l2: int, c2: int) -> None:
    """Minimal edit script for a region (fallback when histogram finds only over-frequent lines)."""
    A, B = a.rec[l1:l1 + c1], b.rec[l2:l2 + c2]
    n, m = len(A), len(B)
    maxd = n + m
    v = {1: 0}
    trace = []
    for d in range(maxd + 1):
        trace.append(dict(v))
        for k in range(-d, d + 1, 2):
            x = v.get(k + 1, 0) if (k == -d or (k != d and v.get(k - 1, 0) < v.get(k + 1, 0))) else v.get(k - 1, 0) + 1
            y = x - k
            while x < n and y < m and A[x] == B[y]:
                x, y = x + 1, y + 1
            v[k] = x
            if x >= n and y >= m:
                _myers_backtrack(trace, A, B, a, b, l1, l2, x, y, d)
                return


def _myers_backtrack(trace, A, B, a, b, l1, l2, x, y, d) -> None:
    for dd in range(d, 0, -1):
        v = trace[dd]
        k = x - y
        prev_k = k + 1 if (k == -dd or (k != dd and v.get(k - 1, 0) < v.get(k + 1, 0))) else k - 1
        px = v[prev_k]
        py = px - prev_k
        while x > px and y > py:
            x, y = x - 1, y - 1
        if x == px:
            b.changed[l2 + py] = True  # insertion of B[py]
        else:
            a.changed[l1 + px] = True  # deletion of A[px]
        x, y = px, py


def _find_lcs(a: _Side, b: _Side, l1: int, c1: int, l2: int, c2: int):
    end1, end2 = l1 + c1 - 1, l2 + c2 - 1
    A, B = a.rec, b.rec
    first: dict[int, int] = {}
    count: dict[int, int] = {}
    next_ptr: dict[int, int] = {}
    for ptr in range(end1, l1 - 1, -1):
        key = A[ptr]
        if key in first:
            next_ptr[ptr] = first[key]
            count[key] += 1
        else:
            count[key] = 1
        first[key] = ptr
    best_cnt = _MAX_CHAIN + 1
    has_common = False
    lcs = [0, 0, 0, 0]  # begin1, end1, begin2, end2
    b_ptr = l2
    while b_ptr <= end2:
        b_next = b_ptr + 1
        key = B[b_ptr]
        if key in first:
            if count[key] > best_cnt:
                has_common = True
            else:
                has_common = True
                as_ = first[key]
                while True:
                    np_ = next_ptr.get(as_, 0)
                    bs, ae, be, rc = b_ptr, as_, b_ptr, count[key]
                    while l1 < as_ and l2 < bs and A[as_ - 1] == B[bs - 1]:
                        as_, bs = as_ - 1, bs - 1
                        if rc > 1:
                            rc = min(rc, count[A[as_]])
                    while ae < end1 and be < end2 and A[ae + 1] == B[be + 1]:
                        ae, be = ae + 1, be + 1
                        if rc > 1:
                            rc = min(rc, count[A[ae]])
                    if b_next <= be:
                        b_next = be + 1
                    if lcs[1] - lcs[0] < ae - as_ or rc < best_cnt:
                        lcs = [as_, ae, bs, be]
                        best_cnt = rc
                    if np_ == 0:
                        break
                    while np_ and np_ <= ae:
                        np_ = next_ptr.get(np_, 0)
                    if not np_:
                        break
                    as_ = np_
        b_ptr = b_next
    fallback = has_common and best_cnt > _MAX_CHAIN
    return lcs, fallback


def _histogram(a: _Side, b: _Side) -> None:
    stack = [(1, a.n, 1, b.n)]
    while stack:
        l1, c1, l2, c2 = stack.pop()
        if c1 <= 0 and c2 <= 0:
            continue
        if c1 <= 0:
            for i in range(l2, l2 + c2):
                b.changed[i] = True
            continue
        if c2 <= 0:
            for i in range(l1, l1 + c1):
                a.changed[i] = True
            continue
        lcs, fallback = _find_lcs(a, b, l1, c1, l2, c2)
        if fallback:
            _myers_mark(a, b, l1, c1, l2, c2)
        elif lcs[0] == 0 and lcs[2] == 0:
            for i in range(l1, l1 + c1):
                a.changed[i] = True
            for i in range(l2, l2 + c2):
                b.changed[i] = True
        else:
            b1, e1, b2, e2 = lcs
            stack.append((e1 + 1, l1 + c1 - 1 - e1, e2 + 1, l2 + c2 - 1 - e2))
            stack.append((l1, b1 - l1, l2, b2 - l2))


class _Group:
    """A run of changed lines, positions 0-based over the lines (changed[i + 1] is line i)."""

    __slots__ = ("start", "end")


def _g_init(s: _Side, g: _Group) -> None:
    g.start = g.end = 0
    while s.changed[g.end + 1]:
        g.end += 1


def _g_next(s: _Side, g: _Group) -> bool:
    if g.end == s.n:
        return False
    g.start = g.end + 1
    g.end = g.start
    while s.changed[g.end + 1]:
        g.end += 1
    return True


def _g_prev(s: _Side, g: _Group) -> bool:
    if g.start == 0:
        return False
    g.end = g.start - 1
    g.start = g.end
    while s.changed[g.start]:
        g.start -= 1
    return True


def _slide_down(s: _Side, g: _Group) -> bool:
    if g.end < s.n and s.rec[g.start + 1] == s.rec[g.end + 1]:
        s.changed[g.start + 1] = False
        s.changed[g.end + 1] = True
        g.start += 1
        g.end += 1
        while s.changed[g.end + 1]:
            g.end += 1
        return True
    return False


def _slide_up(s: _Side, g: _Group) -> bool:
    if g.start > 0 and s.rec[g.start] == s.rec[g.end]:
        g.start -= 1
        g.end -= 1
        s.changed[g.start + 1] = True
        s.changed[g.end + 1] = False
        while s.changed[g.start]:
            g.start -= 1
        return True
    return False


def _compact(s: _Side, o: _Side) -> None:
    g, go = _Group(), _Group()
    _g_init(s, g)
    _g_init(o, go)
    while True:
        if g.end != g.start:
            while True:
                size = g.end - g.start
                end_matching_other = -1
                while _slide_up(s, g):
                    _g_prev(o, go)
                earliest_end = g.end
                if go.end > go.start:
                    end_matching_other = g.end
                while _slide_down(s, g):
                    _g_next(o, go)
                    if go.end > go.start:
                        end_matching_other = g.end
                if size == g.end - g.start:
                    break
            if g.end != earliest_end and end_matching_other != -1:
                while go.end == go.start:
                    _slide_up(s, g)
                    _g_prev(o, go)
        if not _g_next(s, g):
            break
        _g_next(o, go)


def diff_hunks(a_ids: list[int], b_ids: list[int]) -> list[tuple[int, int, int, int]]:
    """Hunks (a_start, a_count, b_start, b_count), 0-based, as git's merge would see them."""
    a, b = _Side(a_ids), _Side(b_ids)
    _histogram(a, b)
    _compact(a, b)
    _compact(b, a)
    hunks = []
    i1 = i2 = 0
    while i1 < a.n or i2 < b.n:
        if a.changed[i1 + 1] or b.changed[i2 + 1]:
            s1, s2 = i1, i2
            while a.changed[i1 + 1]:
                i1 += 1
            while b.changed[i2 + 1]:
                i2 += 1
            hunks.append((s1, i1 - s1, s2, i2 - s2))
        else:
            i1 += 1
            i2 += 1
    return hunks
