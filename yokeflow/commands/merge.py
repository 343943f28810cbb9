"""`yokeflow merge retry|accept|rerun TASK` — act on a conflicted task: merge its branch again, merge
the resolution commit a person made on it, or run it again as a new attempt on the target as it is."""

from __future__ import annotations

import argparse
import asyncio
import re

from shared import events as ev
from shared.commands import request_merge
from yokeflow.commands.runtime import _config, _state_arg, collect_status
from yokeflow.errors import CliError
from yokeflow.progress import describe
from yokeflow.system import System, open_endpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="merges of finished tasks into the target branch")
    msub = p.add_subparsers(dest="merge_cmd", metavar="SUBCOMMAND", required=True)
    r = msub.add_parser("retry", help="merge a task's branch again (after resolving a conflict in its worktree)")
    r.add_argument("task", help="task id")
    r.add_argument("--run", help="run id (default: the latest run that has this task)")
    _state_arg(r)
    r.set_defaults(func=lambda a: asyncio.run(cmd_retry(a)), action="retry", commit="")
    a = msub.add_parser("accept", help="merge the resolution commit you made on a conflicted task's branch")
    a.add_argument("task", help="task id")
    a.add_argument("commit", help="the branch's head commit (40 hex characters) you accept as the resolution")
    a.add_argument("--run", help="run id (default: the latest run that has this task)")
    _state_arg(a)
    a.set_defaults(func=lambda a: asyncio.run(cmd_retry(a)), action="accept")
    n = msub.add_parser("rerun", help="set a conflicted task's branch aside and run it again on the target as it is")
    n.add_argument("task", help="task id")
    n.add_argument("--run", help="run id (default: the latest run that has this task)")
    _state_arg(n)
    n.set_defaults(func=lambda a: asyncio.run(cmd_retry(a)), action="rerun", commit="")


async def cmd_retry(args: argparse.Namespace) -> int:
    if args.action == "accept" and not re.fullmatch(r"[0-9a-f]{40}", args.commit):
        raise CliError(f"{args.commit!r} is not a full commit id: give the 40-hex head of the task's branch "
                       "(`git rev-parse BRANCH` in its worktree)", code=2)
    config = _config()
    async with open_endpoint(config, args.state_dir) as endpoint:
        status = await collect_status(endpoint, args.run)
        runs = [r for r in status["runs"] if any(t["id"] == args.task for t in r["tasks"])]
        if not runs:
            raise CliError(f"no run has a task {args.task}: `yokeflow status` lists runs and tasks")
        run = runs[-1]
        task = next(t for t in run["tasks"] if t["id"] == args.task)
        if task["merged"]:
            print(f"task {args.task} is already merged at {task['merge_commit'][:12]}")
            return 0
        system = None if endpoint.services_running else await System(endpoint, config,
                                                                     services=("ledger", "planner", "merger")).start()
        bus = await endpoint.bus()
        try:
            start = await bus.last_seq() + 1
            await request_merge(bus, run["project_id"], run["id"], args.task, action=args.action, commit=args.commit,
                                attempt=int(task.get("attempt") or 0))
            async for d in bus.read(start_seq=start, stop_at_end=False):
                e = d.event
                if getattr(e, "task_id", None) == args.task and isinstance(e, ev.BranchReset):
                    print(f"task {args.task}: {e.branch} set aside (kept at {e.kept_ref}); a new attempt starts on "
                          f"{e.target_branch}")
                    return 0
                if getattr(e, "task_id", None) == args.task and isinstance(e, (ev.BranchMerged, ev.MergeConflicted)):
                    print(describe(e))
                    return 0 if isinstance(e, ev.BranchMerged) else 3
        finally:
            await bus.close()
            if system is not None:
                await system.stop()
    return 1
