"""The meta-agent: an orchestrator model whose only tools are YokeFlow's MCP tools. A person says
what they want ("plan this spec, run it with at most 4 agents and a $20 budget") and it does it
through the same commands as the CLI and the API, so every action is an event like any other."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from mcp.server.fastmcp import FastMCP

from shared.llm.types import Provider

SYSTEM = """You are YokeFlow's orchestrator. You plan, start, watch and steer runs of coding agents
for a person, only through your tools (they are YokeFlow's commands). Say what you did and what
you found in a few plain sentences. Ask before spending more than the person allowed. Tool results
are JSON; a failed call says which input was wrong: correct it or tell the person."""
MAX_RESULT = 20_000


async def tool_definitions(server: FastMCP) -> list[dict[str, Any]]:
    return [{"name": t.name, "description": t.description or t.name, "input_schema": t.inputSchema}
            for t in await server.list_tools()]


async def call(server: FastMCP, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
    """A tool's result as text for the model, and whether it failed."""
    try:
        result = await server.call_tool(name, arguments if isinstance(arguments, dict) else {})
    except Exception as exc:  # ToolError or an argument the schema refused: the model reads why
        return str(exc)[:MAX_RESULT], True
    if isinstance(result, tuple):
        result = result[1] if result[1] is not None else result[0]
    if isinstance(result, dict):
        return json.dumps(result, default=str)[:MAX_RESULT], False
    text = "\n".join(getattr(block, "text", "") for block in result)
    return text[:MAX_RESULT], False


async def converse(provider: Provider, server: FastMCP, messages: list[dict], *, model: str,
                   say: Callable[[str], Awaitable[None] | None], max_turns: int = 40,
                   max_tokens: int = 4096) -> list[dict]:
    """Answer the last user message: model turns and tool calls until the model stops calling tools."""
    tools = await tool_definitions(server)
    for _ in range(max_turns):
        turn = await provider.create(model=model, system=[{"type": "text", "text": SYSTEM}], messages=messages,
                                     tools=tools, max_tokens=max_tokens)
        messages.append({"role": "assistant", "content": turn.content})
        if turn.text():
            shown = say(turn.text())
            if shown is not None:
                await shown
        uses = turn.tool_uses()
        if not uses:
            return messages
        results = []
        for use in uses:
            text, failed = await call(server, use.get("name", ""), use.get("input") or {})
            results.append({"type": "tool_result", "tool_use_id": use.get("id"), "content": text, "is_error": failed})
        messages.append({"role": "user", "content": results})
    raise RuntimeError(f"the orchestrator used all {max_turns} turns without answering; ask for less at once")
