"""`yokeflow demo`: a bundled example, planned and built by replayed agents, offline.

It creates a fresh git repository from the example's seed, runs the example's plan on the
embedded servers with the `replay` provider (scripted model turns, written by hand for the
example, played through the same
agent loop and tools a live model uses), and ends by running the program's own tests on
`main`.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from shared.config import process_env
from shared.gitops import create_repository
from yokeflow.commands.runtime import _config, _state_arg, execute_run, load_plan_or_fail
from yokeflow.errors import CliError
from yokeflow.system import open_endpoint


def register(sub: argparse._SubParsersAction) -> None:
    from yokeflow.examples import list_examples

    p = sub.add_parser("demo", help="build the bundled example with replayed agents, offline, in a new repository")
    p.add_argument("--example", default="todo", choices=list_examples())
    p.add_argument("--dir", type=Path, help="repository to create (default ./yokeflow-demo-<example>)")
    p.add_argument("--strategy", choices=["by_epic", "by_task", "smart"], default=None)
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--quiet", action="store_true")
    _state_arg(p)
    p.set_defaults(func=lambda a: asyncio.run(cmd_demo(a)))


def prepare_repository(example: Path, target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        raise CliError(f"{target} already exists and is not empty: remove it or pass --dir NEW_FOLDER")
    shutil.copytree(example / "seed", target, dirs_exist_ok=True)
    create_repository(target, message="Initial commit: seed of the YokeFlow demo")


def example_check_command(example: Path) -> str:
    check = example / "CHECK"
    return check.read_text().strip() if check.exists() else "python -m unittest discover -s tests -q"


async def cmd_demo(args: argparse.Namespace) -> int:
    from yokeflow.examples import example_path

    example = example_path(args.example)
    target = (args.dir or Path(f"yokeflow-demo-{args.example}")).resolve()
    plan = load_plan_or_fail(str(example / "plan.yaml"))
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"YokeFlow demo: building '{plan.name}' ({len(plan.tasks())} tasks in {len(plan.epics)} epics) in {target}")
    say("The model is REPLAYED OFFLINE: scripted agent turns are played through the real agent loop, tools, "
        "worktrees and merges. No API key, no network, no cost.")
    prepare_repository(example, target)
    config = _config(target)
    overrides: dict = {"agent": {"provider": "replay", "transcripts": str(example / "transcripts")}, "parallel": {}}
    if args.strategy:
        overrides["parallel"]["strategy"] = args.strategy
    if args.max_concurrency:
        overrides["parallel"]["max_concurrency"] = args.max_concurrency
    async with open_endpoint(config, args.state_dir) as endpoint:
        started, outcome = await execute_run(endpoint, config, plan, target, overrides, quiet=args.quiet,
                                             command="demo")
    assert outcome is not None
    if not outcome.succeeded:
        raise CliError(f"demo run {started.run_id} did not complete: {getattr(outcome.event, 'reason', '')}"
                       f" — `yokeflow status --run {started.run_id}` shows each task")
    command = example_check_command(example)
    say(f"All {len(outcome.merged)} tasks merged into main. Running the program's own tests on main: {command}")
    result = await asyncio.to_thread(subprocess.run, shlex.split(command), cwd=target, capture_output=True, text=True,
                                     env={**process_env(), "PYTHONDONTWRITEBYTECODE": "1"})
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise CliError(f"the demo program's tests failed on main in {target}")
    say((result.stdout + result.stderr).strip().splitlines()[-1] if (result.stdout + result.stderr).strip() else "ok")
    say(f"Done: {target} holds the program on main. `yokeflow status --state-dir {args.state_dir}` shows every "
        f"task; `git -C {target} log --oneline --graph` shows the merges.")
    return 0
