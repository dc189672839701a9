"""Markdown tables and the number formats of docs/performance-results.md."""
from __future__ import annotations

from typing import Any

DASH = "—"      # a figure the run did not produce


def is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ms(value: Any) -> str:
    """Milliseconds, as seconds from one second on."""
    if not is_num(value):
        return DASH
    return f"{value / 1e3:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def sec(value: Any) -> str:
    return f"{value:.2f} s" if is_num(value) else DASH


def ratio(a: Any, b: Any) -> str:
    """a / b; two decimals below 10x."""
    if not is_num(a) or not is_num(b) or not b:
        return DASH
    r = a / b
    return f"{r:.0f}x" if r >= 10 else f"{r:.2f}x"


def times(a: Any, b: Any) -> str:
    """a / b, always two decimals."""
    return f"{a / b:.2f}x" if is_num(a) and is_num(b) and b else DASH


def verdict(ok: bool | None) -> str:
    return {True: "met", False: "**short**", None: "not measured"}[ok]


def cell(value: Any) -> str:
    if value is None or value == "":
        return DASH
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; an empty string when there is no row."""
    if not rows:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def seconds(summary: Any) -> float | None:
    """The p50 of a timing summary (milliseconds) in seconds."""
    p50 = summary.get("p50_ms") if isinstance(summary, dict) else None
    return p50 / 1e3 if is_num(p50) else None
