"""How much learning helps a run (pure, from its events):

- `expertise_coverage`: share of started tasks whose agent was given expertise (at its first attempt);
- `entries_used_within_n`: share of entries learned in the run that were given to an agent within
  the next `window` task starts after they were learned;
- `repeat_error_rate`: share of failures met after a learning for the same error already existed.
"""

from __future__ import annotations

from typing import Iterable

from shared import events as ev

WINDOW = 5


def learning_measures(events: Iterable[ev.Event], window: int = WINDOW) -> dict[str, float | int]:
    first_start: dict[str, ev.AgentStarted] = {}
    starts: list[ev.AgentStarted] = []
    learned_at: dict[str, int] = {}    # entry id -> index in `starts` when it was first learned
    known_errors: set[str] = set()
    failures = repeats = 0
    for e in events:
        if isinstance(e, ev.AgentStarted):
            starts.append(e)
            first_start.setdefault(e.task_id, e)
        elif isinstance(e, ev.LearningExtracted):
            for entry in e.entries:
                learned_at.setdefault(entry.id, len(starts))
                if entry.kind == "failure":
                    failures += 1
                    repeats += entry.key in known_errors
            known_errors |= {x.key for x in e.entries if x.kind == "failure"}
    used = sum(1 for entry, at in learned_at.items()
               if any(entry in s.expertise_given for s in starts[at:at + window]))
    tasks = len(first_start)
    return {
        "tasks_started": tasks,
        "expertise_coverage": round(sum(1 for s in first_start.values() if s.expertise_given) / tasks, 4) if tasks else 0.0,
        "entries_learned": len(learned_at),
        "entries_used_within_n": round(used / len(learned_at), 4) if learned_at else 0.0,
        "window": window,
        "failures_met": failures,
        "repeat_error_rate": round(repeats / failures, 4) if failures else 0.0,
    }
