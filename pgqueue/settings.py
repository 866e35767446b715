"""Configuration: every knob has a ``PGQUEUE_*`` environment variable and a ``PgQueue(...)`` argument.

Explicit arguments win over the environment, which wins over the defaults written here.
"""

from __future__ import annotations

import re
import warnings
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigurationError

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")

Seconds = Annotated[float, Field(gt=0)]


def validate_schema_name(name: str) -> str:
    """The schema name is spliced into SQL, so only a plain lower-case identifier is accepted."""
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(
            f"invalid pgqueue schema name {name!r}: use lower-case letters, digits and underscores, "
            "starting with a letter or underscore, at most 48 characters (set PGQUEUE_SCHEMA)"
        )
    return name


# ``schema`` is the natural name (PGQUEUE_SCHEMA, PgQueue(schema=...)); pydantic only warns that it
# hides the deprecated ``BaseModel.schema()`` method, which pgqueue never uses.
warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)


class Settings(BaseSettings):
    """pgqueue's settings; see the README's settings table for what each one is for."""

    model_config = SettingsConfigDict(env_prefix="PGQUEUE_", extra="forbid")

    dsn: str | None = None
    """``postgresql://`` URL of the database that holds the jobs."""
    schema: str = "pgqueue"
    """Schema that holds all of pgqueue's tables, functions and types."""

    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(10, ge=1)

    poll_interval: Seconds = 1.0
    """How often a worker checks for scheduled jobs coming due; new jobs wake it by NOTIFY at once."""
    heartbeat_interval: Seconds = 5.0
    """How often a worker proves it is alive."""
    rescue_after: Seconds = 20.0
    """A worker silent this long is declared dead and its running jobs go back to the queue."""
    shutdown_grace: Seconds = 30.0
    """On SIGTERM/SIGINT, how long running jobs may take to finish before they are put back."""

    retention: Seconds = 7 * 24 * 3600.0
    """How long succeeded and cancelled jobs are kept."""
    failed_retention: Seconds = 30 * 24 * 3600.0
    """How long failed jobs are kept (longer: someone may want to look at them)."""
    prune_interval: Seconds = 60.0
    vacuum_interval: float = Field(10.0, ge=0)
    """How often a worker checks whether the jobs table needs a VACUUM (0: never). Every job
    leaves dead row versions behind; where autovacuum is off or behind, claims slow down as they
    step over them, so pgqueue vacuums its own table once they pile up."""

    max_payload_bytes: int = Field(1_000_000, gt=0)
    """Largest JSON encoding of a job's arguments accepted at enqueue."""

    claim_batch: int = Field(100, ge=1, le=1000)
    """Most jobs a worker claims in one statement."""
    progress_interval: Seconds = 0.25
    """Progress and log lines are coalesced and written at most this often per worker."""

    metrics_port: int | None = Field(None, ge=0, le=65535)
    """Where a worker serves Prometheus metrics (``http://host:port/metrics``); None: no metrics
    (nothing is measured). 0 picks a free port. Needs ``pip install 'pgqueue[metrics]'``."""
    metrics_host: str = "0.0.0.0"
    """The address the metrics endpoint binds: every interface, as a Prometheus on another host or
    container scrapes it; ``127.0.0.1`` keeps it on this machine."""

    @field_validator("schema")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        return validate_schema_name(value)


def load_settings(**explicit: object) -> Settings:
    """Settings from the environment, overridden by ``explicit`` values that are not None;
    a bad value raises one ``ConfigurationError`` that names the setting."""
    try:
        return Settings(**{k: v for k, v in explicit.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise ConfigurationError("; ".join(problems)) from None
