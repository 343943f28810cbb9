"""A checkout of the target follows merge_branch exactly when it is clean, and what it is left
with is what the real `git` expects: status and diff-index empty, the index readable and equal
to HEAD. Every test runs with inotify watches on (a long-running merger) and off (a full scan)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shared.gitops import GitError, head_of, merge_branch
from shared.gitops import checkout_index
from tests.conftest import git, require_tool


@pytest.fixture(autouse=True, params=[True, False], ids=["watches", "scan"])
def watches(request):
    require_tool("git")
    checkout_index.use_watches = request.param
    yield request.param
    checkout_index.use_watches = True


def write(repo: Path, name: str, text: str, executable: bool = False) -> None:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755 if executable else 0o644)


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def layout(git_repo: Path) -> Path:
    """main with plain, executable, nested and symlinked files; branch task/big changes every kind."""
    write(git_repo, "src/app.py", "print('app')\n")
    write(git_repo, "bin/run.sh", "#!/bin/sh\necho run\n")
    write(git_repo, "tools/x.sh", "#!/bin/sh\necho x\n", executable=True)
    write(git_repo, "old/only/inside.txt", "going away\n")
    write(git_repo, "swap", "a file that becomes a folder\n")
    write(git_repo, "dirfile/a.txt", "a folder that becomes a file\n")
    write(git_repo, "docs/guide.md", "# guide\n")
    os.symlink("src/app.py", git_repo / "link")
    commit_all(git_repo, "layout")
    git(git_repo, "checkout", "-q", "-b", "task/big")
    write(git_repo, "src/app.py", "print('app, changed on the branch')\n")
    (git_repo / "bin/run.sh").chmod(0o755)
    (git_repo / "tools/x.sh").chmod(0o644)
    (git_repo / "old/only/inside.txt").unlink()
    (git_repo / "old/only").rmdir()
    (git_repo / "old").rmdir()
    (git_repo / "swap").unlink()
    write(git_repo, "swap/inner.txt", "now inside a folder\n")
    (git_repo / "dirfile/a.txt").unlink()
    (git_repo / "dirfile").rmdir()
    write(git_repo, "dirfile", "now a file\n")
    write(git_repo, "new/deep/dir/file.txt", "brand new\n")
    (git_repo / "link").unlink()
    os.symlink("docs/guide.md", git_repo / "link")
    os.symlink("new/deep/dir/file.txt", git_repo / "newlink")
    commit_all(git_repo, "change every kind of thing")
    git(git_repo, "checkout", "-q", "main")
    write(git_repo, "CHANGELOG.md", "main moved on\n")
    commit_all(git_repo, "main moves on")
    return git_repo


def assert_git_sees_head(repo: Path) -> None:
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "diff-index", "--cached", "HEAD") == ""
    staged = git(repo, "ls-files", "--stage").splitlines()
    listed = [f"{mode} {sha} 0\t{path}" for mode, _kind, rest in
              (line.split(" ", 2) for line in git(repo, "ls-tree", "-r", "HEAD").splitlines())
              for sha, path in [rest.split("\t", 1)]]
    assert staged == listed


def test_a_clean_checkout_follows_every_kind_of_change(layout: Path):
    result = merge_branch(layout, "task/big")
    assert result.status == "merged" and result.warnings == []
    assert git(layout, "rev-parse", "HEAD") == result.commit
    assert_git_sees_head(layout)
    assert (layout / "src/app.py").read_text() == "print('app, changed on the branch')\n"
    assert os.stat(layout / "bin/run.sh").st_mode & 0o111
    assert not os.stat(layout / "tools/x.sh").st_mode & 0o111
    assert not (layout / "old").exists()
    assert (layout / "swap/inner.txt").read_text() == "now inside a folder\n"
    assert (layout / "dirfile").read_text() == "now a file\n"
    assert (layout / "new/deep/dir/file.txt").read_text() == "brand new\n"
    assert os.readlink(layout / "link") == "docs/guide.md"
    assert os.readlink(layout / "newlink") == "new/deep/dir/file.txt"
    assert stat.S_ISLNK(os.lstat(layout / "newlink").st_mode)
    git(layout, "fsck", "--no-progress")


def test_several_merges_in_one_process_keep_the_checkout_clean_for_git(layout: Path):
    for n in range(3):
        git(layout, "checkout", "-q", "-b", f"task/{n}", "task/big" if n == 0 else "main")
        write(layout, f"new/deep/t{n}.txt", f"task {n}\n")
        commit_all(layout, f"task {n}")
        git(layout, "checkout", "-q", "main")
    for n in range(3):
        result = merge_branch(layout, f"task/{n}")
        assert result.status == "merged" and result.warnings == []
        assert_git_sees_head(layout)   # git status may rewrite the index: the next merge must notice


def _same_size_edit(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[:-2] + ("X" if text[-2] != "X" else "Y") + "\n")


@pytest.mark.parametrize("spoil", ["edit", "chmod", "delete", "staged", "edit-right-after-a-merge"])
def test_local_changes_keep_the_files_and_warn(layout: Path, spoil: str):
    git(layout, "checkout", "-q", "-b", "task/first")
    write(layout, "first.txt", "first\n")
    commit_all(layout, "first")
    git(layout, "checkout", "-q", "main")
    assert merge_branch(layout, "task/first").warnings == []   # the index is now one merge_branch wrote
    target = layout / "docs/guide.md"
    if spoil == "edit":
        _same_size_edit(target)
    elif spoil == "chmod":
        target.chmod(0o755)
    elif spoil == "delete":
        target.unlink()
    elif spoil == "staged":
        git(layout, "rm", "-q", "--cached", "docs/guide.md")
    else:   # same size, same clock tick as the file the merge just wrote: only content tells
        target = layout / "first.txt"
        _same_size_edit(target)
    index_before = (layout / ".git/index").read_bytes()
    result = merge_branch(layout, "task/big")
    assert result.status == "merged" and head_of(layout, "main") == result.commit
    [warning] = result.warnings
    assert "has local changes, so its files were left as they are" in warning
    assert result.commit[:12] in warning
    assert (layout / "src/app.py").read_text() == "print('app')\n"
    assert (layout / "old/only/inside.txt").exists() and not (layout / "new").exists()
    assert (layout / ".git/index").read_bytes() == index_before


def test_untracked_files_do_not_count_and_stay(layout: Path):
    write(layout, "notes.local", "mine\n")
    write(layout, "src/scratch.tmp", "mine too\n")
    result = merge_branch(layout, "task/big")
    assert result.warnings == []
    assert (layout / "notes.local").read_text() == "mine\n"
    assert (layout / "src/scratch.tmp").read_text() == "mine too\n"
    assert sorted(git(layout, "status", "--porcelain").splitlines()) == ["?? notes.local", "?? src/scratch.tmp"]
    assert git(layout, "diff-index", "--cached", "HEAD") == ""


@pytest.mark.parametrize("obstacle", ["new/deep/dir/file.txt", "old/only/mine.txt", "swap.d"])
def test_an_untracked_file_in_the_way_stops_the_follow_before_any_change(layout: Path, obstacle: str):
    if obstacle == "swap.d":   # an untracked file inside the folder that must become the file dirfile
        obstacle = "dirfile/mine.txt"
    write(layout, obstacle, "precious\n")
    index_before = (layout / ".git/index").read_bytes()
    result = merge_branch(layout, "task/big")
    assert result.status == "merged"
    if obstacle == "old/only/mine.txt":   # an emptied folder keeps the untracked file, as with git
        assert result.warnings == []
        assert (layout / obstacle).read_text() == "precious\n"
        assert_git_sees_head_but_untracked(layout, obstacle)
        return
    [warning] = result.warnings
    assert "could not follow the merge" in warning and "in the way" in warning
    assert (layout / obstacle).read_text() == "precious\n"
    assert (layout / "src/app.py").read_text() == "print('app')\n"
    assert (layout / ".git/index").read_bytes() == index_before


def assert_git_sees_head_but_untracked(repo: Path, untracked: str) -> None:
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == f"?? {untracked}"
    assert git(repo, "diff-index", "--cached", "HEAD") == ""


def test_an_index_git_wrote_in_version_4_still_follows(layout: Path):
    git(layout, "update-index", "--index-version", "4")
    result = merge_branch(layout, "task/big")
    assert result.warnings == []
    assert_git_sees_head(layout)


def test_a_clean_linked_worktree_on_the_target_follows_and_a_dirty_one_refuses(layout: Path):
    git(layout, "checkout", "-q", "-b", "person")
    elsewhere = layout.parent / "elsewhere"
    git(layout, "worktree", "add", "-q", str(elsewhere), "main")
    result = merge_branch(layout, "task/big")
    assert result.warnings == []
    assert_git_sees_head(elsewhere)
    assert os.readlink(elsewhere / "newlink") == "new/deep/dir/file.txt"
    git(layout, "checkout", "-q", "-b", "task/more", "task/big")
    write(layout, "more.txt", "more\n")
    commit_all(layout, "more")
    _same_size_edit(elsewhere / "docs/guide.md")
    before = head_of(layout, "main")
    with pytest.raises(GitError, match="checked out at .*elsewhere.* local changes"):
        merge_branch(layout, "task/more")
    assert head_of(layout, "main") == before


def test_a_linked_worktree_that_moves_onto_the_target_between_merges_follows_the_next_one(layout: Path):
    git(layout, "checkout", "-q", "-b", "person")
    elsewhere = layout.parent / "elsewhere"
    git(layout, "worktree", "add", "-q", "-b", "side", str(elsewhere), "main")
    assert merge_branch(layout, "task/big").warnings == []
    assert not (elsewhere / "newlink").exists()   # on a branch of its own: left alone
    git(elsewhere, "checkout", "-q", "main")   # its HEAD changes between two merges
    git(layout, "checkout", "-q", "-b", "task/more", "task/big")
    write(layout, "more.txt", "more\n")
    commit_all(layout, "more")
    assert merge_branch(layout, "task/more").warnings == []
    assert (elsewhere / "more.txt").read_text() == "more\n"
    assert_git_sees_head(elsewhere)
    git(elsewhere, "checkout", "-q", "side")   # and off it again: the next merge leaves it alone
    git(layout, "checkout", "-q", "-b", "task/last", "task/more")
    write(layout, "last.txt", "last\n")
    commit_all(layout, "last")
    assert merge_branch(layout, "task/last").warnings == []
    assert not (elsewhere / "last.txt").exists() and git(elsewhere, "status", "--porcelain") == ""
    # a merge into another target asks about that one: the worktree on `side` follows a merge into side
    git(layout, "checkout", "-q", "-b", "task/side", "side")
    write(layout, "side.txt", "side\n")
    commit_all(layout, "side work")
    assert merge_branch(layout, "task/side", into="side").warnings == []
    assert (elsewhere / "side.txt").read_text() == "side\n"
    moved = layout.parent / "moved"   # git moves it (its gitdir rewritten, HEAD untouched): found there
    git(layout, "worktree", "move", str(elsewhere), str(moved))
    git(layout, "checkout", "-q", "-b", "task/side2", "task/side")
    write(layout, "side2.txt", "side 2\n")
    commit_all(layout, "more side work")
    assert merge_branch(layout, "task/side2", into="side").warnings == []
    assert (moved / "side2.txt").read_text() == "side 2\n"
    assert_git_sees_head(moved)


def test_a_git_command_holding_the_index_lock_stops_the_follow_and_keeps_its_lock(layout: Path):
    lock = layout / ".git/index.lock"
    lock.write_bytes(b"git is writing")
    result = merge_branch(layout, "task/big")
    [warning] = result.warnings
    assert "could not follow the merge" in warning and "index.lock exists" in warning
    assert lock.read_bytes() == b"git is writing"
    assert (layout / "src/app.py").read_text() == "print('app')\n"
    lock.unlink()
    assert git(layout, "diff-index", "--cached", "HEAD~1") == ""   # still the tree main had before
