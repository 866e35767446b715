"""How many jobs a worker claims ahead of its free slots.

Jobs claimed ahead let a slot that frees up start its next job without waiting for a claim's round
trip, but they are held from other workers until they start. So the worker claims ahead only as
many as its slots will get through during the next claims: a few for slow jobs, up to three
concurrencies' worth for jobs that finish in microseconds, judged from moving averages of how long
jobs and claims have been taking.
"""

from __future__ import annotations

import math

_WEIGHT = 0.2  # of the newest sample in each moving average
_MAX_AHEAD = 3  # concurrencies' worth


class ClaimPace:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._run_seconds: float | None = None
        self._claim_seconds: float | None = None

    def job_ran(self, seconds: float) -> None:
        self._run_seconds = _moving_average(self._run_seconds, seconds)

    def claimed(self, seconds: float) -> None:
        self._claim_seconds = _moving_average(self._claim_seconds, seconds)

    @property
    def ahead(self) -> int:
        """Jobs to hold claimed beyond the free slots: what the slots finish in two claims' time
        (one concurrency's worth until there is anything to judge by)."""
        if self._run_seconds is None or self._claim_seconds is None:
            return self.concurrency
        finished_per_claim = self.concurrency * self._claim_seconds / max(self._run_seconds, 1e-6)
        return max(1, min(_MAX_AHEAD * self.concurrency, math.ceil(2 * finished_per_claim)))


def _moving_average(average: float | None, sample: float) -> float:
    return sample if average is None else average + _WEIGHT * (sample - average)
