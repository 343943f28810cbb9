"""Every NATS subject YokeFlow uses, built in one place.

Events: <prefix>.evt.<project>.<aggregate>.<aggregate id>.<EventType>
Agent logs: <prefix>.log.<project>.<run-task>.<kind>
Every variable part goes through `token` (no dots, spaces or wildcards); "*" stays a wildcard.
"""

from __future__ import annotations

import hashlib
import re
from typing import NamedTuple

_TOKEN_BAD = re.compile(r"[^A-Za-z0-9_\-]")
ANY = "*"


def token(value: object) -> str:
    """A value made safe as one NATS subject token (no dots, spaces or wildcards)."""
    text = str(value)
    safe = _TOKEN_BAD.sub("_", text)
    if not text.isascii():  # CJK ids would all become "__": a hash keeps them apart
        safe = f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return safe or "_"


class LogSubject(NamedTuple):
    """The parts of an agent-log subject (each as the subject carries it: a token)."""

    project: str
    task_key: str
    kind: str


class EventSubject(NamedTuple):
    """The parts of an event subject (each as the subject carries it: a token)."""

    project: str
    aggregate: str
    aggregate_id: str
    event_type: str


def _part(value: object) -> str:
    return ANY if value == ANY else token(value)


class Subjects:
    """The subjects under one prefix (tests and shared clusters isolate by prefix)."""

    def __init__(self, prefix: str = "yf"):
        self.prefix = prefix

    # ------------------------------------------------------------------ events
    @property
    def all_events(self) -> str:
        return f"{self.prefix}.evt.>"

    def event(self, project_id: str, aggregate: str, aggregate_id: str, event_type: str) -> str:
        return ".".join((self.prefix, "evt", token(project_id), aggregate, token(aggregate_id), event_type))

    def aggregate(self, project_id: str, aggregate: str, aggregate_id: str) -> str:
        """Every event of one aggregate (the filter optimistic concurrency checks against)."""
        return ".".join((self.prefix, "evt", _part(project_id), aggregate, _part(aggregate_id), ANY))

    def of_aggregate(self, aggregate: str, project: str = ANY) -> str:
        """Every event of every aggregate of one kind."""
        return ".".join((self.prefix, "evt", _part(project), aggregate, ">"))

    def of_type(self, event_type: str, project: str = ANY, aggregate: str = ANY) -> str:
        return ".".join((self.prefix, "evt", _part(project), aggregate, ANY, event_type))

    def project_events(self, project_id: str) -> str:
        return f"{self.prefix}.evt.{token(project_id)}.>"

    # ------------------------------------------------------------------ agent logs
    @property
    def all_logs(self) -> str:
        return f"{self.prefix}.log.>"

    def log(self, project_id: str, task_key: str, kind: str = ANY) -> str:
        return ".".join((self.prefix, "log", token(project_id), token(task_key), _part(kind)))

    def project_logs(self, project_id: str) -> str:
        return f"{self.prefix}.log.{token(project_id)}.>"

    def parse_event(self, subject: str) -> EventSubject | None:
        """The parts of an event subject under this prefix; None for any other subject."""
        head = f"{self.prefix}.evt."
        parts = subject[len(head):].split(".") if subject.startswith(head) else []
        return EventSubject(*parts) if len(parts) == 4 else None

    @staticmethod
    def last_token(subject: str) -> str:
        """An event subject's event type, or a log subject's kind."""
        return subject.rsplit(".", 1)[-1]

    def parse_log(self, subject: str) -> LogSubject | None:
        """The parts of a log subject under this prefix; None for any other subject."""
        head = f"{self.prefix}.log."
        parts = subject[len(head):].split(".") if subject.startswith(head) else []
        return LogSubject(*parts) if len(parts) == 3 else None
