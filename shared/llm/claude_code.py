"""Optional provider: Claude Code (the CLI bundled in the `claude-agent-sdk` wheel) runs its own
tool loop in the worktree; each `create` is one Claude Code session step, reported back as a
`finish` turn with the step's summed usage.

The CLI runs inside the same jail as every agent command (shared/sandbox.py), without network.
It reaches the model only through a Unix socket bound into the jail: a forwarder inside listens
on 127.0.0.1 and relays to the socket, and the proxy outside, in this process, adds the API key.
The key never enters the jail, so neither Claude Code nor a command it runs can read it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import ssl
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import urlsplit

from shared.budget import BudgetRefused
from shared.llm.pricing import resolve_model
from shared.llm.types import ModelTurn, ProviderError, ProviderUnavailable, Usage
from shared.sandbox import Jail, kill_group, settings_from

CLAUDE_CODE_TOOLS = ["Read", "Write", "Edit", "Glob", "Grep", "Bash"]
DEFAULT_BASE_URL = "https://api.anthropic.com"
PLACEHOLDER_KEY = "sk-ant-yokeflow-proxy-adds-the-key"
STEP_TIMEOUT_S = 1800.0

FORWARDER = r'''
import asyncio, sys
SOCK, PORT = sys.argv[1], int(sys.argv[2])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data); await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def serve(r, w):
    try:
        ur, uw = await asyncio.open_unix_connection(SOCK)
    except OSError:
        w.close(); return
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT)
    with open(sys.argv[3] + ".tmp", "w") as f:  # the port it got, for the CLI's base URL
        f.write(str(server.sockets[0].getsockname()[1]))
    import os; os.rename(sys.argv[3] + ".tmp", sys.argv[3])
    async with server:
        await server.serve_forever()
asyncio.run(main())
'''


def bundled_cli() -> str | None:
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec and spec.origin:
        cli = Path(spec.origin).parent / "_bundled" / "claude"
        if cli.exists():
            return str(cli)
    return shutil.which("claude")


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


class Meter(Protocol):
    """Money per model call for a provider that makes its own calls (the loop's, services/executor/agent/loop.py)."""

    async def reserve(self, model: str, request: dict) -> Any:
        """The call's worst case held against the budget; raises BudgetRefused when it does not fit."""

    async def settle(self, hold: Any, model: str, usage: Usage | None) -> None:
        """The call's real cost (nothing when it got no answer): settled, recorded once."""


class KeyProxy:
    """HTTP on a Unix socket → the model endpoint, with the credentials put in here. With a meter,
    every Messages API call is reserved against the budget before it goes out and priced from the
    usage in its answer; a call the budget refuses gets an error answer and never leaves."""

    def __init__(self, socket_path: Path, base_url: str, api_key: str, meter: Meter | None = None):
        self.socket_path, self.api_key, self.meter = socket_path, api_key, meter
        self.refused: str | None = None  # why the budget stopped a call, if it did
        self._settling: set[asyncio.Future] = set()
        url = urlsplit(base_url or DEFAULT_BASE_URL)
        self.tls = url.scheme == "https"
        self.host, self.port = url.hostname or "127.0.0.1", url.port or (443 if self.tls else 80)
        self.prefix = url.path.rstrip("/")
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> "KeyProxy":
        self.server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o777)  # the sandbox user connects to it
        return self

    async def close(self) -> None:
        if self.server:
            self.server.close()
            await self.server.wait_closed()
        if self._settling:  # every call's cost is settled and recorded before the step ends
            await asyncio.gather(*list(self._settling), return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # one request after another on the same connection, each upstream on its own
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
                method, target, _ = request_line.split(" ", 2)
                headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
                names = {k.lower(): v for k, v in headers}
                body = await self._body(reader, names)
                kept = [(k, v) for k, v in headers if k.lower() not in (
                    "x-api-key", "authorization", "host", "content-length", "transfer-encoding", "connection",
                    "accept-encoding")]  # answers in plain text, so their usage can be read
                kept += [("Host", self.host), ("x-api-key", self.api_key), ("Content-Length", str(len(body))),
                         ("Connection", "close")]
                metered = (self.meter is not None and method == "POST"
                           and target.split("?")[0].rstrip("/").endswith("/v1/messages"))
                hold, model, answer = None, "", bytearray()
                if metered:
                    request = _json_object(body)
                    model = str(request.get("model") or "")
                    try:
                        hold = await self.meter.reserve(model, request)
                    except BudgetRefused as exc:
                        self.refused = str(exc)
                        writer.write(_error_answer(400, f"YokeFlow's budget stopped this call: {exc}"))
                        await writer.drain()
                        break
                try:
                    up_r, up_w = await asyncio.open_connection(
                        self.host, self.port, ssl=ssl.create_default_context() if self.tls else None)
                    up_w.write(f"{method} {self.prefix}{target} HTTP/1.1\r\n".encode()
                               + "".join(f"{k}: {v}\r\n" for k, v in kept).encode() + b"\r\n" + body)
                    await up_w.drain()
                    while data := await up_r.read(65536):  # the answer as it comes (streams included)
                        if metered and len(answer) < MAX_METERED_ANSWER:
                            answer += data
                        writer.write(data)
                        await writer.drain()
                    up_w.close()
                finally:
                    if metered:  # a task of its own: it completes even when this handler is torn down
                        settling = asyncio.ensure_future(self.meter.settle(hold, model, usage_of_answer(bytes(answer))))
                        self._settling.add(settling)
                        settling.add_done_callback(self._settling.discard)
                break  # the upstream closed: so does this connection (the client reconnects)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, OSError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, names: dict[str, str]) -> bytes:
        if "chunked" in names.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk[:-2])
        return await reader.readexactly(int(names.get("content-length") or 0))


MAX_METERED_ANSWER = 32 * 1024 * 1024  # an answer's bytes kept to read its usage (answers are far smaller)


def _json_object(raw: bytes) -> dict:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_answer(status: int, message: str) -> bytes:
    body = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": message}}).encode()
    return (f"HTTP/1.1 {status} Bad Request\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


def _dechunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)


def usage_of_answer(raw: bytes) -> Usage | None:
    """The usage a Messages API answer reports (JSON, or server-sent events: `message_start` then
    `message_delta`), or None when it reports none (an error, a cut connection before the start)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lowered = head.lower()
    if b"transfer-encoding: chunked" in lowered:
        body = _dechunk(body)
    if b"text/event-stream" in lowered:
        usage: dict = {}
        for line in body.splitlines():
            if not line.startswith(b"data:"):
                continue
            data = _json_object(line[5:].strip())
            if data.get("type") == "message_start":
                usage.update((data.get("message") or {}).get("usage") or {})
            elif data.get("type") == "message_delta":
                usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
        return Usage.from_api(usage) if usage else None
    answer = _json_object(body)
    return Usage.from_api(answer["usage"]) if isinstance(answer.get("usage"), dict) else None


class ClaudeCodeProvider:
    name = "claude-code"

    def __init__(self, *, cwd: str | Path, cli_path: str | None = None, permission_mode: str = "acceptEdits",
                 base_url: str | None = None, api_key: str | None = None, sandbox: Any = None,
                 env_allow: list[str] | tuple[str, ...] = (),
                 on_log: Callable[[str, dict], Awaitable[None]] | None = None):
        if importlib.util.find_spec("claude_agent_sdk") is None and not cli_path:
            raise ProviderUnavailable("the claude-code provider needs the claude-agent-sdk package (it bundles the "
                                      "Claude Code CLI): pip install 'yokeflow[claude-code]'")
        self.cli = cli_path or bundled_cli()
        if not self.cli or not Path(self.cli).exists():
            raise ProviderUnavailable("the claude-code provider found no Claude Code CLI: pip install "
                                      "'yokeflow[claude-code]' (its wheel bundles it) or pass options['cli_path']")
        self.api_key = api_key or ""
        if not self.api_key:
            raise ProviderUnavailable("the claude-code provider needs ANTHROPIC_API_KEY in YokeFlow's environment "
                                      "(its proxy adds it; Claude Code itself never sees it)")
        self.cwd = Path(os.path.realpath(cwd))
        self.base_url = base_url or DEFAULT_BASE_URL
        self.permission_mode = permission_mode
        self.settings = settings_from(sandbox)
        self.env_allow = tuple(env_allow)
        self.on_log = on_log
        self._session_id: str | None = None
        self._state = Path(tempfile.mkdtemp(prefix="yf-claude-code-"))  # the CLI's home, kept across steps
        self._tool_servers: dict[str, Path] = {}
        self._meter: Meter | None = None

    def meter(self, meter: Meter) -> None:
        """Reserve, price and record each of Claude Code's model calls through `meter` (its proxy sees them)."""
        self._meter = meter

    def tool_socket(self, name: str) -> Path:
        """Where an MCP server named `name` (streamable HTTP on a Unix socket) must listen for Claude
        Code to get its tools: inside the folder the jail binds. Every tool of it is allowed."""
        if not name.replace("-", "").isalnum():
            raise ValueError(f"an MCP server name is letters, digits and dashes, not {name!r}")
        self._tool_servers[name] = self._state / f"tools-{name}.sock"
        return self._tool_servers[name]

    async def create(self, *, model: str, system: list[dict], messages: list[dict],
                     tools: list[dict], max_tokens: int, tool_choice: dict | None = None) -> ModelTurn:

        model_id = resolve_model(model)
        prompt = _user_text(messages[-1])
        if not self._session_id:
            prompt = "\n\n".join(b.get("text", "") for b in system) + "\n\n" + prompt
        state = self._state
        (state / "prompt.txt").write_text(prompt)
        (state / "forward.py").write_text(FORWARDER)
        socket_path = state / "api.sock"
        socket_path.unlink(missing_ok=True)
        (state / "forwarding").unlink(missing_ok=True)
        allowed = CLAUDE_CODE_TOOLS + [f"mcp__{name}" for name in self._tool_servers]  # a server's every tool
        args = ["-p", "--output-format", "stream-json", "--verbose", "--model", model_id,
                "--permission-mode", self.permission_mode, "--allowedTools", " ".join(allowed)]
        if self._tool_servers:
            args += ["--mcp-config", str(state / "mcp.json"), "--strict-mcp-config"]
        if self._session_id:
            args += ["--resume", self._session_id]
        quoted = " ".join(_sh(a) for a in args)
        forward = f"{_sh(sys.executable)} {_sh(str(state / 'forward.py'))}"
        ready = _sh(str(state / "forwarding"))
        lines = [f"{forward} {_sh(str(socket_path))} 0 {ready} &"]
        wait = [ready]
        servers = []
        for name, sock in self._tool_servers.items():  # each MCP server's socket gets a loopback port too
            port = _sh(str(state / f"tools-{name}.port"))
            (state / f"tools-{name}.port").unlink(missing_ok=True)
            lines.append(f"{forward} {_sh(str(sock))} 0 {port} &")
            wait.append(port)
            servers.append(f'"{name}":{{"type":"http","url":"http://127.0.0.1:\'$(cat {port})\'/mcp"}}')
        for file in wait:
            lines.append(f"for i in $(seq 200); do [ -e {file} ] && break; sleep 0.05; done;")
        if servers:
            lines.append(f"echo '{{\"mcpServers\":{{{','.join(servers)}}}}}' > {_sh(str(state / 'mcp.json'))};")
        script = (" ".join(lines) + f" export ANTHROPIC_BASE_URL=http://127.0.0.1:$(cat {ready}); "
                  f"{_sh(self.cli)} {quoted} < {_sh(str(state / 'prompt.txt'))}; code=$?; kill $(jobs -p); exit $code")
        env = {"ANTHROPIC_API_KEY": PLACEHOLDER_KEY,
               "CLAUDE_CONFIG_DIR": str(state / "config"), "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
               "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "IS_SANDBOX": "1",
               "ENABLE_TOOL_SEARCH": "false"}  # the task server's tools in every request, not behind a search
        jail = Jail.for_worktree(self.cwd, self.settings, extra_env=env, env_allow=self.env_allow)
        jail.binds = (state,)
        if not jail.confined:  # off: run as before, but still without the key in its environment
            jail.env.update(env)
        proxy = await KeyProxy(socket_path, self.base_url, self.api_key, meter=self._meter).start()
        try:
            argv = await asyncio.to_thread(jail.argv, script)
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=self.cwd, env=jail.env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                preexec_fn=jail.preexec(), limit=16 * 1024 * 1024)
            try:
                result, usage, calls = await asyncio.wait_for(self._read(proc), STEP_TIMEOUT_S)
            finally:
                if proc.returncode is None:
                    kill_group(proc.pid)
                stderr = (await proc.stderr.read()).decode(errors="replace")
                await proc.wait()
        except asyncio.CancelledError:
            raise
        finally:
            await proxy.close()
        if proxy.refused is not None:  # the budget stopped a call: the step ends there, like the loop's own calls
            raise BudgetRefused(proxy.refused)
        if result is None:
            raise ProviderError(f"Claude Code ended without a result (exit {proc.returncode}): {stderr.strip()[-600:]}")
        if result.get("is_error"):
            raise ProviderError(f"Claude Code failed: {result.get('result') or result.get('subtype')}")
        self._session_id = result.get("session_id") or self._session_id
        if result.get("usage"):  # the session's own total (the streamed messages carry only their start)
            usage = Usage.from_api(result["usage"])
        summary = result.get("result") or "Claude Code finished"
        finish = {"type": "tool_use", "id": f"toolu_cc_{uuid.uuid4().hex[:12]}", "name": "finish",
                  "input": {"summary": summary}}
        await self._log("claude_code_result", {"model_calls": calls, "num_turns": result.get("num_turns"),
                                               "session_id": self._session_id, "usage": usage.as_dict()})
        return ModelTurn(content=[{"type": "text", "text": summary}, finish], stop_reason="tool_use",
                         usage=usage, model=model_id)

    async def _read(self, proc) -> tuple[dict | None, Usage, int]:
        """Claude Code's stream-json messages: each model call's usage summed, each step logged."""
        result, usage, calls, seen = None, Usage(), 0, set()
        async for raw in proc.stdout:
            try:
                message = json.loads(raw)
            except json.JSONDecodeError:
                continue
            kind = message.get("type")
            if kind == "assistant":
                inner = message.get("message") or {}
                if inner.get("id") not in seen:  # one API message may arrive as several content events
                    seen.add(inner.get("id"))
                    calls += 1
                    usage = usage + Usage.from_api(inner.get("usage"))
                for block in inner.get("content") or []:
                    if block.get("type") == "tool_use":
                        await self._log("tool_call", {"name": block.get("name"), "input": block.get("input"),
                                                      "by": "claude-code"})
                    elif block.get("type") == "text" and block.get("text"):
                        await self._log("text", {"text": block["text"], "by": "claude-code"})
            elif kind == "user":
                for block in (message.get("message") or {}).get("content") or []:
                    if isinstance(block, dict) and block.get("type") == "tool_result":
                        content = block.get("content")
                        await self._log("tool_result", {"is_error": bool(block.get("is_error")), "by": "claude-code",
                                                        "text": (content if isinstance(content, str)
                                                                 else json.dumps(content))[:2000]})
            elif kind == "result":
                result = message
        return result, usage, calls

    async def _log(self, kind: str, data: dict) -> None:
        if self.on_log is not None:
            await self.on_log(kind, data)

    def __del__(self):
        shutil.rmtree(getattr(self, "_state", "/nonexistent"), ignore_errors=True)


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"
