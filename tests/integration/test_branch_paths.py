"""BranchPaths looks paths up in a branch's tree one at a time; it answers as the listing of the
whole branch does (what validation after a merge used to build every time)."""

from __future__ import annotations

import subprocess

from shared.expertise.store import exists_in
from shared.gitops.repo import BranchPaths, paths_on_branch

FILES = ["README.md", "src/app.py", "src/db/models.py", "src/db/migrations/001.sql", "docs/a b.md", "x"]
QUERIES = FILES + ["src", "src/", "src/db", "src/db/", "./src/app.py", " src/app.py ", "src/app.py/", "x/", "x/y",
                   "src/db/missing.py", "missing/", "", "/", "./", "src//app.py", "docs/a b.md", "docs", "README.md/x"]


def test_lookups_agree_with_the_whole_listing(git_repo):
    for rel in FILES:
        path = git_repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    subprocess.run(["git", "-C", str(git_repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(git_repo), "commit", "-qm", "files"], check=True)
    listing = paths_on_branch(git_repo, "main")
    with BranchPaths(git_repo, "main") as paths:
        for query in QUERIES:
            assert paths.exists(query) == exists_in(listing, query), query
    with BranchPaths(git_repo, "no-such-branch") as none:
        assert not none.exists("README.md") and paths_on_branch(git_repo, "no-such-branch") == frozenset()
