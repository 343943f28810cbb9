"""Every third-party module the code, tests and benchmarks import is declared in pyproject.toml,
directly (not only through another package's requirements): a fresh machine installs only what
is declared, so anything else passes here and fails there."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCAL = {"shared", "services", "yokeflow", "tests", "bench"}
SCANNED = ["shared", "services", "yokeflow", "tests", "bench"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_norm(re.split(r"[\s\[<>=!~;(]", r.strip(), maxsplit=1)[0]) for r in reqs}


def _imports() -> dict[str, set[str]]:
    """Top-level module -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for folder in SCANNED:
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".", 1)[0]
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_declared_directly():
    declared = _declared()
    distributions = md.packages_distributions()
    missing = []
    for module, files in sorted(_imports().items()):
        if module in LOCAL or module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = {_norm(d) for d in distributions.get(module, [])} or {_norm(module)}
        if not dists & declared:
            missing.append(f"{module} (distribution {', '.join(sorted(dists))}) in {', '.join(sorted(files)[:3])}")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(missing)


def test_the_scan_sees_the_imports_it_should():
    """Guards the test above against scanning nothing."""
    found = _imports()
    assert {"msgspec", "nats", "dulwich", "pytest"} <= set(found)
