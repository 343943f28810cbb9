"""Projects: the repositories YokeFlow has worked on, their runs and their expertise."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from shared import readmodel
from shared.gitops.errors import GitError
from services.gateway.deps import ApiError, DatabaseDep, Domain, ProjectId
from services.gateway.expertise_check import mentioned_paths
from services.gateway.gitview import existing_paths
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
async def validate_expertise(project_id: ProjectId, domain: Domain, database: DatabaseDep) -> dict[str, Any]:
    """Check the files the latest expertise names against the project's target branch (see docs/api.md)."""
    project = await project_or_404(database, project_id)
    entry = await _domain_or_404(database, project_id, domain)
    mentions = mentioned_paths(entry.get("content") or "")
    branch = project.get("target_branch") or "main"
    try:
        commit, found = await asyncio.to_thread(existing_paths, project["repo_path"], branch, [p for _, p in mentions])
    except GitError as exc:
        raise ApiError(409, f"cannot validate against {branch}: {exc}", "project_id") from None
    files = [{"path": p, "line": n, "exists": found[p]} for n, p in mentions]
    missing = [f for f in files if not f["exists"]]
    return {"project_id": project_id, "domain": domain, "version": entry["version"], "target_branch": branch,
            "commit": commit, "checked": len(files), "files": files, "missing": missing, "valid": not missing,
            "checks": "files and folders the text names still exist on the target branch; "
                      "not whether what it says about them is still true"}


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
