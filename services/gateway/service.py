"""Running the gateway: uvicorn in this process and event loop, until `stop` is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any, Iterator

import uvicorn

from shared.bus import Bus
from shared.config import Config
from shared.db import Database
from services.gateway.app import create_app
from services.gateway.auth import doors_from_config

log = logging.getLogger("yokeflow.gateway")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the host process owns the signals; this server stops when `stop` is set


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so a taken port is a clear error here and port 0 gives a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"the gateway cannot listen on {host}:{port}: {exc.strerror}; "
                      "choose another port with YOKEFLOW_GATEWAY_PORT") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve(bus: Bus, config: Config, stop: asyncio.Event, *, database_url: str,
                host: str | None = None, port: int | None = None, ready: asyncio.Event | None = None,
                bound: list | None = None, api_token: str | None = None, no_auth: bool = False,
                mcp: Any = None, **app_options: Any) -> None:
    """Serve REST, WebSocket and the UI until `stop` is set. Host and port default to
    YOKEFLOW_GATEWAY_HOST / YOKEFLOW_GATEWAY_PORT (127.0.0.1:8765); the token to YOKEFLOW_API_TOKEN
    (required unless `no_auth` on loopback); allowed hosts and CORS origins to YOKEFLOW_ALLOWED_HOSTS
    and YOKEFLOW_CORS_ORIGINS. Raises GatewayConfigError for doors that would stay open."""
    host = host or config.runtime.gateway_host
    port = config.runtime.gateway_port if port is None else port
    doors = doors_from_config(config.runtime, api_token, no_auth=no_auth, listen_host=host)
    database = Database(database_url)
    sock = None
    sessions = contextlib.AsyncExitStack()
    try:
        await database.migrate()
        sock = bind(host, port)
        mcp_app = None
        if mcp is not None:  # an MCP server (yokeflow/mcp) the host process built: served at /mcp
            mcp_app = mcp.streamable_http_app()
            await sessions.enter_async_context(mcp.session_manager.run())
        app = create_app(bus, database, config, doors=doors, mcp_app=mcp_app, **app_options)  # e.g. heartbeat_s
        server = _EmbeddedServer(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                                timeout_graceful_shutdown=5))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if serving.done():
            serving.result()  # raises what stopped it
            raise RuntimeError("the gateway stopped while starting")
        actual = sock.getsockname()[1]
        if bound is not None:
            bound.append(actual)
        log.info("gateway on http://%s:%s", host, actual)
        if ready is not None:
            ready.set()
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        waiter.cancel()
        await serving
    finally:
        await sessions.aclose()
        if sock is not None:
            sock.close()
        await database.dispose()
