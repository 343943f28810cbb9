"""Bundled examples for `yokeflow demo`: each folder holds a seed repository, the spec a person
would write, the plan, and one scripted (hand-written) agent transcript per task (played by the `replay` provider).

    <name>/seed/          files of the initial commit
    <name>/app_spec.txt   the spec
    <name>/plan.yaml      epics and tasks with dependencies and per-task tests
    <name>/transcripts/   <task id>.json, Anthropic Messages API turns
    <name>/CHECK          the command that runs the finished program's tests
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
DEFAULT_EXAMPLE = "todo"


class UnknownExample(LookupError):
    def __init__(self, name: str):
        known = ", ".join(list_examples()) or "none are installed"
        super().__init__(f"no bundled example named {name!r}; choose one of: {known}")
        self.name = name


def list_examples() -> list[str]:
    """Names of the bundled examples, sorted."""
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "plan.yaml").is_file() and (p / "seed").is_dir())


def example_path(name: str = DEFAULT_EXAMPLE) -> Path:
    """The folder of the bundled example `name`."""
    if name not in list_examples():
        raise UnknownExample(name)
    return EXAMPLES_DIR / name
