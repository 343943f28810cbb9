"""Optional provider: Claude Code (through `claude-agent-sdk`) runs its own tool loop in the
worktree; each `create` is one Claude Code session step, reported back as a `finish` turn."""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from pathlib import Path

from shared.llm.pricing import resolve_model
from shared.llm.types import ModelTurn, ProviderError, ProviderUnavailable, Usage

CLAUDE_CODE_TOOLS = ["Read", "Write", "Edit", "Glob", "Grep", "Bash"]


def _cli_available(cli_path: str | None) -> bool:
    if cli_path:
        return Path(cli_path).exists()
    if shutil.which("claude"):
        return True
    spec = importlib.util.find_spec("claude_agent_sdk")  # newer wheels bundle the CLI
    return bool(spec and spec.origin and any((Path(spec.origin).parent / "_bundled").glob("claude*")))


def _user_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for block in content or []:
        if block.get("type") == "text":
            parts.append(block["text"])
        elif block.get("type") == "tool_result":
            inner = block.get("content")
            parts.append(inner if isinstance(inner, str) else str(inner))
    return "\n\n".join(p for p in parts if p)


class ClaudeCodeProvider:
    name = "claude-code"

    def __init__(self, *, cwd: str | Path, cli_path: str | None = None, permission_mode: str = "acceptEdits"):
        if importlib.util.find_spec("claude_agent_sdk") is None:
            raise ProviderUnavailable("the claude-code provider needs the claude-agent-sdk package: "
                                      "pip install claude-agent-sdk (or use the 'anthropic' provider)")
        if not _cli_available(cli_path):
            raise ProviderUnavailable("the claude-code provider needs the Claude Code CLI: install it "
                                      "(npm install -g @anthropic-ai/claude-code) or pass options['cli_path']")
        self.cwd = Path(cwd)
        self.cli_path = cli_path
        self.permission_mode = permission_mode
        self._session_id: str | None = None

    async def create(self, *, model: str, system: list[dict], messages: list[dict],
                     tools: list[dict], max_tokens: int, tool_choice: dict | None = None) -> ModelTurn:
        import claude_agent_sdk as sdk

        options = dict(cwd=str(self.cwd), model=resolve_model(model), allowed_tools=CLAUDE_CODE_TOOLS,
                       permission_mode=self.permission_mode)
        if self._session_id:
            options["resume"] = self._session_id
        else:
            append = "\n\n".join(b.get("text", "") for b in system)
            options["system_prompt"] = {"type": "preset", "preset": "claude_code", "append": append}
        if self.cli_path:
            options["cli_path"] = self.cli_path
        result = None
        async for message in sdk.query(prompt=_user_text(messages[-1]), options=sdk.ClaudeAgentOptions(**options)):
            if isinstance(message, sdk.ResultMessage):
                result = message
        if result is None:
            raise ProviderError("Claude Code ended without a result message; run `claude` in the worktree to see why")
        if result.is_error:
            raise ProviderError(f"Claude Code failed: {result.result or result.subtype}")
        self._session_id = result.session_id
        summary = result.result or "Claude Code finished"
        usage = Usage.from_api(result.usage)
        finish = {"type": "tool_use", "id": f"toolu_cc_{uuid.uuid4().hex[:12]}", "name": "finish",
                  "input": {"summary": summary}}
        return ModelTurn(content=[{"type": "text", "text": summary}, finish], stop_reason="tool_use",
                         usage=usage, model=resolve_model(model))
