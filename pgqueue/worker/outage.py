"""One log line when a database outage starts and one when it ends, not a traceback per attempt."""

from __future__ import annotations

import logging


class OutageLog:
    def __init__(self, logger: logging.Logger, doing: str) -> None:
        self._logger = logger
        self._doing = doing
        self._down = False

    def failed(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            self._logger.warning(
                "database unavailable while %s (%s); retrying with backoff",
                self._doing,
                str(exc).strip() or type(exc).__name__,
            )

    def recovered(self) -> None:
        if self._down:
            self._down = False
            self._logger.warning("database reachable again, %s resumed", self._doing)
