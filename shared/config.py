"""The one config loader: `.yokeflow.yaml` with `YOKEFLOW_*` environment overrides.

Environment overrides use `__` between levels: YOKEFLOW_PARALLEL__MAX_CONCURRENCY=5.
Connection and runtime settings have short names (YOKEFLOW_NATS_URL, YOKEFLOW_DATABASE_URL and
the `runtime` section's, listed in RUNTIME_ENV); they are taken as plain strings.
A bad value is a ConfigError naming the key and what it accepts; so is a key YokeFlow accepts
in the schema but does not act on yet (see UNWIRED).

This module is the only reader of the process environment: services and the CLI get every
setting from the Config it returns, and what must see the environment itself (the scrubber's
secret values, the sandbox's allow-list, PATH for child processes, the standard OTEL_* and
ANTHROPIC_* variables) gets it from `process_env`, `otel_env` or `model_api` here.
"""

from __future__ import annotations

import math
import os
import typing
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Literal, Mapping

import msgspec
import yaml

CONFIG_FILE = ".yokeflow.yaml"


class ConfigError(ValueError):
    pass


class Parallel(msgspec.Struct, kw_only=True):
    enabled: bool = True  # false: one attempt in flight per run, whatever max_concurrency says
    max_concurrency: int = 3
    strategy: Literal["by_epic", "by_task", "smart"] = "by_epic"
    batch_barrier: bool = False
    max_attempts: int = 2
    setup_command: str = ""
    port_base: int = 20000
    # While every slot is busy, attempts ready to start are admitted as candidates: an executor gives
    # the slot of an agent that ends there to its best candidate of the run at once (AgentFinished
    # names it) instead of a round trip through the scheduler. false: every slot is given once free.
    slot_handover: bool = True

    @property
    def concurrency(self) -> int:
        """Attempts in flight per run: max_concurrency, or 1 when parallel work is turned off."""
        return self.max_concurrency if self.enabled else 1


class Learning(msgspec.Struct, kw_only=True):
    enabled: bool = True
    expertise_max_lines: int = 1000
    prompt_tokens: int = 2000  # how much of the domain's expertise an agent's prompt gets
    # a tier (haiku, sonnet, opus) or a priced model id: a model that turns each attempt's log into
    # further entries (shared/expertise/distil.py), its calls in the budget; "" = the log alone
    model: str = ""
    self_improve_interval: str = ""  # not supported: refused unless empty (see UNWIRED)


MODEL_TIERS = ("haiku", "sonnet", "opus")  # cheapest first


def _default_tier_models() -> dict[str, str]:
    return {"opus": "claude-opus-5-5", "sonnet": "claude-sonnet-5-5", "haiku": "claude-haiku-5-5"}


class Cost(msgspec.Struct, kw_only=True):
    """Money settings (docs/costs.md). Amounts are USD; 0 means no limit."""

    budget_limit_usd: float = 100.0   # the project's budget, across all its runs
    run_budget_usd: float = 0.0       # each run's own budget
    enforcement: Literal["hard", "soft"] = "hard"  # hard: a call that may not fit is not made; soft: warnings only
    warn_at: list[float] = msgspec.field(default_factory=lambda: [0.5, 0.8, 0.95])
    warn_at_fraction: float | None = None  # replaced by warn_at: refused in .yokeflow.yaml (UNWIRED)
    optimization_enabled: bool = True  # false: every attempt uses default_model
    default_model: str = "sonnet"      # a tier (haiku | sonnet | opus) or a priced model id
    models: dict[str, str] = msgspec.field(default_factory=_default_tier_models)  # tier -> model id
    min_success_rate: float = 0.85     # history: a cheaper model is trusted from this success rate ...
    min_samples: int = 5               # ... over at least this many finished attempts
    prices: dict[str, Any] = msgspec.field(default_factory=dict)  # model id -> {input, output, cache_write, cache_read}


class SandboxSettings(msgspec.Struct, kw_only=True):
    """`agent.sandbox`: how commands run for a person (see shared/sandbox.py); a plain
    `required` / `off` is shorthand for the mode."""

    mode: Literal["required", "off"] = "required"
    network: bool = False
    cpu_seconds: int = 900        # CPU time of each process
    memory_mb: int = 8192         # address space of each process
    max_processes: int = 512      # processes of the sandbox user at once (bounds a fork bomb)
    max_file_mb: int = 2048       # largest file a command may write


class Agent(msgspec.Struct, kw_only=True):
    provider: str = "replay"
    base_url: str = ""
    max_turns: int = 40
    max_fix_rounds: int = 2
    command_timeout_s: float = 300.0
    transcripts: str = ""
    record: str = ""  # a folder: every agent's real turns are written there as <task>.json, replayable later
    sandbox: SandboxSettings = msgspec.field(default_factory=SandboxSettings)
    env_allow: list[str] = []     # variables of YokeFlow's environment that sandboxed commands may see


class Merge(msgspec.Struct, kw_only=True):
    mode: Literal["merge", "squash"] = "merge"
    target_branch: str = "main"
    validate_command: str = ""
    on_conflict: Literal["agent", "manual"] = "manual"
    max_resolution_attempts: int = 2  # resolution agents per task before a person is asked (on_conflict: agent)
    keep_branches: bool = False


class RunSettings(msgspec.Struct, kw_only=True):
    """The sections a run carries in its RunStarted event (so the log alone replays it).

    Same JSON shape as the `.yokeflow.yaml` sections: an old event's dict decodes into it, and a
    key it lacks takes the default here (the one place a default lives)."""

    parallel: Parallel = msgspec.field(default_factory=Parallel)
    cost: Cost = msgspec.field(default_factory=Cost)
    agent: Agent = msgspec.field(default_factory=Agent)
    merge: Merge = msgspec.field(default_factory=Merge)
    learning: Learning = msgspec.field(default_factory=Learning)

    @classmethod
    def of(cls, data: Any, source: str = "settings") -> "RunSettings":
        """Settings from their JSON shape (a stored row, an API body, a test's literal)."""
        if isinstance(data, RunSettings):
            return data
        try:
            _refuse_unknown(data or {}, cls)
            settings = msgspec.convert(data or {}, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{source}: {_readable(exc)}") from None
        _check_ranges(settings, source)
        return settings

    def with_overrides(self, overrides: dict[str, dict[str, Any]] | None, source: str = "settings") -> "RunSettings":
        """These settings with some keys replaced per section, checked as a whole."""
        data = msgspec.to_builtins(self)
        for section, values in (overrides or {}).items():
            if section not in data:
                raise ConfigError(f"{source}: no section {section!r}: use one of {', '.join(sorted(data))}")
            data[section].update(values)
        return RunSettings.of(data, source)

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


class Runtime(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the processes run (not part of a run): names that isolate clusters and tests, slots,
    ack waits, the gateway's address and token. Usually set through the short names in RUNTIME_ENV."""

    subject_prefix: str = "yf"
    stream: str = "YF_EVENTS"
    log_stream: str = "YF_LOGS"
    stream_replicas: int = 1
    log_level: str = "INFO"
    executor_slots: int = 0  # an explicit per-process limit; 0 leaves it to the runs' max_concurrency
    executor_ack_wait_s: float = 60.0
    executor_lease_s: float | None = None  # how long an attempt's lease lives unrenewed (default: the ack wait)
    executor_drain_s: float = 30.0  # on SIGTERM, how long tasks in hand may finish before going back to the log
    merger_ack_wait_s: float = 120.0  # a merger killed mid-merge hands its merge on after this long
    merger_crash_after_ref_update: bool = False  # tests only (tests/chaos): die between a ref update and its event
    executor_crash_after_finish: bool = False  # tests only (tests/chaos): die between AgentFinished and the commit
    # `yokeflow up` / `run`: each service in its own process (more than one core for the orchestration)
    service_processes: bool = False
    # `up` / `run` with the other services in one process: the ledger in its own (its projecting never
    # takes the orchestration's core; as its own NATS identity and database role, as services run alone)
    ledger_process: bool = True
    health_port: int = 0  # /livez and /readyz of a service run alone (0: none)
    health_host: str = "0.0.0.0"
    # Executors without a shared disk: the merger serves repositories under git_root over git smart
    # HTTP on git_http_port; executors with git_remote clone into executor_scratch and push branches.
    git_http_port: int = 0
    git_http_host: str = "0.0.0.0"
    git_root: str = ""
    git_token: str | None = None
    git_remote: str = ""
    executor_scratch: str = ""
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8765
    api_token: str | None = None
    allowed_hosts: str = ""  # comma-separated Host names the gateway answers besides loopback
    cors_origins: str = ""   # comma-separated origins a browser may call the gateway from
    state_dir: str = ".yokeflow"

    def bus_options(self) -> dict[str, Any]:
        """Subject prefix, stream names and replicas, as Bus.connect takes them."""
        return {"prefix": self.subject_prefix, "stream": self.stream, "log_stream": self.log_stream,
                "replicas": self.stream_replicas}


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    parallel: Parallel = msgspec.field(default_factory=Parallel)
    learning: Learning = msgspec.field(default_factory=Learning)
    cost: Cost = msgspec.field(default_factory=Cost)
    agent: Agent = msgspec.field(default_factory=Agent)
    merge: Merge = msgspec.field(default_factory=Merge)
    runtime: Runtime = msgspec.field(default_factory=Runtime)
    nats_url: str = ""
    nats_creds: str = ""  # a NATS .creds file (JWT + nkey seed) for YOKEFLOW_NATS_URL, when the URL has no user:password
    database_url: str = ""

    def run_settings(self) -> RunSettings:
        """The settings a run carries in its RunStarted event (so the log alone replays it)."""
        return RunSettings(parallel=self.parallel, cost=self.cost, agent=self.agent, merge=self.merge,
                           learning=self.learning)


RUNTIME_ENV = {
    "YOKEFLOW_SUBJECT_PREFIX": "subject_prefix", "YOKEFLOW_STREAM": "stream", "YOKEFLOW_LOG_STREAM": "log_stream",
    "YOKEFLOW_STREAM_REPLICAS": "stream_replicas", "YOKEFLOW_LOG_LEVEL": "log_level",
    "YOKEFLOW_EXECUTOR_SLOTS": "executor_slots", "YOKEFLOW_EXECUTOR_ACK_WAIT": "executor_ack_wait_s",
    "YOKEFLOW_EXECUTOR_LEASE_S": "executor_lease_s", "YOKEFLOW_EXECUTOR_DRAIN_S": "executor_drain_s",
    "YOKEFLOW_HEALTH_PORT": "health_port", "YOKEFLOW_HEALTH_HOST": "health_host",
    "YOKEFLOW_GIT_HTTP_PORT": "git_http_port", "YOKEFLOW_GIT_HTTP_HOST": "git_http_host",
    "YOKEFLOW_GIT_ROOT": "git_root", "YOKEFLOW_GIT_TOKEN": "git_token", "YOKEFLOW_GIT_REMOTE": "git_remote",
    "YOKEFLOW_EXECUTOR_SCRATCH": "executor_scratch", "YOKEFLOW_SERVICE_PROCESSES": "service_processes",
    "YOKEFLOW_LEDGER_PROCESS": "ledger_process",
    "YOKEFLOW_MERGER_ACK_WAIT": "merger_ack_wait_s",
    "YOKEFLOW_MERGER_CRASH_AFTER_REF_UPDATE": "merger_crash_after_ref_update",
    "YOKEFLOW_EXECUTOR_CRASH_AFTER_FINISH": "executor_crash_after_finish", "YOKEFLOW_GATEWAY_HOST": "gateway_host",
    "YOKEFLOW_GATEWAY_PORT": "gateway_port", "YOKEFLOW_API_TOKEN": "api_token", "YOKEFLOW_STATE_DIR": "state_dir",
    "YOKEFLOW_ALLOWED_HOSTS": "allowed_hosts", "YOKEFLOW_CORS_ORIGINS": "cors_origins",
}
_SHORT_ENV = {"YOKEFLOW_NATS_URL": ("nats_url",), "YOKEFLOW_NATS_CREDS": ("nats_creds",),
              "YOKEFLOW_DATABASE_URL": ("database_url",),
              **{name: ("runtime", key) for name, key in RUNTIME_ENV.items()}}


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if key in _SHORT_ENV:
            path = _SHORT_ENV[key]
            node = out
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value  # a URL or a token is a string, never YAML ("yes" is not True)
            continue
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
        _refuse_unknown(data, Config)
        cfg = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_readable(exc)}") from None
    _check_ranges(cfg, source)
    _check_urls(cfg)
    return cfg


def _check_urls(cfg: Config) -> None:
    """A server URL that cannot be parsed is one line naming its variable, not a traceback later."""
    from urllib.parse import urlsplit

    for name, value, schemes, example in (
            ("YOKEFLOW_DATABASE_URL", cfg.database_url, ("postgresql", "postgres", "postgresql+asyncpg"),
             "postgresql://user@host:5432/db"),
            ("YOKEFLOW_NATS_URL", cfg.nats_url, ("nats", "tls", "ws", "wss"), "nats://127.0.0.1:4222")):
        if not value:
            continue
        for one in value.split(",") if name == "YOKEFLOW_NATS_URL" else [value]:
            if name == "YOKEFLOW_NATS_URL" and "://" not in one:
                one = f"nats://{one.strip()}"  # host:port alone is how nats clients take it too
            try:
                parts = urlsplit(one.strip())
                parts.port  # raises on a port that is not a number
                ok = parts.scheme in schemes and bool(parts.hostname or parts.path)
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(f"{name} is not a valid URL (expected e.g. {example}); fix or unset it")


def _sandbox_shorthand(data: dict[str, Any]) -> dict[str, Any]:
    """`agent.sandbox: off` (YAML reads a bare off as false) means `agent.sandbox: {mode: off}`."""
    agent = data.get("agent")
    if not isinstance(agent, dict) or isinstance(agent.get("sandbox"), dict) or "sandbox" not in agent:
        return data
    value = agent["sandbox"]
    mode = {False: "off", True: "required"}.get(value, value) if isinstance(value, bool) else value
    return {**data, "agent": {**agent, "sandbox": {"mode": mode}}}


def _refuse_unknown(data: Any, typ: Any, where: str = "") -> None:
    """A key no setting has is refused, naming it, in a file or a request. The run's sections accept
    unknown fields when they are decoded from an event: a newer version's RunStarted or TaskReady
    with a setting this version does not know stays readable, as the schema-evolution rule says."""
    if not isinstance(data, dict) or not (isinstance(typ, type) and issubclass(typ, msgspec.Struct)):
        return
    fields = {f.encode_name: f.type for f in msgspec.structs.fields(typ)}
    for key, value in data.items():
        if key not in fields:
            raise msgspec.ValidationError(f"Object contains unknown field `{key}`" + (f" - at `$.{where}`" if where else ""))
        inner = [t for t in (typing.get_args(fields[key]) or (fields[key],))
                 if isinstance(t, type) and issubclass(t, msgspec.Struct)]
        if len(inner) == 1:
            _refuse_unknown(value, inner[0], f"{where}.{key}" if where else key)


def _readable(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    # msgspec says "... - at `$.parallel.max_concurrency`": lead with the key a person edits.
    if " - at `$." in text:
        message, where = text.split(" - at `$.", 1)
        return f"{where.rstrip('`')}: {message}"
    return text


def _check_ranges(cfg: Config | RunSettings, source: str) -> None:
    checks = [
        ("parallel.max_concurrency", cfg.parallel.max_concurrency >= 1, "must be at least 1"),
        ("parallel.max_attempts", cfg.parallel.max_attempts >= 1, "must be at least 1"),
        ("cost.budget_limit_usd", _amount(cfg.cost.budget_limit_usd), "must be a number of USD, 0 or more (0: no limit)"),
        ("cost.run_budget_usd", _amount(cfg.cost.run_budget_usd), "must be a number of USD, 0 or more (0: no limit)"),
        ("cost.warn_at", all(0 < w <= 1 for w in cfg.cost.warn_at), "must be fractions in (0, 1], e.g. [0.5, 0.8, 0.95]"),
        ("cost.min_success_rate", 0 <= cfg.cost.min_success_rate <= 1, "must be in [0, 1]"),
        ("cost.min_samples", cfg.cost.min_samples >= 1, "must be at least 1"),
        ("learning.expertise_max_lines", cfg.learning.expertise_max_lines >= 10, "must be at least 10"),
        ("learning.prompt_tokens", cfg.learning.prompt_tokens >= 0, "must not be negative"),
        ("agent.max_turns", cfg.agent.max_turns >= 1, "must be at least 1"),
        ("agent.sandbox.max_processes", cfg.agent.sandbox.max_processes >= 8, "must be at least 8"),
        ("agent.sandbox.memory_mb", cfg.agent.sandbox.memory_mb >= 64, "must be at least 64"),
        ("agent.sandbox.max_file_mb", cfg.agent.sandbox.max_file_mb >= 1, "must be at least 1"),
        ("agent.sandbox.cpu_seconds", cfg.agent.sandbox.cpu_seconds >= 1, "must be at least 1"),
        ("merge.max_resolution_attempts", cfg.merge.max_resolution_attempts >= 0, "must not be negative"),
        ("agent.record", not (cfg.agent.record and cfg.agent.provider == "replay"),
         "records a live provider's turns: set agent.provider to anthropic (or claude-code), or drop agent.record"),
    ]
    if isinstance(cfg, Config):
        checks += [
            ("runtime.executor_slots", cfg.runtime.executor_slots >= 0,
             "must be a whole number, or 0 for no limit (YOKEFLOW_EXECUTOR_SLOTS)"),
            ("runtime.stream_replicas", cfg.runtime.stream_replicas >= 1, "must be at least 1 (YOKEFLOW_STREAM_REPLICAS)"),
            ("runtime.executor_ack_wait_s", cfg.runtime.executor_ack_wait_s > 0, "must be positive (YOKEFLOW_EXECUTOR_ACK_WAIT)"),
            ("runtime.merger_ack_wait_s", cfg.runtime.merger_ack_wait_s > 0, "must be positive (YOKEFLOW_MERGER_ACK_WAIT)"),
            ("runtime.executor_drain_s", cfg.runtime.executor_drain_s >= 0,
             "must not be negative (YOKEFLOW_EXECUTOR_DRAIN_S)"),
            ("runtime.health_port", 0 <= cfg.runtime.health_port < 65536,
             "must be a port number, or 0 for no probes (YOKEFLOW_HEALTH_PORT)"),
            ("runtime.git_http_port", 0 <= cfg.runtime.git_http_port < 65536 and (not cfg.runtime.git_http_port or cfg.runtime.git_root),
             "must be a port number, and serving needs the folder of the repositories (YOKEFLOW_GIT_ROOT)"),
            ("runtime.git_remote", not cfg.runtime.git_remote or (cfg.runtime.git_remote.startswith(("http://", "https://"))
                                                       and bool(cfg.runtime.executor_scratch)),
             "must be the git endpoint's http(s) URL, with a scratch folder for the clones "
             "(YOKEFLOW_EXECUTOR_SCRATCH)"),
            ("runtime.git_token", not (cfg.runtime.git_http_port or cfg.runtime.git_remote) or len(cfg.runtime.git_token or "") >= 16,
             "must have 16+ characters when the git endpoint is served or used (YOKEFLOW_GIT_TOKEN)"),
        ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{source}: {key} {why}")
    for (section, key), (unset, why) in UNWIRED.items() if isinstance(cfg, Config) else ():
        if getattr(getattr(cfg, section), key) != unset:
            raise ConfigError(f"{source}: {section}.{key} is not supported yet ({why}): remove it or set it to {unset!r}")
    _check_models(cfg.cost, source)
    learner = cfg.learning.model
    if learner and learner not in MODEL_TIERS:
        from shared.llm.pricing import PriceTable

        if learner in ("replay", "sleep") or not PriceTable.with_overrides(cfg.cost.prices).is_priced(learner):
            raise ConfigError(f"{source}: learning.model: {learner!r} is neither a tier ({', '.join(MODEL_TIERS)}) "
                              f"nor a priced model id; to use it, set cost.prices.{learner}")


# Keys the schema accepts but nothing acts on yet: refused unless left at their default, so a
# setting is never accepted and ignored. Wiring one removes it from here.
UNWIRED: dict[tuple[str, str], tuple[Any, str]] = {
    ("learning", "self_improve_interval"): ("", "the learner updates expertise after every task; "
                                                "there is no periodic self-improvement"),
    # old runs carried it (their RunStarted still decodes); warnings now come at each of cost.warn_at
    ("cost", "warn_at_fraction"): (None, "replaced by cost.warn_at, e.g. [0.5, 0.8, 0.95]"),
}


def process_env() -> Mapping[str, str]:
    """The process environment, live. Read only through here, so one grep shows every reader."""
    return os.environ


def otel_env() -> dict[str, str]:
    """The standard OTEL_* variables (shared/telemetry.py acts on them; the SDK's exporters read their own)."""
    return {k: v for k, v in process_env().items() if k.startswith("OTEL_")}


@dataclass(frozen=True)
class ModelApi:
    """Where the Anthropic-compatible Messages API is and the key for it (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL)."""

    api_key: str = dataclass_field(default="", repr=False)  # a secret: kept out of every repr, event and log
    base_url: str = ""


def model_api(environ: Mapping[str, str] | None = None) -> ModelApi:
    env = process_env() if environ is None else environ
    return ModelApi(api_key=env.get("ANTHROPIC_API_KEY", ""), base_url=env.get("ANTHROPIC_BASE_URL", ""))


def config_dir(environ: dict[str, str] | None = None) -> str:
    """Where a service started alone finds `.yokeflow.yaml` (YOKEFLOW_CONFIG_DIR, default the working folder)."""
    return (process_env() if environ is None else environ).get("YOKEFLOW_CONFIG_DIR", ".")


def _amount(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _check_models(cost: Cost, source: str) -> None:
    """Every model a run may use has a price, and every tier a model: refused here, not at the first call."""
    from shared.llm.pricing import PriceError, PriceTable

    try:
        table = PriceTable.with_overrides(cost.prices)
    except PriceError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for tier, model in cost.models.items():
        if tier not in MODEL_TIERS:
            raise ConfigError(f"{source}: cost.models.{tier}: unknown tier; the tiers are {', '.join(MODEL_TIERS)}")
        if not table.is_priced(model):
            raise ConfigError(f"{source}: cost.models.{tier}: no price for model {model!r}; set "
                              f"cost.prices.{model} (input, output, cache_write, cache_read per million tokens)")
    missing = [t for t in MODEL_TIERS if t not in cost.models]
    if missing:
        raise ConfigError(f"{source}: cost.models.{missing[0]}: missing; give a model id for each of "
                          f"{', '.join(MODEL_TIERS)}")
    default = cost.default_model
    if default not in MODEL_TIERS and (default in ("replay", "sleep") or not table.is_priced(default)):
        raise ConfigError(f"{source}: cost.default_model: {default!r} is neither a tier ({', '.join(MODEL_TIERS)}) "
                          f"nor a priced model id; to use it, set cost.prices.{default}")


def load_config(directory: Path | str | None = None, environ: dict[str, str] | None = None) -> Config:
    """Config from `<directory>/.yokeflow.yaml` (if present) plus environment overrides."""
    environ = dict(process_env() if environ is None else environ)
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
    # shorthand first on both sides, so YOKEFLOW_AGENT__SANDBOX__NETWORK keeps a file's `sandbox: off`
    return parse_config(_merge(_sandbox_shorthand(data), _sandbox_shorthand(_env_overrides(environ))), source)
