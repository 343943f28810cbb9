"""`yokeflow git merge` and `yokeflow worktrees` through the real CLI process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shared.gitops import WorktreeManager, head_of
from tests.conftest import git, require_tool

ROOT = Path(__file__).resolve().parents[2]


def yokeflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yokeflow", *args], cwd=ROOT, capture_output=True, text=True)


def _branch(repo: Path, name: str, file: str, text: str) -> None:
    git(repo, "checkout", "-q", "-b", name)
    (repo / file).write_text(text)
    git(repo, "add", file)
    git(repo, "commit", "-q", "-m", name)
    git(repo, "checkout", "-q", "main")


def test_merge_json_and_exit_codes(git_repo):
    require_tool("git")
    _branch(git_repo, "task/1-a", "a.txt", "a\n")
    proc = yokeflow("git", "merge", "--repo", str(git_repo), "task/1-a", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == {"status": "merged", "commit": head_of(git_repo, "main"),
                    "tree": git(git_repo, "rev-parse", "HEAD^{tree}"), "conflicts": []}
    again = json.loads(yokeflow("git", "merge", "--repo", str(git_repo), "task/1-a", "--json").stdout)
    assert again["status"] == "up_to_date" and again["commit"] == data["commit"]


def test_conflict_exits_3_and_leaves_target(git_repo):
    require_tool("git")
    _branch(git_repo, "task/2-b", "README.md", "theirs\n")
    (git_repo / "README.md").write_text("ours\n")
    git(git_repo, "commit", "-q", "-am", "ours")
    before = head_of(git_repo, "main")
    proc = yokeflow("git", "merge", "--repo", str(git_repo), "task/2-b", "--json")
    assert proc.returncode == 3
    data = json.loads(proc.stdout)
    assert data["status"] == "conflict" and data["commit"] is None and data["tree"] is None
    assert data["conflicts"][0]["path"] == "README.md" and data["conflicts"][0]["hunks"]
    assert head_of(git_repo, "main") == before


def test_bad_input_is_one_line_exit_1(git_repo, tmp_path):
    proc = yokeflow("git", "merge", "--repo", str(git_repo), "task/missing")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "task/missing" in proc.stderr
    proc = yokeflow("git", "merge", "--repo", str(tmp_path), "x", "--json")
    assert proc.returncode == 1 and "not a git repository" in proc.stderr


def test_worktrees_list_and_prune(git_repo):
    require_tool("git")
    wm = WorktreeManager(git_repo)
    wm.acquire("t1", "task/1-x")
    listed = json.loads(yokeflow("worktrees", "list", "--repo", str(git_repo), "--json").stdout)
    assert [(w["name"], w["branch"]) for w in listed] == [("t1", "task/1-x")]
    assert "nothing to prune" in yokeflow("worktrees", "prune", "--repo", str(git_repo)).stdout
    proc = yokeflow("worktrees", "prune", "--repo", str(git_repo), "--older-than", "0s")
    assert proc.returncode == 0 and "t1" in proc.stdout
    assert wm.list() == []
    assert yokeflow("worktrees", "prune", "--repo", str(git_repo), "--older-than", "soon").returncode == 2
