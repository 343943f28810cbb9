"""GET /api/health: the bare liveness probe, open without a token; it tells an
unauthenticated caller only ok/degraded, and the details only with the token."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.gateway.auth import is_authorized
from services.gateway.deps import BusDep, DatabaseDep

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(request: Request, database: DatabaseDep, bus: BusDep) -> JSONResponse:
    checks: dict[str, object] = {"nats": bus.connected}
    try:
        checks["ledger_position"] = await database.position("ledger")
        checks["database"] = True
    except Exception as exc:  # any driver error means "not healthy", reported, not raised
        checks["database"] = False
        checks["database_error"] = f"{type(exc).__name__}: {exc}"[:300]
    try:
        checks["stream_last_seq"] = await bus.last_seq()
    except Exception as exc:
        checks["nats"] = False
        checks["nats_error"] = f"{type(exc).__name__}: {exc}"[:300]
    ok = bool(checks["nats"]) and bool(checks["database"])
    status = "ok" if ok else "degraded"
    body = {"status": status, **checks} if is_authorized(request) else {"status": status}
    return JSONResponse(body, status_code=200 if ok else 503)
