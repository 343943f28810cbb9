"""The gateway's doors: one dependency, applied to the whole app (WebSocket included), checks
the Host header, the Origin of unsafe requests and WebSockets, and the API token.

Why each check: the token keeps out other local users and other machines; the Host check
closes DNS rebinding (a page whose own name resolves to 127.0.0.1 sends its own Host);
the Origin check stops a page of another site from driving the API with the browser's
cookie (cross-site form POST, cross-site WebSocket). Only `GET /api/health` passes
without a token, and it says nothing but "ok" or "degraded" to an unauthenticated caller.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from services.gateway.deps import MAX_JSON_BODY, ApiError, GatewayConfigError, check_api_token
from shared.config import Runtime

log = logging.getLogger("yokeflow.gateway")

COOKIE = "yokeflow_token"
TOKEN_FILE = "api-token"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LIVENESS = "/api/health"
COOKIE_DAYS = 30


@dataclass(frozen=True)
class Doors:
    """What the guard lets in: the token (None only with --no-auth on loopback), the Host
    names it answers to, and the extra origins allowed to send unsafe requests (CORS)."""

    token: str | None
    allowed_hosts: frozenset[str] = LOOPBACK_NAMES
    allowed_origins: frozenset[str] = frozenset()

    @property
    def open(self) -> bool:
        return self.token is None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def make_doors(token: str | None, *, no_auth: bool = False, listen_host: str = "127.0.0.1",
               allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> Doors:
    """The doors for a gateway listening on `listen_host`. Raises GatewayConfigError for a
    setting that would leave them open: no token, a guessable one, or --no-auth off loopback."""
    if no_auth:
        if not is_loopback(listen_host):
            raise GatewayConfigError(f"--no-auth is only for a gateway on loopback, not {listen_host}: "
                                     "drop --no-auth (the token is in <state folder>/api-token)")
        token = None
        log.warning("THE GATEWAY HAS NO AUTHENTICATION (--no-auth): any program of any local user can drive "
                    "YokeFlow through http://%s; Host and Origin are still checked", listen_host)
    else:
        token = check_api_token(token)
        if token is None:
            raise GatewayConfigError("the gateway needs an API token: set YOKEFLOW_API_TOKEN (16+ random characters, "
                                     "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'); "
                                     "`yokeflow up` makes one in <state folder>/api-token")
    hosts = set(LOOPBACK_NAMES) | {h.lower().strip("[]") for h in allowed_hosts}
    if listen_host not in ("0.0.0.0", "::", "") and not is_loopback(listen_host):
        hosts.add(listen_host.lower().strip("[]"))  # a gateway bound to one address answers to it
    origins = set()
    for origin in cors_origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise GatewayConfigError(f"YOKEFLOW_CORS_ORIGINS has {origin!r}: give origins like https://ui.example.com")
        origins.add(origin.rstrip("/").lower())
    return Doors(token, frozenset(hosts), frozenset(origins))


def doors_from_config(runtime: Runtime, token: str | None, *, no_auth: bool, listen_host: str) -> Doors:
    """Doors from the runtime settings: YOKEFLOW_API_TOKEN (when `token` is None), YOKEFLOW_ALLOWED_HOSTS
    and YOKEFLOW_CORS_ORIGINS."""
    if token is None and not no_auth:
        token = runtime.api_token or None
    return make_doors(token, no_auth=no_auth, listen_host=listen_host,
                      allowed_hosts=split_list(runtime.allowed_hosts), cors_origins=split_list(runtime.cors_origins))


def load_or_create_token(state_dir: Path) -> tuple[str, bool]:
    """The token in `<state_dir>/api-token`, made (random, mode 0600) on first use; and whether it was made now."""
    path = Path(state_dir) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)  # readable by others is as good as no token
            log.warning("%s was readable by other users (mode %o): now 0600", path, mode)
        token = path.read_text().strip()
        try:
            return check_api_token(token) or _refuse_empty(path), False
        except GatewayConfigError as exc:
            raise GatewayConfigError(f"{path}: {exc}; delete the file and `yokeflow up` makes a new one") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token, True


def _refuse_empty(path: Path) -> str:
    raise GatewayConfigError(f"{path} is empty: delete it and `yokeflow up` makes a new token")


def host_name(host_header: str) -> str:
    """The name in a Host header, without port and brackets, lower-cased ("" if malformed)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def offered_token(conn: HTTPConnection) -> str | None:
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if conn.cookies.get(COOKIE):
        return conn.cookies[COOKIE]
    if conn.url.path == "/" and conn.scope["type"] == "http":
        return conn.query_params.get("token")  # the URL `yokeflow up` prints; swapped for the cookie at once
    return None


def token_matches(expected: str, offered: str | None) -> bool:
    return offered is not None and hmac.compare_digest(expected.encode(), offered.encode())


def is_authorized(conn: HTTPConnection) -> bool:
    doors: Doors = conn.app.state.doors
    return doors.open or token_matches(doors.token or "", offered_token(conn))


async def guard(conn: HTTPConnection) -> None:
    """The one dependency every route and the WebSocket go through (see the module docstring)."""
    doors: Doors = conn.app.state.doors
    websocket = conn.scope["type"] == "websocket"
    method = "WEBSOCKET" if websocket else conn.scope.get("method", "GET")
    if conn.url.path == LIVENESS and method in SAFE_METHODS:
        return  # the bare liveness probe: it tells an unauthenticated caller only ok/degraded
    host = host_name(conn.headers.get("host", ""))
    if host not in doors.allowed_hosts:
        raise ApiError(403, f"this gateway does not answer to the host name {host or '(none)'!r}: add it to "
                            "YOKEFLOW_ALLOWED_HOSTS if it is yours", "host")
    if websocket or method not in SAFE_METHODS:
        origin = conn.headers.get("origin")
        if origin is not None and not _origin_allowed(origin, conn.headers.get("host", ""), doors):
            raise ApiError(403, f"requests from the origin {origin[:200]!r} are refused: only pages served by this "
                                "gateway (or YOKEFLOW_CORS_ORIGINS) may send commands", "origin")
    if not is_authorized(conn):
        raise ApiError(401, "missing or wrong API token: send `Authorization: Bearer <token>` (the token is in "
                            "<state folder>/api-token, or YOKEFLOW_API_TOKEN), or open the URL `yokeflow up` "
                            "printed", "authorization")
    if not websocket and method not in SAFE_METHODS:
        _check_body_size(conn)
    for key, value in conn.query_params.multi_items():  # PostgreSQL cannot take a NUL: refuse it for every route
        if "\x00" in key or "\x00" in value:
            raise ApiError(422, f"query parameter {key[:50]!r} contains a NUL character: remove it", key[:50] or "query")


def _check_body_size(conn: HTTPConnection) -> None:
    """Bodies are bounded before they are read: a declared length over the limit, or no length at all."""
    length = conn.headers.get("content-length")
    if length is None:
        if conn.headers.get("transfer-encoding"):
            raise ApiError(413, "send the request body with a Content-Length (chunked bodies are refused)", "body")
        return
    if not length.isdigit() or int(length) > MAX_JSON_BODY:
        raise ApiError(413, f"the request body is {length[:20]} bytes: the gateway accepts at most {MAX_JSON_BODY}",
                       "body")


def _origin_allowed(origin: str, host_header: str, doors: Doors) -> bool:
    origin = origin.strip().rstrip("/").lower()
    if origin in doors.allowed_origins:
        return True
    parts = urlsplit(origin)
    # same origin: the page was served by this gateway under a name the Host check allowed
    return parts.scheme in ("http", "https") and parts.netloc == host_header.strip().lower()
