"""`yokeflow git merge`: the merger's own merge, usable by hand."""

from __future__ import annotations

import argparse
import json

from shared.config import ConfigError, load_config
from shared.gitops import GitError, merge_branch
from yokeflow.errors import CliError

EXIT_CONFLICT = 3
EXIT_REJECTED = 4


def register(subparsers) -> None:
    git = subparsers.add_parser("git", help="git operations YokeFlow performs (merges)")
    sub = git.add_subparsers(dest="git_command", metavar="SUBCOMMAND")
    merge = sub.add_parser("merge", help="merge a branch in memory and move the target by compare-and-swap")
    merge.add_argument("branch", help="the branch to merge, e.g. task/12-login-form")
    merge.add_argument("--repo", default=".", help="repository path (default: current folder)")
    merge.add_argument("--into", default="main", help="target branch (default: main)")
    merge.add_argument("--squash", action="store_true", help="one squashed commit instead of a merge commit")
    merge.add_argument("--message", help="commit message (default: \"Merge branch '<branch>' into <target>\")")
    merge.add_argument("--validate", metavar="COMMAND", help="run COMMAND in a checkout of the merged tree first")
    merge.add_argument("--json", action="store_true", help="print exactly one JSON object")
    merge.set_defaults(func=run_merge)
    git.set_defaults(func=lambda args: (git.print_help(), 2)[1])


def run_merge(args: argparse.Namespace) -> int:
    try:
        result = merge_branch(args.repo, args.branch, into=args.into, mode="squash" if args.squash else "merge",
                              message=args.message, validate_command=args.validate,
                              sandbox=load_config(args.repo).agent.sandbox if args.validate else None)
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None
    except GitError as exc:
        raise CliError(str(exc).splitlines()[0], 1) from None
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print_human(result, args)
    if result.status == "conflict":
        return EXIT_CONFLICT
    if result.status == "rejected":
        return EXIT_REJECTED
    return 0


def _print_human(result, args) -> None:
    if result.status == "merged":
        print(f"merged {args.branch} into {args.into}: {result.commit}")
    elif result.status == "up_to_date":
        print(f"{args.into} already contains {args.branch} (merged by {result.commit})")
    elif result.status == "rejected":
        print(f"validation failed; {args.into} was not moved\n{result.output}")
    else:
        print(f"conflict merging {args.branch} into {args.into}; {args.into} was not moved:")
        for c in result.conflicts:
            print(f"  {c['kind']:<16} {c['path']}")
    for warning in result.warnings:
        print(f"warning: {warning}")
