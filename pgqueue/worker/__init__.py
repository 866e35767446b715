"""The worker: ``python -m pgqueue.worker myapp.tasks:pgq`` or ``pgq.worker()`` in-process."""

from .worker import Worker

__all__ = ["Worker"]
