"""OpenTelemetry set-up and W3C trace-context propagation through NATS headers.

Export follows the standard OTEL_* variables: OTEL_TRACES_EXPORTER (otlp, console, none; a
comma-separated list), and for otlp OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT
over OTLP/HTTP (protobuf). With no exporter named, spans go to OTLP when an OTLP endpoint is
set and are otherwise created and dropped, so trace ids still propagate. OTEL_SERVICE_NAME
names the process; OTEL_BSP_* tune batching. A setting YokeFlow cannot honour is refused
with TelemetryError (e.g. the gRPC protocol: only the OTLP/HTTP exporter is installed).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.config import otel_env

_provider: TracerProvider | None = None
OTLP_PROTOCOL = "http/protobuf"


class TelemetryError(ValueError):
    """An OTEL_* setting that this installation cannot honour."""


def setup(service_name: str, *, console: bool = False) -> TracerProvider:
    """Install this process's tracer provider (once; later calls return it and may add the console)."""
    global _provider
    if _provider is None:
        exporters = _exporters_from_env()
        attributes = {} if otel_env().get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        readers = _metric_readers_from_env()
        if readers:
            metrics.set_meter_provider(MeterProvider(resource=provider.resource, metric_readers=readers))
        _provider = provider
    if console and not getattr(_provider, "_yf_console", False):
        _provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
        _provider._yf_console = True  # type: ignore[attr-defined]
    return _provider


def _exporters_from_env() -> list[SpanExporter]:
    names = [n.strip().lower() for n in otel_env().get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if otel_env().get("OTEL_SDK_DISABLED", "").lower() == "true":
        return []
    if not names and (otel_env().get("OTEL_EXPORTER_OTLP_ENDPOINT") or
                      otel_env().get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        names = ["otlp"]
    out: list[SpanExporter] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            out.append(ConsoleSpanExporter(formatter=one_line))
        elif name == "otlp":
            out.append(_otlp_exporter())
        else:
            raise TelemetryError(f"OTEL_TRACES_EXPORTER={name} is not supported: use otlp, console or none")
    return out


def _otlp_exporter() -> SpanExporter:
    _check_protocol("TRACES")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _check_protocol(signal: str) -> None:
    protocol = (otel_env().get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
                or otel_env().get("OTEL_EXPORTER_OTLP_PROTOCOL") or OTLP_PROTOCOL)
    if protocol != OTLP_PROTOCOL:
        raise TelemetryError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: YokeFlow exports "
                             f"OTLP over HTTP; set {OTLP_PROTOCOL} and the collector's HTTP port (usually 4318)")


def _metric_readers_from_env() -> list[PeriodicExportingMetricReader]:
    """OTEL_METRICS_EXPORTER (otlp, console, none); unset means otlp when an OTLP endpoint is set.
    OTEL_METRIC_EXPORT_INTERVAL (ms) sets how often they are sent."""
    names = [n.strip().lower() for n in otel_env().get("OTEL_METRICS_EXPORTER", "").split(",") if n.strip()]
    if otel_env().get("OTEL_SDK_DISABLED", "").lower() == "true":
        return []
    if not names and (otel_env().get("OTEL_EXPORTER_OTLP_ENDPOINT") or
                      otel_env().get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")):
        names = ["otlp"]
    readers = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "otlp":
            _check_protocol("METRICS")
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        else:
            raise TelemetryError(f"OTEL_METRICS_EXPORTER={name} is not supported: use otlp, console or none")
    return readers


def one_line(span: ReadableSpan) -> str:
    """A span as one readable line (`yokeflow up --trace-console`)."""
    ctx = span.get_span_context()
    parent = f"{span.parent.span_id:016x}" if span.parent else "-"
    ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    attrs = " ".join(f"{k}={v}" for k, v in (span.attributes or {}).items() if not k.startswith("messaging.message"))
    return f"span {ctx.trace_id:032x} {ctx.span_id:016x}<{parent} {ms:8.1f}ms {span.name} {attrs}\n"


def tracer() -> trace.Tracer:
    return trace.get_tracer("yokeflow")


def inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` to outgoing NATS headers."""
    propagate.inject(headers)


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (attributes or {}).items() if v is not None and v != ""}


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, *,
         kind: SpanKind = SpanKind.INTERNAL) -> Iterator[trace.Span]:
    """A child of the current span; an exception marks it as an error and passes through."""
    with tracer().start_as_current_span(name, kind=kind, attributes=_clean(attributes)) as s:
        yield s


@contextlib.contextmanager
def span_from_headers(name: str, headers: Mapping[str, str] | None, attributes: Mapping[str, Any] | None = None, *,
                      kind: SpanKind = SpanKind.CONSUMER) -> Iterator[trace.Span]:
    """A span continuing the trace whose context arrived in `headers` (a root when none did)."""
    ctx = propagate.extract(dict(headers or {}))
    with tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=_clean(attributes)) as s:
        yield s


def set_attributes(s: trace.Span, attributes: Mapping[str, Any]) -> None:
    s.set_attributes(_clean(attributes))


def mark_failed(s: trace.Span, description: str) -> None:
    s.set_status(Status(StatusCode.ERROR, description[:500]))


class TraceRequests:
    """ASGI middleware: one server span per HTTP request, continuing a caller's `traceparent`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method, path = scope.get("method", ""), scope.get("path", "")
        route = path if path.startswith("/api/") else "/"  # the UI's static files are one route for tracing

        with span_from_headers(f"{method} {route}", headers, {"http.request.method": method, "url.path": path},
                               kind=SpanKind.SERVER) as s:
            async def sending(message):
                if message["type"] == "http.response.start":
                    s.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        mark_failed(s, f"HTTP {message['status']}")
                await send(message)

            await self.app(scope, receive, sending)
