"""The event bus against a real NATS JetStream server."""

from __future__ import annotations

import asyncio

import pytest

from shared.bus import ConcurrencyConflict
from shared.events import (DeliveryFailed, ExpertiseUpdated, LearningExtracted, ProjectCreated, RunCancelled,
                           RunCompleted, RunFailed, TaskReady, TaskCompleted, task_aggregate_id)

pytestmark = pytest.mark.integration


def ready(task="1", attempt=1, **kw):
    return TaskReady(project_id="p", aggregate_id=task_aggregate_id("r", task), run_id="r", task_id=task,
                     attempt=attempt, **kw)


def calls_to(monkeypatch, obj, name: str) -> list[tuple]:
    """The positional arguments of each call of the coroutine method `obj.name` from now on."""
    calls: list[tuple] = []
    real = getattr(obj, name)

    async def counted(*args, **kwargs):
        calls.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(obj, name, counted)
    return calls


async def all_events(bus):
    return [d async for d in bus.read()]


async def test_duplicate_publish_is_deduplicated(bus):
    e = ready()
    first = await bus.publish(e, msg_id="r:1:1:TaskReady")
    again = await bus.publish(ready(), msg_id="r:1:1:TaskReady")
    assert not first.duplicate and again.duplicate
    assert again.seq == first.seq
    assert [d.event.event_id for d in await all_events(bus)] == [e.event_id]


async def test_subject_names_type_and_aggregate(bus):
    await bus.publish(ready(task="7"))
    [d] = await all_events(bus)
    assert d.subject == f"{bus.prefix}.evt.p.task.r-7.TaskReady"
    assert isinstance(d.event, TaskReady) and d.event.task_id == "7"


async def test_concurrent_write_to_same_aggregate_is_rejected_then_retried(bus):
    probe = ready()
    seq = await bus.aggregate_seq(probe)
    assert seq == 0
    await bus.publish(ready(), expected_seq=0)
    # A second writer that also saw "no events yet" loses.
    with pytest.raises(ConcurrencyConflict):
        await bus.publish(ready(attempt=2), expected_seq=0)
    # Other aggregates are independent.
    await bus.publish(ready(task="2"), expected_seq=0)

    # append() reloads and decides again: two racing writers both land, in order, each once.
    def decide_next(history):
        attempts = [e.attempt for e in history if isinstance(e, TaskReady)]
        nxt = max(attempts) + 1
        return [(ready(attempt=nxt), f"r:1:{nxt}:TaskReady")]

    await asyncio.gather(bus.append(decide_next, probe), bus.append(decide_next, probe))
    attempts = [d.event.attempt for d in await all_events(bus) if d.event.task_id == "1"]
    assert attempts == [1, 2, 3]



async def test_an_append_on_a_subjects_latest_event_minds_only_that_subject(bus, monkeypatch):
    """A domain's next version is decided on its latest ExpertiseUpdated alone (`latest`). The
    learnings and discoveries published beside it on the same aggregate cannot change that decision,
    yet each one refused the append and cost a read and a decision again; only another version may."""
    def version(n: int) -> ExpertiseUpdated:
        return ExpertiseUpdated(project_id="p", aggregate_id="api", domain="api", version=n)

    probe = version(0)
    await bus.publish(version(1))
    landing, reads = [], []

    def read_then_another_lands(real):
        async def read(*args, **kwargs):  # the whole latest event, or the question whether one followed it
            try:
                return await real(*args, **kwargs)
            finally:
                if real.__name__ == "get_last_msg" or kwargs.get("next"):  # (get_last_msg calls get_msg)
                    reads.append(real.__name__)
                    if landing:
                        await bus.publish(landing.pop(0))
        return read

    monkeypatch.setattr(bus.js, "get_last_msg", read_then_another_lands(bus.js.get_last_msg))
    monkeypatch.setattr(bus.js, "get_msg", read_then_another_lands(bus.js.get_msg))

    def decide(events):
        (last,) = events
        return [(version(last.version + 1), None)]

    landing.append(LearningExtracted(project_id="p", aggregate_id="api", domain="api", task_id="t", attempt=1))
    await bus.append(decide, probe, latest=bus.subject_of(probe))
    assert len(reads) == 1  # the learning beside it did not refuse the append

    reads.clear()
    landing.append(version(3))  # another writer's version lands between the read and the append
    await bus.append(decide, probe, latest=bus.subject_of(probe))
    # refused once, read and decided again on top of it. The version this bus wrote was remembered:
    # the first read asked whether one followed it (none yet); the second found version 3 and asked
    # again after it (none); the whole latest event was never fetched
    assert reads == ["get_msg", "get_msg", "get_msg"]
    versions = [d.event.version for d in await all_events(bus) if isinstance(d.event, ExpertiseUpdated)]
    assert versions == [1, 2, 3, 4]


async def test_a_subjects_latest_event_seen_in_this_process_is_asked_about_not_read_again(bus, nats_server, unique,
                                                                                        monkeypatch):
    """An expertise document is tens of kB, and the learner and the executor read its latest version
    for every task while only the learner's own append changed it. A version this process wrote or
    read is handed out again when no message on its subject follows it (a short "not found"), by any
    bus of the process; anything newer is read."""
    from shared.bus import Bus

    other = await Bus.connect(nats_server.url, identity="admin", prefix=f"t{unique}", stream=f"EV_{unique}",
                              log_stream=f"LOG_{unique}")
    try:
        def version(n: int, **kw) -> ExpertiseUpdated:
            return ExpertiseUpdated(project_id="p", aggregate_id="api", domain="api", version=n, **kw)

        subject = bus.subject_of(version(0))
        whole = calls_to(monkeypatch, other.js, "get_last_msg")

        assert await other.last_event_at(subject, remembered=True) == (0, None)
        [written] = await bus.append(lambda events: [(version(1), None)], version(0), latest=subject)
        whole.clear()
        for _ in range(3):
            seq, event = await other.last_event_at(subject, remembered=True)
            assert (seq, event) == (written.seq, written.event) and event.version == 1
        assert whole == []  # asked three times, read not once

        # a version published without append (another process's, say) is found and read
        newer = await bus.publish(version(2))
        assert await other.last_event_at(subject, remembered=True) == (newer.seq, newer.event)
        assert await other.last_event_at(subject, remembered=True) == (newer.seq, newer.event)

        # what is remembered is what the stream holds: the scrubbed event, never the secret
        secret = "sk-ant-" + "x" * 30
        [scrubbed] = await bus.append(lambda events: [(version(3, source=f"key {secret}"), None)], version(0),
                                      latest=subject)
        seq, event = await other.last_event_at(subject, remembered=True)
        assert seq == scrubbed.seq and secret not in event.source and "[REDACTED]" in event.source
        assert event == (await other.last_event_at(subject))[1]  # a plain read: the same event
    finally:
        await other.close()

async def test_redelivered_event_is_applied_once(bus):
    applied: list[int] = []
    seen: set[str] = set()
    calls = 0
    stop = asyncio.Event()

    async def handler(d):
        nonlocal calls
        calls += 1
        if d.event.event_id not in seen:  # idempotent by event id
            seen.add(d.event.event_id)
            applied.append(d.seq)
        if calls == 1:
            raise RuntimeError("crash after applying, before ack")
        stop.set()

    await bus.publish(ready())
    await asyncio.wait_for(bus.consume("c1", [bus.events_subject], handler, stop=stop, backoff=[0.1]), 20)
    assert calls == 2 and len(applied) == 1


async def test_consumer_that_dies_before_ack_gets_the_message_again(bus, nats_server):
    from shared.bus import Bus

    await bus.publish(ready())
    other = await Bus.connect(nats_server.url, prefix=bus.prefix, stream=bus.stream, log_stream=bus.log_stream)
    got_first = asyncio.Event()

    async def dies(d):
        got_first.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(other.consume("worker", [bus.events_subject], dies, ack_wait=1.0))
    await asyncio.wait_for(got_first.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await other.nc.close()  # the process is gone: no ack, no nak ever reaches the server

    received = []
    stop = asyncio.Event()

    async def survives(d):
        received.append(d)
        stop.set()

    await asyncio.wait_for(bus.consume("worker", [bus.events_subject], survives, stop=stop, ack_wait=1.0), 20)
    assert received[0].event.type == "TaskReady"


async def test_exhausted_message_becomes_visible_failure(bus):
    stop = asyncio.Event()
    calls = 0

    async def always_fails(d):
        nonlocal calls
        if isinstance(d.event, DeliveryFailed):
            stop.set()
            return
        calls += 1
        raise ValueError("broken handler")

    await bus.publish(ProjectCreated(project_id="p", aggregate_id="p", name="x", repo_path="/r"))
    await asyncio.wait_for(
        bus.consume("fragile", [bus.events_subject], always_fails, stop=stop, max_deliver=3, backoff=[0.05]), 20)
    failures = [d.event for d in await all_events(bus) if isinstance(d.event, DeliveryFailed)]
    assert calls == 3
    assert len(failures) == 1 and failures[0].consumer == "fragile" and "broken handler" in failures[0].error
    assert failures[0].event_type == "ProjectCreated"


async def test_read_filters_and_starts_at_sequence(bus):
    for t in ("1", "2", "3"):
        await bus.publish(ready(task=t))
    await bus.publish(TaskCompleted(project_id="p", aggregate_id=task_aggregate_id("r", "2"), run_id="r", task_id="2"))
    only_completed = [d.event.type async for d in bus.read([bus.type_filter("TaskCompleted")])]
    assert only_completed == ["TaskCompleted"]
    tail = [d.seq async for d in bus.read(start_seq=3)]
    assert tail == [3, 4]



async def test_a_bounded_read_of_one_subject_needs_no_consumer_and_reads_past_a_batch(bus, monkeypatch):
    """A read of one subject to the end of the log (the learner reads an attempt's log and its
    discoveries that way twice per attempt) comes by batched direct gets: no consumer is made and
    deleted on the server. A read longer than one batch goes on where the batch ended; every event
    comes once, in log order, with its own sequence and subject; a log read gets the records."""
    from shared import bus as bus_module

    for i in range(bus_module.DIRECT_BATCH + 44):
        await bus.publish(ready(task="1", attempt=i + 1))
        if i % 100 == 0:
            await bus.publish(ready(task="2", attempt=i + 1))
    for kind in ("tool_call", "tool_result", "attempt_end"):
        await bus.log("p", task_aggregate_id("r", "1"), kind, {"attempt": 1, "kind": kind})

    async def no_consumer(*args, **kwargs):
        raise AssertionError("a bounded read of one subject made a consumer")

    monkeypatch.setattr(bus.js, "add_consumer", no_consumer)
    one = [d async for d in bus.read([bus.aggregate_filter(ready(task="1"))])]
    assert [d.event.attempt for d in one] == list(range(1, bus_module.DIRECT_BATCH + 45))
    assert [d.seq for d in one] == sorted({d.seq for d in one})
    assert {d.subject for d in one} == {bus.subject_of(ready(task="1"))} and {d.deliveries for d in one} == {1}
    two = [d async for d in bus.read([bus.aggregate_filter(ready(task="2"))], start_seq=one[50].seq)]
    assert [d.event.attempt for d in two] == [101, 201]
    records = [d.event async for d in bus.read([bus.log_subject("p", task_aggregate_id("r", "1"))], logs=True)]
    assert [(r.kind, r.data["kind"]) for r in records] == [(k, k) for k in ("tool_call", "tool_result", "attempt_end")]
    assert [d async for d in bus.read([bus.aggregate_filter(ready(task="3"))])] == []

    # a replicated stream's direct gets may come from a follower a moment behind: read as before
    monkeypatch.undo()
    made = calls_to(monkeypatch, bus.js, "add_consumer")
    monkeypatch.setattr(bus, "replicas", 3)
    again = [d async for d in bus.read([bus.aggregate_filter(ready(task="1"))])]
    assert [d.seq for d in again] == [d.seq for d in one] and len(made) == 1


async def test_the_last_events_of_several_subjects_come_in_one_request_in_log_order(bus, monkeypatch):
    """An executor checks a run's three endings before every attempt: one batched direct get of
    each subject's last message, not a request each."""
    def ending(kind, run="r", **kw):
        return kind(project_id="p", aggregate_id=run, run_id=run, **kw)

    endings = [bus.subject_of(ending(kind)) for kind in (RunCompleted, RunFailed, RunCancelled)]
    assert await bus.last_events(endings) == []
    await bus.publish(ending(RunCancelled, reason="first"))
    await bus.publish(ending(RunCancelled, run="other", reason="another run"))
    await bus.publish(ending(RunFailed, reason="after the cancel"))
    await bus.publish(ending(RunCancelled, reason="again"))
    requests = calls_to(monkeypatch, bus.nc, "publish")
    found = await bus.last_events(endings)
    assert [(type(e).__name__, e.reason) for e in found] == [("RunFailed", "after the cancel"), ("RunCancelled", "again")]
    assert len(requests) == 1 and ".DIRECT.GET." in requests[0][0]

async def test_consumer_survives_a_bare_timeout_from_fetch(bus, monkeypatch):
    """nats-py's fetch(batch>1) can raise a plain asyncio.TimeoutError; a consumer must not die of it."""
    real_bind = bus.js.pull_subscribe_bind

    async def flaky_bind(*args, **kwargs):
        sub = await real_bind(*args, **kwargs)
        real_fetch = sub.fetch
        calls = 0

        async def fetch(*a, **kw):
            nonlocal calls
            calls += 1
            if calls <= 2:
                raise asyncio.TimeoutError()
            return await real_fetch(*a, **kw)

        sub.fetch = fetch
        return sub

    monkeypatch.setattr(bus.js, "pull_subscribe_bind", flaky_bind)
    await bus.publish(ready())
    stop = asyncio.Event()
    got = []

    async def handler(d):
        got.append(d.event.type)
        stop.set()

    await asyncio.wait_for(bus.consume("sturdy", [bus.events_subject], handler, stop=stop, concurrency=4), 20)
    assert got == ["TaskReady"]


async def test_a_live_read_stops_when_cancelled_even_if_fetch_swallows_the_cancel(bus, monkeypatch):
    """nats-py can lose a cancellation that races a message's arrival; a follower must still stop."""
    real_bind = bus.js.pull_subscribe_bind

    async def swallowing_bind(*args, **kwargs):
        sub = await real_bind(*args, **kwargs)

        async def fetch(*a, **kw):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass  # as when wait_for's inner future completes in the same turn as the cancel
            raise asyncio.TimeoutError()

        sub.fetch = fetch
        return sub

    monkeypatch.setattr(bus.js, "pull_subscribe_bind", swallowing_bind)

    async def follow():
        async for _ in bus.read(stop_at_end=False):
            pass

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done and task.cancelled()


async def test_a_consumer_survives_an_ack_that_gets_no_answer(bus, monkeypatch):
    """An unanswered ack (a stalled loop, a slow server) must not stop the service: the event was
    handled, and a redelivery of it finds it done."""
    import nats.errors

    real_bind = bus.js.pull_subscribe_bind

    async def slow_ack_bind(*args, **kwargs):
        sub = await real_bind(*args, **kwargs)
        real_fetch = sub.fetch
        unanswered = [True]

        async def fetch(*a, **kw):
            msgs = await real_fetch(*a, **kw)
            for msg in msgs:
                if unanswered.pop() if unanswered else False:
                    async def no_answer(*_a, **_kw):
                        raise nats.errors.TimeoutError
                    msg.ack_sync = no_answer
            return msgs

        sub.fetch = fetch
        return sub

    monkeypatch.setattr(bus.js, "pull_subscribe_bind", slow_ack_bind)
    await bus.publish(ready("t1"))
    await bus.publish(ready("t2"))
    stop = asyncio.Event()
    got = []

    async def handler(d):
        got.append(d.event.task_id)
        if "t2" in got:
            stop.set()

    await asyncio.wait_for(bus.consume("patient", [bus.events_subject], handler, stop=stop), 20)
    assert got[0] == "t1" and "t2" in got


async def test_publish_all_stores_events_in_the_order_given_and_deduplicates(bus):
    events = [ready(task=str(i)) for i in range(20)]
    published = await bus.publish_all([(e, f"r:{e.task_id}:1:TaskReady") for e in events])
    assert [p.seq for p in published] == sorted(p.seq for p in published)
    again = await bus.publish_all([(ready(task="3"), "r:3:1:TaskReady")])
    assert again[0].duplicate and again[0].seq == published[3].seq
    assert [d.event.task_id for d in await all_events(bus)] == [str(i) for i in range(20)]


async def test_a_run_scoped_append_never_lands_after_the_run_ended_elsewhere(bus, nats_server):
    from shared.bus import Bus
    from shared.events import AgentStarted, RunCancelled, RunCompleted, RunStarted

    other = await Bus.connect(nats_server.url, identity="admin", prefix=bus.prefix, stream=bus.stream,
                              log_stream=bus.log_stream)
    try:
        await other.publish(RunStarted(project_id="p", aggregate_id="r", run_id="r", plan={"name": "p"},
                                       repo_path="/x"))
        started = lambda task: AgentStarted(project_id="p", aggregate_id=task_aggregate_id("r", task), run_id="r",
                                            task_id=task, attempt=1)
        assert await bus.publish_in_run(started("1"), "r") is not None  # this bus now knows the run as open
        await other.publish(RunCancelled(project_id="p", aggregate_id="r", run_id="r"))  # behind its back
        assert await bus.publish_in_run(started("2"), "r") is None
        assert await bus.publish_in_run(started("3"), "r", after_cancel=True) is not None
        await other.publish(RunCompleted(project_id="p", aggregate_id="r", run_id="r"))
        assert await bus.publish_in_run(started("4"), "r", after_cancel=True) is None
        assert await bus.publish_in_run(started("5"), "r", after_cancel=True) is None  # known ended: no read
    finally:
        await other.close()
    types = [(d.event.type, getattr(d.event, "task_id", "")) for d in await all_events(bus)]
    assert types == [("RunStarted", ""), ("AgentStarted", "1"), ("RunCancelled", ""), ("AgentStarted", "3"),
                     ("RunCompleted", "")]


async def test_a_publish_returns_once_stored_and_fails_at_once_when_nothing_stores_it(bus):
    import nats.js.errors

    published = await asyncio.gather(*(bus.publish(ready(task=str(i))) for i in range(50)))
    assert sorted(p.seq for p in published) == list(range(1, 51))  # each acked with its own place in the log
    assert len(await all_events(bus)) == 50
    await bus.js.delete_stream(bus.stream)
    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await asyncio.wait_for(bus.publish(ready(task="late")), timeout=5)


async def test_batches_come_once_each_in_log_order_and_a_stopped_consumer_hands_back_what_it_held(bus):
    """consume_batches keeps a pull request open, so events arrive while a batch is handled; those
    delivered but not yet handled when it stops go back at once: the next consumer gets them well
    inside the ack wait (30 s), and nothing is handled twice. (A handed-back event may come after
    newer ones that the server had not delivered yet: the order holds within one consumer's run.)"""
    published = await bus.publish_all([(ready(task=str(i)), None) for i in range(300)])
    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    first: list[list[int]] = []
    second: list[int] = []

    async def slow_then_stop(batch):
        first.append([d.seq for d in batch])
        first_stop.set()
        await asyncio.sleep(0.3)  # more arrive meanwhile, into the consumer's hands

    async def collect(batch):
        second.extend(d.seq for d in batch)
        if len(second) + sum(map(len, first)) >= len(published):
            second_stop.set()

    await asyncio.wait_for(bus.consume_batches("batched", [bus.events_subject], slow_then_stop, stop=first_stop,
                                               max_batch=50, ack_wait=30.0), 20)
    await asyncio.wait_for(bus.consume_batches("batched", [bus.events_subject], collect, stop=second_stop,
                                               max_batch=50, ack_wait=30.0), 15)
    handled = [s for batch in first for s in batch] + second
    assert len(first) == 1 and len(first[0]) <= 50 and first[0] == sorted(first[0])
    assert sorted(handled) == [p.seq for p in published] and len(set(handled)) == len(handled)  # each once


async def test_a_pull_waits_out_expired_requests_and_takes_what_comes_after_them(bus, monkeypatch):
    """The open request expires (the server answers 408) while nothing comes: the waiting take asks
    again at once and still hands on an event stored later; an empty wait ends at its timeout."""
    from shared.pull import Pull

    await bus._ensure_durable("pulled", [bus.events_subject], 30.0, 5, 64, False)
    pull = await Pull(bus.nc, bus.js._prefix, bus.stream, "pulled", window=8, expires=0.2).open()
    sent = calls_to(monkeypatch, bus.nc, "publish")
    try:
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await pull.take(8, timeout=0.3) == []
        assert loop.time() - began < 2.0
        later = loop.call_later(0.7, lambda: asyncio.ensure_future(bus.publish(ready(task="late"))))
        got = await pull.take(8, timeout=5.0)  # past three expiries of the request
        later.cancel()
        assert [m.subject.rsplit(".", 1)[-1] for m in got] == ["TaskReady"]
        assert sum(1 for args in sent if args[0] == pull.next_subject) >= 4  # asked again after each expiry
        for m in got:
            await m.ack()
    finally:
        await pull.close()


async def test_a_direct_subscription_hands_each_message_on_as_read_and_outlives_a_failing_handler(bus):
    got: list[bytes] = []

    def handle(msg):
        got.append(msg.data)
        if msg.data == b"2":
            raise RuntimeError("a handler that fails")  # logged; the reading loop goes on

    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe_direct(inbox, handle)
    for i in range(5):
        await bus.nc.publish(inbox, str(i).encode())
    await bus.nc.flush()
    for _ in range(100):
        if len(got) == 5:
            break
        await asyncio.sleep(0.01)
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    await sub.unsubscribe()
    await bus.nc.publish(inbox, b"after")
    await bus.nc.flush()
    await asyncio.sleep(0.05)
    assert got[-1] == b"4" and sub._id not in bus.nc._direct


async def test_a_follower_hands_on_what_the_stream_stores_and_never_what_it_refuses(bus):
    """`follow` is the stored counterpart of a live subscription: core NATS delivers a publish the
    stream refused (a lost optimistic check) to live subscribers; a follower never sees it."""
    before = ready(task="old")
    await bus.publish(before)  # stored before the follower began: not handed on
    live, followed = [], []

    async def on_live(msg) -> None:
        live.append(msg.data)

    await bus.subscribe_live(bus.type_filter("TaskReady"), on_live)
    follower = await bus.follow(bus.type_filter("TaskReady"), lambda e, seq: _append(followed, (e, seq)))
    try:
        stored = await bus.publish(ready(task="a"))
        refused = ready(task="a", attempt=2)
        with pytest.raises(ConcurrencyConflict):
            await bus.publish(refused, expected_seq=stored.seq - 1)
        after = await bus.publish(ready(task="b"))
        for _ in range(200):
            if len(followed) >= 2 and len(live) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(live) == 3  # the fault is there: the refused publish reached the live subscriber
        assert [(e.task_id, e.attempt, seq) for e, seq in followed] == [("a", 1, stored.seq), ("b", 1, after.seq)]
    finally:
        await follower.stop()


async def test_a_follower_whose_consumer_is_lost_makes_it_again_and_misses_nothing(bus):
    followed = []
    follower = await bus.follow(bus.type_filter("TaskReady"), lambda e, seq: _append(followed, (e, seq)),
                                heartbeat_s=0.2)
    try:
        first = await bus.publish(ready(task="1"))
        lost = follower.name
        await bus.js.delete_consumer(bus.stream, lost)  # the fault: as a server restart loses it
        with pytest.raises(Exception):
            await bus.js.consumer_info(bus.stream, lost)
        meanwhile = await bus.publish(ready(task="2"))  # stored while no consumer exists
        for _ in range(300):
            if follower.remade and len(followed) >= 2:
                break
            await asyncio.sleep(0.01)
        assert follower.remade >= 1 and follower.name != lost
        assert [seq for _, seq in followed] == [first.seq, meanwhile.seq]  # nothing missed, nothing twice
        later = await bus.publish(ready(task="3"))
        for _ in range(200):
            if len(followed) >= 3:
                break
            await asyncio.sleep(0.01)
        assert [seq for _, seq in followed] == [first.seq, meanwhile.seq, later.seq]
        remade = follower.name
    finally:
        await follower.stop()
    with pytest.raises(Exception):  # stopped: its consumer is gone from the server
        await bus.js.consumer_info(bus.stream, remade)


async def _append(into: list, item) -> None:
    into.append(item)
