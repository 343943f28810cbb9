"""Projects: the repositories YokeFlow has worked on, their runs and their expertise."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from shared import readmodel
from shared.gitops.errors import GitError
from shared.expertise import store
from shared.expertise.model import ExpertiseError
from shared.gitops.repo import BranchPaths
from services.gateway.deps import ApiError, BusDep, ConfigDep, DatabaseDep, Domain, ProjectId
from services.gateway.report import build_report, report_markdown

router = APIRouter(tags=["projects"])


async def project_or_404(database: DatabaseDep, project_id: str) -> dict[str, Any]:
    project = await readmodel.get_project(database, project_id)
    if project is None:
        raise ApiError(404, f"no project {project_id!r}: GET /api/projects lists the known projects", "project_id")
    return project


@router.get("/api/projects")
async def list_projects(database: DatabaseDep) -> dict[str, Any]:
    return {"projects": await readmodel.list_projects(database)}


@router.get("/api/projects/{project_id}")
async def get_project(project_id: ProjectId, database: DatabaseDep) -> dict[str, Any]:
    project = await project_or_404(database, project_id)
    return {"project": project, "runs": await readmodel.list_runs(database, project_id)}


@router.get("/api/projects/{project_id}/expertise")
async def get_expertise(project_id: ProjectId, database: DatabaseDep) -> dict[str, Any]:
    await project_or_404(database, project_id)
    return {"project_id": project_id, "domains": await readmodel.expertise(database, project_id)}


async def _domain_or_404(database: DatabaseDep, project_id: str, domain: str) -> dict[str, Any]:
    await project_or_404(database, project_id)
    found = [d for d in await readmodel.expertise(database, project_id) if d["domain"] == domain]
    if not found:
        raise ApiError(404, f"project {project_id} has no expertise for domain {domain!r} yet: "
                            f"GET /api/projects/{project_id}/expertise lists the domains it has", "domain")
    return found[0]


@router.get("/api/projects/{project_id}/expertise/{domain}")
async def get_domain_expertise(project_id: ProjectId, domain: Domain, database: DatabaseDep) -> dict[str, Any]:
    """One domain's expertise file: the latest content and its versions."""
    return {"project_id": project_id, **await _domain_or_404(database, project_id, domain)}


@router.post("/api/projects/{project_id}/expertise/{domain}/validate")
async def validate_expertise(project_id: ProjectId, domain: Domain, database: DatabaseDep, bus: BusDep,
                             config: ConfigDep, apply: bool = False) -> dict[str, Any]:
    """Check each entry's files against the project's target branch (the learner's own check,
    shared/expertise); with `apply=true` record the outcome as a new version, as
    `yokeflow expertise validate` does (see docs/api.md)."""
    project = await project_or_404(database, project_id)
    await _domain_or_404(database, project_id, domain)
    try:
        update = await store.latest(bus, project_id, domain)
    except ExpertiseError as exc:
        raise ApiError(422, str(exc), "domain") from None
    if update is None:
        raise ApiError(404, f"project {project_id} has no expertise for domain {domain!r} on the bus", "domain")
    branch = project.get("target_branch") or "main"
    paths = await asyncio.to_thread(_paths, project["repo_path"], branch)
    if paths is None:
        raise ApiError(409, f"branch {branch!r} of {project['repo_path']} has no files or does not exist", "project_id")
    with paths:
        entries = [{"id": e.id, "kind": e.kind, "files": list(e.files), "flagged": e.flagged,
                    "missing": [f for f in e.files if not paths.exists(f)]}
                   for e in store.document_of(update, domain).entries]
        applied = None
        if apply:
            applied = await store.validate_domain(bus, project_id, domain, paths.exists,
                                                  now=datetime.now(timezone.utc).isoformat(), branch=branch,
                                                  max_lines=config.learning.expertise_max_lines)
    stale = [e for e in entries if e["missing"]]
    return {"project_id": project_id, "domain": domain, "version": update.version, "target_branch": branch,
            "checked": len(entries), "entries": entries, "missing": stale, "valid": not stale, "applied": applied,
            "checks": "each entry's files still exist on the target branch; not whether what it says is still true"}


def _paths(repo_path: str, branch: str) -> BranchPaths | None:
    """The branch's paths; None when it is gone, bare of files, or its repository is gone."""
    try:
        paths = BranchPaths(repo_path, branch)
    except GitError:
        return None
    if paths.empty:
        paths.close()
        return None
    return paths


@router.get("/api/projects/{project_id}/report",
            responses={200: {"description": "the report", "content": {"application/json": {},
                                                                      "text/markdown": {"schema": {"type": "string"}}}}})
async def project_report(project_id: ProjectId, database: DatabaseDep,
                         format: Literal["json", "markdown"] = "json") -> Any:
    """The project's plan, results per run, costs and learnings, as JSON or Markdown."""
    project = await project_or_404(database, project_id)
    report = await build_report(database, project)
    if format == "markdown":
        return PlainTextResponse(report_markdown(report), media_type="text/markdown; charset=utf-8")
    return report
