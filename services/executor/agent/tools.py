"""The agent's tools, all confined to one worktree: files are opened beneath it without
following a symlink out (beneath.py) and never inside .git; commands run in its jail
(shared/sandbox.py)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from services.executor.agent.commands import CommandResult, kill_group, run_shell
from shared.config import SandboxSettings
from shared.sandbox import Jail, SandboxUnavailable
from services.executor.agent.beneath import Beneath, Escape
from services.executor.agent.files import BINARY_SNIFF, glob_matches, walk_files
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
        self.files = Beneath(self.root)
        self.jail = Jail.for_worktree(self.root, settings, extra_env=env, env_allow=tuple(env_allow))
        self._running: set[int] = set()
        self.cancelled = False

    # -- paths -------------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """The path relative to the worktree, checked by its text; the file system is only ever
        reached through `self.files` (beneath.py), which follows no symlink out of the worktree."""
        if not isinstance(path, str) or not path.strip() or "\x00" in path:
            raise ToolRefused(f"invalid path {path!r}: give a path relative to the worktree")
        given = Path(path)
        if ".." in given.parts:
            raise ToolRefused(f"path {path!r} uses '..': give a path inside the worktree, relative to its root")
        if given.is_absolute():
            if given != self.root and self.root not in given.parents:
                raise ToolRefused(f"path {path!r} is outside the worktree {self.root}; "
                                  "only files inside the worktree can be used")
            given = given.relative_to(self.root)
        if ".git" in given.parts:
            raise ToolRefused(f"path {path!r} is inside .git: the repository's internals are off limits; "
                              "YokeFlow commits your work")
        return given.as_posix()

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
        except Escape as exc:
            return ToolOutcome(f"refused: path {exc}; only files inside the worktree {self.root} can be used "
                               "(never .git)", is_error=True)
        except (OSError, UnicodeDecodeError) as exc:
            return ToolOutcome(f"{name} failed: {exc}", is_error=True)

    def _cap(self, text: str) -> str:
        if len(text) <= self.output_cap:
            return text
        return text[: self.output_cap] + f"\n… [output cut at {self.output_cap} characters]"

    # -- tools ---------------------------------------------------------------------------
    async def _tool_read_file(self, path: str, offset: int | None = None, limit: int | None = None) -> ToolOutcome:
        rel = self.resolve(path)
        kind, real = self.files.kind(rel)
        if kind == "missing":
            return ToolOutcome(f"no such file: {path} (list_files shows what exists)", is_error=True)
        if kind == "dir":
            return ToolOutcome(f"{path} is a folder; use list_files with pattern '{real}/*'", is_error=True)
        data, _ = self.files.read_bytes(rel)
        if b"\x00" in data[:BINARY_SNIFF]:
            return ToolOutcome(f"{path} is a binary file ({len(data)} bytes); not shown", is_error=True)
        lines = data.decode("utf-8", "replace").splitlines()
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
        rel = self.resolve(path)
        data = content.encode()
        try:
            real = self.files.write_bytes(rel, data)
        except IsADirectoryError:
            return ToolOutcome(f"{path} is a folder; give a file path", is_error=True)
        return ToolOutcome(f"wrote {len(data)} bytes to {real}")

    async def _tool_edit_file(self, path: str, old_text: str, new_text: str,
                              replace_all: bool = False) -> ToolOutcome:
        rel = self.resolve(path)
        if self.files.kind(rel)[0] != "file":
            return ToolOutcome(f"no such file: {path}; create it with write_file", is_error=True)
        if not old_text:
            return ToolOutcome("old_text is empty; give the exact text to replace", is_error=True)
        data, real = self.files.read_bytes(rel)
        text = data.decode()
        found = text.count(old_text)
        if found == 0:
            return ToolOutcome(f"old_text was not found in {path}; read_file it and copy the text exactly, "
                               "whitespace included", is_error=True)
        if found > 1 and not replace_all:
            return ToolOutcome(f"old_text occurs {found} times in {path}; add surrounding lines to make it "
                               "unique, or set replace_all", is_error=True)
        new = text.replace(old_text, new_text) if replace_all else text.replace(old_text, new_text, 1)
        self.files.write_bytes(real, new.encode())
        return ToolOutcome(f"replaced {found if replace_all else 1} occurrence(s) in {real}")

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
        kind, base = self.files.kind(self.resolve(path))
        if kind == "missing":
            return ToolOutcome(f"no such file or folder: {path}", is_error=True)
        files = [base] if kind != "dir" else [self.rel(p) for p in walk_files(self.root, self.root / base)]
        hits: list[str] = []
        for rel in files:
            if glob and not glob_matches(glob, rel):
                continue
            try:
                data, _ = self.files.read_bytes(rel)
            except (Escape, OSError):  # changed under us, or not a regular file: not searched
                continue
            if len(data) > GREP_MAX_FILE_BYTES or b"\x00" in data[:BINARY_SNIFF]:
                continue
            for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
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
