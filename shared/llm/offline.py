"""Providers that need no model API: `replay` plays a transcript, `sleep:<ms>` stands in for
an agent in benchmarks. Both say what they are in the model name they report."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from shared.llm.types import ModelTurn, Provider, ProviderError, ReplayExhausted, Usage

STOP_REASONS = ("tool_use", "end_turn", "max_tokens", "stop_sequence", "pause_turn", "refusal")


def load_transcript(source: str | Path | dict) -> dict:
    """Read and check a transcript: {"model": str, "turns": [{"content", "stop_reason", "usage"}]}."""
    where = "transcript" if isinstance(source, dict) else f"transcript {source}"
    if isinstance(source, dict):
        data = source
    else:
        try:
            data = json.loads(Path(source).read_text())
        except FileNotFoundError:
            raise ProviderError(f"{where} does not exist: give options['transcript'] a transcript file path") from None
        except json.JSONDecodeError as exc:
            raise ProviderError(f"{where} is not valid JSON: {exc}") from None
    turns = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(turns, list):
        raise ProviderError(f'{where} needs a "turns" list (see docs/agents.md, "Transcript format")')
    for i, turn in enumerate(turns, 1):
        content = turn.get("content") if isinstance(turn, dict) else None
        if not isinstance(content, list) or not all(isinstance(b, dict) and "type" in b for b in content):
            raise ProviderError(f'{where}: turn {i} needs "content", a list of blocks each with a "type"')
        stop = turn.get("stop_reason")
        if stop is not None and stop not in STOP_REASONS:
            raise ProviderError(f"{where}: turn {i} has stop_reason {stop!r}; use one of {', '.join(STOP_REASONS)}")
    return {"model": str(data.get("model") or "unknown"), "turns": turns}


def turn_from_dict(turn: dict, model: str) -> ModelTurn:
    content = [dict(b) for b in turn["content"]]
    for n, block in enumerate(content):
        if block["type"] == "tool_use":
            block.setdefault("id", f"toolu_replay_{uuid.uuid4().hex[:12]}_{n}")
            block.setdefault("input", {})
    has_tools = any(b["type"] == "tool_use" for b in content)
    stop = turn.get("stop_reason") or ("tool_use" if has_tools else "end_turn")
    return ModelTurn(content=content, stop_reason=stop, usage=Usage.from_api(turn.get("usage")), model=model)


def turn_to_dict(turn: ModelTurn) -> dict:
    return {"content": turn.content, "stop_reason": turn.stop_reason, "usage": turn.usage.as_dict()}


class ReplayProvider:
    """Plays a transcript's turns in order, whatever is asked; one provider per agent run."""

    name = "replay"

    def __init__(self, transcript: str | Path | dict):
        self.source = transcript if not isinstance(transcript, dict) else "<inline>"
        data = load_transcript(transcript)
        self.recorded_model = data["model"]
        self.model = self.recorded_model if self.recorded_model.startswith("replay") else f"replay:{self.recorded_model}"
        self._turns = data["turns"]
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self._turns) - self._next

    async def create(self, *, model: str, system: list[dict], messages: list[dict],
                     tools: list[dict], max_tokens: int, tool_choice: dict | None = None) -> ModelTurn:
        if self._next >= len(self._turns):
            raise ReplayExhausted(
                f"transcript {self.source} has {len(self._turns)} turn(s) and call {self._next + 1} "
                "asked for another: the replayed agent did not finish; end the transcript with a "
                "`finish` tool call or record it again")
        turn = self._turns[self._next]
        self._next += 1
        return turn_from_dict(turn, self.model)


class TranscriptRecorder:
    """Wraps a provider and writes every turn it returns to a transcript file ReplayProvider plays."""

    def __init__(self, inner: Provider, path: str | Path):
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self._data: dict = {"model": "", "turns": []}

    async def create(self, **kwargs) -> ModelTurn:
        turn = await self.inner.create(**kwargs)
        self._data["model"] = self._data["model"] or turn.model
        self._data["turns"].append(turn_to_dict(turn))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self._data, indent=2) + "\n")
        return turn


class SleepProvider:
    """Benchmark stand-in: waits, writes one uniquely named file, then finishes."""

    name = "sleep"

    def __init__(self, milliseconds: float):
        if milliseconds < 0:
            raise ProviderError(f"sleep provider needs a non-negative duration, got {milliseconds} ms")
        self.milliseconds = milliseconds
        self.model = f"sleep:{milliseconds:g}"

    async def create(self, *, model: str, system: list[dict], messages: list[dict],
                     tools: list[dict], max_tokens: int, tool_choice: dict | None = None) -> ModelTurn:
        answered = sum(1 for m in messages if m.get("role") == "assistant")
        if answered == 0:
            await asyncio.sleep(self.milliseconds / 1000)
            name = f"yokeflow-sleep/{uuid.uuid4().hex}.txt"
            block = {"type": "tool_use", "id": f"toolu_sleep_{uuid.uuid4().hex[:12]}", "name": "write_file",
                     "input": {"path": name, "content": f"slept {self.milliseconds:g} ms\n"}}
        else:
            block = {"type": "tool_use", "id": f"toolu_sleep_{uuid.uuid4().hex[:12]}", "name": "finish",
                     "input": {"summary": f"sleep provider: waited {self.milliseconds:g} ms and wrote one file"}}
        return ModelTurn(content=[block], stop_reason="tool_use", usage=Usage(), model=self.model)
