"""Exceptions a user of pgqueue can catch; each message says what is wrong and what to do."""

from __future__ import annotations


class PgQueueError(Exception):
    """Base class of pgqueue's own errors."""


class ConfigurationError(PgQueueError, ValueError):
    """A setting is missing or malformed (DSN, schema name, import path)."""


class SchemaError(PgQueueError):
    """pgqueue's tables are missing from the database, or older than this package expects."""


class DatabaseUnavailable(PgQueueError):
    """The database cannot be reached; the message names the host and port."""


class PayloadTooLarge(PgQueueError, ValueError):
    """A job's encoded arguments exceed ``max_payload_bytes``."""


class NotOpenError(PgQueueError, RuntimeError):
    """A call needs the connection pool: use ``async with pgq:`` or ``await pgq.open()`` first."""


class JobLost(PgQueueError):
    """``ctx.complete_in`` found that the job no longer belongs to this run: it was rescued after
    its worker was declared dead, cancelled, or already completed. Nothing was written; let the
    exception roll back your transaction."""
