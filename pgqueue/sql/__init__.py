"""Every SQL statement pgqueue runs, in one place: this package, one module per group.

Statements are written for asyncpg (``$1`` parameters) against one schema. Statuses come from
``job.py`` and notification messages from ``messages.py``; the insert statement sends its wake-up
itself, once per statement, so it is delivered when the enqueueing transaction commits.

Updates of job rows by id list the ids twice (``j.id = ANY($1)`` beside the join) so the planner
reaches rows through the primary key even when the table was never analyzed (autovacuum off).
"""

from .base import CLAIM_COLUMNS, JOB_COLUMNS, to_sqlalchemy
from .control import ControlStatements
from .jobs import JobStatements
from .maintenance import MaintenanceStatements
from .observe import ObserveStatements
from .queues import QueueStatements
from .testing import TestingStatements
from .worker import WorkerStatements
from .workflows import WorkflowStatements


class Statements(
    JobStatements, ControlStatements, QueueStatements, WorkerStatements, MaintenanceStatements,
    ObserveStatements, TestingStatements, WorkflowStatements,
):
    """The statements for one schema, built once per ``PgQueue``."""


__all__ = ["CLAIM_COLUMNS", "JOB_COLUMNS", "Statements", "to_sqlalchemy"]
