"""A started process settles its garbage collector once: what it loaded is frozen out of the
collector's scans, and young objects are collected less often."""

from __future__ import annotations

import subprocess
import sys

from shared import runner


def test_settle_gc_freezes_what_was_loaded_and_raises_the_young_threshold_once():
    code = (
        "import gc\n"
        "from shared import runner\n"
        "before = gc.get_threshold()\n"
        "runner.settle_gc()\n"
        "frozen = gc.get_freeze_count()\n"
        "junk = [object() for _ in range(1000)]\n"
        "runner.settle_gc()\n"
        "print(before[0], gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:], frozen > 1000,"
        " gc.get_freeze_count() == frozen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["700", str(runner.GC_YOUNG_THRESHOLD), "True", "True", "True"]
