"""The example app (``pgqueue.examples``) imported afresh against one test's database.

Its ``PgQueue()`` reads ``PGQUEUE_DSN`` when the module is imported, as in production, so a test
points that variable at its own database and imports the example anew; ``monkeypatch`` puts the
environment and the module cache back afterwards.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

MODULES = ("pgqueue.examples", "pgqueue.examples.app", "pgqueue.examples.tasks")


def import_example(monkeypatch: pytest.MonkeyPatch, database_url: str) -> ModuleType:
    """``pgqueue.examples.app`` on ``database_url``, with its dashboard open (no token)."""
    monkeypatch.setenv("PGQUEUE_DSN", database_url)
    monkeypatch.delenv("EXAMPLE_DASHBOARD_TOKEN", raising=False)
    for name in MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    return importlib.import_module("pgqueue.examples.app")
