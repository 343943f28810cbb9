"""YokeFlow as an MCP server (the official `mcp` SDK): every tool is a command of the CLI and the
API, with a JSON Schema for its input and structured output; bad input is a tool error naming the
field. Resources expose plans, runs and expertise documents.

`build_server(operations)` wires the tools to an Operations; `yokeflow mcp` serves it over stdio,
and the gateway serves it over streamable HTTP at /mcp behind its own authentication."""

from __future__ import annotations

import json
from typing import Annotated, Any, Awaitable, Callable, Literal

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import Field

from yokeflow.mcp.operations import OperationError, Operations

INSTRUCTIONS = """YokeFlow runs many coding agents in parallel on one repository.
Typical flow: plan_create (Session 0, from a spec) -> plan_show -> plan_approve -> run_start (with
plan_id, max_concurrency, strategy, budget_usd) -> run_status / task_status / events_since until the
run ends -> costs and expertise. run_cancel stops a run; merge_retry re-merges a task after a person
resolved its conflict."""

Id = Annotated[str, Field(min_length=1, max_length=128)]


def build_server(get_ops: Callable[[], Operations], **settings: Any) -> FastMCP:
    mcp = FastMCP("yokeflow", instructions=INSTRUCTIONS, **settings)

    async def call(work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await work
        except OperationError as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool(description="Check a plan object: problems (cycles, missing or duplicate ids), batches, critical path.")
    async def plan_check(plan: Annotated[dict[str, Any], Field(description="the plan: name and epics with tasks")]
                         ) -> dict[str, Any]:
        return get_ops().check_plan(plan)

    @mcp.tool(description="Session 0: a model turns an application spec into a plan (epics, tasks, dependencies, "
                          "tests); recorded for review; approve it before starting a run from it.")
    async def plan_create(spec: Annotated[str, Field(min_length=1, description="the application spec")],
                          repo_path: Annotated[str, Field(description="the repository it is for")] = "",
                          model: Annotated[str, Field(description="model tier or id")] = "sonnet",
                          max_rounds: Annotated[int, Field(ge=1, le=10)] = 3) -> dict[str, Any]:
        return await call(get_ops().create_plan(spec, repo_path, model, max_rounds))

    @mcp.tool(description="A Session 0 plan by id: status (requested, produced, rejected, approved), plan, check.")
    async def plan_show(plan_id: Id) -> dict[str, Any]:
        return await call(get_ops().show_plan(plan_id))

    @mcp.tool(description="Approve a produced plan so a run can start from it.")
    async def plan_approve(plan_id: Id, approved_by: Annotated[str, Field(max_length=200)] = "mcp") -> dict[str, Any]:
        return await call(get_ops().approve_plan(plan_id, approved_by))

    @mcp.tool(description="Start a run on a git repository from an approved plan id or a plan object.")
    async def run_start(repo_path: Annotated[str, Field(min_length=1, description="a git repository")],
                        plan_id: Annotated[str, Field(max_length=128)] = "",
                        plan: Annotated[dict[str, Any] | None, Field(description="a plan object")] = None,
                        max_concurrency: Annotated[int | None, Field(ge=1, le=256)] = None,
                        strategy: Literal["by_epic", "by_task", "smart"] | None = None,
                        batch_barrier: bool | None = None,
                        budget_usd: Annotated[float | None, Field(ge=0, description="this run's budget")] = None,
                        ) -> dict[str, Any]:
        return await call(get_ops().start_run(repo_path, plan, plan_id, max_concurrency, strategy, batch_barrier,
                                              budget_usd))

    @mcp.tool(description="A run's status: every task's state, merge, attempt, model, cost; counts and learning.")
    async def run_status(run_id: Id) -> dict[str, Any]:
        return await call(get_ops().run_status(run_id))

    @mcp.tool(description="One task of a run: its attempts, merges and reason.")
    async def task_status(run_id: Id, task_id: Id) -> dict[str, Any]:
        return await call(get_ops().task_status(run_id, task_id))

    @mcp.tool(description="A run's batches (tasks that may run together) and how far each has come.")
    async def run_batches(run_id: Id) -> dict[str, Any]:
        return await call(get_ops().batches(run_id))

    @mcp.tool(description="Cancel a running run: running agents stop, nothing new starts.")
    async def run_cancel(run_id: Id, reason: Annotated[str, Field(max_length=500)] = "cancelled through MCP"
                         ) -> dict[str, Any]:
        return await call(get_ops().cancel_run(run_id, reason))

    @mcp.tool(description="Merge a task's branch again, after its conflict was resolved in its worktree.")
    async def merge_retry(run_id: Id, task_id: Id) -> dict[str, Any]:
        return await call(get_ops().retry_merge(run_id, task_id))

    @mcp.tool(description="Act on a conflicted task: retry (merge again), accept (merge the resolution commit a "
                          "person made on its branch: commit = the branch's head) or rerun (a new attempt on the "
                          "target as it is now; the old work is kept at a ref).")
    async def merge_resolve(run_id: Id, task_id: Id, action: Literal["retry", "accept", "rerun"],
                            commit: Annotated[str, Field(pattern=r"^([0-9a-f]{40})?$")] = "") -> dict[str, Any]:
        return await call(get_ops().retry_merge(run_id, task_id, action=action, commit=commit))

    @mcp.tool(description="Runs, newest first (optionally of one project).")
    async def runs_list(project_id: Annotated[str, Field(max_length=128)] = "") -> dict[str, Any]:
        return await call(get_ops().runs(project_id))

    @mcp.tool(description="A project's costs: total_usd (a decimal string) and rows grouped by task, epic, model, "
                          "domain or run, with tokens by kind; optionally for one run.")
    async def costs(project_id: Id, run_id: Annotated[str, Field(max_length=128)] = "",
                    by: Literal["task", "epic", "model", "domain", "run"] = "model") -> dict[str, Any]:
        return await call(get_ops().costs(project_id, run_id, by))

    @mcp.tool(description="What a project has learned in a domain (its expertise document).")
    async def expertise(project_id: Id, domain: Annotated[str, Field(min_length=1, max_length=40)]) -> dict[str, Any]:
        return await call(get_ops().expertise(project_id, domain))

    @mcp.tool(description="Check a domain's expertise against the target branch: flag, then prune, what is gone.")
    async def expertise_validate(project_id: Id, domain: Annotated[str, Field(min_length=1, max_length=40)]
                                 ) -> dict[str, Any]:
        return await call(get_ops().validate_expertise(project_id, domain))

    @mcp.tool(description="A run's events after a stream sequence, in log order (poll with the returned last_seq).")
    async def events_since(run_id: Id, since_seq: Annotated[int, Field(ge=0)] = 0,
                           limit: Annotated[int, Field(ge=1, le=1000)] = 200) -> dict[str, Any]:
        return await call(get_ops().events_since(run_id, since_seq, limit))

    @mcp.resource("yokeflow://plans/{plan_id}", mime_type="application/json", description="a Session 0 plan")
    async def plan_resource(plan_id: str) -> str:
        return json.dumps(await call(get_ops().show_plan(plan_id)), default=str)

    @mcp.resource("yokeflow://runs/{run_id}", mime_type="application/json", description="a run's status")
    async def run_resource(run_id: str) -> str:
        return json.dumps(await call(get_ops().run_status(run_id)), default=str)

    @mcp.resource("yokeflow://projects/{project_id}/expertise/{domain}", mime_type="application/yaml",
                  description="a domain's expertise document (YAML)")
    async def expertise_resource(project_id: str, domain: str) -> str:
        return (await call(get_ops().expertise(project_id, domain)))["content"]

    return mcp
