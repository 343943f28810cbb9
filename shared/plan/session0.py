"""Session 0: a model turns an application spec into a plan through one `submit_plan` tool.

`produce_plan` talks only to its provider: each submission is parsed and resolved like
`yokeflow plan check` does, and every problem goes back to the model to fix, for a bounded
number of rounds. The rest records the conversation's outcome on the plan aggregate
(`PlanRequested` → `PlanProduced` | `PlanRejected` → `PlanApproved`).
"""

from __future__ import annotations

import copy
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import events as ev
from shared.bus import Bus
from shared.llm import ModelTurn, Provider, Usage
from shared.llm.pricing import cost_usd, is_priced
from shared.plan import Plan, PlanDoc, PlanError, PlanProblem, parse_plan
from shared.resolver import Resolution, resolve
from shared.plan import session0_prompt as prompt
from shared.plan import versions

MAX_SPEC_BYTES = 200_000
DEFAULT_MAX_TOKENS = 16_000


class SpecError(ValueError):
    """A spec Session 0 will not send to a model (missing, empty, too large, not text)."""


@dataclass
class PlanOutcome:
    plan: Plan | None  # None: no valid plan within max_rounds
    rounds: int
    problems: list[PlanProblem]  # of the last submission (empty when the plan is valid)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    model: str = ""
    resolution: Resolution | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.plan is not None


def check_spec(spec: str) -> str:
    """The spec, refused with a message naming the fix when it is empty or over the size limit."""
    if not spec.strip():
        raise SpecError("the spec is empty: write what the application should do (features, stack, "
                        "how to test it) in the spec file and run `yokeflow plan create` again")
    size = len(spec.encode("utf-8"))
    if size > MAX_SPEC_BYTES:
        raise SpecError(_too_large(size))
    return spec


def _too_large(size: int, *, at_least: bool = False) -> str:
    return (f"the spec is {'more than ' if at_least else ''}{size:,} bytes, over Session 0's limit of "
            f"{MAX_SPEC_BYTES:,} bytes "
            f"({MAX_SPEC_BYTES // 1000} KB): a spec says what to build, not the code or data itself; "
            "shorten it (move reference material to files in the repository and mention them), or "
            "split the application and plan each part with its own spec")


def read_spec(path: str | Path) -> str:
    """Read a spec file, refusing an oversized one by its size before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise SpecError(f"spec {path} is a folder: give the path of a text file (e.g. app_spec.txt)")
        if size > MAX_SPEC_BYTES:
            raise SpecError(f"spec {path}: {_too_large(size)}")
        with path.open("rb") as f:  # a pipe or a device says size 0: read no more than the limit allows
            raw = f.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:
            raise SpecError(f"spec {path}: {_too_large(MAX_SPEC_BYTES, at_least=True)}")
        text = raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"spec {path} does not exist: give the path of your app_spec.txt with --spec") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec {path} is not UTF-8 text (bad byte at offset {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise SpecError(f"cannot read spec {path}: {exc.strerror or exc}") from None
    try:
        return check_spec(text)
    except SpecError as exc:
        raise SpecError(f"spec {path}: {exc}") from None


async def produce_plan(provider: Provider, spec: str, *, model: str, max_rounds: int = 3, repo_map: str = "",
                       max_tokens: int = DEFAULT_MAX_TOKENS) -> PlanOutcome:
    """Ask the model for a plan; feed every problem back until it is valid or max_rounds have passed."""
    check_spec(spec)
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
    tools = [prompt.submit_plan_tool()]
    messages: list[dict[str, Any]] = [prompt.first_message(spec, repo_map)]
    outcome = PlanOutcome(plan=None, rounds=0, problems=[], messages=messages)
    for round_no in range(1, max_rounds + 1):
        turn = await _ask(provider, model=model, messages=messages, tools=tools, max_tokens=max_tokens)
        outcome.rounds = round_no
        outcome.usage = outcome.usage + turn.usage
        outcome.model = turn.model or outcome.model or model
        priced = turn.model if turn.model and is_priced(turn.model) else model
        outcome.cost_usd = round(outcome.cost_usd + (cost_usd(priced, turn.usage) if is_priced(priced) else 0.0), 8)
        messages.append({"role": "assistant", "content": turn.content})
        submissions = [b for b in turn.tool_uses() if b.get("name") == prompt.SUBMIT_PLAN]
        if not submissions:
            outcome.problems = [PlanProblem("invalid_field", [], _no_submission(turn))]
            replies = [prompt.tool_result(b["id"], f"unknown tool {b.get('name')!r}: the only tool is "
                                          f"{prompt.SUBMIT_PLAN}", is_error=True) for b in turn.tool_uses()]
            messages.append({"role": "user", "content": replies + [{"type": "text", "text": prompt.NO_TOOL_CALL}]})
            continue
        plan, resolution, problems = check_submission(submissions[0].get("input"))
        outcome.problems, outcome.resolution = problems, resolution
        replies = [prompt.tool_result(b["id"], "ignored: submit the plan once per answer", is_error=True)
                   for b in turn.tool_uses() if b is not submissions[0]]
        if plan is not None:
            outcome.plan = plan
            messages.append({"role": "user", "content": [prompt.tool_result(
                submissions[0]["id"], "The plan is valid and was accepted.", is_error=False), *replies]})
            return outcome
        text = prompt.problems_text(problems, round_no, max_rounds)
        messages.append({"role": "user", "content": [
            prompt.tool_result(submissions[0]["id"], text, is_error=True), *replies]})
    return outcome


async def _ask(provider: Provider, **request: Any) -> ModelTurn:
    """One model call that must answer with submit_plan (providers without tool choice ignore it)."""
    return await provider.create(system=prompt.system_blocks(), tool_choice=prompt.tool_choice(), **request)


def _no_submission(turn: ModelTurn) -> str:
    said = turn.text()
    said = f"; it said: {said[:200]!r}" if said else ""
    return f"the model answered without calling {prompt.SUBMIT_PLAN} (stop reason {turn.stop_reason}){said}"


def check_submission(data: Any) -> tuple[Plan | None, Resolution | None, list[PlanProblem]]:
    """Parse and resolve one submitted plan: (plan, resolution, []) when valid, else every problem."""
    try:
        plan = parse_plan(data)
    except PlanError as exc:
        return None, None, exc.problems + _graph_problems_beside(data, exc.problems)
    resolution = resolve(plan)
    if not resolution.valid:
        return None, resolution, list(resolution.errors)
    return plan, resolution, []


_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _graph_problems_beside(data: Any, field_problems: list[PlanProblem]) -> list[PlanProblem]:
    """Cycles and missing references in a plan that also has bad fields, found by checking a copy
    without those fields, so the model hears of every problem in one round."""
    trimmed = copy.deepcopy(data)
    for problem in field_problems:
        parts = [(key, int(index)) if index else (key, None) for key, index in _PATH_PART.findall(problem.path)]
        node, last = trimmed, parts[-1] if parts else None
        for key, index in parts[:-1]:
            node = node[key] if index is None else node[index] if isinstance(node, list) and index < len(node) else None
            if not isinstance(node, (dict, list)):
                break
        else:
            if last and last[1] is None and isinstance(node, dict):
                node.pop(last[0], None)
    try:
        resolution = resolve(parse_plan(trimmed))
    except PlanError:
        return []  # still unreadable (e.g. a required field is missing): the field problems say why
    return list(resolution.errors)


# ------------------------------------------------------------------ the plan aggregate on the bus
def new_plan_id() -> str:
    return "p" + uuid.uuid4().hex[:11]


class PlanNotFound(LookupError):
    pass


class PlanNotApprovable(ValueError):
    pass


class PlanEditConflict(ValueError):
    """The plan has a newer version than the one a person edited."""


async def request_plan(bus: Bus, *, project_id: str, plan_id: str, spec: str, repo_path: str = "") -> ev.PlanRequested:
    requested = ev.PlanRequested(project_id=project_id, aggregate_id=plan_id, spec=spec, repo_path=repo_path,
                                 correlation_id=plan_id)
    await bus.publish(requested, msg_id=f"{plan_id}:PlanRequested")
    return requested


async def record_outcome(bus: Bus, requested: ev.PlanRequested, outcome: PlanOutcome | None, *,
                         path: str = "", errors: list[ev.PlanIssue] | None = None) -> ev.Event:
    """PlanProduced for a valid outcome (with the file it was written to), else PlanRejected."""
    plan_id = requested.aggregate_id
    if outcome is not None and outcome.plan is not None:
        event: ev.Event = requested.caused(ev.PlanProduced, aggregate_id=plan_id, plan=PlanDoc.of(outcome.plan),
                                           source=f"session0:{outcome.model}", path=path, version=1)
    else:
        problems = errors if errors is not None else [ev.PlanIssue(**p.to_dict()) for p in
                                                      (outcome.problems if outcome else [])]
        event = requested.caused(ev.PlanRejected, aggregate_id=plan_id, errors=problems)
    await bus.publish(event, msg_id=f"{plan_id}:{event.type}")
    return event


async def plan_history(bus: Bus, plan_id: str) -> list[ev.Event]:
    subject = bus.subjects.aggregate("*", "plan", plan_id)
    return [d.event async for d in bus.read([subject])]


async def plan_id_for_file(bus: Bus, path: str | Path) -> str | None:
    """The latest plan produced into this file, if any."""
    wanted = str(Path(path).resolve())
    found = None
    async for d in bus.read([bus.type_filter("PlanProduced", aggregate="plan")]):
        if isinstance(d.event, ev.PlanProduced) and d.event.path and str(Path(d.event.path).resolve()) == wanted:
            found = d.event.aggregate_id
    return found


async def approve_plan(bus: Bus, plan_id: str, approved_by: str = "person",
                       version: int | None = None) -> tuple[ev.PlanProduced, bool]:
    """Record PlanApproved for a produced plan's latest version (or the `version` given, which must
    be the latest): (that version's event, whether this call approved it)."""
    history = await plan_history(bus, plan_id)
    if not history:
        raise PlanNotFound(f"no plan {plan_id!r} in the event log: give the id `yokeflow plan create` printed, "
                           "or the plan file it wrote")
    if not versions.fold(history).versions:
        rejected = next((e for e in history if isinstance(e, ev.PlanRejected)), None)
        if rejected is not None:
            first = rejected.errors[0].message if rejected.errors else "no valid plan"
            raise PlanNotApprovable(f"plan {plan_id} was rejected ({len(rejected.errors)} problem(s), first: "
                                    f"{first}); nothing to approve: fix the spec and run `yokeflow plan create` again")
        raise PlanNotApprovable(f"plan {plan_id} is still being produced; approve it once `yokeflow plan create` "
                                "has written it")
    chosen: list[ev.PlanProduced] = []

    def decide(events: list[ev.Event]) -> list[tuple[ev.Event, str | None]]:
        v = versions.fold(events)
        wanted = version or v.latest
        if wanted != v.latest:
            raise PlanNotApprovable(f"plan {plan_id} has no version {wanted} to approve: its latest is version "
                                    f"{v.latest}; review that one (GET /api/plans/{plan_id}) and approve it")
        chosen[:] = [v.versions[-1]]
        if v.approved == wanted:
            return []
        approved = v.versions[-1].caused(ev.PlanApproved, aggregate_id=plan_id, approved_by=approved_by, version=wanted)
        return [(approved, f"{plan_id}:PlanApproved" if wanted == 1 else f"{plan_id}:v{wanted}:PlanApproved")]

    published = await bus.append(decide, history[-1])
    return chosen[0], bool(published)


async def edit_plan(bus: Bus, plan_id: str, edit: versions.PlanEdit, *, base_version: int,
                    edited_by: str = "person") -> ev.PlanProduced:
    """A person's edit of the plan's latest version, checked like Session 0's output, recorded as the
    next version (PlanProduced, source "edit"). `base_version` is the version the person edited: a
    plan that moved on since is refused (PlanEditConflict) instead of losing the other change."""
    history = await plan_history(bus, plan_id)
    if not history:
        raise PlanNotFound(f"no plan {plan_id!r} in the event log: GET /api/plans lists the plans")
    made: list[ev.PlanProduced] = []

    def decide(events: list[ev.Event]) -> list[tuple[ev.Event, str | None]]:
        v = versions.fold(events)
        if not v.versions:
            raise PlanNotApprovable(f"plan {plan_id} has no version to edit yet (it is still being produced or "
                                    "was rejected)")
        if base_version != v.latest:
            raise PlanEditConflict(f"plan {plan_id} is at version {v.latest}, not {base_version}: someone changed "
                                   f"it meanwhile; reload it (GET /api/plans/{plan_id}) and edit version {v.latest}")
        edited = versions.apply_edit(v.versions[-1].plan, edit)
        n = v.latest + 1
        made[:] = [v.versions[-1].caused(ev.PlanProduced, aggregate_id=plan_id, plan=edited, source="edit",
                                         version=n, edited_by=edited_by)]
        return [(made[0], f"{plan_id}:v{n}:PlanProduced")]

    await bus.append(decide, history[-1])
    return made[0]
