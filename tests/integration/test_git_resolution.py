"""Resolving a conflict inside a task's worktree: the target is merged in with markers, the
next commit is the merge, and the branch then merges back cleanly; checked with `git`."""

from __future__ import annotations

import pytest

from shared.gitops import (
    GitError,
    WorktreeManager,
    abort_resolution,
    begin_resolution,
    merge_branch,
    unresolved,
)
from shared.gitops.resolution import merge_in_progress
from tests.conftest import git, require_tool


@pytest.fixture(autouse=True)
def _git_cli():
    require_tool("git")


def _commit_on_main(repo, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def _conflicting_task(git_repo):
    """A task branch and main that both rewrote greeting.txt and both added notes.md."""
    _commit_on_main(git_repo, {"greeting.txt": "hello\n", "shared.txt": "one\ntwo\nthree\n"}, "base")
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t", "task/t")
    (wt.path / "greeting.txt").write_text("hello from the task\n")
    (wt.path / "notes.md").write_text("task notes\n")
    (wt.path / "shared.txt").write_text("one\ntwo\nthree\nfour (task)\n")
    wm.commit_all(wt, "task work")
    _commit_on_main(git_repo, {"greeting.txt": "hello from main\n", "notes.md": "main notes\n",
                               "shared.txt": "zero (main)\none\ntwo\nthree\n"}, "main moves")
    assert merge_branch(git_repo, "task/t").status == "conflict"
    return wm, wt


def test_markers_are_left_like_git_and_the_commit_is_the_merge(git_repo):
    wm, wt = _conflicting_task(git_repo)
    wt = wm.acquire("t", "task/t", update_from_target=False)  # a conflict does not stop the acquire
    task_head = git(wt.path, "rev-parse", "HEAD")
    res = begin_resolution(wt.path, "main")
    main_tip = git(git_repo, "rev-parse", "main")
    assert res.target_commit == main_tip and merge_in_progress(wt.path) == main_tip
    assert {c["path"] for c in res.conflicts} == {"greeting.txt", "notes.md"}
    assert res.marked_files == ["greeting.txt", "notes.md"]
    greeting = (wt.path / "greeting.txt").read_text()
    assert "<<<<<<< task/t\nhello from the task\n=======\nhello from main\n>>>>>>> main\n" == greeting
    assert "task notes" in (wt.path / "notes.md").read_text() and "main notes" in (wt.path / "notes.md").read_text()
    # the clean part of the merge is already in place
    assert (wt.path / "shared.txt").read_text() == "zero (main)\none\ntwo\nthree\nfour (task)\n"
    assert unresolved(wt.path, res.marked_files) == ["greeting.txt", "notes.md"]

    (wt.path / "greeting.txt").write_text("hello from the task and main\n")
    (wt.path / "notes.md").write_text("task notes\nmain notes\n")
    assert unresolved(wt.path, res.marked_files) == []
    commit = wm.commit_all(wt, "Merge main into task/t")
    assert merge_in_progress(wt.path) is None
    parents = git(git_repo, "rev-list", "--parents", "-n", "1", commit).split()[1:]
    assert parents == [task_head, main_tip]
    assert git(wt.path, "status", "--porcelain") == ""

    result = merge_branch(git_repo, "task/t")
    assert result.status == "merged"
    assert git(git_repo, "show", "main:greeting.txt") == "hello from the task and main"
    assert git(git_repo, "show", "main:shared.txt").splitlines()[0] == "zero (main)"


def test_the_real_git_sees_the_merge_under_way(git_repo):
    wm, wt = _conflicting_task(git_repo)
    wt = wm.acquire("t", "task/t", update_from_target=False)
    begin_resolution(wt.path, "main")
    (wt.path / "greeting.txt").write_text("resolved\n")
    (wt.path / "notes.md").write_text("resolved\n")
    git(wt.path, "add", "-A")
    git(wt.path, "commit", "-q", "--no-edit")  # git concludes the merge dulwich began
    assert len(git(wt.path, "rev-list", "--parents", "-n", "1", "HEAD").split()) == 3
    assert git(wt.path, "log", "-1", "--format=%s") == "Merge branch 'main' into task/t"


def test_abort_and_a_crash_both_return_to_the_branch_head(git_repo):
    wm, wt = _conflicting_task(git_repo)
    wt = wm.acquire("t", "task/t", update_from_target=False)
    head = git(wt.path, "rev-parse", "HEAD")
    begin_resolution(wt.path, "main")
    (wt.path / "scratch.txt").write_text("half done\n")
    abort_resolution(wt.path)
    assert merge_in_progress(wt.path) is None
    assert git(wt.path, "status", "--porcelain") == "" and git(wt.path, "rev-parse", "HEAD") == head
    assert (wt.path / "greeting.txt").read_text() == "hello from the task\n"
    with pytest.raises(GitError, match="no merge is under way"):
        abort_resolution(wt.path)

    begin_resolution(wt.path, "main")  # then the process dies; acquiring again starts over
    again = wm.acquire("t", "task/t", update_from_target=False)
    assert merge_in_progress(again.path) is None and git(again.path, "status", "--porcelain") == ""


def test_nothing_to_resolve_when_the_branch_already_has_the_target(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("t", "task/t")
    res = begin_resolution(wt.path, "main")
    assert res.up_to_date and res.conflicts == [] and merge_in_progress(wt.path) is None
    with pytest.raises(GitError, match="does not exist"):
        begin_resolution(wt.path, "nope")
