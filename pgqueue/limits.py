"""A queue's limits, as the application gives them and as the database keeps them.

The limits themselves are enforced by the claim (migration 0004); this module checks what a
caller asks for, so a bad limit is refused with a clear message before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypedDict


class QueueLimits(TypedDict):
    """A queue's limits; None means no limit (``period`` is None when there is no rate)."""

    concurrency: int | None
    rate: int | None
    period: float | None
    group_concurrency: int | None


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[Any] = _Unset()
"""The default of ``configure_queue``'s arguments: leave that limit as it is."""

MAX_COUNT = 2**31 - 1
"""The largest limit the database's integer columns hold."""
PERIOD_RANGE = (0.001, 366 * 24 * 3600.0)
"""A rate's window: from a millisecond to a year."""

NO_LIMITS: QueueLimits = {"concurrency": None, "rate": None, "period": None,
                          "group_concurrency": None}


def limit_changes(
    queue: str, *, concurrency: Any, rate: Any, period: Any, group_concurrency: Any
) -> list[Any]:
    """The parameters of ``configure_queue``'s statement: per limit, whether to change it and
    its new value (``period`` keeps 1 second when given as None)."""
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"a queue name must be a non-empty string, got {queue!r}")
    params: list[Any] = [queue]
    for name, value in (("concurrency", concurrency), ("rate", rate)):
        params += _change(name, value, _count)
    params += _change("period", period, _seconds)
    params += _change("group_concurrency", group_concurrency, _count)
    return params


def limits_from_row(row: Mapping[str, Any] | None) -> QueueLimits:
    if row is None:
        return dict(NO_LIMITS)  # type: ignore[return-value]
    return {
        "concurrency": row["concurrency"],
        "rate": row["rate"],
        "period": row["period"] if row["rate"] is not None else None,
        "group_concurrency": row["group_concurrency"],
    }


def _change(name: str, value: Any, check: Any) -> list[Any]:
    if value is UNSET:
        return [False, None]
    return [True, None if value is None else check(name, value)]


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ValueError(f"{name} must be a whole number from 1 to {MAX_COUNT}, or None for no "
                         f"limit; got {value!r}")
    return value


def _seconds(name: str, value: Any) -> float:
    low, high = PERIOD_RANGE
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or not low <= value <= high):
        raise ValueError(f"{name} must be a number of seconds from {low} to {high:.0f}, "
                         f"got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue as an operator sees it: its jobs per status, whether it is paused, its limits."""

    name: str
    paused: bool
    counts: dict[str, int]
    limits: QueueLimits
    running: int
    """Jobs running now (what the concurrency limit counts)."""

    @property
    def held_back(self) -> int:
        """Queued jobs that wait because the queue's concurrency limit is reached."""
        limit = self.limits["concurrency"]
        return self.counts.get("queued", 0) if limit is not None and self.running >= limit else 0


def queue_infos(
    counts: Mapping[str, dict[str, int]], paused: set[str], limited: Mapping[str, Mapping[str, Any]]
) -> list[QueueInfo]:
    """Every queue that has jobs (``counts``, as ``stats()``), is paused or has limits (rows of
    ``queues``), by name."""
    return [
        QueueInfo(
            name, name in paused, counts.get(name, {}),
            limits_from_row(limited[name]) if name in limited else limits_from_row(None),
            counts.get(name, {}).get("running", 0),
        )
        for name in sorted(set(counts) | paused | set(limited))
    ]
