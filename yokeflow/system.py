"""Where the servers are, and every service in one process.

`open_endpoint` finds the NATS and PostgreSQL a command should use: the ones named by
YOKEFLOW_NATS_URL / YOKEFLOW_DATABASE_URL, else those of a live `yokeflow up` on the state
folder, else embedded servers it starts on that folder itself (and stops afterwards).
`System` runs the services as asyncio tasks, each with its own NATS connection, or (with
`runtime.service_processes`) each in its own OS process (`python -m services.<name>`), so the
orchestration uses more than one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import msgspec
import yaml

from shared.bus import Bus, BusError
from shared.config import CONFIG_FILE, Config, process_env
from shared.identities import identity_of
from shared.infra import EmbeddedServers, InfraError, database_url_for, nats_url_for, read_endpoint
from shared.runner import settle_gc
from yokeflow.errors import CliError

log = logging.getLogger("yokeflow.system")

DEFAULT_STATE_DIR = Path(".yokeflow")
LEDGER_START_PATIENCE_S = 60.0  # how long `start` waits for a ledger in its own process to consume


@dataclass
class Endpoint:
    nats_url: str
    database_url: str
    source: str  # "environment" | "up" | "embedded"
    gateway_url: str = ""
    servers: EmbeddedServers | None = None
    bus_options: dict[str, Any] = field(default_factory=dict)
    nats_creds: str = ""  # YOKEFLOW_NATS_CREDS, for servers named by the environment

    @property
    def services_running(self) -> bool:
        """Whether services already consume this log (so a command only publishes and watches)."""
        return self.source in ("environment", "up")

    def database_url_for(self, service: str) -> str:
        """The service's own PostgreSQL role on an embedded server (the superuser only migrates)."""
        return database_url_for(self.database_url, service)

    async def bus(self, name: str = "yokeflow-cli") -> Bus:
        try:
            return await Bus.connect(self.nats_url, name=name, creds=self.nats_creds, **self.bus_options)
        except BusError as exc:
            hint = " (check YOKEFLOW_NATS_URL)" if self.source == "environment" else ""
            raise CliError(f"{exc}{hint}") from None


@contextlib.asynccontextmanager
async def open_endpoint(config: Config, state_dir: Path, *, need_database: bool = True,
                        start_embedded: bool = True) -> AsyncIterator[Endpoint]:
    if config.nats_url:
        if need_database and not config.database_url:
            raise CliError("YOKEFLOW_NATS_URL is set but YOKEFLOW_DATABASE_URL is not: set both to use existing servers")
        yield Endpoint(config.nats_url, config.database_url, "environment", bus_options=config.runtime.bus_options(),
                       nats_creds=config.nats_creds)
        return
    live = read_endpoint(state_dir)
    if live:
        # a client of another command's servers: counted, so that command keeps them up until this one ends
        client = register_client(state_dir)
        try:
            yield Endpoint(live["nats_url"], live["database_url"], "up", gateway_url=live.get("gateway_url", ""))
        finally:
            client.unlink(missing_ok=True)
        return
    if not start_embedded:
        raise CliError(f"no `yokeflow up` is running on {state_dir}: start one, or set YOKEFLOW_NATS_URL")
    servers = EmbeddedServers(state_dir)
    started = threading.Event()

    def start() -> None:
        try:
            servers.start()
        finally:
            started.set()

    try:
        await asyncio.to_thread(start)
    except (InfraError, OSError) as exc:
        raise CliError(f"could not start the embedded servers in {state_dir}: {exc}") from None
    except BaseException:
        # Stopped (Ctrl-C, SIGTERM) while the servers start on their thread, which goes on: they
        # would outlive this process. Their start ends within seconds either way; then stop them.
        started.wait()
        servers.stop()
        raise
    try:
        assert servers.nats and servers.postgres
        yield Endpoint(servers.nats.url, servers.postgres.url, "embedded", servers=servers)
    finally:
        await wait_for_clients(state_dir)
        (state_dir / "endpoint.json").unlink(missing_ok=True)
        await asyncio.to_thread(servers.stop)


def register_client(state_dir: Path) -> Path:
    folder = state_dir / "clients"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / str(os.getpid())
    path.write_text(str(os.getpid()))
    return path


def live_clients(state_dir: Path) -> list[int]:
    """Other commands attached to this state folder's servers that are still running."""
    pids = []
    for path in (state_dir / "clients").glob("*") if (state_dir / "clients").is_dir() else []:
        try:
            pid = int(path.name)
            os.kill(pid, 0)
        except (ValueError, OSError):  # gone without saying so (killed): not counted
            path.unlink(missing_ok=True)
            continue
        if pid != os.getpid():
            pids.append(pid)
    return pids


async def wait_for_clients(state_dir: Path, every: float = 0.5) -> None:
    """The servers' owner stops them only after every attached command has ended (reference count)."""
    said = False
    while pids := live_clients(state_dir):
        if not said:
            print(f"yokeflow: keeping the servers in {state_dir} up for {len(pids)} other command(s) using them "
                  f"(pid {', '.join(map(str, pids))}); they stop when those end (Ctrl-C again stops now)",
                  file=sys.stderr, flush=True)
            said = True
        await asyncio.sleep(every)


def _ends_with_parent():
    """A child that gets SIGTERM (and drains) when this process dies, even by SIGKILL: no service is
    left running on its own (Linux; elsewhere nothing)."""
    from shared.sandbox import _libc_prctl

    prctl = _libc_prctl() if sys.platform.startswith("linux") else None
    if prctl is None:
        return None
    return lambda: prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def tree_cpu_seconds(pids: list[int]) -> float:
    """User and system CPU so far of the live processes `pids` and their descendants (Linux /proc;
    0 for what cannot be read)."""
    ticks = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                pid, parent, used = int(entry.name), int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, IndexError, ValueError):
                continue
            cpu[pid] = used
            children.setdefault(parent, []).append(pid)
    counted, todo = set(), [p for p in pids if p in cpu]
    while todo:
        pid = todo.pop()
        if pid not in counted:
            counted.add(pid)
            todo += children.get(pid, [])
    return sum(cpu[p] for p in counted)


class ServiceProcesses:
    """The services as child processes of this one: each connects as its own NATS identity (the
    ledger alone gets its database role), reads this process's settings from a private folder
    (mode 0700, removed at stop) and serves until SIGTERM, as it would in a deployment."""

    SECRET_RUNTIME = ("api_token", "git_token")  # never written to the folder: a child inherits them from the environment

    def __init__(self, endpoint: Endpoint, config: Config):
        self.endpoint = endpoint
        self.config = config
        self.folder = Path(tempfile.mkdtemp(prefix="yokeflow-services-"))
        data = msgspec.to_builtins(config)
        for key in ("nats_url", "nats_creds", "database_url"):
            data.pop(key, None)
        for key in self.SECRET_RUNTIME:
            data["runtime"].pop(key, None)
        (self.folder / CONFIG_FILE).write_text(yaml.safe_dump(data, sort_keys=False))
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = False

    def env(self, name: str, slots: int) -> dict[str, str]:
        options = self.endpoint.bus_options
        env = {**process_env(),
               "YOKEFLOW_CONFIG_DIR": str(self.folder),
               "YOKEFLOW_NATS_URL": nats_url_for(self.endpoint.nats_url, identity_of(f"yokeflow-{name}")),
               "YOKEFLOW_HEALTH_PORT": "0",  # several services on one machine: no probe ports of their own
               "YOKEFLOW_EXECUTOR_SLOTS": str(slots)}
        if self.endpoint.nats_creds:
            env["YOKEFLOW_NATS_CREDS"] = self.endpoint.nats_creds
        for key, var in (("prefix", "YOKEFLOW_SUBJECT_PREFIX"), ("stream", "YOKEFLOW_STREAM"),
                         ("log_stream", "YOKEFLOW_LOG_STREAM"), ("replicas", "YOKEFLOW_STREAM_REPLICAS")):
            if options.get(key) is not None:
                env[var] = str(options[key])
        env.pop("YOKEFLOW_DATABASE_URL", None)
        if name == "ledger":  # the only service that needs PostgreSQL, as its own role
            env["YOKEFLOW_DATABASE_URL"] = self.endpoint.database_url_for("ledger")
        return env

    def start(self, name: str, slots: int) -> None:
        self.children[name] = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=self.env(name, slots),
                                               stdin=subprocess.DEVNULL, preexec_fn=_ends_with_parent())

    def failed(self) -> str | None:
        for name, child in self.children.items():
            if not self.stopping and child.poll() is not None:
                return f"{name}: its process exited with code {child.returncode}"
        return None

    def pids(self) -> list[int]:
        """The services' processes (each one's git worker is a child of its own)."""
        return [child.pid for child in self.children.values()]

    async def stop(self, drain_s: float) -> None:
        """SIGTERM (each drains as it does in a deployment), then SIGKILL after `drain_s` + 15 s."""
        self.stopping = True
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

        def wait(child: subprocess.Popen) -> None:
            try:
                child.wait(drain_s + 15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

        await asyncio.gather(*(asyncio.to_thread(wait, c) for c in self.children.values()))
        shutil.rmtree(self.folder, ignore_errors=True)


class System:
    """All services: in this process, or each in its own (`processes`, default
    `runtime.service_processes`). The gateway, when asked for, is always in this one."""

    SERVICES = ("ledger", "planner", "executor", "merger", "learner")

    def __init__(self, endpoint: Endpoint, config: Config, *, gateway: bool = False, gateway_host: str = "127.0.0.1",
                 gateway_port: int = 8765, executor_slots: int | None = None, services: tuple[str, ...] | None = None,
                 gateway_token: str | None = None, no_auth: bool = False, processes: bool | None = None):
        self.endpoint = endpoint
        self.config = config
        self.gateway = gateway
        self.gateway_host = gateway_host
        self.gateway_port = gateway_port
        self.executor_slots = executor_slots  # None: YOKEFLOW_EXECUTOR_SLOTS, by default no limit of its own
        self.gateway_token = gateway_token
        self.no_auth = no_auth
        self.services = services or self.SERVICES
        self.processes = config.runtime.service_processes if processes is None else processes
        self.children: ServiceProcesses | None = None
        self.stop_event = asyncio.Event()
        self.tasks: dict[str, asyncio.Task] = {}
        self.buses: list[Bus] = []
        self._disposables: list = []  # databases opened for the gateway's MCP tools
        self.gateway_url = ""

    async def _bus(self, name: str) -> Bus:
        bus = await self.endpoint.bus(f"yokeflow-{name}")
        self.buses.append(bus)
        return bus

    async def start(self) -> "System":
        from services.executor.service import Executor
        from services.learner.service import Learner
        from services.ledger.service import Ledger
        from services.merger.service import Merger
        from services.planner.service import Planner
        from shared.db import Database

        stop = self.stop_event
        try:
            slots = self.executor_slots if self.executor_slots is not None else self.config.runtime.executor_slots
        except ValueError as exc:
            raise CliError(str(exc)) from None
        owner = Database(self.endpoint.database_url)
        try:
            await owner.migrate()
        finally:
            await owner.dispose()
        self.database = Database(self.endpoint.database_url_for("ledger"))
        makers = {
            "ledger": lambda b: Ledger(b, self.database).serve(stop),
            "planner": lambda b: Planner(b).serve(stop),
            "executor": lambda b: Executor(b, self.config, concurrency=slots).serve(stop),
            "merger": lambda b: Merger(b).serve(stop),
            "learner": lambda b: Learner(b, self.config).serve(stop),
        }
        apart = self.apart()
        if apart:
            self.children = ServiceProcesses(self.endpoint, self.config)
            for name in apart:
                self.children.start(name, slots)
            if "ledger" in apart:
                try:
                    await self._until_pulling("ledger")
                except BaseException:
                    await self.stop()  # nothing is left running by a start that failed
                    raise
        if {"executor", "merger"} & (set(self.services) - set(apart)):
            # the git worker of the services in this process, ready before the first event reaches them
            from shared.gitworker import git_worker
            await git_worker().warm("services.executor.gitjobs", "services.merger.gitjobs")
        for name in self.services:
            if name not in apart:
                bus = await self._bus(name)
                self.tasks[name] = asyncio.create_task(makers[name](bus), name=name)
        if self.gateway:
            await self._start_gateway()
        settle_gc()
        return self

    async def _until_pulling(self, name: str, patience_s: float = LEDGER_START_PATIENCE_S) -> None:
        """Return once the service started in its own process pulls from its consumer: events sent
        before would wait for its start (a run's first events were projected ~1 s late)."""
        assert self.children is not None
        bus = await self._bus("cli")
        deadline = asyncio.get_running_loop().time() + patience_s
        while not await bus.pullers(name):
            if failed := self.children.failed():
                raise CliError(f"{failed}: see its output above")
            if asyncio.get_running_loop().time() > deadline:
                raise CliError(f"the {name} process did not start consuming within {patience_s:g} s: see its "
                               f"output above")
            await asyncio.sleep(0.05)

    def apart(self) -> list[str]:
        """The services that run in processes of their own: all (`processes`), else the ledger
        (`runtime.ledger_process`, the default), else none."""
        if self.processes:
            return list(self.services)
        return [name for name in self.services if name == "ledger" and self.config.runtime.ledger_process]

    async def _start_gateway(self) -> None:
        from services.gateway.service import serve as serve_gateway

        bus = await self._bus("gateway")
        ready, bound = asyncio.Event(), []
        self.tasks["gateway"] = asyncio.create_task(serve_gateway(
            bus, self.config, self.stop_event, database_url=self.endpoint.database_url_for("gateway"),
            host=self.gateway_host,
            port=self.gateway_port, ready=ready, bound=bound, api_token=self.gateway_token, no_auth=self.no_auth,
            mcp=self._mcp_server(bus)),
            name="gateway")
        done, _ = await asyncio.wait([asyncio.create_task(ready.wait()), self.tasks["gateway"]],
                                     return_when=asyncio.FIRST_COMPLETED)
        if self.tasks["gateway"] in done:
            exc = self.tasks["gateway"].exception()
            raise CliError(f"the gateway could not start on {self.gateway_host}:{self.gateway_port}: {exc}")
        self.gateway_url = f"http://{self.gateway_host}:{bound[0] if bound else self.gateway_port}"

    def _mcp_server(self, bus: Bus):
        """YokeFlow's MCP tools for the gateway's /mcp (streamable HTTP, behind its authentication)."""
        from shared.db import Database
        from yokeflow.mcp.operations import Operations
        from yokeflow.mcp.server import build_server

        database = Database(self.endpoint.database_url_for("gateway"))
        self._disposables.append(database)
        operations = Operations(bus, database, self.config)
        return build_server(lambda: operations, stateless_http=True, json_response=True)

    def failed(self) -> str | None:
        for name, task in self.tasks.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                return f"{name}: {task.exception()}"
        return self.children.failed() if self.children is not None else None

    def children_cpu_seconds(self) -> float:
        """CPU used so far by the services' own processes (with their git workers) and by this
        process's git worker: one reading of /proc for them all."""
        from shared.gitworker import git_worker
        own = git_worker().pid
        return tree_cpu_seconds((self.children.pids() if self.children is not None else []) +
                                ([own] if own is not None else []))

    async def stop(self) -> None:
        self.stop_event.set()
        if self.children is not None:
            await self.children.stop(self.config.runtime.executor_drain_s)
        if self.tasks:
            _, pending = await asyncio.wait(list(self.tasks.values()), timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        for bus in self.buses:
            await bus.close()
        for database in self._disposables:
            await database.dispose()
        if hasattr(self, "database"):
            await self.database.dispose()
