"""Creating a repository from a folder of files (the demo's seed, a new project)."""

from __future__ import annotations

from pathlib import Path

from dulwich.repo import Repo

from shared.gitops.checkout import stage_all
from shared.gitops.errors import GitError
from shared.gitops.merge import make_commit
from shared.gitops.refwrite import add_ref
from shared.gitops.repo import branch_ref


def create_repository(path: Path | str, *, message: str = "Initial commit", branch: str = "main",
                      author: str = "YokeFlow <yokeflow@yokeflow.dev>") -> str:
    """`git init -b <branch>` + `git add -A` + `git commit` on a folder; returns the commit id."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    if (root / ".git").exists():
        raise GitError(f"{root} is already a git repository; use it as it is or pick an empty folder")
    with Repo.init(str(root)) as repo:
        repo.refs.set_symbolic_ref(b"HEAD", branch_ref(branch))
        tree = stage_all(repo)
        commit = make_commit(repo, tree, [], message, author)
        add_ref(repo, branch_ref(branch), commit.id)
    return commit.id.decode()
