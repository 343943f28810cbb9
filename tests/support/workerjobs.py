"""Jobs for the git worker's tests (shared.gitworker): module-level, so the worker can import them."""

from __future__ import annotations

import os
import time

from shared.gitops import GitError


class Unrebuildable(Exception):
    """An exception that pickles but cannot be made again from its arguments."""

    def __init__(self, what: str, why: str):
        super().__init__(f"{what}: {why}")


def pid_and(value):
    return os.getpid(), value


def fail_with_git_error(message: str):
    raise GitError(message)


def fail_unrebuildable():
    raise Unrebuildable("a job", "its exception needs two arguments")


def chatty(text: str) -> str:
    print(text)  # a stray print must not reach the answers
    return text.upper()


def sleep_then(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def write_pid(path: str) -> int:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    return os.getpid()
