"""What a route receives: the database, the bus, the config and the caller, as Annotated dependencies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import BaseModel, ConfigDict

from shared.bus import Bus
from shared.config import Config
from shared.db import Database

MIN_TOKEN_LENGTH = 16
FORBIDDEN_TOKENS = {"changeme", "change-me", "secret", "password", "token"}
HOW_TO_MAKE_A_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"


class ApiError(Exception):
    """An error a caller can fix: status, a message naming the thing and the fix, and the field at fault."""

    def __init__(self, status: int, detail: str, field: str | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.extra = extra


class GatewayConfigError(ValueError):
    pass


def check_api_token(token: str | None) -> str | None:
    """Refuse a token anyone could guess; None means no token was given."""
    if token is None or token == "":
        return None
    if token.strip().lower() in FORBIDDEN_TOKENS:
        raise GatewayConfigError(f"YOKEFLOW_API_TOKEN is the placeholder {token!r}: set a random token, "
                                 f"e.g. {HOW_TO_MAKE_A_TOKEN}")
    if len(token) < MIN_TOKEN_LENGTH:
        raise GatewayConfigError(f"YOKEFLOW_API_TOKEN is {len(token)} characters long: use at least "
                                 f"{MIN_TOKEN_LENGTH} random characters, e.g. {HOW_TO_MAKE_A_TOKEN}")
    return token


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_bus(request: Request) -> Bus:
    return request.app.state.bus


def get_config(request: Request) -> Config:
    return request.app.state.config


DatabaseDep = Annotated[Database, Depends(get_database)]
BusDep = Annotated[Bus, Depends(get_bus)]
ConfigDep = Annotated[Config, Depends(get_config)]


def get_wait_timeout(request: Request) -> float:
    """How long a `?wait=true` write waits for the ledger to project it."""
    return float(request.app.state.wait_timeout)


WaitTimeoutDep = Annotated[float, Depends(get_wait_timeout)]


# Ids in paths and queries: bounded like their columns, and no control characters (a NUL byte
# would reach PostgreSQL as an error, not as "not found").
NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
NO_CONTROL_OR_EMPTY = r"^[^\x00-\x1f\x7f]*$"
MAX_JSON_BODY = 2 * 1024 * 1024  # a plan of several hundred tasks is well under this
SEQ_MAX = 2**63 - 1  # stream sequences are int64 in PostgreSQL


def _id(max_length: int, what: str) -> Any:
    return Path(min_length=1, max_length=max_length, pattern=NO_CONTROL, description=what)


ProjectId = Annotated[str, _id(64, "a project id (GET /api/projects lists them)")]
RunId = Annotated[str, _id(64, "a run id (GET /api/runs lists them)")]
TaskId = Annotated[str, _id(200, "a task id of the run's plan")]
PlanId = Annotated[str, _id(200, "the id of a plan Session 0 produced")]
Domain = Annotated[str, _id(40, "an expertise domain, e.g. api, database, frontend")]


class ErrorBody(BaseModel):
    """Every error answer: what is wrong and the fix, the request field at fault, and sometimes more."""

    model_config = ConfigDict(extra="allow")
    detail: str
    field: str | None = None
    problems: list[dict[str, Any]] | None = None


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("missing or wrong API token (field: authorization)"),
    403: _error("the Host or Origin is not allowed (field: host | origin)"),
    404: _error("no such project, run, task, plan or domain (field names which)"),
    409: _error("the command does not fit the current state"),
    413: _error("the request body is larger than the gateway accepts (field: body)"),
    422: _error("invalid input: `field` names the first bad field, `problems` lists them all"),
    503: _error("NATS or PostgreSQL unavailable"),
    504: _error("a ?wait=true command was recorded but not projected in time (the body has its seq)"),
}
