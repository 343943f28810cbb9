"""Ref writes with git's lock-file protocol: compare-and-set, locks left by killed writers,
core.fsync honoured (git's default flushes no reference), checked against the git command."""

from __future__ import annotations

import os
import threading
import time

import pytest
from dulwich.repo import Repo

from shared.gitops import WorktreeManager
from shared.gitops.errors import GitError
from shared.gitops.refwrite import add_ref, fsync_references, set_ref
from tests.conftest import git


def _commit(repo_path, name: str) -> bytes:
    (repo_path / name).write_text(name + "\n")
    git(repo_path, "add", "-A")
    git(repo_path, "commit", "-q", "-m", name)
    return git(repo_path, "rev-parse", "HEAD").encode()


def test_a_ref_moves_only_from_the_value_the_writer_read(git_repo):
    first = git(git_repo, "rev-parse", "main").encode()
    second = _commit(git_repo, "b.txt")
    with Repo(str(git_repo)) as repo:
        assert add_ref(repo, b"refs/heads/topic", first)
        assert not add_ref(repo, b"refs/heads/topic", second)          # exists already
        assert not set_ref(repo, b"refs/heads/topic", second, first)   # it does not hold `second`
        assert git(git_repo, "rev-parse", "topic") == first.decode()
        assert set_ref(repo, b"refs/heads/topic", first, second)
        assert not set_ref(repo, b"refs/heads/topic", first, second)   # a second writer that read `first` loses
    assert git(git_repo, "rev-parse", "topic") == second.decode()
    assert not (git_repo / ".git/refs/heads/topic.lock").exists()
    git(git_repo, "fsck", "--no-progress")


def test_a_packed_ref_is_compared_and_a_ref_inside_another_refs_name_refused(git_repo):
    first = git(git_repo, "rev-parse", "main").encode()
    git(git_repo, "branch", "packed")
    git(git_repo, "pack-refs", "--all")
    second = _commit(git_repo, "b.txt")
    with Repo(str(git_repo)) as repo:
        assert not set_ref(repo, b"refs/heads/packed", second, second)
        assert set_ref(repo, b"refs/heads/packed", first, second)
        with pytest.raises(GitError, match="refs/heads/main exists"):
            add_ref(repo, b"refs/heads/main/sub", first)
    assert git(git_repo, "rev-parse", "packed") == second.decode()


def test_head_of_a_linked_worktree_moves_its_branch(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("w1", "task/w1")
    (wt.path / "new.txt").write_text("new\n")
    sha = wm.commit_all(wt, "add new")
    assert git(git_repo, "rev-parse", "task/w1") == sha
    assert git(wt.path, "symbolic-ref", "HEAD") == "refs/heads/task/w1"
    assert git(wt.path, "status", "--porcelain") == ""


def test_a_lock_left_by_a_killed_writer_is_cleared_and_a_live_one_waited_for(git_repo):
    first = git(git_repo, "rev-parse", "main").encode()
    second = _commit(git_repo, "b.txt")
    lock = git_repo / ".git/refs/heads/main.lock"
    lock.write_text("")
    os.utime(lock, (time.time() - 3600, time.time() - 3600))   # its writer died an hour ago
    with Repo(str(git_repo)) as repo:
        assert set_ref(repo, b"refs/heads/main", second, first)
        assert git(git_repo, "rev-parse", "main") == first.decode() and not lock.exists()

        lock.write_text("")   # a writer holding it right now finishes in a moment
        threading.Timer(0.2, lock.unlink).start()
        assert set_ref(repo, b"refs/heads/main", first, second)
    assert git(git_repo, "rev-parse", "main") == second.decode()


def test_a_message_writes_a_reflog_line_git_reads(git_repo):
    first = git(git_repo, "rev-parse", "main").encode()
    second = _commit(git_repo, "b.txt")
    with Repo(str(git_repo)) as repo:
        assert set_ref(repo, b"refs/heads/main", second, first, message=b"yokeflow: merge x")
    assert "yokeflow: merge x" in git(git_repo, "reflog", "show", "-1", "main")


@pytest.mark.parametrize("value, flushed", [
    (None, False), ("", False), ("none", False), ("pack,pack-metadata", False), ("objects,index", False),
    ("-reference", False), ("reference", True), ("committed", True), ("added", True), ("all", True),
    ("none,reference", True), ("pack, reference", True), ("ref", True), ("reference ,pack", False),
    ("-,reference", False),
])
def test_core_fsync_names_the_components_git_flushes(value, flushed):
    assert fsync_references(value) is flushed


def test_a_ref_write_is_flushed_only_when_core_fsync_asks(git_repo, monkeypatch):
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real_fsync(fd))[1])
    first = git(git_repo, "rev-parse", "main").encode()
    second = _commit(git_repo, "b.txt")
    with Repo(str(git_repo)) as repo:
        assert set_ref(repo, b"refs/heads/main", second, first)
        assert flushed == []   # git's default: references are not flushed
        git(git_repo, "config", "core.fsync", "committed")
        assert set_ref(repo, b"refs/heads/main", first, second)
        assert len(flushed) == 1


def test_staging_follows_a_change_of_the_ignore_settings_as_git_does(git_repo, tmp_path):
    """The configuration is read once per change of its files: a commit made after core.excludesFile
    is set, changed or dropped stages what the git command would."""
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("w1", "task/w1")
    excludes = tmp_path / "excludes"
    excludes.write_text("*.secret\n")
    git(git_repo, "config", "core.excludesFile", str(excludes))
    (wt.path / "a.secret").write_text("s\n")
    (wt.path / "a.txt").write_text("a\n")
    first = wm.commit_all(wt, "one")
    assert git(wt.path, "ls-files").split() == git(wt.path, "ls-files", "--cached").split()
    assert "a.secret" not in git(git_repo, "ls-tree", "-r", "--name-only", first).split()
    assert git(wt.path, "status", "--porcelain", "--ignored").split() == ["!!", "a.secret"]
    git(git_repo, "config", "--unset", "core.excludesFile")
    (wt.path / "b.txt").write_text("b\n")
    second = wm.commit_all(wt, "two")
    assert "a.secret" in git(git_repo, "ls-tree", "-r", "--name-only", second).split()
    assert git(wt.path, "status", "--porcelain") == ""
