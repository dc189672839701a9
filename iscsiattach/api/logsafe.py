"""Log lines a client cannot forge or flood.

Request paths, headers and bodies are the client's bytes. ``SafeFormatter``
escapes every control character in a record's message (a ``%0a`` in a path
can never start a new journal line, an ESC never reaches a terminal), and
``RefusalLimiter`` lets refused requests write at most a few lines a second,
summing up the rest in one line.
"""
from __future__ import annotations

import logging
import re
import threading
import time

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Control characters (C0, DEL, C1, Unicode line separators) as escapes.
    Made by hand, not by the unicode_escape codec: its first use imports a
    module, which fails when the process is out of file descriptors, the
    moment a log line matters most."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    named = {0x09: "\\t", 0x0a: "\\n", 0x0d: "\\r"}.get(code)
    return named or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class SafeFormatter(logging.Formatter):
    """Every line a well-formed log line: the message is escaped, and each
    line of a traceback comes after the record's own prefix and "| ", so a
    line can never pass for a record of its own (nor a reader lose track of
    which record a traceback line belongs to)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved
        extra: list[str] = []
        if saved[0]:
            extra += self.formatException(saved[0]).split("\n")
        elif saved[1]:
            extra += saved[1].split("\n")
        if saved[2]:
            extra += self.formatStack(saved[2]).split("\n")
        if not extra:
            return line
        prefix = line[:len(line) - len(record.message)] if line.endswith(record.message) \
            else line + " "
        return "\n".join([line] + [f"{prefix}| {escape_controls(x)}" for x in extra])


class RefusalLimiter(logging.Filter):
    """A token bucket over log records of refused requests.

    ``rate`` lines per second (bursts up to ``rate``, at least one); each
    suppressed record is counted and the count is reported in one line at
    most every ``summary_every`` seconds. As a logging filter it limits
    records of WARNING and below (a server's "invalid HTTP request" lines);
    errors always pass.
    """

    def __init__(self, rate: float, summary_every: float = 10.0,
                 logger: logging.Logger | None = None) -> None:
        super().__init__()
        self.rate, self.summary_every = rate, summary_every
        self.burst = max(1.0, rate)
        self.tokens, self.stamp = self.burst, time.monotonic()
        self.suppressed, self.suppressed_total = 0, 0
        self.last_summary = self.stamp
        self.logger = logger or logging.getLogger("iscsiattach.api")
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                allowed = True
            else:
                self.suppressed += 1
                self.suppressed_total += 1
                allowed = False
            summary = self._take_summary(now)
        if summary:
            self.logger.warning("%d log lines of refused requests suppressed in the last "
                                "%.0f s (limit %g lines/s)", *summary, self.rate)
        return allowed

    def flush(self) -> None:
        """Report what was suppressed, if the summary interval has passed."""
        with self._lock:
            summary = self._take_summary(time.monotonic())
        if summary:
            self.logger.warning("%d log lines of refused requests suppressed in the last "
                                "%.0f s (limit %g lines/s)", *summary, self.rate)

    def _take_summary(self, now: float) -> tuple[int, float] | None:
        if not self.suppressed or now - self.last_summary < self.summary_every:
            return None
        summary = (self.suppressed, now - self.last_summary)
        self.suppressed, self.last_summary = 0, now
        return summary

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or self.allow()
