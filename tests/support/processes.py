"""Services as real OS processes (`python -m services.<name>`), for crash tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path):
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}-{os.getpid()}-{id(self)}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServiceProcess":
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], cwd=ROOT,
                                     env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT)
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


def service_env(nats_url: str, database_url: str, unique: str, **extra: str) -> dict[str, str]:
    return {"YOKEFLOW_NATS_URL": nats_url, "YOKEFLOW_DATABASE_URL": database_url,
            "YOKEFLOW_SUBJECT_PREFIX": f"t{unique}", "YOKEFLOW_STREAM": f"EV_{unique}",
            "YOKEFLOW_LOG_STREAM": f"LOG_{unique}", "YOKEFLOW_LOG_LEVEL": "WARNING", **extra}
