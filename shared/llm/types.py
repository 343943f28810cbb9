"""What every model provider speaks: one turn in, one turn out, with its token usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )

    @property
    def prompt_tokens(self) -> int:
        """Every token of the prompt, cached or not (what long-prompt price tiers look at)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }

    @classmethod
    def from_api(cls, usage: dict | None) -> "Usage":
        """Read an Anthropic `usage` object (or a transcript's, which may use our names)."""
        u = usage or {}
        return cls(
            input_tokens=int(u.get("input_tokens") or 0),
            output_tokens=int(u.get("output_tokens") or 0),
            cache_read_tokens=int(u.get("cache_read_input_tokens") or u.get("cache_read_tokens") or 0),
            cache_write_tokens=int(u.get("cache_creation_input_tokens") or u.get("cache_write_tokens") or 0),
        )


@dataclass
class ModelTurn:
    content: list[dict]  # Anthropic content blocks: {"type": "text"|"tool_use", ...}
    stop_reason: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""

    def tool_uses(self) -> list[dict]:
        return [b for b in self.content if b.get("type") == "tool_use"]

    def text(self) -> str:
        return "\n".join(b.get("text", "") for b in self.content if b.get("type") == "text").strip()


@runtime_checkable
class Provider(Protocol):
    name: str

    async def create(self, *, model: str, system: list[dict], messages: list[dict],
                     tools: list[dict], max_tokens: int, tool_choice: dict | None = None) -> ModelTurn: ...


class ProviderError(RuntimeError):
    """A model call failed in a way retrying will not fix (bad request, auth, exhausted script)."""


class RateLimited(ProviderError):
    """The circuit breaker tripped: repeated rate-limit/overload/quota answers. Pause the run."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, failures: int = 0):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.failures = failures


class ReplayExhausted(ProviderError):
    """A replayed transcript has no turn left for the call being made."""


class ProviderUnavailable(ProviderError):
    """A provider cannot be built here (missing package, CLI or setting)."""
