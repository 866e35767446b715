"""The validated path and query parameters that the API and the dashboard's pages share.

They live apart from both so that neither module imports the other: a bad id, status or name is
refused with a 422 saying what is wrong, the same way on every route, before it reaches the
database (ids are positive 64-bit integers, statuses are known, names are bounded text without
NUL, which PostgreSQL text cannot hold).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from ..job import JobStatus
from .schemas import BIGINT_MAX, NAME_RULES

JobId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The job's id.")]
QueueName = Annotated[str, Path(description="The queue's name.", **NAME_RULES)]
StatusFilter = Annotated[JobStatus | None, Query(description="Only jobs in this status.")]
QueueFilter = Annotated[str | None, Query(description="Only jobs of this queue.", **NAME_RULES)]
TaskFilter = Annotated[str | None, Query(description="Only jobs of this task.", **NAME_RULES)]
Cursor = Annotated[
    int | None,
    Query(ge=1, le=BIGINT_MAX, description="Cursor: the `next_cursor` of the previous page."),
]
