"""The one bus client: JetStream streams, publishing with de-duplication and
per-aggregate optimistic concurrency, durable pull consumers, replay, agent logs."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Sequence, TypeVar
from urllib.parse import urlsplit

import msgspec
import nats
from nats.aio.msg import Msg
from nats.js import api as jsapi
from nats.js.errors import APIError, KeyWrongLastSequenceError, NotFoundError

from shared import metrics, nats_client, telemetry
from shared.events import Event, UnknownEvent, decode, delivery_failed, encode, subject_token
from shared.subjects import Subjects
from shared.payload import fit
from shared.pull import Pull, PullClosed, Wakeup, position
from shared.scrub import scrub, scrub_bytes

log = logging.getLogger("yokeflow.bus")

UNBOUNDED = 1024  # a consumer's in-flight handlers when the caller sets no limit
WRONG_LAST_SEQUENCE = 10071  # JetStream: Nats-Expected-Last-Subject-Sequence did not match
SETTING_FIXED = 10012  # JetStream: a consumer setting that cannot be updated in place (ack or deliver policy)
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"


# What a fetch raises while the server restarts: JetStream answers 503 or nobody answers at all
_SERVER_RESTARTING = (nats.js.errors.ServiceUnavailableError, nats.errors.NoRespondersError,
                      nats.errors.ConnectionReconnectingError)


# ... and what any request raises while the server is away: the same request may be made again later
_OUTAGE = (*_SERVER_RESTARTING, nats.errors.TimeoutError)


def outage(exc: BaseException) -> bool:
    """Whether `exc` says the server is away for now (restarting, or not answering in time), so the
    same request can be made again once it is back; a closed connection or a refusal is not one."""
    return isinstance(exc, _OUTAGE)


def outage_wait(outages: int) -> float:
    """How long to wait before trying again after `outages` outages in a row (READ_BACKOFF_S)."""
    return READ_BACKOFF_S[min(outages, len(READ_BACKOFF_S) - 1)]


ACK_SWEEP_S = 0.25  # how often publishes in flight are checked for an overdue ack
BIND_PATIENCE_S = 120.0  # how long a starting consumer waits for JetStream to answer
READ_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # a patient read's waits for its server, one after another
DIRECT_BATCH = 256  # messages one batched direct get asks for (a bounded read of one subject)
DIRECT_READ_WAIT_S = 5.0  # how long such a read waits for the server's next answer


RUN_FINAL = ("RunCompleted", "RunFailed")  # nothing at all is appended for a run after these
RUNS_REMEMBERED = 1024  # runs whose latest event publish_in_run keeps (one direct get saved per append)


class _PubAck(msgspec.Struct):
    """JetStream's answer to a publish: where it was stored, or why not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


_ack_decoder = msgspec.json.Decoder(_PubAck)

# The latest event of a subject as last seen in this process, by (server, stream, its creation,
# subject): (stream sequence, event). The event stream's messages are never changed or removed
# (deny_delete, deny_purge, no limits), so a remembered event is still its subject's latest
# exactly when no message on the subject follows its sequence: `Bus.last_event_at(remembered=True)`
# asks that with a next-by-subject direct get, answered by a short "not found" instead of the
# whole event (an expertise document is tens of kB, read by the learner and the executor for every
# task while only the learner's own append changed it). Shared by the process's buses: the
# services of one process see each other's appends.
_LATEST: dict[tuple[str, str, str, str], tuple[int, Event]] = {}
LATEST_KEPT = 128  # subjects remembered (an expertise domain each, per project); the oldest go first
LATEST_FOLLOW = 4  # newer messages taken one by one before reading the subject's last at once


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():  # the same error js.publish gives when no ack comes in time
        waiter.set_exception(nats.errors.TimeoutError())


class BusError(RuntimeError):
    pass


class ConcurrencyConflict(BusError):
    """Another writer appended to the aggregate first; reload and decide again."""


@dataclass
class Lease:
    """A key held in the lease bucket by one holder until it expires, unless renewed in time."""

    key: str
    holder: str
    revision: int
    ttl: float
    renewed_at: float = field(default_factory=time.monotonic)

    def fresh(self) -> bool:
        """Still ours by the local clock (a monotonic clock runs on while a process is stopped)."""
        return time.monotonic() - self.renewed_at < int(self.ttl) * 0.9  # the server keeps whole seconds


@dataclass(frozen=True)
class Published:
    seq: int
    duplicate: bool
    event: Event


@dataclass(frozen=True)
class Delivery:
    """An event as a consumer receives it, with its place in the log."""

    event: Event
    seq: int
    subject: str
    deliveries: int
    msg: Msg | None = field(default=None, compare=False, repr=False)
    left: bool = field(default=False, compare=False, repr=False)
    headers: dict[str, str] | None = field(default=None, compare=False, repr=False)  # read(): the trace it carries

    async def in_progress(self) -> None:
        if self.msg is not None:
            await self.msg.in_progress()

    def leave_unacked(self) -> None:
        """Neither ack nor nak: the message belongs to whoever holds it now (e.g. a lost lease)."""
        object.__setattr__(self, "left", True)


Handler = Callable[[Delivery], Awaitable[None]]
BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


class Bus:
    def __init__(self, nc: nats.NATS, *, prefix: str = "yf", stream: str = "YF_EVENTS",
                 log_stream: str = "YF_LOGS", replicas: int = 1):
        self.nc = nc
        self.js = nc.jetstream()
        self.prefix = prefix
        self.subjects = Subjects(prefix)
        self.stream = stream
        self.log_stream = log_stream
        self.replicas = replicas
        self._leases = None  # the lease bucket, created on first use
        self._kv_buckets: dict[str, Any] = {}
        self._runs: dict[str, tuple[int, str]] = {}  # run aggregate -> (sequence, type) of its latest event seen
        # One reply subscription for the bus's own requests: publish acks (see _stored) and batched
        # direct gets (see _direct_get), each answer routed by its reply subject.
        self._reply_prefix: str | None = None
        self._reply_lock = asyncio.Lock()
        self._reply_tokens = itertools.count(1)
        self._acks: dict[str, tuple[asyncio.Future, float]] = {}  # reply subject -> its publish's ack and deadline
        self._sweeper: asyncio.TimerHandle | None = None  # expires overdue acks (see _sweep)
        self._batches: dict[str, _Answers] = {}  # reply subject -> the answers of one direct get
        self._events_created = ""  # the event stream's creation time, once ensure_streams has run

    @classmethod
    async def connect(cls, url: str, *, name: str = "yokeflow", connect_timeout: float = 5.0,
                      identity: str | None = None, creds: str = "", patience_s: float = 10.0,
                      **kwargs: Any) -> "Bus":
        """Connect as `identity` (by default the one `name` says: `yokeflow-planner` is the planner,
        anything else the CLI). Credentials: the URL's own user and password, else a `.creds` file,
        else the generated password of an embedded server this process started or found."""
        from shared.identities import identity_of
        from shared.infra import nats_url_for

        await _check_reachable(url, connect_timeout)
        where = scrub(url)
        who = identity or identity_of(name)
        url = nats_url_for(url, who)
        options: dict[str, Any] = {"user_credentials": creds} if creds else {}
        connected = False

        async def on_error(exc: Exception) -> None:
            # The client would retry refused credentials forever: refusal before the first connection is final.
            if not connected and "authorization violation" in str(exc).lower():
                user = urlsplit(url.split(",")[0]).username or who
                raise BusError(f"NATS at {where} refused the credentials of {user!r}: put user:password in "
                               f"YOKEFLOW_NATS_URL or a creds file in YOKEFLOW_NATS_CREDS")
            await _log_nats_error(exc)

        try:
            nc = await nats_client.connect(url, name=name, connect_timeout=connect_timeout,
                                           max_reconnect_attempts=-1, allow_reconnect=True,
                                           reconnect_time_wait=0.5, error_cb=on_error, **options)
        except BusError:
            raise
        except Exception as exc:  # nats raises a handful of unrelated types here
            raise BusError(f"cannot reach NATS at {where}: {exc or type(exc).__name__}") from exc
        connected = True
        bus = cls(nc, **kwargs)
        try:
            await bus.ensure_streams(patience_s=patience_s)
        except _OUTAGE as exc:
            await bus.close()
            raise BusError(f"NATS at {where} answers but its JetStream does not ({type(exc).__name__}): is "
                           f"JetStream enabled, and the server done starting?") from None
        return bus

    @property
    def max_payload(self) -> int:
        """The largest message the server accepts (what an event must fit in)."""
        return int(self.nc.max_payload or 1024 * 1024)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.drain()

    # ------------------------------------------------------------------ health (probes, GET /api/health)
    @property
    def connected(self) -> bool:
        return self.nc.is_connected

    @property
    def closed(self) -> bool:
        return self.nc.is_closed

    async def readiness(self, consumer: str | None = None) -> list[str]:
        """Why this bus cannot serve now (empty: it can): NATS connected, the event stream and
        `consumer` (a durable consumer's name) there."""
        if not self.nc.is_connected:
            return [f"NATS is not connected (reconnecting: {self.nc.is_reconnecting})"]
        try:
            await self.js.stream_info(self.stream)
            if consumer:
                await self.js.consumer_info(self.stream, consumer)
        except Exception as exc:  # not found, timeout, no responders: all mean "not ready"
            return [f"JetStream {self.stream}/{consumer or '-'}: {type(exc).__name__}: {exc}"[:300]]
        return []

    # ------------------------------------------------------------------ subjects
    # Shorthands for shared/subjects.py, the one module that builds subjects.
    @property
    def events_subject(self) -> str:
        return self.subjects.all_events

    def subject_of(self, event: Event) -> str:
        return self.subjects.event(event.project_id, event.aggregate, event.aggregate_id, event.type)

    def aggregate_filter(self, event: Event) -> str:
        return self.subjects.aggregate(event.project_id, event.aggregate, event.aggregate_id)

    def type_filter(self, event_type: str, project: str = "*", aggregate: str = "*") -> str:
        return self.subjects.of_type(event_type, project, aggregate)

    # ------------------------------------------------------------------ streams
    async def ensure_streams(self, patience_s: float = 10.0) -> None:
        """The two streams, made or brought to this configuration; a server that is restarting (its
        JetStream not answering yet) is given `patience_s` to answer."""
        deadline = asyncio.get_running_loop().time() + patience_s
        while True:
            try:
                return await self._ensure_streams()
            except _OUTAGE as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("JetStream not answering yet (%s); trying again", type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _ensure_streams(self) -> None:
        events = jsapi.StreamConfig(
            name=self.stream, subjects=[self.events_subject],
            retention=jsapi.RetentionPolicy.LIMITS, storage=jsapi.StorageType.FILE,
            num_replicas=self.replicas, deny_delete=True, deny_purge=True,
            duplicate_window=120.0, allow_direct=True,
        )
        logs = jsapi.StreamConfig(
            name=self.log_stream, subjects=[self.subjects.all_logs],
            retention=jsapi.RetentionPolicy.LIMITS, storage=jsapi.StorageType.FILE,
            num_replicas=self.replicas, max_age=7 * 24 * 3600.0, max_bytes=1 << 30,
            allow_direct=True,
        )
        for cfg in (events, logs):
            try:
                info = await self.js.add_stream(cfg)
            except APIError as exc:
                if exc.err_code == 10058:  # stream name already in use with a different configuration
                    info = await self.js.update_stream(cfg)
                else:
                    raise
            if cfg is events:  # a stream made again under the same name is another log
                self._events_created = str(getattr(info, "created", "") or "")

    async def subjects_in(self, filter_subject: str) -> list[str]:
        """The subjects of the event stream that match `filter_subject` and hold messages (one request)."""
        info = await self.js.stream_info(self.stream, subjects_filter=filter_subject)
        return sorted((info.state.subjects or {}).keys())

    async def last_seq(self) -> int:
        info = await self.js.stream_info(self.stream)
        return info.state.last_seq

    # ------------------------------------------------------------------ publish
    async def publish(self, event: Event, *, msg_id: str | None = None,
                      expected_seq: int | None = None, timeout: float = 10.0,
                      expected_subject: str | None = None) -> Published:
        """Append one event. `msg_id` de-duplicates (a duplicate is success);
        `expected_seq` is the last stream sequence of the event's aggregate the caller saw
        (of `expected_subject` instead, when given: another aggregate the append depends on)."""
        headers: dict[str, str] = {MSG_ID: msg_id or event.event_id}
        subject = self.subject_of(event)
        traced = telemetry.tracing()  # off: no span, and none of its attributes are even gathered
        with telemetry.span(f"send {event.type}" if traced else "", _messaging(subject, event, operation="send")
                            if traced else None, kind=telemetry.SpanKind.PRODUCER) as span:
            telemetry.inject(headers)
            if expected_seq is not None:
                headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expected_seq)
                headers[EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = expected_subject or self.aggregate_filter(event)
            data = encode(event)
            clean = scrub_bytes(data)  # no secret is ever stored: every field passes the one scrubber
            if clean is not data:
                event = decode(clean)
            room = self.max_payload - sum(len(k) + len(v) + 4 for k, v in headers.items()) - 64
            if len(clean) > room and (cut := fit(event.type, clean, room)) is not None:
                log.warning("%s for %s %s was %s bytes: its longest texts were cut to fit the max payload",
                            event.type, event.aggregate, event.aggregate_id, f"{len(clean):,}")
                clean, event = cut, decode(cut)
            if len(clean) > room:  # one line naming the limit, not nats-py's MaxPayloadError
                raise BusError(f"{event.type} for {event.aggregate} {event.aggregate_id} is {len(clean):,} bytes, over "
                               f"the NATS max payload of {self.max_payload:,} bytes: make it smaller or raise "
                               f"max_payload on the server")
            try:
                ack = await self._stored(subject, clean, headers, timeout)
            except APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    raise ConcurrencyConflict(f"{event.aggregate} {event.aggregate_id} moved on: {exc.description}") from exc
                raise
            if traced:
                telemetry.set_attributes(span, {"messaging.nats.stream_sequence": ack.seq,
                                                "messaging.nats.duplicate": bool(ack.duplicate)})
        return Published(seq=ack.seq, duplicate=bool(ack.duplicate), event=event)

    async def _stored(self, subject: str, payload: bytes, headers: dict[str, str], timeout: float) -> "_PubAck":
        """js.publish without its cost per message (a new id, a wait_for and a JSON parse into a
        dataclass each): one reply subscription for every publish of this bus, acks decoded by msgspec.
        Returns once the stream has stored the message, as js.publish does."""
        reply = (self._reply_prefix or await self._reply_inbox()) + str(next(self._reply_tokens))
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._acks[reply] = (waiter, loop.time() + timeout)
        if self._sweeper is None:  # one timer for every publish in flight, not one each
            self._sweeper = loop.call_later(ACK_SWEEP_S, self._sweep, loop)
        try:
            await self.nc.publish(subject, payload, reply=reply, headers=headers)
            msg = await waiter
        finally:
            self._acks.pop(reply, None)
        if msg.headers and msg.headers.get("Status") == "503":  # nothing stores this subject
            raise nats.js.errors.NoStreamResponseError
        ack = _ack_decoder.decode(msg.data)
        if ack.error is not None:
            raise APIError.from_error(ack.error)
        return ack

    async def _reply_inbox(self) -> str:
        """The prefix of the bus's one reply subscription (each request's reply subject is the prefix
        and a number of its own), made by the first request."""
        async with self._reply_lock:
            if self._reply_prefix is None:
                prefix = self.nc.new_inbox() + "."
                # no pending limit: a direct get answers up to DIRECT_BATCH stored messages at once
                await self.nc.subscribe_direct(prefix + "*", self._on_reply)  # handled as read: see nats_client
                self._reply_prefix = prefix
        return self._reply_prefix

    def _on_reply(self, msg: Msg) -> None:
        waiting = self._acks.get(msg.subject)
        if waiting is not None:
            if not waiting[0].done():
                waiting[0].set_result(msg)
            return
        answers = self._batches.get(msg.subject)
        if answers is not None:  # none: a read that ended or gave up
            answers.put(msg)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the publishes whose ack is overdue; look again while any is in flight."""
        now = loop.time()
        for waiter, deadline in list(self._acks.values()):
            if deadline <= now:
                _expire(waiter)
        self._sweeper = loop.call_later(ACK_SWEEP_S, self._sweep, loop) if self._acks else None

    async def publish_all(self, items: Sequence[tuple[Event, str | None]]) -> list[Published]:
        """Several events sent back to back, their acks awaited together: one round trip instead of
        one each. The server stores one connection's messages to a stream in the order sent."""
        return await together([self.publish(event, msg_id=msg_id) for event, msg_id in items])

    async def publish_in_run(self, event: Event, run_id: str, *, msg_id: str | None = None,
                             after_cancel: bool = False) -> Published | None:
        """Append a run's event only while the run is open, or None: checked atomically against the
        run's own events (expected last sequence of the run aggregate), so nothing lands after its end.
        `after_cancel`: a consequence of work already done (a paid call, an agent's end, a merge
        already on the target) is still recorded after RunCancelled, never after RunCompleted/RunFailed."""
        done = await self.publish_all_in_run([(event, msg_id)], run_id, after_cancel=after_cancel)
        return done[0] if done else None

    async def publish_all_in_run(self, items: Sequence[tuple[Event, str | None]], run_id: str, *,
                                 after_cancel: bool = False,
                                 refit: Callable[[str], Sequence[tuple[Event, str | None]]] | None = None,
                                 ) -> list[Published] | None:
        """`publish_in_run` for several events in one round trip (as `publish_all`); None when the
        run closed first (those appended before it closed stay, each at most once by its Msg-Id).
        `refit(kind)`: the events to append given the type of the run's latest event, as the append
        is checked against it (e.g. without what must not land while the run is paused)."""
        run_filter = self.subjects.aggregate(items[0][0].project_id, "run", run_id)
        # The run's latest event as last seen: appending against its sequence is still checked by the
        # server, so a stale one costs a conflict and a fresh read, never an append after the run's end;
        # an ending is final, so a run seen ended is never read again.
        known = self._runs.get(run_filter)
        for _ in range(20):  # the run aggregate moves rarely (pause, resume, end): a conflict is retried
            if known is None:
                try:
                    last = await self.js.get_msg(self.stream, subject=run_filter, direct=True)
                except NotFoundError:
                    return await self.publish_all(items)  # no such run: nothing to guard
                known = (last.seq or 0, Subjects.last_token(last.subject or ""))
                self._remember_run(run_filter, known)
            seq, kind = known
            if kind in RUN_FINAL or (kind == "RunCancelled" and not after_cancel):
                return None
            try:
                return await together([
                    self.publish(event, msg_id=msg_id, expected_seq=seq, expected_subject=run_filter)
                    for event, msg_id in (refit(kind) if refit is not None else items)])
            except ConcurrencyConflict:
                known = None
                self._runs.pop(run_filter, None)
        raise BusError(f"run {run_id} kept moving while {items[0][0].type} waited to be appended")

    def run_last_known(self, project_id: str, run_id: str) -> str:
        """The type of the run's latest event as this bus last saw it appending ("" if not seen)."""
        known = self._runs.get(self.subjects.aggregate(project_id, "run", run_id))
        return known[1] if known else ""

    def _remember_run(self, run_filter: str, known: tuple[int, str]) -> None:
        if len(self._runs) >= RUNS_REMEMBERED:  # the oldest first: runs end, few are open at once
            self._runs.pop(next(iter(self._runs)))
        self._runs[run_filter] = known

    async def run_open(self, project_id: str, run_id: str) -> bool:
        """Whether the run has neither ended nor been cancelled (its latest run event says so)."""
        try:
            last = await self.js.get_msg(self.stream, subject=self.subjects.aggregate(project_id, "run", run_id),
                                         direct=True)
        except NotFoundError:
            return True
        return Subjects.last_token(last.subject or "") not in (*RUN_FINAL, "RunCancelled")

    async def aggregate_seq(self, event: Event) -> int:
        """The stream sequence of the latest event of this event's aggregate (0 if none)."""
        try:
            msg = await self.js.get_msg(self.stream, subject=self.aggregate_filter(event), direct=True)
        except NotFoundError:
            return 0
        return msg.seq or 0

    async def append(self, decide: Callable[[list[Event]], Sequence[tuple[Event, str | None]]],
                     probe: Event, *, attempts: int = 10, latest: str | None = None) -> list[Published]:
        """Optimistic write to one aggregate: read its events, decide, append the first new
        event with the sequence seen, retry on conflict. `probe` names the aggregate.
        `latest`: a subject whose last event is all `decide` needs (it gets that one event, or none),
        read by one direct get instead of replaying the aggregate's whole history; the append then
        expects that subject's sequence, not the aggregate's: only an event on it can change the
        decision (a domain's next version, not the learnings and discoveries beside it)."""

        async def write() -> list[Published]:
            if latest is not None:
                seq, last = await self.last_event_at(latest, remembered=True)
                events = [last] if last is not None else []
            else:
                history = [d async for d in self.read([self.aggregate_filter(probe)])]
                seq = history[-1].seq if history else 0
                events = [d.event for d in history]
            out: list[Published] = []
            for i, (event, msg_id) in enumerate(decide(events)):
                out.append(await self.publish(event, msg_id=msg_id, expected_seq=seq if i == 0 else None,
                                              expected_subject=latest if i == 0 else None))
                # the subject's new latest, as stored (scrubbed): the next reader here need not fetch it
                if i == 0 and latest is not None and not out[0].duplicate and self.subject_of(event) == latest:
                    if (key := self._latest_key(latest)) is not None:
                        self._remember(key, out[0].seq, out[0].event)
            return out

        return await retry_on_conflict(write, reload=lambda: asyncio.sleep(0.01), attempts=attempts,
                                       what=self.aggregate_filter(probe))

    # ------------------------------------------------------------------ read / replay
    async def read(self, filter_subjects: Iterable[str] | None = None, *, start_seq: int = 1,
                   stop_at_end: bool = True, logs: bool = False, patient: bool = False) -> AsyncIterator[Delivery]:
        """Events in log order from `start_seq`, through an ephemeral consumer.
        With `stop_at_end` it stops at the end of the log as it was when it began.
        `logs`: read the agent-log stream instead (Delivery.event is then a LogRecord).
        `patient` (a service's start-up catch-up): a read that loses its server (NATS restarting or
        not answering) waits for it and reads on after the last event it delivered, for as long as
        the connection is not closed; otherwise the error is raised. A read never ends early on an
        outage: events left unread are an error, not the end of the log."""
        stream = self.log_stream if logs else self.stream
        subjects = list(filter_subjects or [self.events_subject])
        if stop_at_end and not patient and len(subjects) == 1 and self.replicas == 1:
            # (a replicated stream's direct gets may be answered by a follower a moment behind its
            # leader; a consumer reads what the leader holds, as deciding from a read needs)
            async for d in self._direct_read(stream, subjects[0], start_seq, logs=logs):
                yield d
            return
        at, outages = start_seq, 0  # the next sequence to read; outages met in a row
        while True:
            name = ""
            try:
                cfg = jsapi.ConsumerConfig(
                    deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE if at > 1 else jsapi.DeliverPolicy.ALL,
                    opt_start_seq=at if at > 1 else None,
                    ack_policy=jsapi.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                    filter_subjects=subjects if len(subjects) > 1 else None,
                    filter_subject=subjects[0] if len(subjects) == 1 else None,
                )
                info = await self.js.add_consumer(stream, config=cfg)
                name = info.name
                sub = await self.js.pull_subscribe_bind(consumer=name, stream=stream)
                try:
                    pending = info.num_pending
                    if stop_at_end and pending == 0:
                        return
                    while True:
                        try:
                            msgs = await _fetch(sub, batch=min(max(pending, 1), 256),
                                                timeout=1.0 if stop_at_end else 5.0)
                        except asyncio.TimeoutError:  # nats-py raises its own subclass or, in fetch(batch>1), a bare one
                            if not stop_at_end:
                                continue
                            if await self._read_done(stream, name):
                                return
                            raise nats.errors.TimeoutError from None  # events are left, none came: the server went away
                        for msg in msgs:
                            meta = msg.metadata
                            pending, at = meta.num_pending, meta.sequence.stream + 1
                            body = self._readable(msg.subject, msg.data, meta.sequence.stream, logs)
                            if body is None:
                                continue
                            outages = 0
                            yield Delivery(body, meta.sequence.stream, msg.subject,  # type: ignore[arg-type]
                                           meta.num_delivered, headers=msg.headers)
                        if stop_at_end and pending == 0:
                            return
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
            except _OUTAGE as exc:
                name = ""  # its consumer goes by itself (inactive_threshold): no request to a server away
                if not patient or self.nc.is_closed:
                    raise
                wait = outage_wait(outages)
                outages += 1
                log.warning("reading %s: NATS not answering (%s); reading on from seq=%s in %gs",
                            stream, type(exc).__name__, at, wait)
                await asyncio.sleep(wait)
            finally:
                if name:
                    with contextlib.suppress(Exception):
                        await self.js.delete_consumer(stream, name)

    async def _direct_read(self, stream: str, subject: str, start_seq: int, *,
                           logs: bool) -> AsyncIterator[Delivery]:
        """`read` of one subject to the end of the log, by batched direct gets (JetStream's ADR-31,
        NATS 2.11+): the stored messages come straight back, up to DIRECT_BATCH per request. A read
        through a consumer made and deleted one on the server each time, three requests, which cost
        the two sides ~1.4 ms of CPU against ~0.5 (the learner reads twice for every attempt)."""
        at, more = start_seq, True
        while more:
            more = False
            async for msg in self._direct_get(stream, {"seq": max(at, 1), "next_by_subj": subject,
                                                       "batch": DIRECT_BATCH}):
                headers = msg.headers
                seq, where = int(headers["Nats-Sequence"]), headers["Nats-Subject"]
                at, more = seq + 1, headers.get("Nats-Num-Pending", "0") != "0"
                body = self._readable(where, msg.data, seq, logs)
                if body is not None:
                    yield Delivery(body, seq, where, 1, headers=headers)  # type: ignore[arg-type]

    async def last_events(self, subjects: Sequence[str]) -> list[Event]:
        """The latest event on each of `subjects` that has one, in log order: one request
        (a batched direct get of each subject's last message) instead of one each."""
        found: list[tuple[int, Event]] = []
        async for msg in self._direct_get(self.stream, {"multi_last": list(subjects), "batch": len(subjects)}):
            seq, where = int(msg.headers["Nats-Sequence"]), msg.headers["Nats-Subject"]
            event = self._readable(where, msg.data, seq, logs=False)
            if event is not None:
                found.append((seq, event))
        return [event for _, event in sorted(found, key=lambda f: f[0])]

    def _readable(self, subject: str, payload: bytes, seq: int, logs: bool) -> Any:
        """What a read hands out for a stored message: its event (its LogRecord on the log stream);
        None for an event written by a newer version (not this reader's to fold) or a forged one."""
        try:
            body = _log_record(subject, payload) if logs else decode(payload)
        except UnknownEvent as exc:
            log.warning("skipping seq=%s on %s: %s", seq, subject, exc)
            return None
        if not logs and self.forged(subject, body, seq, "read"):
            return None
        return body

    async def _direct_get(self, stream: str, request: dict[str, Any]) -> AsyncIterator[Msg]:
        """The stored messages one batched direct get answers (each with the Nats-Sequence and
        Nats-Subject headers), until the server's end of batch; none when nothing matches."""
        reply = (self._reply_prefix or await self._reply_inbox()) + str(next(self._reply_tokens))
        answers = _Answers()
        self._batches[reply] = answers
        try:
            await self.nc.publish(f"{self.js._prefix}.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=reply)
            while True:
                msg = await answers.next(DIRECT_READ_WAIT_S)
                status = msg.headers.get("Status") if msg.headers else None
                if status is None:
                    yield msg
                elif status in ("204", "404"):  # the end of the batch; nothing (more) matches
                    return
                elif status == "503":
                    raise nats.errors.NoRespondersError
                else:
                    raise BusError(f"direct get on {stream}: {status} {msg.headers.get('Description', '')}")
        except asyncio.TimeoutError:
            raise nats.errors.TimeoutError from None  # the server went away: an outage, as a fetch's
        finally:
            self._batches.pop(reply, None)

    async def _read_done(self, stream: str, name: str) -> bool:
        """Whether a reader's consumer has nothing left (a fetch that timed out with events pending may
        have met messages removed by the log stream's limits; a server that restarted lost the consumer)."""
        try:
            return (await self.js.consumer_info(stream, name)).num_pending == 0
        except NotFoundError:
            return False

    async def log_page(self, filter_subject: str, *, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Agent-log entries on `filter_subject` after stream sequence `after`, at most `limit`,
        and whether more follow (each: seq, kind, time, data)."""
        cfg = jsapi.ConsumerConfig(
            deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1,
            ack_policy=jsapi.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
            filter_subject=filter_subject)
        info = await self.js.add_consumer(self.log_stream, config=cfg)
        sub = await self.js.pull_subscribe_bind(consumer=info.name, stream=self.log_stream)
        entries: list[dict[str, Any]] = []
        pending = info.num_pending
        try:
            while pending and len(entries) < limit:
                try:
                    msgs = await _fetch(sub, batch=min(pending, limit - len(entries)), timeout=2.0)
                except asyncio.TimeoutError:
                    break
                for msg in msgs:
                    meta = msg.metadata
                    pending = meta.num_pending
                    try:
                        data = json.loads(msg.data)
                    except ValueError:
                        data = {"text": msg.data.decode(errors="replace")}
                    entries.append({"seq": meta.sequence.stream, "kind": Subjects.last_token(msg.subject),
                                    "time": meta.timestamp.isoformat() if meta.timestamp else None, "data": data})
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(self.log_stream, info.name)
        return entries, pending > 0

    async def last_event(self, subject: str, *, remembered: bool = False) -> Event | None:
        """The latest event on a subject (e.g. a domain's ExpertiseUpdated), or None."""
        return (await self.last_event_at(subject, remembered=remembered))[1]

    async def last_event_at(self, subject: str, *, remembered: bool = False) -> tuple[int, Event | None]:
        """The latest event on a subject and its stream sequence; (0, None) when it has none.
        `remembered`: for a subject whose events are large and read often, the event this process
        saw last is handed out again when the stream holds nothing newer on the subject (a short
        question instead of the event; see _LATEST)."""
        key = self._latest_key(subject) if remembered else None
        kept = _LATEST.get(key) if key is not None else None
        if kept is not None:
            for _ in range(LATEST_FOLLOW):
                try:
                    msg = await self.js.get_msg(self.stream, seq=kept[0] + 1, subject=subject, direct=True, next=True)
                except NotFoundError:
                    return kept  # nothing after it: still the latest
                if not msg.data:
                    break
                kept = (msg.seq or 0, decode(msg.data))
                self._remember(key, *kept)
        try:
            msg = await self.js.get_last_msg(self.stream, subject, direct=True)
        except NotFoundError:
            return 0, None
        seq, event = msg.seq or 0, decode(msg.data) if msg.data else None
        if key is not None and event is not None:
            self._remember(key, seq, event)
        return seq, event

    def _latest_key(self, subject: str) -> tuple[str, str, str, str] | None:
        """Where the subject's latest event is remembered; None when it cannot be (a replicated
        stream's direct gets may be answered by a follower a moment behind its leader)."""
        if self.replicas != 1 or not self._events_created:
            return None
        url = self.nc.connected_url
        return (url.netloc if url is not None else "", self.stream, self._events_created, subject)

    @staticmethod
    def _remember(key: tuple[str, str, str, str], seq: int, event: Event) -> None:
        if key in _LATEST and _LATEST[key][0] >= seq:
            return
        _LATEST.pop(key, None)
        _LATEST[key] = (seq, event)
        while len(_LATEST) > LATEST_KEPT:
            del _LATEST[next(iter(_LATEST))]

    # ------------------------------------------------------------------ durable consumers
    async def consume(self, durable: str, filter_subjects: Sequence[str], handler: Handler, *,
                      stop: asyncio.Event | None = None, concurrency: int = 1, ack_wait: float = 30.0,
                      max_deliver: int = 5, backoff: Sequence[float] = (0.5, 2.0, 5.0, 15.0),
                      drain_s: float = 30.0) -> None:
        """Run `handler` for each event on a durable pull consumer with explicit acks.
        Once `stop` is set nothing new is pulled; handlers in flight get `drain_s` to finish,
        then are cancelled and their messages handed back for redelivery (nak).
        `concurrency` handlers run at once (0: no limit of the consumer's own).
        Handlers heartbeat with in_progress(); a failure is retried with backoff and,
        after `max_deliver` deliveries, becomes a `DeliveryFailed` event."""
        stop = stop or asyncio.Event()
        durable = subject_token(durable)
        concurrency = concurrency or UNBOUNDED  # 0: as many as the log hands out (the scheduler bounds them)
        sub = await self._bind_durable(durable, filter_subjects, ack_wait, max_deliver, max(concurrency * 4, 16))
        running: set[asyncio.Task] = set()
        try:
            while not stop.is_set():
                free = concurrency - len(running)
                if free <= 0:
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await _fetch_available(sub, batch=free, timeout=0.5)
                except asyncio.TimeoutError:  # nats-py raises its own subclass or, in fetch(batch>1), a bare one
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.DrainTimeoutError):
                    return
                except _SERVER_RESTARTING as exc:  # the server is back but JetStream is not ready yet: wait
                    log.warning("%s: JetStream not available (%s); fetching again", durable, type(exc).__name__)
                    await asyncio.sleep(0.5)
                    continue
                for msg in msgs:
                    if concurrency == 1:
                        await self._handle(durable, msg, handler, ack_wait, max_deliver, backoff)
                    else:
                        t = asyncio.create_task(self._handle(durable, msg, handler, ack_wait, max_deliver, backoff))
                        running.add(t)
                        t.add_done_callback(running.discard)
        finally:
            if running and stop.is_set():
                log.info("%s: draining %d handler(s) for up to %gs", durable, len(running), drain_s)
                await asyncio.wait(list(running), timeout=drain_s)
            for t in list(running):
                t.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def consume_batches(self, durable: str, filter_subjects: Sequence[str], handler: BatchHandler, *,
                              stop: asyncio.Event | None = None, max_batch: int = 256, ack_wait: float = 30.0,
                              max_deliver: int = 5, backoff: Sequence[float] = (0.5, 2.0, 5.0, 15.0),
                              ack_all: bool = False) -> None:
        """Like `consume`, one handler call for every run of up to `max_batch` events already in
        the log (in order), acked after it returns. A failed batch is retried one event at a
        time, so a poison event fails alone (and, at its last delivery, becomes DeliveryFailed).
        `ack_all`: one ack for each handled run, its last message's, acknowledging all before it
        (AckPolicy.ALL; an ack message per event spared on both sides). Only for a handler that fills
        gaps itself, as the ledger does from the log: a message handed back after a failure is
        acknowledged too by the next run's ack."""
        stop = stop or asyncio.Event()
        durable = subject_token(durable)
        await self._ensure_durable(durable, filter_subjects, ack_wait, max_deliver, max(max_batch * 4, 16), ack_all)
        # one request kept open, its messages collected as they come (shared/pull.py): while a batch is
        # handled the next one arrives, and no message costs a wait of its own
        pull = await Pull(self.nc, self.js._prefix, self.stream, durable, window=max_batch * 2).open()
        try:
            while not stop.is_set():
                try:
                    msgs = await pull.take(max_batch, timeout=0.5)
                except PullClosed:
                    return
                if msgs:
                    await self._handle_batch(durable, msgs, handler, ack_wait, max_deliver, backoff, ack_all)
        finally:
            left = await pull.close()
            for m in left:  # delivered but not handled: handed back at once, not after the ack wait
                with contextlib.suppress(Exception):
                    await m.nak()
            if left:  # out of this connection's buffer before it closes (the naks are fire-and-forget)
                with contextlib.suppress(Exception):
                    await self.nc.flush(timeout=2)

    async def _handle_batch(self, consumer: str, msgs: list[Msg], handler: BatchHandler, ack_wait: float,
                            max_deliver: int, backoff: Sequence[float], ack_all: bool = False) -> None:
        metrics.record_pending(consumer, position(msgs[-1])[2])
        # One handler call per run of messages of one trace, so each span stays in its own trace.
        group: list[Msg] = []
        for msg in msgs:
            if group and _trace_of(msg) != _trace_of(group[0]):
                await self._handle_group(consumer, group, handler, ack_wait, max_deliver, backoff, ack_all)
                group = []
            group.append(msg)
        if group:
            await self._handle_group(consumer, group, handler, ack_wait, max_deliver, backoff, ack_all)

    async def _handle_group(self, consumer: str, msgs: list[Msg], handler: BatchHandler, ack_wait: float,
                            max_deliver: int, backoff: Sequence[float], ack_all: bool = False) -> None:
        try:
            batch = [Delivery(decode(m.data), (at := position(m))[0], m.subject, at[1], m) for m in msgs]
        except Exception:  # an undecodable message among them: one at a time parks just that one
            batch = None
        if batch is not None:
            beats = [asyncio.create_task(_heartbeat_all(msgs, ack_wait / 3))]  # one timer for the run, not one each
            try:
                with telemetry.span_from_headers(f"{consumer} process batch", msgs[0].headers, {
                        "messaging.consumer.group.name": consumer, "messaging.batch.message_count": len(msgs),
                        "messaging.nats.stream_sequence": batch[0].seq}):
                    await handler(batch)
            except asyncio.CancelledError:
                for m in msgs:
                    with contextlib.suppress(Exception):
                        await m.nak()
                raise
            except Exception:
                log.warning("%s: batch of %s events from seq=%s failed; handling them one at a time", consumer,
                            len(msgs), batch[0].seq, exc_info=True)
            else:
                for m in msgs[-1:] if ack_all else msgs:  # after the handler's commit; a lost ack is a redelivery the handler skips
                    with contextlib.suppress(Exception):
                        await m.ack()
                return
            finally:
                for beat in beats:
                    beat.cancel()
        for m in msgs:
            await self._handle(consumer, m, lambda d: handler([d]), ack_wait, max_deliver, backoff)

    async def _bind_durable(self, durable: str, filter_subjects: Sequence[str], ack_wait: float, max_deliver: int,
                            max_ack_pending: int):
        await self._ensure_durable(durable, filter_subjects, ack_wait, max_deliver, max_ack_pending)
        return await self.js.pull_subscribe_bind(durable=durable, stream=self.stream)

    async def _ensure_durable(self, durable: str, filter_subjects: Sequence[str], ack_wait: float, max_deliver: int,
                              max_ack_pending: int, ack_all: bool = False) -> None:
        cfg = jsapi.ConsumerConfig(
            durable_name=durable, name=durable, ack_policy=jsapi.AckPolicy.ALL if ack_all else jsapi.AckPolicy.EXPLICIT,
            ack_wait=ack_wait, max_deliver=max_deliver,
            filter_subjects=list(filter_subjects) if len(filter_subjects) > 1 else None,
            filter_subject=filter_subjects[0] if len(filter_subjects) == 1 else None,
            max_ack_pending=max_ack_pending,
        )
        # A service that binds while the server restarts (its request lost, or JetStream not ready
        # yet) waits and binds again, as its fetches do, instead of dying at start.
        deadline = asyncio.get_running_loop().time() + BIND_PATIENCE_S
        while True:
            try:
                try:
                    await self.js.add_consumer(self.stream, config=cfg)
                except APIError as exc:
                    if exc.err_code == SETTING_FIXED:
                        await self._rebind(durable, cfg)
                    elif exc.err_code != 10148:  # consumer already exists with other settings: update it
                        raise
                    else:
                        await self.js.add_consumer(self.stream, config=cfg)
                return
            except _OUTAGE as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("%s: cannot bind its consumer yet (%s); trying again", durable, type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _rebind(self, durable: str, cfg: jsapi.ConsumerConfig) -> None:
        """A durable consumer whose settings cannot change in place: where it starts is kept as it
        was; a new ack policy (the ledger's acks moved to one per batch) takes a new consumer, which
        starts after the last message the old one had acknowledged (those it held come again)."""
        info = await self.js.consumer_info(self.stream, durable)
        if info.config.ack_policy == cfg.ack_policy:
            await self.js.add_consumer(self.stream, config=dataclasses.replace(
                cfg, deliver_policy=info.config.deliver_policy, opt_start_seq=info.config.opt_start_seq,
                opt_start_time=info.config.opt_start_time))
            return
        start = (info.ack_floor.stream_seq or 0) + 1 if info.ack_floor else 1
        log.warning("%s: its consumer's ack policy becomes %s: made again from stream sequence %s", durable,
                    cfg.ack_policy, start)
        await self.js.delete_consumer(self.stream, durable)
        await self.js.add_consumer(self.stream, config=dataclasses.replace(
            cfg, deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start) if start > 1 else cfg)

    async def stream_identity(self) -> str:
        """The event stream's name and creation time: a stream deleted and made again is another log."""
        info = await self.js.stream_info(self.stream)
        created = info.created.isoformat() if hasattr(info.created, "isoformat") else str(info.created or "")
        return f"{self.stream}@{created}"[:200]

    async def _handle(self, consumer: str, msg: Msg, handler: Handler, ack_wait: float,
                      max_deliver: int, backoff: Sequence[float]) -> None:
        meta = msg.metadata
        seq, deliveries = meta.sequence.stream, meta.num_delivered
        metrics.record_pending(consumer, meta.num_pending)
        try:
            event = decode(msg.data)
        except Exception as exc:  # an undecodable message is parked, never retried forever
            log.error("undecodable message seq=%s on %s: %s", seq, msg.subject, exc)
            await msg.term()
            return
        if self.forged(msg.subject, event, seq, consumer):
            await msg.term()
            return
        delivery = Delivery(event, seq, msg.subject, deliveries, msg)
        beat = asyncio.create_task(_heartbeat(msg, ack_wait / 3))
        try:
            with telemetry.span_from_headers(f"{consumer} process {event.type}", msg.headers, {
                    **_messaging(msg.subject, event, operation="process"), "messaging.consumer.group.name": consumer,
                    "messaging.nats.stream_sequence": seq, "messaging.nats.deliveries": deliveries}):
                await handler(delivery)
        except asyncio.CancelledError:
            beat.cancel()
            with contextlib.suppress(Exception):
                await msg.nak()
            raise
        except Exception as exc:
            beat.cancel()
            log.exception("%s failed on %s seq=%s (delivery %s/%s)", consumer, event.type, seq, deliveries, max_deliver)
            if deliveries >= max_deliver:
                failure = delivery_failed(event, consumer=consumer, failed_subject=msg.subject, stream_seq=seq,
                                          deliveries=deliveries, error=f"{type(exc).__name__}: {exc}")
                await self.publish(failure, msg_id=f"{consumer}:{seq}:DeliveryFailed")
                await msg.term()
            else:
                delay = backoff[min(deliveries - 1, len(backoff) - 1)] if backoff else None
                await msg.nak(delay=delay)
            return
        beat.cancel()
        if delivery.left:
            return
        try:
            await msg.ack_sync()
        except nats.errors.TimeoutError:  # the event is handled; a redelivery finds it done (handlers are idempotent)
            log.warning("%s: ack of %s seq=%s got no answer in time; it may be delivered again", consumer,
                        event.type, seq)

    # ------------------------------------------------------------------ leases
    async def _lease_bucket(self):
        if self._leases is None:
            # per-message TTLs: each holder says how long its lease lasts; an expired key is free again
            self._leases = await self.js.create_key_value(bucket=f"{self.stream}_LEASES", history=1,
                                                          replicas=self.replicas)
        return self._leases

    async def ready_leases(self) -> None:
        """Make (or find) the lease bucket now, so the first lease is one round trip like the rest."""
        await self._lease_bucket()

    async def lease_acquire(self, key: str, holder: str, ttl: float) -> Lease | None:
        """Take `key` for `ttl` seconds if nobody holds it (create-only); None while another holds it."""
        kv = await self._lease_bucket()
        try:
            revision = await kv.create(key, holder.encode(), msg_ttl=ttl)
        except KeyWrongLastSequenceError:
            return None
        return Lease(key, holder, revision, ttl)

    async def lease_renew(self, lease: Lease) -> bool:
        """Extend the lease by its TTL if it is still ours (compare-and-set on its revision)."""
        await self._lease_bucket()
        renewed_at = time.monotonic()
        headers = {EXPECTED_LAST_SUBJECT_SEQ: str(lease.revision)}
        try:
            ack = await self.js.publish(f"$KV.{self.stream}_LEASES.{lease.key}",
                                        lease.holder.encode(), headers=headers, msg_ttl=lease.ttl, timeout=5.0)
        except APIError as exc:
            if exc.err_code in (WRONG_LAST_SEQUENCE, 10164):
                return False
            raise
        lease.revision, lease.renewed_at = ack.seq, renewed_at
        return True

    async def lease_release(self, lease: Lease) -> None:
        """Give the lease up if it is still ours; someone else's lease is left alone."""
        kv = await self._lease_bucket()
        with contextlib.suppress(KeyWrongLastSequenceError, APIError):
            await kv.delete(lease.key, last=lease.revision)

    async def pullers(self, durable: str) -> int | None:
        """How many fetches from live consumers wait on a durable consumer (0: no process of that
        service is pulling; None: it never bound)."""
        try:
            info = await self.js.consumer_info(self.stream, durable)
        except NotFoundError:
            return None
        return int(info.num_waiting or 0)

    async def lease_holder(self, key: str) -> str | None:
        kv = await self._lease_bucket()
        try:
            entry = await kv.get(key)
        except NotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    def forged(self, subject: str, event: Event, seq: int, reader: str) -> bool:
        """Whether an event's subject is not the one its own type and aggregate give. The server lets
        each identity publish only its own types' subjects, so a payload of another type on a subject
        its publisher may use is a forgery: it is reported and never acted on."""
        if subject == self.subject_of(event):
            return False
        log.error("%s: ignored a forged event at seq=%s: a %s %s/%s published on %s", reader, seq, event.type,
                  event.aggregate, event.aggregate_id, subject)
        return True

    # ------------------------------------------------------------------ agent logs
    def log_subject(self, project_id: str, task_key: str, kind: str = "*") -> str:
        return self.subjects.log(project_id, task_key, kind)

    async def log(self, project_id: str, task_key: str, kind: str, data: dict[str, Any], *,
                  stored: bool = False) -> None:
        """Agent telemetry on the log stream. `stored`: wait until the stream has it (and, as the
        server stores one connection's messages in order, every record this bus sent before it)."""
        subject = self.log_subject(project_id, task_key, kind)
        headers: dict[str, str] = {}
        telemetry.inject(headers)
        payload = scrub(json.dumps(data, default=str)).encode()
        room = self.max_payload - 1024
        if len(payload) > room:  # telemetry too: its longest texts cut, never a MaxPayloadError
            payload = fit("log", payload, room) or json.dumps({"cut": f"a {kind} record of {len(payload):,} bytes"}).encode()
        if stored:
            await self.js.publish(subject, payload, stream=self.log_stream, headers=headers or None)
        else:
            await self.nc.publish(subject, payload, headers=headers or None)

    async def open_tail(self, stream: str, subject: str, start_seq: int) -> tuple[str, Any]:
        """An ephemeral pull consumer (no acks, dropped by the server after 5 idle minutes) on
        `stream`'s `subject` from `start_seq` on: its name and a subscription to fetch from."""
        cfg = jsapi.ConsumerConfig(deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq,
                                   ack_policy=jsapi.AckPolicy.NONE, inactive_threshold=300.0, mem_storage=True,
                                   filter_subject=subject, max_waiting=1)
        info = await self.js.add_consumer(stream, config=cfg)
        return info.name, await self.js.pull_subscribe_bind(consumer=info.name, stream=stream)

    async def fetch_tail(self, sub: Any, *, batch: int, timeout: float) -> list[Msg] | None:
        """A tail's next messages (none after `timeout` seconds without any); None when the server
        dropped its consumer (restart, inactivity): open it again from the next sequence."""
        try:
            return await sub.fetch(batch=batch, timeout=timeout)
        except asyncio.TimeoutError:  # nats-py raises its own subclass, or a bare one for batch > 1
            return []
        except NotFoundError:
            return None

    async def close_tail(self, stream: str, name: str) -> None:
        with contextlib.suppress(Exception):  # gone already (server restart, inactivity) is fine
            await self.js.delete_consumer(stream, name)

    async def stream_last_seq(self, stream: str) -> int:
        return (await self.js.stream_info(stream)).state.last_seq

    async def subscribe_live(self, subject: str, callback: Callable[[Msg], Awaitable[None]]):
        """Core NATS subscription for live views (gateway, `events tail`); not durable."""
        return await self.nc.subscribe(subject, cb=callback)

    async def follow(self, subject: str, callback: Callable[[Event, int], Awaitable[None]], *,
                     heartbeat_s: float = 1.0) -> "Follower":
        """`callback(event, seq)` for each event on `subject` the stream stores from now on, as it is
        stored. Unlike a live subscription, a publish the stream refused never arrives, so what
        arrives needs no reading back. See `Follower`."""
        return await Follower(self, subject, callback, heartbeat_s).start()

    # ------------------------------------------------------------------ key-value (compare-and-set)
    async def _kv(self, bucket: str):
        """The bucket `<stream>_<bucket>` (one per event stream, so tests stay isolated), made on first use."""
        name = f"{self.stream}_{bucket}"
        cache = self._kv_buckets
        if name not in cache:
            try:
                cache[name] = await self.js.key_value(name)
            except (NotFoundError, nats.js.errors.BucketNotFoundError):
                cache[name] = await self.js.create_key_value(
                    bucket=name, history=1, storage=jsapi.StorageType.FILE, replicas=self.replicas)
        return cache[name]

    async def kv_get(self, bucket: str, key: str) -> tuple[bytes | None, int]:
        """A key's value and revision; (None, 0) when it has none."""
        kv = await self._kv(bucket)
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:  # also KeyDeletedError
            return None, 0
        return entry.value, entry.revision or 0

    async def kv_swap(self, bucket: str, key: str, value: bytes, revision: int) -> int | None:
        """Write `value` only if the key is still at `revision` (0: only if it has none yet).
        The new revision, or None when another writer got there first (read again, decide again)."""
        kv = await self._kv(bucket)
        try:
            if revision == 0:
                return await kv.create(key, value)
            return await kv.update(key, value, last=revision)
        except (nats.js.errors.KeyWrongLastSequenceError, APIError) as exc:
            if isinstance(exc, nats.js.errors.KeyWrongLastSequenceError) or exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise


T = TypeVar("T")


class _Answers:
    """The answers to one direct get, as the reply subscription reads them."""

    def __init__(self) -> None:
        self.got: collections.deque[Msg] = collections.deque()
        self.arrival = Wakeup()

    def put(self, msg: Msg) -> None:
        self.got.append(msg)
        self.arrival.wake()

    async def next(self, timeout: float) -> Msg:
        """The next answer; asyncio.TimeoutError when none comes within `timeout` seconds."""
        if not self.got:
            await self.arrival.wait(timeout)
            if not self.got:
                raise asyncio.TimeoutError
        return self.got.popleft()


async def together(calls: list[Awaitable[T]]) -> list[T]:
    """`asyncio.gather` of the calls, except that one call is awaited as it is: gather makes each a
    task and resumes the caller only after their callbacks ran, two more turns of a busy event loop
    on every single append (most appends are one event)."""
    if len(calls) == 1:
        return [await calls[0]]
    return list(await asyncio.gather(*calls))


async def retry_on_conflict(write: Callable[[], Awaitable[T]], *, reload: Callable[[], Awaitable[Any]],
                            attempts: int, what: str) -> T:
    """The one optimistic-concurrency loop: try the write (which publishes with an expected
    sequence); when another writer got there first, reload what the decision rested on and
    decide again. Every writer that must not overwrite another's decision goes through it."""
    for _ in range(attempts):
        try:
            return await write()
        except ConcurrencyConflict:
            log.info("%s: concurrent write, reloading", what)
            await reload()
    raise ConcurrencyConflict(f"gave up after {attempts} conflicting writes to {what}")


def _messaging(subject: str, event: Event, *, operation: str) -> dict[str, Any]:
    """OpenTelemetry messaging attributes of an event on its subject, and the run/task it concerns."""
    return {"messaging.system": "nats", "messaging.operation.type": operation, "messaging.destination.name": subject,
            "messaging.message.id": event.event_id, "yf.event": event.type, "yf.project_id": event.project_id,
            "yf.run_id": getattr(event, "run_id", None), "yf.task_id": getattr(event, "task_id", None)}


@dataclass(frozen=True)
class LogRecord:
    """One agent-log message: its kind (the subject's last token) and its JSON data."""

    kind: str
    data: dict[str, Any]


def _log_record(subject: str, payload: bytes) -> LogRecord:
    try:
        data = json.loads(payload)
    except ValueError:
        data = {}
    return LogRecord(Subjects.last_token(subject), data if isinstance(data, dict) else {})


async def _fetch(sub, *, batch: int, timeout: float) -> list[Msg]:
    """sub.fetch, honouring a cancellation it may swallow: nats-py waits through asyncio.wait_for in
    a task of its own, and a message arriving as the caller is cancelled wins over the cancel."""
    try:
        return await sub.fetch(batch=batch, timeout=timeout)
    finally:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError


def _trace_of(msg: Msg) -> str:
    """The trace id of a message's traceparent (`00-<trace>-<span>-<flags>`), or ""."""
    parent = (msg.headers or {}).get("traceparent", "")
    return parent.split("-")[1] if parent.count("-") >= 2 else ""


async def _fetch_available(sub, *, batch: int, timeout: float) -> list[Msg]:
    """Up to `batch` messages, returning as soon as one is there: a lingering fetch of several
    waits out its whole timeout for the batch to fill, which delayed every dispatch by ~0.5 s."""
    msgs = await _fetch(sub, batch=1, timeout=timeout)
    more = min(batch - 1, msgs[-1].metadata.num_pending if msgs else 0)
    if more > 0:  # already in the log: a no-wait pull takes them at once
        with contextlib.suppress(asyncio.TimeoutError):
            msgs += await _fetch(sub, batch=more, timeout=0.05)
    return msgs


async def _check_reachable(url: str, timeout: float) -> None:
    """Fail fast on a server that is not there: the client itself would retry forever."""
    from urllib.parse import urlparse

    for server in url.split(","):
        parsed = urlparse(server.strip() if "://" in server else f"nats://{server.strip()}")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port or 4222), timeout)
            writer.close()
            return
        except (OSError, asyncio.TimeoutError):
            continue
    raise BusError(f"cannot reach NATS at {scrub(url)}: connection refused or timed out")


async def _log_nats_error(exc: Exception) -> None:
    log.warning("NATS: %s", exc or type(exc).__name__)


async def _heartbeat_all(msgs: list[Msg], every: float) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        while True:
            await asyncio.sleep(every)
            for msg in msgs:
                await msg.in_progress()


async def _heartbeat(msg: Msg, every: float) -> None:
    with contextlib.suppress(asyncio.CancelledError, Exception):
        while True:
            await asyncio.sleep(every)
            await msg.in_progress()


class Follower:
    """The events on one subject as the stream stores them: an ephemeral push consumer (no acks,
    in memory, heartbeats when idle), made again from the last sequence handed on when its
    heartbeats stop (a server restart, a consumer removed), so nothing stored meanwhile is missed
    and nothing is handed on twice."""

    def __init__(self, bus: Bus, subject: str, callback: Callable[[Event, int], Awaitable[None]], heartbeat_s: float):
        self.bus, self.subject, self.callback, self.heartbeat_s = bus, subject, callback, heartbeat_s
        self.last = 0  # the stream sequence handed on last (or the stream's end when it started)
        self.name = ""
        self.remade = 0  # how many times the consumer was made again
        self._sub = None
        self._heard = 0.0
        self._watch: asyncio.Task | None = None

    async def start(self) -> "Follower":
        self.last = await self.bus.stream_last_seq(self.bus.stream)
        await self._make()
        self._watch = asyncio.create_task(self._watchdog())
        return self

    async def _make(self) -> None:
        inbox = self.bus.nc.new_inbox()
        sub = await self.bus.nc.subscribe(inbox, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1)
        try:
            info = await self.bus.js.add_consumer(self.bus.stream, config=jsapi.ConsumerConfig(
                deliver_subject=inbox, deliver_policy=jsapi.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.last + 1, ack_policy=jsapi.AckPolicy.NONE, filter_subject=self.subject,
                mem_storage=True, idle_heartbeat=self.heartbeat_s, inactive_threshold=max(30.0, self.heartbeat_s * 10)))
        except BaseException:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            raise
        self._sub, self.name = sub, info.name
        self._heard = asyncio.get_running_loop().time()

    async def _on_msg(self, msg: Msg) -> None:
        self._heard = asyncio.get_running_loop().time()
        if not msg.data and msg.headers and "Status" in msg.headers:
            return  # an idle heartbeat
        try:
            seq = msg.metadata.sequence.stream
        except Exception:
            return
        if seq <= self.last:
            return  # handed on before the consumer was made again
        self.last = seq
        try:
            event = decode(msg.data)
        except Exception as exc:
            log.error("follow %s: undecodable message seq=%s: %s", self.subject, seq, exc)
            return
        if self.bus.forged(msg.subject, event, seq, f"follow {self.subject}"):
            return
        try:
            await self.callback(event, seq)
        except Exception:
            log.exception("follow %s: the handler failed on %s seq=%s", self.subject, event.type, seq)

    async def _watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.heartbeat_s)
            if loop.time() - self._heard < self.heartbeat_s * 3:
                continue
            log.warning("follow %s: no heartbeat for %.1fs; making its consumer again from seq %s",
                        self.subject, loop.time() - self._heard, self.last + 1)
            await self._drop()
            try:
                await self._make()
                self.remade += 1
            except Exception as exc:  # NATS still away: the next beat tries again
                log.warning("follow %s: consumer not made again yet: %s", self.subject, exc)

    async def _drop(self) -> None:
        sub, name, self._sub, self.name = self._sub, self.name, None, ""
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if name:
            await self.bus.close_tail(self.bus.stream, name)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self._drop()
