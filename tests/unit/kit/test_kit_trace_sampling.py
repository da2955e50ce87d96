"""Trace sampling: roots draw by the ratio, every other span follows its parent's decision."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from services.kit.settings import KitSettings
from services.kit.telemetry import sampler_for


def _tracer(ratio: float) -> trace.Tracer:
    provider = TracerProvider(sampler=sampler_for(KitSettings(trace_sample_ratio=ratio)))
    return provider.get_tracer("test")


def _parent(sampled: bool) -> object:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(context))


def test_roots_are_recorded_by_the_ratio() -> None:
    assert all(_tracer(1.0).start_span("root").is_recording() for _ in range(50))
    assert not any(_tracer(0.0).start_span("root").is_recording() for _ in range(50))
    recorded = sum(_tracer(0.1).start_span("root").is_recording() for _ in range(2000))
    assert 100 < recorded < 320  # about a tenth


def test_children_follow_the_callers_decision_whatever_the_ratio() -> None:
    assert _tracer(0.0).start_span("child", context=_parent(sampled=True)).is_recording()  # type: ignore[arg-type]
    assert not _tracer(1.0).start_span("child", context=_parent(sampled=False)).is_recording()  # type: ignore[arg-type]


def test_the_ratio_is_a_share() -> None:
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        KitSettings(trace_sample_ratio=1.5)
