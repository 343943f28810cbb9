"""What the agent reads: a stable, cacheable system prompt (rules, domain expertise, repository
map) and a task prompt (the task, its epic, its checks, its dependencies, a previous attempt)."""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from pathlib import Path

from services.executor.agent.files import SKIP_DIRS, human_size, inside, walk_entries

RULES = """\
You are a software engineer working on one task of a larger plan, inside your own git worktree.
Other engineers work on other tasks in parallel, in other worktrees; their finished work is merged later.

How to work:
- Use the tools. Every path is relative to the worktree root; you cannot reach files outside it or inside .git.
- Read before you edit: list_files and grep to find your way, read_file before edit_file.
- Keep to the task: change what it needs, follow the code's existing style, do not rewrite unrelated code.
- Run the task's checks yourself with run_command before you finish, and fix what fails.
- Do not commit, push or switch branches: YokeFlow commits your work on the task's branch.
- Do not print or look for secrets; the environment has none for you.
- When the work is done, call `finish` with a short summary (what changed, where, anything left open).
  The task's checks then run; if they fail you get their output and can fix the work."""


def build_system_prompt(*, expertise: str, repo_map: str) -> list[dict]:
    """Rules, then the domain's expertise, then the repository map: most to least shared, so
    the cached prefix is reused as widely as possible. cache_control marks its end."""
    blocks = [{"type": "text", "text": RULES}]
    if expertise.strip():
        blocks.append({"type": "text", "text": "# What this project has learned in this domain\n\n" + expertise.strip()})
    if repo_map.strip():
        blocks.append({"type": "text", "text": "# Repository map (when the task started)\n\n" + repo_map.strip()})
    blocks[-1]["cache_control"] = {"type": "ephemeral"}
    return blocks


def _field(d: dict, *names: str, default: str = "") -> str:
    for name in names:
        if d.get(name):
            return str(d[name])
    return default


def build_task_prompt(task: dict, epic: dict | None, dependency_summaries: list[dict],
                      previous_attempt: dict | None) -> str:
    task_id = _field(task, "task_id", "id", default="?")
    parts = [f"# Task {task_id}: {_field(task, 'title', 'name', default='(untitled)')}"]
    meta = [f"{k}: {task[k]}" for k in ("domain", "complexity") if task.get(k)]
    if meta:
        parts.append(" · ".join(meta))
    parts.append(_field(task, "description", default="(no description given)"))
    if epic:
        epic_text = f"## Epic {_field(epic, 'epic_id', 'id', default='?')}: {_field(epic, 'title', 'name')}"
        if epic.get("description"):
            epic_text += "\n" + str(epic["description"])
        parts.append(epic_text)
    tests = [t for t in task.get("tests") or [] if str(t).strip()]
    if tests:
        lines = "\n".join(f"- `{t}`" for t in tests)
        parts.append("## Checks\nThe task is done only when every one of these commands exits 0 in the "
                     f"worktree root:\n{lines}")
    else:
        parts.append("## Checks\nThis task declares no check commands; test your work yourself.")
    if dependency_summaries:
        deps = []
        for dep in dependency_summaries:
            head = f"- {_field(dep, 'task_id', 'id', default='?')} {_field(dep, 'title')}".rstrip()
            deps.append(head + (f": {dep['summary']}" if dep.get("summary") else ""))
        parts.append("## Finished work this task builds on (already merged)\n" + "\n".join(deps))
    if previous_attempt:
        parts.append(_previous_attempt(previous_attempt))
    parts.append("Start by looking at the repository, then do the task and call `finish`.")
    return "\n\n".join(parts)


def build_resolution_prompt(task: dict, *, branch: str, target: str, conflicts: list[dict],
                            marked_files: list[str], previous_attempt: dict | None = None) -> str:
    """The prompt of a resolution agent: the target branch is merged into the task's branch in
    this worktree and left these conflicts; keep both sides' intent, then the checks run."""
    task_id = _field(task, "task_id", "id", default="?")
    parts = [f"# Resolve a merge conflict for task {task_id}: {_field(task, 'title', default='(untitled)')}",
             f"This task's work (branch `{branch}`) is finished, but `{target}` moved on while it ran and the two "
             f"now conflict. `{target}` has been merged into `{branch}` in this worktree; everything that merged "
             "cleanly is in place. Resolve the conflicts below so that the result keeps both what this task did "
             f"and what `{target}` did; do not simply drop one side.",
             "## The task\n" + _field(task, "description", default="(no description given)")]
    listing = []
    for c in conflicts:
        line = f"- `{c.get('path', '?')}` ({c.get('kind', 'conflict')}): {c.get('message', '')}"
        if c.get("path") in marked_files:
            line += " — the file holds conflict markers (`<<<<<<< " + branch + "`, `=======`, `>>>>>>> " + target + "`)"
        listing.append(line)
    parts.append("## Conflicts\n" + "\n".join(listing))
    if marked_files:
        parts.append("Every conflict marker must be gone from " + ", ".join(f"`{p}`" for p in marked_files)
                     + " before you finish; a check verifies it.")
    tests = [t for t in task.get("tests") or [] if str(t).strip()]
    if tests:
        parts.append("## Checks\nThen these commands must exit 0 in the worktree root:\n"
                     + "\n".join(f"- `{t}`" for t in tests))
    if previous_attempt:
        lines = [f"## A previous resolution (attempt {previous_attempt.get('attempt', '?')}) failed",
                 "Its edits were dropped: the files are as the merge left them. What went wrong:"]
        if previous_attempt.get("error"):
            lines.append(f"- {previous_attempt['error']}")
        for check in previous_attempt.get("checks") or []:
            if not check.get("passed"):
                output = str(check.get("output", "")).strip()[-1500:]
                lines.append(f"- `{check.get('command')}` failed:\n```\n{output}\n```")
        parts.append("\n".join(lines))
    parts.append("Read the conflicting files, edit them, run the checks, and call `finish` with a summary of "
                 "how you resolved each conflict. Do not commit: YokeFlow commits the merge.")
    return "\n\n".join(parts)


def _previous_attempt(prev: dict) -> str:
    lines = [f"## A previous attempt (attempt {prev.get('attempt', '?')}) did not complete this task",
             "Its work so far is in this worktree (the branch's last commit and any uncommitted files). "
             "Continue from it; do not start over unless it is wrong."]
    for key, label in (("outcome", "Outcome"), ("summary", "Its summary"), ("error", "Error"), ("commit", "Commit")):
        if prev.get(key):
            lines.append(f"- {label}: {prev[key]}")
    for check in prev.get("checks") or []:
        if not check.get("passed"):
            output = str(check.get("output", "")).strip()[-1500:]
            lines.append(f"- Failed check `{check.get('command')}` (exit {check.get('exit_code')}):\n```\n{output}\n```")
    rest = {k: v for k, v in prev.items() if k not in ("attempt", "outcome", "summary", "error", "commit", "checks")}
    for key, value in rest.items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines)


def repo_map(root: Path, max_lines: int = 200, *, tracked: list[tuple[str, int, int]] | None = None) -> str:
    """Folders and files with sizes, ignoring .git, caches and gitignored files. When the tree is
    longer than max_lines, deep folders are folded into one line each (file count, total size).
    `tracked`: (path, size, mode) of the files git tracks in a clean checkout (gitops
    `tracked_files`), which the map is then made of without walking the folder or matching
    every file against the ignore rules."""
    root = Path(os.path.realpath(root))
    if tracked is not None:
        files = _in_walk_order(root, tracked)
    else:
        files = [(rel, entry.stat(follow_symlinks=False).st_size) for rel, entry in walk_entries(root)]
    if not files:
        return "(empty repository)"
    split = [rel.split("/") for rel, _ in files]
    for depth in range(max(len(p) for p in split), 0, -1):
        count = _line_count(split, depth)   # counted first: rendering every depth tried was most of it
        if count <= max_lines:
            return "\n".join(_render(files, depth))
    lines = _render(files, 1, limit=max_lines - 1)   # the lines shown, not the thousand after them
    return "\n".join(lines + [f"… and {count - max_lines + 1} more entries"])


_UNSEEN = object()


def _in_walk_order(root: Path, tracked: list[tuple[str, int, int]]) -> list[tuple[str, int]]:
    """Tracked files as walk_entries gives them: a folder's files (by name), then its folders; no
    caches or dependency folders; a symlink only to a file inside the checkout. Grouped by folder
    and sorted per folder (a sort key of every path's parts was most of the map at 1,000 files)."""
    files: dict[str, list[tuple[str, str, int]] | None] = {"": []}   # folder -> its files; None: skipped
    subfolders: dict[str, list[str]] = {"": []}
    for rel, size, mode in tracked:
        folder, _, name = rel.rpartition("/")
        if name == ".git":
            continue
        here = files.get(folder, _UNSEEN)
        if here is _UNSEEN:
            here = _add_folder(folder, files, subfolders)
        if here is None:
            continue
        if stat.S_ISLNK(mode):
            full = root / rel
            if full.is_dir() or not inside(root, full):
                continue
        here.append((name, rel, size))
    out: list[tuple[str, int]] = []
    stack = [""]
    while stack:
        folder = stack.pop()
        here = files[folder]
        if here is None:
            continue
        here.sort()
        out.extend((rel, size) for _, rel, size in here)
        stack.extend(sorted(subfolders[folder], reverse=True))
    return out


def _add_folder(folder: str, files: dict, subfolders: dict) -> list | None:
    """Registers `folder` and the parents not seen yet; a folder in SKIP_DIRS, or under one, lists None."""
    parent, _, name = folder.rpartition("/")
    above = files.get(parent, _UNSEEN)
    if above is _UNSEEN:
        above = _add_folder(parent, files, subfolders)
    skipped = above is None or name in SKIP_DIRS
    files[folder] = None if skipped else []
    subfolders[folder] = []
    subfolders[parent].append(folder)
    return files[folder]


def _line_count(split: list[list[str]], depth: int) -> int:
    """len(_render(files, depth)), without making the lines."""
    folders: set[tuple[str, ...]] = set()
    folded: set[tuple[str, ...]] = set()
    shown = 0
    for parts in split:
        if len(parts) <= depth:
            shown += 1
            headed = len(parts) - 1
        else:
            folded.add(tuple(parts[:depth]))
            headed = depth - 1
        for level in range(1, headed + 1):
            folders.add(tuple(parts[:level]))
    return len(folders) + shown + len(folded)


def _render(files: list[tuple[str, int]], depth: int, limit: int | None = None) -> list[str]:
    """One line per folder and file down to `depth` levels; deeper content folds into its folder.
    `limit`: only the first lines (folded folders among them still count all their files)."""
    folded: dict[str, list[int]] = defaultdict(list)
    shown_dirs: set[str] = set()
    lines: list[str] = []
    for rel, size in files:
        if limit is not None and len(lines) >= limit:
            key = "/".join(rel.split("/")[:depth])
            if key in folded:
                folded[key].append(size)
            continue
        parts = rel.split("/")
        headed = len(parts) - 1 if len(parts) <= depth else depth - 1
        for level in range(1, headed + 1):
            folder = "/".join(parts[:level])
            if folder not in shown_dirs:
                shown_dirs.add(folder)
                lines.append(("  " * (level - 1)) + parts[level - 1] + "/")
        if len(parts) <= depth:
            lines.append(("  " * (len(parts) - 1)) + f"{parts[-1]} ({human_size(size)})")
        else:
            key = "/".join(parts[:depth])
            if key not in folded:
                lines.append(f"\0{key}")
            folded[key].append(size)
    out = []
    for line in lines:
        if line.startswith("\0"):
            key = line[1:]
            sizes = folded[key]
            indent = "  " * (key.count("/"))
            out.append(f"{indent}{key.rsplit('/', 1)[-1]}/ … {len(sizes)} files, {human_size(sum(sizes))}")
        else:
            out.append(line)
    return out
