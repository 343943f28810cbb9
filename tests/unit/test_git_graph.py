"""Merge bases and ancestry on random commit graphs (in memory), against the definition: the
common ancestors that no other common ancestor descends from. Commit times may go backwards
(clocks are skewed in real repositories), which the generation-bounded walks do not rely on."""

from __future__ import annotations

import random

from dulwich.objects import Commit, Tree
from dulwich.repo import MemoryRepo

from shared.gitops.repo import commit_is_ancestor, merge_bases


def _empty_repo(repo: MemoryRepo) -> tuple[MemoryRepo, Tree]:
    tree = Tree()
    repo.object_store.add_object(tree)
    return repo, tree


def _commit(repo: MemoryRepo, tree: Tree, parents: list[bytes], when: int, message: bytes) -> bytes:
    c = Commit()
    c.tree, c.parents = tree.id, parents
    c.author = c.committer = b"A <a@example.com>"
    c.commit_time = c.author_time = when
    c.commit_timezone = c.author_timezone = 0
    c.message = message
    repo.object_store.add_object(c)
    return c.id


def _graph(rng: random.Random, n: int, skewed: bool) -> tuple[MemoryRepo, list[bytes]]:
    repo, tree = _empty_repo(MemoryRepo())
    commits: list[bytes] = []
    for i in range(n):
        parents = rng.sample(commits, min(rng.choice([1, 1, 1, 2, 2, 3]), len(commits))) if commits else []
        commits.append(_commit(repo, tree, parents, rng.choice([i, 1000 - i, 5]) if skewed else i // 3,
                               b"commit %d" % i))
    return repo, commits


def _ancestors(repo: MemoryRepo, sha: bytes) -> set[bytes]:
    seen, stack = set(), [sha]
    while stack:
        c = stack.pop()
        if c not in seen:
            seen.add(c)
            stack.extend(repo[c].parents)
    return seen


def test_merge_bases_and_ancestry_match_their_definition():
    rng = random.Random(17)
    for trial in range(40):
        repo, commits = _graph(rng, rng.randint(3, 50), skewed=trial % 2 == 1)
        below = {c: _ancestors(repo, c) for c in commits}
        for _ in range(25):
            a, b = rng.choice(commits), rng.choice(commits)
            assert commit_is_ancestor(repo, a, b) == (a in below[b])
            common = below[a] & below[b]
            best = {c for c in common if not any(c != d and c in below[d] for d in common)}
            assert set(merge_bases(repo, a, b)) == best, (trial, a, b)


class _CountingRepo(MemoryRepo):
    reads = 0

    def __getitem__(self, sha):
        self.reads += 1
        return super().__getitem__(sha)


def test_the_merge_base_of_a_fresh_branch_is_found_near_the_tip_of_a_long_busy_history():
    """`main` as a long run leaves it: a chain of merges, each of a task branched from an older
    `main` (some from far back), every commit in the same second. The base of a task branched a
    few merges ago is found by walking those few merges, not the history behind them."""
    rng = random.Random(3)
    repo, tree = _empty_repo(_CountingRepo())

    def commit(parents: list[bytes]) -> bytes:  # every commit in the same second
        return _commit(repo, tree, parents, 1_700_000_000, b"%d" % len(repo.object_store._data))

    mains = [commit([])]
    for i in range(400):
        task = commit([mains[max(0, i - rng.randint(0, 120))]])
        mains.append(commit([mains[-1], task]))
    fresh = commit([mains[-6]])
    merge_bases(repo, mains[-1], commit([mains[-2]]))  # generation numbers known from here on, as in a merger
    repo.reads = 0
    assert merge_bases(repo, mains[-1], fresh) == [mains[-6]]
    assert repo.reads < 40, repo.reads  # 23; walking on until every waiting commit went stale read ~2,900


def test_a_history_larger_than_the_cache_is_walked_once_not_at_every_call(monkeypatch):
    """Past its size the cache of generation numbers is forgotten at once; a history larger than
    that alone used to be walked again at every call (a repository of 600,000 commits: every
    acquire and merge). The cap now rises to twice the history."""
    import shared.gitops.repo as repo_module

    monkeypatch.setattr(repo_module, "_generations", {})
    monkeypatch.setattr(repo_module, "_MAX_GENERATIONS", 50)
    repo, tree = _empty_repo(_CountingRepo())
    head = None

    def commit_on_top(i: int) -> bytes:
        return _commit(repo, tree, [head] if head else [], i, b"%d" % i)

    for i in range(200):
        head = commit_on_top(i)
    assert repo_module.generation(repo, head) == 200
    for i in range(200, 210):  # a merge at a time, as a merger makes them: each new commit is one step
        head = commit_on_top(i)
        repo.reads = 0
        assert repo_module.generation(repo, head) == i + 1 and repo.reads == 1, (i, repo.reads)


def test_merge_bases_against_a_target_tip_match_their_definition_as_the_tip_moves(monkeypatch):
    """`target_merge_bases` and `in_target_history` keep the target's history as a set brought
    forward as the tip moves; it moves on, jumps back (a reset) and to unrelated commits here, and
    every answer must still be the definition's."""
    import shared.gitops.repo as repo_module
    from shared.gitops.repo import in_target_history, target_merge_bases

    monkeypatch.setattr(repo_module, "_histories", type(repo_module._histories)())
    rng = random.Random(23)
    for trial in range(30):
        repo, commits = _graph(rng, rng.randint(3, 60), skewed=trial % 2 == 1)
        below = {c: _ancestors(repo, c) for c in commits}
        tip = commits[0]
        for _ in range(40):
            # mostly forward (a descendant of the tip, as merges move `main`), sometimes anywhere
            later = [c for c in commits if tip in below[c]]
            tip = rng.choice(later if later and rng.random() < 0.8 else commits)
            other = rng.choice(commits)
            common = below[tip] & below[other]
            best = {c for c in common if not any(c != d and c in below[d] for d in common)}
            assert set(target_merge_bases(repo, tip, other)) == best, (trial, tip, other)
            assert in_target_history(repo, tip, other) == (other in below[tip])


def test_a_history_too_large_to_keep_falls_back_to_the_walks(monkeypatch):
    import shared.gitops.repo as repo_module
    from shared.gitops.repo import in_target_history, target_merge_bases

    monkeypatch.setattr(repo_module, "_histories", type(repo_module._histories)())
    monkeypatch.setattr(repo_module, "_HISTORY_MAX", 3)
    rng = random.Random(5)
    repo, commits = _graph(rng, 40, skewed=False)
    below = {c: _ancestors(repo, c) for c in commits}
    for tip in [c for c in commits if len(below[c]) > 3][-5:]:
        for other in commits[::3]:
            common = below[tip] & below[other]
            best = {c for c in common if not any(c != d and c in below[d] for d in common)}
            assert set(target_merge_bases(repo, tip, other)) == best
            assert in_target_history(repo, tip, other) == (other in below[tip])
    assert [history for _, history in repo_module._histories.values()] == [None]  # not kept: too large


def test_the_base_of_a_lane_made_long_ago_is_found_without_walking_main_since_then(monkeypatch):
    """Lanes that merge into `main` without bringing `main` back in: each lane's commits descend
    from the `main` of the lane's start, so their generation is low, and the paint-down walk read
    every commit of `main` made since; with `main`'s history kept, only the lane's new commit is read."""
    import shared.gitops.repo as repo_module
    from shared.gitops.repo import merge_bases, target_merge_bases

    monkeypatch.setattr(repo_module, "_histories", type(repo_module._histories)())
    repo, tree = _empty_repo(_CountingRepo())

    def commit(parents: list[bytes]) -> bytes:
        return _commit(repo, tree, parents, 1_700_000_000, b"%d" % len(repo.object_store._data))

    mains = [commit([])]
    lanes = [commit([mains[0]]) for _ in range(20)]
    for step in range(15):   # each lane's task merged in turn; the lane goes on from its own commit
        for i in range(len(lanes)):
            mains.append(commit([mains[-1], lanes[i]]))
            lanes[i] = commit([lanes[i]])
    target_merge_bases(repo, mains[-2], commit([mains[-2]]))   # main's history known, as in a merger
    repo.reads = 0
    assert target_merge_bases(repo, mains[-1], lanes[3]) == [repo[lanes[3]].parents[0]]
    assert repo.reads < 15, repo.reads
    repo.reads = 0
    assert merge_bases(repo, mains[-1], lanes[3]) == [repo[lanes[3]].parents[0]]
    assert repo.reads > 200, repo.reads   # the paint-down walk: every merge since the lane's last one, and more
