"""Commands through shared.commands, and read-your-writes: wait for the ledger to project them."""

from __future__ import annotations

from typing import Any

from shared.bus import Bus
from shared.db import Database
from shared.events import Event
from services.gateway.deps import ApiError

LEDGER = "ledger"


async def published_seq(bus: Bus, event: Event) -> int:
    """The stream sequence at which `event` landed: the latest of its aggregate, right after publishing."""
    return await bus.aggregate_seq(event)


async def settle(bus: Bus, database: Database, event: Event, *, wait: bool, timeout: float) -> dict[str, Any]:
    """Where the command landed in the log, and (with `wait`) once the projections include it."""
    seq = await published_seq(bus, event)
    if wait:
        try:
            await database.wait_for(LEDGER, seq, timeout=timeout)
        except TimeoutError:
            raise ApiError(504, f"{event.type} was recorded at sequence {seq} but the ledger has not projected it "
                                f"within {timeout:.0f}s: is the ledger service running?", None,
                           seq=seq, event_id=event.event_id) from None
    return {"seq": seq, "projected": wait}
