"""Chaos scenarios run services as real processes and break them at a chosen point."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/chaos/" in str(item.fspath):
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.timeout(180))
