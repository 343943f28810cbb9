"""WorktreeManager: one git worktree per agent under <repo>/.worktrees/<name>/, reused after a
crash, kept up to date with the target branch, with its own port block and setup."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from dulwich.repo import Repo

from shared.gitops.checkout import head_tree, reset_to, stage_all, switch_tree
from shared.gitops.checkout_index import checkout_new
from shared.gitops.errors import GitError
from shared.gitops.housekeeping import copy_included, ensure_worktrees_ignored
from shared.gitops.locks import file_lock
from shared.gitops.refwrite import add_ref, set_ref
from shared.gitops.merge import make_commit
from shared.gitops.names import worktree_dir_name
from shared.gitops.resolution import clear_merge_state, merge_parent
from shared.gitops.repo import (
    branch_ref,
    commit_is_ancestor,
    in_target_history,
    main_worktree_branch,
    open_repo,
    read_ref,
    require_branch,
    shallow_commits,
    target_merge_bases,
)
from shared.gitops.treemerge import merge_trees
from shared.config import SandboxSettings
from shared.sandbox import Jail, SandboxUnavailable

WORKTREES_DIR = ".worktrees"
_META = "yokeflow.json"
_SPARE = "spare_"   # a released checkout kept for reuse (worktree names are [a-z0-9-]: never this)
MAX_SPARES = 4   # enough for the epics that start while others end; each costs a checkout's disk


@dataclass(frozen=True)
class Worktree:
    name: str
    path: Path
    branch: str
    base_commit: str   # the newest commit of the target's history the branch holds (as of acquire)
    head: str          # the branch head after acquire
    reused: bool
    port_base: int


class WorktreeManager:
    def __init__(self, repo_path: Path | str, *, target_branch: str = "main", setup_command: str | None = None,
                 port_base: int = 20000, port_block: int = 10, sandbox: SandboxSettings | None = None,
                 env_allow: list[str] = (), tool_path: str | None = None, setup_timeout_s: float = 3600.0):
        """`sandbox`, `env_allow`, `tool_path`: how the setup command is confined (agent.sandbox)."""
        self.root = Path(repo_path).resolve()
        with open_repo(self.root) as repo:
            if repo.bare:
                raise GitError(f"{self.root} is a bare repository; worktrees need a repository with a working tree")
            self.git_dir = Path(repo.controldir())
        self.target = target_branch
        self.setup_command = setup_command
        self.port_base, self.port_block = port_base, port_block
        self.sandbox, self.env_allow, self.tool_path = sandbox, tuple(env_allow), tool_path
        self.setup_timeout_s = setup_timeout_s

    # -- paths and metadata -----------------------------------------------------
    def path_of(self, name: str) -> Path:
        return self.root / WORKTREES_DIR / worktree_dir_name(name)

    def _admin(self, name: str) -> Path:
        return self.git_dir / "worktrees" / (name if name.startswith(_SPARE) else worktree_dir_name(name))

    def _lock(self):
        return file_lock(self.git_dir / "yokeflow-worktrees.lock")

    def _read_meta(self, name: str) -> dict:
        try:
            return json.loads((self._admin(name) / _META).read_text())
        except (OSError, ValueError):
            return {}

    def _write_meta(self, name: str, meta: dict) -> None:
        (self._admin(name) / _META).write_text(json.dumps(meta))

    def _allocate_port(self, dirname: str) -> int:
        used = set()
        admin_root = self.git_dir / "worktrees"
        for admin in admin_root.iterdir() if admin_root.is_dir() else []:
            if admin.name != dirname:
                port = self._read_meta(admin.name).get("port_base")
                if port is not None:
                    used.add(port)
        slot = 0
        while self.port_base + slot * self.port_block in used:
            slot += 1
        return self.port_base + slot * self.port_block

    # -- acquire ----------------------------------------------------------------
    def acquire(self, name: str, branch: str, *, update_from_target: bool = True) -> Worktree:
        """Create or reuse the worktree `name` on `branch`; see docs/git.md for the full contract.
        `update_from_target=False` leaves the target out (a conflict resolution merges it itself)."""
        dirname = worktree_dir_name(name)
        path = self.path_of(name)
        ref = branch_ref(branch)
        with open_repo(self.root) as repo:  # once: a second open reads every pack index again
            with self._lock():
                target_tip, meta, reused, fresh = self._claim(repo, name, branch, dirname, path, ref)
            # The worktree's own files and its branch are its holder's alone (the attempt's lease and
            # the lane keep anyone else out), as the agent's edits and commit_all are: writing a new
            # one's files, making it clean and bringing the target in need no lock, so the acquires
            # of a plan's lanes no longer wait for each other's file work (at 1,000 tasks they queued
            # here for ~250 ms each).
            if fresh:
                self._check_out(repo, path, dirname, ref)
            with Repo(str(path)) as wt:
                clear_merge_state(wt)  # a resolution interrupted by a crash starts over
                reset_to(wt, wt[wt.refs[ref]].tree)
                head = (self._bring_in_target(repo, wt, ref, branch, target_tip) if update_from_target
                        else wt.refs[ref])
            # the newest commit of the target's history the branch holds: the target's tip once it
            # was brought in; without it, where the branch last met the target
            base = target_tip if update_from_target else next(iter(target_merge_bases(repo, target_tip, head)), b"")
        meta["base_commit"] = base.decode()
        with self._lock():
            self._write_meta(dirname, meta)
        if not meta.get("setup_done"):
            copy_included(self.root, path)
            self._run_setup(path, meta["port_base"])
            meta["setup_done"] = True
            with self._lock():
                self._write_meta(dirname, meta)
        return Worktree(name, path, branch, base.decode(), head.decode(), reused, meta["port_base"])

    def _claim(self, repo: Repo, name: str, branch: str, dirname: str, path: Path,
               ref: bytes) -> tuple[bytes, dict, bool, bool]:
        """acquire's bookkeeping, under the lock: the target's tip, the worktree's record (port block
        and last use written), whether it is reused, and whether its files are still to be written."""
        target_tip = require_branch(repo, self.target)
        ensure_worktrees_ignored(repo, self.target, WORKTREES_DIR)
        target_tip = require_branch(repo, self.target)
        meta = self._read_meta(dirname)
        reused = (path / ".git").is_file() and self._admin(dirname).is_dir()
        fresh = False
        if reused:
            checked_out = (self._admin(dirname) / "HEAD").read_bytes().strip()
            if checked_out != b"ref: " + ref:
                raise GitError(f"worktree {path} is on {checked_out[5:].decode()}, not {branch}; "
                               f"release it first (`yokeflow worktrees prune`) or use another name")
        else:
            shutil.rmtree(path, ignore_errors=True)  # a half-created worktree from a crash
            shutil.rmtree(self._admin(dirname), ignore_errors=True)
            if read_ref(repo, branch) is None:
                add_ref(repo, ref, target_tip)
            path.parent.mkdir(parents=True, exist_ok=True)
            elsewhere = self._checked_out_at(repo, ref)
            if elsewhere is not None:
                raise GitError(f"cannot create worktree {path} on {branch}: the branch is already checked "
                               f"out at {elsewhere}")
            spare = self._adopt_spare(repo, path, dirname, ref)
            fresh = spare is None
            if fresh:
                self._add_admin(path, dirname, ref)
            meta = {"name": name, "branch": branch, "created_at": time.time(), **(spare or {})}
        if "port_base" not in meta:   # reading every other worktree's record once, not on every reuse
            meta["port_base"] = self._allocate_port(dirname)
        meta["last_used_at"] = time.time()  # in use from now: its port taken, no prune removes it
        self._write_meta(dirname, meta)
        return target_tip, meta, reused, fresh

    def _add_admin(self, path: Path, dirname: str, ref: bytes) -> None:
        """The bookkeeping half of `git worktree add <path> <branch>` (the branch checked out nowhere
        else), under the lock: the empty folder, git's record of it and HEAD on the branch."""
        admin = self._admin(dirname)
        path.mkdir(parents=True)
        admin.mkdir(parents=True)
        (admin / "gitdir").write_bytes(bytes(path / ".git") + b"\n")
        (admin / "commondir").write_bytes(b"../..\n")
        (admin / "HEAD").write_bytes(b"ref: " + ref + b"\n")

    def _check_out(self, repo: Repo, path: Path, dirname: str, ref: bytes) -> None:
        """Its other half, outside the lock: one checkout of the branch's tree written straight into
        the empty folder, then the folder's pointer to its record. Until that pointer is there the
        folder is a half-made worktree, which the next acquire of the name removes and makes again."""
        admin = self._admin(dirname)
        checkout_new(str(path), str(admin / "index"), repo.object_store, repo[repo.refs[ref]].tree)
        (path / ".git").write_bytes(b"gitdir: " + bytes(admin) + b"\n")

    def _checked_out_at(self, repo: Repo, ref: bytes) -> str | None:
        if main_worktree_branch(repo) == ref:
            return str(self.root)
        admin_root = self.git_dir / "worktrees"
        for admin in admin_root.iterdir() if admin_root.is_dir() else []:
            try:
                if (admin / "HEAD").read_bytes().strip() == b"ref: " + ref:
                    return (admin / "gitdir").read_text().strip().removesuffix("/.git")
            except OSError:
                continue
        return None

    def _bring_in_target(self, repo: Repo, wt: Repo, ref: bytes, branch: str, target_tip: bytes) -> bytes:
        head = repo.refs[ref]
        shallow = shallow_commits(repo)  # read once for both checks
        if commit_is_ancestor(repo, target_tip, head, shallow):
            return head
        old_tree = repo[head].tree
        if in_target_history(repo, target_tip, head, shallow):
            new = target_tip
        else:
            base = target_merge_bases(repo, target_tip, head, shallow)
            tm = merge_trees(repo.object_store, repo[base[0]].tree if base else None, old_tree,
                             repo[target_tip].tree, labels=(branch, self.target))
            if tm.conflicts:
                files = ", ".join(sorted({c["path"] for c in tm.conflicts}))
                raise GitError(f"{self.target} cannot be merged into {branch} without conflicts in: {files}; "
                               f"resolve them in {wt.path} (git merge {self.target}) and retry")
            repo.object_store.add_objects([(o, None) for o in tm.objects])
            new = make_commit(repo, tm.tree, [head, target_tip], f"Merge branch '{self.target}' into {branch}",
                              "YokeFlow <worktrees@yokeflow.dev>").id
        if not set_ref(repo, ref, head, new):
            raise GitError(f"{branch} moved while it was being updated from {self.target}; retry")
        switch_tree(wt, old_tree, repo[new].tree)
        return new

    def _run_setup(self, path: Path, port_base: int) -> None:
        if not self.setup_command:
            return
        env = {"YOKEFLOW_PORT_BASE": str(port_base), "YOKEFLOW_PORT_BLOCK": str(self.port_block),
               "YOKEFLOW_WORKTREE": str(path)}
        if self.tool_path:
            env["PATH"] = self.tool_path
        try:
            jail = Jail.for_worktree(path, self.sandbox, extra_env=env, env_allow=self.env_allow)
        except SandboxUnavailable as exc:
            raise GitError(f"setup command {self.setup_command!r} not run: {exc}") from None
        proc = jail.run(self.setup_command, timeout_s=self.setup_timeout_s)
        if proc.returncode != 0:
            tail = proc.stdout.strip()[-2000:]
            raise GitError(f"setup command {self.setup_command!r} failed in {path} (exit {proc.returncode}); "
                           f"fix it and acquire again, it will be re-run:\n{tail}")

    # -- commit / release / list / prune -------------------------------------------
    def commit_all(self, wt: Worktree | Path, message: str, *,
                   author: str = "YokeFlow Agent <agent@yokeflow.dev>") -> str | None:
        """Stage every change in the worktree and commit it on its branch; None when nothing changed
        (`commit_worktree`)."""
        return commit_worktree(wt.path if isinstance(wt, Worktree) else Path(wt), message, author=author)

    def release(self, name: str, *, delete_branch: bool = True, keep_for_reuse: bool = False) -> None:
        """Remove the worktree (files and git's bookkeeping) and, by default, its branch.
        `keep_for_reuse`: the checkout is kept as a spare (at most MAX_SPARES) that the next new
        worktree takes over, writing only the files that differ, instead of checking out every file
        of the repository again (a run by epic makes one worktree per epic)."""
        dirname = worktree_dir_name(name)
        with self._lock(), open_repo(self.root) as repo:
            admin = self._admin(dirname)
            branch = None
            if (admin / "HEAD").exists():
                head = (admin / "HEAD").read_bytes().strip()
                branch = head[5:] if head.startswith(b"ref: ") else None
            if not (keep_for_reuse and branch and self._keep_spare(repo, dirname, branch)):
                shutil.rmtree(self.path_of(name), ignore_errors=True)
                shutil.rmtree(admin, ignore_errors=True)
            if delete_branch and branch and branch != branch_ref(self.target) and branch in repo.refs:
                del repo.refs[branch]

    # -- spares: released checkouts kept for the next new worktree ---------------
    def _spares(self) -> list[str]:
        admin_root = self.git_dir / "worktrees"
        return [a.name for a in admin_root.iterdir() if a.name.startswith(_SPARE)] if admin_root.is_dir() else []

    def drop_spares(self) -> None:
        """Remove the spares (at a run's end: they take a checkout's disk each)."""
        with self._lock():
            for spare in self._spares():
                self._remove_spare(spare)

    def _remove_spare(self, spare: str) -> None:
        shutil.rmtree(self.root / WORKTREES_DIR / spare, ignore_errors=True)
        shutil.rmtree(self._admin(spare), ignore_errors=True)

    def _point(self, path: Path, admin: Path) -> None:
        """git's pointers both ways between a worktree folder and its bookkeeping folder."""
        (path / ".git").write_bytes(b"gitdir: " + bytes(admin) + b"\n")
        (admin / "gitdir").write_bytes(bytes(path / ".git") + b"\n")

    def _keep_spare(self, repo: Repo, dirname: str, branch: bytes) -> bool:
        """Turn the worktree into a spare: left clean at its branch's tree, HEAD detached there (the
        branch may go), moved aside under a name no worktree has. False when it cannot be (then it
        is removed as before)."""
        path, admin = self.root / WORKTREES_DIR / dirname, self._admin(dirname)
        head = read_ref(repo, branch.decode())
        if head is None or not (path / ".git").is_file() or len(self._spares()) >= MAX_SPARES:
            return False
        tree = repo[head].tree
        try:
            with Repo(str(path)) as wt:
                clear_merge_state(wt)
                reset_to(wt, tree)   # what the agent left untracked or modified goes; the index lists `tree`
        except (OSError, KeyError, ValueError, GitError):
            return False
        spare = f"{_SPARE}{uuid.uuid4().hex[:12]}"
        meta = self._read_meta(dirname)
        (admin / "HEAD").write_bytes(head + b"\n")   # detached: no longer holds the branch
        spare_path, spare_admin = self.root / WORKTREES_DIR / spare, self._admin(spare)
        os.rename(path, spare_path)
        os.rename(admin, spare_admin)
        self._point(spare_path, spare_admin)
        self._write_meta(spare, {"tree": tree.decode(), "port_base": meta.get("port_base"), "spared_at": time.time()})
        return True

    def _adopt_spare(self, repo: Repo, path: Path, dirname: str, ref: bytes) -> dict | None:
        """Take the newest spare as the worktree `dirname` on `ref`, its files and index moved from the
        spare's tree to the branch's (only what differs is written); None when there is none."""
        for spare in sorted(self._spares(), key=lambda n: self._read_meta(n).get("spared_at", 0.0), reverse=True):
            spare_path, spare_admin = self.root / WORKTREES_DIR / spare, self._admin(spare)
            meta = self._read_meta(spare)
            try:
                old_tree = meta["tree"].encode()
                os.rename(spare_path, path)
            except (KeyError, AttributeError, OSError):
                self._remove_spare(spare)   # a spare half made by a crash: gone
                continue
            admin = self._admin(dirname)
            os.rename(spare_admin, admin)
            self._point(path, admin)
            (admin / "HEAD").write_bytes(b"ref: " + ref + b"\n")
            try:
                with Repo(str(path)) as wt:
                    switch_tree(wt, old_tree, repo[repo.refs[ref]].tree)
            except (OSError, KeyError, ValueError, GitError):
                shutil.rmtree(path, ignore_errors=True)   # not usable after all: a fresh checkout instead
                shutil.rmtree(admin, ignore_errors=True)
                return None
            return {"port_base": meta["port_base"]} if meta.get("port_base") is not None else {}
        return None

    def list(self) -> list[Worktree]:
        found = []
        base = self.root / WORKTREES_DIR
        with open_repo(self.root) as repo:
            for path in sorted(base.iterdir()) if base.is_dir() else []:
                admin = self._admin(path.name)
                if path.name.startswith(_SPARE) or not (admin / "HEAD").exists():
                    continue
                head_ref = (admin / "HEAD").read_bytes().strip()
                branch = head_ref[5:].decode() if head_ref.startswith(b"ref: ") else ""
                head = repo.refs[branch.encode()].decode() if branch.encode() in repo.refs else head_ref.decode()
                meta = self._read_meta(path.name)
                found.append(Worktree(meta.get("name", path.name), path, branch.removeprefix("refs/heads/"),
                                      meta.get("base_commit", ""), head, True, meta.get("port_base", -1)))
        return found

    def _last_used(self, path: Path, meta: dict) -> float:
        """The latest of: acquired (the record), committed to (the worktree's index and its branch's
        ref file are rewritten by every commit)."""
        times = [meta.get("last_used_at") or 0.0]
        files = [self._admin(path.name) / "index"]
        if meta.get("branch"):
            files.append(self.git_dir / branch_ref(meta["branch"]).decode())
        for f in files:
            try:
                times.append(f.stat().st_mtime)
            except OSError:   # no index yet, or a packed ref
                pass
        return max(times) or path.stat().st_mtime

    def prune(self, older_than_s: float) -> list[str]:
        """Remove worktrees unused for longer than `older_than_s` (and half-created leftovers).
        A branch is deleted only when the target branch already contains it; unmerged work stays."""
        removed = []
        now = time.time()
        base = self.root / WORKTREES_DIR
        for path in sorted(base.iterdir()) if base.is_dir() else []:
            meta = self._read_meta(path.name)
            if path.name.startswith(_SPARE):   # a spare: no branch, no work of its own
                if now - meta.get("spared_at", 0.0) >= older_than_s:
                    with self._lock():
                        self._remove_spare(path.name)
                    removed.append(path.name)
                continue
            last = self._last_used(path, meta)
            if now - last < older_than_s:
                continue
            keep_branch = True
            with open_repo(self.root) as repo:
                branch = meta.get("branch")
                head = read_ref(repo, branch) if branch else None
                target = read_ref(repo, self.target)
                if head is not None and target is not None and commit_is_ancestor(repo, head, target):
                    keep_branch = False
            self.release(path.name, delete_branch=not keep_branch)
            removed.append(meta.get("name", path.name))
        return removed


def commit_worktree(path: Path | str, message: str, *, author: str = "YokeFlow Agent <agent@yokeflow.dev>") -> str | None:
    """Stage every change in the checkout at `path` and commit it on its branch; None when nothing
    changed. With a merge under way (MERGE_HEAD) the commit is that merge, even if no file changed."""
    with Repo(str(path)) as repo:
        head = repo.head()
        merging = merge_parent(repo)
        tree = stage_all(repo)
        if tree == head_tree(repo) and merging is None:
            return None
        commit = make_commit(repo, tree, [head] + ([merging] if merging else []), message, author)
        if not set_ref(repo, b"HEAD", head, commit.id):
            raise GitError(f"the branch of {path} moved while committing; commit again")
        clear_merge_state(repo)
    # no record rewritten for the time: prune reads it from the index and the branch's ref file
    return commit.id.decode()
