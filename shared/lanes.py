"""Lanes for `parallel.strategy: smart`: tasks predicted to edit the same files share a lane.

A lane runs one task at a time on one branch, so its tasks never conflict with each other;
lanes run in parallel. Pure and deterministic: the scheduler and the merger both compute the
lanes from the plan alone, and get the same answer after any restart.

A task's prediction is its declared `files`, else the path-like words of its title and
description (conservative: a word needs a slash or a known file extension).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from shared.gitops import branch_name
from shared.plan import Plan, PlanTask

# Extensions a bare word (no slash) must end in to be taken for a file name.
FILE_EXTENSIONS = frozenset("""
    py pyi ipynb js mjs cjs ts tsx jsx vue svelte astro css scss sass less html htm md mdx rst txt
    json jsonc yaml yml toml ini cfg conf env lock sql graphql gql proto sh bash zsh ps1 bat go rs
    java kt kts scala groovy gradle rb php c h cc cpp cxx hpp cs fs swift m mm dart ex exs erl elm
    hs clj lua pl r jl tf hcl xml csv tsv svg
""".split())
# Files people name without an extension.
BARE_FILE_NAMES = frozenset({"Dockerfile", "Makefile", "Procfile", "Gemfile", "Rakefile", "Justfile",
                             "Vagrantfile", "Jenkinsfile", "LICENSE", "CODEOWNERS"})
# Product names that look like files ("Node.js") but name no file in the repository.
NOT_FILES = frozenset({"node.js", "vue.js", "next.js", "nuxt.js", "express.js", "react.js", "three.js",
                       "d3.js", "chart.js", "ember.js", "backbone.js", "angular.js", "alpine.js",
                       "solid.js", "p5.js", "moment.js", "day.js", "nest.js", "deno.js", "socket.io"})

_WORD = re.compile(r"[^\s`'\"<>()\[\]{},;|]+")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*:|^www\.", re.I)  # scheme: catches http://, mailto:, C:
_EMAIL = re.compile(r"^[^/@]+@[^/@]+\.[^/@]+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.@+-]+$")  # no wildcards: a glob in prose is too vague to use
_EXT = re.compile(r"\.([A-Za-z][A-Za-z0-9]{0,9})$")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Lane:
    """Tasks that run one after another on one branch; `key` is the first task's id."""
    key: str
    task_ids: tuple[str, ...]
    branch: str

    @property
    def shared(self) -> bool:
        return len(self.task_ids) > 1


# ---------------------------------------------------------------------- prediction
def normalise(path: str) -> str:
    """'./src//api/' -> 'src/api/': one spelling per path (a trailing '/' marks a folder)."""
    text = path.strip().replace("\\", "/")
    folder = text.endswith("/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    return "/".join(parts) + ("/" if folder and parts else "")


def paths_in_text(text: str) -> list[str]:
    """Path-like words of a title or description, normalised, in order of first appearance.

    A word counts when it has a slash and looks like a path (a trailing slash, a file extension,
    or three or more name segments), or has no slash and ends in a known file extension. URLs,
    e-mail addresses, absolute paths (HTTP routes like /api/users), version numbers and
    dates do not count."""
    found: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0).rstrip(".:!?")
        if word.startswith("./"):
            word = word[2:]
        if not word or _URL.search(word) or _EMAIL.match(word) or word.startswith("/") \
                or ".." in word.split("/") or text[match.end():match.end() + 1] == "(":
            continue  # a URL, an address, a route, outside the repository, or a call like response.json()
        if _looks_like_path(word):
            path = normalise(word)
            if path and path not in found:
                found.append(path)
    return found


def _looks_like_path(word: str) -> bool:
    segments = word.rstrip("/").split("/")
    if not all(_SEGMENT.match(s) for s in segments):
        return False
    if all(re.fullmatch(r"[vV]?[\d.]+", s) for s in segments):
        return False  # 1.2.3, v2.0, 2024/01/02, 1/2
    ext = _EXT.search(segments[-1])
    if "/" not in word:
        if word in BARE_FILE_NAMES:
            return True
        return bool(ext) and ext.group(1).lower() in FILE_EXTENSIONS and word.lower() not in NOT_FILES \
            and len(word) > len(ext.group(0))
    return word.endswith("/") or bool(ext) or len(segments) >= 3


def predicted_paths(task: PlanTask) -> tuple[str, ...]:
    """Where the task will most likely write: its declared files, else paths named in its text."""
    if task.files:
        return tuple(dict.fromkeys(normalise(f) or "**" for f in task.files))  # '.' is the whole repository
    return tuple(paths_in_text(f"{task.title}\n{task.description}"))


# ---------------------------------------------------------------------- overlap
def _is_glob(path: str) -> bool:
    return any(c in _GLOB_CHARS for c in path)


@lru_cache(maxsize=4096)
def _glob_regex(glob: str) -> re.Pattern[str]:
    """Root-anchored: '**' crosses folders, '*' and '?' stay inside one name, [..] a class."""
    out, i = "", 0
    body = glob.rstrip("/")
    while i < len(body):
        if body.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif body.startswith("**", i):
            out, i = out + ".*", i + 2
        elif body[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif body[i] == "?":
            out, i = out + "[^/]", i + 1
        elif body[i] == "[" and "]" in body[i + 2:]:
            end = body.index("]", i + 2)
            inner = body[i + 1:end]
            out += "[" + ("^" + re.escape(inner[1:]) if inner[:1] in "!^" and inner[1:] else re.escape(inner)) + "]"
            i = end + 1
        else:
            out, i = out + re.escape(body[i]), i + 1
    return re.compile(out + r"(?:/.*)?\Z")  # a glob naming a folder covers what is inside it


def _literal_prefix(glob: str) -> str:
    """The folders before the first wildcard: 'src/api/*.py' -> 'src/api'."""
    parts = glob.split("/")
    for k, part in enumerate(parts):
        if _is_glob(part):
            return "/".join(parts[:k])
    return glob.rstrip("/")


def _extension(glob: str) -> str:
    """The literal extension every match of the glob ends in ('**/*.py' -> 'py'), or ''."""
    if glob.endswith("/"):
        return ""
    found = _EXT.search(glob.rsplit("/", 1)[-1])
    return found.group(1).lower() if found else ""


def _nested(a: str, b: str) -> bool:
    """Same path, or one is a folder holding the other ('' is the repository root)."""
    a, b = a.rstrip("/"), b.rstrip("/")
    return a == b or not a or not b or b.startswith(a + "/") or a.startswith(b + "/")


def paths_overlap(a: str, b: str) -> bool:
    """Could a change under `a` and a change under `b` touch the same file?

    Two globs are compared by the folders before their wildcards (an over-approximation:
    'src/*.py' and 'src/*.js' overlap), which errs toward running tasks one after another."""
    return _overlap(normalise(a), normalise(b))


def _overlap(a: str, b: str) -> bool:
    """paths_overlap of two normalised paths."""
    glob_a, glob_b = _is_glob(a), _is_glob(b)
    if not glob_a and not glob_b:
        return _nested(a, b)
    if glob_a and glob_b:
        ext_a, ext_b = _extension(a), _extension(b)
        if ext_a and ext_b and ext_a != ext_b:
            return False  # 'src/**/*.py' and 'src/**/*.ts' name different files
        return _nested(_literal_prefix(a), _literal_prefix(b))
    glob, concrete = (a, b) if glob_a else (b, a)
    concrete = concrete.rstrip("/")
    if _glob_regex(glob).match(concrete):
        return True  # the glob matches the path or one of its folders
    prefix = _literal_prefix(glob)
    return not concrete or prefix == concrete or prefix.startswith(concrete + "/")  # a folder holding matches


# ---------------------------------------------------------------------- grouping
def compute_lanes(plan: Plan) -> list[Lane]:
    """Union-find over tasks whose predictions overlap; lanes and their tasks in plan order.
    A task with no prediction is a lane of its own."""
    tasks = plan.tasks()
    predictions = [predicted_paths(t) for t in tasks]
    parent = list(range(len(tasks)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(i: int, j: int) -> None:
        ri, rj = root(i), root(j)
        parent[max(ri, rj)] = min(ri, rj)  # the earliest task in the file is the root

    # plain paths through an index (a path overlaps itself and its folders): no n² comparison
    owners: dict[str, list[int]] = {}
    for i, paths in enumerate(predictions):
        for path in paths:
            if not _is_glob(path):
                owners.setdefault(path.rstrip("/"), []).append(i)
    for path, named_by in owners.items():
        for j in named_by[1:]:
            join(named_by[0], j)
        parts = path.split("/")
        for k in range(1, len(parts)):
            folder = owners.get("/".join(parts[:k]))
            if folder:
                join(named_by[0], folder[0])
    # globs: against the plain paths in or above their folders, and against each other
    globs = [(i, path) for i, paths in enumerate(predictions) for path in paths if _is_glob(path)]
    for i, glob in globs:
        prefix = _literal_prefix(glob)
        for path, named_by in owners.items():
            near = not prefix or path == prefix or path.startswith(prefix + "/") or prefix.startswith(path + "/")
            if near and root(i) != root(named_by[0]) and _overlap(glob, path):
                join(i, named_by[0])
        for j, other in globs:
            if root(i) != root(j) and _overlap(glob, other):
                join(i, j)
    members: dict[int, list[str]] = {}
    for i, task in enumerate(tasks):
        members.setdefault(root(i), []).append(task.id)
    lanes = []
    for r in sorted(members):
        first = tasks[r]
        ids = tuple(members[r])
        lanes.append(Lane(key=first.id, task_ids=ids, branch=_lane_branch(first) if len(ids) > 1
                          else branch_name("task", first.id, first.title)))
    return lanes


def lane_of(plan: Plan) -> dict[str, Lane]:
    """Task id -> its lane."""
    return {tid: lane for lane in compute_lanes(plan) for tid in lane.task_ids}


def _lane_branch(first: PlanTask) -> str:
    """'lane/<first task id>-<slug>': a task branch's sanitised name under the lane/ prefix."""
    return branch_name("lane", first.id, first.title)
