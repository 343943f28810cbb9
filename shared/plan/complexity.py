"""The complexity of a task whose plan gives none: a documented keyword and size score."""

from __future__ import annotations

import re
from typing import Any, Mapping

from shared.plan.model import PlanTask

_HARD_WORDS = re.compile(
    r"\b(migrat\w*|auth\w*|oauth|security|secur\w*|encrypt\w*|crypt\w*|concurren\w*|parallel|"
    r"distributed|transaction\w*|payment\w*|real-?time|websocket\w*|architect\w*|refactor\w*|"
    r"performance|optimi[sz]\w*|cach\w*|sync\w*|schema|integrat\w*|scal\w*)\b", re.I)
_EASY_WORDS = re.compile(
    r"\b(readme|docs?|documentation|typo|rename|comment\w*|copy|text|label|style|lint\w*|"
    r"format\w*|config\w*|constant\w*|logging|placeholder|stub)\b", re.I)


def estimate_complexity(task: PlanTask | Mapping[str, Any]) -> str:
    """low | medium | high from words and size, for tasks whose plan gives no complexity.

    Score: +2 per distinct hard word (migration, auth, concurrency, ...) up to +4, -1 per
    distinct easy word (readme, typo, rename, ...) up to -2, +1 for a description over 80
    words and +1 more over 200, +1 for 4 or more tests, +1 for an estimate of 30 minutes or
    more and +1 more from 120. Score >= 3 is high, >= 1 medium, else low.
    """
    get = task.get if isinstance(task, Mapping) else (lambda k, d=None: getattr(task, k, d))
    text = f"{get('title', '') or ''} {get('description', '') or ''}"
    hard = {m.lower() for m in _HARD_WORDS.findall(text)}
    easy = {m.lower() for m in _EASY_WORDS.findall(text)}
    score = min(4, 2 * len(hard)) - min(2, len(easy))
    words = len(str(get("description", "") or "").split())
    score += (words > 80) + (words > 200)
    score += len(get("tests", ()) or ()) >= 4
    minutes = get("estimate_minutes", 1.0)
    minutes = minutes if isinstance(minutes, (int, float)) else 1.0
    score += (minutes >= 30) + (minutes >= 120)
    return "high" if score >= 3 else "medium" if score >= 1 else "low"


def task_complexity(task: PlanTask) -> str:
    """The task's declared complexity, or the estimate when the plan gives none."""
    return task.complexity or estimate_complexity(task)
