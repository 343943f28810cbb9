"""`yokeflow mcp` — YokeFlow as an MCP server over stdio, for a local client such as Claude Code
(`claude mcp add yokeflow -- yokeflow mcp`). It uses the servers of a running `yokeflow up` (or
YOKEFLOW_NATS_URL / YOKEFLOW_DATABASE_URL); with none, it starts embedded servers and every
service for as long as the client keeps it open. stdout carries the protocol: nothing else is
printed there."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from shared.db import Database
from yokeflow.commands.runtime import _config, _state_arg
from yokeflow.system import System, open_endpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="serve YokeFlow's commands as MCP tools over stdio (see docs/mcp.md)")
    _state_arg(p)
    p.set_defaults(func=lambda a: asyncio.run(cmd_mcp(a)))


async def cmd_mcp(args: argparse.Namespace) -> int:
    from yokeflow.mcp.operations import Operations
    from yokeflow.mcp.server import build_server

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    config = _config()
    async with open_endpoint(config, args.state_dir) as endpoint:
        system = None if endpoint.services_running else await System(endpoint, config).start()
        bus = await endpoint.bus("yokeflow-mcp")
        database = Database(endpoint.database_url)
        operations = Operations(bus, database, config)
        try:
            await build_server(lambda: operations).run_stdio_async()
        finally:
            await bus.close()
            await database.dispose()
            if system is not None:
                await system.stop()
    return 0
