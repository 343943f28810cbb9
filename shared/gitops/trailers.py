"""Finding a commit by its trailers: a merge is identified by the run, task and attempt it
records in its message, never by a branch head that may have moved or gone since."""

from __future__ import annotations

from pathlib import Path

from shared.gitops.repo import first_parent_walk, open_repo, read_ref

_SCAN = 5000  # first-parent commits searched: far more merges than one run makes


def trailers_of(message: str) -> dict[str, str]:
    """`Key: value` lines of a commit message's last paragraph."""
    last = message.strip().rsplit("\n\n", 1)[-1]
    return dict(line.split(": ", 1) for line in last.splitlines() if ": " in line)


def find_commit(repo_path: Path | str, branch: str, wanted: dict[str, str], *,
                limit: int = _SCAN) -> tuple[str, str] | None:
    """(commit, tree) of the newest commit on `branch`'s first-parent line whose trailers include `wanted`."""
    with open_repo(repo_path) as repo:
        for commit in first_parent_walk(repo, read_ref(repo, branch), limit):
            fields = trailers_of(commit.message.decode("utf-8", "replace"))
            if all(fields.get(k) == v for k, v in wanted.items()):
                return commit.id.decode(), commit.tree.decode()
    return None
