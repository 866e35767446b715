"""What the operator commands print: aligned tables and readable times for people, one JSON
document for scripts (``--json``)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from ..job import Job


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``"12s ago"``, ``"in 5m"``, ``"3h ago"``, ``"2d ago"``; ``"-"`` for no time."""
    if moment is None:
        return "-"
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)}{unit}"
            break
    else:
        amount = f"{int(seconds)}s"
    return f"in {amount}" if future else f"{amount} ago"


def stamp(moment: datetime | None) -> str:
    """An absolute local time with its offset and how long ago, for one job's details."""
    if moment is None:
        return "-"
    return f"{moment.astimezone().isoformat(sep=' ', timespec='seconds')} ({ago(moment)})"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[str] = ()) -> str:
    """Columns aligned to their widest cell; the ``right`` ones (numbers) right-aligned."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if header in right else cell.ljust(width)
            for cell, width, header in zip(row, widths, headers, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses as objects, times as ISO 8601, enums as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def print_json(value: Any) -> None:
    json.dump(plain(value), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def jobs_table(jobs: Sequence[Job]) -> str:
    rows = [
        (job.id, job.status, job.queue, job.task, f"{job.attempts}/{job.max_attempts}",
         ago(job.created_at), _when(job))
        for job in jobs
    ]
    return table(["ID", "STATUS", "QUEUE", "TASK", "ATTEMPTS", "CREATED", "LAST CHANGE"], rows,
                 right=["ID", "ATTEMPTS"])


def _when(job: Job) -> str:
    """What happened last, and when: the move a person scanning the list wants to know."""
    if job.finished_at is not None:
        return f"finished {ago(job.finished_at)}"
    if job.started_at is not None and job.status == "running":
        return f"started {ago(job.started_at)}"
    return f"due {ago(job.run_at)}"
