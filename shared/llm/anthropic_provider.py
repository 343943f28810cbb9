"""The Messages API through the official `anthropic` SDK, with prompt caching, retries that
honour `retry-after`, and a circuit breaker that gives up (RateLimited) so the run can pause."""

from __future__ import annotations

import asyncio
import copy
import random

import anthropic

from shared.llm.pricing import resolve_model
from shared.llm.types import ModelTurn, ProviderError, ProviderUnavailable, RateLimited, Usage

EPHEMERAL = {"type": "ephemeral"}
RATE_LIMIT_STATUSES = (429, 529)
QUOTA_MARKERS = ("billing", "credit balance", "quota", "spend limit", "spend_limit", "insufficient")


def retry_after_seconds(exc: anthropic.APIStatusError) -> float | None:
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
    return None


def is_quota_error(exc: anthropic.APIStatusError) -> bool:
    if exc.status_code == 402:
        return True
    text = " ".join(str(x) for x in (exc.type, exc.error_code, exc.api_message) if x).lower()
    return exc.status_code in (400, 403, 429) and any(m in text for m in QUOTA_MARKERS)


def with_cache_breakpoints(system: list[dict], tools: list[dict], messages: list[dict]
                           ) -> tuple[list[dict], list[dict], list[dict]]:
    """Copies of the request parts with `cache_control` on the stable prefix (tools, system)
    and on the newest message, so each turn reads the conversation so far from the cache."""
    system, tools, messages = copy.deepcopy(system), copy.deepcopy(tools), copy.deepcopy(messages)
    if tools:
        tools[-1]["cache_control"] = EPHEMERAL
    if system and not any("cache_control" in block for block in system):
        system[-1]["cache_control"] = EPHEMERAL
    if messages:
        last = messages[-1]
        if isinstance(last.get("content"), str):
            last["content"] = [{"type": "text", "text": last["content"]}]
        if last["content"]:
            last["content"][-1]["cache_control"] = EPHEMERAL
    return system, tools, messages


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 breaker_threshold: int = 5, max_server_retries: int = 3, base_delay_s: float = 1.0,
                 max_delay_s: float = 60.0, timeout_s: float = 600.0, cache_prompt: bool = True):
        self.base_url = base_url or "https://api.anthropic.com"
        if not api_key:
            raise ProviderUnavailable(
                "the anthropic provider needs an API key: set ANTHROPIC_API_KEY "
                "(and ANTHROPIC_BASE_URL for another Anthropic-compatible endpoint), "
                "or use the offline provider 'replay'")
        # The SDK's own retries are off: ours count towards the circuit breaker.
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=self.base_url,
                                                max_retries=0, timeout=timeout_s)
        self.breaker_threshold = breaker_threshold
        self.max_server_retries = max_server_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.cache_prompt = cache_prompt
        self.consecutive_rate_limits = 0

    def _backoff(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * (0.75 + random.random() / 4)

    async def create(self, *, model: str, system: list[dict], messages: list[dict],
                     tools: list[dict], max_tokens: int, tool_choice: dict | None = None) -> ModelTurn:
        if self.cache_prompt:
            system, tools, messages = with_cache_breakpoints(system, tools, messages)
        request = {"model": resolve_model(model), "max_tokens": max_tokens, "system": system,
                   "messages": messages}
        if tools:
            request["tools"] = tools
        if tool_choice:
            request["tool_choice"] = tool_choice
        server_failures = 0
        while True:
            try:
                message = await self._client.messages.create(**request)
            except anthropic.APIStatusError as exc:
                if is_quota_error(exc):
                    raise RateLimited(f"{self.base_url} refused for quota/billing "
                                      f"({exc.status_code}): {exc.api_message or exc}",
                                      failures=self.consecutive_rate_limits + 1) from exc
                if exc.status_code in RATE_LIMIT_STATUSES:
                    await self._wait_out_rate_limit(exc)
                    continue
                if exc.status_code >= 500 and server_failures < self.max_server_retries:
                    server_failures += 1
                    await asyncio.sleep(self._backoff(server_failures))
                    continue
                raise ProviderError(f"{self.base_url} answered {exc.status_code} for model "
                                    f"{request['model']}: {exc.api_message or exc}") from exc
            except anthropic.APIConnectionError as exc:
                if server_failures < self.max_server_retries:
                    server_failures += 1
                    await asyncio.sleep(self._backoff(server_failures))
                    continue
                raise ProviderError(f"cannot reach the model API at {self.base_url}: {exc}; "
                                    "check ANTHROPIC_BASE_URL and the network") from exc
            self.consecutive_rate_limits = 0
            return self._turn(message)

    async def _wait_out_rate_limit(self, exc: anthropic.APIStatusError) -> None:
        self.consecutive_rate_limits += 1
        wait = retry_after_seconds(exc)
        what = "rate-limited" if exc.status_code == 429 else "overloaded"
        if self.consecutive_rate_limits >= self.breaker_threshold or (wait or 0) > self.max_delay_s:
            raise RateLimited(
                f"{self.base_url} {what} {self.consecutive_rate_limits} time(s) in a row "
                f"(last retry-after: {wait if wait is not None else 'none'}); pausing instead of retrying",
                retry_after_s=wait, failures=self.consecutive_rate_limits) from exc
        await asyncio.sleep(wait if wait is not None else self._backoff(self.consecutive_rate_limits))

    @staticmethod
    def _turn(message) -> ModelTurn:
        content = [block.model_dump(mode="json", exclude_none=True) for block in message.content]
        u = message.usage
        usage = Usage(input_tokens=u.input_tokens or 0, output_tokens=u.output_tokens or 0,
                      cache_read_tokens=getattr(u, "cache_read_input_tokens", 0) or 0,
                      cache_write_tokens=getattr(u, "cache_creation_input_tokens", 0) or 0)
        return ModelTurn(content=content, stop_reason=message.stop_reason or "end_turn",
                         usage=usage, model=message.model)

    async def aclose(self) -> None:
        await self._client.close()
