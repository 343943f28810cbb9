"""Opening beneath a worktree (services/executor/agent/beneath.py) on a real file system."""

import os

import pytest

from services.executor.agent.beneath import Beneath, Escape
from services.executor.agent.tools import Sandbox


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "wt"
    (r / "src").mkdir(parents=True)
    (r / "src" / "a.txt").write_text("inside\n")
    (r / ".git").mkdir()
    (r / ".git" / "config").write_text("[core]\n")
    (tmp_path / "out.txt").write_text("outside\n")
    return r


def test_links_that_stay_inside_are_followed(root):
    (root / "rel").symlink_to("src/a.txt")
    (root / "abs").symlink_to(root / "src" / "a.txt")
    (root / "src" / "up").symlink_to("../src")
    b = Beneath(root)
    assert b.read_bytes("rel") == (b"inside\n", "src/a.txt")
    assert b.read_bytes("abs") == (b"inside\n", "src/a.txt")
    assert b.read_bytes("src/up/up/a.txt")[1] == "src/a.txt"


@pytest.mark.parametrize("make, path", [
    (lambda r: (r / "l").symlink_to("../out.txt"), "l"),
    (lambda r: (r / "l").symlink_to(r.parent / "out.txt"), "l"),
    (lambda r: (r / "l").symlink_to(r.parent), "l/out.txt"),
    (lambda r: (r / "src" / "l").symlink_to("../.."), "src/l/out.txt"),
    (lambda r: (r / "l").symlink_to(".git"), "l/config"),
    (lambda r: (r / "l").symlink_to(r / ".git" / "config"), "l"),
    (lambda r: (r / "l").symlink_to("l"), "l"),
])
def test_links_out_or_into_git_are_refused_for_reads_and_writes(root, make, path):
    make(root)
    b = Beneath(root)
    with pytest.raises(Escape):
        b.read_bytes(path)
    with pytest.raises(Escape):
        b.write_bytes(path, b"pwned")
    assert (root.parent / "out.txt").read_text() == "outside\n"
    assert (root / ".git" / "config").read_text() == "[core]\n"


async def test_a_fifo_is_refused_instead_of_blocking(root):
    os.mkfifo(root / "pipe")
    box = Sandbox(root)
    for tool, tool_input in (("read_file", {"path": "pipe"}), ("write_file", {"path": "pipe", "content": "x"}),
                             ("grep", {"pattern": "x", "path": "pipe"})):
        outcome = await box.run(tool, tool_input)
        assert outcome.is_error or outcome.text.startswith("no matches"), outcome.text


def test_parents_are_made_inside_only(root):
    b = Beneath(root)
    assert b.write_bytes("new/deep/f.txt", b"x") == "new/deep/f.txt"
    (root / "esc").symlink_to(root.parent)
    with pytest.raises(Escape):
        b.write_bytes("esc/made/f.txt", b"x")
    assert not (root.parent / "made").exists()
