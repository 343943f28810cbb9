"""The one config loader: `.yokeflow.yaml` with `YOKEFLOW_*` environment overrides.

Environment overrides use `__` between levels: YOKEFLOW_PARALLEL__MAX_CONCURRENCY=5.
Two connection settings have short names: YOKEFLOW_NATS_URL, YOKEFLOW_DATABASE_URL.
A bad value is a ConfigError naming the key and what it accepts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

CONFIG_FILE = ".yokeflow.yaml"


class ConfigError(ValueError):
    pass


class Parallel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    max_concurrency: int = 3
    strategy: Literal["by_epic", "by_task", "smart"] = "by_epic"
    batch_barrier: bool = False
    max_attempts: int = 2
    setup_command: str = ""
    port_base: int = 20000


class Learning(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    expertise_max_lines: int = 1000
    self_improve_interval: str = "daily"


class Cost(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    budget_limit_usd: float = 100.0
    warn_at_fraction: float = 0.8
    optimization_enabled: bool = True
    default_model: str = "sonnet"


class SandboxSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`agent.sandbox`: how commands run for a person (see shared/sandbox.py); a plain
    `required` / `off` is shorthand for the mode."""

    mode: Literal["required", "off"] = "required"
    network: bool = False
    cpu_seconds: int = 900        # CPU time of each process
    memory_mb: int = 8192         # address space of each process
    max_processes: int = 512      # processes of the sandbox user at once (bounds a fork bomb)
    max_file_mb: int = 2048       # largest file a command may write


class Agent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    provider: str = "replay"
    base_url: str = ""
    max_turns: int = 40
    max_fix_rounds: int = 2
    command_timeout_s: float = 300.0
    transcripts: str = ""
    sandbox: SandboxSettings = msgspec.field(default_factory=SandboxSettings)
    env_allow: list[str] = []     # variables of YokeFlow's environment that sandboxed commands may see


class Merge(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mode: Literal["merge", "squash"] = "merge"
    target_branch: str = "main"
    validate_command: str = ""
    on_conflict: Literal["agent", "manual"] = "manual"
    max_resolution_attempts: int = 2  # resolution agents per task before a person is asked (on_conflict: agent)
    keep_branches: bool = False


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    parallel: Parallel = msgspec.field(default_factory=Parallel)
    learning: Learning = msgspec.field(default_factory=Learning)
    cost: Cost = msgspec.field(default_factory=Cost)
    agent: Agent = msgspec.field(default_factory=Agent)
    merge: Merge = msgspec.field(default_factory=Merge)
    nats_url: str = ""
    database_url: str = ""

    def run_settings(self) -> dict[str, Any]:
        """The settings a run carries in its RunStarted event (so the log alone replays it)."""
        return msgspec.to_builtins({"parallel": self.parallel, "cost": self.cost, "agent": self.agent,
                                    "merge": self.merge, "learning": self.learning})


_SHORT_ENV = {"YOKEFLOW_NATS_URL": ("nats_url",), "YOKEFLOW_DATABASE_URL": ("database_url",)}


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if key in _SHORT_ENV:
            path = _SHORT_ENV[key]
        elif key.startswith("YOKEFLOW_") and "__" in key:
            path = tuple(part.lower() for part in key[len("YOKEFLOW_"):].split("__"))
        else:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(value) if value != "" else ""
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def parse_config(data: Any, source: str = CONFIG_FILE) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    data = _sandbox_shorthand(data)
    try:
        cfg = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_readable(exc)}") from None
    _check_ranges(cfg, source)
    return cfg


def _sandbox_shorthand(data: dict[str, Any]) -> dict[str, Any]:
    """`agent.sandbox: off` (YAML reads a bare off as false) means `agent.sandbox: {mode: off}`."""
    agent = data.get("agent")
    if not isinstance(agent, dict) or isinstance(agent.get("sandbox"), dict) or "sandbox" not in agent:
        return data
    value = agent["sandbox"]
    mode = {False: "off", True: "required"}.get(value, value) if isinstance(value, bool) else value
    return {**data, "agent": {**agent, "sandbox": {"mode": mode}}}


def _readable(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    # msgspec says "... - at `$.parallel.max_concurrency`": lead with the key a person edits.
    if " - at `$." in text:
        message, where = text.split(" - at `$.", 1)
        return f"{where.rstrip('`')}: {message}"
    return text


def _check_ranges(cfg: Config, source: str) -> None:
    checks = [
        ("parallel.max_concurrency", cfg.parallel.max_concurrency >= 1, "must be at least 1"),
        ("parallel.max_attempts", cfg.parallel.max_attempts >= 1, "must be at least 1"),
        ("cost.budget_limit_usd", cfg.cost.budget_limit_usd >= 0, "must not be negative"),
        ("cost.warn_at_fraction", 0 < cfg.cost.warn_at_fraction <= 1, "must be in (0, 1]"),
        ("learning.expertise_max_lines", cfg.learning.expertise_max_lines >= 10, "must be at least 10"),
        ("agent.max_turns", cfg.agent.max_turns >= 1, "must be at least 1"),
        ("agent.sandbox.max_processes", cfg.agent.sandbox.max_processes >= 8, "must be at least 8"),
        ("agent.sandbox.memory_mb", cfg.agent.sandbox.memory_mb >= 64, "must be at least 64"),
        ("agent.sandbox.max_file_mb", cfg.agent.sandbox.max_file_mb >= 1, "must be at least 1"),
        ("agent.sandbox.cpu_seconds", cfg.agent.sandbox.cpu_seconds >= 1, "must be at least 1"),
        ("merge.max_resolution_attempts", cfg.merge.max_resolution_attempts >= 0, "must not be negative"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{source}: {key} {why}")


def load_config(directory: Path | str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Config from `<directory>/.yokeflow.yaml` (if present) plus environment overrides."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    source = CONFIG_FILE
    if directory is not None:
        path = Path(directory) / CONFIG_FILE
        source = str(path)
        if path.exists():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not valid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: expected a mapping of settings")
    return parse_config(_merge(data, _env_overrides(environ)), source)
