"""A started process settles its garbage collector once: what it loaded is frozen out of the
collector's scans."""

from __future__ import annotations

import subprocess
import sys


def test_settle_gc_freezes_what_was_loaded_once():
    code = (
        "import gc\n"
        "from shared import runner\n"
        "runner.settle_gc()\n"
        "frozen = gc.get_freeze_count()\n"
        "junk = [object() for _ in range(1000)]\n"
        "runner.settle_gc()\n"
        "print(frozen > 1000, gc.get_freeze_count() == frozen)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
