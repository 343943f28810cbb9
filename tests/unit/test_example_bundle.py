"""The bundled examples `yokeflow demo` runs: the plan is well formed, the scripted transcripts
keep the tool contract, tasks that may run at the same time write disjoint files, and playing
every transcript's file changes in dependency order gives a program whose tests pass."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from yokeflow.examples import UnknownExample, example_path, list_examples

EXAMPLES = list_examples()
DOMAINS = {"database", "api", "frontend", "testing", "security", "deployment", "general"}
EPIC_KEYS = {"id", "name", "priority", "depends_on", "tasks"}
TASK_KEYS = {"id", "title", "description", "priority", "depends_on", "dependency_type", "domain", "complexity",
             "estimate_minutes", "tests"}
# Tool name -> (required inputs, optional inputs), each input with the JSON type it must have.
TOOLS = {
    "read_file": ({"path": str}, {"offset": int, "limit": int}),
    "write_file": ({"path": str, "content": str}, {}),
    "edit_file": ({"path": str, "old_text": str, "new_text": str}, {"replace_all": bool}),
    "list_files": ({}, {"pattern": str}),
    "grep": ({"pattern": str}, {"path": str, "glob": str}),
    "run_command": ({"command": str}, {"timeout_s": (int, float)}),
    "finish": ({"summary": str}, {}),
}
WRITERS = ("write_file", "edit_file")


def load_plan(name: str) -> dict:
    return yaml.safe_load((example_path(name) / "plan.yaml").read_text())


def tasks_of(plan: dict) -> dict:
    return {t["id"]: t for epic in plan["epics"] for t in epic["tasks"]}


def dependencies(plan: dict) -> dict:
    """Every task's direct prerequisites: its own depends_on plus all tasks of the epics its epic depends on."""
    epic_tasks = {e["id"]: [t["id"] for t in e["tasks"]] for e in plan["epics"]}
    return {t["id"]: set(t["depends_on"]) | {u for d in e["depends_on"] for u in epic_tasks[d]}
            for e in plan["epics"] for t in e["tasks"]}


def ancestors(deps: dict) -> dict:
    found: dict = {}

    def visit(task):
        if task not in found:
            found[task] = set()
            for d in deps[task]:
                found[task] |= {d} | visit(d)
        return found[task]

    for task in deps:
        visit(task)
    return found


def topological_order(deps: dict, prefer_last: bool = False) -> list:
    """Kahn's algorithm; among ready tasks the first (or last) in plan order goes next."""
    order: list = []
    while len(order) < len(deps):
        ready = [t for t in deps if t not in order and deps[t] <= set(order)]
        assert ready, f"cycle among tasks {sorted(set(deps) - set(order))}"
        order.append(ready[-1] if prefer_last else ready[0])
    return order


def load_transcripts(name: str) -> dict:
    return {p.stem: json.loads(p.read_text()) for p in sorted((example_path(name) / "transcripts").glob("*.json"))}


def tool_uses(transcript: dict) -> list[dict]:
    return [b for turn in transcript["turns"] for b in turn["content"] if b["type"] == "tool_use"]


def written_paths(transcript: dict) -> set[str]:
    return {str(PurePosixPath(b["input"]["path"])) for b in tool_uses(transcript) if b["name"] in WRITERS}


def seed_files(name: str) -> set[str]:
    seed = example_path(name) / "seed"
    return {p.relative_to(seed).as_posix() for p in seed.rglob("*") if p.is_file()}


def test_examples_are_found_by_name():
    assert "todo" in EXAMPLES
    assert example_path() == example_path("todo")
    assert (example_path("todo") / "seed" / "README.md").is_file()
    with pytest.raises(UnknownExample, match="no bundled example named 'nope'; choose one of: todo"):
        example_path("nope")


@pytest.mark.parametrize("name", EXAMPLES)
def test_plan_is_well_formed(name):
    plan = load_plan(name)
    assert set(plan) == {"name", "epics"} and plan["name"]
    epic_ids = [e["id"] for e in plan["epics"]]
    task_ids = [t["id"] for e in plan["epics"] for t in e["tasks"]]
    assert len(epic_ids) == len(set(epic_ids)) >= 3
    assert len(task_ids) == len(set(task_ids)) >= 8
    for epic in plan["epics"]:
        assert set(epic) == EPIC_KEYS, f"epic {epic['id']}: fields {sorted(set(epic) ^ EPIC_KEYS)}"
        assert set(epic["depends_on"]) <= set(epic_ids) - {epic["id"]}
        for task in epic["tasks"]:
            where = f"task {task['id']}"
            assert set(task) == TASK_KEYS, f"{where}: fields {sorted(set(task) ^ TASK_KEYS)}"
            assert set(task["depends_on"]) <= set(task_ids) - {task["id"]}, where
            assert task["dependency_type"] in ("hard", "soft"), where
            assert task["domain"] in DOMAINS, where
            assert task["complexity"] in ("low", "medium", "high"), where
            assert isinstance(task["priority"], int) and task["priority"] >= 1, where
            assert isinstance(task["estimate_minutes"], int) and task["estimate_minutes"] > 0, where
            assert task["tests"] and all(isinstance(c, str) and c for c in task["tests"]), where
            assert task["title"].strip() and task["description"].strip(), where
    topological_order(dependencies(plan))  # raises on a cycle, epic-level edges included


@pytest.mark.parametrize("name", EXAMPLES)
def test_plan_has_a_diamond_and_crosses_epics(name):
    plan = load_plan(name)
    direct = {t["id"]: set(t["depends_on"]) for t in tasks_of(plan).values()}
    above = ancestors(direct)
    diamonds = [(a, b, c, d) for d in direct for b, c in itertools.combinations(sorted(direct[d]), 2)
                for a in direct[b] & direct[c] if b not in above[c] and c not in above[b]]
    assert diamonds, "no A -> B, A -> C, B and C -> D with B and C independent"
    epic_of = {t["id"]: e["id"] for e in plan["epics"] for t in e["tasks"]}
    crossing = [(t, d) for t, ds in direct.items() for d in ds if epic_of[t] != epic_of[d]]
    assert crossing or any(e["depends_on"] for e in plan["epics"])


@pytest.mark.parametrize("name", EXAMPLES)
def test_transcripts_keep_the_tool_contract(name):
    tasks = tasks_of(load_plan(name))
    transcripts = load_transcripts(name)
    assert set(transcripts) == {str(t) for t in tasks}, "one transcript per task, named <task id>.json"
    for task_id, transcript in transcripts.items():
        where = f"transcript {task_id}"
        assert isinstance(transcript["model"], str) and transcript["task"] == task_id, where
        assert transcript["turns"], where
        for turn in transcript["turns"]:
            assert turn["stop_reason"] == "tool_use" and any(b["type"] == "tool_use" for b in turn["content"]), where
            assert all(b["type"] in ("text", "tool_use") for b in turn["content"]), where
            usage = turn["usage"]
            assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0, where
        uses = tool_uses(transcript)
        ids = [b["id"] for b in uses]
        assert len(ids) == len(set(ids)), f"{where}: tool_use ids repeat"
        for block in uses:
            assert block["name"] in TOOLS, f"{where}: unknown tool {block['name']}"
            required, optional = TOOLS[block["name"]]
            given = block["input"]
            assert set(required) <= set(given) <= set(required) | set(optional), f"{where}: {block['id']} inputs"
            for key, value in given.items():
                assert isinstance(value, {**required, **optional}[key]), f"{where}: {block['id']}.{key}"
            if "path" in given and block["name"] != "grep":
                path = PurePosixPath(given["path"])
                assert not path.is_absolute() and ".." not in path.parts and ".git" not in path.parts, where
        assert [b["name"] for b in uses].count("finish") == 1, where
        assert transcript["turns"][-1]["content"][-1]["name"] == "finish", f"{where}: must end with finish"
        assert uses[-1]["input"]["summary"].strip(), where
        last_write = max(i for i, b in enumerate(uses) if b["name"] in WRITERS)
        ran = [b["input"]["command"] for b in uses[last_write:] if b["name"] == "run_command"]
        for command in tasks[int(task_id) if task_id.isdigit() else task_id]["tests"]:
            assert any(command in r for r in ran), f"{where}: does not run `{command}` after its last change"


@pytest.mark.parametrize("name", EXAMPLES)
def test_tasks_that_may_run_together_write_disjoint_files(name):
    plan = load_plan(name)
    above = ancestors(dependencies(plan))
    transcripts = load_transcripts(name)
    writes = {t: written_paths(transcripts[str(t)]) for t in above}
    for a, b in itertools.combinations(above, 2):
        if a not in above[b] and b not in above[a]:
            assert not writes[a] & writes[b], f"tasks {a} and {b} may run in parallel but both write {writes[a] & writes[b]}"
    seed = seed_files(name)
    for task in above:
        edited_first = []
        for block in tool_uses(transcripts[str(task)]):
            path = block["input"].get("path")
            if block["name"] == "edit_file" and path not in seed and path not in edited_first:
                earlier = [t for t in above[task] if path in writes[t]]
                assert earlier, f"task {task} edits {path}, which neither the seed nor a prerequisite wrote"
            if block["name"] in WRITERS:
                edited_first.append(path)


def apply_writes(root: Path, transcript: dict) -> None:
    """The file changes of a transcript, as the agent's tools would make them."""
    for block in tool_uses(transcript):
        given = block["input"]
        if block["name"] == "write_file":
            target = root / given["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(given["content"])
        elif block["name"] == "edit_file":
            target = root / given["path"]
            text = target.read_text()
            count = text.count(given["old_text"])
            assert count == 1 or (count and given.get("replace_all")), \
                f"transcript {transcript['task']}: edit of {given['path']} finds old_text {count} times"
            target.write_text(text.replace(given["old_text"], given["new_text"]))


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.mark.parametrize("name", EXAMPLES)
def test_merge_order_does_not_matter(name, tmp_path):
    deps = dependencies(load_plan(name))
    transcripts = load_transcripts(name)
    results = []
    for prefer_last in (False, True):
        root = tmp_path / str(prefer_last)
        shutil.copytree(example_path(name) / "seed", root)
        for task in topological_order(deps, prefer_last):
            apply_writes(root, transcripts[str(task)])
        results.append(tree(root))
    assert results[0] == results[1]


def python_on_path(tmp_path: Path) -> dict:
    """An environment where `python` is this interpreter, as in the demo's installation."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "python"
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    launcher.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONDONTWRITEBYTECODE": "1"}


def run(command: str, cwd: Path, env: dict) -> None:
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"`{command}` failed in {cwd}:\n{done.stdout}{done.stderr}"


@pytest.mark.parametrize("name", EXAMPLES)
def test_replaying_every_task_in_order_passes_each_tasks_tests(name, tmp_path):
    plan = load_plan(name)
    tasks = tasks_of(plan)
    transcripts = load_transcripts(name)
    env = python_on_path(tmp_path)
    root = tmp_path / "repo"
    shutil.copytree(example_path(name) / "seed", root)
    for task in topological_order(dependencies(plan)):
        apply_writes(root, transcripts[str(task)])
        for command in tasks[task]["tests"]:
            run(command, root, env)
    run((example_path(name) / "CHECK").read_text().strip(), root, env)


def test_every_example_file_is_installed_with_the_package(tmp_path):
    """`pip install .` must ship the examples whole: a seed without .gitignore lets caches into commits."""
    root = Path(__file__).resolve().parents[2]
    project = tmp_path / "project"
    shutil.copytree(root / "yokeflow", project / "yokeflow", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        if (root / name).exists():
            shutil.copy(root / name, project / name)
    build = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "-q", "build_py",
                            "-d", str(tmp_path / "out")], cwd=project, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    source = project / "yokeflow" / "examples"
    installed = tmp_path / "out" / "yokeflow" / "examples"
    missing = sorted(set(tree(source)) - set(tree(installed)))
    assert not missing, (f"pyproject.toml's [tool.setuptools.package-data] leaves out {missing}: add their names "
                         "(e.g. \".gitignore\", \"CHECK\") to the patterns")
