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

    def other_writer_finishes():
        time.sleep(0.1)
        with open(path, "wb") as f:
            f.write(blob.as_legacy_object())
        os.unlink(lock)

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
