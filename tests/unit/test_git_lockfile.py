"""git's `<file>.lock`, as references and the index take it (shared/gitops/locks.py LockFile)."""

from __future__ import annotations

import pytest
from dulwich.file import FileLocked

from shared.gitops.fastindex import IndexLock
from shared.gitops.locks import LockFile


def test_a_committed_lock_replaces_the_file_and_leaves_no_lock(tmp_path):
    target = tmp_path / "ref"
    target.write_bytes(b"old\n")
    with LockFile(str(target)) as lock:
        lock.commit(b"new\n" * 50_000)  # larger than one write may take
    assert target.read_bytes() == b"new\n" * 50_000
    assert not (tmp_path / "ref.lock").exists()


def test_a_lock_left_without_commit_is_removed_and_the_file_kept(tmp_path):
    target = tmp_path / "ref"
    target.write_bytes(b"old\n")
    with pytest.raises(RuntimeError):
        with LockFile(bytes(target)):
            raise RuntimeError("the writer failed midway")
    assert target.read_bytes() == b"old\n" and not (tmp_path / "ref.lock").exists()


def test_a_held_lock_is_refused_and_stays_its_holders(tmp_path):
    target = tmp_path / "ref"
    held = LockFile(str(target))
    with pytest.raises(FileLocked) as refused:
        LockFile(str(target))
    assert refused.value.args == (str(target), str(target) + ".lock")
    held.commit(b"x\n")
    assert target.read_bytes() == b"x\n"


def test_a_held_index_lock_is_refused_with_what_to_do(tmp_path):
    index = tmp_path / "index"
    (tmp_path / "index.lock").write_bytes(b"")
    with pytest.raises(OSError, match="index.lock exists: another git process is using this checkout"):
        IndexLock(str(index))
    assert (tmp_path / "index.lock").exists()  # someone else's: left alone
