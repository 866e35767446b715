"""Threads for sync tasks, and what a sync task that ignores cancellation costs.

Python cannot stop a thread. A sync task that times out or is cancelled is told so through
``ctx.cancelled``; one that ignores it keeps running, and keeps its thread. With a fixed pool such
threads would pile up until no sync job could start, so each job gets an idle thread or a new one,
and a thread whose job was given up is counted as stuck until its code returns. The worker bounds
that count (it stops, since only ending the process frees those threads), and the threads are
daemons, so a stuck one never holds the process open once the worker is done.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class SyncRunner:
    def __init__(self, name: str = "pgqueue-job") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: list[_Thread] = []
        self._stuck: dict[object, _Call] = {}
        self._started = 0

    @property
    def stuck(self) -> int:
        """Threads still running the code of a call that was given up (timed out, cancelled)."""
        return len(self._stuck)

    def is_stuck(self, key: object) -> bool:
        """Whether the call made with ``key`` was given up and its code still runs."""
        return key in self._stuck

    async def run(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        key: object = None,
    ) -> Any:
        """Call ``fn`` in a thread, with the caller's context variables. If the caller is
        cancelled while ``fn`` still runs, its thread counts as stuck until ``fn`` returns."""
        loop = asyncio.get_running_loop()
        call = _Call(contextvars.copy_context(), fn, args, kwargs or {}, loop)
        call.key = call if key is None else key
        self._thread().give(call)
        try:
            return await call.future
        except asyncio.CancelledError:
            with self._lock:
                if not call.finished:
                    self._stuck[call.key] = call
            raise

    async def wait_unstuck(self, keys: list[object], timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the given-up calls ``keys`` to return."""
        ended = [self._stuck[key].ended for key in keys if key in self._stuck]
        if ended:
            await asyncio.wait(ended, timeout=timeout)

    def close(self) -> None:
        """Let idle threads end; busy ones end when their code returns."""
        with self._lock:
            idle, self._idle = self._idle, []
        for thread in idle:
            thread.give(_STOP)

    def _thread(self) -> _Thread:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            self._started += 1
            number = self._started
        return _Thread(self, f"{self._name}-{number}")

    def _finished(self, thread: _Thread, call: _Call) -> None:
        with self._lock:
            call.finished = True
            if self._stuck.get(call.key) is call:
                del self._stuck[call.key]
            self._idle.append(thread)


class _Call:
    __slots__ = ("context", "fn", "args", "kwargs", "loop", "future", "ended", "finished", "key")

    def __init__(self, context: contextvars.Context, fn: Callable[..., Any], args: tuple[Any, ...],
                 kwargs: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.context = context
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.ended: asyncio.Future[None] = loop.create_future()
        """Done when the code returns, whether or not anyone still waits for its result."""
        self.finished = False
        self.key: object = self

    def __call__(self) -> None:
        try:
            result = self.context.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            self._deliver(_set_exception, exc)
        else:
            self._deliver(_set_result, result)

    def _deliver(self, how: Callable[[asyncio.Future[Any], Any], None], value: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(how, self.future, value)
            self.loop.call_soon_threadsafe(_set_result, self.ended, None)
        except RuntimeError:
            pass  # the loop is closed: nobody waits for this any more


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class _Thread:
    """One daemon thread taking calls one at a time from its own inbox."""

    def __init__(self, runner: SyncRunner, name: str) -> None:
        self._runner = runner
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def give(self, call: Any) -> None:
        self._inbox.put(call)

    def _loop(self) -> None:
        while True:
            call = self._inbox.get()
            if call is _STOP:
                return
            call()
            self._runner._finished(self, call)
