"""What an agent can do to YokeFlow through MCP: the same commands as the CLI and the API (plan,
approve, start, watch, cancel, retry a merge, costs, expertise, events), each validating its input
and answering a JSON-ready dict. Bad input raises OperationError naming the field."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec

from shared import commands, readmodel
from shared import events as ev
from shared.bus import Bus
from shared.config import Config, ConfigError, parse_config
from shared.db import Database
from shared.expertise import ExpertiseError, check_domain
from shared.expertise import store as expertise_store
from shared.gitops.repo import BranchPaths
from shared.plan import PlanError, parse_plan, plan_to_dict
from shared.resolver import resolve

RUN_ENDED = ("completed", "failed", "cancelled")
MAX_EVENTS = 1000


class OperationError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


def _id(field: str, value: Any, limit: int = 128) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OperationError(field, "required: a non-empty string")
    if len(value) > limit or any(ord(c) < 32 for c in value):
        raise OperationError(field, f"must be at most {limit} printable characters")
    return value.strip()


@dataclass
class Operations:
    bus: Bus
    database: Database
    config: Config

    # ------------------------------------------------------------------ plans
    def check_plan(self, plan: Any) -> dict[str, Any]:
        try:
            parsed = parse_plan(plan)
        except PlanError as exc:
            return {"valid": False, "problems": [p.to_dict() for p in exc.problems] or [{"message": str(exc)}]}
        res = resolve(parsed)
        return {"valid": not res.errors, "problems": [p.to_dict() for p in res.errors],
                "tasks": len(list(parsed.tasks())), "batches": res.batches, "critical_path": res.critical_path,
                "critical_path_minutes": res.critical_path_minutes}

    async def create_plan(self, spec: str, repo_path: str = "", model: str = "sonnet",
                          max_rounds: int = 3) -> dict[str, Any]:
        """Session 0: a model turns the spec into a plan, recorded as PlanProduced (or PlanRejected)."""
        from shared.plan import session0
        from shared.llm import ProviderError, make_provider

        try:
            spec = session0.check_spec(spec)
        except session0.SpecError as exc:
            raise OperationError("spec", str(exc)) from None
        if not 1 <= int(max_rounds) <= 10:
            raise OperationError("max_rounds", "must be between 1 and 10")
        repo = Path(repo_path).expanduser().resolve() if repo_path else None
        if repo is not None and not repo.is_dir():
            raise OperationError("repo_path", f"{repo} is not a folder")
        options = {"base_url": self.config.agent.base_url} if self.config.agent.base_url else {}
        try:
            provider = make_provider("anthropic", options)
        except ProviderError as exc:
            raise OperationError("", f"Session 0 needs the anthropic provider: {exc}") from None
        project_id = commands.project_id_for(repo) if repo else "mcp"
        plan_id = session0.new_plan_id()
        requested = await session0.request_plan(self.bus, project_id=project_id, plan_id=plan_id, spec=spec,
                                                repo_path=str(repo or ""))
        try:
            outcome = await session0.produce_plan(provider, spec, model=model, max_rounds=int(max_rounds))
        except ProviderError as exc:
            await session0.record_outcome(self.bus, requested, None, errors=[
                ev.PlanIssue(code="provider_error", message=str(exc))])
            raise OperationError("", f"plan {plan_id} rejected: the model call failed: {exc}") from None
        await session0.record_outcome(self.bus, requested, outcome)
        return {"plan_id": plan_id, "status": "produced" if outcome.plan is not None else "rejected",
                "rounds": outcome.rounds, "cost_usd": round(float(outcome.cost_usd), 6),
                "plan": _plan_dict(outcome.plan),
                "problems": [p.to_dict() for p in outcome.problems]}

    async def show_plan(self, plan_id: str) -> dict[str, Any]:
        from services.gateway.routes.plans import plan_state  # the one reading of a plan's events
        from shared.plan.session0 import plan_history

        plan_id = _id("plan_id", plan_id)
        history = await plan_history(self.bus, plan_id)
        if not history:
            raise OperationError("plan_id", f"no plan {plan_id!r}: plan_create returns the id")
        state = plan_state(plan_id, history)
        if state["plan"]:
            state["check"] = self.check_plan(state["plan"])
        return state

    async def approve_plan(self, plan_id: str, approved_by: str = "mcp") -> dict[str, Any]:
        from shared.plan.session0 import PlanNotApprovable, PlanNotFound, approve_plan

        plan_id = _id("plan_id", plan_id)
        try:
            _, newly = await approve_plan(self.bus, plan_id, _id("approved_by", approved_by, 200))
        except PlanNotFound as exc:
            raise OperationError("plan_id", str(exc)) from None
        except PlanNotApprovable as exc:
            raise OperationError("plan_id", str(exc)) from None
        return {**await self.show_plan(plan_id), "newly_approved": newly}

    # ------------------------------------------------------------------ runs
    async def start_run(self, repo_path: str, plan: Any = None, plan_id: str = "", max_concurrency: int | None = None,
                        strategy: str | None = None, batch_barrier: bool | None = None,
                        budget_usd: float | None = None) -> dict[str, Any]:
        if (plan is None) == (not plan_id):
            raise OperationError("plan", "give exactly one of plan (a plan object) or plan_id (an approved plan)")
        if plan_id:
            state = await self.show_plan(plan_id)
            if state["status"] != "approved":
                raise OperationError("plan_id", f"plan {plan_id} is {state['status']}, not approved: "
                                                "call plan_approve first")
            plan = state["plan"]
        parallel: dict[str, Any] = {}
        if max_concurrency is not None:
            parallel["max_concurrency"] = max_concurrency
        if strategy is not None:
            parallel["strategy"] = strategy
        if batch_barrier is not None:
            parallel["batch_barrier"] = batch_barrier
        overrides: dict[str, dict[str, Any]] = {"parallel": parallel}
        if budget_usd is not None:
            overrides["cost"] = {"run_budget_usd": budget_usd}
        merged = msgspec.to_builtins(self.config)
        for section, values in overrides.items():
            merged[section] = {**merged[section], **values}
        try:
            parse_config(merged, source="run settings")
        except ConfigError as exc:
            raise OperationError("settings", str(exc)) from None
        try:
            started = await commands.start_run(self.bus, plan, _id("repo_path", repo_path, 4096), self.config,
                                               settings_override=overrides)
        except commands.CommandError as exc:
            raise OperationError(exc.field or "plan", str(exc)) from None
        return {"run_id": started.run_id, "project_id": started.project_id, "status": "running"}

    async def _run(self, run_id: str) -> dict[str, Any]:
        run_id = _id("run_id", run_id)
        run = await readmodel.get_run(self.database, run_id)
        if run is None:
            raise OperationError("run_id", f"no run {run_id!r} (yet): runs_list shows the known runs; a run "
                                           "just started appears once the ledger has projected it")
        return run

    async def run_status(self, run_id: str) -> dict[str, Any]:
        await self._run(run_id)
        [status] = await readmodel.status(self.database, run_id) or [{}]
        return status

    async def task_status(self, run_id: str, task_id: str) -> dict[str, Any]:
        await self._run(run_id)
        detail = await readmodel.task_detail(self.database, run_id, _id("task_id", task_id))
        if detail is None:
            raise OperationError("task_id", f"run {run_id} has no task {task_id!r}")
        return detail

    async def batches(self, run_id: str) -> dict[str, Any]:
        await self._run(run_id)
        detail = await readmodel.run_detail(self.database, run_id)
        return {"run_id": run_id, "batches": (detail or {}).get("batches", [])}

    async def cancel_run(self, run_id: str, reason: str = "cancelled through MCP") -> dict[str, Any]:
        run = await self._run(run_id)
        if run["status"] in RUN_ENDED:
            raise OperationError("run_id", f"run {run_id} is already {run['status']}")
        await commands.cancel_run(self.bus, run["project_id"], run["id"], _id("reason", reason, 500))
        return {"run_id": run["id"], "status": "cancelling"}

    async def retry_merge(self, run_id: str, task_id: str, action: str = "retry", commit: str = "") -> dict[str, Any]:
        run = await self._run(run_id)
        task = await self.task_status(run_id, task_id)
        if action == "accept" and not commit:
            raise OperationError("commit", "accept needs commit: the 40-hex head of the task's branch")
        attempt = int(task["task"]["attempt"] or 0)
        await commands.request_merge(self.bus, run["project_id"], run["id"], task_id, requested_by="mcp",
                                     action=action, commit=commit, attempt=attempt)
        return {"run_id": run["id"], "task_id": task_id, "action": action,
                "status": "rerun requested" if action == "rerun" else "merge requested"}

    async def runs(self, project_id: str = "") -> dict[str, Any]:
        return {"runs": await readmodel.list_runs(self.database, project_id or None, 50)}

    async def events_since(self, run_id: str, since_seq: int = 0, limit: int = 200) -> dict[str, Any]:
        await self._run(run_id)
        if not 0 <= int(since_seq) < 2**63:
            raise OperationError("since_seq", "must be a stream sequence, 0 or more")
        if not 1 <= int(limit) <= MAX_EVENTS:
            raise OperationError("limit", f"must be between 1 and {MAX_EVENTS}")
        events = await readmodel.run_events(self.database, run_id, int(since_seq), int(limit))
        return {"run_id": run_id, "events": events, "last_seq": events[-1]["seq"] if events else int(since_seq)}

    # ------------------------------------------------------------------ money and expertise
    async def costs(self, project_id: str, run_id: str = "", by: str = "model") -> dict[str, Any]:
        """The same report as `yokeflow costs --json` and GET /api/projects/{id}/costs."""
        from shared.readmodel.costs import GROUPINGS, cost_report

        project_id = _id("project_id", project_id)
        if by not in GROUPINGS:
            raise OperationError("by", f"{by!r} is not a grouping; use one of {', '.join(GROUPINGS)}")
        if await readmodel.get_project(self.database, project_id) is None:
            raise OperationError("project_id", f"no project {project_id!r}: runs_list shows project ids")
        if run_id:
            await self._run(run_id)
        return await cost_report(self.database, project_id=project_id, run_id=run_id or None, by=by)

    async def expertise(self, project_id: str, domain: str) -> dict[str, Any]:
        project_id = _id("project_id", project_id)
        try:
            update = await expertise_store.latest(self.bus, project_id, check_domain(domain))
        except ExpertiseError as exc:
            raise OperationError("domain", str(exc)) from None
        if update is None:
            raise OperationError("domain", f"project {project_id} has no expertise for {domain!r} yet")
        return {"project_id": project_id, "domain": domain, "version": update.version, "content": update.yaml(),
                "document": msgspec.to_builtins(expertise_store.document_of(update, domain))}

    async def validate_expertise(self, project_id: str, domain: str) -> dict[str, Any]:
        await self.expertise(project_id, domain)
        project = await readmodel.get_project(self.database, project_id)
        if project is None:
            raise OperationError("project_id", f"no project {project_id!r}")
        branch = project.get("target_branch") or "main"
        with await asyncio.to_thread(BranchPaths, project["repo_path"], branch) as paths:
            return await expertise_store.validate_domain(
                self.bus, project_id, domain, paths.exists, now=datetime.now(timezone.utc).isoformat(), branch=branch,
                max_lines=self.config.learning.expertise_max_lines)


def _plan_dict(plan: Any) -> dict[str, Any] | None:
    return None if plan is None else plan_to_dict(plan)
