"""Running a service alone: `python -m services.<name>` connects to NATS (and PostgreSQL
when the service needs it) from the environment and serves until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Awaitable, Callable

from shared import telemetry
from shared.bus import Bus, BusError
from shared.config import ConfigError, load_config
from shared.scrub import install_log_scrubber

Serve = Callable[..., Awaitable[None]]


def bus_options_from_env() -> dict:
    """Subject prefix and stream names (tests and shared clusters isolate by these), and replicas."""
    return {"prefix": os.environ.get("YOKEFLOW_SUBJECT_PREFIX", "yf"),
            "stream": os.environ.get("YOKEFLOW_STREAM", "YF_EVENTS"),
            "log_stream": os.environ.get("YOKEFLOW_LOG_STREAM", "YF_LOGS"),
            "replicas": int(os.environ.get("YOKEFLOW_STREAM_REPLICAS", "1"))}


def service_main(name: str, serve: Serve, *, needs_database: bool = False) -> None:
    logging.basicConfig(level=os.environ.get("YOKEFLOW_LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s {name} %(levelname)s %(message)s")
    install_log_scrubber()
    try:
        config = load_config(os.environ.get("YOKEFLOW_CONFIG_DIR", "."))
    except ConfigError as exc:
        sys.exit(f"{name}: {exc}")
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
        try:
            bus = await Bus.connect(config.nats_url, name=f"yokeflow-{name}", **bus_options_from_env())
        except BusError as exc:
            sys.exit(f"{name}: {exc}")
        try:
            kwargs = {"database_url": config.database_url} if needs_database else {}
            await serve(bus, config, stop, **kwargs)
        finally:
            await bus.close()

    asyncio.run(main())
