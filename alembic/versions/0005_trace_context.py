"""The OpenTelemetry context of the enqueue that wrote a job, for its runs' spans to link to.

``jobs.trace_context`` holds the producer span's propagation headers (W3C ``traceparent`` and
``tracestate``) as a JSON object; NULL when tracing is off, which costs nothing to store. Adding
a nullable column without a default is a catalog change only: no rewrite, a brief lock, safe while
workers run (older workers do not name the column).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _schema() -> str:
    return op.get_context().config.attributes["pgqueue_schema"]


def upgrade() -> None:
    op.execute(f"ALTER TABLE {_schema()}.jobs ADD COLUMN trace_context jsonb")


def downgrade() -> None:
    op.execute(f"ALTER TABLE {_schema()}.jobs DROP COLUMN trace_context")
