"""shared/lanes.py: which paths a task will edit, when two predictions overlap, and the lanes
tasks are grouped into; the property that lanes never stop a run from finishing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from shared import events as ev
from shared.plan import PlanDoc
from shared.config import RunSettings
from shared.lanes import compute_lanes, lane_of, normalise, paths_in_text, paths_overlap, predicted_paths
from shared.plan import parse_plan
from services.planner.scheduler import DISPATCHED, RunState, decide


def plan_of(*tasks: dict, epics: int = 1) -> dict:
    """Tasks spread round-robin over `epics` epics, in the given order."""
    out = [{"id": f"E{k}", "name": f"Epic {k}", "tasks": []} for k in range(epics)]
    for i, task in enumerate(tasks):
        out[i % epics]["tasks"].append(task)
    return {"name": "lanes", "epics": out}


def task(tid: str, title: str = "", **fields) -> dict:
    return {"id": tid, "title": title or f"Task {tid}", **fields}


# ---------------------------------------------------------------------- prediction
def test_declared_files_are_the_prediction_normalised_and_text_is_then_ignored():
    [t] = parse_plan(plan_of(task("a", "Touch README.md", files=["./src//api/", "docs/guide.md", "."]))).tasks()
    assert predicted_paths(t) == ("src/api/", "docs/guide.md", "**")  # '.' is the whole repository
    assert normalise("src\\api\\x.py") == "src/api/x.py" and normalise("./") == ""


@pytest.mark.parametrize("text, expected", [
    ("Edit `src/app.py` and README.md.", ["src/app.py", "README.md"]),
    ("Add components under src/components/ and src/api/users, then ./docs/guide.md:",
     ["src/components/", "src/api/users", "docs/guide.md"]),
    ("(see `tests/test_x.py`) and config.yaml, settings.toml;", ["tests/test_x.py", "config.yaml", "settings.toml"]),
    ("Write a Dockerfile and package.json", ["Dockerfile", "package.json"]),
    ("Fix app.py, then app.py again", ["app.py"]),
])
def test_path_like_words_in_text_are_found(text, expected):
    assert paths_in_text(text) == expected


@pytest.mark.parametrize("text", [
    "See https://example.com/a/b.py and www.example.org/y.md or mailto:x@y.md",
    "Upgrade to Python 3.11, v2.0.1 or 1.2/1.3; released 2024/01/02, half is 1/2",
    "Use Node.js and Vue.js; call response.json() and os.path.join",
    "e.g. i.e. etc. example.com",
    "Add the GET /api/users route and /etc/hosts",
    "and/or, CI/CD, TCP/IP, client/server, src/api",
    "mail me at dev@example.com",
    "all *.py files",
    "outside: ../secret.txt",
])
def test_no_paths_are_read_into_urls_versions_routes_or_prose(text):
    assert paths_in_text(text) == []


# ---------------------------------------------------------------------- overlap
@pytest.mark.parametrize("a, b, overlap", [
    ("src/a.py", "src/a.py", True),
    ("src/", "src/a.py", True),
    ("src", "src/a.py", True),             # a folder written without its slash
    ("src/a", "src/ab.py", False),         # a prefix of a name is not a folder
    ("docs/", "README.md", False),
    ("src/**", "src/x/y.py", True),
    ("src/*", "src/x/y.py", True),         # the glob matches the folder src/x
    ("src/*.py", "src/x/y.py", False),     # '*' stays inside one name
    ("src/api/*.py", "src", True),         # a folder holding the glob's matches
    ("**/*.md", "docs/a.md", True),
    ("**/*.md", "a.md", True),
    ("*.md", "docs/a.md", False),          # anchored at the repository root
    ("src/[ab].py", "src/a.py", True),
    ("src/[!ab].py", "src/a.py", False),
    ("**", "anything/at/all.txt", True),
    ("src/**/*.py", "src/**/*.ts", False),  # two globs whose matches end differently
    ("src/**", "lib/**", False),
    ("src/*.py", "src/api/**", True),      # two globs: compared by their folders, erring toward overlap
])
def test_overlap_rules_hold_both_ways(a, b, overlap):
    assert paths_overlap(a, b) is overlap and paths_overlap(b, a) is overlap


# ---------------------------------------------------------------------- grouping
def test_overlap_is_transitive_across_a_chain_and_lanes_keep_plan_order():
    plan = parse_plan(plan_of(
        task("a", "Greeting", files=["greeting.txt"]),
        task("solo", "Unrelated", files=["other/"]),
        task("b", "Both", files=["greeting.txt", "src/x.py"]),
        task("none", "No prediction at all"),
        task("c", "Sources", files=["src/**"]),
        task("none2", "Nothing either"), epics=2))
    lanes = compute_lanes(plan)
    assert [lane.task_ids for lane in lanes] == [("a", "b", "c"), ("solo",), ("none",), ("none2",)]
    shared = lanes[0]
    assert shared.key == "a" and shared.shared and shared.branch == "lane/a-greeting"
    assert lanes[1].branch == "task/solo-unrelated" and not lanes[1].shared
    assert lane_of(plan)["c"] == shared


def test_lanes_are_the_same_however_often_they_are_computed():
    data = plan_of(*[task(f"t{i}", f"Edit mod{i % 3}.py") for i in range(9)], epics=3)
    first = compute_lanes(parse_plan(data))
    assert first == compute_lanes(parse_plan(data))
    assert sorted(lane.task_ids for lane in first) == [("t0", "t3", "t6"), ("t1", "t4", "t7"), ("t2", "t5", "t8")]


def pairwise_lanes(predictions: list[tuple[str, ...]]) -> set[frozenset[int]]:
    """The definition, compared pair by pair: connected components of 'some paths overlap'."""
    groups = [{i} for i in range(len(predictions))]
    for i in range(len(predictions)):
        for j in range(i + 1, len(predictions)):
            if any(paths_overlap(a, b) for a in predictions[i] for b in predictions[j]):
                gi = next(g for g in groups if i in g)
                gj = next(g for g in groups if j in g)
                if gi is not gj:
                    gi |= gj
                    groups.remove(gj)
    return {frozenset(g) for g in groups}


SAMPLE_PATHS = ["a.py", "a.py/", "src", "src/", "src/x.py", "src/x/y.py", "src/*", "src/*.py", "src/**/*.ts",
                "src/**", "src/x/*.ts", "**/*.md", "*.md", "docs/a.md", "docs/", "lib/[ab].py", "lib/a.py", "."]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(SAMPLE_PATHS), max_size=3), min_size=1, max_size=8))
def test_the_indexed_grouping_equals_comparing_every_pair(files):
    plan = parse_plan(plan_of(*[task(f"t{i}", files=f) for i, f in enumerate(files)]))
    predictions = [predicted_paths(t) for t in plan.tasks()]
    index = {t.id: i for i, t in enumerate(plan.tasks())}
    got = {frozenset(index[tid] for tid in lane.task_ids) for lane in compute_lanes(plan)}
    assert got == pairwise_lanes(predictions)


# ---------------------------------------------------------------------- no deadlock
PATHS = ["a.py", "src/", "src/x.py", "src/**/*.ts", "docs/**", "docs/guide.md", "lib/y.py", "README.md"]


@st.composite
def runs(draw):
    """A random DAG whose dependency order is independent of plan order, with random files."""
    n = draw(st.integers(1, 9))
    topo = draw(st.permutations(range(n)))  # topo[k] may depend on topo[<k]: deps point anywhere in the file
    tasks = []
    for k, i in enumerate(topo):
        deps = draw(st.lists(st.sampled_from([topo[j] for j in range(k)]), unique=True, max_size=3)) if k else []
        files = draw(st.lists(st.sampled_from(PATHS), max_size=2, unique=True))
        tasks.append((i, task(f"t{i}", f"T{i}", depends_on=[f"t{d}" for d in deps], files=files,
                              dependency_type=draw(st.sampled_from(["hard", "soft"])))))
    tasks.sort(key=lambda pair: pair[0])
    plan = plan_of(*[t for _, t in tasks], epics=draw(st.integers(1, 3)))
    parallel = {"strategy": "smart", "max_concurrency": draw(st.integers(1, 3)),
                "batch_barrier": draw(st.booleans()), "max_attempts": 2}
    return plan, parallel


def _event(cls, tid: str, **fields) -> ev.Event:
    return cls(project_id="p", aggregate_id=f"r-{tid}", run_id="r", task_id=tid, **fields)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs(), st.data())
def test_every_run_finishes_and_a_lane_never_runs_two_tasks_at_once(run, data):
    plan, parallel = run
    state = RunState.start(ev.RunStarted(project_id="p", aggregate_id="r", run_id="r", plan=PlanDoc.of(plan),
                                         repo_path="/repo", settings=RunSettings.of({"parallel": parallel})))
    lanes = lane_of(state.plan)
    waiting_for_a_person: list[str] = []  # conflicted under the manual policy, resolved later
    for _ in range(200):
        for e, _ in decide(state):
            state.apply(e)
            if isinstance(e, ev.TaskReady):
                assert e.branch == lanes[e.task_id].branch  # a shared lane's branch, or the task's own
        if state.ended:
            break
        running = sorted(t.id for t in state.tasks.values() if t.status == DISPATCHED)
        busy = [lanes[t].key for t in running]
        assert len(busy) == len(set(busy)), f"two tasks of one lane in flight: {running}"
        choices = running + waiting_for_a_person
        assert choices, f"deadlock: nothing runs, nothing is decided: {[(t.id, t.status) for t in state.tasks.values()]}"
        tid = data.draw(st.sampled_from(choices))
        if tid in waiting_for_a_person:
            waiting_for_a_person.remove(tid)
            state.apply(_event(ev.BranchMerged, tid, branch=lanes[tid].branch, commit="m"))
            continue
        attempt = state.tasks[tid].attempt
        outcome = data.draw(st.sampled_from(["success", "success", "success", "failure"]))
        state.apply(_event(ev.AgentFinished, tid, attempt=attempt, outcome=outcome, commit="c"))
        state.apply(_event(ev.LearningExtracted, tid, attempt=attempt))  # the learner stores what it taught
        if outcome == "success":
            if data.draw(st.booleans()):
                state.apply(_event(ev.BranchMerged, tid, branch=lanes[tid].branch, commit="m"))
            else:
                state.apply(_event(ev.MergeConflicted, tid, branch=lanes[tid].branch,
                                   conflicts=[{"path": "a.py"}], reason="merge conflict"))
                waiting_for_a_person.append(tid)
    assert state.ended, "the run did not end within 200 steps"
