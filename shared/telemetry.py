"""OpenTelemetry set-up and W3C trace-context propagation through NATS headers.

Exporters follow the standard OTEL_* variables: with OTEL_EXPORTER_OTLP_ENDPOINT set and
an OTLP exporter package installed, spans are exported; with OTEL_TRACES_EXPORTER=console
they print; otherwise spans are created (so trace ids propagate) and dropped.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Mapping

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured = False


def setup(service_name: str) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp" or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise RuntimeError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
                "pip install opentelemetry-exporter-otlp-proto-http"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def tracer() -> trace.Tracer:
    return trace.get_tracer("yokeflow")


def inject(headers: dict[str, str]) -> None:
    """Add the current span's `traceparent` to outgoing NATS headers."""
    propagate.inject(headers)


@contextlib.contextmanager
def span_from_headers(name: str, headers: Mapping[str, str] | None,
                      attributes: dict[str, Any] | None = None) -> Iterator[trace.Span]:
    ctx = propagate.extract(dict(headers or {}))
    with tracer().start_as_current_span(name, context=ctx, attributes=attributes or {}) as span:
        yield span
