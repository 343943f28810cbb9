"""merge_branch: an in-memory merge of a branch into a target branch, published by a
compare-and-swap of the target ref. Idempotent, race-safe, never touches a dirty checkout."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.index import build_index_from_tree
from dulwich.objects import Commit
from dulwich.repo import Repo

from shared.gitops.checkout import is_clean, switch_tree
from shared.gitops.errors import GitError
from shared.gitops.refwrite import set_ref
from shared.gitops.objects import write_object
from shared.gitops.repo import (
    branch_ref,
    first_parent_walk,
    identity,
    main_worktree_branch,
    merge_bases,
    open_repo,
    read_ref,
    require_branch,
    target_merge_bases,
    timezone_offset,
)
from shared.gitops.treemerge import merge_trees
from shared.config import SandboxSettings
from shared.sandbox import Jail, SandboxUnavailable

SQUASH_TRAILER = "YokeFlow-Squashed-Head"
_MAX_RACES = 50          # re-merges on a moving target before giving up
_HISTORY_SCAN = 2000     # first-parent commits searched for the commit that brought a branch in


@dataclass(frozen=True)
class MergeResult:
    status: str                       # "merged" | "up_to_date" | "conflict" | "rejected"
    commit: str | None
    tree: str | None
    conflicts: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    output: str = ""                  # validate_command output when status == "rejected"

    def to_json(self) -> dict:
        data = {"status": self.status, "commit": self.commit, "tree": self.tree, "conflicts": self.conflicts}
        if self.warnings:
            data["warnings"] = self.warnings
        if self.status == "rejected":
            data["output"] = self.output
        return data


def _signature(author: str) -> tuple[bytes, int, int]:
    return identity(author), int(time.time()), timezone_offset()


def make_commit(repo: Repo, tree: bytes, parents: list[bytes], message: str, author: str) -> Commit:
    who, now, tz = _signature(author)
    c = Commit()
    c.tree, c.parents = tree, parents
    c.author = c.committer = who
    c.author_time = c.commit_time = now
    c.author_timezone = c.commit_timezone = tz
    c.message = message.encode() if message.endswith("\n") else (message + "\n").encode()
    write_object(repo.object_store, c)
    return c


def _commit_that_brought_in(repo: Repo, target_tip: bytes, head: bytes) -> bytes:
    for commit in first_parent_walk(repo, target_tip, _HISTORY_SCAN):
        if commit.id == head or head in commit.parents[1:]:
            return commit.id
    return target_tip


def _squash_commit_for(repo: Repo, target_tip: bytes, head: bytes) -> bytes | None:
    needle = f"{SQUASH_TRAILER}: {head.decode()}".encode()
    for commit in first_parent_walk(repo, target_tip, _HISTORY_SCAN):
        if needle in commit.message:
            return commit.id
    return None


def _base_tree(repo: Repo, ours: bytes, theirs: bytes, bases: list[bytes] | None = None,
               depth: int = 0) -> bytes | None:
    bases = merge_bases(repo, ours, theirs) if bases is None else bases
    if not bases:
        raise GitError(f"{theirs.decode()[:12]} and {ours.decode()[:12]} share no history in {repo.path}; "
                       "they cannot be merged (create the branch from the target branch)")
    tree = repo[bases[0]].tree
    # several best common ancestors: merge them into one virtual base, as git's recursive strategies do
    for other in bases[1:]:
        inner = _base_tree(repo, bases[0], other, depth=depth + 1) if depth < 4 else None
        tm = merge_trees(repo.object_store, inner, tree, repo[other].tree, virtual=True)
        repo.object_store.add_objects([(o, None) for o in tm.objects])
        tree = tm.tree
    return tree


def _linked_worktrees_on(repo: Repo, ref: bytes) -> list[Path]:
    """Linked worktrees (not the main one) that have `ref` checked out: git reads every worktree's
    HEAD for this too. A worktree's HEAD (and, when it is on `ref`, its gitdir) is read again only
    when the file changed (inode, size or times): a hundred epics' worktrees are looked at on every
    merge, and a stat costs a third of an open, a read and a close."""
    found = []
    want = b"ref: " + ref
    try:
        admins = os.scandir(os.path.join(repo.controldir(), "worktrees"))
    except OSError:   # no linked worktree was ever made
        return found
    with admins:
        for admin in admins:
            head, gitdir = os.path.join(admin.path, "HEAD"), os.path.join(admin.path, "gitdir")
            try:
                head_key = _stat_key(head)
                known = _heads.get((head, want))
                if known is None or known[0] != head_key or (known[1] is not None and known[1] != _stat_key(gitdir)):
                    if _small_file(head).strip() != want:
                        known = (head_key, None, None)
                    else:   # its gitdir's stat first: a change after it is seen next time
                        gitdir_key = _stat_key(gitdir)
                        known = (head_key, gitdir_key, Path(os.fsdecode(_small_file(gitdir).strip())).parent)
                    with _heads_lock:
                        _heads[(head, want)] = known
                        while len(_heads) > _HEADS_KEPT:
                            _heads.pop(next(iter(_heads)))
            except OSError:   # a worktree being created or removed right now
                continue
            if known[2] is not None and known[2].exists():
                found.append(known[2])
    return found


def _stat_key(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


_HEADS_KEPT = 4096
# (HEAD file, the ref looked for) -> (its stat, its gitdir's stat and the worktree when on the ref, else None, None)
_heads: dict[tuple[str, bytes], tuple[tuple[int, int, int, int], tuple[int, int, int, int] | None, Path | None]] = {}
_heads_lock = threading.Lock()


def _small_file(path: str) -> bytes:
    """A file of git's bookkeeping (HEAD, gitdir: a line), read without a Python file object: at a
    hundred worktrees, read at every merge, the buffered reader was half the cost."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _validate(repo: Repo, tree: bytes, command: str, sandbox: SandboxSettings | None) -> tuple[bool, str]:
    """The command runs on the merged tree (model-written code) in the same jail as agent commands."""
    with tempfile.TemporaryDirectory(prefix="yf-validate-") as tmp:
        build_index_from_tree(tmp, os.path.join(tmp, ".yf-index"), repo.object_store, tree)
        os.unlink(os.path.join(tmp, ".yf-index"))
        try:
            jail = Jail.for_worktree(tmp, sandbox)
        except SandboxUnavailable as exc:
            raise GitError(f"validate command not run: {exc}") from None
        proc = jail.run(command, timeout_s=3600)
    return proc.returncode == 0, proc.stdout[-20000:]


def merge_branch(repo_path: Path | str, branch: str, *, into: str = "main", mode: str = "merge",
                 message: str | None = None, validate_command: str | None = None,
                 author: str = "YokeFlow Merger <merger@yokeflow.dev>",
                 sandbox: SandboxSettings | None = None) -> MergeResult:
    """Merge `branch` into `into` without a working tree; see docs/git.md for the full contract."""
    if mode not in ("merge", "squash"):
        raise GitError(f"merge mode must be 'merge' or 'squash', not {mode!r}")
    identity(author)
    with open_repo(repo_path) as repo:
        theirs = require_branch(repo, branch)
        target_ref = branch_ref(into)
        if read_ref(repo, into) is None:
            require_branch(repo, into)
        for _ in range(_MAX_RACES):
            ours = require_branch(repo, into)
            bases = target_merge_bases(repo, ours, theirs)
            if theirs in bases:
                done = _commit_that_brought_in(repo, ours, theirs)
                return MergeResult("up_to_date", done.decode(), repo[done].tree.decode())
            if mode == "squash":
                done = _squash_commit_for(repo, ours, theirs)
                if done is not None:
                    return MergeResult("up_to_date", done.decode(), repo[done].tree.decode())
            base = _base_tree(repo, ours, theirs, bases)
            tm = merge_trees(repo.object_store, base, repo[ours].tree, repo[theirs].tree, labels=(into, branch))
            if tm.conflicts:
                return MergeResult("conflict", None, None, tm.conflicts)
            repo.object_store.add_objects([(o, None) for o in tm.objects])
            commit = _new_commit(repo, tm.tree, ours, theirs, branch, into, mode, message, author)
            if validate_command:
                ok, output = _validate(repo, tm.tree, validate_command, sandbox)
                if not ok:
                    return MergeResult("rejected", None, tm.tree.decode(), [], [
                        f"validate command failed; {into} was not moved"], output)
            linked = _linked_worktrees_on(repo, target_ref)
            for wt in linked:
                with Repo(str(wt)) as wt_repo:
                    if not is_clean(wt_repo, repo[ours].tree):
                        raise GitError(f"{into} is checked out at {wt} with local changes; commit or discard "
                                       f"them there (or check out another branch) and merge again")
            if set_ref(repo, target_ref, ours, commit.id, message=f"yokeflow: merge {branch}".encode()):
                warnings = _follow_checkouts(repo, target_ref, ours, commit, linked)
                return MergeResult("merged", commit.id.decode(), tm.tree.decode(), [], warnings)
            # lost the race: someone moved the target; merge again on its new tip
        raise GitError(f"{into} in {repo.path} kept moving during {_MAX_RACES} merge attempts; retry later")


def _new_commit(repo: Repo, tree: bytes, ours: bytes, theirs: bytes, branch: str, into: str,
                mode: str, message: str | None, author: str) -> Commit:
    if mode == "squash":
        text = message or f"Squashed branch '{branch}' into {into}"
        text = text.rstrip("\n") + f"\n\n{SQUASH_TRAILER}: {theirs.decode()}\n"
        return make_commit(repo, tree, [ours], text, author)
    text = message or f"Merge branch '{branch}' into {into}"
    return make_commit(repo, tree, [ours, theirs], text, author)


def _follow_checkouts(repo: Repo, target_ref: bytes, old: bytes, new: Commit,
                      linked: list[Path] | None = None) -> list[str]:
    """The person's checkout of the target follows the new commit only when it is clean.
    `linked`: the linked worktrees on the target, when the caller has just listed them."""
    warnings: list[str] = []
    checkouts: list[Path] = []
    if main_worktree_branch(repo) == target_ref:
        checkouts.append(Path(repo.path))
    checkouts += _linked_worktrees_on(repo, target_ref) if linked is None else linked
    if not checkouts:
        return warnings
    old_tree = repo[old].tree
    for path in checkouts:
        # the main checkout reuses `repo`: a second Repo would reload every pack index
        wt = repo if path == Path(repo.path) else Repo(str(path))
        try:
            # the ref already moved, so compare the checkout with the tree it had before
            if not is_clean(wt, old_tree):
                warnings.append(f"{path} has local changes, so its files were left as they are; "
                                f"its branch now points at {new.id.decode()[:12]} "
                                f"(run `git status` there and `git reset --keep HEAD` after saving your work)")
                continue
            try:
                switch_tree(wt, old_tree, new.tree, judged_clean=True)
            except Exception as exc:  # an untracked file in the way: leave the person's files alone
                warnings.append(f"{path} could not follow the merge ({exc}); its files were left as they are")
        finally:
            if wt is not repo:
                wt.close()
    return warnings
