"""Statements of the optional observers: the trace context a run's span links to."""

from __future__ import annotations

from functools import cached_property

from .base import StatementsBase


class ObserveStatements(StatementsBase):
    @cached_property
    def trace_context(self) -> str:
        """The enqueue's trace context of job $1 (JSON text, or NULL). Read only by workers whose
        process has OpenTelemetry configured, once per run: the claim stays as lean without it."""
        return self._format("SELECT trace_context::text FROM {s}.jobs WHERE id = $1")
