"""The pytest plugin: fixtures that do nothing unless a test names them.

``pgqueue_inline`` needs a fixture named ``pgq`` giving the application's ``PgQueue`` (on a test
database, migrated); every job that test enqueues runs in-process as it is written (see
``inline``). The fixture is sync, so it works without pytest-asyncio; jobs enqueued on an asyncpg
connection inside a transaction run after its commit, in the background: ``await
pgqueue_inline.settle()`` (or ``pgq.wait(job.id)``) waits for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..queue import PgQueue
from .inline import Inline, inline


@pytest.fixture
def pgqueue_inline(pgq: PgQueue) -> Iterator[Inline]:
    """Run every job the test enqueues through ``pgq`` in-process, with no worker."""
    with inline(pgq) as running:
        yield running
