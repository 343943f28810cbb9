"""OpenTelemetry set-up and W3C trace-context propagation through NATS headers.

Export follows the standard OTEL_* variables: OTEL_TRACES_EXPORTER (otlp, console, none; a
comma-separated list), and for otlp OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, _HEADERS, _TIMEOUT
over OTLP/HTTP (protobuf). With no exporter named, spans go to OTLP when an OTLP endpoint is
set; with none, tracing is off: no span is made (each cost a publish ~50 us), and only a trace that
arrives in a message's headers from a traced process is carried on to what it leads to. OTEL_SERVICE_NAME
names the process; OTEL_BSP_* tune batching. A setting YokeFlow cannot honour is refused
with TelemetryError (e.g. the gRPC protocol: only the OTLP/HTTP exporter is installed).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.config import otel_env

_provider: TracerProvider | None = None
_tracing = False  # whether this process exports spans: without an exporter a span is made for nothing
OTLP_PROTOCOL = "http/protobuf"
_OFF = trace.INVALID_SPAN  # what a span is while tracing is off: every call on it does nothing


class TelemetryError(ValueError):
    """An OTEL_* setting that this installation cannot honour."""


def setup(service_name: str, *, console: bool = False) -> TracerProvider:
    """Install this process's tracer provider (once; later calls return it and may add the console)."""
    global _provider, _tracing
    if _provider is None:
        exporters = _exporters_from_env()
        attributes = {} if otel_env().get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        _tracing = bool(exporters)
        trace.set_tracer_provider(provider)
        readers = _metric_readers_from_env()
        if readers:
            metrics.set_meter_provider(MeterProvider(resource=provider.resource, metric_readers=readers))
        _provider = provider
    if console and not getattr(_provider, "_yf_console", False):
        _provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
        _provider._yf_console = True  # type: ignore[attr-defined]
        _tracing = True
    return _provider


def tracing() -> bool:
    """Whether spans are exported from this process (an exporter is set up)."""
    return _tracing


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
    """Add the current span's `traceparent` to outgoing NATS headers (with tracing off, only a
    trace that arrived from a traced process passes on: none is started here)."""
    if _tracing or trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (attributes or {}).items() if v is not None and v != ""}


class _NoSpan:
    """The scope of a span while tracing is off: nothing is made, exceptions pass through."""

    def __enter__(self) -> trace.Span:
        return _OFF

    def __exit__(self, *exc: Any) -> None:
        return None


_NO_SPAN = _NoSpan()


def span(name: str, attributes: Mapping[str, Any] | None = None, *,
         kind: SpanKind = SpanKind.INTERNAL) -> contextlib.AbstractContextManager[trace.Span]:
    """A child of the current span; an exception marks it as an error and passes through.
    With tracing off nothing is made (a publish paid ~50 us for a span nobody would see)."""
    return _span(name, attributes, kind) if _tracing else _NO_SPAN


@contextlib.contextmanager
def _span(name: str, attributes: Mapping[str, Any] | None, kind: SpanKind) -> Iterator[trace.Span]:
    with tracer().start_as_current_span(name, kind=kind, attributes=_clean(attributes)) as s:
        yield s


def span_from_headers(name: str, headers: Mapping[str, str] | None, attributes: Mapping[str, Any] | None = None, *,
                      kind: SpanKind = SpanKind.CONSUMER) -> contextlib.AbstractContextManager[trace.Span]:
    """A span continuing the trace whose context arrived in `headers` (a root when none did).
    With tracing off, an arriving trace is only carried on to what is published meanwhile."""
    if _tracing:
        return _span_from_headers(name, headers, attributes, kind)
    return _carried(headers) if headers and "traceparent" in headers else _NO_SPAN


@contextlib.contextmanager
def _carried(headers: Mapping[str, str]) -> Iterator[trace.Span]:
    token = context.attach(propagate.extract(dict(headers)))
    try:
        yield _OFF
    finally:
        context.detach(token)


@contextlib.contextmanager
def _span_from_headers(name: str, headers: Mapping[str, str] | None, attributes: Mapping[str, Any] | None,
                       kind: SpanKind) -> Iterator[trace.Span]:
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
