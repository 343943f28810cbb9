"""A local HTTP server that speaks the Anthropic Messages API with scripted turns.

The real `anthropic` SDK talks to it over real HTTP (point `base_url` at `server.url`). It
records every request, answers scripted turns in order, and can be told to fail (429 with
`retry-after`, 529, 402 …) or to hold a response back.

    with FakeAnthropic([turn(tool("write_file", path="a.txt", content="hi")),
                        turn(tool("finish", summary="done"))]) as server:
        provider = AnthropicProvider(api_key="test", base_url=server.url)
        ...
        server.requests[0].body["system"]
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

Turn = dict | Callable[[dict], dict]  # a scripted turn, or a function of the request body


def text(t: str) -> dict:
    return {"type": "text", "text": t}


_ids = itertools.count(1)


def tool(name: str, **tool_input: Any) -> dict:
    return {"type": "tool_use", "id": f"toolu_fake_{next(_ids):04d}", "name": name, "input": tool_input}


def turn(*blocks: dict, usage: dict | None = None, stop_reason: str | None = None) -> dict:
    has_tool = any(b["type"] == "tool_use" for b in blocks)
    return {"content": list(blocks), "stop_reason": stop_reason or ("tool_use" if has_tool else "end_turn"),
            "usage": usage or {"input_tokens": 100, "output_tokens": 20}}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    status: int
    error_type: str
    message: str
    headers: dict[str, str]


class FakeAnthropic:
    def __init__(self, turns: Iterable[Turn] = (), *, model: str | None = None):
        self.model = model  # None: answer as the model the request named
        self.requests: list[RecordedRequest] = []
        self._turns: list[Turn] = list(turns)
        self._failures: list[Failure] = []
        self._hold_s = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._served = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------
    def add_turns(self, *turns: Turn) -> None:
        with self._lock:
            self._turns.extend(turns)

    def fail(self, times: int = 1, *, status: int = 429, retry_after: str | None = "1",
             error_type: str = "rate_limit_error", message: str = "Number of requests has exceeded your rate limit",
             headers: dict[str, str] | None = None) -> None:
        """The next `times` requests get this error instead of a turn."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["retry-after"] = retry_after
        with self._lock:
            self._failures.extend(Failure(status, error_type, message, extra) for _ in range(times))

    def hold(self, seconds: float) -> None:
        """Every following response waits this long first (until stop())."""
        self._hold_s = seconds

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "FakeAnthropic":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_unparsed": raw.decode(errors="replace")}
                fake._handle(self, RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-anthropic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- serving -------------------------------------------------------------------------
    def _handle(self, http: BaseHTTPRequestHandler, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            failure = self._failures.pop(0) if self._failures else None
            scripted = None
            if failure is None and request.path.split("?")[0] == "/v1/messages" and self._served < len(self._turns):
                scripted = self._turns[self._served]
                self._served += 1
            served = self._served
        if self._hold_s and self._stopping.wait(self._hold_s):
            return  # stopped while holding: drop the connection
        if request.path.split("?")[0] != "/v1/messages":
            return self._send(http, 404, _error("not_found_error", f"fake_anthropic serves POST /v1/messages, not {request.path}"))
        if failure is not None:
            return self._send(http, failure.status, _error(failure.error_type, failure.message), failure.headers)
        if scripted is None:
            return self._send(http, 400, _error(
                "invalid_request_error", f"fake_anthropic: no scripted turn left for request {len(self.requests)} "
                f"({len(self._turns)} scripted); add_turns() more"))
        t = scripted(request.body) if callable(scripted) else scripted
        usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0, **(t.get("usage") or {})}
        message = {"id": f"msg_fake_{served:04d}", "type": "message", "role": "assistant",
                   "model": t.get("model") or self.model or request.body.get("model", "claude-unknown"), "content": t["content"],
                   "stop_reason": t.get("stop_reason") or "end_turn", "stop_sequence": None, "usage": usage}
        if request.body.get("stream"):
            return self._send_stream(http, message, {"request-id": f"req_fake_{served:04d}"})
        self._send(http, 200, message, {"request-id": f"req_fake_{served:04d}"})

    @staticmethod
    def _send_stream(http: BaseHTTPRequestHandler, message: dict, headers: dict[str, str]) -> None:
        """The same message as server-sent events, the way the API streams (`"stream": true`)."""
        events = [("message_start", {"type": "message_start", "message": {
            **message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 0}}})]
        for i, block in enumerate(message["content"]):
            if block["type"] == "tool_use":
                events += [("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {**block, "input": {}}}),
                           ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                               "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})]
            else:
                events += [("content_block_start", {"type": "content_block_start", "index": i,
                                                    "content_block": {"type": "text", "text": ""}}),
                           ("content_block_delta", {"type": "content_block_delta", "index": i,
                                                    "delta": {"type": "text_delta", "text": block.get("text", "")}})]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events += [("message_delta", {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"],
                                                                         "stop_sequence": None},
                                      "usage": {"output_tokens": message["usage"]["output_tokens"]}}),
                   ("message_stop", {"type": "message_stop"})]
        data = "".join(f"event: {name}\ndata: {json.dumps(payload)}\n\n" for name, payload in events).encode()
        try:
            http.send_response(200)
            http.send_header("content-type", "text/event-stream")
            http.send_header("content-length", str(len(data)))
            for k, v in headers.items():
                http.send_header(k, v)
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _send(http: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            http.send_response(status)
            http.send_header("content-type", "application/json")
            http.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                http.send_header(k, v)
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (e.g. a cancelled call)


def _error(error_type: str, message: str) -> dict:
    return {"type": "error", "error": {"type": error_type, "message": message}}
