"""Deployment descriptions stay in step with the services that exist."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__main__.py").exists())


def test_every_service_runs_alone():
    assert set(SERVICES) == {"planner", "executor", "merger", "learner", "ledger", "gateway"}


def test_compose_runs_every_service_against_nats_and_postgres():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"nats", "postgres"} <= set(compose)
    for name in SERVICES:
        assert compose[name]["command"] == ["python", "-m", f"services.{name}"]


def test_kustomize_has_a_probed_deployment_per_service():
    kustomization = yaml.safe_load((ROOT / "deploy/k8s/kustomization.yaml").read_text())
    docs = [d for f in kustomization["resources"] for d in yaml.safe_load_all((ROOT / "deploy/k8s" / f).read_text()) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for name, d in deployments.items():
        container = d["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert "readinessProbe" in container and "livenessProbe" in container
    nats = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats")
    assert nats["spec"]["replicas"] == 3
    assert any(d["kind"] == "ScaledObject" and d["spec"]["scaleTargetRef"]["name"] == "executor" for d in docs)
