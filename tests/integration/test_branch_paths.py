"""BranchPaths looks paths up in a branch's tree one at a time; it answers as the listing of the
whole branch does (`git ls-tree -r`, with every folder that holds a file, as expertise names
folders "src/db/"), which validation used to build every time."""

from __future__ import annotations

import subprocess

from shared.gitops.repo import BranchPaths

FILES = ["README.md", "src/app.py", "src/db/models.py", "src/db/migrations/001.sql", "docs/a b.md", "x"]
QUERIES = FILES + ["src", "src/", "src/db", "src/db/", "./src/app.py", " src/app.py ", "src/app.py/", "x/", "x/y",
                   "src/db/missing.py", "missing/", "", "/", "./", "src//app.py", "docs/a b.md", "docs", "README.md/x"]


def listing(repo, branch: str) -> frozenset[str]:
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "-z", "--name-only", branch],
                         capture_output=True, text=True, check=True).stdout
    files = [p for p in out.split("\0") if p]
    folders = {"/".join(p.split("/")[:i]) + "/" for p in files for i in range(1, p.count("/") + 1)}
    return frozenset(files) | folders


def in_listing(paths: frozenset[str], query: str) -> bool:
    clean = query.strip().removeprefix("./")
    return clean in paths or clean.rstrip("/") + "/" in paths


def test_lookups_agree_with_the_whole_listing(git_repo):
    for rel in FILES:
        path = git_repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    subprocess.run(["git", "-C", str(git_repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(git_repo), "commit", "-qm", "files"], check=True)
    every = listing(git_repo, "main")
    with BranchPaths(git_repo, "main") as paths:
        assert not paths.empty
        for query in QUERIES:
            assert paths.exists(query) == in_listing(every, query), query
    with BranchPaths(git_repo, "no-such-branch") as none:
        assert none.empty and not none.exists("README.md")
