"""Executors without a shared disk: each keeps its own clone of a run's repository in a scratch
folder, fetched from the canonical repository over git smart HTTP before an attempt, and pushes
the task's branch back after it. Worktrees live in that clone, exactly as in shared-disk mode."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from dulwich.client import HttpGitClient
from dulwich.repo import Repo

from shared.gitops.repo import branch_ref

log = logging.getLogger("yokeflow.executor.remote")


@dataclass(frozen=True)
class Remote:
    base_url: str  # e.g. http://merger:9418 (the canonical repository's path is appended)
    token: str
    scratch: Path

    def url_of(self, repo_path: str) -> str:
        return self.base_url.rstrip("/") + "/" + repo_path.lstrip("/")

    def local_path(self, repo_path: str) -> Path:
        """This executor's clone of `repo_path`: a readable, collision-free folder name."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(repo_path).name)[:40] or "repo"
        return self.scratch / f"{slug}-{hashlib.sha256(repo_path.encode()).hexdigest()[:12]}"

    def _client(self, repo_path: str) -> tuple[HttpGitClient, str]:
        url = self.url_of(repo_path)
        parsed = urlparse(url)
        return HttpGitClient.from_parsedurl(parsed, username="yokeflow", password=self.token), parsed.path

    def sync(self, repo_path: str, target_branch: str, branch: str) -> Path:
        """Fetch the canonical repository into this executor's clone; the target branch follows
        the canonical one, and the task's branch is taken from there unless this clone is ahead."""
        local = self.local_path(repo_path)
        if not (local / ".git").exists():
            local.mkdir(parents=True, exist_ok=True)
            Repo.init(str(local)).close()
        client, path = self._client(repo_path)
        with Repo(str(local)) as repo:
            refs = client.fetch(path, repo).refs
            target = branch_ref(target_branch)
            if target not in refs:
                raise RuntimeError(f"{self.url_of(repo_path)} has no branch {target_branch}")
            repo.refs[target] = refs[target]
            repo.refs.set_symbolic_ref(b"HEAD", target)
            theirs, ours = refs.get(branch_ref(branch)), repo.refs.as_dict().get(branch_ref(branch))
            if theirs and (ours is None or _is_ancestor(repo, ours, theirs)):
                repo.refs[branch_ref(branch)] = theirs
        return local

    def push(self, repo_path: str, branch: str) -> None:
        """The task's branch, from this clone to the canonical repository (this attempt owns it)."""
        local = self.local_path(repo_path)
        client, path = self._client(repo_path)
        ref = branch_ref(branch)
        with Repo(str(local)) as repo:
            head = repo.refs[ref]
            result = client.send_pack(path, lambda refs: {**refs, ref: head}, repo.generate_pack_data)
        errors = {k: v for k, v in (result.ref_status or {}).items() if v}
        if errors:
            raise RuntimeError(f"push of {branch} to {self.url_of(repo_path)} refused: {errors}")


def _is_ancestor(repo: Repo, old: bytes, new: bytes) -> bool:
    """Whether `old` is reachable from `new` (then taking `new` loses nothing)."""
    if old == new:
        return True
    try:
        walker = repo.get_walker(include=[new])
    except KeyError:
        return False
    return any(entry.commit.id == old for entry in walker)
