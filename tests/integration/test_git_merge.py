"""merge_branch behaviour a caller relies on: idempotence, the compare-and-swap race, the
person's checkout, squash, the validation gate and bad input."""

from __future__ import annotations

import pytest

import shared.gitops.merge as merge_module
from shared.gitops import GitError, WorktreeManager, head_of, merge_branch
from tests.conftest import git, require_tool


@pytest.fixture(autouse=True)
def _git_cli():
    require_tool("git")


def _branch_with(repo, branch, files: dict[str, str], start="main"):
    git(repo, "checkout", "-q", "-b", branch, start)
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"work on {branch}")
    git(repo, "checkout", "-q", "main")


def _commit_on_main(repo, name, text):
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"main: {name}")


def test_merge_twice_gives_one_merge_commit(git_repo):
    _branch_with(git_repo, "task/1", {"a.txt": "a\n"})
    _commit_on_main(git_repo, "m.txt", "m\n")
    first = merge_branch(git_repo, "task/1")
    assert first.status == "merged" and first.warnings == []
    assert git(git_repo, "rev-parse", "HEAD") == first.commit
    assert git(git_repo, "rev-parse", "HEAD^2") == head_of(git_repo, "task/1")
    second = merge_branch(git_repo, "task/1")
    assert second.status == "up_to_date" and second.commit == first.commit and second.tree == first.tree
    _commit_on_main(git_repo, "later.txt", "later\n")  # still finds its own merge after main moved on
    assert merge_branch(git_repo, "task/1").commit == first.commit
    assert git(git_repo, "log", "--merges", "--format=%H").splitlines() == [first.commit]
    assert second.to_json() == {"status": "up_to_date", "commit": first.commit, "tree": first.tree, "conflicts": []}


def test_squash_is_one_commit_and_idempotent(git_repo):
    _branch_with(git_repo, "task/2", {"a.txt": "a\n", "b.txt": "b\n"})
    first = merge_branch(git_repo, "task/2", mode="squash", message="task 2: two files")
    assert first.status == "merged"
    assert git(git_repo, "rev-list", "--parents", "-n1", "HEAD").count(" ") == 1
    assert git(git_repo, "log", "-1", "--format=%s") == "task 2: two files"
    assert merge_branch(git_repo, "task/2", mode="squash").commit == first.commit


def test_lost_race_is_merged_again_on_the_new_tip(git_repo, monkeypatch):
    _branch_with(git_repo, "task/3", {"a.txt": "a\n"})
    real_commit = merge_module._new_commit
    moved = []

    def commit_then_someone_moves_main(*args, **kwargs):
        commit = real_commit(*args, **kwargs)
        if not moved:  # between our read of main and our ref update another merger lands a commit
            _commit_on_main(git_repo, "rival.txt", "rival\n")
            moved.append(git(git_repo, "rev-parse", "HEAD"))
        return commit

    monkeypatch.setattr(merge_module, "_new_commit", commit_then_someone_moves_main)
    result = merge_branch(git_repo, "task/3")
    assert result.status == "merged"
    assert git(git_repo, "rev-parse", f"{result.commit}^1") == moved[0]  # built on the rival's commit
    assert set(git(git_repo, "ls-tree", "--name-only", result.commit).split()) >= {"a.txt", "rival.txt"}


def test_conflict_moves_nothing_and_lists_hunks(git_repo):
    _branch_with(git_repo, "task/4", {"README.md": "# theirs\n"})
    _commit_on_main(git_repo, "README.md", "# ours\n")
    before = head_of(git_repo, "main")
    result = merge_branch(git_repo, "task/4")
    assert result.status == "conflict" and result.commit is None and head_of(git_repo, "main") == before
    [conflict] = result.conflicts
    assert conflict["path"] == "README.md" and conflict["kind"] == "content"
    assert conflict["hunks"][0]["ours"] == "# ours\n" and conflict["hunks"][0]["theirs"] == "# theirs\n"
    assert conflict["hunks"][0]["base"] == "# test\n"
    assert git(git_repo, "status", "--porcelain") == ""


def test_dirty_checkout_is_left_alone_with_a_warning(git_repo):
    _branch_with(git_repo, "task/5", {"new.txt": "new\n"})
    (git_repo / "README.md").write_text("my unsaved edit\n")
    result = merge_branch(git_repo, "task/5")
    assert result.status == "merged" and head_of(git_repo, "main") == result.commit
    assert "local changes" in result.warnings[0]
    assert (git_repo / "README.md").read_text() == "my unsaved edit\n"
    assert not (git_repo / "new.txt").exists()


def test_clean_checkout_follows_and_untracked_files_survive(git_repo):
    _branch_with(git_repo, "task/6", {"new.txt": "new\n"})
    (git_repo / "notes.local").write_text("untracked\n")
    result = merge_branch(git_repo, "task/6")
    assert result.warnings == []
    assert (git_repo / "new.txt").read_text() == "new\n"
    assert (git_repo / "notes.local").read_text() == "untracked\n"
    assert git(git_repo, "status", "--porcelain") == "?? notes.local"


def test_validate_command_gates_the_ref(git_repo):
    _branch_with(git_repo, "task/7", {"check.txt": "bad\n"})
    before = head_of(git_repo, "main")
    rejected = merge_branch(git_repo, "task/7", validate_command="grep -q good check.txt || { echo check failed; exit 1; }")
    assert rejected.status == "rejected" and "check failed" in rejected.output
    assert head_of(git_repo, "main") == before
    ok = merge_branch(git_repo, "task/7", validate_command="test -f check.txt && test -f README.md")
    assert ok.status == "merged"


def test_the_validate_command_runs_in_the_sandbox(git_repo, monkeypatch):
    require_tool("bwrap")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-validate-leak")
    _branch_with(git_repo, "task/9", {"check.txt": "good\n"})
    escape = git_repo.parent / "validate-escape.txt"
    rejected = merge_branch(git_repo, "task/9", validate_command=f"env; echo x > {escape}; ls {git_repo}")
    assert rejected.status == "rejected" and not escape.exists()
    assert "leak" not in rejected.output and "No such file" in rejected.output


def test_target_checked_out_in_a_dirty_linked_worktree_is_refused(git_repo):
    _branch_with(git_repo, "task/8", {"x.txt": "x\n"})
    git(git_repo, "checkout", "-q", "-b", "person")
    elsewhere = git_repo.parent / "elsewhere"
    git(git_repo, "worktree", "add", "-q", str(elsewhere), "main")
    (elsewhere / "README.md").write_text("dirty\n")
    before = head_of(git_repo, "main")
    with pytest.raises(GitError, match="checked out at .*elsewhere.* local changes"):
        merge_branch(git_repo, "task/8")
    assert head_of(git_repo, "main") == before


@pytest.mark.parametrize("branch, into, match", [
    ("task/none", "main", "branch 'task/none' does not exist"),
    ("main", "release", "branch 'release' does not exist"),
])
def test_missing_branches_are_clear_errors(git_repo, branch, into, match):
    before = head_of(git_repo, "main")
    with pytest.raises(GitError, match=match):
        merge_branch(git_repo, branch, into=into)
    assert head_of(git_repo, "main") == before


def test_repository_without_commits_and_non_repository(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    with pytest.raises(GitError, match="no commits yet"):
        merge_branch(empty, "task/1")
    with pytest.raises(GitError, match="not a git repository"):
        merge_branch(tmp_path, "task/1")


def test_unrelated_histories_are_refused(git_repo):
    git(git_repo, "checkout", "-q", "--orphan", "alien")
    git(git_repo, "commit", "-q", "-m", "alien root")
    git(git_repo, "checkout", "-q", "main")
    with pytest.raises(GitError, match="share no history"):
        merge_branch(git_repo, "alien")


def test_epic_branch_gets_main_before_its_next_task(git_repo):
    wm = WorktreeManager(git_repo)
    wt = wm.acquire("epic-1", "epic/1-auth")
    (wt.path / "auth.py").write_text("def login(): ...\n")
    wm.commit_all(wt, "task 1")
    assert merge_branch(git_repo, "epic/1-auth").status == "merged"
    _commit_on_main(git_repo, "other.txt", "from another epic\n")
    wt = wm.acquire("epic-1", "epic/1-auth")  # next task of the epic starts with main merged in
    assert (wt.path / "other.txt").exists()
    (wt.path / "auth.py").write_text("def login(): return True\n")
    wm.commit_all(wt, "task 2")
    second = merge_branch(git_repo, "epic/1-auth")
    assert second.status == "merged"
    assert (git_repo / "auth.py").read_text() == "def login(): return True\n"


def test_a_shallow_clone_is_worked_and_merged_like_a_complete_one(git_repo, tmp_path):
    """`git clone --depth 2`: the commits at its edge are roots, as git takes them (.git/shallow).
    Walks that went past them (generation numbers, merge bases, the first-parent scans) met an
    object the clone does not have: the first acquire failed with a bare KeyError."""
    from shared.gitops import find_commit
    from shared.gitops.repo import merge_bases, open_repo, read_ref
    for i in range(5):
        _commit_on_main(git_repo, f"h{i}.txt", f"{i}\n")
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "2", f"file://{git_repo}", str(clone))
    assert (clone / ".git" / "shallow").is_file()
    wm = WorktreeManager(clone)
    for i in range(3):
        for lane in ("a", "b"):
            wt = wm.acquire(f"lane-{lane}", f"epic/{lane}")
            (wt.path / f"{lane}{i}.txt").write_text(f"{lane}{i}\n")
            wm.commit_all(wt, f"task {lane}{i}")
            result = merge_branch(clone, f"epic/{lane}", message=f"merge {lane}{i}\n\nYokeFlow-Task: {lane}{i}\n")
            assert result.status == "merged", result
    assert {f"{lane}{i}.txt" for lane in "ab" for i in range(3)} <= set(git(clone, "ls-tree", "--name-only", "main").split())
    with open_repo(clone) as repo:
        for lane in ("a", "b"):
            ours = sorted(c.decode() for c in merge_bases(repo, read_ref(repo, "main"), read_ref(repo, f"epic/{lane}")))
            assert ours == sorted(git(clone, "merge-base", "--all", "main", f"epic/{lane}").split())
    assert find_commit(clone, "main", {"YokeFlow-Task": "a0"}) is not None
    assert find_commit(clone, "main", {"YokeFlow-Task": "never"}) is None  # scans to the clone's edge, no further
    git(clone, "fsck", "--no-progress")
