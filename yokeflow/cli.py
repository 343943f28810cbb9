"""The `yokeflow` command line. Each command group lives in yokeflow/commands/<name>.py
and exposes `register(subparsers)`; a command's handler returns its exit code."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from pathlib import Path

from shared import telemetry
from yokeflow import __version__
from shared.config import ConfigError, load_config
from shared.db import DatabaseUnavailable
from shared.scrub import install_log_scrubber, scrub
from yokeflow.errors import CliError

COMMAND_MODULES = [
    "yokeflow.commands.runtime",  # up, run, status, events
    "yokeflow.commands.demo",
    "yokeflow.commands.plan",     # plan check / show / create / approve
    "yokeflow.commands.git",      # git merge
    "yokeflow.commands.worktrees",
    "yokeflow.commands.projections",
    "yokeflow.commands.merge",
    "yokeflow.commands.expertise",
    "yokeflow.commands.costs",    # costs, budget set / show
    "yokeflow.commands.mcp",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yokeflow", description="Run many AI coding agents in parallel on one codebase.")
    parser.add_argument("--version", action="version", version=f"yokeflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the services do")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # command group not built into this installation
            raise
        module.register(sub)
    return parser


def sigterm_as_interrupt(signum, frame) -> None:
    """A SIGTERM handler: the process ends as on Ctrl-C, through its clean-up (also bench.scheduling's).

    When Python code of the process handles SIGINT (inside `asyncio.run`, asyncio's own handler,
    which cancels the main task: its clean-up runs and `asyncio.run` then raises KeyboardInterrupt;
    or a loop's `add_signal_handler`), the signal goes to it, as Ctrl-C's would. Otherwise (the
    default handler, or SIGINT ignored, as in a background job) KeyboardInterrupt is raised here.
    Raised inside `asyncio.run` it could be lost: a signal handler runs wherever the interpreter
    is, and an exception raised inside a weakref callback or a `__del__` (the garbage collector's)
    is printed and dropped, which left `yokeflow events tail` running after its SIGTERM."""
    on_interrupt = signal.getsignal(signal.SIGINT)
    if callable(on_interrupt) and on_interrupt is not signal.default_int_handler:
        signal.raise_signal(signal.SIGINT)
        return
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    install_log_scrubber()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "state_dir", False) is None:
        try:
            args.state_dir = Path(load_config().runtime.state_dir)
        except ConfigError as exc:
            print(f"yokeflow: {exc}", file=sys.stderr)
            return 2
    # SIGTERM ends a command like Ctrl-C does: through its cleanup (embedded servers stop, nothing leaks).
    signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    try:
        # Every command traces (so events carry traceparent); export follows the OTEL_* variables.
        telemetry.setup("yokeflow", console=bool(getattr(args, "trace_console", False)))
    except telemetry.TelemetryError as exc:
        print(f"yokeflow: {exc}", file=sys.stderr)
        return 2
    try:
        code = args.func(args)
    except CliError as exc:
        print(f"yokeflow: {scrub(str(exc))}", file=sys.stderr)
        return exc.code
    except DatabaseUnavailable as exc:
        print(f"yokeflow: {scrub(str(exc))} (check YOKEFLOW_DATABASE_URL)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
