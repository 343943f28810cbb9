"""Each container of each kustomize overlay, started with its command and the environment the
kubelet would give it (NATS, PostgreSQL and the trace collector swapped for the test's own),
becomes ready by its own readiness probe and stops cleanly on SIGTERM: no crash from configuration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from shared.infra import free_port
from tests.support.k8s import ROOT, SERVICES, container, container_env, deployments, render
from tests.support.otlp import OtlpReceiver
from tests.support.processes import as_identity, service_env

pytestmark = pytest.mark.integration
PORT_SETTINGS = {"http": "YOKEFLOW_GATEWAY_PORT", "health": "YOKEFLOW_HEALTH_PORT", "git": "YOKEFLOW_GIT_HTTP_PORT"}


def swap_endpoint(url: str, test_url: str) -> str:
    """The rendered URL (credentials, database name) pointed at the test's server instead."""
    ours, theirs = urllib.parse.urlsplit(url), urllib.parse.urlsplit(test_url)
    creds = ours.netloc.rpartition("@")[0]
    netloc = f"{creds}@{theirs.hostname}:{theirs.port}" if creds else f"{theirs.hostname}:{theirs.port}"
    return urllib.parse.urlunsplit((ours.scheme, netloc, theirs.path or ours.path, "", ""))


def probe_passes(probe: dict, env: dict[str, str], ports: dict[str, int]) -> bool:
    target = probe.get("httpGet") or probe.get("tcpSocket")
    port = ports[target["port"]] if target else None
    if "exec" in probe:
        return subprocess.run(probe["exec"]["command"], cwd=ROOT, env=env, capture_output=True,
                              timeout=30).returncode == 0
    if "httpGet" in probe:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe['httpGet']['path']}", timeout=5) as r:
                return 200 <= r.status < 400
        except (urllib.error.URLError, ConnectionError):
            return False
    if "tcpSocket" in probe:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    raise AssertionError(f"unknown probe {probe}")


@pytest.mark.parametrize("overlay", ["local", "production"])
async def test_every_container_starts_and_becomes_ready(overlay, nats_server, database_url, unique, tmp_path):
    docs = render(overlay)
    isolation = service_env(nats_server.url, database_url, unique)
    placeholder = f"test-secret-{uuid.uuid4().hex}"  # production's Secrets are created by the operator
    procs: dict[str, tuple[subprocess.Popen, dict, dict, dict[str, int]]] = {}
    with OtlpReceiver() as receiver:
        try:
            for name, d in deployments(docs).items():
                c = container(d)
                env = container_env(c, docs, missing_secret=placeholder)
                env["YOKEFLOW_NATS_URL"] = swap_endpoint(env["YOKEFLOW_NATS_URL"], nats_server.url)
                # the rendered user (each service its own), with the test server's password for it
                env["YOKEFLOW_NATS_URL"] = as_identity(env["YOKEFLOW_NATS_URL"],
                                                       urllib.parse.urlsplit(env["YOKEFLOW_NATS_URL"]).username or "cli")
                if "YOKEFLOW_DATABASE_URL" in env:
                    assert env["YOKEFLOW_DATABASE_URL"].startswith("postgresql://") or overlay == "production"
                    env["YOKEFLOW_DATABASE_URL"] = database_url  # the test server's own role and database
                env["YOKEFLOW_STREAM_REPLICAS"] = "1"  # the test's NATS is one server, not three
                if "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
                    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
                ports = {}  # each named container port on a free local port, through the setting that picks it
                for p in c.get("ports", []):
                    ports[p["name"]] = free_port()
                    env[PORT_SETTINGS[p["name"]]] = str(ports[p["name"]])
                env["HOME"] = str(tmp_path)  # the pod's /tmp emptyDir
                for key in ("YOKEFLOW_GIT_ROOT", "YOKEFLOW_EXECUTOR_SCRATCH"):  # the pod's volumes
                    if key in env:
                        env[key] = str(tmp_path / key.lower())
                env = {"PATH": os.environ["PATH"], **env,
                       **{k: v for k, v in isolation.items() if k not in ("YOKEFLOW_NATS_URL", "YOKEFLOW_DATABASE_URL")}}
                command = [sys.executable if c["command"][0] == "python" else c["command"][0], *c["command"][1:]]
                log = open(tmp_path / f"{overlay}-{name}.log", "wb")
                procs[name] = (subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                               c, env, ports)
                log.close()
            for name, (proc, c, env, ports) in procs.items():
                probe = {**c["readinessProbe"]}
                if "exec" in probe and probe["exec"]["command"][0] == "python":
                    probe["exec"] = {"command": [sys.executable, *probe["exec"]["command"][1:]]}
                for _ in range(120):  # bounds the wait only: a crashed process fails at once below
                    assert proc.poll() is None, (tmp_path / f"{overlay}-{name}.log").read_text()[-3000:]
                    if probe_passes(probe, env, ports):
                        break
                    time.sleep(0.5)
                else:
                    pytest.fail(f"{overlay}/{name} never became ready: "
                                f"{(tmp_path / f'{overlay}-{name}.log').read_text()[-3000:]}")
                assert probe_passes(c["livenessProbe"] if "exec" not in c["livenessProbe"] else
                                    {"exec": {"command": [sys.executable, *c["livenessProbe"]["exec"]["command"][1:]]}},
                                    env, ports), name
        finally:
            for proc, *_ in procs.values():
                if proc.poll() is None:
                    proc.terminate()
            codes = {}
            for name, (proc, *_) in procs.items():
                try:
                    codes[name] = proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    codes[name] = "killed"
        assert codes == {name: 0 for name in SERVICES}, codes
    if overlay == "production":  # traces reach the collector the overlay names
        assert {s.service for s in receiver.spans} >= {"yokeflow-gateway"}
