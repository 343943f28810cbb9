"""The plan file (docs/plan-format.md): epics and tasks with declared dependencies.

Loading checks every field and reports every problem at once, each with the path to the
field; graph checks (cycles, missing references, duplicates) are shared/resolver.py.
Ids may be int or string in the file and are text inside: 11 and "11" are the same id.
"""

from shared.plan.complexity import estimate_complexity, task_complexity
from shared.plan.fields import parse_plan
from shared.plan.files import decode_plan_text, load_plan, write_plan
from shared.plan.doc import EpicDoc, PlanDoc, TaskDoc
from shared.plan.model import (
    COMPLEXITIES, DEPENDENCY_TYPES, DOMAINS, EPIC_FIELDS, MAX_FIELD_PROBLEMS, MAX_NESTING, PLAN_FIELDS,
    PROBLEM_CODES, TASK_FIELDS, Plan, PlanEpic, PlanError, PlanFileUnreadable, PlanProblem, PlanTask,
    plan_to_dict,
)

__all__ = [
    "COMPLEXITIES", "DEPENDENCY_TYPES", "DOMAINS", "EPIC_FIELDS", "EpicDoc", "PlanDoc", "TaskDoc", "MAX_FIELD_PROBLEMS", "MAX_NESTING",
    "PLAN_FIELDS", "PROBLEM_CODES", "TASK_FIELDS", "Plan", "PlanEpic", "PlanError", "PlanFileUnreadable",
    "PlanProblem", "PlanTask", "decode_plan_text", "estimate_complexity", "load_plan", "parse_plan",
    "plan_to_dict", "task_complexity", "write_plan",
]
