"""The file tools against a symlink swapped between an inside folder and an outside one, many
times over: a write never lands outside, a read never shows what is outside."""

import os
import time
import threading

import pytest

from services.executor.agent.tools import Sandbox

ROUNDS = 1500


@pytest.fixture
def place(tmp_path):
    root = tmp_path / "wt"
    (root / "inside").mkdir(parents=True)
    (root / "inside" / "e.txt").write_text("edit me\n")
    (root / "inside" / "r.txt").write_text("inside text\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "e.txt").write_text("edit me\n")
    (outside / "r.txt").write_text("OUTSIDE SECRET\n")
    (outside / "victim.txt").write_text("OUTSIDE SECRET\n")
    return root, outside


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


class Flipper:
    """Turns `place` back and forth, as fast as it can, between what is at `store` (a real file or
    folder inside) and a symlink to `outside`, until stopped."""

    def __init__(self, place, store, outside):
        self.place, self.store, self.outside = place, store, outside
        self.stop = threading.Event()
        self.flips = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        os.rename(store, place)

    def run(self):
        while not self.stop.is_set():
            try:
                os.rename(self.place, self.store)
                self.clear()  # a write may create the path in the instant it is missing
                os.symlink(self.outside, self.place)
                os.unlink(self.place)
                self.clear()
                os.rename(self.store, self.place)
                self.flips += 1
            except OSError:  # a tool made something in the way: back to the real thing in place
                try:
                    self.clear()
                    if self.store.exists():
                        os.rename(self.store, self.place)
                except OSError:  # made again in the instant: the next round puts it right
                    continue

    def clear(self):
        try:
            if self.place.is_symlink() or self.place.is_file():
                self.place.unlink()
            elif self.place.is_dir():  # set aside (a write may still be going on in it)
                os.rename(self.place, self.place.with_name(f"made-{time.monotonic_ns()}"))
        except FileNotFoundError:
            pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


async def test_a_folder_swapped_for_a_symlink_during_writes_and_edits_never_leads_outside(place):
    root, outside = place
    before = snapshot(outside)
    sb = Sandbox(root)
    landed = refused = 0
    with Flipper(root / "sw", root / "inside", outside) as flipper:
        for i in range(ROUNDS):
            wrote = await sb.run("write_file", {"path": f"sw/w{i % 7}.txt", "content": f"round {i}\n"})
            edited = await sb.run("edit_file", {"path": "sw/e.txt", "old_text": "edit me", "new_text": "edit me"})
            read = await sb.run("read_file", {"path": "sw/r.txt"})
            assert "OUTSIDE SECRET" not in read.text
            for outcome in (wrote, edited):
                landed += not outcome.is_error
                refused += outcome.is_error
    assert snapshot(outside) == before, "a write went outside the worktree"
    assert flipper.flips > 100 and landed, (flipper.flips, landed, refused)  # the race ran


async def test_a_file_swapped_for_a_symlink_during_writes_never_writes_outside(place):
    root, outside = place
    before = snapshot(outside)
    (root / "plain.txt").write_text("x\n")
    sb = Sandbox(root)
    with Flipper(root / "target.txt", root / "plain.txt", outside / "victim.txt") as flipper:
        for i in range(ROUNDS):
            await sb.run("write_file", {"path": "target.txt", "content": f"round {i}\n"})
            await sb.run("edit_file", {"path": "target.txt", "old_text": "round", "new_text": "round"})
            read = await sb.run("read_file", {"path": "target.txt"})
            assert "OUTSIDE SECRET" not in read.text
    assert snapshot(outside) == before
    assert flipper.flips > 100
