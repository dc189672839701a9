"""Where requests wait, and for how long: the bounded pool of worker
threads, public answers shared between concurrent callers, and the pacing
of answers to requests without a valid token."""
from __future__ import annotations

import asyncio
import contextvars
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from iscsiattach.exception import HttpError


class WorkerPool:
    """Blocking calls in at most ``workers`` threads, at most ``max_queued``
    waiting: beyond that a 503 at once, never an unbounded queue."""

    def __init__(self, workers: int, max_queued: int, name: str) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix=name)
        self.capacity = workers + max_queued
        self.in_flight = 0

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.in_flight >= self.capacity:
            raise HttpError(503, "The service is busy; try again later.")
        self.in_flight += 1
        try:
            ctx = contextvars.copy_context()        # the request id goes along
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, ctx.run, fn, *args)
        finally:
            self.in_flight -= 1


MAX_UNAUTHENTICATED_WAIT = 5.0     # longest queue for a paced answer; first 429 hold
MAX_REFUSAL_HOLD = 60.0            # longest a repeatedly refused connection waits


class Pacer:
    """Spaces events ``1/rate`` apart, bursts of ``rate`` allowed (GCRA).

    ``reserve`` says how long the caller must wait for its turn, or None
    when the queue is already ``max_wait`` long. ``rate`` 0: no pacing.
    """

    def __init__(self, rate: float, max_wait: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.burst = max(1.0, rate) * self.interval
        self.max_wait = max_wait
        self.tat = 0.0                   # theoretical arrival time of the next event

    def reserve(self) -> float | None:
        if not self.interval:
            return 0.0
        now = time.monotonic()
        tat = max(now, self.tat)
        delay = tat - now - self.burst + self.interval
        if delay > self.max_wait:
            return None
        self.tat = tat + self.interval
        return max(0.0, delay)


class RefusalHolds:
    """How long a client past the pacing queue waits for its 429.

    An answer sent at once is an invitation to ask again at once: 300
    clients that ignore Retry-After would keep the event loop busy with
    refusals alone. So a refusal is held ``base`` seconds, doubled for
    each further refusal on the same connection (its peer address and
    port) up to ``ceiling``; a turn served resets it. A connection can then
    cost at most one refusal per ``ceiling`` seconds once it has been told
    often enough. At most ``size`` connections are remembered (the oldest
    forgotten first), so memory stays bounded whatever the peers.
    """

    def __init__(self, base: float, ceiling: float, size: int = 4096) -> None:
        self.base, self.ceiling, self.size = base, ceiling, size
        self._held: OrderedDict[Any, float] = OrderedDict()

    def refused(self, peer: Any) -> float:
        """The hold for this refusal of ``peer``; the next one will be longer."""
        hold = self._held.pop(peer, self.base)
        self._held[peer] = min(hold * 2, self.ceiling)
        while len(self._held) > self.size:
            self._held.popitem(last=False)
        return hold

    def served(self, peer: Any) -> None:
        self._held.pop(peer, None)


class Cached:
    """A public answer computed at most once per ``seconds``; concurrent
    callers share one computation (300 scrapers cost one store read)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.value: Any = None
        self.at = 0.0
        self.pending: asyncio.Future | None = None

    async def get(self, compute: Callable[[], Awaitable[Any]]) -> Any:
        if self.value is not None and time.monotonic() - self.at < self.seconds:
            return self.value
        if self.pending is None:
            self.pending = asyncio.ensure_future(compute())
            self.pending.add_done_callback(self._done)
        return await asyncio.shield(self.pending)

    def _done(self, fut: asyncio.Future) -> None:
        self.pending = None
        if not fut.cancelled() and fut.exception() is None:
            self.value, self.at = fut.result(), time.monotonic()
