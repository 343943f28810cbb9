"""The task server inside a run: tools an agent uses to ask about its own task, the tasks it
depends on and its domain's expertise, to report a discovery, and to ask for its task to be
blocked. Everything is scoped to the agent's own task and run: asking about another task or
run is a tool error, never an answer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from shared import events as ev
from shared.expertise import describe
from shared.expertise import store as expertise_store

MAX_TEXT = 4000
MAX_HITS = 20

TASK_TOOL_DEFINITIONS: list[dict] = [
    {"name": "task_info",
     "description": "Your task: id, title, description, domain, acceptance tests (the checks that must pass) and "
                    "the ids of the tasks it depends on.",
     "input_schema": {"type": "object", "properties": {
         "task_id": {"type": "string", "description": "Your own task id (optional)."}}}},
    {"name": "dependency_info",
     "description": "A task yours depends on: its summary and the files it changed on the target branch.",
     "input_schema": {"type": "object", "properties": {
         "task_id": {"type": "string", "description": "The id of one of your task's dependencies."},
         "run_id": {"type": "string", "description": "Your run's id (optional)."}}, "required": ["task_id"]}},
    {"name": "search_expertise",
     "description": "Search what this project learned in your task's domain (and general): entries matching "
                    "the words of the query, most useful first.",
     "input_schema": {"type": "object", "properties": {
         "query": {"type": "string", "description": "Words to look for, e.g. an error message or a file name."}},
         "required": ["query"]}},
    {"name": "report_discovery",
     "description": "Record something the next agent of this domain should know (a convention, a pitfall and "
                    "its fix). It is added to the domain's expertise at once.",
     "input_schema": {"type": "object", "properties": {
         "text": {"type": "string", "description": "What you found, in one or two sentences."},
         "files": {"type": "array", "items": {"type": "string"}, "description": "Files it is about."}},
         "required": ["text"]}},
    {"name": "request_block",
     "description": "Stop: the task cannot be done as written (missing prerequisite, contradiction, too big). "
                    "Give the reason, and the pieces it should be split into if that is the problem. Your "
                    "attempt ends here and a person is told.",
     "input_schema": {"type": "object", "properties": {
         "reason": {"type": "string"},
         "split_into": {"type": "array", "items": {"type": "string"}, "description": "Titles of smaller tasks."}},
         "required": ["reason"]}},
]
TASK_TOOL_NAMES = tuple(t["name"] for t in TASK_TOOL_DEFINITIONS)

Publish = Callable[[ev.Event, str], Awaitable[Any]]


@dataclass
class TaskScope:
    origin: ev.TaskReady
    publish: Publish                                   # (event, msg_id) -> appended
    latest_expertise: Callable[[str], Awaitable[ev.ExpertiseUpdated | None]]
    changed_files: Callable[[str], Awaitable[list[str]]]  # dependency task id -> files its merge changed


@dataclass
class TaskOutcome:
    text: str
    is_error: bool = False
    blocked: str | None = None  # the reason, when the agent asked to be blocked


class TaskTools:
    definitions = TASK_TOOL_DEFINITIONS
    names = TASK_TOOL_NAMES

    def __init__(self, scope: TaskScope):
        self.scope = scope
        self.discoveries = 0
        self.blocked: str | None = None  # the reason, once the agent asked to be blocked (seen by any loop)

    def handles(self, name: str) -> bool:
        return name in TASK_TOOL_NAMES

    async def run(self, name: str, tool_input: dict) -> TaskOutcome:
        tool_input = tool_input if isinstance(tool_input, dict) else {}
        try:
            return await getattr(self, f"_{name}")(**tool_input)
        except TypeError as exc:
            return TaskOutcome(f"bad input for {name}: {exc}", is_error=True)
        except _OutOfScope as exc:
            return TaskOutcome(str(exc), is_error=True)

    # ------------------------------------------------------------------ scope
    @property
    def task(self) -> ev.TaskReady:
        return self.scope.origin

    def _own_run(self, run_id: Any) -> None:
        if run_id not in (None, "", self.task.run_id):
            raise _OutOfScope(f"run {str(run_id)[:80]!r} is outside this agent's scope: you work on task "
                              f"{self.task.task_id} of run {self.task.run_id} only")

    # ------------------------------------------------------------------ tools
    async def _task_info(self, task_id: str | None = None) -> TaskOutcome:
        if task_id not in (None, "", self.task.task_id):
            raise _OutOfScope(f"task {str(task_id)[:80]!r} is not yours: task_info answers about task "
                              f"{self.task.task_id}; dependency_info answers about its dependencies")
        t = self.task
        deps = [d.task_id for d in t.dependency_summaries]
        lines = [f"task {t.task_id}: {t.title}", f"domain: {t.domain}", f"complexity: {t.complexity}",
                 f"description: {t.description or '(none)'}",
                 "acceptance tests: " + ("; ".join(f"`{c}`" for c in t.tests) or "(none declared)"),
                 "depends on: " + (", ".join(deps) or "nothing")]
        return TaskOutcome("\n".join(lines)[:MAX_TEXT])

    async def _dependency_info(self, task_id: str, run_id: str | None = None) -> TaskOutcome:
        self._own_run(run_id)
        dep = next((d for d in self.task.dependency_summaries if d.task_id == task_id), None)
        if dep is None:
            known = ", ".join(d.task_id for d in self.task.dependency_summaries) or "none"
            raise _OutOfScope(f"task {str(task_id)[:80]!r} is not a dependency of task {self.task.task_id} "
                              f"(its dependencies: {known})")
        files = await self.scope.changed_files(task_id)
        text = (f"task {task_id}: {dep.title}\nsummary: {dep.summary or '(none)'}\n"
                f"files it changed: {', '.join(files) or '(none recorded)'}")
        return TaskOutcome(text[:MAX_TEXT])

    async def _search_expertise(self, query: str) -> TaskOutcome:
        words = [w for w in re.findall(r"[\w./-]+", str(query).lower()) if len(w) > 1]
        if not words:
            return TaskOutcome("give some words to search for", is_error=True)
        hits = []
        for domain in dict.fromkeys([self.task.domain or "general", "general"]):
            update = await self.scope.latest_expertise(domain)
            if update is None:
                continue
            for entry in expertise_store.document_of(update, domain).entries:
                text = describe(entry)
                score = sum(text.lower().count(w) for w in words)
                if score and not entry.flagged:
                    hits.append((score, entry.score, domain, text))
        hits.sort(key=lambda h: (-h[0], -h[1]))
        if not hits:
            return TaskOutcome(f"nothing learned yet matches {query!r} in {self.task.domain or 'general'} or general")
        return TaskOutcome("\n".join(f"- [{d}] {t}" for _, _, d, t in hits[:MAX_HITS])[:MAX_TEXT])

    async def _report_discovery(self, text: str, files: list[str] | None = None) -> TaskOutcome:
        text = " ".join(str(text).split())[:1000]
        if not text:
            return TaskOutcome("text is empty: say what you found", is_error=True)
        t = self.task
        self.discoveries += 1
        found = t.caused(ev.DiscoveryReported, aggregate_id=t.domain or "general", run_id=t.run_id, task_id=t.task_id,
                         attempt=t.attempt, domain=t.domain or "general", text=text,
                         files=[str(f)[:300] for f in (files or [])][:20])
        await self.scope.publish(found, f"{t.run_id}:{t.task_id}:{t.attempt}:{self.discoveries}:DiscoveryReported")
        return TaskOutcome("recorded: the next agent of this domain will read it")

    async def _request_block(self, reason: str, split_into: list[str] | None = None) -> TaskOutcome:
        reason = " ".join(str(reason).split())[:2000]
        if not reason:
            return TaskOutcome("reason is empty: say why the task cannot be done as written", is_error=True)
        t = self.task
        asked = t.caused(ev.TaskBlockRequested, aggregate_id=t.aggregate_id, run_id=t.run_id, task_id=t.task_id,
                         attempt=t.attempt, reason=reason, split_into=[str(s)[:200] for s in (split_into or [])][:20])
        await self.scope.publish(asked, f"{t.run_id}:{t.task_id}:{t.attempt}:TaskBlockRequested")
        self.blocked = reason
        return TaskOutcome("your attempt ends here; a person is told why", blocked=reason)


class _OutOfScope(Exception):
    pass
