"""`yokeflow worktrees list|prune`: the agents' worktrees under <repo>/.worktrees/."""

from __future__ import annotations

import argparse
import json
import re

from shared.gitops import GitError, WorktreeManager
from yokeflow.errors import CliError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> float:
    """'90s', '30m', '24h', '7d' or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age; use e.g. 30m, 24h or 7d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def register(subparsers) -> None:
    wt = subparsers.add_parser("worktrees", help="list or prune agent worktrees")
    sub = wt.add_subparsers(dest="worktrees_command", metavar="SUBCOMMAND")
    ls = sub.add_parser("list", help="list worktrees with branch, head and port block")
    ls.add_argument("--repo", default=".", help="repository path (default: current folder)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    prune = sub.add_parser("prune", help="remove worktrees unused for longer than an age")
    prune.add_argument("--repo", default=".", help="repository path (default: current folder)")
    prune.add_argument("--older-than", type=parse_age, default=parse_age("24h"), help="age, e.g. 24h (default)")
    prune.set_defaults(func=run_prune)
    wt.set_defaults(func=lambda args: (wt.print_help(), 2)[1])


def _manager(repo: str) -> WorktreeManager:
    try:
        return WorktreeManager(repo)
    except GitError as exc:
        raise CliError(str(exc), 1) from None


def run_list(args: argparse.Namespace) -> int:
    items = _manager(args.repo).list()
    if args.json:
        print(json.dumps([{"name": w.name, "path": str(w.path), "branch": w.branch, "head": w.head,
                           "base_commit": w.base_commit, "port_base": w.port_base} for w in items]))
        return 0
    if not items:
        print("no worktrees")
    for w in items:
        print(f"{w.name:<24} {w.branch:<40} {w.head[:12]}  ports {w.port_base}+  {w.path}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    removed = _manager(args.repo).prune(args.older_than)
    print("removed: " + ", ".join(removed) if removed else "nothing to prune")
    return 0
