"""The agent loop: model turn → tool results → … → `finish`; then the task's checks, with a
bounded number of fix rounds; success only when every check passes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from decimal import Decimal

from services.executor.agent.tools import TOOL_DEFINITIONS, Sandbox, ToolOutcome
from shared.budget import BudgetRefused
from shared import telemetry
from shared.llm import pricing
from shared.llm.pricing import estimate_prompt_tokens
from shared.llm.types import ModelTurn, Provider, RateLimited, Usage

T = TypeVar("T")
CHECK_OUTPUT_TAIL = 4000


@dataclass
class CallRecord:
    call: int
    model: str
    usage: Usage
    cost_usd: float
    cost: Decimal = Decimal(0)  # exact


@dataclass
class AgentResult:
    outcome: str  # success | failure | cancelled | rate_limited | budget
    summary: str = ""
    error: str = ""
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    cost: Decimal = Decimal(0)  # exact; cost_usd is its float
    checks: list[dict] = field(default_factory=list)
    duration_s: float = 0.0
    retry_after_s: float | None = None  # with rate_limited: how long the API asked to wait, if it said


class _Cancelled(Exception):
    pass


class _Blocked(Exception):
    """The agent asked, through its task server, for its task to be blocked."""


class _Meter:
    """Money per call for a provider that makes its own model calls (claude-code, through its proxy):
    each call's worst case is reserved before it goes out, and its real cost settled and recorded
    (one CallRecord per call, numbered here) when its answer is in."""

    def __init__(self, run: "_Run"):
        self.run, self.calls, self.cost = run, 0, Decimal(0)

    async def reserve(self, model: str, request: dict):
        if self.run.budget is None:
            return None
        system = request.get("system") or []
        worst = self.run.prices.worst_case(
            self.run.priced(model), estimate_prompt_tokens(system if isinstance(system, list) else [system],
                                                         request.get("messages") or [], request.get("tools") or []),
            int(request.get("max_tokens") or self.run.max_tokens))
        return await self.run.budget.reserve(worst)

    async def settle(self, hold, model: str, usage: Usage | None) -> None:
        cost = self.run.prices.cost(self.run.priced(model), usage) if usage is not None else Decimal(0)
        if hold is not None:
            await self.run.budget.settle(hold, cost)
        if usage is None:
            return  # no answer, no bill
        self.calls += 1
        self.cost += cost
        if self.run.on_call is not None:
            await self.run.on_call(CallRecord(call=self.calls, model=model or self.run.model, usage=usage,
                                              cost_usd=float(cost), cost=cost))


class _Run:
    """One agent run's state; run_agent is its public face."""

    def __init__(self, *, provider: Provider, model: str, system: list[dict], sandbox: Sandbox,
                 max_tokens: int, on_call, on_log, cancel: asyncio.Event, budget=None,
                 prices: pricing.PriceTable | None = None, task_tools=None):
        self.provider, self.model, self.system, self.sandbox = provider, model, system, sandbox
        self.task_tools = task_tools  # the task server (services/executor/agent/task_tools.py), if any
        self.tools = TOOL_DEFINITIONS + (task_tools.definitions if task_tools is not None else [])
        self.max_tokens, self.on_call, self.on_log, self.cancel = max_tokens, on_call, on_log, cancel
        self.budget, self.prices = budget, prices or pricing.DEFAULT
        self.messages: list[dict] = []
        self.result = AgentResult(outcome="failure")
        self.meter: _Meter | None = None
        if provider is not None and hasattr(provider, "meter"):  # it makes its own calls: each one metered
            self.meter = _Meter(self)
            provider.meter(self.meter)

    async def guarded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` unless or until cancellation: then stop it (and the sandbox's commands).

        `work` runs in this task, as asyncio.timeout runs what it guards: a cancellation cancels this
        task and is turned into _Cancelled here. (Run as a task of its own and waited for, every call
        cost two more turns of the event loop before the agent went on: on a busy loop, a millisecond
        or more on each model call and tool call.)"""
        if self.cancel.is_set():
            work.close()
            raise _Cancelled
        current = asyncio.current_task()
        assert current is not None
        state = {"active": True, "fired": False}

        def stop(waited: asyncio.Future) -> None:
            if state["active"] and not waited.cancelled():
                state["fired"] = True
                self.sandbox.cancel()
                current.cancel()

        waiter = asyncio.ensure_future(self.cancel.wait())
        waiter.add_done_callback(stop)
        try:
            result = await work
        except asyncio.CancelledError:
            if state["fired"] and current.uncancel() == 0:  # ours, not the task's own cancellation
                raise _Cancelled from None
            raise
        finally:
            state["active"] = False
            waiter.cancel()
        if state["fired"]:  # the work swallowed our cancellation: it still stands
            current.uncancel()
            raise _Cancelled
        return result

    async def log(self, kind: str, data: dict) -> None:
        if self.on_log is not None:
            await self.on_log(kind, data)

    async def call_model(self) -> ModelTurn:
        if self.meter is not None:
            return await self.call_metered()
        hold = None
        if self.budget is not None:
            # Reserve the worst case first (every executor sees the same accounts): BudgetRefused stops the agent.
            worst = self.prices.worst_case(
                self.model, estimate_prompt_tokens(self.system, self.messages, self.tools), self.max_tokens)
            hold = await self.budget.reserve(worst)
        with self._chat_span() as span:
            try:
                turn = await self._ask()
            except BaseException:
                if hold is not None:  # no answer, no bill: give the reservation back
                    await asyncio.shield(self.budget.settle(hold, Decimal(0)))
                raise
            cost = self.prices.cost(self.priced(turn.model), turn.usage)
            telemetry.set_attributes(span, {
                "gen_ai.response.model": turn.model or self.model, "gen_ai.response.finish_reasons": [turn.stop_reason],
                "gen_ai.usage.input_tokens": turn.usage.input_tokens,
                "gen_ai.usage.output_tokens": turn.usage.output_tokens,
                "yf.usage.cache_read_tokens": turn.usage.cache_read_tokens,
                "yf.usage.cache_write_tokens": turn.usage.cache_write_tokens, "yf.cost_usd": float(cost)})
        if hold is not None:
            await self.budget.settle(hold, cost)
        self.result.turns += 1
        self.result.usage = self.result.usage + turn.usage
        self.result.cost += cost
        self.result.cost_usd = float(self.result.cost)
        self.messages.append({"role": "assistant", "content": turn.content})
        if self.on_call is not None:
            await self.on_call(CallRecord(call=self.result.turns, model=turn.model or self.model,
                                          usage=turn.usage, cost_usd=float(cost), cost=cost))
        if turn.text():
            await self.log("text", {"turn": self.result.turns, "text": turn.text()})
        return turn

    def _chat_span(self):
        return telemetry.span(f"chat {self.model}", {"gen_ai.operation.name": "chat", "gen_ai.request.model": self.model,
                                                    "gen_ai.provider.name": self.provider.name})

    async def _ask(self) -> ModelTurn:
        return await self.guarded(self.provider.create(model=self.model, system=self.system, messages=self.messages,
                                                       tools=self.tools, max_tokens=self.max_tokens))

    def priced(self, model: str) -> str:
        """The model a call is priced as: the one that answered when it has a price, else the one asked."""
        return model if model and self.prices.is_priced(model) else self.model

    async def call_metered(self) -> ModelTurn:
        """One step of a provider whose calls the meter reserves, prices and records one by one."""
        before = self.meter.cost
        with self._chat_span() as span:
            try:
                turn = await self._ask()
            finally:
                cost = self.meter.cost - before  # what the step's calls cost, answered or not
                self.result.cost += cost
                self.result.cost_usd = float(self.result.cost)
            telemetry.set_attributes(span, {"gen_ai.usage.input_tokens": turn.usage.input_tokens,
                                            "gen_ai.usage.output_tokens": turn.usage.output_tokens,
                                            "yf.cost_usd": float(cost)})
        self.result.turns += 1
        self.result.usage = self.result.usage + turn.usage
        self.messages.append({"role": "assistant", "content": turn.content})
        if turn.text():
            await self.log("text", {"turn": self.result.turns, "text": turn.text()})
        return turn

    async def run_tools(self, turn: ModelTurn) -> str | None:
        """Answer every tool call of the turn; the `finish` summary if the agent finished."""
        results, finished = [], None
        for use in turn.tool_uses():
            await self.log("tool_call", {"turn": self.result.turns, "id": use.get("id"), "name": use.get("name"),
                                         "input": use.get("input")})
            with telemetry.span(f"execute_tool {use.get('name', '')}", {
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": use.get("name"),
                    "gen_ai.tool.call.id": use.get("id")}) as span:
                if self.task_tools is not None and self.task_tools.handles(use.get("name", "")):
                    asked = await self.guarded(self.task_tools.run(use.get("name", ""), use.get("input") or {}))
                    if asked.blocked is not None:
                        raise _Blocked(asked.blocked)
                    outcome = ToolOutcome(asked.text, is_error=asked.is_error)
                else:
                    outcome = await self.guarded(self.sandbox.run(use.get("name", ""), use.get("input") or {}))
                span.set_attribute("yf.tool.is_error", bool(outcome.is_error))
            await self.log("tool_result", {"turn": self.result.turns, "id": use.get("id"), "name": use.get("name"),
                                           "is_error": outcome.is_error, "text": outcome.text[:2000]})
            results.append({"type": "tool_result", "tool_use_id": use.get("id"), "content": outcome.text,
                            "is_error": outcome.is_error})
            if outcome.finished is not None:
                finished = outcome.finished
        self.messages.append({"role": "user", "content": results})
        return finished

    def say(self, text: str) -> None:
        """Add text for the agent, in the pending user message if there is one (roles alternate)."""
        if self.messages and self.messages[-1]["role"] == "user":
            content = self.messages[-1]["content"]
            if isinstance(content, str):
                self.messages[-1]["content"] = [{"type": "text", "text": content}]
            self.messages[-1]["content"].append({"type": "text", "text": text})
        else:
            self.messages.append({"role": "user", "content": [{"type": "text", "text": text}]})

    async def run_checks(self, checks: list[str]) -> list[dict]:
        ran = []
        for command in checks:
            await self.log("check", {"command": command})
            with telemetry.span("check", {"yf.check.command": command}) as span:
                res = await self.guarded(self.sandbox.run_command(command))
                telemetry.set_attributes(span, {"yf.check.exit_code": res.exit_code, "yf.check.passed": res.passed})
            passed = res.passed
            ran.append({"command": command, "exit_code": res.exit_code, "output": res.output[-CHECK_OUTPUT_TAIL:],
                        "passed": passed, "timed_out": res.timed_out})
            await self.log("check_result", {"command": command, "exit_code": res.exit_code, "passed": passed,
                                            "output": res.output[-CHECK_OUTPUT_TAIL:]})
        return ran


def _failures_message(checks: list[dict], round_no: int, rounds: int) -> str:
    parts = [f"The task's checks failed (fix round {round_no} of {rounds}). Fix the work, run the checks, "
             "then call `finish` again."]
    for c in checks:
        if not c["passed"]:
            status = "timed out" if c.get("timed_out") else f"exit code {c['exit_code']}"
            parts.append(f"`{c['command']}` → {status}\n```\n{c['output'].strip()}\n```")
    return "\n\n".join(parts)


async def run_agent(*, provider: Provider, model: str, system: list[dict], task_prompt: str, sandbox: Sandbox,
                    checks: list[str] | tuple[str, ...] = (), max_turns: int = 40, max_fix_rounds: int = 2,
                    max_tokens: int = 8192,
                    on_call: Callable[[CallRecord], Awaitable[None]] | None = None,
                    on_log: Callable[[str, dict], Awaitable[None]] | None = None,
                    cancel: asyncio.Event | None = None,
                    verify: Callable[[], Awaitable[list[dict]]] | None = None,
                    budget=None, prices: pricing.PriceTable | None = None, task_tools=None) -> AgentResult:
    """`verify` adds checks of its own (results shaped like a command check's) after the commands.
    `budget` (a shared.budget.BudgetGate) reserves each call's worst case before it is made."""
    started = time.monotonic()
    prices = prices or pricing.DEFAULT
    run = _Run(provider=provider, model=model, system=system, sandbox=sandbox, max_tokens=max_tokens,
               on_call=on_call, on_log=on_log, cancel=cancel or asyncio.Event(), budget=budget, prices=prices,
               task_tools=task_tools)
    result = run.result
    if not prices.is_priced(model) and not prices.is_priced(provider.name):
        result.error = str(_unknown_model(model, prices))  # refused before the first call
        return result
    if prices.lookup(provider.name) == pricing.FREE:
        run.budget = None  # replayed and benchmark calls cost nothing: nothing to reserve
    run.messages.append({"role": "user", "content": task_prompt})
    checks = [c for c in checks if c.strip()]
    fix_rounds = 0
    served = None
    try:
        if task_tools is not None and hasattr(provider, "tool_socket"):
            # A provider with its own tool loop (claude-code) reaches the task server over MCP.
            from services.executor.agent.task_mcp import SERVER_NAME, TaskMcpServer

            served = await TaskMcpServer(task_tools, provider.tool_socket(SERVER_NAME)).start()
        while True:
            if result.turns >= max_turns:
                result.error = (f"the agent used all {max_turns} turns without finishing; raise max_turns "
                                "or split the task")
                break
            turn = await run.call_model()
            if task_tools is not None and task_tools.blocked is not None:  # asked over MCP, inside the step
                raise _Blocked(task_tools.blocked)
            summary = await run.run_tools(turn) if turn.tool_uses() else None
            if summary is None:
                if turn.tool_uses():
                    continue
                if turn.stop_reason == "max_tokens":
                    run.say("Your reply was cut off at the token limit. Continue, in smaller steps.")
                    continue
                summary = turn.text()  # end_turn without `finish`: the agent considers itself done
            result.summary = summary
            result.checks = await run.run_checks(checks) + (await verify() if verify else [])
            if all(c["passed"] for c in result.checks):
                result.outcome, result.error = "success", ""
                break
            failed = ", ".join(f"`{c['command']}`" for c in result.checks if not c["passed"])
            if fix_rounds >= max_fix_rounds:
                result.error = f"checks still failing after {max_fix_rounds} fix round(s): {failed}"
                break
            fix_rounds += 1
            await run.log("fix_round", {"round": fix_rounds, "failed": failed})
            run.say(_failures_message(result.checks, fix_rounds, max_fix_rounds))
    except _Cancelled:
        result.outcome, result.error = "cancelled", "cancelled while the agent was working"
    except _Blocked as exc:
        result.outcome, result.error = "failure", f"the agent asked to block the task: {exc}"
    except BudgetRefused as exc:
        result.outcome, result.error = "budget", str(exc)
    except RateLimited as exc:
        result.outcome, result.error, result.retry_after_s = "rate_limited", str(exc), exc.retry_after_s
    except Exception as exc:  # a provider or tool failure ends this attempt; the scheduler decides on retries
        result.outcome, result.error = "failure", f"{type(exc).__name__}: {exc}"
    finally:
        if served is not None:
            await served.close()
    result.duration_s = round(time.monotonic() - started, 3)
    return result


async def run_checks_only(*, sandbox: Sandbox, checks: list[str] | tuple[str, ...],
                          on_log: Callable[[str, dict], Awaitable[None]] | None = None,
                          cancel: asyncio.Event | None = None) -> AgentResult:
    """The checks without a model: success when every one passes (work that needs no agent)."""
    started = time.monotonic()
    run = _Run(provider=None, model="", system=[], sandbox=sandbox, max_tokens=0,  # type: ignore[arg-type]
               on_call=None, on_log=on_log, cancel=cancel or asyncio.Event())
    result = run.result
    try:
        result.checks = await run.run_checks([c for c in checks if c.strip()])
        failed = [c["command"] for c in result.checks if not c["passed"]]
        result.outcome = "failure" if failed else "success"
        result.error = f"checks failing: {', '.join(failed)}" if failed else ""
    except _Cancelled:
        result.outcome, result.error = "cancelled", "cancelled while the checks ran"
    result.duration_s = round(time.monotonic() - started, 3)
    return result


def _unknown_model(model: str, prices: pricing.PriceTable) -> Exception:
    try:
        prices.price_for(model)
    except pricing.UnknownModel as exc:
        return exc
    return pricing.UnknownModel(model)
