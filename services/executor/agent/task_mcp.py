"""The task server over MCP, for agents that bring their own tool loop (the claude-code backend).

The same tools as the anthropic loop's (task_tools.py), served over streamable HTTP on a Unix
socket for one agent run. The socket lives in the agent's state folder, which its jail binds;
a forwarder inside the jail (shared/llm/claude_code.py) gives Claude Code an http://127.0.0.1
URL for it, so the agent reaches its own task's tools and nothing else of YokeFlow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import uvicorn
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from services.executor.agent.task_tools import TaskTools

SERVER_NAME = "yokeflow-task"


class _Quiet(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the executor owns the process's signals
        pass


class TaskMcpServer:
    """One agent's task tools as an MCP server on `socket_path`, for the agent's lifetime."""

    def __init__(self, tools: TaskTools, socket_path: Path):
        self.tools, self.socket_path = tools, Path(socket_path)
        self._stack = contextlib.AsyncExitStack()
        self._server: _Quiet | None = None
        self._serving: asyncio.Task | None = None

    def _mcp(self) -> Server:
        server: Server = Server(SERVER_NAME)
        tools = self.tools

        @server.list_tools()
        async def list_tools() -> list[types.Tool]:
            return [types.Tool(name=d["name"], description=d["description"], inputSchema=d["input_schema"])
                    for d in tools.definitions]

        @server.call_tool(validate_input=True)
        async def call_tool(name: str, arguments: dict) -> list[types.TextContent]:
            if not tools.handles(name):
                raise ValueError(f"unknown tool {name[:80]!r}: the task server has {', '.join(tools.names)}")
            outcome = await tools.run(name, arguments or {})
            if outcome.is_error:
                raise ValueError(outcome.text)  # the SDK answers it as a tool error (isError)
            return [types.TextContent(type="text", text=outcome.text)]

        return server

    async def start(self) -> "TaskMcpServer":
        manager = StreamableHTTPSessionManager(app=self._mcp(), stateless=True, json_response=True)
        await self._stack.enter_async_context(manager.run())

        async def app(scope, receive, send):
            if scope["type"] == "http":
                await manager.handle_request(scope, receive, send)

        self.socket_path.unlink(missing_ok=True)
        self._server = _Quiet(uvicorn.Config(app, uds=str(self.socket_path), lifespan="off", log_level="warning",
                                             access_log=False))
        self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started and not self._serving.done():
            await asyncio.sleep(0.005)
        if self._serving.done():
            self._serving.result()
            raise RuntimeError("the task server stopped while starting")
        os.chmod(self.socket_path, 0o777)  # the jail's sandbox user connects to it
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._serving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._serving, 5)
        await self._stack.aclose()
        self.socket_path.unlink(missing_ok=True)
