"""Liveness and readiness of a service run alone (`python -m services.<name>`), over HTTP on
runtime.health_port (YOKEFLOW_HEALTH_PORT; 0, the default, serves none), for Kubernetes
httpGet probes and compose healthchecks:

  GET /livez   200 while the process serves and its NATS connection is not closed
  GET /readyz  200 when NATS is connected, the stream and this service's durable consumer
               exist and, for a service with a database, PostgreSQL answers with every
               migration applied; 503 with the reasons otherwise, and 503 once draining

`python -m shared.probes [livez|readyz]` asks the local endpoint (an exec probe for images
without curl) and exits non-zero with the reason when it is not 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from shared import db
from shared.bus import Bus

# The services that consume the log, each through the durable consumer of its own name.
CONSUMERS = frozenset({"planner", "executor", "merger", "learner", "ledger"})
@dataclass
class Probes:
    bus: Bus
    consumer: str | None
    database_url: str | None
    draining: asyncio.Event
    _engine: object | None = field(default=None, repr=False)

    async def live(self) -> list[str]:
        return ["the NATS connection is closed"] if self.bus.closed else []

    async def ready(self) -> list[str]:
        if self.draining.is_set():
            return ["draining: stopping after the work in hand"]
        problems = await self.bus.readiness(self.consumer)
        if problems and not self.bus.connected:
            return problems
        if self.database_url:
            problems += await self._database()
        return problems

    async def _database(self) -> list[str]:
        if self._engine is None:
            self._engine = db.engine_for(self.database_url)
        try:
            version = await db.applied_version(self._engine)  # type: ignore[arg-type]
        except Exception as exc:
            return [f"PostgreSQL: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"[:300]]
        latest = db.MIGRATIONS[-1][0]
        return [] if version >= latest else [f"PostgreSQL: migrations at {version} of {latest}"]

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()  # type: ignore[attr-defined]


async def _answer(probes: Probes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.readline(), 5)
        while (line := await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
            pass  # headers: nothing in them matters here
        parts = request.decode("latin-1").split()
        path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
        if path == "/livez":
            problems = await probes.live()
        elif path == "/readyz":
            problems = await probes.ready()
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        body = json.dumps({"status": "ok" if not problems else "unavailable", "problems": problems}).encode()
        status = b"200 OK" if not problems else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    finally:
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()


@contextlib.asynccontextmanager
async def serving(name: str, bus: Bus, database_url: str | None, draining: asyncio.Event, *, port: int,
                  host: str = "0.0.0.0"):
    """Probes on `port` for the life of the block (nothing when it is 0)."""
    if not port:
        yield None
        return
    probes = Probes(bus, name if name in CONSUMERS else None, database_url, draining)
    server = await asyncio.start_server(lambda r, w: _answer(probes, r, w), host, port)
    try:
        yield server
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
        await probes.close()


def ask(path: str, port: int) -> str | None:
    """The local probe's answer: None when healthy, else why not."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5):
            return None
    except urllib.error.HTTPError as exc:
        return f"{path}: {exc.code} {exc.read().decode(errors='replace')[:500]}"
    except OSError as exc:
        return f"{path}: nothing answers on port {port} ({exc})"


if __name__ == "__main__":
    from shared.config import ConfigError, config_dir, load_config

    try:
        runtime = load_config(config_dir()).runtime
    except ConfigError as exc:
        sys.exit(f"probes: {exc}")
    if not runtime.health_port:
        sys.exit("YOKEFLOW_HEALTH_PORT is not set: the service serves no probes")
    problem = ask(sys.argv[1] if len(sys.argv) > 1 else "readyz", runtime.health_port)
    if problem:
        sys.exit(problem)
