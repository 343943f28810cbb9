"""`yokeflow mcp` — YokeFlow as an MCP server over stdio, for a local client such as Claude Code
(`claude mcp add yokeflow -- yokeflow mcp`). It uses the servers of a running `yokeflow up` (or
YOKEFLOW_NATS_URL / YOKEFLOW_DATABASE_URL); with none, it starts embedded servers and every
service for as long as the client keeps it open. stdout carries the protocol: nothing else is
printed there."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from shared.db import Database
from yokeflow.commands.runtime import _config, _state_arg
from yokeflow.errors import CliError
from yokeflow.system import System, open_endpoint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("mcp", help="serve YokeFlow's commands as MCP tools over stdio (see docs/mcp.md)")
    _state_arg(p)
    p.set_defaults(func=lambda a: asyncio.run(cmd_mcp(a)))

    c = sub.add_parser("chat", help="an orchestrator model that plans, runs and watches through the MCP tools")
    _state_arg(c)
    c.add_argument("--message", "-m", help="one request, answered, then exit (default: read requests from stdin)")
    c.add_argument("--model", default="sonnet", help="the orchestrator's model (default sonnet)")
    c.set_defaults(func=lambda a: asyncio.run(cmd_chat(a)))


@contextlib.asynccontextmanager
async def _served(args: argparse.Namespace):
    """YokeFlow's MCP server on the usual endpoint, with the services running somewhere."""
    from yokeflow.mcp.operations import Operations
    from yokeflow.mcp.server import build_server

    config = _config()
    async with open_endpoint(config, args.state_dir) as endpoint:
        system = None if endpoint.services_running else await System(endpoint, config).start()
        bus = await endpoint.bus("yokeflow-mcp")
        database = Database(endpoint.database_url)
        operations = Operations(bus, database, config)
        try:
            yield build_server(lambda: operations), config
        finally:
            await bus.close()
            await database.dispose()
            if system is not None:
                await system.stop()


async def cmd_mcp(args: argparse.Namespace) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    async with _served(args) as (server, _):
        await server.run_stdio_async()
    return 0


async def cmd_chat(args: argparse.Namespace) -> int:
    from shared.llm import ProviderError, make_provider
    from yokeflow.mcp.chat import converse

    async with _served(args) as (server, config):
        options = {"base_url": config.agent.base_url} if config.agent.base_url else {}
        try:
            provider = make_provider("anthropic", options)
        except ProviderError as exc:
            raise CliError(f"yokeflow chat needs the anthropic provider: {exc}") from None
        messages: list[dict] = []
        requests = [args.message] if args.message else _stdin_lines()
        for request in requests:
            messages.append({"role": "user", "content": request})
            try:
                await converse(provider, server, messages, model=args.model, say=lambda text: print(text, flush=True))
            except (ProviderError, RuntimeError) as exc:
                raise CliError(f"the orchestrator stopped: {exc}") from None
    return 0


def _stdin_lines():
    if sys.stdin.isatty():
        print("yokeflow chat: say what you want (Ctrl-D ends)", file=sys.stderr)
    for line in sys.stdin:
        if line.strip():
            yield line.strip()
