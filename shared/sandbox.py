"""One jail for every command YokeFlow runs on a person's behalf (agent commands, task checks,
setup commands): bubblewrap with the worktree as the only writable place, no network, a clean
environment, resource limits, and an unprivileged user when YokeFlow runs as root.

What the command sees: the system folders (/usr, /etc, ...) and this Python read-only, the
worktree read-write (its `.git` pointer and the repository's git folder read-only), its own
/tmp and /proc; nothing else of the machine (no home, no other worktree, no state folder, no
main checkout). bwrap itself starts with the allow-list environment, because it stays PID 1
inside and /proc/1/environ would show whatever it was started with.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from shared.config import SandboxSettings, parse_config, process_env
from shared.scrub import is_secret_name, secret_values

log = logging.getLogger("yokeflow.sandbox")

SANDBOX_USER = "yokeflow_sandbox"
SHELL = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"
SYSTEM_DIRS = ("/usr", "/etc", "/opt")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
OFF_WARNING = ("agent.sandbox is off: commands run UNCONFINED as this user, with its files and network "
               "(set agent.sandbox: required and install bubblewrap to confine them)")
_MB = 1024 * 1024
# this interpreter first, so `python` in a command is the one running YokeFlow (its venv is mounted)
SANDBOX_PATH = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                "/usr/bin", "/sbin", "/bin"])


SECRET_NAMES = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"})
SECRET_PREFIXES = ("YOKEFLOW_",)
SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_KEY", "_API_KEY", "_PAT")


def is_secret(name: str) -> bool:
    upper = name.upper()
    return (upper in SECRET_NAMES or upper.startswith(SECRET_PREFIXES) or upper.endswith(SECRET_SUFFIXES)
            or is_secret_name(name))  # the scrubber's rule too: PGPASSWORD, *_PAT, *_CREDENTIALS, …


def scrubbed_env(inherited: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Unconfined commands only: the inherited environment without secrets, then `extra` on top."""
    # a URL with a password (DATABASE_URL=postgresql://u:pw@…) is a secret whatever its name
    env = {k: v for k, v in inherited.items() if not is_secret(k) and not secret_values({k: v})}
    env.update(extra or {})
    return env


class SandboxUnavailable(RuntimeError):
    """The sandbox is required but cannot run here; the message is one line naming the fix."""


def settings_from(value: object) -> SandboxSettings:
    """agent.sandbox as a run carries it (a mapping, or the shorthand `required` / `off`)."""
    if isinstance(value, SandboxSettings):
        return value
    if value is None or value == {}:
        return SandboxSettings()
    data = parse_config({"agent": {"sandbox": value}}, "agent.sandbox").agent.sandbox
    return data


def bwrap_binary() -> str | None:
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)


_DETECT = object()


def unavailable_reason(settings: SandboxSettings, *, bwrap: str | None | object = _DETECT,
                       platform: str = sys.platform) -> str | None:
    """Why a `required` sandbox cannot run here (one line with the fix), or None."""
    if settings.mode == "off":
        return None
    if not platform.startswith("linux"):
        return (f"agent.sandbox is 'required' but commands can only be sandboxed on Linux (bubblewrap); "
                f"on {platform} set agent.sandbox: off to run them unconfined")
    if (bwrap_binary() if bwrap is _DETECT else bwrap) is None:
        return ("agent.sandbox is 'required' but bubblewrap is not installed: apt-get install bubblewrap "
                "(or set agent.sandbox: off to run commands unconfined)")
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return ("agent.sandbox is 'required' and YokeFlow runs as root, but setpriv is missing to drop to an "
                "unprivileged user: apt-get install util-linux")
    return None


def require(settings: SandboxSettings) -> None:
    reason = unavailable_reason(settings)
    if reason:
        raise SandboxUnavailable(reason)


def sandbox_ids() -> tuple[int, int] | None:
    """As root, commands run as a dedicated system user (created once); otherwise as this user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "-s", "/usr/sbin/nologin",
                        SANDBOX_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(SANDBOX_USER)
    return entry.pw_uid, entry.pw_gid


def _git_dirs(root: Path) -> tuple[list[Path], Path | None]:
    """The worktree's `.git` (file or folder) and the repository's git folder the pointer leads to."""
    dot_git = root / ".git"
    if dot_git.is_dir() and not dot_git.is_symlink():
        return [dot_git], None
    if not dot_git.is_file():
        return [], None
    text = dot_git.read_text(errors="replace").strip()
    if not text.startswith("gitdir:"):
        return [dot_git], None
    gitdir = (root / text.split(":", 1)[1].strip()).resolve()
    common = gitdir
    if (gitdir / "commondir").is_file():
        common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
    return [dot_git], common if common.is_dir() else None


def hand_over(root: Path, ids: tuple[int, int], seen: dict[str, int] | None = None) -> None:
    """Let the sandbox user write the worktree: it owns every file but the top folder and `.git`,
    which stay YokeFlow's (so git, run by YokeFlow, still trusts the worktree); the top folder
    is writable by the sandbox group. `seen`: folder -> mtime at the last hand-over; the files of
    a folder whose mtime has not moved since are not looked at again (nothing was added there)."""
    uid, gid = ids
    st = os.lstat(root)
    if st.st_gid != gid:
        os.chown(root, -1, gid)
    if st.st_mode & 0o070 != 0o070:
        os.chmod(root, (st.st_mode & 0o7777) | 0o070)
    folders = [str(root)]
    while folders:
        folder = folders.pop()
        try:
            mtime = os.lstat(folder).st_mtime_ns  # before listing: a later addition moves it again
            fresh = seen is None or seen.get(folder) != mtime
            with os.scandir(folder) as entries:
                for entry in entries:
                    if folder == str(root) and entry.name == ".git":
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif not fresh:
                        continue
                    s = entry.stat(follow_symlinks=False)
                    if s.st_uid != uid or s.st_gid != gid:
                        os.lchown(entry.path, uid, gid)
        except FileNotFoundError:  # removed meanwhile
            continue
        if seen is not None:
            seen[folder] = mtime


@dataclass
class Jail:
    """How commands run in one worktree under `settings`."""

    root: Path
    settings: SandboxSettings = field(default_factory=SandboxSettings)
    env: dict[str, str] = field(default_factory=dict)  # the allow-listed environment the command gets
    ids: tuple[int, int] | None = None
    binds: tuple[Path, ...] = ()  # more folders the command may write (e.g. a tool's own state)
    seen: dict[str, int] = field(default_factory=dict)  # hand-over bookkeeping between commands

    @classmethod
    def for_worktree(cls, root: Path | str, settings: SandboxSettings | None = None, *,
                     extra_env: Mapping[str, str] | None = None, env_allow: tuple[str, ...] | list[str] = (),
                     inherited: Mapping[str, str] | None = None) -> "Jail":
        settings = settings or SandboxSettings()
        inherited = process_env() if inherited is None else inherited
        root = Path(os.path.realpath(root))
        if settings.mode == "off":
            return cls(root, settings, scrubbed_env(inherited, extra_env))
        require(settings)
        env = {"PATH": SANDBOX_PATH, "HOME": "/tmp", "TMPDIR": "/tmp", "TERM": "dumb",
               "LANG": inherited.get("LANG", "C.UTF-8"),
               # an edit within the same second and size as the last import would run a stale .pyc
               "PYTHONDONTWRITEBYTECODE": "1",
               # the repository's git folder is YokeFlow's: let git read it as the sandbox user
               "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"}
        if "LC_ALL" in inherited:
            env["LC_ALL"] = inherited["LC_ALL"]
        env.update({name: inherited[name] for name in env_allow if name in inherited})
        env.update(extra_env or {})
        return cls(root, settings, env, sandbox_ids())

    @property
    def confined(self) -> bool:
        return self.settings.mode != "off"

    def argv(self, command: str, cwd: Path | None = None) -> list[str]:
        if not self.confined:
            return [SHELL, "-c", command]
        if self.ids:
            hand_over(self.root, self.ids, self.seen)
            for extra in self.binds:
                hand_over(extra, self.ids, self.seen)
        return self._bwrap(cwd or self.root) + self._drop() + [SHELL, "-c", command]

    def _bwrap(self, cwd: Path) -> list[str]:
        args = [bwrap_binary() or "bwrap", "--die-with-parent", "--new-session", "--unshare-pid",
                "--unshare-ipc", "--unshare-uts", "--hostname", "yokeflow-sandbox"]
        if not self.settings.network:
            args.append("--unshare-net")
        if not self.ids:  # unprivileged bwrap needs a user namespace to mount; as root it has no need
            args.append("--unshare-user-try")
        for d in SYSTEM_DIRS:
            args += ["--ro-bind-try", d, d]
        for link in MERGED_USR_LINKS:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            else:
                args += ["--ro-bind-try", link, link]
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm",
                 "--perms", "1777", "--tmpfs", "/tmp"]
        made: set[str] = set()

        def bind(kind: str, src: Path) -> None:
            for parent in reversed(src.parents):  # bwrap would copy a 0700 parent's mode; keep them passable
                if str(parent) != "/" and str(parent) not in made and not _under_system(parent):
                    made.add(str(parent))
                    args.extend(["--perms", "0755", "--dir", str(parent)])
            args.extend([kind, str(src), str(src)])

        for prefix in sorted({Path(p).resolve() for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}):
            if not _under_system(prefix) and prefix.is_dir():
                bind("--ro-bind", prefix)
        git_pointers, common = _git_dirs(self.root)
        if common and common != self.root and self.root not in common.parents:
            bind("--ro-bind", common)
        bind("--bind", self.root)
        for extra in self.binds:
            bind("--bind", extra)
        for p in git_pointers:  # an agent must not repoint or rewrite the git folder YokeFlow commits with
            args += ["--ro-bind", str(p), str(p)]
        return args + ["--chdir", str(cwd)]

    def _drop(self) -> list[str]:
        if not self.ids:
            return []
        uid, gid = self.ids
        # bwrap, as root, keeps only these two capabilities for setpriv, which drops them and every other
        return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--", "setpriv", f"--reuid={uid}",
                f"--regid={gid}", "--clear-groups", "--bounding-set=-all", "--inh-caps=-all", "--no-new-privs",
                "--"]

    def preexec(self) -> Callable[[], None] | None:
        """Limits set in the child before bwrap starts; every process of the command inherits them."""
        if not self.confined:
            return None
        s = self.settings
        limits = [(resource.RLIMIT_CPU, s.cpu_seconds), (resource.RLIMIT_AS, s.memory_mb * _MB),
                  (resource.RLIMIT_NPROC, s.max_processes), (resource.RLIMIT_FSIZE, s.max_file_mb * _MB),
                  (resource.RLIMIT_CORE, 0)]
        prctl = _libc_prctl()

        def apply() -> None:
            for which, value in limits:
                resource.setrlimit(which, (value, value))
            if prctl is not None:
                prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: bwrap ends if YokeFlow dies

        return apply

    def run(self, command: str, *, timeout_s: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """Synchronously (setup commands): output merged, killed with its process group at the timeout."""
        proc = subprocess.Popen(self.argv(command, cwd), cwd=cwd or self.root, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=self.preexec())
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return subprocess.CompletedProcess(proc.args, -9, out.decode("utf-8", "replace")
                                               + f"\n[timed out after {timeout_s:g} s]")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode("utf-8", "replace"))


def kill_group(pgid: int) -> None:
    """Kill a jailed command's whole process group (it was started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _under_system(path: Path) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in SYSTEM_DIRS + MERGED_USR_LINKS)


def _libc_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def warn_if_off(settings: SandboxSettings) -> str | None:
    if settings.mode == "off":
        log.warning(OFF_WARNING)
        return OFF_WARNING
    return None
