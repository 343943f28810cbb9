"""The FastAPI application: routers, error shapes, one guard on everything, the UI."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nats.errors
import sqlalchemy.exc
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.requests import HTTPConnection
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import telemetry
from shared.bus import Bus, BusError
from shared.config import Config
from shared.db import Database
from services.gateway.auth import COOKIE, COOKIE_DAYS, Doors, guard, token_matches
from services.gateway.deps import ERRORS, ApiError
from services.gateway.live import BEHIND_AFTER
from services.gateway.routes import costs, events, health, parallel, plans, projects, runs, tasks

log = logging.getLogger("yokeflow.gateway")

STATIC = Path(__file__).parent / "static"
LOCKED_PAGE = ("<!doctype html><meta charset=utf-8><title>YokeFlow</title><h1>YokeFlow</h1>"
               "<p>This gateway needs its API token: open the URL <code>yokeflow up</code> printed "
               "(it ends in <code>?token=…</code>), or the same URL with the token from "
               "<code>&lt;state folder&gt;/api-token</code>.</p><form method=get action=/>"
               "<input name=token type=password placeholder=token autocomplete=off> <button>Open</button></form>")


def create_app(bus: Bus, database: Database, config: Config, *, doors: Doors,
               wait_timeout: float = 10.0, heartbeat_s: float = 15.0, behind_after: int = BEHIND_AFTER,
               mcp_app: Any = None) -> FastAPI:
    """The gateway app. Every route, the OpenAPI document, the static files and the WebSocket
    go through `guard` (services/gateway/auth.py), declared once here for the whole app."""
    app = FastAPI(title="YokeFlow gateway", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(guard)])
    app.state.bus = bus
    app.state.database = database
    app.state.config = config
    app.state.doors = doors
    app.state.wait_timeout = wait_timeout
    app.state.heartbeat_s = heartbeat_s  # WebSocket: a heartbeat frame after this long without events
    app.state.behind_after = behind_after  # WebSocket: more messages than this waiting = the client is told

    for module in (health, projects, costs, plans, runs, tasks, parallel, events):
        app.include_router(module.router, responses=ERRORS)
    _install_error_handlers(app)
    if doors.allowed_origins:  # CORS stays closed unless YOKEFLOW_CORS_ORIGINS names origins
        app.add_middleware(CORSMiddleware, allow_origins=sorted(doors.allowed_origins), allow_credentials=True,
                           allow_methods=["*"], allow_headers=["Authorization", "Content-Type"])

    if mcp_app is not None:  # MCP over streamable HTTP, through the same guard as every route
        @app.api_route("/mcp", methods=["GET", "POST", "DELETE"], include_in_schema=False)
        async def mcp(request: Request) -> Response:
            return _Passthrough(mcp_app)

    @app.get("/", include_in_schema=False)
    async def index(request: Request) -> Response:
        offered = request.query_params.get("token")
        if offered is not None and (doors.open or token_matches(doors.token or "", offered)):  # the URL `yokeflow up` printed: swap the token for a cookie, drop it from the URL
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, offered, max_age=COOKIE_DAYS * 86400, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/")
            return response
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{path:path}", include_in_schema=False)
    async def static(path: str) -> FileResponse:
        file = (STATIC / path).resolve()
        if not file.is_relative_to(STATIC.resolve()) or not file.is_file():
            raise ApiError(404, f"no static file {path[:200]!r}", "path")
        return FileResponse(file, headers={"Cache-Control": "no-cache"})

    @app.get("/api/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/api/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/api/openapi.json", title="YokeFlow gateway")

    app.add_middleware(telemetry.TraceRequests)  # a run started by POST /api/runs is traced from the request
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(conn: HTTPConnection, exc: ApiError) -> Response:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 401 and conn.url.path == "/" and conn.scope["type"] == "http":
            return HTMLResponse(LOCKED_PAGE, status_code=401, headers=headers)
        # on a WebSocket handshake Starlette sends this response as the denial (no upgrade happens)
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
        if exc.status_code == 400:  # FastAPI's "error parsing the body" (not UTF-8, not JSON): invalid input
            return JSONResponse({"detail": f"body: {exc.detail}: send a UTF-8 JSON object", "field": "body",
                                 "problems": [{"field": "body", "message": str(exc.detail)}]}, status_code=422)
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


class _Passthrough(Response):
    """Hands the request, once the guard let it in, to another ASGI app (the MCP server's)."""

    def __init__(self, asgi_app: Any):
        super().__init__()
        self.asgi_app = asgi_app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.asgi_app(scope, receive, send)
