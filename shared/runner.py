"""Running a service alone: `python -m services.<name>` connects to NATS (and PostgreSQL
when the service needs it) from the environment and serves until SIGTERM/SIGINT; and what
every service's `serve(stop)` needs of that stop, alone or in one process with the others."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from typing import Any, Awaitable, Callable

from shared import probes, telemetry
from shared.bus import Bus, BusError
from shared.config import ConfigError, config_dir, load_config
from shared.scrub import install_log_scrubber, scrub

Serve = Callable[..., Awaitable[None]]
CONNECT_PATIENCE_S = 60.0  # how long a starting service waits for its NATS server


_gc_settled = False


async def unless_stopped(start_up: Awaitable[Any], stop: asyncio.Event) -> bool:
    """Await a service's start-up (its catch-up, which waits out a NATS outage without limit) unless
    `stop` is set first: it is then cancelled and False returned, so a SIGTERM during an outage ends
    the service at once, not at the kill after its grace period (it holds no work yet). True: done."""
    work = asyncio.ensure_future(start_up)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    if work.cancelled():
        return False
    work.result()  # a start-up that failed fails the service
    return True


def settle_gc() -> None:
    """Once per process, when its services have started: what it loaded to get there (modules,
    classes, connections: most of its objects) is moved out of the collector's scans (gc.freeze).
    A full collection of a started system walked about 100,000 objects and stopped every service
    for 55-80 ms in the middle of a benchmark run; 20 ms after this (bench/README.md). The young
    generations keep Python's thresholds: collected less often, each took longer, and a burst's
    projection lag grew with them."""
    global _gc_settled
    if _gc_settled:
        return
    _gc_settled = True
    gc.freeze()


def service_main(name: str, serve: Serve, *, needs_database: bool = False) -> None:
    try:
        config = load_config(config_dir())
    except ConfigError as exc:
        sys.exit(f"{name}: {exc}")
    logging.basicConfig(level=config.runtime.log_level.upper(),
                        format=f"%(asctime)s {name} %(levelname)s %(message)s")
    install_log_scrubber()
    if not config.nats_url:
        sys.exit(f"{name}: set YOKEFLOW_NATS_URL to the NATS server (e.g. nats://127.0.0.1:4222)")
    if needs_database and not config.database_url:
        sys.exit(f"{name}: set YOKEFLOW_DATABASE_URL to the PostgreSQL database (postgresql://user@host:port/db)")
    try:
        telemetry.setup(f"yokeflow-{name}")
    except telemetry.TelemetryError as exc:
        sys.exit(f"{name}: {exc}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A service started before its server (or while it restarts) waits for it a while, as it
        # does for a server that goes away later; refused credentials are final at once.
        deadline = loop.time() + CONNECT_PATIENCE_S
        while True:
            try:
                bus = await Bus.connect(config.nats_url, name=f"yokeflow-{name}", creds=config.nats_creds,
                                        patience_s=CONNECT_PATIENCE_S, **config.runtime.bus_options())
                break
            except BusError as exc:
                if stop.is_set() or loop.time() > deadline or "refused the credentials" in str(exc):
                    sys.exit(f"{name}: {scrub(str(exc))}")
                logging.getLogger(f"yokeflow.{name}").warning("%s; trying again", exc)
                await asyncio.sleep(1.0)
        try:
            kwargs = {"database_url": config.database_url} if needs_database else {}
            # /livez and /readyz on YOKEFLOW_HEALTH_PORT; readiness turns 503 as soon as SIGTERM drains
            async with probes.serving(name, bus, config.database_url if needs_database else None, stop,
                                      port=config.runtime.health_port, host=config.runtime.health_host):
                settle_gc()
                await serve(bus, config, stop, **kwargs)
        finally:
            await bus.close()

    asyncio.run(main())
