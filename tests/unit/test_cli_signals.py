"""SIGTERM ends a command as Ctrl-C does (yokeflow.cli.sigterm_as_interrupt), wherever it lands.

Each case runs in a fresh interpreter: asyncio.run handles SIGINT only in the main thread, and the
suite's own event loop must not be touched."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HEADER = """
import asyncio, os, signal, weakref
from yokeflow.cli import sigterm_as_interrupt
signal.signal(signal.SIGTERM, sigterm_as_interrupt)
"""


def run(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", HEADER + textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_sigterm_landing_in_a_weakref_callback_still_ends_the_command_through_its_clean_up():
    # A signal handler runs wherever the interpreter is. An exception raised inside a weakref
    # callback (or a __del__) is printed and dropped: raised there, the interrupt was lost and
    # `yokeflow events tail` kept running after its SIGTERM.
    seen = run("""
        class Thing:
            pass

        async def main():
            thing = Thing()
            ref = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGTERM))
            try:
                del thing  # its callback sends the signal, and the handler runs inside it
                await asyncio.sleep(10)
                print("slept-on")
            finally:
                print("cleaned-up")

        try:
            asyncio.run(main())
            print("no-interrupt")
        except KeyboardInterrupt:
            print("interrupted")
    """)
    assert seen == ["cleaned-up", "interrupted"]


# SIGINT left to Python's default handler, or ignored (a background job of a non-interactive shell
# starts with SIGINT ignored)
@pytest.mark.parametrize("sigint", ["", "signal.signal(signal.SIGINT, signal.SIG_IGN)"], ids=["default", "ignored"])
def test_a_sigterm_outside_an_event_loop_is_a_keyboard_interrupt(sigint):
    seen = run(f"""
        import time
        {sigint}
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
            print("slept-on")
        except KeyboardInterrupt:
            print("interrupted")
    """)
    assert seen == ["interrupted"]


def test_a_sigterm_reaches_a_loop_that_handles_sigint_itself():
    seen = run("""
        async def main():
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 10)
            print("stopped")

        asyncio.run(main())
    """)
    assert seen == ["stopped"]
