"""The one polling wait of the harness."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30, interval: float = 0.1) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns
    something true, and return that. At the deadline, the value of one last
    call (false if the wait failed): the caller says what a failure means.
    An exception from ``predicate`` ends the wait (e.g. the process being
    waited for has died)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
