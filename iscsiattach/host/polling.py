"""Replacing os-brick's fixed one-second sleeps with a fine poll.

os-brick looks for something the kernel or udev is about to make (a disk in
sysfs, udev's by-id link), and when its first look misses it sleeps a whole
second before the next. ``first_look_waits`` repeats that first look at a
fine step instead, so it answers as soon as the thing is there; os-brick's
own look still decides, and its own retries (after its sleep) look once.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def first_look_waits(look: Callable[..., Any], timeout: float, step: float = 0.01,
                     skip: Callable[..., bool] = lambda *args, **kwargs: False
                     ) -> Callable[..., Any]:
    """``look``, whose first call per arguments is repeated every ``step``
    until it answers (a true value), at most ``timeout``; calls for which
    ``skip`` holds, and later calls, look once."""
    waited: set[str] = set()

    def polled(*args: Any, **kwargs: Any) -> Any:
        key = repr((args, sorted(kwargs.items())))
        if key in waited or skip(*args, **kwargs):
            return look(*args, **kwargs)
        waited.add(key)
        end = time.monotonic() + timeout
        while True:
            got = look(*args, **kwargs)
            if got or time.monotonic() >= end:
                return got
            time.sleep(step)
    return polled
