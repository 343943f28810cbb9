"""Services as real OS processes (`python -m services.<name>`), for crash tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from urllib.parse import urlsplit, urlunsplit

from shared.infra import nats_url_for

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path):
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}-{os.getpid()}-{id(self)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        env = {**os.environ, **self.env}
        # The service connects to NATS as itself (the database URL stays the owner's: a lone ledger
        # process migrates the test's fresh database, as a deployment's first start does).
        env["YOKEFLOW_NATS_URL"] = as_identity(env["YOKEFLOW_NATS_URL"], self.name)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], cwd=ROOT,
                                     env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no ack, no goodbye."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def as_identity(nats_url: str, identity: str) -> str:
    """The test server's URL with `identity`'s credentials (replacing any it carried)."""
    parts = urlsplit(nats_url)
    return nats_url_for(urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])), identity)


def service_env(nats_url: str, database_url: str, unique: str, **extra: str) -> dict[str, str]:
    """The environment of a service or CLI process on the test's servers; the NATS URL carries the
    CLI's credentials (ServiceProcess swaps in the service's own)."""
    return {"YOKEFLOW_NATS_URL": as_identity(nats_url, "cli"), "YOKEFLOW_DATABASE_URL": database_url,
            "YOKEFLOW_SUBJECT_PREFIX": f"t{unique}", "YOKEFLOW_STREAM": f"EV_{unique}",
            "YOKEFLOW_LOG_STREAM": f"LOG_{unique}", "YOKEFLOW_LOG_LEVEL": "WARNING", **extra}
