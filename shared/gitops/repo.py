"""Opening repositories and reading the commit graph (dulwich only; no `git` process)."""

from __future__ import annotations

import heapq
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.objects import Commit
from dulwich.repo import Repo

from shared.gitops.errors import GitError
from shared.gitops.objects import cached, tree_entries


def open_repo(repo_path: Path | str) -> Repo:
    path = Path(repo_path)
    if not path.exists():
        raise GitError(f"{path}: no such folder; pass the path of a git repository")
    try:
        return cached(Repo(str(path)))
    except NotGitRepository:
        raise GitError(f"{path} is not a git repository; run `git init` there or pass the right --repo") from None


def branch_ref(branch: str) -> bytes:
    return branch.encode() if branch.startswith("refs/") else b"refs/heads/" + branch.encode()


def read_ref(repo: Repo, branch: str) -> bytes | None:
    try:
        return repo.refs[branch_ref(branch)]
    except KeyError:
        return None


def require_branch(repo: Repo, branch: str) -> bytes:
    sha = read_ref(repo, branch)
    if sha is None:
        if not _has_any_commit(repo):
            raise GitError(f"{repo.path} has no commits yet; make a first commit on the target branch before merging")
        raise GitError(f"branch {branch!r} does not exist in {repo.path}; check the name with `git branch --list`")
    return sha


def _has_any_commit(repo: Repo) -> bool:
    return any(ref.startswith(b"refs/heads/") for ref in repo.refs.allkeys())


def resolve_commit(repo: Repo, rev: str) -> bytes | None:
    """A branch name, a full ref or a full/abbreviated hex sha -> commit id, or None."""
    sha = read_ref(repo, rev)
    if sha is not None:
        return sha
    raw = rev.encode()
    if len(raw) == 40:
        try:
            return raw if isinstance(repo[raw], Commit) else None
        except (KeyError, ValueError):
            return None
    return None


def head_of(repo_path: Path | str, branch: str) -> str | None:
    """The commit a branch points at, or None when the branch does not exist."""
    with open_repo(repo_path) as repo:
        sha = read_ref(repo, branch)
    return sha.decode() if sha else None


def merge_bases(repo: Repo, a: bytes, b: bytes) -> list[bytes]:
    """Best common ancestors of two commits: git's paint-down walk, in generation order (then newest
    first), as git walks with a commit-graph, so a commit is taken only after every commit of the
    queue it descends from. The walk ends once no waiting commit can still be reached from both
    sides: a commit painted from one side only can become a base only through a waiting commit
    painted from the other. At scale `main` is a long chain of merges of branches made from older
    `main`s; painting on until every waiting commit went stale walked ~300 commits per merge."""
    if a == b:
        return [a]
    ONE, TWO, STALE = 1, 2, 4
    shallow = shallow_commits(repo)

    def key(sha: bytes) -> tuple[int, int, bytes]:
        return (-generation(repo, sha, shallow), -repo[sha].commit_time, sha)

    flags: dict[bytes, int] = {a: ONE, b: TWO}
    waiting = {ONE: {a}, TWO: {b}}   # queued commits, not stale, painted from that side
    heap = [key(a), key(b)]
    heapq.heapify(heap)
    found: list[bytes] = []
    while heap and waiting[ONE] and waiting[TWO]:
        sha = heapq.heappop(heap)[2]
        waiting[ONE].discard(sha)
        waiting[TWO].discard(sha)
        f = flags[sha]
        if f & (ONE | TWO) == (ONE | TWO) and not f & STALE:
            found.append(sha)
            f |= STALE
            flags[sha] = f
        for parent in parents_of(repo, sha, shallow):
            pf = flags.get(parent, 0)
            if pf & f == f:
                continue
            nf = flags[parent] = pf | f
            heapq.heappush(heap, key(parent))
            for side in (ONE, TWO):
                if nf & side and not nf & STALE:
                    waiting[side].add(parent)
                else:
                    waiting[side].discard(parent)
    if len(found) > 1:  # drop candidates that are ancestors of other candidates
        found = [c for c in found if not any(o != c and commit_is_ancestor(repo, c, o, shallow) for o in found)]
    return list(dict.fromkeys(found))


def target_merge_bases(repo: Repo, target: bytes, other: bytes, shallow: frozenset[bytes] | None = None) -> list[bytes]:
    """`merge_bases(repo, target, other)` for a target branch's tip: the branch's history is known
    as a set (`_target_history`), so the walk covers only `other`'s commits that are not in it. A
    branch made from an old `main` (a lane that merges into `main` without bringing `main` back in)
    has commits of a low generation, and the paint-down walk read every commit of `main` made since
    that generation: ~300 per merge at 1,000 tasks. Several candidates, or a history too large to
    keep: the general walk. `shallow`: shallow_commits(repo), when the caller has it."""
    if target == other:
        return [target]
    if shallow is None:
        shallow = shallow_commits(repo)
    with _histories_lock:
        history = _target_history(repo, target, shallow)
        if history is None:
            hits = None
        elif other in history:
            return [other]
        else:
            hits, seen, stack = set(), {other}, [other]
            while stack:
                for parent in parents_of(repo, stack.pop(), shallow):
                    if parent in seen:
                        continue
                    seen.add(parent)
                    (hits.add if parent in history else stack.append)(parent)
    if hits is not None and len(hits) <= 1:
        return list(hits)   # the first commits of `main` met are common ancestors; one is the best
    return merge_bases(repo, target, other)


def in_target_history(repo: Repo, target: bytes, sha: bytes, shallow: frozenset[bytes] | None = None) -> bool:
    """`commit_is_ancestor(repo, sha, target)` for a target branch's tip (see target_merge_bases)."""
    if shallow is None:
        shallow = shallow_commits(repo)
    with _histories_lock:
        history = _target_history(repo, target, shallow)
        if history is not None:
            return sha in history
    return commit_is_ancestor(repo, sha, target, shallow)


# The commits reachable from the last tip seen of a repository's target branch, kept per repository
# and brought forward as the branch moves on (merges add a commit at a time along its first-parent
# line); read and changed under the lock: a set brought forward for a newer tip would hold commits a
# caller with an older tip must not count.
_HISTORY_MAX = 300_000       # commits; a larger history uses the general walks (~25 MB per 300,000)
_HISTORY_LOOKBACK = 10_000   # first-parent steps searched for the previous tip before reading it all again
_HISTORIES_KEPT = 8
_histories: OrderedDict[tuple[str, frozenset[bytes]], tuple[bytes, set[bytes] | None]] = OrderedDict()
_histories_lock = threading.Lock()


def _target_history(repo: Repo, tip: bytes, shallow: frozenset[bytes]) -> set[bytes] | None:
    store = repo.object_store
    key = (str(getattr(store, "path", None) or id(store)), shallow)
    known = _histories.get(key)
    if known is not None:
        _histories.move_to_end(key)
        old_tip, history = known
        if history is None:
            return None   # too large for this process
        if old_tip == tip:
            return history
        line, sha = [], tip
        for _ in range(_HISTORY_LOOKBACK):
            if sha == old_tip or sha in history:
                break
            line.append(sha)
            parents = parents_of(repo, sha, shallow)
            sha = parents[0] if parents else None
            if sha is None:
                break
        if sha == old_tip:   # moved on: what it reaches beyond the old history is added
            if _add_reachable(repo, line, history, shallow):
                _histories[key] = (tip, history)
                return history
    history = set()
    found = _add_reachable(repo, [tip], history, shallow)
    _histories[key] = (tip, history if found else None)
    while len(_histories) > _HISTORIES_KEPT:
        _histories.popitem(last=False)
    return history if found else None


def _add_reachable(repo: Repo, starts: list[bytes], history: set[bytes], shallow: frozenset[bytes]) -> bool:
    """Every commit reachable from `starts` into `history` (which holds its own commits' ancestors);
    False once it would pass _HISTORY_MAX."""
    stack = [s for s in starts if s not in history]
    while stack:
        sha = stack.pop()
        if sha in history:
            continue
        if len(history) >= _HISTORY_MAX:
            return False
        history.add(sha)
        stack.extend(p for p in parents_of(repo, sha, shallow) if p not in history)
    return True


def shallow_commits(repo: Repo) -> frozenset[bytes]:
    """The commits a shallow clone holds without their parents (`.git/shallow`, in the common folder
    of a linked worktree too): git takes them as roots, and so does every walk here."""
    common = getattr(repo, "commondir", None)
    if common is None:   # an in-memory repository
        return frozenset(repo.get_shallow())
    try:
        with open(os.path.join(common(), "shallow"), "rb") as f:
            return frozenset(line.strip() for line in f if line.strip())
    except FileNotFoundError:
        return frozenset()


def parents_of(repo: Repo, sha: bytes, shallow: frozenset[bytes]) -> list[bytes]:
    """A commit's parents as the repository has them: none for a commit at a shallow clone's edge."""
    return [] if sha in shallow else repo[sha].parents


def first_parent_walk(repo: Repo, start: bytes | None, limit: int):
    """The commits of `start`'s first-parent line, newest first, at most `limit` of them; a shallow
    clone's line ends at its edge."""
    shallow = shallow_commits(repo)
    sha = start
    for _ in range(limit):
        if sha is None:
            return
        commit = repo[sha]
        yield commit
        sha = commit.parents[0] if commit.parents and sha not in shallow else None


_generations: dict[bytes, int] = {}   # commit -> 1 + its parents' highest (commits never change)
# Forgotten all at once past this many (a process that met many repositories); raised to twice the
# history just walked when one history alone is larger, or every later call would walk it all again.
_MAX_GENERATIONS = 500_000
# A shallow clone numbers its commits from the roots it has: the same commit gets another number in
# a complete history, so each cut keeps its own (the few last ones).
_shallow_generations: dict[frozenset[bytes], dict[bytes, int]] = {}


def generation(repo: Repo, sha: bytes, shallow: frozenset[bytes] | None = None) -> int:
    """The commit's generation number: 1 for a root, else one more than its highest parent.
    `shallow`: shallow_commits(repo), when the caller has it."""
    if shallow is None:
        shallow = shallow_commits(repo)
    if shallow:
        known = _shallow_generations.get(shallow)
        if known is None:
            while len(_shallow_generations) >= 8:
                _shallow_generations.pop(next(iter(_shallow_generations)))
            known = _shallow_generations[shallow] = {}
    else:
        known = _generations
    if sha in known:
        return known[sha]
    global _MAX_GENERATIONS
    if len(known) > _MAX_GENERATIONS:
        known.clear()
    stack = [sha]
    while stack:
        c = stack[-1]
        if c in known:
            stack.pop()
            continue
        parents = parents_of(repo, c, shallow)
        missing = [p for p in parents if p not in known]
        if missing:
            stack.extend(missing)
            continue
        known[c] = 1 + max((known[p] for p in parents), default=0)
        stack.pop()
    if len(known) > _MAX_GENERATIONS:
        _MAX_GENERATIONS = 2 * len(known)
    return known[sha]


def commit_is_ancestor(repo: Repo, ancestor: bytes, descendant: bytes,
                       shallow: frozenset[bytes] | None = None) -> bool:
    """Walks back from `descendant` only through commits of a higher generation than `ancestor`
    (what git's commit-graph does): the commits made since, not the whole history."""
    if ancestor == descendant:
        return True
    if shallow is None:
        shallow = shallow_commits(repo)
    floor = generation(repo, ancestor, shallow)
    if generation(repo, descendant, shallow) <= floor:
        return False
    seen, stack = {descendant}, [descendant]
    while stack:
        for parent in parents_of(repo, stack.pop(), shallow):
            if parent == ancestor:
                return True
            if parent not in seen and generation(repo, parent, shallow) > floor:
                seen.add(parent)
                stack.append(parent)
    return False


def is_ancestor(repo_path: Path | str, ancestor: str, descendant: str) -> bool:
    """True when `ancestor` (branch or sha) is reachable from `descendant` (branch or sha)."""
    with open_repo(repo_path) as repo:
        a, d = resolve_commit(repo, ancestor), resolve_commit(repo, descendant)
        if a is None or d is None:
            missing = ancestor if a is None else descendant
            raise GitError(f"{missing!r} is neither a branch nor a commit in {repo_path}")
        return commit_is_ancestor(repo, a, d)


def identity(text: str) -> bytes:
    """'Name <email>' as bytes; refuses values git would store as a broken identity."""
    if "<" not in text or not text.rstrip().endswith(">") or "\n" in text:
        raise GitError(f"author {text!r} must look like 'Name <email>'")
    return text.encode()


def timezone_offset() -> int:
    import time
    return -time.altzone if time.daylight and time.localtime().tm_isdst > 0 else -time.timezone


def main_worktree_branch(repo: Repo) -> bytes | None:
    """The branch checked out in the repository's own working tree (None for bare/detached)."""
    if repo.bare:
        return None
    try:
        head = repo.refs.read_ref(b"HEAD")
    except KeyError:
        return None
    if head and head.startswith(b"ref: "):
        return head[5:].strip()
    return None


class BranchPaths:
    """Whether files and folders exist on a branch, each looked up in its tree when asked, without
    listing the whole branch (the learner asks after every merge about the few files expertise
    names, and a listing grows with the repository)."""

    def __init__(self, repo_path: Path | str, branch: str):
        self.repo = open_repo(repo_path)
        sha = read_ref(self.repo, branch)
        self.tree: bytes | None = self.repo[sha].tree if sha is not None else None
        self.known: dict[str, bool] = {}

    @property
    def empty(self) -> bool:
        """No such branch, or no file on it."""
        return self.tree is None or len(self.repo[self.tree]) == 0

    def exists(self, path: str) -> bool:
        """`path` is a file or a folder on the branch ("src/db/" or "src/db" for a folder)."""
        clean = path.strip().removeprefix("./")
        if clean not in self.known:
            self.known[clean] = self._lookup(clean)
        return self.known[clean]

    def _lookup(self, clean: str) -> bool:
        parts = [p for p in clean.rstrip("/").split("/")]
        if self.tree is None or not clean.rstrip("/") or "" in parts:
            return False
        tree, mode = self.tree, 0o040000
        for part in parts:
            if not stat.S_ISDIR(mode):
                return False  # a file named as if it were a folder
            # the folder's entries as a dict kept by its id: after a merge only the folders it
            # changed are read, and each name is one lookup (the learner asks about every file its
            # expertise names after every merge, on the event loop)
            found = tree_entries(self.repo.object_store, tree).get(part.encode())
            if found is None:
                return False
            mode, tree = found
        return stat.S_ISDIR(mode) or not clean.endswith("/")

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> "BranchPaths":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def changed_paths(repo_path: Path | str, commit: str) -> list[str]:
    """The files a commit changed against its first parent (a merge: what it brought to the branch)."""
    from dulwich.diff_tree import tree_changes

    with open_repo(repo_path) as repo:
        sha = resolve_commit(repo, commit)
        if sha is None:
            return []
        c = repo[sha]
        base = repo[c.parents[0]].tree if c.parents else None
        out = set()
        for change in tree_changes(repo.object_store, base, c.tree):
            for side in (change.old, change.new):
                if side is not None and side.path is not None:
                    out.add(side.path.decode("utf-8", "replace"))
    return sorted(out)
