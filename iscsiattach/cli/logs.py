"""What the CLI logs: quiet unless --debug.

Without --debug no library (os-brick, oslo.*, privsep, urllib3...) prints
anything: a failed attach shows its progress lines and one error line. Our
own warnings and errors (a rollback that could not undo a step) still show,
one line each, as "iscsiattach: warning: ...". With --debug every logger
prints at debug level, with its name.
"""
from __future__ import annotations

import logging
import sys

OWN = "iscsiattach"
WARNING = "iscsiattach: warning: "
_MARK = "_iscsiattach_cli"


class _OwnOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == OWN or record.name.startswith(OWN + ".")


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return WARNING + "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def setup(debug: bool) -> None:
    """Configure the root logger for one run of the CLI (again: the handler
    of an earlier run in this process is replaced). With a handler on the
    root, Python's last-resort handler, which prints every library's
    warnings, never runs."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _MARK, True)
    if debug:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
    else:
        handler.addFilter(_OwnOnly())
        handler.setFormatter(_OneLine())
        handler.setLevel(logging.WARNING)
        root.setLevel(logging.WARNING)
    root.addHandler(handler)
