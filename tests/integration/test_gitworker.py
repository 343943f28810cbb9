"""The git worker (shared.gitworker): a job runs in a process of its own and answers with its
result or its own exception; what cannot come back says so in one line; a worker that dies fails
its job with GitError and the next job gets a new worker; an event loop that closes leaves no
worker behind and does not hang."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from shared.gitops import GitError
from shared.gitworker import GitWorker, git_worker
from tests.support import workerjobs
from yokeflow.system import tree_cpu_seconds


@pytest.fixture
async def worker():
    w = GitWorker()
    yield w
    await w.stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_job_runs_in_the_worker_process_and_returns_its_result(worker):
    pid, value = await worker.run(workerjobs.pid_and, {"paths": [Path("/a")], "n": 1})
    assert pid == worker.pid and pid != os.getpid()
    assert value == {"paths": [Path("/a")], "n": 1}
    again, _ = await worker.run(workerjobs.pid_and, None)
    assert again == pid  # it stays up for the next job
    assert tree_cpu_seconds([pid]) > 0  # counted where the benchmark counts it


async def test_a_jobs_exception_is_raised_here_as_itself(worker):
    with pytest.raises(GitError, match="the branch moved"):
        await worker.run(workerjobs.fail_with_git_error, "the branch moved")
    with pytest.raises(ValueError, match="invalid literal"):
        await worker.run(int, "not a number")


async def test_what_cannot_come_back_is_one_clear_git_error(worker):
    with pytest.raises(GitError, match="Unrebuildable: a job: its exception needs two arguments"):
        await worker.run(workerjobs.fail_unrebuildable)
    with pytest.raises(GitError, match="result does not pickle"):
        await worker.run(threading.Lock)
    assert await worker.run(workerjobs.pid_and, 1)  # the worker is fine after both


async def test_a_stray_print_does_not_corrupt_the_answers(worker, capfd):
    assert await worker.run(workerjobs.chatty, "hello") == "HELLO"
    assert await worker.run(workerjobs.chatty, "again") == "AGAIN"


async def test_a_worker_killed_mid_job_fails_that_job_and_the_next_job_gets_a_new_worker(worker):
    first, _ = await worker.run(workerjobs.pid_and, None)
    job = asyncio.ensure_future(worker.run(workerjobs.sleep_then, 30))
    await asyncio.sleep(0.3)
    os.kill(first, signal.SIGKILL)  # the fault: the worker dies with the job in hand
    with pytest.raises(GitError, match=r"git worker process stopped \(exit -9\)"):
        await asyncio.wait_for(job, 10)
    assert not alive(first)
    second, _ = await worker.run(workerjobs.pid_and, None)
    assert second != first and alive(second)


async def test_jobs_run_one_at_a_time_in_the_order_sent(worker):
    began = time.monotonic()
    results = await asyncio.gather(worker.run(workerjobs.sleep_then, 0.2), worker.run(workerjobs.pid_and, "second"))
    assert results[0] == "slept" and results[1][1] == "second"
    assert time.monotonic() - began >= 0.2


async def test_the_services_of_one_event_loop_share_its_worker():
    assert git_worker() is git_worker()
    seen: list[GitWorker] = []
    thread = threading.Thread(target=lambda: seen.append(asyncio.run(_own_worker())))
    thread.start()
    thread.join(30)
    assert seen and seen[0] is not git_worker()


async def _own_worker() -> GitWorker:
    return git_worker()


def test_a_closing_event_loop_leaves_no_worker_and_does_not_hang(tmp_path):
    """asyncio.run cancels the worker's reader as the loop closes: it must close the pipe (the worker
    then ends) rather than wait for a worker that waits for the next job."""
    pid_file = tmp_path / "worker.pid"
    script = textwrap.dedent(f"""
        import asyncio
        from shared.gitworker import git_worker
        from tests.support import workerjobs

        async def main():
            await git_worker().run(workerjobs.write_pid, {str(pid_file)!r})

        asyncio.run(main())
        print("closed")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and "closed" in done.stdout, done.stderr
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


async def test_a_job_in_hand_when_the_reader_stops_fails_rather_than_waits(worker):
    await worker.run(workerjobs.pid_and, None)
    job = asyncio.ensure_future(worker.run(workerjobs.sleep_then, 30))
    await asyncio.sleep(0.2)
    worker._reader.cancel()  # as an event loop that closes cancels its tasks
    with pytest.raises(GitError, match="reader was stopped"):
        await asyncio.wait_for(job, 10)
    assert (await worker.run(workerjobs.pid_and, "next"))[1] == "next"  # a new worker for the next job
