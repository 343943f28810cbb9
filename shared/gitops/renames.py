"""Rename detection with git's rules: exact renames first, then content similarity
(diffcore-delta's span hashing, 50% threshold) for the sources that matter to the merge."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable

from shared.gitops.xdiff import is_binary

MAX_SCORE = 60000
MIN_SCORE = 30000  # git's default -M50%
_HASHBASE = 107927
_MASK = 0xFFFFFFFF

Entry = tuple[int, bytes]  # (mode, blob sha)


def span_hashes(data: bytes) -> Counter:
    """Byte counts per chunk hash; a chunk ends at a newline or after 64 bytes (git's diffcore-delta)."""
    text = not is_binary(data)
    counts: Counter = Counter()
    a1 = a2 = n = 0
    size = len(data)
    i = 0
    while i < size:
        c = data[i]
        i += 1
        if text and c == 13 and i < size and data[i] == 10:
            continue
        old1 = a1
        a1 = ((a1 << 7) ^ (a2 >> 25)) & _MASK
        a2 = ((a2 << 7) ^ (old1 >> 25)) & _MASK
        a1 = (a1 + c) & _MASK
        n += 1
        if n < 64 and c != 10:
            continue
        counts[((a1 + a2 * 0x61) & _MASK) % _HASHBASE] += n
        n = a1 = a2 = 0
    if n:
        counts[((a1 + a2 * 0x61) & _MASK) % _HASHBASE] += n
    return counts


def similarity(src: bytes, dst: bytes, src_hashes: Counter | None = None, dst_hashes: Counter | None = None) -> int:
    """git's estimate_similarity score (0..MAX_SCORE)."""
    max_size, base_size = max(len(src), len(dst)), min(len(src), len(dst))
    if not dst or max_size * (MAX_SCORE - MIN_SCORE) < (max_size - base_size) * MAX_SCORE:
        return 0
    sh = src_hashes if src_hashes is not None else span_hashes(src)
    dh = dst_hashes if dst_hashes is not None else span_hashes(dst)
    copied = sum(min(cnt, dh.get(h, 0)) for h, cnt in sh.items())
    return copied * MAX_SCORE // max_size


def detect_renames(
    deleted: dict[str, Entry],
    added: dict[str, Entry],
    relevant: Iterable[str],
    read_blob: Callable[[bytes], bytes],
) -> dict[str, str]:
    """Pairs source -> destination. Exact renames over all sources; inexact only for `relevant` ones."""
    renames: dict[str, str] = {}
    by_sha: dict[bytes, list[str]] = {}
    for dst, (mode, sha) in sorted(added.items()):
        if _is_file(mode):
            by_sha.setdefault(sha, []).append(dst)
    used_dst: set[str] = set()
    for src, (mode, sha) in sorted(deleted.items()):
        if not _is_file(mode):
            continue
        candidates = [d for d in by_sha.get(sha, []) if d not in used_dst]
        if not candidates:
            continue
        same_base = [d for d in candidates if os.path.basename(d) == os.path.basename(src)]
        dst = (same_base or candidates)[0]
        renames[src] = dst
        used_dst.add(dst)
    # like git, only regular files are renamed with edits; symlinks only by exact match
    sources = sorted(s for s in set(relevant) if s in deleted and s not in renames and _is_regular(deleted[s][0]))
    dests = sorted(d for d in added if d not in used_dst and _is_regular(added[d][0]))
    if not sources or not dests:
        return renames
    src_data = {s: read_blob(deleted[s][1]) for s in sources}
    src_hash = {s: span_hashes(d) for s, d in src_data.items() if d}
    scored = []
    for dst in dests:
        data = read_blob(added[dst][1])
        if not data:
            continue
        dh = span_hashes(data)
        best = []
        for src in sources:
            if not src_data[src]:
                continue
            score = similarity(src_data[src], data, src_hash[src], dh)
            if score >= MIN_SCORE:
                same = 1 if os.path.basename(src) == os.path.basename(dst) else 0
                best.append((score, same, src))
        best.sort(key=lambda t: (-t[0], -t[1]))
        scored.extend((score, same, src, dst) for score, same, src in best[:4])
    scored.sort(key=lambda t: (-t[0], -t[1]))
    for score, _same, src, dst in scored:
        if src in renames or dst in used_dst:
            continue
        renames[src] = dst
        used_dst.add(dst)
    return renames


def _is_file(mode: int) -> bool:
    return (mode & 0o170000) in (0o100000, 0o120000)


def _is_regular(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000
