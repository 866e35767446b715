"""A queue's limits, as the application gives them and as the database keeps them.

The limits themselves are enforced by the claim (migration 0004); this module checks what a
caller asks for, so a bad limit is refused with a clear message before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, or None for no limit; "
                         f"got {value!r}")
    return value


def _seconds(name: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            or math.isinf(value) or value <= 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)
