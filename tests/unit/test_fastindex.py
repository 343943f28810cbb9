"""fastindex on in-memory index bytes: parsing, entry packing, splicing (checked against a fresh
build with hypothesis) and refusal of what it must not rewrite."""

from __future__ import annotations

import hashlib
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.gitops.fastindex import UnsupportedIndex, _splice, is_racy, pack_entry, parse_index, stat_matches


def fake_stat(n: int, mode: int = 0o100644, size: int = 10) -> SimpleNamespace:
    return SimpleNamespace(st_mode=mode, st_ino=1000 + n, st_dev=7, st_uid=1, st_gid=2, st_size=size,
                           st_mtime_ns=1_700_000_000_123_456_789 + n, st_ctime_ns=1_700_000_000_000_000_001 + n)


def entry(path: bytes, n: int = 0, mode: int = 0o100644) -> bytes:
    return pack_entry(path, fake_stat(n, mode), hashlib.sha1(path + bytes([n % 256])).digest(), mode)


def index_bytes(entries: dict[bytes, bytes], extensions: bytes = b"", version: int = 2) -> bytes:
    body = struct.pack(">4sII", b"DIRC", version, len(entries)) + b"".join(entries[p] for p in sorted(entries))
    body += extensions
    return body + hashlib.sha1(body).digest()


def parse(data: bytes):
    return parse_index("index", data, fake_stat(0, size=len(data)))


def test_entries_are_padded_with_one_to_eight_nuls_to_a_multiple_of_eight():
    for length in range(1, 20):
        e = entry(b"x" * length)
        assert len(e) % 8 == 0
        assert e[62:62 + length] == b"x" * length
        assert 1 <= len(e) - 62 - length <= 8 and e[62 + length:] == b"\0" * (len(e) - 62 - length)


def test_parse_keeps_raw_entries_mode_and_sha():
    entries = {b"a.txt": entry(b"a.txt"), b"bin/run": entry(b"bin/run", 1, 0o100755),
               b"link": entry(b"link", 2, 0o120000)}
    index = parse(index_bytes(entries))
    assert index.paths == [b"a.txt", b"bin/run", b"link"]
    assert index.raw == entries
    assert index.listing()[b"bin/run"] == struct.pack(">I", 0o100755) + entries[b"bin/run"][40:60]
    assert index.directories() == {b"", b"bin"}
    assert index.under(b"bin") == [b"bin/run"]


def test_a_name_of_4095_bytes_or_more_is_read_up_to_its_nul():
    long = b"d/" + b"n" * 5000
    index = parse(index_bytes({long: entry(long), b"z": entry(b"z")}))
    assert index.paths == [long, b"z"]


def test_optional_extensions_are_skipped_and_required_ones_refused():
    entries = {b"a": entry(b"a")}
    cache_tree = b"\0" + b"1 0\n" + b"\x11" * 20
    tree_ext = b"TREE" + struct.pack(">I", len(cache_tree)) + cache_tree
    assert parse(index_bytes(entries, tree_ext)).paths == [b"a"]
    with pytest.raises(UnsupportedIndex, match="required index extension"):
        parse(index_bytes(entries, b"link" + struct.pack(">I", 20) + b"\0" * 20))


@pytest.mark.parametrize("version", [3, 4])
def test_other_versions_are_refused(version):
    with pytest.raises(UnsupportedIndex, match=f"version {version}"):
        parse(index_bytes({b"a": entry(b"a")}, version=version))


def test_a_corrupt_checksum_and_unmerged_entries_are_refused():
    data = bytearray(index_bytes({b"a": entry(b"a")}))
    data[-1] ^= 1
    with pytest.raises(UnsupportedIndex, match="checksum"):
        parse(bytes(data))
    conflicted = bytearray(entry(b"a"))
    conflicted[60] |= 0x10   # stage 1
    with pytest.raises(UnsupportedIndex, match="unmerged"):
        parse(index_bytes({b"a": bytes(conflicted)}))


names = st.lists(st.sampled_from([b"a", b"b", b"a/b", b"a/c", b"ab", b"a-b", b"b/a/c", b"c", b"zz/top", b"m"]),
                 unique=True)


@settings(max_examples=300, deadline=None)
@given(names, names, names, st.integers(0, 200))
def test_splice_equals_building_the_index_again(present, removed, changed, salt):
    entries = {p: entry(p) for p in present}
    index = parse(index_bytes(entries))
    gone = set(removed) & set(present)
    updates = {p: entry(p, salt, 0o100755 if salt % 2 else 0o100644) for p in changed if p not in gone}
    paths, raw, body, starts = _splice(index, gone, updates)
    expected = {p: e for p, e in entries.items() if p not in gone} | updates
    fresh = parse(index_bytes(expected))
    assert paths == fresh.paths
    assert raw == fresh.raw
    assert body == fresh.entries
    assert starts == fresh.starts


def test_an_entry_written_in_the_index_files_own_tick_or_later_is_racy():
    e = entry(b"a", 0)   # mtime 1_700_000_000 s + 123_456_789 ns
    assert is_racy(e, (1_700_000_000, 123_456_789))
    assert is_racy(e, (1_700_000_000, 100))
    assert not is_racy(e, (1_700_000_000, 123_456_790))
    assert not is_racy(e, (1_700_000_001, 0))


@pytest.mark.parametrize("field, value", [
    ("st_mtime_ns", 1_700_000_000_123_456_790), ("st_ctime_ns", 1), ("st_ino", 5), ("st_size", 11),
    ("st_uid", 9), ("st_mode", 0o100755), ("st_mode", 0o120777),
])
def test_stat_matches_compares_what_git_compares(field, value):
    e = entry(b"a", 0)
    assert stat_matches(e, fake_stat(0))
    changed = fake_stat(0)
    setattr(changed, field, value)
    assert not stat_matches(e, changed)
    other_device = fake_stat(0)
    other_device.st_dev = 99   # git does not compare st_dev (it differs across NFS remounts)
    assert stat_matches(e, other_device)
