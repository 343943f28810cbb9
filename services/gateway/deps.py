"""What a route receives: the database, the bus, the config and the caller, as Annotated dependencies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

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
