"""Merge benchmark: 20 non-conflicting branches merged one after another into `main` of a
5,000-file repository, timed per merge against `git merge --no-ff` in a copy of the same
repository in the same run.

    python bench/merge_bench.py [--files 5000] [--branches 20]

Columns: git = `git merge --no-ff` (a process per merge, as a merger would run it);
yf-bare = merge_branch on a bare canonical repository (no checkout to update);
yf-checkout = merge_branch with `main` checked out and clean (the working tree follows; a
long-running merger: the index is parsed once and inotify reports which files changed);
yf-scan = the same with watches off, so every merge lstats every tracked file (what a process
that merges once gets, minus its first parse of the index);
ratio = yokeflow time / git time (lower is better; the target is at most 0.5).
Merge 0 of each checkout column is the cold call (index parsed, every file looked at, watches
set up); it is printed in the table and counted in the median, and shown again apart below."""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.gitops import merge_branch  # noqa: E402
from shared.gitops import checkout_index  # noqa: E402

ENV = {**os.environ, "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "b@e", "GIT_COMMITTER_NAME": "Bench",
       "GIT_COMMITTER_EMAIL": "b@e"}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=ENV).stdout


def build_repository(root: Path, files: int, branches: int, rng: random.Random) -> None:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    per_dir = 100
    for i in range(files):
        d = root / f"pkg{i // per_dir:03d}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i % per_dir:03d}.py").write_text("".join(f"value_{i}_{n} = {rng.randrange(10**6)}\n" for n in range(30)))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "5,000 files")
    for b in range(branches):
        git(root, "checkout", "-q", "-b", f"task/{b}", "main")
        d = root / f"pkg{(b * 2) % (files // per_dir):03d}"  # each branch works in its own package
        for n in range(3):
            f = d / f"mod{n * 7:03d}.py"
            lines = f.read_text().splitlines(keepends=True)
            lines[5 + n] = f"changed_by_task_{b} = {n}\n"
            f.write_text("".join(lines))
        (d / f"new_{b}.py").write_text(f"feature = {b}\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"task {b}")
    git(root, "checkout", "-q", "main")
    # main moves on too, so every merge is a real three-way merge
    (root / "CHANGELOG.md").write_text("main moved\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "main moves on")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--branches", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    if not shutil.which("git"):
        print("git is required for the baseline", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="yf-merge-bench-") as tmp:
        base = Path(tmp) / "source"
        t0 = time.perf_counter()
        build_repository(base, args.files, args.branches, random.Random(args.seed))
        print(f"built {args.files}-file repository with {args.branches} branches in {time.perf_counter() - t0:.1f}s")
        with_git = Path(tmp) / "git-copy"
        shutil.copytree(base, with_git, symlinks=True)
        checkout = Path(tmp) / "yf-checkout"
        shutil.copytree(base, checkout, symlinks=True)
        scan = Path(tmp) / "yf-scan"
        shutil.copytree(base, scan, symlinks=True)
        bare = Path(tmp) / "yf-bare.git"
        git(Path(tmp), "clone", "-q", "--bare", str(base), str(bare))
        os.sync()  # the copies' writeback would otherwise slow every file creation in the first merges
        rows = []
        for b in range(args.branches):
            branch = f"task/{b}"
            t = time.perf_counter()
            subprocess.run(["git", "merge", "--no-ff", "--no-edit", "-q", branch], cwd=with_git, check=True, env=ENV)
            t_git = time.perf_counter() - t
            t = time.perf_counter()
            r_bare = merge_branch(bare, branch)
            t_bare = time.perf_counter() - t
            t = time.perf_counter()
            r_co = merge_branch(checkout, branch)
            t_co = time.perf_counter() - t
            checkout_index.use_watches = False
            t = time.perf_counter()
            r_scan = merge_branch(scan, branch)
            t_scan = time.perf_counter() - t
            checkout_index.use_watches = True
            git_tree = git(with_git, "rev-parse", "HEAD^{tree}").strip()
            assert r_bare.status == r_co.status == r_scan.status == "merged", b
            assert r_bare.tree == r_co.tree == r_scan.tree == git_tree, b
            assert not r_co.warnings and not r_scan.warnings, (r_co.warnings, r_scan.warnings)
            rows.append((b, t_git, t_bare, t_co, t_scan))
        for folder in (checkout, scan):
            assert git(folder, "status", "--porcelain") == "", folder
            assert git(folder, "diff-index", "--cached", "HEAD") == "", folder
    print(f"\n{'merge':>5} {'git ms':>8} {'yf-bare ms':>11} {'ratio':>6} {'yf-checkout ms':>15} {'ratio':>6} "
          f"{'yf-scan ms':>11} {'ratio':>6}")
    for b, tg, *ts in rows:
        print(f"{b:>5} {tg * 1000:8.1f} " + " ".join(f"{t * 1000:{w}.1f} {t / tg:6.2f}" for t, w in zip(ts, (11, 15, 11))))
    med = statistics.median
    tg, *cols = ([r[i] for r in rows] for i in (1, 2, 3, 4))
    for label, pick in (("median", med), ("total", sum)):
        print(f"{label:>5} {pick(tg) * 1000:8.1f} " + " ".join(
            f"{pick(c) * 1000:{w}.1f} {pick(c) / pick(tg):6.2f}" for c, w in zip(cols, (11, 15, 11))))
    warm = [r[3] for r in rows[1:]]
    print(f"yf-checkout: first merge {rows[0][3] * 1000:.1f} ms (cold), median of the others "
          f"{med(warm) * 1000:.1f} ms = {med(warm) / med(tg[1:]):.2f}x git")
    print("every merged tree was identical to git's; both checkouts are clean for git status and diff-index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
