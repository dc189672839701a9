"""A background thread that samples machine state while a flow runs."""
from __future__ import annotations

import threading


class Sampler:
    """Calls sample() every `interval` seconds from `with` entry to exit.

    Not a busy loop: the flow under test shares the GIL with it, and what is
    sampled (a process, a configfs setting) lasts far longer than a step."""

    interval = 0.05

    def __init__(self) -> None:
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()
            self.samples += 1
