"""What a task may decide about its own job, by raising: run later, or fail for good.

Raised rather than returned so that they work from any depth of the task's code, and so that a
task's return value stays its result.
"""

from __future__ import annotations

import math


class Snooze(Exception):
    """Put the job back to ``scheduled`` for ``seconds``; this run does not count as an attempt.

    For work that is not ready yet (an export still being built, a partner API asking to come back
    later): the job keeps its attempts, so snoozing never exhausts them.
    """

    def __init__(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or (
            math.isnan(seconds) or seconds < 0 or math.isinf(seconds)
        ):
            raise ValueError(f"Snooze takes a non-negative number of seconds, got {seconds!r}")
        super().__init__(f"snoozed for {seconds} s")
        self.seconds = float(seconds)


class Fail(Exception):
    """Fail the job now: no further attempts, whatever are left; ``on_failure`` is called and the
    job's ``error`` holds ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = str(message)
