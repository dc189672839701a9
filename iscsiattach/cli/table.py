"""Tables as cinderclient prints them (prettytable, left-aligned), byte for byte.

cinderclient renders every table with prettytable: each cell is ``str(value)``
(so ``None`` is "None" and a list its Python repr) with tabs expanded, a
cell may span several lines, rows are sorted by one column, and widths are display widths (a wide
CJK character takes two columns, a combining mark none). This module does the
same without prettytable, which the package does not depend on;
tests/unit/test_cinderclient_compat.py compares the bytes with cinderclient's
own output.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")     # a terminal control sequence
TAB = 8


def width(text: str) -> int:
    """Columns ``text`` takes on a terminal, as prettytable counts them."""
    col = 0
    for ch in _ESCAPE.sub("", text):
        if ch == "\t":
            col += TAB - col % TAB
        elif unicodedata.combining(ch) or unicodedata.category(ch) in ("Cc", "Cf", "Mn", "Me"):
            continue
        elif unicodedata.east_asian_width(ch) in ("W", "F"):
            col += 2
        else:
            col += 1
    return col


def _pad(text: str, size: int) -> str:
    return text + " " * (size - width(text))


def render(header: Sequence[str], rows: Sequence[Sequence[Any]],
           sort_column: int | None = 0) -> str:
    """The table of ``rows`` under ``header``, sorted by ``sort_column``
    (None: as given). Cells are ``str()``-ed; a cell may hold several lines."""
    cells = [[str(v).expandtabs(TAB).split("\n") for v in row] for row in rows]
    if sort_column is not None:
        # prettytable sorts rows by the sort column first, then the whole row.
        order = sorted(range(len(rows)), key=lambda i: (_key(rows[i][sort_column]),
                                                        [_key(v) for v in rows[i]]))
        cells = [cells[i] for i in order]
    widths = [max([width(h)] + [width(line) for row in cells for line in row[i]])
              for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule, _line(header, widths), rule]
    for row in cells:
        height = max((len(c) for c in row), default=1)
        for n in range(height):
            out.append(_line([c[n] if n < len(c) else "" for c in row], widths))
    out.append(rule)            # with no row too: header, then the closing rule
    return "\n".join(out)


def _key(value: Any) -> Any:
    """A sort key that never compares unlike types (cinderclient's columns
    hold one type each; ours mix None in)."""
    return (type(value).__name__, value) if value is not None else ("", "")


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(_pad(c, w) for c, w in zip(cells, widths, strict=True)) + " |"


def property_table(obj: dict[str, Any], dict_cells: Sequence[str] = ()) -> str:
    """cinderclient's ``print_dict``: Property | Value, sorted by property.
    The keys in ``dict_cells`` that hold a dict print as "k : v" lines."""
    rows = []
    for key, value in obj.items():
        if key in dict_cells and isinstance(value, dict):
            value = "\n".join(f"{k} : {value[k]}" for k in sorted(value))
        if isinstance(value, str):
            value = value.replace("\r", " ")
        rows.append([key, value])
    return render(["Property", "Value"], rows)


def list_table(items: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]],
               drop_missing: bool = False) -> str:
    """cinderclient's ``print_list``: one row per item, ``columns`` as
    (key, title), None as "-", sorted by the first column. ``drop_missing``
    (its ``exclude_unavailable``): a column is left out when an item lacks
    its key (with no item, every column stays)."""
    keep = [c for c in columns if not drop_missing or all(c[0] in i for i in items)]
    rows = []
    for item in items:
        row = []
        for key, _ in keep:
            value = item.get(key, "")
            if value is None:
                value = "-"
            if isinstance(value, str):
                value = value.replace("\r", " ")
            row.append(value)
        rows.append(row)
    return render([title for _, title in keep], rows)
