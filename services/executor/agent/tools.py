"""The agent's tools, all confined to one worktree: paths are resolved (symlinks included)
and refused when they leave it or enter .git; commands run in it with limits."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from services.executor.agent.commands import CommandResult, kill_group, run_shell
from shared.config import SandboxSettings
from shared.sandbox import Jail, SandboxUnavailable
from services.executor.agent.files import glob_matches, looks_binary, walk_files
from services.executor.agent.tool_definitions import TOOL_DEFINITIONS, TOOL_NAMES

TOOL_SCHEMAS = {t["name"]: t["input_schema"] for t in TOOL_DEFINITIONS}

MAX_COMMAND_TIMEOUT_S = 1800.0
READ_LIMIT_LINES = 2000
LIST_LIMIT = 1000
GREP_LIMIT = 200
GREP_MAX_FILE_BYTES = 2_000_000

__all__ = ["CommandResult", "Sandbox", "SandboxUnavailable", "TOOL_DEFINITIONS", "ToolOutcome", "ToolRefused"]


class ToolRefused(Exception):
    """A tool call the sandbox will not carry out (e.g. a path outside the worktree)."""


@dataclass
class ToolOutcome:
    text: str
    is_error: bool = False
    finished: str | None = None  # the summary, when the agent called `finish`


class Sandbox:
    def __init__(self, root: Path, *, command_timeout_s: float = 120, output_cap: int = 20_000,
                 env: dict | None = None, settings: SandboxSettings | None = None, env_allow: list[str] = ()):
        """`env`: variables the executor sets for commands; `env_allow`: names of its own
        environment they may also see; `settings`: agent.sandbox (raises SandboxUnavailable)."""
        self.root = Path(os.path.realpath(root))
        if not self.root.is_dir():
            raise ToolRefused(f"worktree {root} does not exist or is not a folder")
        self.command_timeout_s = command_timeout_s
        self.output_cap = output_cap
        self.jail = Jail.for_worktree(self.root, settings, extra_env=env, env_allow=tuple(env_allow))
        self._running: set[int] = set()
        self.cancelled = False

    # -- paths -------------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        if not isinstance(path, str) or not path.strip() or "\x00" in path:
            raise ToolRefused(f"invalid path {path!r}: give a path relative to the worktree")
        given = Path(path)
        if ".." in given.parts:
            raise ToolRefused(f"path {path!r} uses '..': give a path inside the worktree, relative to its root")
        real = Path(os.path.realpath(given if given.is_absolute() else self.root / given))
        if real != self.root and self.root not in real.parents:
            how = "leads through a symlink to" if not given.is_absolute() else "is"
            raise ToolRefused(f"path {path!r} {how} {real}, outside the worktree {self.root}; "
                              "only files inside the worktree can be used")
        rel = real.relative_to(self.root)
        if ".git" in rel.parts:
            raise ToolRefused(f"path {path!r} is inside .git: the repository's internals are off limits; "
                              "YokeFlow commits your work")
        return real

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    # -- dispatch ------------------------------------------------------------------------
    async def run(self, name: str, tool_input: dict) -> ToolOutcome:
        handler = getattr(self, f"_tool_{name}", None) if name in TOOL_NAMES else None
        if handler is None:
            return ToolOutcome(f"unknown tool {name!r}; available tools: {', '.join(TOOL_NAMES)}", is_error=True)
        tool_input = tool_input if isinstance(tool_input, dict) else {}
        schema = TOOL_SCHEMAS[name]
        missing = [k for k in schema.get("required", []) if k not in tool_input]
        unknown = [k for k in tool_input if k not in schema["properties"]]
        if missing or unknown:
            return ToolOutcome(f"bad input for {name}: missing {missing or 'nothing'}, unknown {unknown or 'nothing'}; "
                               f"it takes {', '.join(schema['properties'])}", is_error=True)
        try:
            return await handler(**tool_input)
        except TypeError as exc:
            return ToolOutcome(f"bad input for {name}: {exc}; see the tool's input schema", is_error=True)
        except ToolRefused as exc:
            return ToolOutcome(f"refused: {exc}", is_error=True)
        except (OSError, UnicodeDecodeError) as exc:
            return ToolOutcome(f"{name} failed: {exc}", is_error=True)

    def _cap(self, text: str) -> str:
        if len(text) <= self.output_cap:
            return text
        return text[: self.output_cap] + f"\n… [output cut at {self.output_cap} characters]"

    # -- tools ---------------------------------------------------------------------------
    async def _tool_read_file(self, path: str, offset: int | None = None, limit: int | None = None) -> ToolOutcome:
        real = self.resolve(path)
        if not real.exists():
            return ToolOutcome(f"no such file: {path} (list_files shows what exists)", is_error=True)
        if real.is_dir():
            return ToolOutcome(f"{path} is a folder; use list_files with pattern '{self.rel(real)}/*'", is_error=True)
        if looks_binary(real):
            return ToolOutcome(f"{path} is a binary file ({real.stat().st_size} bytes); not shown", is_error=True)
        lines = real.read_text(errors="replace").splitlines()
        start = max(1, int(offset or 1))
        count = max(1, int(limit or READ_LIMIT_LINES))
        shown = lines[start - 1: start - 1 + count]
        text = "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(shown, start))
        if start - 1 + count < len(lines):
            text += f"\n… {len(lines)} lines in all; read on with offset={start + count}"
        if not lines:
            return ToolOutcome(f"({path} is empty)")
        if not shown:
            return ToolOutcome(f"offset {start} is past the end: {path} has {len(lines)} lines", is_error=True)
        return ToolOutcome(self._cap(text))

    async def _tool_write_file(self, path: str, content: str) -> ToolOutcome:
        real = self.resolve(path)
        if real.is_dir():
            return ToolOutcome(f"{path} is a folder; give a file path", is_error=True)
        real.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode()
        real.write_bytes(data)
        return ToolOutcome(f"wrote {len(data)} bytes to {self.rel(real)}")

    async def _tool_edit_file(self, path: str, old_text: str, new_text: str,
                              replace_all: bool = False) -> ToolOutcome:
        real = self.resolve(path)
        if not real.is_file():
            return ToolOutcome(f"no such file: {path}; create it with write_file", is_error=True)
        if not old_text:
            return ToolOutcome("old_text is empty; give the exact text to replace", is_error=True)
        text = real.read_text()
        found = text.count(old_text)
        if found == 0:
            return ToolOutcome(f"old_text was not found in {path}; read_file it and copy the text exactly, "
                               "whitespace included", is_error=True)
        if found > 1 and not replace_all:
            return ToolOutcome(f"old_text occurs {found} times in {path}; add surrounding lines to make it "
                               "unique, or set replace_all", is_error=True)
        real.write_text(text.replace(old_text, new_text) if replace_all else text.replace(old_text, new_text, 1))
        return ToolOutcome(f"replaced {found if replace_all else 1} occurrence(s) in {self.rel(real)}")

    def _check_pattern(self, pattern: str) -> None:
        if pattern.startswith("/") or ".." in pattern.split("/"):
            raise ToolRefused(f"pattern {pattern!r} must be relative to the worktree, without '..'")

    async def _tool_list_files(self, pattern: str = "**/*") -> ToolOutcome:
        self._check_pattern(pattern)
        found = [rel for p in walk_files(self.root)
                 if glob_matches(pattern, rel := self.rel(p))]
        if not found:
            return ToolOutcome(f"no files match {pattern!r}")
        more = len(found) - LIST_LIMIT
        text = "\n".join(found[:LIST_LIMIT]) + (f"\n… and {more} more; narrow the pattern" if more > 0 else "")
        return ToolOutcome(self._cap(text))

    async def _tool_grep(self, pattern: str, path: str = ".", glob: str | None = None) -> ToolOutcome:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            return ToolOutcome(f"bad regular expression {pattern!r}: {exc}", is_error=True)
        if glob:
            self._check_pattern(glob)
        base = self.resolve(path)
        if not base.exists():
            return ToolOutcome(f"no such file or folder: {path}", is_error=True)
        files = [base] if base.is_file() else walk_files(self.root, base)
        hits: list[str] = []
        for file in files:
            rel = self.rel(file)
            if (glob and not glob_matches(glob, rel)) or file.stat().st_size > GREP_MAX_FILE_BYTES or looks_binary(file):
                continue
            for n, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{rel}:{n}:{line[:300]}")
                    if len(hits) >= GREP_LIMIT:
                        return ToolOutcome(self._cap("\n".join(hits) + f"\n… stopped at {GREP_LIMIT} matches; "
                                                     "narrow the pattern, path or glob"))
        return ToolOutcome(self._cap("\n".join(hits)) if hits else f"no matches for {pattern!r}")

    async def _tool_run_command(self, command: str, timeout_s: float | None = None) -> ToolOutcome:
        result = await self.run_command(command, timeout_s)
        if result.cancelled:
            return ToolOutcome("cancelled", is_error=True)
        if result.timed_out:
            limit = self._timeout(timeout_s)
            return ToolOutcome(f"timed out after {limit:g} s; the command and its children were killed\n"
                               f"{result.output}", is_error=True)
        return ToolOutcome(f"exit code {result.exit_code}\n{result.output}", is_error=result.exit_code != 0)

    async def _tool_finish(self, summary: str) -> ToolOutcome:
        return ToolOutcome("finished; the task's checks run next", finished=str(summary))

    # -- commands ------------------------------------------------------------------------
    def _timeout(self, timeout_s: float | None) -> float:
        if timeout_s is None or timeout_s <= 0:
            return self.command_timeout_s
        return min(float(timeout_s), max(MAX_COMMAND_TIMEOUT_S, self.command_timeout_s))

    async def run_command(self, command: str, timeout_s: float | None = None) -> CommandResult:
        if self.cancelled:
            return CommandResult(exit_code=None, output="cancelled before it started", cancelled=True)
        result = await run_shell(command, cwd=self.root, jail=self.jail, timeout_s=self._timeout(timeout_s),
                                 output_cap=self.output_cap, on_start=self._running.add,
                                 on_end=self._running.discard)
        if self.cancelled:
            result.cancelled = True
        return result

    def cancel(self) -> None:
        """Kill every running command's process group now; later commands do not start."""
        self.cancelled = True
        for pgid in list(self._running):
            kill_group(pgid)
