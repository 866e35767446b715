"""What every group of statements shares: the schema, its notification channels, the column
lists and the status sets, and the formatting that splices them in.

The schema name is validated as a plain identifier before it is spliced in
(``settings.validate_schema_name``); every value travels as a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..job import (
    FINAL_STATUSES,
    RETRYABLE_STATUSES,
    UNFINISHED_STATUSES,
    UNIQUE_KEY_STATUSES,
    JobStatus,
)
from ..messages import channel_names, sql_status, sql_wake
from ..settings import validate_schema_name


def _status_list(statuses: Iterable[JobStatus]) -> str:
    """An SQL list of statuses, in the enum's order: ``('queued', 'scheduled', 'running')``."""
    chosen = set(statuses)
    return "(" + ", ".join(f"'{status}'" for status in JobStatus if status in chosen) + ")"


JOB_COLUMNS = (
    "id, task, queue, status, args::text AS args, kwargs::text AS kwargs, priority, attempts, "
    "max_attempts, run_at, created_at, started_at, finished_at, result::text AS result, error, "
    "progress, progress_message, unique_key, worker_id, group_key"
)

CLAIM_COLUMNS = (
    "j.id, j.task, j.queue, jsonb_build_array(j.args, j.kwargs)::text AS call, j.priority, "
    "j.attempts, j.max_attempts, j.run_at, j.created_at, j.started_at, j.unique_key, j.group_key"
)
"""What a claim returns, in the order ``Job.from_claim`` unpacks."""

_UNFINISHED = _status_list(UNFINISHED_STATUSES)
_FINAL = _status_list(FINAL_STATUSES)
_RETRYABLE = _status_list(RETRYABLE_STATUSES)
_KEY_HOLDING = _status_list(UNIQUE_KEY_STATUSES)


def to_sqlalchemy(statement: str) -> str:
    """Rewrite ``$1`` parameters as ``(:p1)`` for ``sqlalchemy.text`` (the parentheses keep a
    following ``::type`` cast from being read as part of the parameter name)."""
    return re.sub(r"\$(\d+)", r"(:p\1)", statement)


class StatementsBase:
    """The schema, and the helpers every group of statements formats with."""

    def __init__(self, schema: str) -> None:
        self.schema = validate_schema_name(schema)
        self.jobs_channel, self.events_channel = channel_names(schema)

    def _format(self, template: str) -> str:
        return template.format(
            s=self.schema,
            unfinished=_UNFINISHED,
            final=_FINAL,
            retryable=_RETRYABLE,
            key_holding=_KEY_HOLDING,
            columns=JOB_COLUMNS,
            claim_columns=CLAIM_COLUMNS,
        )

    def _wake(self, queue: str) -> str:
        return sql_wake(self.jobs_channel, queue)

    def _status(self, pairs: str) -> str:
        return sql_status(self.events_channel, pairs)
