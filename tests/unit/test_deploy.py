"""Deployment descriptions stay in step with the services that exist, render, validate offline
against the Kubernetes schemas, and keep their doors closed."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.k8s import OVERLAYS, SERVICES, container, deployments, find, render

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32"
MODEL_CALLERS = {"executor", "planner"}


def test_every_service_runs_alone():
    found = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__main__.py").exists())
    assert set(found) == set(SERVICES)


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_every_service_against_nats_and_postgres():
    services = compose()["services"]
    assert {"nats", "postgres"} <= set(services)
    for name in SERVICES:
        assert services[name]["command"] == ["python", "-m", f"services.{name}"]
        env = services[name]["environment"]
        assert env["YOKEFLOW_NATS_URL"].startswith(f"nats://{name}:${{")  # each logs in as itself
        assert env["YOKEFLOW_HEALTH_PORT"] == "8080"


def test_compose_checks_every_container_and_publishes_only_the_gateway():
    services = compose()["services"]
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
        if name in SERVICES:
            assert test[1:] == ["python", "-m", "shared.probes", "readyz"]
            assert svc["read_only"] and svc["cap_drop"] == ["ALL"], name
    assert {name for name, svc in services.items() if svc.get("ports")} == {"gateway"}
    assert services["gateway"]["ports"] == ["8765:8765"]


def test_compose_takes_every_credential_from_the_env_file():
    text = (ROOT / "docker-compose.yml").read_text()
    services = compose()["services"]
    example = (ROOT / "deploy/compose/env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required == {line.split("=")[0] for line in example.splitlines() if line and not line.startswith("#")} - {
        "ANTHROPIC_API_KEY", "OTEL_EXPORTER_OTLP_ENDPOINT"}
    assert all(line.endswith("=") for line in example.splitlines() if line and not line.startswith("#"))
    for name, svc in services.items():
        for key, value in (svc.get("environment") or {}).items():
            value = str(value)
            if re.search(r"PASSWORD|TOKEN|API_KEY|SECRET", key):
                assert re.fullmatch(r"\$\{\w+:[?-][^}]*\}", value), f"{name}.{key} is a literal secret"
            for userinfo in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
                assert userinfo.startswith("${"), f"{name}.{key} holds a literal password"
    for conf in ("nats.conf", "postgres-roles.sh"):
        assert not re.search(r"password:\s*[^$\s]", (ROOT / "deploy/compose" / conf).read_text()), conf
    assert ".env" in (ROOT / ".gitignore").read_text().split()


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def test_every_object_validates_offline(rendered):
    overlay, docs = rendered
    custom = []
    for d in docs:
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(d["kind"])  # a CRD's kind: no schema ships with Kubernetes
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {d['kind']} {d['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert set(custom) <= {"ScaledObject"}


def test_a_hardened_probed_deployment_per_service(rendered):
    overlay, docs = rendered
    deps = deployments(docs)
    assert set(deps) == set(SERVICES)
    for name, d in deps.items():
        pod = d["spec"]["template"]["spec"]
        c = container(d)
        assert c["command"] == ["python", "-m", f"services.{name}"]
        assert "readinessProbe" in c and "livenessProbe" in c, name
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        assert pod["securityContext"]["runAsNonRoot"] and pod["automountServiceAccountToken"] is False
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        expected = "Unconfined" if name == "executor" else "RuntimeDefault"  # bubblewrap needs user namespaces
        assert pod["securityContext"]["seccompProfile"]["type"] == expected
        volumes = pod.get("volumes", [])
        assert not any("hostPath" in v for v in volumes), name


def test_the_api_key_reaches_only_the_pods_that_call_the_model(rendered):
    _, docs = rendered
    for name, d in deployments(docs).items():
        keys = {v["valueFrom"]["secretKeyRef"]["key"] for v in container(d).get("env", [])
                if "secretKeyRef" in v.get("valueFrom", {})}
        assert ("anthropic-api-key" in keys) == (name in MODEL_CALLERS), name
        assert not container(d).get("envFrom", [{}])[0].get("secretRef"), name  # no whole Secret dumped in


def test_no_credential_is_written_into_the_production_render():
    docs = render("production")
    assert not find(docs, "Secret")  # created by the operator (docs/operations.md), never shipped
    text = yaml.safe_dump_all(docs)
    assert not re.search(r"://[^:/\s]+:[^$@\s][^@\s]*@", text), "a URL with a literal password"
    for d in find(docs, "ConfigMap"):
        assert not any(re.search(r"password|token|key", k, re.I) for k in d.get("data", {})), d["metadata"]["name"]


def test_production_runs_a_three_node_jetstream_with_replicated_streams_and_keda():
    docs = render("production")
    [nats] = find(docs, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    assert "routes" in find(docs, "ConfigMap", "nats-config")[0]["data"]["nats.conf"]
    assert find(docs, "ConfigMap", "yokeflow-config")[0]["data"]["YOKEFLOW_STREAM_REPLICAS"] == "3"
    [scaled] = find(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "executor"
    [trigger] = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream" and trigger["metadata"]["consumer"] == "executor"
    assert trigger["metadata"]["stream"] == "YF_EVENTS"
    budgets = {p["metadata"]["name"]: p["spec"] for p in find(docs, "PodDisruptionBudget")}
    assert budgets["nats"] == {"minAvailable": 2, "selector": {"matchLabels": {"app": "nats"}}}
    assert {"gateway", "executor", "workers"} <= set(budgets)


def test_network_policies_deny_by_default_and_open_only_the_gateway(rendered):
    _, docs = rendered
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ingress = {name for name, p in policies.items() if p.get("ingress")}
    assert ingress == {"gateway-ingress", "nats", "postgres", "git-endpoint"}
    assert all("from" not in rule for rule in policies["gateway-ingress"]["ingress"])  # the one public door
    for rule in policies["nats"]["ingress"] + policies["postgres"]["ingress"] + policies["git-endpoint"]["ingress"]:
        assert rule["from"], "NATS, PostgreSQL and the git endpoint only from named peers"


def test_executors_reach_repositories_over_the_git_endpoint_not_a_shared_disk(rendered):
    _, docs = rendered
    deps = deployments(docs)
    executor, merger = container(deps["executor"]), container(deps["merger"])
    env = {v["name"]: v.get("value") for v in executor["env"]}
    assert env["YOKEFLOW_GIT_REMOTE"] == "http://merger:9418" and env["YOKEFLOW_EXECUTOR_SCRATCH"] == "/scratch"
    assert not any("persistentVolumeClaim" in v for v in deps["executor"]["spec"]["template"]["spec"]["volumes"])
    assert {v["name"]: v.get("value") for v in merger["env"]}["YOKEFLOW_GIT_HTTP_PORT"] == "9418"
    [service] = find(docs, "Service", "merger")
    assert service["spec"]["ports"][0]["port"] == 9418


def test_the_image_holds_what_the_services_run_and_runs_as_a_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = " ".join(line for line in dockerfile.splitlines() if "apt-get install" in line)
    assert {"git", "bubblewrap"} <= set(installs.split())
    for package in ("shared", "services", "yokeflow"):
        assert f"COPY {package} ./{package}" in dockerfile
    [user] = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert user.split(":")[0] not in ("0", "root")
    runs_as = {c["securityContext"].get("runAsUser") or d["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
               for d in deployments(render("local")).values() for c in [container(d)]}
    assert runs_as == {int(user.split(":")[0])}
