"""Oracle tests: merge_branch against `git merge` on randomly generated repositories.
Every clean git merge must give the same tree; every git conflict must be a conflict here."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from shared.gitops import merge_branch
from tests.conftest import require_tool

CASES = int(os.environ.get("YF_ORACLE_CASES", "160"))
VOCAB = ["", "}", "{", "return x;", "pass", "# note", "end", "    i += 1;"]  # repeats make diffs ambiguous


def git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "T",
           "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check, env=env)


def _line(rng: random.Random) -> str:
    return rng.choice(VOCAB) if rng.random() < 0.25 else f"line {rng.randrange(10**6)} {rng.choice('abcdefgh') * rng.randint(1, 12)}"


def _text(rng: random.Random, n: int) -> str:
    body = "\n".join(_line(rng) for _ in range(n))
    return body + ("\n" if rng.random() < 0.9 else "")


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if ".git" not in p.parts and (p.is_file() or p.is_symlink()))


def _is_text(p: Path) -> bool:
    return b"\0" not in p.read_bytes()


def _new_path(rng: random.Random, root: Path) -> Path:
    dirs = ["", "src", "src/core", "docs", "lib/util", "assets", f"new{rng.randrange(5)}"]
    return root / rng.choice(dirs) / f"f{rng.randrange(10**5)}.{rng.choice(['txt', 'py', 'md'])}"


def _edit_text(rng: random.Random, data: str) -> str:
    lines = data.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        pos = rng.randint(0, len(lines))
        if op < 0.4 and lines:
            lines[min(pos, len(lines) - 1)] = _line(rng) + "\n"
        elif op < 0.7:
            lines[pos:pos] = [_line(rng) + "\n" for _ in range(rng.randint(1, 3))]
        elif lines:
            del lines[pos:pos + rng.randint(1, 2)]
    return "".join(lines)


def _mutate(rng: random.Random, root: Path, ops: int) -> None:
    for _ in range(ops):
        files = [p for p in _files(root) if not p.is_symlink()]
        kind = rng.choices(["edit", "add", "delete", "rename", "mode", "binary", "symlink"],
                           [45, 15, 10, 14, 6, 6, 4])[0]
        # a third of the operations hit the same file on both sides, so content merges really happen
        target = (files[0] if rng.random() < 0.33 else rng.choice(files)) if files else None
        if kind == "edit" and target and _is_text(target):
            target.write_text(_edit_text(rng, target.read_text()))
        elif kind == "add" or target is None:
            p = _new_path(rng, root)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(_text(rng, rng.randint(3, 30)))
        elif kind == "delete":
            target.unlink()
        elif kind == "rename":
            dst = _new_path(rng, root) if rng.random() < 0.6 else target.with_name("r" + target.name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, dst)
            if rng.random() < 0.4 and _is_text(dst):
                dst.write_text(_edit_text(rng, dst.read_text()))
        elif kind == "mode":
            target.chmod(target.stat().st_mode ^ 0o111)
        elif kind == "binary":
            p = target if target.suffix == ".bin" else root / "assets" / f"b{rng.randrange(50)}.bin"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(20, 200))) + b"\0")
        elif kind == "symlink":
            link = root / "links" / f"l{rng.randrange(6)}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(f"../target{rng.randrange(4)}")


def _make_case(tmp: Path, seed: int) -> Path:
    rng = random.Random(seed)
    repo = tmp / f"case{seed}"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for _ in range(rng.randint(4, 14)):
        p = _new_path(rng, repo)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(_text(rng, rng.randint(3, 40)))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "checkout", "-q", "-b", "feature")
    _mutate(rng, repo, rng.randint(1, 6))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "theirs")
    git(repo, "checkout", "-q", "main")
    _mutate(rng, repo, rng.randint(1, 6))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "ours")
    return repo


def _git_merge(repo: Path) -> tuple[bool, str | None, str]:
    before = git(repo, "rev-parse", "HEAD").stdout.strip()
    proc = git(repo, "merge", "--no-ff", "--no-edit", "-q", "feature", check=False)
    clean = proc.returncode == 0
    tree = git(repo, "rev-parse", "HEAD^{tree}").stdout.strip() if clean else None
    out = proc.stdout + proc.stderr
    if not clean:
        git(repo, "merge", "--abort", check=False)
    git(repo, "reset", "-q", "--hard", before)
    return clean, tree, out


@pytest.mark.parametrize("chunk", range(8))
def test_merge_matches_git(tmp_path, chunk):
    require_tool("git")
    mismatches = []
    for seed in range(chunk, CASES, 8):
        repo = _make_case(tmp_path, seed)
        clean, git_tree, git_out = _git_merge(repo)
        result = merge_branch(repo, "feature", into="main")
        if clean and (result.status != "merged" or result.tree != git_tree):
            mismatches.append((seed, "git clean", result.status, [c["path"] + ":" + c["kind"] for c in result.conflicts]))
        elif not clean and result.status != "conflict":
            mismatches.append((seed, "git conflict", result.status, git_out.strip()[-300:]))
        elif clean:
            # the clean checkout of main followed the merge exactly
            assert git(repo, "rev-parse", "HEAD").stdout.strip() == result.commit
            assert git(repo, "status", "--porcelain").stdout.strip() == "", seed
        else:
            assert git(repo, "status", "--porcelain").stdout.strip() == "", seed
    assert not mismatches, mismatches
