"""Ref updates the way git's files backend makes them: `<ref>.lock` created exclusively, the value
compared under the lock (compare-and-set), written into the lock file and renamed into place
(a reflog line when a message is given). Unlike dulwich's default, the lock file is fsynced only when the repository's
`core.fsync` asks for references (git's default flushes packs and their metadata, not refs)."""

from __future__ import annotations

import dataclasses
import os
import time

from dulwich.ignore import default_user_ignore_filter_path
from dulwich.refs import SYMREF, ZERO_SHA, check_ref_format, is_per_worktree_ref
from dulwich.reflog import format_reflog_line
from dulwich.repo import Repo, get_user_identity

from shared.config import process_env
from shared.gitops.errors import GitError
from shared.gitops.locks import LockFile, ref_update

# git's core.fsync component names (config.c, fsync_component_names) -> do they include references
_REF_COMPONENTS = {"reference", "committed", "added", "all"}
_settings: dict[tuple, "Settings"] = {}   # config files' stats -> what was read from them


def fsync_references(value: str | None) -> bool:
    """Whether git flushes reference writes for this `core.fsync` value. git computes
    (default & ~negated) | named, and its default (packs and pack metadata) holds no references,
    so references are flushed exactly when a component including them (`reference`, `committed`,
    `added`, `all`) is named without a `-`; like git, a token names every component it begins
    (`ref` is `reference`)."""
    for token in (value or "").split(","):
        token = token.lstrip(" \t\n\r")
        if token == "-":
            return False   # git warns and reads no further
        if token and not token.startswith("-") and any(n.startswith(token) for n in _REF_COMPONENTS):
            return True
    return False


def _config_files(repo: Repo) -> list[str]:
    """The files dulwich's config stack reads (StackedConfig.default_backends), plus the repository's."""
    files = [os.path.join(repo.commondir(), "config"), os.path.join(repo.controldir(), "config.worktree")]
    env = process_env()   # git's own variables: where its configuration lives
    if "GIT_CONFIG_GLOBAL" in env:
        files.append(env["GIT_CONFIG_GLOBAL"])
    else:
        xdg = env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        files += [os.path.expanduser("~/.gitconfig"), os.path.join(xdg, "git", "config")]
    if "GIT_CONFIG_SYSTEM" in env:
        files.append(env["GIT_CONFIG_SYSTEM"])
    elif "GIT_CONFIG_NOSYSTEM" not in env:
        files.append("/etc/gitconfig")
    return files


def _stat_key(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What git work reads from the configuration stack (repository, user, system)."""
    fsync_refs: bool          # core.fsync names references
    identity: bytes           # who reflog lines name
    user_ignore: str          # core.excludesFile, or git's default user ignore file
    ignorecase: bool          # core.ignorecase


def repo_settings(repo: Repo) -> Settings:
    """The repository's `Settings`, read again only when a config file changes (reading git's
    config stack cost more than a ref write, and most of a commit's staging)."""
    key = tuple(_stat_key(p) for p in _config_files(repo)) + tuple(
        process_env().get(v) for v in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "HOME", "XDG_CONFIG_HOME"))
    found = _settings.get(key)
    if found is None:
        config = repo.get_config_stack()
        try:
            raw = config.get((b"core",), b"fsync")
        except KeyError:
            raw = None
        found = Settings(fsync_references(raw.decode() if isinstance(raw, bytes) else raw), get_user_identity(config),
                         default_user_ignore_filter_path(config), config.get_boolean(b"core", b"ignorecase", False))
        if len(_settings) > 64:
            _settings.clear()
        _settings[key] = found
    return found


def _resolve(repo: Repo, name: bytes) -> bytes:
    """The ref a write to `name` lands on: symbolic refs (HEAD) followed, as git does."""
    real = name
    for _ in range(5):
        raw = repo.refs.read_loose_ref(real)
        if raw is None or not raw.startswith(SYMREF):
            return real
        real = raw[len(SYMREF):].strip()
    raise GitError(f"{name.decode()} is a chain of more than 5 symbolic refs in {repo.path}; fix it with `git symbolic-ref`")


def _current(repo: Repo, real: bytes) -> bytes | None:
    raw = repo.refs.read_loose_ref(real)
    if raw is not None:
        return raw.strip()
    return repo.refs.get_packed_refs().get(real)


def _reflog(repo: Repo, name: bytes, old: bytes | None, new: bytes, who: bytes, message: bytes) -> None:
    root = repo.controldir() if is_per_worktree_ref(name) else repo.commondir()
    path = os.path.join(os.fsencode(root), b"logs", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "ab") as f:
        f.write(format_reflog_line(old or ZERO_SHA, new, who, int(time.time()), _tz(), message) + b"\n")


def _tz() -> int:
    return -time.altzone if time.daylight and time.localtime().tm_isdst > 0 else -time.timezone


def _write(repo: Repo, name: bytes, expect, new: bytes, message: bytes | None) -> bool:
    """expect: the value the ref must have (None: must not exist; ... : anything)."""
    if not check_ref_format(name) and name != b"HEAD":
        raise GitError(f"{name.decode(errors='replace')!r} is not a valid ref name (see `git check-ref-format`)")
    if len(new) != 40:
        raise GitError(f"{new!r} is not a full hex object id")
    real = _resolve(repo, name)
    path = repo.refs.refpath(real)
    packed = repo.refs.get_packed_refs()
    parent = real.rpartition(b"/")[0]
    while parent:   # git refuses a ref inside another ref's name (refs/heads/a/b beside refs/heads/a)
        if parent in packed:
            raise GitError(f"cannot write {real.decode()}: {parent.decode()} exists; delete it or pick another name")
        parent = parent.rpartition(b"/")[0]
    settings = repo_settings(repo)
    fsync, who = settings.fsync_refs, settings.identity
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with LockFile(path) as lock:   # removed unless committed
        current = _current(repo, real)   # read again under the lock: the compare in compare-and-set
        if expect is not ... and current != expect:
            return False
        if current == new:
            return True
        if message is not None:   # as dulwich did: a line in the ref's log when the caller gives a message
            _reflog(repo, real, current, new, who, message)
        lock.commit(new + b"\n", fsync=fsync)
    return True


def set_ref(repo: Repo, name: bytes, old: bytes | None, new: bytes, *, message: bytes | None = None) -> bool:
    """Move `name` (HEAD followed to its branch) from `old` to `new`; False when it does not hold
    `old` (None: the ref must not exist yet). A lock left by a killed writer is cleared after
    REF_LOCK_STALE_S; a live writer's lock is waited for."""
    return ref_update(lambda: _write(repo, name, old, new, message))


def add_ref(repo: Repo, name: bytes, sha: bytes, *, message: bytes | None = None) -> bool:
    """Create `name` at `sha`; False when it already exists."""
    return ref_update(lambda: _write(repo, name, None, sha, message))
