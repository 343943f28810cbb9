"""The ledger's wiring: a durable consumer over every event, projections applied in log
order with their tracking position, and rebuilds from the log."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text

from shared import db
from shared import events as ev
from shared import metrics
from shared.bus import Bus, Delivery
from shared.config import Config
from services.ledger.projector import PROJECTION
from services.ledger.writer import Tracked, apply_batch, write_batch

log = logging.getLogger("yokeflow.ledger")

BATCH = 256  # events per transaction at most: one commit and one position write for each run of events
MIGRATE_PATIENCE_S = 60.0  # how long a starting ledger waits for its database


class Ledger:
    def __init__(self, bus: Bus, database: db.Database, *, publish_alerts: bool = True):
        self.bus = bus
        self.db = database
        self.publish_alerts = publish_alerts
        self.stream = ""  # the log's identity, read once
        self.tracked: Tracked | None = None  # the position as this ledger wrote it last (None: read it)
        self._held = None  # while serving, a pooled connection kept between batches: no checkout and ping each
        self.serving = False

    async def _connection(self):
        if self._held is None:
            self._held = await self.db.engine.connect()
        return (await self._held.get_raw_connection()).driver_connection

    async def release(self) -> None:
        held, self._held, self.tracked = self._held, None, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()

    async def read_gap(self, first: int, last: int) -> list[tuple[int, ev.Event]]:
        out = []
        async for d in self.bus.read(start_seq=first):
            if d.seq > last:
                break
            out.append((d.seq, d.event))
        return out

    async def handle(self, delivery: Delivery) -> None:
        await self.handle_batch([delivery])

    async def handle_batch(self, deliveries: list[Delivery]) -> None:
        """Project a run of events atomically (rows and position together)."""
        if not self.stream:
            self.stream = await self.bus.stream_identity()
        # Budget alerts are not decided here: executors reserve and settle on the shared accounts
        # (shared/budget.py) and announce BudgetWarning / BudgetExhausted as they cross a level.
        batch = [(d.seq, d.event) for d in deliveries]
        if not self.serving:  # a one-off (the CLI bringing the projections up to the log): nothing held
            async with self.db.engine.connect() as conn:
                pg = (await conn.get_raw_connection()).driver_connection
                await write_batch(pg, self.db.schema, batch, self.read_gap, self.stream)
        else:
            try:
                pg = await self._connection()
                _, self.tracked = await write_batch(pg, self.db.schema, batch, self.read_gap, self.stream, self.tracked)
            except BaseException:
                await self.release()  # a connection that failed is not trusted again, nor the position known
                raise
        for d in deliveries:
            metrics.PROJECTION_LAG.record(metrics.seconds_since(d.event.occurred_at))

    async def serve(self, stop: asyncio.Event) -> None:
        # A ledger that starts while its database (re)starts waits for it a while, as it does later on.
        deadline = asyncio.get_running_loop().time() + MIGRATE_PATIENCE_S
        while True:
            try:
                await self.db.migrate()
                break
            except db.DatabaseUnavailable as exc:
                if stop.is_set() or asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("%s; trying again", exc)
                await self.db.engine.dispose()  # a connection left mid-operation is not reused
                await asyncio.sleep(1.0)
        self.serving = True
        try:
            await self.bus.consume_batches("ledger", [self.bus.events_subject], self.handle_batch, stop=stop,
                                           max_batch=BATCH, ack_wait=30.0, max_deliver=10, ack_all=True)
        finally:
            self.serving = False
            await self.close()

    async def close(self) -> None:
        """Give the held connection back to the pool."""
        held, self._held, self.tracked = self._held, None, None
        if held is not None:
            with contextlib.suppress(Exception):
                await held.close()


async def rebuild(bus: Bus, database_url: str, schema: str = db.SCHEMA) -> dict[str, int]:
    """Replay the whole log into a fresh schema, then swap it in atomically."""
    fresh = db.Database(database_url, schema=f"{schema}_rebuild")
    try:
        async with fresh.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{fresh.schema}" CASCADE'))
        await fresh.migrate()
        ledger = Ledger(bus, fresh, publish_alerts=False)
        count = 0
        batch: list[Delivery] = []

        stream = await bus.stream_identity()

        async def flush() -> None:
            async with fresh.driver_transaction() as pg:
                await apply_batch(pg, fresh.schema, [(d.seq, d.event) for d in batch], ledger.read_gap, stream)
            batch.clear()

        async for d in bus.read():
            batch.append(d)
            count += 1
            if len(batch) >= 500:
                await flush()
        await flush()
        async with fresh.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}_old" CASCADE'))
            await conn.execute(text(f'ALTER SCHEMA "{schema}" RENAME TO "{schema}_old"'))
            await conn.execute(text(f'ALTER SCHEMA "{fresh.schema}" RENAME TO "{schema}"'))
            await conn.execute(text(f'DROP SCHEMA "{schema}_old" CASCADE'))
        async with fresh.engine.connect() as conn:
            position = (await conn.execute(text(
                f'SELECT last_stream_seq FROM "{schema}".projection_tracking WHERE projection = :p'),
                {"p": PROJECTION})).scalar_one_or_none()
        return {"events": count, "position": int(position or 0)}
    finally:
        await fresh.dispose()


async def serve(bus: Bus, config: Config, stop: asyncio.Event, *, database_url: str) -> None:
    database = db.Database(database_url)
    try:
        await Ledger(bus, database).serve(stop)
    finally:
        await database.dispose()
