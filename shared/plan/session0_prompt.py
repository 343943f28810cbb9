"""What Session 0 says to the model: the system prompt, the one `submit_plan` tool whose input
schema is the plan file's JSON Schema (shared/plan/plan.schema.json), and the messages of each round."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from shared.plan import PlanProblem

SUBMIT_PLAN = "submit_plan"
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "shared" / "plan" / "plan.schema.json"

SYSTEM_PROMPT = """\
You are the planner of YokeFlow. You turn an application spec into a plan that coding agents \
carry out in parallel, each in its own git worktree, merged into main when its checks pass. \
Answer only by calling the submit_plan tool once with the whole plan.

How to plan:
- Layer-aware epics: group work by layer (storage, domain, interfaces, hardening, release) so \
each epic owns a coherent part of the code and its files.
- Explicit interfaces: write in each task's description the module, functions and data shapes \
it provides and the ones it uses from other tasks (names, arguments, return values). A task \
that only needs an interface agreed in writing does not wait for its implementation, so more \
tasks run at the same time.
- Dependencies: declare every real dependency in depends_on (task ids) or in an epic's \
depends_on (epic ids); add none that is not real. dependency_type hard means the dependency \
must succeed and be merged first; soft means it must only have finished. No cycles, no \
self-dependencies, ids unique across the whole plan, every reference to an existing id.
- Each task: a short title; a description precise enough for an agent that sees only this task; \
a domain (database, api, frontend, testing, security, deployment or general); a complexity \
(low, medium or high); estimate_minutes; and tests: shell commands, run from the repository \
root, that pass only when the task is done (the task writes those tests itself).
- files: list the files or folders a task will most likely edit (paths or globs from the \
repository root, e.g. src/api/users.py, src/api/**, docs/); tasks whose files overlap run one \
after another instead of conflicting.
- Priority 1 is the most urgent; give the foundations and the critical path priority 1.
- Keep tasks small enough for one agent session (a few files), and few enough that the plan \
stays readable (usually 5 to 40 tasks).

If a submission has problems, you get every problem back with the path to the field; fix all \
of them and call submit_plan again with the whole corrected plan."""


@functools.cache
def _plan_schema() -> dict[str, Any]:
    """The plan file's JSON Schema, read once from shared/plan/plan.schema.json."""
    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeError(f"the plan schema {SCHEMA_PATH} is missing: Session 0 gives it to the model "
                           "as the submit_plan tool's input schema; reinstall YokeFlow") from None
    # Meta keywords name the document, not the data; the tool's input schema needs neither.
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    return schema


def submit_plan_tool() -> dict[str, Any]:
    """The one tool the model answers with: its input is a whole plan file as JSON."""
    return {
        "name": SUBMIT_PLAN,
        "description": ("Submit the whole plan: epics and their tasks with ids, dependencies, domain, "
                        "complexity, estimate_minutes and tests. The plan is checked for cycles, missing "
                        "references, duplicate ids and bad fields; problems come back as the result."),
        "input_schema": copy.deepcopy(_plan_schema()),
    }


def tool_choice() -> dict[str, Any]:
    """Forces the model to answer through submit_plan rather than in prose."""
    return {"type": "tool", "name": SUBMIT_PLAN}


def system_blocks() -> list[dict[str, Any]]:
    return [{"type": "text", "text": SYSTEM_PROMPT}]


def first_message(spec: str, repo_map: str = "") -> dict[str, Any]:
    parts = [f"<spec>\n{spec.strip()}\n</spec>"]
    if repo_map.strip():
        parts.append("The repository already holds these files; plan around them and name the ones "
                     f"each task changes:\n<repository>\n{repo_map.strip()}\n</repository>")
    parts.append("Plan this application now with one submit_plan call.")
    return {"role": "user", "content": [{"type": "text", "text": "\n\n".join(parts)}]}


def problem_line(problem: PlanProblem) -> str:
    where = f" at {problem.path}" if problem.path else ""
    ids = f" (ids: {', '.join(problem.ids)})" if problem.ids else ""
    return f"- [{problem.code}]{where}: {problem.message}{ids}"


def problems_text(problems: list[PlanProblem], round_no: int, max_rounds: int) -> str:
    """The tool_result of a rejected submission: every problem, each with its path and ids."""
    n = len(problems)
    left = max_rounds - round_no
    head = (f"The plan has {n} problem{'s' if n != 1 else ''}; fix every one and call submit_plan again "
            f"with the whole corrected plan ({left} attempt{'s' if left != 1 else ''} left):")
    return "\n".join([head, *(problem_line(p) for p in problems)])


def tool_result(tool_use_id: str, text: str, *, is_error: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id,
                             "content": [{"type": "text", "text": text}]}
    if is_error:
        block["is_error"] = True
    return block


NO_TOOL_CALL = ("No plan was submitted: answer only by calling the submit_plan tool with the whole plan "
                "as its input.")
