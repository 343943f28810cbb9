"""What the sandbox costs per command: the same commands through `run_shell` in the bubblewrap
jail (agent.sandbox: required) and unconfined (off), in one invocation, as a table of ratios.

    python bench/sandbox_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.executor.agent.commands import run_shell  # noqa: E402
from shared.config import SandboxSettings  # noqa: E402
from shared.sandbox import Jail, unavailable_reason  # noqa: E402

COMMANDS = {
    "true": "true",
    "python -c pass": "python -c pass",
    "small pytest (5 tests)": "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 python -m pytest -q -p no:cacheprovider test_small.py",
}
SMALL_TESTS = "".join(f"def test_{i}():\n    assert {i} + 1 == {i + 1}\n\n" for i in range(5))


async def timed(jail: Jail, command: str, cwd: Path) -> float:
    start = time.perf_counter()
    result = await run_shell(command, cwd=cwd, jail=jail, timeout_s=120, output_cap=4000)
    elapsed = time.perf_counter() - start
    if not result.passed:
        raise SystemExit(f"sandbox_bench: {command!r} failed ({'sandboxed' if jail.confined else 'unconfined'}): "
                         f"{result.output.strip()[-400:]}")
    return elapsed


async def main(runs: int) -> None:
    if reason := unavailable_reason(SandboxSettings()):
        raise SystemExit(f"sandbox_bench: {reason}")
    with tempfile.TemporaryDirectory(prefix="yf-sandbox-bench-") as tmp:
        root = Path(tmp) / "wt"
        root.mkdir()
        (root / "test_small.py").write_text(SMALL_TESTS)
        for n in range(200):  # a worktree with some files: the jail hands them over before each command
            (root / f"src_{n}.py").write_text("x = 1\n")
        env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])}
        jails = {"off": Jail.for_worktree(root, SandboxSettings(mode="off"), extra_env=env),
                 "sandboxed": Jail.for_worktree(root, SandboxSettings(), extra_env=env)}
        rows = []
        for name, command in COMMANDS.items():
            times: dict[str, list[float]] = {"off": [], "sandboxed": []}
            for _ in range(2):  # warm-up: page cache, imports
                for kind, jail in jails.items():
                    await timed(jail, command, root)
            for _ in range(runs):  # interleaved, so load on the machine hits both alike
                for kind, jail in jails.items():
                    times[kind].append(await timed(jail, command, root))
            off, boxed = statistics.median(times["off"]), statistics.median(times["sandboxed"])
            rows.append((name, off * 1000, boxed * 1000, (boxed - off) * 1000, boxed / off))
    print(f"sandbox overhead per command ({runs} runs each, medians; {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Linux {platform.release()}, Python {platform.python_version()}, euid {os.geteuid()})")
    print(f"{'command':<26}{'unconfined ms':>15}{'sandboxed ms':>15}{'overhead ms':>13}{'ratio':>8}")
    for name, off, boxed, extra, ratio in rows:
        print(f"{name:<26}{off:>15.1f}{boxed:>15.1f}{extra:>13.1f}{ratio:>7.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
