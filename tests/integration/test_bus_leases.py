"""Leases on the real JetStream key-value store: one holder at a time, renewal by
compare-and-set, and a holder that stops renewing loses the key when it expires."""

from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.integration


async def test_a_held_lease_is_refused_to_another_holder_until_released(bus):
    mine = await bus.lease_acquire("r.t.1", "exec-a", ttl=30)
    assert mine is not None
    assert await bus.lease_acquire("r.t.1", "exec-b", ttl=30) is None
    assert await bus.lease_holder("r.t.1") == "exec-a"
    assert await bus.lease_renew(mine)
    await bus.lease_release(mine)
    theirs = await bus.lease_acquire("r.t.1", "exec-b", ttl=30)
    assert theirs is not None and await bus.lease_holder("r.t.1") == "exec-b"
    assert not await bus.lease_renew(mine)  # a released lease cannot be renewed over its new holder
    await bus.lease_release(mine)  # nor released from under it
    assert await bus.lease_holder("r.t.1") == "exec-b"


async def test_an_unrenewed_lease_expires_and_its_old_holder_cannot_renew_it(bus):
    stale = await bus.lease_acquire("r.t.2", "exec-a", ttl=1)
    assert stale is not None
    for _ in range(50):  # the server removes the key once its TTL has passed
        if await bus.lease_holder("r.t.2") is None:
            break
        await asyncio.sleep(0.1)
    taken = await bus.lease_acquire("r.t.2", "exec-b", ttl=30)
    assert taken is not None
    assert not await bus.lease_renew(stale)
    assert await bus.lease_holder("r.t.2") == "exec-b"
