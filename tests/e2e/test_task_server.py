"""The task server inside a run, through the real anthropic SDK: an agent asks about its own task
and its dependencies (and is refused anything else), reports a discovery that the next agent of
its domain reads in its prompt, and can ask for its task to be blocked."""

from __future__ import annotations

from shared import events as ev
from shared.commands import start_run
from tests.support.fake_anthropic import FakeAnthropic, tool, turn
from tests.support.system import config, events_of, running_system, wait_for_end

PLAN = {"name": "scoped", "epics": [{"id": "E", "name": "E", "tasks": [
    {"id": "a", "title": "API base", "domain": "api", "tests": ["test -f api.py"]},
    {"id": "b", "title": "API users", "domain": "api", "depends_on": ["a"]},
    {"id": "c", "title": "Impossible", "domain": "database"},
]}]}

SCRIPTS = {
    "a": [turn(tool("task_info")),
          turn(tool("task_info", task_id="b")),
          turn(tool("dependency_info", task_id="zzz")),
          turn(tool("dependency_info", task_id="a", run_id="r-someone-else")),
          turn(tool("report_discovery", text="Every API response carries UTC timestamps NOTE_4242",
                    files=["api.py"])),
          turn(tool("write_file", path="api.py", content="BASE = '/api'\n")),
          turn(tool("finish", summary="api base"))],
    "b": [turn(tool("dependency_info", task_id="a")), turn(tool("finish", summary="users"))],
    "c": [turn(tool("request_block", reason="needs a database server that the plan never sets up",
                    split_into=["Set up the database", "Then the table"]))],
}


def task_of(body: dict) -> str:
    first = body["messages"][0]["content"]
    prompt = first if isinstance(first, str) else first[0]["text"]
    return prompt.split(":", 1)[0].removeprefix("# Task ").strip()


def routed(body: dict) -> dict:
    step = sum(1 for m in body["messages"] if m["role"] == "assistant")
    return SCRIPTS[task_of(body)][step]


def tool_results(api: FakeAnthropic, task: str) -> list[dict]:
    last = [r.body for r in api.requests if task_of(r.body) == task][-1]
    return [block for m in last["messages"] if m["role"] == "user" and isinstance(m["content"], list)
            for block in m["content"] if block.get("type") == "tool_result"]


async def test_the_task_server_is_scoped_and_a_discovery_reaches_the_next_agent(nats_server, database_url, unique,
                                                                                git_repo, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    with FakeAnthropic([routed] * 20) as api:
        cfg = config(parallel={"strategy": "by_task", "max_concurrency": 2, "max_attempts": 1},
                     agent={"provider": "anthropic", "base_url": api.url})
        async with running_system(nats_server.url, database_url, unique, cfg) as (_, bus):
            started = await start_run(bus, PLAN, git_repo, cfg)
            end = await wait_for_end(bus, started.run_id)
            events = await events_of(bus, started.run_id)
    assert isinstance(end, ev.RunFailed) and "1 failed" in end.reason  # c asked to be blocked
    a = tool_results(api, "a")
    assert "task a: API base" in a[0]["content"] and "test -f api.py" in a[0]["content"] and not a[0]["is_error"]
    assert a[1]["is_error"] and "not yours" in a[1]["content"]                      # another task
    assert a[2]["is_error"] and "not a dependency" in a[2]["content"]              # not a dependency
    assert a[3]["is_error"] and "outside this agent's scope" in a[3]["content"]    # another run
    b = tool_results(api, "b")
    assert "files it changed: api.py" in b[0]["content"] and "api base" in b[0]["content"]
    b_system = "\n".join(x.get("text", "") for x in [r.body for r in api.requests if task_of(r.body) == "b"][0]["system"])
    assert "NOTE_4242" in b_system  # the discovery, in the next same-domain agent's prompt
    [found] = [e for e in events if isinstance(e, ev.DiscoveryReported)]
    assert (found.task_id, found.domain, found.files) == ("a", "api", ["api.py"])
    [asked] = [e for e in events if isinstance(e, ev.TaskBlockRequested)]
    assert asked.task_id == "c" and asked.split_into == ["Set up the database", "Then the table"]
    failed = next(e for e in events if isinstance(e, ev.TaskFailed) and e.task_id == "c")
    assert "asked to block the task: needs a database server" in failed.reason
    merged = {e.task_id for e in events if isinstance(e, ev.BranchMerged)}
    assert merged == {"a", "b"}
