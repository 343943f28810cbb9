"""`yokeflow plan ...`: check a plan file and draw its graph.

Each subcommand is one `add_<name>(plan_commands)` function listed in PLAN_COMMANDS; a new
subcommand (plan create, plan approve) is a new function appended to that list.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable

from shared import events as ev
from shared.lanes import compute_lanes
from shared.resolver import Resolution, resolve
from shared.plan import Plan, PlanError, PlanFileUnreadable, PlanProblem, load_plan
from shared.plan.size import payload_problems
from yokeflow.errors import CliError

EXIT_VALID, EXIT_UNREADABLE, EXIT_INVALID = 0, 1, 2
_TITLE_WIDTH = 36


def load_and_resolve(path: str) -> tuple[Plan | None, Resolution]:
    """The plan and its resolution; a plan whose fields are bad resolves to its field errors.
    An unreadable file is a CliError (exit 1) with one line naming the file."""
    try:
        plan = load_plan(path)
    except PlanFileUnreadable as exc:
        raise CliError(str(exc), EXIT_UNREADABLE) from None
    except PlanError as exc:
        return None, Resolution.rejected(exc.problems)
    resolution = resolve(plan)
    if too_large := payload_problems(plan):  # it would fail at `run` as a message the bus cannot carry
        resolution = dataclasses.replace(resolution, valid=False, errors=[*resolution.errors, *too_large])
    return plan, resolution


# ---------------------------------------------------------------- plan check
def add_check(plan_commands: argparse._SubParsersAction) -> None:
    parser = plan_commands.add_parser(
        "check", help="validate a plan file: batches, critical path and every problem",
        description="Validate a plan file. Exit 0 when valid, 2 when not, 1 when unreadable.")
    parser.add_argument("plan", metavar="PLAN", help="plan file (YAML, or JSON with a .json name)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object")
    parser.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    plan, resolution = load_and_resolve(args.plan)
    if args.json:
        print(json.dumps(resolution.to_json(), ensure_ascii=False))
    else:
        print(check_report(args.plan, plan, resolution))
    return EXIT_VALID if resolution.valid else EXIT_INVALID


def check_report(source: str, plan: Plan | None, resolution: Resolution) -> str:
    """The person-readable text of `plan check`."""
    lines = []
    if plan is not None:
        count = sum(len(e.tasks) for e in plan.epics)
        lines.append(f"plan {plan.name!r} ({source}): {count} tasks in {len(plan.epics)} epics, "
                     f"{len(resolution.batches)} batches")
        lines += [f"  batch {k}: {', '.join(batch)}" for k, batch in enumerate(resolution.batches)]
        lines += lane_lines(plan)
    return "\n".join(lines + verdict_lines(source, resolution))


def lane_lines(plan: Plan) -> list[str]:
    """The shared lanes `parallel.strategy: smart` would run (shared/lanes.py); none: no lines."""
    lanes = compute_lanes(plan)
    shared = [lane for lane in lanes if lane.shared]
    if not shared:
        return []
    alone = len(lanes) - len(shared)
    lines = [f"lanes under parallel.strategy smart (tasks predicted to edit the same files run one after "
             f"another on one branch; {alone} other task{'s' if alone != 1 else ''} run alone):"]
    lines += [f"  {lane.branch}: {', '.join(lane.task_ids)}" for lane in shared]
    return lines


def verdict_lines(source: str, resolution: Resolution) -> list[str]:
    """Critical path, warnings, errors and the verdict: the part `plan show` prints too."""
    lines = []
    if resolution.critical_path:
        lines.append(f"critical path ({_minutes(resolution.critical_path_minutes)}): "
                     + " → ".join(resolution.critical_path))
    lines += [_problem_line("warning", p) for p in resolution.warnings]
    lines += [_problem_line("error", p) for p in resolution.errors]
    if resolution.valid:
        lines.append("valid")
    else:
        n = len(resolution.errors)
        lines.append(f"invalid: {n} error{'s' if n != 1 else ''} in {source}; fix them and run "
                     "`yokeflow plan check` again")
    return lines


def _problem_line(kind: str, problem: PlanProblem) -> str:
    where = f" {problem.path}:" if problem.path else ""
    return f"{kind} [{problem.code}]{where} {problem.message}"


def _minutes(value: float) -> str:
    return f"{value:g} min"


# ---------------------------------------------------------------- plan show
def add_show(plan_commands: argparse._SubParsersAction) -> None:
    parser = plan_commands.add_parser(
        "show", help="draw a plan: epics as columns, batches as rows",
        description="Draw a plan's dependency graph: epics as columns, batches as rows, the "
                    "critical path marked with *. Exit 0 when valid, 2 when not.")
    parser.add_argument("plan", metavar="PLAN", help="plan file (YAML, or JSON with a .json name)")
    parser.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    plan, resolution = load_and_resolve(args.plan)
    terminal = sys.stdout.isatty()
    # off a terminal: no colours, ASCII lines, and as wide as the table needs
    console = Console(file=sys.stdout, highlight=False, soft_wrap=False,
                      **({} if terminal else {"no_color": True, "width": 100_000, "color_system": None}))
    if plan is None:
        console.print(check_report(args.plan, plan, resolution), markup=False)
        return EXIT_INVALID
    critical = set(resolution.critical_path)
    console.print(f"plan {plan.name}: epics as columns, batches as rows; * marks the critical path, "
                  "← lists what a task waits for", markup=False)
    table = Table(box=box.ROUNDED if terminal else box.ASCII, show_lines=True)
    table.add_column("batch", no_wrap=True, min_width=5)
    for epic in plan.epics:
        waits = f"waits for epics {', '.join(epic.depends_on)}" if epic.depends_on else "waits for no epic"
        table.add_column(f"epic {epic.id}: {epic.name}\npriority {epic.priority}\n{waits}")
    rows = [(f"{k}", batch) for k, batch in enumerate(resolution.batches)]
    if resolution.unresolved:
        rows.append(("blocked by a cycle", resolution.unresolved))
    column = {id(epic): i for i, epic in enumerate(plan.epics)}
    epic_at = {task.id: epic for epic in reversed(plan.epics) for task in epic.tasks}
    for label, ids in rows:
        cells: list[list[str]] = [[] for _ in plan.epics]
        for task_id in ids:
            task = plan.task(task_id)
            cells[column[id(epic_at[task_id])]].append(_task_cell(task, task_id in critical, terminal))
        table.add_row(label, *("\n".join(c) for c in cells))
    console.print(table)
    for line in lane_lines(plan) + verdict_lines(args.plan, resolution):
        console.print(line, markup=False)
    return EXIT_VALID if resolution.valid else EXIT_INVALID


def _task_cell(task, on_critical_path: bool, terminal: bool) -> str:
    from rich.markup import escape

    title = task.title if len(task.title) <= _TITLE_WIDTH else task.title[:_TITLE_WIDTH - 1] + "…"
    mark = "*" if on_critical_path else " "
    text = escape(f"{mark}{task.id} {title}")
    if on_critical_path and terminal:
        text = f"[bold red]{text}[/]"
    if task.depends_on:
        soft = " (soft)" if task.dependency_type == "soft" else ""
        text += "\n" + escape(f"  ← {', '.join(task.depends_on)}{soft}")
    return text


# ---------------------------------------------------------------- plan create (Session 0)
def add_create(plan_commands: argparse._SubParsersAction) -> None:
    from yokeflow.commands.runtime import _state_arg

    parser = plan_commands.add_parser(
        "create", help="Session 0: a model turns a spec into a plan file for review",
        description="Have a model plan the spec (epics, tasks, dependencies, tests) through a strict tool "
                    "call; the plan is checked and fixed for a few rounds, written, and recorded as "
                    "PlanProduced. Exit 0 when a plan was written, 2 when none was valid or the spec is "
                    "refused, 1 on other errors.")
    parser.add_argument("--spec", required=True, help="the application spec (text, up to 200 KB)")
    parser.add_argument("--repo", help="git repository the plan is for (its files are shown to the model)")
    parser.add_argument("--out", help="plan file to write (default: plan.yaml beside the spec)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.add_argument("--provider", help="anthropic | replay (default: agent.provider of the config)")
    parser.add_argument("--transcript", help="replay: the recorded planning conversation "
                                             "(default: session0.json beside the spec)")
    parser.add_argument("--model", default="sonnet", help="model for the anthropic provider (default sonnet)")
    parser.add_argument("--max-rounds", type=int, default=3, help="submissions before giving up (default 3)")
    _state_arg(parser)
    parser.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    import asyncio

    from shared.plan.session0 import SpecError, read_spec
    from shared.commands import project_id_for
    from yokeflow.commands.runtime import _config

    try:
        spec = read_spec(args.spec)
    except SpecError as exc:
        raise CliError(str(exc), EXIT_INVALID) from None
    spec_dir = Path(args.spec).resolve().parent
    repo = Path(args.repo).expanduser().resolve() if args.repo else None
    if repo is not None and not repo.is_dir():
        raise CliError(f"repository {repo} does not exist: give an existing folder with --repo")
    out = Path(args.out).expanduser() if args.out else spec_dir / "plan.yaml"
    if out.exists() and not args.force:
        raise CliError(f"{out} already exists: pass --force to overwrite it, or --out for another file")
    if args.max_rounds < 1:
        raise CliError(f"--max-rounds must be at least 1, got {args.max_rounds}")
    config = _config(repo or spec_dir)
    provider = _planning_provider(args.provider or config.agent.provider, args.transcript, spec_dir, config)
    project_id = project_id_for(repo or spec_dir)
    return asyncio.run(_create(args, config, provider, spec, project_id, repo, out.resolve()))


def _planning_provider(name: str, transcript: str | None, spec_dir: Path, config):
    from shared.llm import ProviderError, make_provider

    options: dict = {}
    if name == "replay":
        path = Path(transcript) if transcript else spec_dir / "session0.json"
        if not path.is_file():
            raise CliError(f"the replay provider plays a recorded planning conversation and {path} is not a "
                           "file: pass --transcript FILE, or --provider anthropic to ask a model")
        options["transcript"] = str(path)
    elif name == "anthropic" and config.agent.base_url:
        options["base_url"] = config.agent.base_url
    elif name not in ("anthropic", "replay"):
        raise CliError(f"plan create works with --provider anthropic or replay, not {name!r}")
    try:
        return make_provider(name, options)
    except ProviderError as exc:
        raise CliError(str(exc)) from None


async def _create(args, config, provider, spec: str, project_id: str, repo: Path | None, out: Path) -> int:
    from shared.plan import session0
    from shared.llm import ProviderError
    from shared.plan import write_plan

    async with _plan_bus(config, args.state_dir) as bus:
        plan_id = session0.new_plan_id()
        requested = await session0.request_plan(bus, project_id=project_id, plan_id=plan_id, spec=spec,
                                                repo_path=str(repo or ""))
        try:
            outcome = await session0.produce_plan(provider, spec, model=args.model, max_rounds=args.max_rounds,
                                                  repo_map=_repo_map(repo) if repo else "")
        except ProviderError as exc:
            await session0.record_outcome(bus, requested, None, errors=[
                ev.PlanIssue(code="provider_error", message=str(exc))])
            raise CliError(f"plan {plan_id} rejected: the model call failed: {exc}") from None
        spent = (f"{outcome.rounds} round(s) with {outcome.model}: {outcome.usage.input_tokens:,} tokens in, "
                 f"{outcome.usage.output_tokens:,} out, ${outcome.cost_usd:.4f}")
        if provider.name == "replay":
            spent += f" (replayed from {provider.source}: no model was called)"
        if outcome.plan is None:
            await session0.record_outcome(bus, requested, outcome)
            print(f"plan {plan_id} rejected: no valid plan after {spent}; the last submission's problems:")
            print("\n".join(_problem_line("error", p) for p in outcome.problems))
            print("clarify the spec (or raise --max-rounds) and run `yokeflow plan create` again")
            return EXIT_INVALID
        out.parent.mkdir(parents=True, exist_ok=True)
        write_plan(outcome.plan, out)
        await session0.record_outcome(bus, requested, outcome, path=str(out))
    print(f"plan {plan_id} produced in {spent}")
    print(check_report(str(out), outcome.plan, outcome.resolution or resolve(outcome.plan)))
    print(f"review it (`yokeflow plan show {out}`), then `yokeflow plan approve {plan_id}`")
    return EXIT_VALID


def _repo_map(repo: Path, limit: int = 400) -> str:
    """The repository's files, one path a line, for the model to plan around (capped)."""
    skip = {".git", ".worktrees", ".yokeflow", "node_modules", "__pycache__", ".venv", "venv"}
    paths: list[str] = []
    for path in sorted(repo.rglob("*")):
        rel = path.relative_to(repo)
        if skip.intersection(rel.parts) or not path.is_file():
            continue
        if len(paths) == limit:
            paths.append(f"... (more files; the first {limit} are listed)")
            break
        paths.append(rel.as_posix())
    return "\n".join(paths)


@contextlib.asynccontextmanager
async def _plan_bus(config, state_dir: Path):
    """A bus on the usual endpoint; with YOKEFLOW_NATS_URL it honours the subject prefix and stream
    names services started by `python -m services.<name>` use (YOKEFLOW_SUBJECT_PREFIX, ...)."""
    from yokeflow.system import open_endpoint

    async with open_endpoint(config, state_dir, need_database=False) as endpoint:
        if endpoint.source == "environment" and not endpoint.bus_options:
            endpoint.bus_options = config.runtime.bus_options()
        bus = await endpoint.bus("yokeflow-plan")
        try:
            yield bus
        finally:
            await bus.close()


# ---------------------------------------------------------------- plan approve
def add_approve(plan_commands: argparse._SubParsersAction) -> None:
    from yokeflow.commands.runtime import _state_arg

    parser = plan_commands.add_parser(
        "approve", help="approve a plan `plan create` produced",
        description="Record PlanApproved for a produced plan, named by its id or by the file it was "
                    "written to. Exit 0 when approved (or already approved), 2 when the plan was "
                    "rejected, 1 when it is unknown.")
    parser.add_argument("plan", metavar="PLAN_ID_OR_FILE")
    parser.add_argument("--by", default="", help="who approves (default: the user name)")
    _state_arg(parser)
    parser.set_defaults(func=run_approve)


def run_approve(args: argparse.Namespace) -> int:
    import asyncio
    import getpass

    from yokeflow.commands.runtime import _config

    approver = args.by or getpass.getuser()
    return asyncio.run(_approve(args.plan, approver, _config(), args.state_dir))


async def _approve(ref: str, approver: str, config, state_dir: Path) -> int:
    from shared.plan import session0

    async with _plan_bus(config, state_dir) as bus:
        plan_id = ref
        if Path(ref).is_file():
            plan_id = await session0.plan_id_for_file(bus, ref) or ""
            if not plan_id:
                raise CliError(f"no plan in the event log was written to {ref}: approve a plan by the id "
                               "`yokeflow plan create` printed, or create one first")
        try:
            produced, approved_now = await session0.approve_plan(bus, plan_id, approver)
        except session0.PlanNotFound as exc:
            raise CliError(str(exc), EXIT_UNREADABLE) from None
        except session0.PlanNotApprovable as exc:
            raise CliError(str(exc), EXIT_INVALID) from None
    tasks = produced.plan.task_count()
    what = "approved" if approved_now else "was already approved"
    print(f"plan {plan_id} ({produced.plan.name}, {tasks} tasks, {produced.path or 'no file'}) {what}")
    return EXIT_VALID


# ---------------------------------------------------------------- the group
PLAN_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_check, add_show, add_create, add_approve]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plan", help="check, show, create and approve plans",
                                   description="Work with plan files (docs/plan-format.md).")
    plan_commands = parser.add_subparsers(dest="plan_command", metavar="SUBCOMMAND")
    for add in PLAN_COMMANDS:
        add(plan_commands)

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return EXIT_INVALID

    parser.set_defaults(func=show_help)
