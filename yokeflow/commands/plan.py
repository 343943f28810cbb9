"""`yokeflow plan ...`: check a plan file and draw its graph.

Each subcommand is one `add_<name>(plan_commands)` function listed in PLAN_COMMANDS; a new
subcommand (plan create, plan approve) is a new function appended to that list.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from shared.resolver import Resolution, resolve
from shared.plan import Plan, PlanError, PlanFileUnreadable, PlanProblem, load_plan
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
    return plan, resolve(plan)


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
    return "\n".join(lines + verdict_lines(source, resolution))


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
    for line in verdict_lines(args.plan, resolution):
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


# ---------------------------------------------------------------- the group
PLAN_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [add_check, add_show]


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
