"""GET /api/health: open without a token, so probes and `yokeflow status` can use it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.gateway.deps import BusDep, DatabaseDep

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(database: DatabaseDep, bus: BusDep) -> JSONResponse:
    checks: dict[str, object] = {"nats": bus.nc.is_connected}
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
    return JSONResponse({"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503)
