"""The no-op task of the scale-out run, for its worker processes
(``python -m pgqueue.worker benchmarks.scale_out_tasks:pgq``) and its producers alike."""

from __future__ import annotations

from pgqueue import PgQueue

pgq = PgQueue()


@pgq.task(retry_delay=0)
async def noop(i: int) -> None:
    """Nothing: what is measured is what the queue costs around a job."""
