"""Loose object writes from several processes at once (agents often create identical blobs)."""

from __future__ import annotations

import os
import threading
import time

import pytest
from dulwich.objects import Blob
from dulwich.repo import Repo

from shared.gitops.objects import write_object


def _paths(repo: Repo, blob: Blob) -> tuple[str, str]:
    hexsha = blob.id.decode()
    path = os.path.join(repo.object_store.path, hexsha[:2], hexsha[2:])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path, path + ".lock"


def test_a_write_racing_another_writer_of_the_same_object_waits_for_it(git_repo):
    repo = Repo(str(git_repo))
    blob = Blob.from_string(b"the same content from two agents\n")
    path, lock = _paths(repo, blob)
    open(lock, "wb").close()  # another process is writing this very object

    def other_writer_finishes():  # as git and dulwich do: the content goes into the lock, renamed into place
        time.sleep(0.1)
        with open(lock, "wb") as f:
            f.write(blob.as_legacy_object())
        os.rename(lock, path)

    threading.Thread(target=other_writer_finishes).start()
    write_object(repo.object_store, blob)
    assert repo.object_store[blob.id].data == blob.data


def test_a_lock_left_by_a_dead_writer_is_cleared_and_a_live_one_is_named(git_repo):
    repo = Repo(str(git_repo))
    stale = Blob.from_string(b"written by a process that died\n")
    path, lock = _paths(repo, stale)
    open(lock, "wb").close()
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    write_object(repo.object_store, stale)
    assert repo.object_store[stale.id].data == stale.data and not os.path.exists(lock)

    held = Blob.from_string(b"a writer that never finishes\n")
    _, lock = _paths(repo, held)
    open(lock, "wb").close()
    with pytest.raises(OSError, match="remove the file"):
        write_object(repo.object_store, held, wait_s=0.2)


def test_a_merge_goes_past_a_ref_lock_left_by_a_killed_merger(git_repo):
    from shared.gitops import merge_branch
    from tests.conftest import git

    git(git_repo, "checkout", "-q", "-b", "task/x")
    (git_repo / "x.txt").write_text("x\n")
    git(git_repo, "add", "-A")
    git(git_repo, "commit", "-q", "-m", "x")
    git(git_repo, "checkout", "-q", "main")
    lock = git_repo / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text("")  # the merger died between taking main's lock and renaming it into place
    os.utime(lock, (time.time() - 3600, time.time() - 3600))
    result = merge_branch(git_repo, "task/x")
    assert result.status == "merged" and git(git_repo, "rev-parse", "main") == result.commit
    assert not lock.exists()


def test_a_ref_lock_in_use_is_waited_for_then_named(git_repo):
    from dulwich.file import FileLocked

    from shared.gitops.locks import REF_LOCK_STALE_S, retry_locked

    lock = git_repo / "held.lock"
    lock.write_text("")
    calls = []

    def action():
        calls.append(1)
        if lock.exists():
            raise FileLocked(str(git_repo / "held"), str(lock))
        return "done"

    threading.Timer(0.1, lock.unlink).start()  # the other writer finishes
    assert retry_locked(action, stale_after_s=REF_LOCK_STALE_S) == "done" and len(calls) > 1
    lock.write_text("")
    with pytest.raises(OSError, match="held.lock has been held for 0.2s"):
        retry_locked(action, stale_after_s=REF_LOCK_STALE_S, wait_s=0.2)
