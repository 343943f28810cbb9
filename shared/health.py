"""Readiness check for worker services (Kubernetes exec probe):
`python -m shared.health <consumer>` exits 0 when NATS answers and the durable consumer exists."""

from __future__ import annotations

import asyncio
import sys

import nats

from shared.config import ConfigError, config_dir, load_config


async def check(url: str, stream: str, consumer: str | None) -> str | None:
    try:
        nc = await nats.connect(url, connect_timeout=3, max_reconnect_attempts=0)
    except Exception as exc:
        return f"NATS unreachable at {url}: {exc}"
    try:
        jsm = nc.jetstream()._jsm
        await jsm.stream_info(stream)
        if consumer:
            await jsm.consumer_info(stream, consumer)
        return None
    except Exception as exc:
        return f"JetStream not ready ({stream}/{consumer}): {exc}"
    finally:
        await nc.close()


if __name__ == "__main__":
    try:
        config = load_config(config_dir())
    except ConfigError as exc:
        sys.exit(f"health: {exc}")
    problem = asyncio.run(check(config.nats_url or "nats://127.0.0.1:4222", config.runtime.stream,
                                sys.argv[1] if len(sys.argv) > 1 else None))
    if problem:
        sys.exit(problem)
