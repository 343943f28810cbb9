"""The learner's wiring: after every finished attempt, learnings go into the domain's
expertise file, which is an event (`ExpertiseUpdated`, versioned) other services read."""

from __future__ import annotations

import asyncio

from shared import events as ev
from shared.bus import Bus, Delivery
from shared.config import Config
from services.learner.expertise import extract_learnings, merge_expertise


class Learner:
    def __init__(self, bus: Bus, config: Config):
        self.bus = bus
        self.max_lines = config.learning.expertise_max_lines
        self.enabled = config.learning.enabled
        self.titles: dict[tuple[str, str], tuple[str, str]] = {}  # (run, task) -> (domain, title)

    def _remember_plan(self, e: ev.RunStarted) -> None:
        for epic in e.plan.get("epics", []):
            for task in epic.get("tasks", []):
                self.titles[(e.run_id, str(task.get("id")))] = (str(task.get("domain", "general")),
                                                                 str(task.get("title", "")))

    async def handle(self, d: Delivery) -> None:
        e = d.event
        if isinstance(e, ev.RunStarted):
            self._remember_plan(e)
            return
        if not isinstance(e, ev.AgentFinished) or not self.enabled:
            return
        domain, title = self.titles.get((e.run_id, e.task_id), ("general", ""))
        learnings = extract_learnings(e, title)
        if not learnings:
            return
        extracted = e.caused(ev.LearningExtracted, aggregate_id=domain, run_id=e.run_id, task_id=e.task_id,
                             domain=domain, learnings=learnings)
        await self.bus.publish(extracted, msg_id=f"{e.event_id}:LearningExtracted")
        probe = e.caused(ev.ExpertiseUpdated, aggregate_id=domain, domain=domain, version=0)

        def decide(history: list[ev.Event]) -> list[tuple[ev.Event, str]]:
            updates = [h for h in history if isinstance(h, ev.ExpertiseUpdated)]
            current = updates[-1] if updates else None
            content = merge_expertise(current.content if current else "", learnings, domain, self.max_lines)
            if current is not None and content == current.content:
                return []
            version = (current.version if current else 0) + 1
            update = e.caused(ev.ExpertiseUpdated, aggregate_id=domain, domain=domain, version=version,
                              lines=content.count("\n"), content=content)
            return [(update, f"{e.event_id}:ExpertiseUpdated")]

        # Optimistic concurrency on the domain's expertise: two learners never lose each other's learnings.
        await self.bus.append(decide, probe)

    async def serve(self, stop: asyncio.Event) -> None:
        async for d in self.bus.read([self.bus.type_filter("RunStarted")]):
            self._remember_plan(d.event)
        await self.bus.consume("learner", [self.bus.type_filter("RunStarted"), self.bus.type_filter("AgentFinished")],
                               self.handle, stop=stop)


async def serve(bus: Bus, config: Config, stop: asyncio.Event) -> None:
    await Learner(bus, config).serve(stop)
