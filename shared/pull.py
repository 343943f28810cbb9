"""A durable pull consumer's messages as they arrive: one pull request kept open, its messages
collected by a subscription callback.

nats-py's `fetch` waits for each message of a batch through `asyncio.wait_for` (a task and a
timer per message) and asks for the next batch only when the last is taken; under a burst that
machinery cost the ledger more than projecting. Here a request for `window` messages stays open
(expiring after `expires` seconds, so a lost one is replaced); the server sends each message as
soon as it is stored, and `take` hands out what has arrived, in order, without waiting per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import nats
from nats.aio.msg import Msg

log = logging.getLogger("yokeflow.bus")

STATUS = "Status"
DESCRIPTION = "Description"
PENDING_MESSAGES = "Nats-Pending-Messages"


class Wakeup:
    """One waiter woken by a plain call from a message handler: `wait(timeout)` returns once `wake()`
    is called or `timeout` seconds pass. A bare future: `wait_for(event.wait())` (or a queue's get)
    made a task of each wait and woke its caller only after that task's callbacks ran, two more
    turns of a busy event loop on the way to every message."""

    def __init__(self) -> None:
        self._future: asyncio.Future | None = None

    def wake(self) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future = self._future = loop.create_future()
        timer = loop.call_later(max(0.0, timeout), self.wake)
        try:
            await future
        finally:
            timer.cancel()
            if self._future is future:
                self._future = None


class PullClosed(Exception):
    """The connection closed under the consumer: nothing more will come."""


class Pull:
    """Messages of the durable consumer `durable` on `stream`, in delivery order."""

    def __init__(self, nc: nats.NATS, api_prefix: str, stream: str, durable: str, *, window: int,
                 expires: float = 0.5):
        self.nc = nc
        self.next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.durable = durable
        self.window = window  # messages one request asks for
        self.expires = expires
        self.inbox = ""
        self.sub = None
        self.buffer: list[Msg] = []
        self.owed = 0  # messages the open request may still bring (0: no request open)
        self.asked_at = 0.0  # when the open request was sent (a lost one is replaced after its expiry)
        self.pause_until = 0.0  # after an error status: when to ask again
        self._arrival = Wakeup()  # what a waiting take() or close() awaits

    async def open(self) -> "Pull":
        self.inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe_direct(self.inbox, self._on_msg)  # handled as read: see nats_client
        return self

    def _on_msg(self, msg: Msg) -> None:
        if msg.data or not msg.headers or STATUS not in msg.headers:
            self.buffer.append(msg)
            self.owed -= 1
            self._arrival.wake()
            return
        status = msg.headers[STATUS]
        if status == "100":  # an idle heartbeat (not asked for): nothing to do
            return
        if status in ("404", "408"):  # the request ended (expired) with messages still owed: ask again
            left = msg.headers.get(PENDING_MESSAGES)
            self.owed = max(0, self.owed - int(left)) if left and left.isdigit() else 0
        else:  # 409 (consumer deleted, leadership change, too many waiting) or 503 (JetStream not ready)
            log.warning("%s: pull request answered %s %s; asking again shortly", self.durable, status,
                        msg.headers.get(DESCRIPTION, ""))
            self.owed = 0
            self.pause_until = asyncio.get_running_loop().time() + 0.5
        self._arrival.wake()

    async def _ask(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.owed > 0 and now - self.asked_at < self.expires + 1.0:
            return  # the open request still stands
        if now < self.pause_until:
            return
        want = self.window - len(self.buffer)
        if want <= 0:
            return
        request = {"batch": want, "expires": int(self.expires * 1e9)}
        self.owed, self.asked_at = want, now
        try:
            await self.nc.publish(self.next_subject, json.dumps(request).encode(), reply=self.inbox)
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
            raise PullClosed from None

    async def take(self, most: int, timeout: float) -> list[Msg]:
        """Up to `most` messages in delivery order: those already here at once, else the first to
        come within `timeout` seconds (none: an empty list)."""
        if self.nc.is_closed:
            raise PullClosed
        await self._ask()
        if not self.buffer:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not self.buffer:
                left = deadline - loop.time()
                if left <= 0:
                    return []
                await self._arrival.wait(min(left, self.expires))
                if self.nc.is_closed:
                    raise PullClosed
                await self._ask()  # the request expired or failed: another one, while waiting
        out, self.buffer = self.buffer[:most], self.buffer[most:]
        await self._ask()  # keep the next messages coming while these are handled
        return out

    async def close(self) -> list[Msg]:
        """Stop asking; what arrives before the open request ends (at most `expires` later) and was
        not taken is returned, for the caller to hand back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.expires + 0.2
        while self.owed > 0 and not self.nc.is_closed and loop.time() < deadline:
            await self._arrival.wait(deadline - loop.time())
        left, self.buffer = self.buffer, []
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        return left


def position(msg: Msg) -> tuple[int, int, int]:
    """A JetStream message's stream sequence, deliveries so far and messages pending after it, read
    from its reply subject (nats-py's `metadata` also builds a datetime and two dataclasses: 7 us)."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>
        return int(tokens[5]), int(tokens[4]), int(tokens[8])
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>[...]
    return int(tokens[Msg.Ack.StreamSeq]), int(tokens[Msg.Ack.NumDelivered]), int(tokens[Msg.Ack.NumPending])
