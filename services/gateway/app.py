"""The FastAPI application: routers, error shapes, auth on every /api route but health, the UI."""

from __future__ import annotations

import logging
from pathlib import Path

import nats.errors
import sqlalchemy.exc
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.bus import Bus, BusError
from shared.config import Config
from shared.db import Database
from services.gateway.deps import ApiError, check_api_token, get_caller
from services.gateway.routes import events, health, plans, projects, runs, tasks

log = logging.getLogger("yokeflow.gateway")

STATIC = Path(__file__).parent / "static"


def create_app(bus: Bus, database: Database, config: Config, *, api_token: str | None = None,
               wait_timeout: float = 10.0) -> FastAPI:
    """The gateway app. Raises GatewayConfigError for a token anyone could guess."""
    app = FastAPI(title="YokeFlow gateway", version="1", docs_url="/api/docs", redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.bus = bus
    app.state.database = database
    app.state.config = config
    app.state.api_token = check_api_token(api_token)
    app.state.wait_timeout = wait_timeout

    app.include_router(health.router)
    guarded = [Depends(get_caller)]
    for module in (projects, plans, runs, tasks):
        app.include_router(module.router, dependencies=guarded)
    app.include_router(events.router)  # checks ?token= itself: browsers cannot set headers on a WebSocket
    _install_error_handlers(app)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail, "field": exc.field, **exc.extra}, status_code=exc.status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]}
                    for e in exc.errors()]
        first = problems[0] if problems else {"field": None, "message": "invalid request"}
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
        return JSONResponse({"detail": detail, "field": first["field"], "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "field": None}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def bus_down(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"the event bus is unavailable ({type(exc).__name__}: {exc}): is NATS running?",
                             "field": None}, status_code=503)

    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return JSONResponse({"detail": f"the projection database is unavailable ({type(exc).__name__}): "
                                       "is PostgreSQL running and YOKEFLOW_DATABASE_URL right?", "field": None},
                            status_code=503)

    for bus_error in (BusError, nats.errors.TimeoutError, nats.errors.NoRespondersError,
                      nats.errors.ConnectionClosedError):
        app.add_exception_handler(bus_error, bus_down)
    for db_error in (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, ConnectionError):
        app.add_exception_handler(db_error, database_down)
