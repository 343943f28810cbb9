"""The code's boundaries, checked so they cannot erode: a service never imports another service
(what two need lives in shared/), shared/ imports no service, only the bus talks to JetStream's
internals, and only the config reads the process environment."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("services", "shared", "yokeflow")


def _modules(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (ROOT / r).rglob("*.py"))


def _imported(path: Path) -> list[tuple[int, str]]:
    """Every absolute import in the file, also those inside functions (a lazy import is still a dependency)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            if node.module == "services":  # `from services import ledger`
                found += [(node.lineno, f"services.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_service_imports_another_and_shared_imports_no_service():
    wrong = []
    for path in _modules("services", "shared"):
        rel = path.relative_to(ROOT)
        own = rel.parts[1] if rel.parts[0] == "services" and len(rel.parts) > 2 else None
        for line, module in _imported(path):
            parts = module.split(".")
            if parts[0] != "services" or len(parts) < 2:
                continue
            if own is None or parts[1] != own:
                wrong.append(f"{rel}:{line} imports {module}")
    assert not wrong, "move what both need into shared/:\n" + "\n".join(wrong)


def _lines_matching(pattern: str, allowed: str) -> list[str]:
    return [f"{p.relative_to(ROOT)}:{n}: {text.strip()}" for p in _modules(*CODE)
            if p.relative_to(ROOT).as_posix() != allowed
            for n, text in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, text)]


def test_only_the_bus_uses_the_jetstream_client_internals():
    wrong = _lines_matching(r"\b_jsm\b", "shared/bus.py")
    assert not wrong, "add a public method to shared/bus.py instead:\n" + "\n".join(wrong)


def test_only_the_bus_holds_the_nats_connection():
    # probes, the gateway's health and its live tails ask the bus (connected, readiness, fetch_tail)
    wrong = _lines_matching(r"\bbus\.(nc|js)\b|\.bus\.(nc|js)\b", "shared/bus.py")
    assert not wrong, "add a public method to shared/bus.py instead:\n" + "\n".join(wrong)


def test_only_the_subjects_module_takes_subjects_apart():
    # a line that splits on dots and speaks of a subject takes a subject apart
    wrong = _lines_matching(r"subject.*\.r?split\(\"\.\"|\.r?split\(\"\.\".*subject|subject\[len\(", "shared/subjects.py")
    assert not wrong, "parse it with shared/subjects.py (e.g. Subjects.parse_log):\n" + "\n".join(wrong)


def test_a_log_subject_parses_back_into_its_parts():
    from shared.subjects import LogSubject, Subjects

    subjects = Subjects("t1")
    assert subjects.parse_log(subjects.log("shop", "r1-t2", "tool_call")) == LogSubject("shop", "r1-t2", "tool_call")
    assert subjects.parse_log(subjects.event("shop", "run", "r1", "RunStarted")) is None
    assert Subjects("other").parse_log(subjects.log("shop", "r1-t2", "text")) is None
    assert subjects.parse_event(subjects.event("shop", "run", "r1", "RunStarted")) == ("shop", "run", "r1", "RunStarted")
    assert subjects.parse_event(subjects.log("shop", "r1-t2", "text")) is None
    assert Subjects.last_token(subjects.log("shop", "r1-t2", "text")) == "text"


def test_only_the_config_reads_the_process_environment():
    wrong = _lines_matching(r"\bos\.(environ|getenv|putenv)\b|\bfrom os import\b.*\b(environ|getenv)\b",
                            "shared/config.py")
    assert not wrong, ("take the value from shared/config.py (a Config field, or process_env() where the "
                       "whole environment is the point):\n" + "\n".join(wrong))
