"""inotify watches of checkouts (shared/gitops/fswatch.py): every checkout of the process on one
inotify instance, so a run with a hundred worktrees keeps them all watched (the kernel allows 128
instances per user by default), and each watch hears only about its own folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.gitops.fswatch import DirectoryWatch


def inotify_instances() -> int:
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return found


@pytest.fixture
def watches():
    made: list[DirectoryWatch] = []
    yield made
    for w in made:
        w.close()


def test_two_hundred_checkouts_are_watched_on_one_inotify_instance(tmp_path, watches):
    before = inotify_instances()
    for i in range(200):  # above the default per-user limit of 128 instances
        root = tmp_path / f"wt{i}"
        (root / "src").mkdir(parents=True)
        w = DirectoryWatch(os.fsencode(root))
        assert w.watch(b"") and w.watch(b"src")
        watches.append(w)
    assert inotify_instances() - before <= 1
    (tmp_path / "wt199" / "src" / "a.py").write_text("x")
    assert watches[199].drain().paths == {b"src/a.py"}


def watched(root: Path, watches: list[DirectoryWatch]) -> DirectoryWatch:
    """A watch on a new folder `root` (its top only), closed when the test ends."""
    root.mkdir()
    w = DirectoryWatch(os.fsencode(root))
    watches.append(w)
    assert w.watch(b"")
    return w


def test_each_watch_hears_only_of_its_own_folders_whoever_reads_first(tmp_path, watches):
    a, b = tmp_path / "a", tmp_path / "b"
    wa, wb = watched(a, watches), watched(b, watches)
    (a / "one.txt").write_text("1")
    assert wb.drain().paths == set()  # b reads the shared queue first: a's news is kept for a
    (b / "two.txt").write_text("2")
    assert wa.drain().paths == {b"one.txt"}
    assert wb.drain().paths == {b"two.txt"}


def test_a_closed_watch_hears_nothing_and_leaves_the_others_alone(tmp_path, watches):
    a, b = tmp_path / "a", tmp_path / "b"
    wa, wb = watched(a, watches), watched(b, watches)
    wa.close()
    assert not wa.usable and wa.watched == set()
    (a / "late.txt").write_text("x")
    (b / "kept.txt").write_text("y")
    assert wb.drain().paths == {b"kept.txt"}


def test_the_same_folder_watched_by_two_checkouts_reaches_both(tmp_path, watches):
    w1, w2 = DirectoryWatch(os.fsencode(tmp_path)), DirectoryWatch(os.fsencode(tmp_path))
    watches += [w1, w2]
    assert w1.watch(b"") and w2.watch(b"")
    w1.close()  # one descriptor for the folder: still watched for the other
    (tmp_path / "f").write_text("x")
    assert w2.drain().paths == {b"f"}
