"""pgqueue: a PostgreSQL-native durable job queue for Python.

Jobs are rows in your database; enqueueing is an INSERT in your own transaction; workers claim
with ``FOR UPDATE SKIP LOCKED`` and are woken by ``LISTEN/NOTIFY``.
"""

from .context import JobContext
from .decisions import Fail, Snooze
from .errors import (
    ConfigurationError,
    DatabaseUnavailable,
    JobLost,
    NotOpenError,
    PayloadTooLarge,
    PgQueueError,
    SchemaError,
)
from .job import Job, JobStatus
from .queue import PgQueue
from .settings import Settings
from .sync import SyncQueue
from .enqueue import EnqueueOptions, Enqueuer
from .task import Task, exponential_backoff
from .worker import Worker

__all__ = [
    "ConfigurationError",
    "DatabaseUnavailable",
    "EnqueueOptions",
    "Enqueuer",
    "Fail",
    "Job",
    "JobContext",
    "JobLost",
    "JobStatus",
    "NotOpenError",
    "PayloadTooLarge",
    "PgQueue",
    "PgQueueError",
    "SchemaError",
    "Settings",
    "Snooze",
    "SyncQueue",
    "Task",
    "Worker",
    "exponential_backoff",
]
__version__ = "0.1.0"
