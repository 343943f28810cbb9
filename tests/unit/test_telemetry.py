"""Trace export follows the standard OTEL_* variables, and what cannot be honoured is refused by name."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from shared import telemetry


@pytest.fixture(autouse=True)
def no_otel_env(monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)


def kinds(monkeypatch, **env) -> list[type]:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return [type(e) for e in telemetry._exporters_from_env()]


def test_nothing_configured_exports_nothing(monkeypatch):
    assert kinds(monkeypatch) == []


def test_an_otlp_endpoint_exports_over_otlp_http(monkeypatch):
    assert kinds(monkeypatch, OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318") == [OTLPSpanExporter]
    assert kinds(monkeypatch, OTEL_TRACES_EXPORTER="otlp,console") == [OTLPSpanExporter, ConsoleSpanExporter]


def test_none_and_sdk_disabled_turn_export_off(monkeypatch):
    assert kinds(monkeypatch, OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://c:4318") == []
    assert kinds(monkeypatch, OTEL_TRACES_EXPORTER="otlp", OTEL_SDK_DISABLED="true") == []


@pytest.mark.parametrize("env, named", [
    ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL=grpc"),
])
def test_what_cannot_be_honoured_is_refused_by_name(monkeypatch, env, named):
    with pytest.raises(telemetry.TelemetryError, match=named):
        kinds(monkeypatch, **env)


def test_the_probe_port_is_a_port_or_refused_by_name():
    from shared.config import ConfigError, load_config

    assert load_config(environ={}).runtime.health_port == 0
    assert load_config(environ={"YOKEFLOW_HEALTH_PORT": "8080"}).runtime.health_port == 8080
    for bad in ("http", "70000"):
        with pytest.raises(ConfigError, match="health_port"):
            load_config(environ={"YOKEFLOW_HEALTH_PORT": bad})


def test_with_tracing_off_no_trace_starts_but_an_arriving_one_is_carried_on(monkeypatch):
    monkeypatch.setattr(telemetry, "_tracing", False)
    with telemetry.span("publish") as s:
        assert not s.is_recording()
        headers: dict[str, str] = {}
        telemetry.inject(headers)
        assert headers == {}  # nothing is started in a process that exports nothing
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with telemetry.span_from_headers("ledger process", {"traceparent": parent}):
        with telemetry.span("send"):
            headers = {}
            telemetry.inject(headers)
    assert headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    with pytest.raises(KeyError):  # an error inside passes through
        with telemetry.span("x"):
            raise KeyError("k")
