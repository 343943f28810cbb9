"""Model providers behind one interface (`Provider.create` → `ModelTurn`) and the pricing table.

Used by the executor's agent loop and the planner's Session 0."""

from __future__ import annotations

from pathlib import Path

from shared.llm.offline import ReplayProvider, SleepProvider, TranscriptRecorder, load_transcript
from shared.llm.types import (ModelTurn, Provider, ProviderError, ProviderUnavailable, RateLimited,
                              ReplayExhausted, Usage)

PROVIDERS = ("anthropic", "replay", "sleep:<ms>", "claude-code")


def make_provider(spec: str, options: dict | None = None) -> Provider:
    """Build a provider from its spec: "anthropic" | "replay" | "sleep:250" | "claude-code".

    options: anthropic → api_key, base_url, breaker_threshold, max_delay_s, …;
    replay → transcript (path); claude-code → cwd, cli_path; any → record (transcript path to write).
    """
    options = dict(options or {})
    record = options.pop("record", None)
    kind, _, arg = spec.strip().partition(":")
    if kind in ("anthropic", "claude-code"):  # the key and endpoint come from the one config, never from options' absence
        from shared.config import model_api

        api = model_api()
        options["api_key"] = options.get("api_key") or api.api_key
        options["base_url"] = options.get("base_url") or api.base_url
    if kind == "anthropic":
        from shared.llm.anthropic_provider import AnthropicProvider

        provider: Provider = AnthropicProvider(**options)
    elif kind == "replay":
        transcript = options.get("transcript") or arg
        if not transcript:
            raise ProviderUnavailable("the replay provider needs a transcript: options['transcript'] = "
                                      "path to a transcript JSON file (see docs/agents.md)")
        provider = ReplayProvider(transcript if isinstance(transcript, dict) else Path(transcript))
    elif kind == "sleep":
        try:
            provider = SleepProvider(float(arg))
        except ValueError:
            raise ProviderUnavailable(f"bad provider {spec!r}: write sleep:<milliseconds>, e.g. sleep:250") from None
    elif kind == "claude-code":
        from shared.llm.claude_code import ClaudeCodeProvider

        if "cwd" not in options:
            raise ProviderUnavailable("the claude-code provider needs options['cwd'] (the worktree to work in)")
        provider = ClaudeCodeProvider(**options)
    else:
        raise ProviderUnavailable(f"unknown provider {spec!r}: use one of {', '.join(PROVIDERS)}")
    return TranscriptRecorder(provider, record) if record else provider


__all__ = ["ModelTurn", "Provider", "ProviderError", "ProviderUnavailable", "RateLimited", "ReplayExhausted",
           "ReplayProvider", "SleepProvider", "TranscriptRecorder", "Usage", "load_transcript", "make_provider"]
