"""A service's start-up catch-up (the whole log folded before its consumer starts) outlasts a NATS
outage: started while the server is down, or losing it half way, the service waits for it and
reads on from the last event it folded, instead of dying or starting on a partial fold; and
stopped meanwhile, it stops without waiting for the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest
from nats import errors as nats_errors

from services.learner.service import Learner
from services.merger.service import Merger
from services.planner.service import Planner
from shared import events as ev
from shared.bus import Bus
from shared.infra import EmbeddedNats
from tests.support.system import config

RETRY_LINE = "reading on from seq="


async def connect(nats: EmbeddedNats, unique: str) -> Bus:
    return await Bus.connect(nats.url, identity="admin", prefix=f"t{unique}", stream=f"EV_{unique}",
                             log_stream=f"LOG_{unique}")


def started(n: int, run: str = "r") -> list[tuple[ev.Event, None]]:
    return [(ev.AgentStarted(project_id="p", aggregate_id=ev.task_aggregate_id(run, str(i)), run_id=run,
                             task_id=str(i), expertise_given=["e1"]), None) for i in range(n)]


def restart_after(nats: EmbeddedNats, seconds: float) -> None:
    time.sleep(seconds)
    nats.start()  # same port, same file store


def retries(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if RETRY_LINE in r.getMessage()]


async def until(predicate, task: asyncio.Task, timeout: float) -> None:
    """Wait for `predicate`; a service task that ended first (it died) fails the test with its error."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if task.done():
            raise AssertionError(f"the service stopped: {task.exception()!r}")
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_a_service_started_while_nats_is_down_catches_up_once_it_is_back(unique, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="yokeflow.bus")
    nats = EmbeddedNats(tmp_path / "nats").start()  # this test's own server: the session's stays up
    bus = await connect(nats, unique)
    stop = asyncio.Event()
    serving = None
    try:
        await bus.publish_all(started(20))
        nats.stop()
        learner = Learner(bus, config())
        serving = asyncio.create_task(learner.serve(stop))

        async def retried() -> bool:
            return bool(retries(caplog))

        await until(retried, serving, timeout=30)  # the catch-up met the outage and is waiting
        await asyncio.to_thread(nats.start)  # same port, same file store

        async def consuming() -> bool:  # past its catch-up: its durable consumer is bound
            return await bus.readiness("learner") == []

        await until(consuming, serving, timeout=60)
        assert learner.given == {"p": {"e1": 20}}  # every AgentStarted folded, each once
        assert all("Traceback" not in line for line in retries(caplog))
    finally:
        stop.set()
        if serving is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, 30)
        await bus.close()
        nats.stop()


async def test_a_catch_up_that_loses_nats_half_way_reads_on_from_its_last_event(unique, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="yokeflow.bus")
    nats = EmbeddedNats(tmp_path / "nats").start()
    bus = await connect(nats, unique)
    restarted: list[asyncio.Task] = []
    try:
        published = await bus.publish_all(started(600))  # more than one fetch's worth (256)
        read, delivered = bus.read, []

        async def read_through_an_outage(*args, **kwargs):
            async for d in read(*args, **kwargs):
                delivered.append(d.seq)
                if len(delivered) == 1:  # the server goes away while the read is under way
                    nats.stop()
                    restarted.append(asyncio.create_task(asyncio.to_thread(restart_after, nats, 1.0)))
                yield d

        bus.read = read_through_an_outage
        planner = Planner(bus)
        await asyncio.wait_for(planner.catch_up(), 90)

        assert delivered == [p.seq for p in published]  # every event once, in log order
        assert planner.aggregate_seq == {bus.aggregate_filter(p.event): p.seq for p in published}
        assert retries(caplog), "the outage was never met: nothing was proven"
    finally:
        for task in restarted:
            await task
        await bus.close()
        nats.stop()


async def test_a_read_that_is_not_patient_fails_on_an_outage_instead_of_ending_early(unique, tmp_path):
    nats = EmbeddedNats(tmp_path / "nats").start()
    bus = await connect(nats, unique)
    delivered: list[int] = []
    try:
        await bus.publish_all(started(300))
        try:
            async for d in bus.read():
                delivered.append(d.seq)
                if len(delivered) == 1:
                    nats.stop()
        except nats_errors.TimeoutError:
            pass
        else:
            raise AssertionError(f"the read ended after {len(delivered)} of 300 events as if the log ended there")
    finally:
        await bus.close()
        nats.stop()


async def test_a_planner_that_loses_nats_as_it_resumes_decides_once_it_is_back(unique, tmp_path, git_repo, caplog):
    """Between its catch-up and its first decisions (resume) the server goes away: the planner waits
    for it and makes the run's decisions then, instead of dying with the run's first tasks undispatched."""
    from shared.commands import start_run

    caplog.set_level(logging.WARNING, logger="yokeflow.planner")
    nats = EmbeddedNats(tmp_path / "nats").start()
    bus = await connect(nats, unique)
    restarted: list[asyncio.Task] = []
    plan = {"name": "p", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "a", "title": "A"}]}]}
    try:
        run = await start_run(bus, plan, git_repo, config())
        planner = Planner(bus)
        await planner.catch_up()
        assert run.run_id in planner.runs and not planner.runs[run.run_id].ended

        nats.stop()  # caught up, nothing decided yet
        restarted.append(asyncio.create_task(asyncio.to_thread(restart_after, nats, 1.5)))
        await asyncio.wait_for(planner.resume(), 120)

        ready = [e async for e in _events(bus) if isinstance(e, ev.TaskReady) and e.run_id == run.run_id]
        assert [(e.task_id, e.attempt) for e in ready] == [("a", 1)]  # dispatched, once
        waits = [r.getMessage() for r in caplog.records
                 if r.name == "yokeflow.planner" and "as the planner resumes it" in r.getMessage()]
        assert waits, "the outage was never met: nothing was proven"
        assert all("Traceback" not in line for line in waits)
    finally:
        for task in restarted:
            await task
        await bus.close()
        nats.stop()


async def _events(bus: Bus):
    async for d in bus.read():
        yield d.event


def _service(name: str, bus: Bus):
    return {"planner": Planner, "merger": Merger, "learner": lambda b: Learner(b, config())}[name](bus)


@pytest.mark.parametrize("name, phase", [("planner", "catch-up"), ("merger", "catch-up"), ("learner", "catch-up"),
                                         ("planner", "resume")])
async def test_a_service_stopped_while_it_waits_out_an_outage_at_start_stops_without_nats(
        name, phase, unique, tmp_path, git_repo, caplog):
    """SIGTERM (the runner's `stop`) during the start-up's wait for NATS ends the service then: it holds
    no work yet, and waiting for the server (possibly long) would only end in the kill after the grace."""
    from shared.commands import start_run

    caplog.set_level(logging.INFO)
    nats = EmbeddedNats(tmp_path / "nats").start()
    bus = await connect(nats, unique)
    stop = asyncio.Event()
    serving = None
    plan = {"name": "p", "epics": [{"id": "E", "name": "E", "tasks": [{"id": "a", "title": "A"}]}]}
    try:
        await start_run(bus, plan, git_repo, config())  # an open run: the planner's resume has a decision to make
        await bus.publish_all(started(3))
        waiting_line = RETRY_LINE
        if phase == "catch-up":
            nats.stop()
        else:  # the server goes away right after the catch-up's last event, before the first decisions
            read = bus.read

            async def read_then_lose_nats(*args, **kwargs):
                async for d in read(*args, **kwargs):
                    yield d
                nats.stop()

            bus.read = read_then_lose_nats
            waiting_line = "as the planner resumes it"
        serving = asyncio.create_task(_service(name, bus).serve(stop))

        async def waiting() -> bool:
            return any(waiting_line in r.getMessage() for r in caplog.records)

        await until(waiting, serving, timeout=60)  # the fault is there: it waits for the server
        stop.set()
        await asyncio.wait_for(serving, 10)  # a hang guard: it returns without the server
        assert nats.proc is None  # NATS was still down when it returned
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
            [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    finally:
        stop.set()
        if serving is not None and not serving.done():
            serving.cancel()
            with contextlib.suppress(BaseException):
                await serving
        if nats.proc is None:
            await asyncio.to_thread(nats.start)  # back, so the client closes cleanly
        await bus.close()
        nats.stop()
