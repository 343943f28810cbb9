"""The per-task git work of the scale series alone, in one process, at two tree sizes: how much of
it grows with the repository.

    python bench/git_growth.py [--files 120,1000] [--tasks 40] [--worktrees 8]

A repository whose root folder holds N files; `--worktrees` epics' worktrees are reused in turn,
and each task does what the executor and the merger do for it: acquire (bring the worktree to
`main`), write one new file, `commit_all`, `merge_branch` into `main`. Then separately: a new
worktree (the whole tree checked out) and its release (the whole tree deleted), as by_epic does
once per epic. CPU is this process's user + system time (rusage); ratios compare the sizes
within one invocation (absolute times move with the machine's load and its filesystem)."""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.gitops import WorktreeManager, create_repository, merge_branch  # noqa: E402


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def _delta(start: tuple[float, float]) -> tuple[float, float]:
    now = _cpu()
    return now[0] - start[0], now[1] - start[1]


def measure(files: int, tasks: int, worktrees: int, root: Path) -> dict[str, float]:
    seed = root / f"seed-{files}"
    seed.mkdir()
    for i in range(files):
        (seed / f"file_{i:05d}.txt").write_text(f"file {i}\n")
    create_repository(seed)
    wm = WorktreeManager(seed)
    for k in range(worktrees):   # created before the clock starts: the loop measures reuse
        wm.acquire(f"epic-{k}", f"epic/{k}")
    start, wall = _cpu(), time.perf_counter()
    for t in range(tasks):
        k = t % worktrees
        wt = wm.acquire(f"epic-{k}", f"epic/{k}")
        (wt.path / f"task_{t:05d}.txt").write_text(f"task {t}\n")
        wm.commit_all(wt, f"task {t}")
        result = merge_branch(seed, f"epic/{k}")
        assert result.status == "merged", result
    user, system = _delta(start)
    per_task = (user + system) * 1000 / tasks
    out = {"files": files, "task_ms": per_task, "task_user_ms": user * 1000 / tasks,
           "task_sys_ms": system * 1000 / tasks, "task_wall_ms": (time.perf_counter() - wall) * 1000 / tasks}
    start = _cpu()
    for n in range(3):
        wm.acquire(f"new-{n}", f"new/{n}")
    out["new_worktree_ms"] = sum(_delta(start)) * 1000 / 3
    start = _cpu()
    for n in range(3):
        wm.release(f"new-{n}")
    out["release_ms"] = sum(_delta(start)) * 1000 / 3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", default="120,1000", help="tree sizes, comma-separated")
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--worktrees", type=int, default=8)
    args = ap.parse_args()
    sizes = [int(x) for x in args.files.split(",") if x.strip()]
    root = Path(tempfile.mkdtemp(prefix="yf-git-growth-"))
    try:
        rows = [measure(n, args.tasks, args.worktrees, root) for n in sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'files':>7}{'CPU ms/task':>13}{'user':>8}{'sys':>8}{'wall ms/task':>14}{'new worktree ms':>17}"
          f"{'release ms':>12}")
    for r in rows:
        print(f"{r['files']:>7}{r['task_ms']:>13.1f}{r['task_user_ms']:>8.1f}{r['task_sys_ms']:>8.1f}"
              f"{r['task_wall_ms']:>14.1f}{r['new_worktree_ms']:>17.1f}{r['release_ms']:>12.1f}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"per task, {last['files']} / {first['files']} files: {last['task_ms'] / first['task_ms']:.2f}x; "
              f"new worktree {last['new_worktree_ms'] / first['new_worktree_ms']:.1f}x")


if __name__ == "__main__":
    main()
