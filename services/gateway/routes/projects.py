"""Projects: the repositories YokeFlow has worked on, their runs and their expertise."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.gateway import readmodel
from services.gateway.deps import ApiError, DatabaseDep

router = APIRouter(tags=["projects"])


async def _project_or_404(database: DatabaseDep, project_id: str) -> dict[str, Any]:
    project = await readmodel.get_project(database, project_id)
    if project is None:
        raise ApiError(404, f"no project {project_id!r}: GET /api/projects lists the known projects", "project_id")
    return project


@router.get("/api/projects")
async def list_projects(database: DatabaseDep) -> dict[str, Any]:
    return {"projects": await readmodel.list_projects(database)}


@router.get("/api/projects/{project_id}")
async def get_project(project_id: str, database: DatabaseDep) -> dict[str, Any]:
    project = await _project_or_404(database, project_id)
    return {"project": project, "runs": await readmodel.list_runs(database, project_id)}


@router.get("/api/projects/{project_id}/expertise")
async def get_expertise(project_id: str, database: DatabaseDep) -> dict[str, Any]:
    await _project_or_404(database, project_id)
    return {"project_id": project_id, "domains": await readmodel.expertise(database, project_id)}
